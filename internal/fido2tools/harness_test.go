package fido2tools

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	readyTimeout = 10 * time.Second // virtkey must answer CTAPHID INIT within this
	stopTimeout  = 5 * time.Second  // and exit 0 within this after SIGTERM
	toolTimeout  = 60 * time.Second // bound on every tool run
	testPIN      = "4821"
	fidoHeader   = "/usr/include/fido.h"
)

var (
	repoRoot   string
	virtkeyBin string // built once by TestMain
	buildErr   error  // why virtkeyBin is unusable
	shimPath   string // udpshim.so built once by TestMain
	shimErr    error  // why shimPath is unusable; errMissing wraps a missing tool
)

// errMissing marks a build failure caused by a missing tool or header
// (skip, or fail under CI) rather than a broken shim (always fail).
var errMissing = errors.New("missing")

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	repoRoot, err = findRepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fido2tools:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "virtkey-fido2tools-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fido2tools:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if !isShort() {
		shimPath, shimErr = buildShim(dir)
		switch {
		case os.Getenv("VIRTKEY_BIN") != "":
			virtkeyBin = os.Getenv("VIRTKEY_BIN")
		default:
			virtkeyBin, buildErr = buildVirtkey(dir)
		}
	}
	return m.Run()
}

// isShort reports -short before m.Run parses flags.
func isShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			return true
		}
	}
	return false
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// buildShim compiles testdata/libfido2-shim/udpshim.c into dir with the
// Makefile's command line.
func buildShim(dir string) (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("%w: gcc not found (Debian package gcc)", errMissing)
	}
	if _, err := os.Stat(fidoHeader); err != nil {
		return "", fmt.Errorf("%w: %s not found (Debian package libfido2-dev)", errMissing, fidoHeader)
	}
	out := filepath.Join(dir, "udpshim.so")
	src := filepath.Join(repoRoot, "testdata", "libfido2-shim", "udpshim.c")
	cmd := exec.Command(gcc, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
		"-o", out, src, "-ldl")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc %s: %v\n%s", src, err, b)
	}
	return out, nil
}

// buildVirtkey builds ./cmd/virtkey into dir, with -race when the tests run
// under the race detector (VIRTKEY_E2E_RACE=0 turns that off).
func buildVirtkey(dir string) (string, error) {
	bin := filepath.Join(dir, "virtkey")
	args := []string{"build", "-o", bin}
	if raceEnabled && os.Getenv("VIRTKEY_E2E_RACE") != "0" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/virtkey")
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go tool not found: %w", err)
	}
	cmd := exec.Command(goCmd, args...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

func underCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// needTool skips (or, under CI=true, fails) with msg.
func needTool(t *testing.T, msg string) {
	t.Helper()
	msg += " (install with scripts/install-test-deps.sh)"
	if underCI() {
		t.Fatal("CI=true and a required tool is missing: " + msg)
	}
	t.Skip(msg)
}

// needSetup checks everything a test here needs: the virtkey binary, the
// shim and the named programs on PATH.
func needSetup(t *testing.T, programs ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("libfido2/OpenSSH end-to-end test: skipped in -short mode")
	}
	if buildErr != nil {
		t.Fatalf("building virtkey failed: %v", buildErr)
	}
	if shimErr != nil {
		if errors.Is(shimErr, errMissing) {
			needTool(t, "cannot build the libfido2 shim: "+shimErr.Error())
		}
		t.Fatalf("building the libfido2 shim failed: %v", shimErr)
	}
	for _, p := range append([]string{"script"}, programs...) {
		if _, err := exec.LookPath(p); err != nil {
			pkg := map[string]string{
				"fido2-token": "fido2-tools", "fido2-cred": "fido2-tools",
				"fido2-assert": "fido2-tools", "ssh-keygen": "openssh-client",
				"script": "bsdutils",
			}[p]
			needTool(t, fmt.Sprintf("%s not found on PATH (Debian package %s)", p, pkg))
		}
	}
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// keyProc is one running `virtkey run --transport udp`.
type keyProc struct {
	Addr   string // 127.0.0.1:port
	Device string // udp:127.0.0.1:port, the shim's device path

	cmd     *exec.Cmd
	log     *syncBuffer
	done    chan struct{}
	waitErr error
	ended   bool
}

// startKey runs virtkey on a free 127.0.0.1 UDP port with a fresh state
// directory and waits until it answers CTAPHID INIT; cleanup stops it with
// SIGTERM and requires exit status 0.
func startKey(t *testing.T) *keyProc {
	t.Helper()
	stateDir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		k, err := tryStartKey(stateDir)
		if err == nil {
			t.Logf("virtkey on %s (pid %d)", k.Addr, k.cmd.Process.Pid)
			t.Cleanup(func() { k.stop(t) })
			return k
		}
		lastErr = err
	}
	t.Fatalf("starting virtkey: %v", lastErr)
	return nil
}

