package fido2tools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/testkit"
	"github.com/virtkey/virtkey/internal/vktest"
)

const (
	toolTimeout = 60 * time.Second // bound on every tool run
	testPIN     = "4821"
	fidoHeader  = "/usr/include/fido.h"
)

var (
	repoRoot string // module root, set by TestMain
	shimDir  string // where the shim is built, made by TestMain

	shimOnce sync.Once
	shimPath string // udpshim.so, built by the first test that needs it
	shimErr  error  // why shimPath is unusable; errMissing wraps a missing tool

	driverOnce sync.Once
	driverPath string // testdata/libfido2-driver's listdriver, built on first use
	driverErr  error
)

// errMissing marks a build failure caused by a missing tool or header
// (skip, or fail under CI) rather than a broken shim (always fail).
var errMissing = errors.New("missing")

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	if repoRoot, err = vktest.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "fido2tools:", err)
		return 1
	}
	if shimDir, err = os.MkdirTemp("", "virtkey-fido2tools-"); err != nil {
		fmt.Fprintln(os.Stderr, "fido2tools:", err)
		return 1
	}
	defer os.RemoveAll(shimDir)
	return vktest.Run(m)
}

// buildC compiles testdata/SRC into dir/OUT with gcc (-O2 -Wall -Wextra
// -Werror) and extra (flags and libraries); fido.h (libfido2-dev) must be
// there.
func buildC(dir, src, out string, extra ...string) (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("%w: gcc not found (Debian package gcc)", errMissing)
	}
	if _, err := os.Stat(fidoHeader); err != nil {
		return "", fmt.Errorf("%w: %s not found (Debian package libfido2-dev)", errMissing, fidoHeader)
	}
	out = filepath.Join(dir, out)
	src = filepath.Join(repoRoot, "testdata", src)
	args := append([]string{"-O2", "-Wall", "-Wextra", "-Werror", "-o", out, src}, extra...)
	if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc %s: %v\n%s", src, err, b)
	}
	return out, nil
}

// buildShim compiles testdata/libfido2-shim/udpshim.c into dir with the
// Makefile's command line.
func buildShim(dir string) (string, error) {
	return buildC(dir, "libfido2-shim/udpshim.c", "udpshim.so", "-shared", "-fPIC", "-ldl")
}

// buildDriver compiles testdata/libfido2-driver/listdriver.c against
// libfido2 into dir.
func buildDriver(dir string) (string, error) {
	return buildC(dir, "libfido2-driver/listdriver.c", "listdriver", "-lfido2")
}

// needDriver is needSetup plus the list driver; it returns the driver's path.
func needDriver(t *testing.T) string {
	t.Helper()
	needSetup(t)
	driverOnce.Do(func() { driverPath, driverErr = buildDriver(shimDir) })
	if driverErr != nil {
		if errors.Is(driverErr, errMissing) {
			vktest.MissingTool(t, "cannot build the libfido2 list driver: "+driverErr.Error())
		}
		t.Fatalf("building the libfido2 list driver failed: %v", driverErr)
	}
	return driverPath
}

// needSetup checks everything a test here needs: the virtkey binary, the
// shim and the named programs on PATH.
func needSetup(t *testing.T, programs ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("libfido2/OpenSSH end-to-end test: skipped in -short mode")
	}
	vktest.Binary(t)
	shimOnce.Do(func() { shimPath, shimErr = buildShim(shimDir) })
	if shimErr != nil {
		if errors.Is(shimErr, errMissing) {
			vktest.MissingTool(t, "cannot build the libfido2 shim: "+shimErr.Error())
		}
		t.Fatalf("building the libfido2 shim failed: %v", shimErr)
	}
	for _, p := range append([]string{"script"}, programs...) {
		pkg := map[string]string{
			"fido2-token": "fido2-tools", "fido2-cred": "fido2-tools",
			"fido2-assert": "fido2-tools", "ssh-keygen": "openssh-client",
			"script": "bsdutils",
		}[p]
		vktest.RequireTool(t, p, pkg)
	}
}

// keyProc is one running `virtkey run --transport udp` with a fresh state
// directory, and the shim's name for it.
type keyProc struct {
	*vktest.Key
	Device string // udp:127.0.0.1:port, the shim's device path
}

// startKey starts a key (see vktest.Start); cleanup stops it with SIGTERM
// and requires exit status 0.
func startKey(t *testing.T) *keyProc {
	t.Helper()
	k := vktest.Start(t, t.TempDir())
	return &keyProc{Key: k, Device: "udp:" + k.Addr}
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
	var out bytes.Buffer // read after Run
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
	stdin, stdout := testkit.Pipes(t, cmd)
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
	err := cmd.Wait()
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
		t.Fatalf("%s\nvirtkey output:\n%s", r, k.Output())
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
