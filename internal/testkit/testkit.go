// Package testkit holds the test helpers that every other test helper and
// every package may use, because it imports nothing of virtkey: the CI=true
// rule for missing tools, a goroutine-safe buffer, free loopback ports, and
// probes that run as another user. (internal/vktest, which starts keys and
// dials them, builds on it; hid/udp's tests can use this package without an
// import cycle.)
package testkit

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// UnderCI reports whether a missing tool fails the test instead of
// skipping it (CI=true or CI=1).
func UnderCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// MissingTool skips the test because of what msg says is missing, or fails
// it under CI=true.
func MissingTool(t testing.TB, msg string) {
	t.Helper()
	msg += " (install with scripts/install-test-deps.sh)"
	if UnderCI() {
		t.Fatal("CI=true and a required tool is missing: " + msg)
	}
	t.Skip(msg)
}

// FreeUDPAddr returns a 127.0.0.1 UDP address that was free a moment ago.
func FreeUDPAddr(t testing.TB) string {
	t.Helper()
	addr, err := FreeUDP()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreeUDP is [FreeUDPAddr] for callers without a testing.TB.
func FreeUDP() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}

// SyncBuffer is a bytes.Buffer that one goroutine may write while another
// reads it: a process's output, a logger's records.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitOrKill waits for cmd, already told to end (a signal, its input
// closed), to exit; if it has not after grace it is killed. It returns
// whether it had to be killed and cmd.Wait's error.
func WaitOrKill(cmd *exec.Cmd, grace time.Duration) (killed bool, err error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return false, err
	case <-time.After(grace):
		cmd.Process.Kill()
		return true, <-done
	}
}

// BuildVirtkey builds ./cmd/virtkey of the module at the working directory
// into dir and returns the binary's path (the campaign commands use it).
func BuildVirtkey(dir string) (string, error) {
	bin := filepath.Join(dir, "virtkey")
	build := exec.Command("go", "build", "-o", bin, "./cmd/virtkey")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building virtkey: %w", err)
	}
	return bin, nil
}

// Pipes returns the pipes to cmd's standard input and from its standard
// output (cmd not started yet), stopping tb if either cannot be made.
func Pipes(tb testing.TB, cmd *exec.Cmd) (io.WriteCloser, io.ReadCloser) {
	tb.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	return stdin, stdout
}