func tryStartKey(stateDir string) (*keyProc, error) {
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	k := &keyProc{
		Addr: fmt.Sprintf("127.0.0.1:%d", port),
		log:  &syncBuffer{},
		done: make(chan struct{}),
	}
	k.Device = "udp:" + k.Addr
	k.cmd = exec.Command(virtkeyBin, "run",
		"--transport", "udp",
		"--udp-listen", k.Addr,
		"--state-dir", stateDir,
		"--presence", "auto",
		"--reset-window", "0",
	)
	k.cmd.Stdout = k.log
	k.cmd.Stderr = k.log
	if err := k.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		k.waitErr = k.cmd.Wait()
		close(k.done)
	}()
	if err := waitReady(k.Addr, k.done); err != nil {
		k.cmd.Process.Kill()
		<-k.done
		return nil, fmt.Errorf("%v (exit: %v)\nvirtkey output:\n%s", err, k.waitErr, k.log.String())
	}
	return k, nil
}

func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// waitReady polls addr with a CTAPHID INIT until it answers.
func waitReady(addr string, exited <-chan struct{}) error {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("virtkey exited before answering INIT on %s", addr)
		default:
		}
		if last = initOnce(raddr); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no CTAPHID INIT answer from %s within %v (last: %v)", addr, readyTimeout, last)
}

func initOnce(raddr *net.UDPAddr) error {
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, raddr)
	if err != nil {
		return err
	}
	defer c.Close()
	nonce := make([]byte, 8)
	rand.Read(nonce)
	p := make([]byte, 64)
	binary.BigEndian.PutUint32(p[0:4], 0xFFFFFFFF)
	p[4] = 0x86 // INIT
	binary.BigEndian.PutUint16(p[5:7], 8)
	copy(p[7:], nonce)
	if _, err := c.Write(p); err != nil {
		return err
	}
	buf := make([]byte, 1024)
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if n == 64 && buf[4] == 0x86 && bytes.Equal(buf[7:15], nonce) {
			return nil
		}
	}
}

func (k *keyProc) stop(t *testing.T) {
	t.Helper()
	if k.ended {
		return
	}
	k.ended = true
	select {
	case <-k.done:
		t.Errorf("virtkey on %s exited on its own: %v\noutput:\n%s", k.Addr, k.waitErr, k.log.String())
		return
	default:
	}
	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(stopTimeout):
		k.cmd.Process.Kill()
		<-k.done
		t.Errorf("virtkey on %s did not exit within %v of SIGTERM\noutput:\n%s", k.Addr, stopTimeout, k.log.String())
		return
	}
	out := k.log.String()
	switch {
	case k.waitErr != nil:
		t.Errorf("virtkey on %s: exit after SIGTERM: %v (want status 0)\noutput:\n%s", k.Addr, k.waitErr, out)
	case strings.Contains(out, "WARNING: DATA RACE"):
		t.Errorf("virtkey on %s: data race reported\noutput:\n%s", k.Addr, out)
	case t.Failed():
		t.Logf("virtkey on %s output:\n%s", k.Addr, out)
	}
}

