package tpmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

func TestMain(m *testing.M) { os.Exit(vktest.Run(m)) }

// The relying party of the tests.
const (
	rpID     = "example.com"
	rpOrigin = "https://example.com"
)

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// needSwtpm returns the swtpm binary, or skips (fails under CI=true).
func needSwtpm(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("swtpm integration test: skipped in -short mode")
	}
	return vktest.RequireTool(t, "swtpm", "swtpm")
}

// swtpm is a running `swtpm socket --tpm2` on 127.0.0.1.
type swtpm struct {
	Dir  string // --tpmstate dir
	Port int    // data port; the control port is Port+1

	cmd  *exec.Cmd
	log  *bytes.Buffer // read only after done is closed
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
		s := &swtpm{Dir: dir, Port: port, log: &bytes.Buffer{}, done: make(chan struct{})}
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
		s.log, s.done = &bytes.Buffer{}, make(chan struct{})
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

// tpmArgs are the `virtkey run` flags of the TPM key store on tpm, then
// extra.
func tpmArgs(tpm string, extra ...string) []string {
	return append([]string{"--keystore", "tpm", "--tpm", tpm}, extra...)
}

// startKey runs virtkey with the TPM key store (see vktest.Start).
// swtpmTest sets up a test of virtkey on swtpm: it needs swtpm and the
// virtkey binary, and starts a swtpm in a new directory tmp. state is
// tmp/state, not yet created.
func swtpmTest(t *testing.T) (tmp string, sw *swtpm, state string) {
	t.Helper()
	needSwtpm(t)
	vktest.Binary(t)
	tmp = t.TempDir()
	return tmp, startSwtpm(t, filepath.Join(tmp, "swtpm")), filepath.Join(tmp, "state")
}

func startKey(t testing.TB, stateDir, tpm string, extra ...string) *vktest.Key {
	t.Helper()
	return vktest.Start(t, stateDir, tpmArgs(tpm, extra...)...)
}

// runFails runs virtkey with args and requires a non-zero exit within 20 s;
// it returns the combined output.
func runFails(t testing.TB, args ...string) string {
	t.Helper()
	bin := vktest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("virtkey %s: want a non-zero exit, got %v:\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
