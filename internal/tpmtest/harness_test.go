package tpmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid/udp"
)

var (
	repoRoot   string
	virtkeyBin string
	buildErr   error
)

func TestMain(m *testing.M) {
	code := func() int {
		var err error
		if repoRoot, err = findRepoRoot(); err != nil {
			buildErr = err
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "virtkey-tpmtest-")
		if err != nil {
			buildErr = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		if !isShort() {
			virtkeyBin, buildErr = buildVirtkey(dir)
		}
		return m.Run()
	}()
	os.Exit(code)
}

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

// buildVirtkey builds ./cmd/virtkey (without -race: the TPM code paths run
// under the race detector in the tpmkeys unit tests, and internal/e2e covers
// a race-built binary). VIRTKEY_BIN tests a prebuilt binary instead.
func buildVirtkey(dir string) (string, error) {
	if b := os.Getenv("VIRTKEY_BIN"); b != "" {
		return b, nil
	}
	bin := filepath.Join(dir, "virtkey")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/virtkey")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/virtkey: %v\n%s", err, out)
	}
	return bin, nil
}

func underCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// needSwtpm returns the swtpm binary, or skips (fails under CI=true).
func needSwtpm(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("swtpm integration test: skipped in -short mode")
	}
	p, err := exec.LookPath("swtpm")
	if err != nil {
		msg := "swtpm not found (Debian: apt-get install swtpm swtpm-tools, or scripts/install-test-deps.sh)"
		if underCI() {
			t.Fatal("CI=true and a required tool is missing: " + msg)
		}
		t.Skip(msg)
	}
	return p
}

func needBinary(t testing.TB) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building virtkey: %v", buildErr)
	}
	if virtkeyBin == "" {
		t.Skip("virtkey not built (-short)")
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

// swtpm is a running `swtpm socket --tpm2` on 127.0.0.1.
type swtpm struct {
	Dir  string // --tpmstate dir
	Port int    // data port; the control port is Port+1

	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// Addr is the --tpm value for virtkey.
func (s *swtpm) Addr() string { return fmt.Sprintf("tcp://127.0.0.1:%d", s.Port) }

// startSwtpm starts swtpm with state in dir (created if needed) and waits
// until its data port accepts connections. It is stopped at cleanup.
//
// swtpm runs in the foreground as our child (not --daemon), so that the test
// reaps it and captures its log; it is stopped by its pid.
func startSwtpm(t testing.TB, dir string) *swtpm {
	t.Helper()
	bin := needSwtpm(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 5 {
		port, err := freeTCPPortPair()
		if err != nil {
			lastErr = err
			continue
		}
		s := &swtpm{Dir: dir, Port: port, log: &syncBuffer{}, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "socket", "--tpm2",
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
			"--tpmstate", "dir="+dir,
			"--flags", "not-need-init,startup-clear")
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("starting swtpm: %v", err)
		}
		go func() { s.cmd.Wait(); close(s.done) }()
		if err := s.waitReady(); err != nil {
			s.kill()
			lastErr = fmt.Errorf("%v; swtpm log:\n%s", err, s.log.String())
			continue
		}
		t.Logf("swtpm started on 127.0.0.1:%d (pid %d, state %s)", port, s.cmd.Process.Pid, dir)
		t.Cleanup(s.kill)
		return s
	}
	t.Fatalf("starting swtpm: %v", lastErr)
	return nil
}

func (s *swtpm) waitReady() error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("swtpm exited")
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("swtpm did not open its port within 10 s")
}

// kill stops swtpm (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (s *swtpm) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// restart stops swtpm and starts it again on the same ports and state
// (as after a reboot of the machine that holds the TPM).
func (s *swtpm) restart(t testing.TB) {
	t.Helper()
	s.kill()
	args := s.cmd.Args
	var err error
	for range 50 { // the old process's port may linger for a moment
		s.log, s.done = &syncBuffer{}, make(chan struct{})
		s.cmd = exec.Command(args[0], args[1:]...)
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		if err = s.cmd.Start(); err != nil {
			t.Fatalf("restarting swtpm: %v", err)
		}
		go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(s.cmd, s.done)
		if err = s.waitReady(); err == nil {
			t.Logf("swtpm restarted (pid %d)", s.cmd.Process.Pid)
			return
		}
		s.kill()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("restarting swtpm: %v\n%s", err, s.log.String())
}

// freeTCPPortPair finds P such that 127.0.0.1:P and :P+1 are free.
func freeTCPPortPair() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, errors.New("no free pair of TCP ports")
}

func freeUDPAddr() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}

// keyProc is one running `virtkey run`.
type keyProc struct {
	Addr string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

// runArgs are the `virtkey run` arguments for a UDP key on addr.
func runArgs(addr, stateDir, tpm string, extra ...string) []string {
	args := []string{"run", "--transport", "udp", "--udp-listen", addr, "--state-dir", stateDir,
		"--presence", "auto", "--reset-window", "0", "--keystore", "tpm", "--tpm", tpm}
	return append(args, extra...)
}

// startKey runs virtkey with the TPM key store and waits until it answers
// CTAPHID INIT. It is stopped (SIGTERM, must exit 0) at cleanup or by Stop.
func startKey(t testing.TB, stateDir, tpm string, extra ...string) *keyProc {
	t.Helper()
	needBinary(t)
	addr, err := freeUDPAddr()
	if err != nil {
		t.Fatal(err)
	}
	k := &keyProc{Addr: addr, log: &syncBuffer{}, done: make(chan struct{})}
	k.cmd = exec.Command(virtkeyBin, runArgs(addr, stateDir, tpm, extra...)...)
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.err = k.cmd.Wait(); close(k.done) }()
	t.Cleanup(func() { k.Stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-k.done:
			t.Fatalf("virtkey exited at start (%v):\n%s", k.err, k.log.String())
		default:
		}
		if pingKey(addr) == nil {
			return k
		}
		if time.Now().After(deadline) {
			t.Fatalf("virtkey did not answer on %s within 15 s:\n%s", addr, k.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pingKey(addr string) error {
	conn, err := udp.Dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = client.Open(ctx, conn, nil)
	return err
}

// Stop sends SIGTERM and requires a clean exit within 5 s.
func (k *keyProc) Stop(t testing.TB) {
	t.Helper()
	select {
	case <-k.done:
		return
	default:
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
		if k.err != nil {
			t.Errorf("virtkey exited with %v:\n%s", k.err, k.log.String())
		}
	case <-time.After(5 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
		t.Errorf("virtkey did not stop within 5 s:\n%s", k.log.String())
	}
}

// device opens a CTAP2 client on the key.
func (k *keyProc) device(t testing.TB) *client.Device {
	t.Helper()
	conn, err := udp.Dial(k.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := client.Open(ctx, conn, &client.Options{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("CTAPHID INIT: %v\n%s", err, k.log.String())
	}
	return d
}

// runFails runs virtkey with args and requires a non-zero exit within 20 s;
// it returns the combined output.
func runFails(t testing.TB, args ...string) string {
	t.Helper()
	needBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, virtkeyBin, args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("virtkey %s: want a non-zero exit, got %v:\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
