//go:build linux

package vmtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Swtpm is a software TPM 2.0 on the host that qemu attaches to the guest
// as a TIS device (docs/testing.md): swtpm serves its control channel on a unix
// socket, and qemu's `-tpmdev emulator` hands it the data channel through
// that socket. The guest sees /dev/tpm0 and /dev/tpmrm0.
type Swtpm struct {
	Socket string // the control socket qemu's -chardev connects to
	State  string // swtpm's --tpmstate folder (a fresh TPM per run)
	Log    string // swtpm's own log
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // Wait's result, once done is closed
}

// FindSwtpm returns the swtpm program (Debian package swtpm).
func FindSwtpm() (string, error) {
	p, err := exec.LookPath("swtpm")
	if err != nil {
		return "", envErrorf("swtpm is missing: install swtpm (scripts/install-test-deps.sh does)")
	}
	return p, nil
}

// maxSocketPath is what fits in sockaddr_un.sun_path with its NUL.
const maxSocketPath = 107

// StartSwtpm starts a fresh TPM 2.0 in dir (its state and control socket)
// as a child process, logging to logFile, and waits for its socket. Stop
// ends it. The TPM is manufactured on first use; qemu sends swtpm's INIT
// on every machine reset, and `--flags startup-clear` has swtpm issue
// TPM2_Startup(CLEAR) itself after it — SeaBIOS and the kernel send one
// too, but then the TPM is started whatever the firmware does.
func StartSwtpm(swtpm, dir, logFile string) (*Swtpm, error) {
	s := &Swtpm{
		Socket: filepath.Join(dir, "swtpm.sock"),
		State:  filepath.Join(dir, "state"),
		Log:    logFile,
		done:   make(chan struct{}),
	}
	if len(s.Socket) > maxSocketPath {
		return nil, fmt.Errorf("swtpm socket path %s is longer than %d bytes (set TMPDIR shorter)", s.Socket, maxSocketPath)
	}
	// qemu option values are comma-separated: a comma in the path would
	// split it.
	if strings.ContainsAny(s.Socket, ", ") {
		return nil, fmt.Errorf("swtpm socket path %q: qemu -chardev paths cannot hold commas or spaces", s.Socket)
	}
	if err := os.MkdirAll(s.State, 0o700); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	s.cmd = exec.Command(swtpm, "socket", "--tpm2",
		"--ctrl", "type=unixio,path="+s.Socket,
		"--tpmstate", "dir="+s.State,
		"--flags", "startup-clear",
		"--log", "file="+logFile+",level=1")
	s.cmd.Stdout = out
	s.cmd.Stderr = out
	// Its own process group: a ^C at the terminal reaches go test, whose
	// cleanup stops swtpm by pid, not the TPM in the middle of a command.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting swtpm: %w", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Stat(s.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return s, nil
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("swtpm exited before creating its socket (%v): %s", s.err, strings.TrimSpace(tail(string(b), 10)))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("swtpm created no socket %s within 10 s", s.Socket)
		}
	}
}

// Pid is swtpm's process id.
func (s *Swtpm) Pid() int { return s.cmd.Process.Pid }

// Exited reports whether swtpm has ended (it ends by itself when qemu
// shuts the TPM down on exit).
func (s *Swtpm) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stop kills swtpm by its pid unless it already ended, and reaps it.
func (s *Swtpm) Stop() error {
	if !s.Exited() {
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	return nil
}

// tpmQemuArgs attach the swtpm listening on socket to a guest as a TIS
// device. ppi=off: the guest needs no physical-presence interface (an ACPI
// feature).
func tpmQemuArgs(socket string) []string {
	return []string{
		"-chardev", "socket,id=chrtpm,path=" + socket,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-tis,tpmdev=tpm0,ppi=off",
	}
}
