package presence

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/virtkey/virtkey/ctap2"
)

// Pinentry asks the user with a pinentry program (pinentry-gnome3,
// pinentry-qt, pinentry-curses, …), the way gpg-agent does: it starts the
// program for each request and speaks the Assuan protocol on its stdin and
// stdout: SETTITLE, SETDESC (the operation and the RP id), SETOK Allow,
// SETCANCEL Deny, CONFIRM.
//
// OK means approved. ERR with GPG_ERR_CANCELED (99), GPG_ERR_NOT_CONFIRMED
// (114) or GPG_ERR_TIMEOUT (62) means declined. Any other error — the
// program missing, dying, or failing to show a dialog — is returned as is
// (ctap2 answers ERR_OTHER and logs it). When ctx ends (CTAPHID_CANCEL, the
// 30 s user-action timeout) the program is killed and ctx.Err() returned.
// One prompt at a time: a second Confirm waits for the first.
type Pinentry struct {
	program string
	tty     string
	term    string
	log     *slog.Logger
	sem     turn
}

// PinentryOptions configure [NewPinentry].
type PinentryOptions struct {
	// Program is the pinentry to run: a path, or a name looked up in
	// $PATH. Empty means $PINENTRY_PROGRAM, else "pinentry".
	Program string

	// TTYName and TTYType, when set, are sent as OPTION ttyname and
	// OPTION ttytype, which a terminal pinentry (pinentry-curses) needs:
	// its stdin and stdout carry the protocol. gpg-agent takes them from
	// GPG_TTY and TERM.
	TTYName, TTYType string

	// Logger receives a debug record per prompt. Nil discards.
	Logger *slog.Logger
}

// NewPinentry returns a Pinentry, or an error if the program is not found.
func NewPinentry(opts PinentryOptions) (*Pinentry, error) {
	prog := opts.Program
	if prog == "" {
		prog = os.Getenv("PINENTRY_PROGRAM")
	}
	if prog == "" {
		prog = "pinentry"
	}
	path, err := exec.LookPath(prog)
	if err != nil {
		return nil, fmt.Errorf("presence: pinentry program: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pinentry{program: path, tty: opts.TTYName, term: opts.TTYType, log: log, sem: newTurn()}, nil
}

// Program returns the path of the pinentry program.
func (p *Pinentry) Program() string { return p.program }

// Assuan error codes (libgpg-error): the low 16 bits of an ERR code.
const (
	gpgErrTimeout      = 62  // GPG_ERR_TIMEOUT
	gpgErrCanceled     = 99  // GPG_ERR_CANCELED
	gpgErrNotConfirmed = 114 // GPG_ERR_NOT_CONFIRMED
)

// maxAssuanLine is the Assuan line limit (ASSUAN_LINELENGTH), newline
// included.
const maxAssuanLine = 1000

// pinentryQuitGrace is how long a pinentry may take to exit after its
// stdin closes before it is killed.
const pinentryQuitGrace = 2 * time.Second

// Confirm shows the prompt and waits for the answer.
func (p *Pinentry) Confirm(ctx context.Context, req ctap2.PresenceRequest) error {
	if err := p.sem.wait(ctx); err != nil {
		return err
	}
	defer p.sem.done()

	cmd := exec.Command(p.program)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("presence: pinentry: %w", err)
	}
	// Our own pipe for stdout, so that closing our end unblocks a read
	// even if the program left a child holding the other end.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("presence: pinentry: %w", err)
	}
	defer pr.Close()
	cmd.Stdout = pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		stdin.Close()
		return fmt.Errorf("presence: pinentry: %w", err)
	}
	p.log.Debug("pinentry started", "program", p.program, "pid", cmd.Process.Pid, "op", req.Op)

	result := make(chan error, 1)
	go func() { result <- p.converse(bufio.NewReaderSize(pr, maxAssuanLine), stdin, req) }()

	select {
	case err = <-result:
		stdin.Close() // a pinentry exits at the end of its input
		waitOrKill(cmd, pinentryQuitGrace)
		return err
	case <-ctx.Done():
		cmd.Process.Kill()
		stdin.Close()
		pr.Close()
		<-result
		cmd.Wait()
		p.log.Debug("pinentry killed", "op", req.Op, "err", ctx.Err())
		return ctx.Err()
	}
}

// waitOrKill waits for cmd to exit, killing it after grace.
func waitOrKill(cmd *exec.Cmd, grace time.Duration) {
	t := time.AfterFunc(grace, func() { cmd.Process.Kill() })
	cmd.Wait()
	t.Stop()
}

