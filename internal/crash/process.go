package crash

import (
	"context"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/virtkey/virtkey/internal/testkit"
	"github.com/virtkey/virtkey/store"
)

// Process is the kill -9 campaign's [Key]: `virtkey run` over UDP on a
// loopback port, cut with SIGKILL. Before each start after the first it
// runs store.Check on the state.db the kill left.
type Process struct {
	Bin string // the virtkey binary
	Dir string // the state directory (made if missing)

	cmd     *exec.Cmd
	out     *testkit.SyncBuffer
	started bool
}

// Start implements [Key].
func (p *Process) Start(ctx context.Context) (addr string, check error, err error) {
	if p.started {
		check = store.Check(filepath.Join(p.Dir, "state.db"))
	}
	if addr, err = testkit.FreeUDP(); err != nil {
		return "", nil, err
	}
	p.out = &testkit.SyncBuffer{}
	p.cmd = exec.Command(p.Bin, "run", "--transport", "udp", "--udp-listen", addr, "--state-dir", p.Dir,
		"--presence", "auto", "--reset-window", "0", "--max-resident", "0")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.cmd = nil
		return "", nil, err
	}
	p.started = true
	return addr, check, nil
}

// Cut implements [Key]: SIGKILL.
func (p *Process) Cut() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
}

// Stop implements [Key]: SIGTERM, SIGKILL after 10 s.
func (p *Process) Stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	testkit.WaitOrKill(p.cmd, 10*time.Second)
	p.cmd = nil
}

// Output implements [Key].
func (p *Process) Output() string {
	if p.out == nil {
		return ""
	}
	return p.out.String()
}
