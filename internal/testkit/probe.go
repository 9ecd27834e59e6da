package testkit

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A probe is a UDP socket held by a process of another user, for tests of
// who may reach a key: the test binary re-executes itself as that user
// (nobody) and relays datagrams between its socket and the test over
// stdin and stdout. [Run] serves the probe side (internal/vktest.Run calls it too), so a package that uses
// [Probe] needs
//
//	func TestMain(m *testing.M) { os.Exit(testkit.Run(m, nil)) }
//
// Running a process as another user needs root: without it the test is
// skipped, except under CI=true, where it fails.

// probeEnv names the probe's mode in the re-executed test binary:
// "send HOST:PORT" (a socket bound to 127.0.0.1, sending to HOST:PORT) or
// "listen HOST:PORT" (a socket bound to HOST:PORT).
const probeEnv = "VIRTKEY_TEST_PROBE"

// probeCopy is the test binary copied where another user can run it.
var probeCopy struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Probe is a UDP socket of another user's process.
type Probe struct {
	// Addr is the probe socket's own address.
	Addr netip.AddrPort
	// UID is the user the probe runs as.
	UID uint32

	t     testing.TB
	stdin io.WriteCloser
	recv  chan []byte
	cmd   *exec.Cmd
	out   *SyncBuffer
}

// Nobody returns the uid and gid of the user nobody (65534 when the
// system does not name it). It calls [MissingTool] unless the test runs
// as root, which starting a process as nobody needs.
func Nobody(t testing.TB) (uid, gid uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		MissingTool(t, "running a probe as user nobody needs root (sudo go test, or CI as root)")
	}
	uid, gid = 65534, 65534
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(n)
		}
	}
	return uid, gid
}

// SendProbe starts a probe as nobody with a socket bound to 127.0.0.1 that
// sends to target (the key's address); every datagram it receives is
// returned by [Probe.Recv].
func SendProbe(t testing.TB, target string) *Probe {
	t.Helper()
	return startProbe(t, "send "+target)
}

// ListenProbe starts a probe as nobody with a socket bound to addr (for
// instance a key's port while the key is down).
func ListenProbe(t testing.TB, addr string) *Probe {
	t.Helper()
	return startProbe(t, "listen "+addr)
}

func startProbe(t testing.TB, mode string) *Probe {
	t.Helper()
	uid, gid := Nobody(t)
	probeCopy.once.Do(func() { probeCopy.dir, probeCopy.path, probeCopy.err = copyTestBinary() })
	if probeCopy.err != nil {
		t.Fatalf("copying the test binary for a probe: %v", probeCopy.err)
	}
	cmd := exec.Command(probeCopy.path)
	cmd.Dir = "/"
	cmd.Env = []string{probeEnv + "=" + mode, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	stdin, stdout := Pipes(t, cmd)
	p := &Probe{UID: uid, t: t, stdin: stdin, recv: make(chan []byte, 256), cmd: cmd, out: &SyncBuffer{}}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting a probe as uid %d: %v", uid, err)
	}
	t.Cleanup(p.close)
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		p.close()
		t.Fatalf("the probe did not start: %s", p.out.String())
	}
	addr, err := netip.ParseAddrPort(strings.TrimPrefix(lines.Text(), "ADDR "))
	if err != nil {
		t.Fatalf("probe: %q: %v", lines.Text(), err)
	}
	p.Addr = addr
	go func() {
		defer close(p.recv)
		for lines.Scan() {
			b, err := hex.DecodeString(strings.TrimPrefix(lines.Text(), "RECV "))
			if err == nil {
				p.recv <- b
			}
		}
	}()
	return p
}

// Send has the probe send b as one datagram to its target.
func (p *Probe) Send(b []byte) {
	p.t.Helper()
	if _, err := fmt.Fprintf(p.stdin, "%x\n", b); err != nil {
		p.t.Fatalf("probe: %v", err)
	}
}

// Recv returns the next datagram the probe received, or false if none
// came within wait.
func (p *Probe) Recv(wait time.Duration) ([]byte, bool) {
	select {
	case b, ok := <-p.recv:
		return b, ok
	case <-time.After(wait):
		return nil, false
	}
}

func (p *Probe) close() {
	p.stdin.Close()
	WaitOrKill(p.cmd, 5*time.Second)
}

// copyTestBinary copies the running test binary into a new directory that
// every user may enter (go test's own directory is private).
func copyTestBinary() (dir, path string, err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", "", err
	}
	dir, err = os.MkdirTemp("", "virtkey-probe-")
	if err != nil {
		return "", "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return dir, "", err
	}
	path = filepath.Join(dir, "probe")
	src, err := os.Open(exe)
	if err != nil {
		return dir, "", err
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return dir, "", err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return dir, "", err
	}
	return dir, path, dst.Close()
}

// runProbe is the probe process: it never returns.
func runProbe(mode string) {
	kind, addr, _ := strings.Cut(mode, " ")
	err := func() error {
		var pc *net.UDPConn
		var target *net.UDPAddr
		switch kind {
		case "send":
			var err error
			if target, err = net.ResolveUDPAddr("udp", addr); err != nil {
				return err
			}
			pc, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				return err
			}
		case "listen":
			la, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return err
			}
			if pc, err = net.ListenUDP("udp", la); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown probe mode %q", mode)
		}
		fmt.Printf("ADDR %s\n", pc.LocalAddr())
		go func() {
			buf := make([]byte, 2048)
			for {
				n, err := pc.Read(buf)
				if err != nil {
					return
				}
				fmt.Printf("RECV %x\n", buf[:n])
			}
		}()
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			b, err := hex.DecodeString(in.Text())
			if err != nil {
				return err
			}
			if target == nil {
				return errors.New("a listening probe sends nothing")
			}
			if _, err := pc.WriteToUDP(b, target); err != nil {
				return err
			}
		}
		return nil // the test closed stdin
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Run runs the tests, then cleanup (if not nil), and removes the copy of
// the test binary the probes ran. It returns m.Run's exit code, for
// TestMain to pass to os.Exit. In a probe process it serves the probe
// instead and never returns.
func Run(m *testing.M, cleanup func()) int {
	if mode := os.Getenv(probeEnv); mode != "" {
		runProbe(mode)
	}
	code := m.Run()
	if cleanup != nil {
		cleanup()
	}
	if probeCopy.dir != "" {
		os.RemoveAll(probeCopy.dir)
	}
	return code
}