// converse runs the Assuan exchange and returns the answer to CONFIRM.
func (p *Pinentry) converse(r *bufio.Reader, w io.Writer, req ctap2.PresenceRequest) error {
	if err := assuanResult(r); err != nil {
		return fmt.Errorf("presence: pinentry greeting: %w", err)
	}
	var cmds []string
	if p.tty != "" {
		cmds = append(cmds, "OPTION ttyname="+assuanEscape(p.tty, maxAssuanLine-20))
	}
	if p.term != "" {
		cmds = append(cmds, "OPTION ttytype="+assuanEscape(p.term, maxAssuanLine-20))
	}
	for _, c := range cmds {
		// Options a pinentry does not know are not fatal.
		if err := assuanCommand(r, w, c); err != nil {
			var ae *assuanError
			if !errors.As(err, &ae) {
				return fmt.Errorf("presence: pinentry: %w", err)
			}
			p.log.Debug("pinentry refused an option", "option", c, "err", err)
		}
	}
	for _, c := range []string{
		"SETTITLE virtkey security key",
		"SETDESC " + assuanEscape(pinentryDescription(req), maxAssuanLine-10),
		"SETOK Allow",
		"SETCANCEL Deny",
	} {
		if err := assuanCommand(r, w, c); err != nil {
			return fmt.Errorf("presence: pinentry: %s: %w", strings.Fields(c)[0], err)
		}
	}
	err := assuanCommand(r, w, "CONFIRM")
	var ae *assuanError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && (ae.code == gpgErrCanceled || ae.code == gpgErrNotConfirmed || ae.code == gpgErrTimeout):
		return ctap2.ErrDeclined
	}
	return fmt.Errorf("presence: pinentry: CONFIRM: %w", err)
}

// pinentryDescription is the dialog text.
func pinentryDescription(req ctap2.PresenceRequest) string {
	s := "Allow " + Describe(req) + "?"
	if req.UV {
		s += "\n\nAllowing also verifies you to the site (built-in user verification)."
	}
	return s
}

// assuanError is an ERR line.
type assuanError struct {
	code uint32 // low 16 bits of the gpg-error code
	line string
}

func (e *assuanError) Error() string { return e.line }

// assuanCommand sends one command and reads its result.
func assuanCommand(r *bufio.Reader, w io.Writer, line string) error {
	if _, err := io.WriteString(w, line+"\n"); err != nil {
		return err
	}
	return assuanResult(r)
}

// assuanResult reads lines up to OK (nil) or ERR (*assuanError), skipping
// status (S), comment (#) and data (D) lines.
func assuanResult(r *bufio.Reader) error {
	for {
		line, err := readAssuanLine(r)
		if err != nil {
			return err
		}
		switch {
		case line == "OK" || strings.HasPrefix(line, "OK "):
			return nil
		case line == "ERR" || strings.HasPrefix(line, "ERR "):
			f := strings.Fields(line)
			var code uint64
			if len(f) > 1 {
				code, _ = strconv.ParseUint(f[1], 10, 32)
			}
			return &assuanError{code: uint32(code) & 0xFFFF, line: line}
		case strings.HasPrefix(line, "S ") || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "D ") || line == "S":
			continue
		default:
			return fmt.Errorf("unexpected line %q", truncate(line, 60))
		}
	}
}

// readAssuanLine reads one line without its newline, refusing lines over
// the Assuan limit.
func readAssuanLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", errors.New("line longer than the Assuan limit")
	case errors.Is(err, io.EOF) && len(line) == 0:
		return "", errors.New("the program exited without answering")
	case err != nil && !errors.Is(err, io.EOF):
		return "", err
	case err != nil:
		return "", errors.New("the program exited mid-line")
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// assuanEscape percent-escapes s for an Assuan command argument: %, and
// every control character (the description comes partly from the client:
// an RP id or user name must not be able to end the line and inject a
// command). The result is at most max bytes; s is cut at a character
// boundary, never inside an escape.
func assuanEscape(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		var piece string
		switch {
		case r == '%' || r < 0x20 || r == 0x7f:
			piece = fmt.Sprintf("%%%02X", r)
		case r == utf8.RuneError:
			piece = "?"
		default:
			piece = string(r)
		}
		if b.Len()+len(piece) > max {
			break
		}
		b.WriteString(piece)
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