// toolEnv is the environment of every tool run: the shim preloaded, the
// key listed by the shim's manifest, and a private HOME so ssh-keygen reads
// and writes nothing of the user's.
func (k *keyProc) toolEnv(home string) []string {
	var env []string
	for _, e := range os.Environ() {
		switch name, _, _ := strings.Cut(e, "="); name {
		case "LD_PRELOAD", "VIRTKEY_UDP_DEVICE", "HOME", "SSH_ASKPASS",
			"SSH_ASKPASS_REQUIRE", "DISPLAY", "SSH_AUTH_SOCK", "SSH_SK_PROVIDER":
			continue
		}
		env = append(env, e)
	}
	return append(env,
		"LD_PRELOAD="+shimPath,
		"VIRTKEY_UDP_DEVICE="+k.Device,
		"HOME="+home,
	)
}

// result is one finished tool run.
type result struct {
	Cmd    string
	Out    string // stdout+stderr (merged, \r removed, under script)
	Err    error
	Prompt int // PIN prompts answered
}

func (r result) String() string {
	return fmt.Sprintf("$ %s\n%s(exit: %v, PIN prompts answered: %d)", r.Cmd, r.Out, r.Err, r.Prompt)
}

// run runs argv in dir with the shim, without a terminal (its own session,
// stdin from /dev/null, so a PIN prompt fails instead of reaching the
// user's terminal).
func (k *keyProc) run(t *testing.T, dir string, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = k.toolEnv(dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = 5 * time.Second
	var out syncBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %v", toolTimeout, err)
	}
	r := result{Cmd: shellJoin(argv), Out: out.String(), Err: err}
	t.Logf("%s", r)
	return r
}

// promptRE matches a PIN prompt at the end of the output so far: libfido2's
// "Enter PIN for udp:…: ", "Enter new PIN for …: ", "Enter the same PIN
// again: " and ssh-keygen's "Enter PIN for authenticator: ".
var promptRE = regexp.MustCompile(`(?i)enter[^\n]*\bpin\b[^\n]*: *$`)

// runPIN runs argv in dir under `script -qec CMD /dev/null` (a pseudo
// terminal, which readpassphrase wants) and types pin each time a PIN
// prompt appears, at most four times. The output is the terminal's: stdout
// and stderr merged.
func (k *keyProc) runPIN(t *testing.T, dir, pin string, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	line := shellJoin(argv)
	cmd := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
	cmd.Dir = dir
	cmd.Env = k.toolEnv(dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout // script writes the terminal to stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("script: %v", err)
	}
	var out []byte
	answered, answeredAt := 0, 0
	buf := make([]byte, 4096)
	for {
		n, rerr := stdout.Read(buf)
		out = append(out, bytes.ReplaceAll(buf[:n], []byte("\r"), nil)...)
		if answered < 4 && len(out) > answeredAt {
			if loc := promptRE.FindIndex(out[answeredAt:]); loc != nil {
				io.WriteString(stdin, pin+"\n")
				answered++
				answeredAt = len(out)
			}
		}
		if rerr != nil {
			break
		}
	}
	err = cmd.Wait()
	stdin.Close()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %v", toolTimeout, err)
	}
	r := result{Cmd: "script -qec " + shellQuote(line) + " /dev/null", Out: string(out), Err: err, Prompt: answered}
	t.Logf("%s", r)
	return r
}

// must fails the test when r failed.
func (k *keyProc) must(t *testing.T, r result) result {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("%s\nvirtkey output:\n%s", r, k.log.String())
	}
	return r
}

var safeArg = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

func shellQuote(s string) string {
	if safeArg.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// outLines splits tool output into trimmed non-empty lines.
func outLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// readLines reads a tool's output file as lines.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return outLines(string(b))
}

func writeLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
