package e2e

import (
	"bufio"
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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the harness.
const (
	readyTimeout = 10 * time.Second // virtkey must answer CTAPHID INIT within this
	stopTimeout  = 5 * time.Second  // and exit 0 within this after SIGTERM
)

// pythonPath is Debian's interpreter, which has python3-fido2 0.9.1 (a pyenv
// python earlier on PATH would not).
const pythonPath = "/usr/bin/python3"

var (
	repoRoot   string // module root (has go.mod)
	virtkeyBin string // built once by TestMain
	buildErr   error  // why virtkeyBin is unusable
)

// isShort reports -short before m.Run parses flags for us.
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

// buildVirtkey builds ./cmd/virtkey into dir. When the tests run under the
// race detector the binary is built with -race too, so data races in the
// server surface as a non-zero exit status (66) at SIGTERM.
// VIRTKEY_E2E_RACE=0 turns that off.
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
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped in -short mode")
	}
	if buildErr != nil {
		t.Fatalf("building virtkey failed: %v", buildErr)
	}
}

// underCI reports whether a missing tool must fail instead of skip.
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

// needPythonFIDO2 checks for /usr/bin/python3 with fido2 0.9.x and pytest.
func needPythonFIDO2(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(pythonPath); err != nil {
		needTool(t, pythonPath+" not found")
	}
	out, err := exec.Command(pythonPath, "-c",
		"import fido2, pytest; print(fido2.__version__)").CombinedOutput()
	if err != nil {
		needTool(t, fmt.Sprintf("python modules fido2/pytest not importable by %s: %v: %s",
			pythonPath, err, bytes.TrimSpace(out)))
	}
	if v := strings.TrimSpace(string(out)); !strings.HasPrefix(v, "0.9.") {
		needTool(t, "python-fido2 0.9.x needed (Debian python3-fido2), found "+v)
	}
}

// syncBuffer collects a process's output for failure reports.
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

// keyProc is one running `virtkey run` process.
type keyProc struct {
	Addr     string // 127.0.0.1:port
	StateDir string

	cmd     *exec.Cmd
	log     *syncBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error
	ended   bool // stopped or killed by the test
}

// startKey runs virtkey on a free 127.0.0.1 UDP port with the given state
// directory and waits until it answers CTAPHID INIT. It is stopped with
// SIGTERM at cleanup (which must make it exit 0 within 5 s). extra flags
// are appended to the `run` command line.
func startKey(t *testing.T, stateDir string, extra ...string) *keyProc {
	t.Helper()
	needBinary(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		k, err := tryStartKey(stateDir, extra)
		if err == nil {
			t.Logf("virtkey started on %s (state %s, pid %d)", k.Addr, stateDir, k.cmd.Process.Pid)
			t.Cleanup(func() { k.Stop(t) })
			return k
		}
		lastErr = err
	}
	t.Fatalf("starting virtkey: %v", lastErr)
	return nil
}

func tryStartKey(stateDir string, extra []string) (*keyProc, error) {
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	k := &keyProc{
		Addr:     fmt.Sprintf("127.0.0.1:%d", port),
		StateDir: stateDir,
		log:      &syncBuffer{},
		done:     make(chan struct{}),
	}
	args := []string{"run",
		"--transport", "udp",
		"--udp-listen", k.Addr,
		"--state-dir", stateDir,
		"--presence", "auto",
		"--reset-window", "0",
	}
	k.cmd = exec.Command(virtkeyBin, append(args, extra...)...)
	k.cmd.Stdout = k.log
	k.cmd.Stderr = k.log
	if err := k.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		k.waitErr = k.cmd.Wait()
		close(k.done)
	}()
	if err := waitReady(k.Addr, readyTimeout, k.done); err != nil {
		k.cmd.Process.Kill()
		<-k.done
		return nil, fmt.Errorf("%v (exit: %v)\nvirtkey output:\n%s", err, k.waitErr, k.log.String())
	}
	return k, nil
}

