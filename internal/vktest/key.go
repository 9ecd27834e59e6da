package vktest

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/testkit"
)

// Timeouts of a key's life.
const (
	readyTimeout = 15 * time.Second // a started key must answer CTAPHID INIT within this
	stopTimeout  = 5 * time.Second  // and exit 0 within this after SIGTERM
)

// Key is one running `virtkey run` process, serving CTAPHID over UDP.
type Key struct {
	Addr     string // 127.0.0.1:port
	StateDir string

	args    []string // the extra flags it was started with
	cmd     *exec.Cmd
	log     *SyncBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error         // the process's exit; set before done is closed
	ended   bool          // stopped or killed by the test
}

// RunArgs is the `virtkey run` command line of a UDP key on addr with
// stateDir, followed by args.
func RunArgs(addr, stateDir string, args ...string) []string {
	run := []string{"run",
		"--transport", "udp",
		"--udp-listen", addr,
		"--state-dir", stateDir,
		"--presence", "auto",
		"--reset-window", "0",
	}
	return append(run, args...)
}

// Start runs [Binary] with [RunArgs] on a free 127.0.0.1 UDP port, in the
// environment [Environ], and waits until it answers CTAPHID INIT. At
// cleanup it is stopped with [Key.Stop] unless the test stopped or killed
// it.
func Start(t testing.TB, stateDir string, args ...string) *Key {
	t.Helper()
	k, err := StartBinary(Binary(t), stateDir, args...)
	if err != nil {
		t.Fatalf("starting virtkey: %v", err)
	}
	t.Logf("virtkey started on %s (state %s, pid %d)", k.Addr, stateDir, k.cmd.Process.Pid)
	t.Cleanup(func() { k.Stop(t) })
	return k
}

// StartBinary is [Start] for callers without a testing.TB (testscript
// commands): it runs bin, and the caller stops the key with
// [Key.Terminate].
func StartBinary(bin, stateDir string, args ...string) (*Key, error) {
	var lastErr error
	for range 3 { // another process may take the free port first
		k, err := start(bin, stateDir, args)
		if err == nil {
			return k, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(bin, stateDir string, args []string) (*Key, error) {
	addr, err := testkit.FreeUDP()
	if err != nil {
		return nil, err
	}
	k := &Key{
		Addr:     addr,
		StateDir: stateDir,
		args:     args,
		log:      &SyncBuffer{},
		done:     make(chan struct{}),
	}
	k.cmd = exec.Command(bin, RunArgs(addr, stateDir, args...)...)
	k.cmd.Env = Environ()
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

// Restart stops the key (see [Key.Stop]; nothing happens to a key already
// stopped or killed) and starts it again with the same state directory and
// flags, on a new port.
func (k *Key) Restart(t testing.TB) *Key {
	t.Helper()
	k.Stop(t)
	return Start(t, k.StateDir, k.args...)
}

// Stop sends SIGTERM and requires exit status 0 within 5 s, and no data
// race report in the output (see [Key.Terminate]). It is a no-op when the
// key was already stopped or killed.
func (k *Key) Stop(t testing.TB) {
	t.Helper()
	if k.ended {
		return
	}
	if err := k.Terminate(); err != nil {
		t.Error(err)
	} else if t.Failed() {
		t.Logf("virtkey on %s output:\n%s", k.Addr, k.Output())
	}
}

// Terminate sends SIGTERM and fails unless the key exits with status 0
// within 5 s, without a data race report, and had not exited before.
func (k *Key) Terminate() error {
	k.ended = true
	select {
	case <-k.done:
		return fmt.Errorf("virtkey on %s exited on its own: %v\noutput:\n%s", k.Addr, k.waitErr, k.log.String())
	default:
	}
	if err := k.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM: %v", err)
	}
	select {
	case <-k.done:
	case <-time.After(stopTimeout):
		k.cmd.Process.Kill()
		<-k.done
		return fmt.Errorf("virtkey on %s did not exit within %v of SIGTERM\noutput:\n%s", k.Addr, stopTimeout, k.log.String())
	}
	out := k.log.String()
	switch {
	case k.waitErr != nil:
		return fmt.Errorf("virtkey on %s: exit after SIGTERM: %v (want status 0)\noutput:\n%s", k.Addr, k.waitErr, out)
	case strings.Contains(out, "WARNING: DATA RACE"):
		return fmt.Errorf("virtkey on %s: data race reported\noutput:\n%s", k.Addr, out)
	}
	return nil
}

// Signal sends sig to the key's process (SIGUSR1 power-cycles it).
func (k *Key) Signal(sig os.Signal) error { return k.cmd.Process.Signal(sig) }

// Kill sends SIGKILL (a crash) and waits for the process to go.
func (k *Key) Kill(t testing.TB) {
	t.Helper()
	k.ended = true
	if err := k.cmd.Process.Kill(); err != nil {
		t.Logf("SIGKILL: %v", err)
	}
	<-k.done
}

// Output is what the key printed so far (stdout and stderr).
func (k *Key) Output() string { return k.log.String() }

// FreeUDPAddr returns a 127.0.0.1 UDP address that was free a moment ago.
func FreeUDPAddr(t testing.TB) string { t.Helper(); return testkit.FreeUDPAddr(t) }

// waitReady polls addr with CTAPHID INIT until it answers, readyTimeout
// passes or exited is closed.
func waitReady(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("virtkey exited before answering INIT on %s", addr)
		default:
		}
		if _, last = InitChannel(addr, 200*time.Millisecond); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no CTAPHID INIT answer from %s within %v (last: %v)", addr, readyTimeout, last)
}

// InitChannel sends one CTAPHID INIT on the broadcast channel to the key
// at addr (a raw 64-byte report in a datagram, CTAP 2.1 §11.2.9.1.3),
// checks the reply and returns the channel it allocated.
func InitChannel(addr string, timeout time.Duration) (uint32, error) {
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
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1024)
	for {
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

// initPacket is a CTAPHID INIT request on the broadcast channel.
func initPacket(nonce []byte) []byte {
	p := make([]byte, 64)
	binary.BigEndian.PutUint32(p[0:4], 0xFFFFFFFF)
	p[4] = 0x86 // INIT | 0x80
	binary.BigEndian.PutUint16(p[5:7], uint16(len(nonce)))
	copy(p[7:], nonce)
	return p
}

// SyncBuffer is a bytes.Buffer that one goroutine may write while another
// reads it (testkit's).
type SyncBuffer = testkit.SyncBuffer