// freeUDPPort asks the kernel for a free port on 127.0.0.1.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// initPacket is a CTAPHID INIT request on the broadcast channel.
func initPacket(nonce []byte) []byte {
	p := make([]byte, 64)
	binary.BigEndian.PutUint32(p[0:4], 0xFFFFFFFF)
	p[4] = 0x86 // INIT | 0x80
	binary.BigEndian.PutUint16(p[5:7], uint16(len(nonce)))
	copy(p[7:], nonce)
	return p
}

// ctaphidInit sends one broadcast INIT to addr and checks the reply. It
// returns the allocated channel.
func ctaphidInit(addr string, timeout time.Duration) (uint32, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 0, err
	}
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, raddr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	nonce := make([]byte, 8)
	rand.Read(nonce)
	if _, err := c.Write(initPacket(nonce)); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1024)
	for {
		c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err != nil {
			return 0, err
		}
		r := buf[:n]
		if n != 64 {
			return 0, fmt.Errorf("INIT reply is %d bytes, want 64: %x", n, r)
		}
		if binary.BigEndian.Uint32(r[0:4]) != 0xFFFFFFFF || r[4] != 0x86 {
			continue // not our answer (keepalive or stray report)
		}
		bcnt := binary.BigEndian.Uint16(r[5:7])
		if bcnt < 17 {
			return 0, fmt.Errorf("INIT reply BCNT %d < 17: %x", bcnt, r)
		}
		if !bytes.Equal(r[7:15], nonce) {
			continue // an answer to an older INIT
		}
		cid := binary.BigEndian.Uint32(r[15:19])
		if cid == 0 || cid == 0xFFFFFFFF {
			return 0, fmt.Errorf("INIT allocated invalid CID %#x: %x", cid, r)
		}
		return cid, nil
	}
}

// waitReady polls addr with CTAPHID INIT until it answers, timeout passes or
// exited is closed.
func waitReady(addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("virtkey exited before answering INIT on %s", addr)
		default:
		}
		if _, err := ctaphidInit(addr, 200*time.Millisecond); err == nil {
			return nil
		} else {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no CTAPHID INIT answer from %s within %v (last: %v)", addr, timeout, last)
}

// Stop sends SIGTERM and requires exit status 0 within 5 s. It is a no-op
// when the process was already stopped or killed.
func (k *keyProc) Stop(t *testing.T) {
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
	if err := k.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
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

// Kill sends SIGKILL (a crash) and waits for the process to go.
func (k *keyProc) Kill(t *testing.T) {
	t.Helper()
	k.ended = true
	if err := k.cmd.Process.Kill(); err != nil {
		t.Logf("SIGKILL: %v", err)
	}
	<-k.done
}

// Output is what virtkey printed so far.
func (k *keyProc) Output() string { return k.log.String() }

// pythonCmd prepares /usr/bin/python3 with args, run from the repository
// root, talking to addr.
func pythonCmd(ctx context.Context, addr string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, pythonPath, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(),
		"VIRTKEY_UDP="+addr,
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONUNBUFFERED=1",
	)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// scenario runs testdata/python/scenario.py and returns its stdout; a
// non-zero exit fails the test.
func scenario(t *testing.T, k *keyProc, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := pythonCmd(ctx, k.Addr, append([]string{"testdata/python/scenario.py"}, args...)...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("scenario %s stderr:\n%s", strings.Join(args, " "), s)
	}
	if err != nil {
		t.Fatalf("scenario.py %s: %v\nstdout:\n%s\nstderr:\n%s\nvirtkey output:\n%s",
			strings.Join(args, " "), err, stdout.String(), stderr.String(), k.Output())
	}
	return stdout.String()
}

// prefixWriter copies complete lines to w with a prefix.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *prefixWriter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.buf = nil
	}
}

// lines splits output into non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
