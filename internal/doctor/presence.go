package doctor

import (
	"log/slog"
	"os"
	"strings"
	"syscall"

	"github.com/virtkey/virtkey/presence"
)

// presenceCheck checks what --presence needs: a controlling terminal, a
// pinentry program and somewhere for it to show, or the session D-Bus.
func presenceCheck(s Setup) Check {
	c := Check{Check: "presence"}
	switch s.Presence {
	case "auto":
		c.Status, c.What = OK, "presence auto approves every request without asking (tests only)"
	case "terminal":
		tty, err := os.OpenFile(s.TTYPath, os.O_RDWR, 0)
		if err != nil {
			c.Status, c.What = Problem, "--presence terminal needs a controlling terminal, and "+s.TTYPath+" cannot be opened: "+err.Error()
			c.Fix = "run virtkey in a terminal; under systemd or in a desktop session use --presence notify or pinentry"
			break
		}
		tty.Close()
		c.Status, c.What = OK, "presence terminal: requests are approved on "+s.TTYPath
	case "pinentry":
		p, problem := Pinentry(nil)
		if problem != nil {
			c.Status, c.What, c.Fix = Problem, problem.What, problem.Fix
			break
		}
		c.Status, c.What = OK, "presence pinentry: "+p.Program()+" shows on "+pinentryWhere()
	case "notify":
		n, err := presence.DialNotify("", nil)
		if err != nil {
			c.Status, c.What = Problem, "--presence notify: "+err.Error()
			c.Fix = "run virtkey inside a desktop session (a systemd user unit is), or use --presence pinentry or terminal"
			break
		}
		n.Close()
		c.Status, c.What = OK, "presence notify: the session D-Bus answers"
	default:
		c.Status, c.What, c.Fix = Problem, "--presence "+s.Presence+": unknown", "want auto, terminal, pinentry or notify"
	}
	return c
}

// ProblemError is a problem doctor reports as a check and "virtkey run"
// refuses to start with: "WHAT (FIX)".
type ProblemError struct{ What, Fix string }

func (e *ProblemError) Error() string { return e.What + " (" + e.Fix + ")" }

// Pinentry finds the program --presence pinentry runs ($PINENTRY_PROGRAM,
// else pinentry on $PATH) and checks that its dialog has somewhere to show:
// a graphical session ($DISPLAY or $WAYLAND_DISPLAY) or a terminal
// ([PinentryTTY]) that opens. Without either a pinentry fails every request
// ("Inappropriate ioctl for device" from a curses pinentry under systemd),
// so "virtkey run" refuses to start with this error and "virtkey doctor"
// reports it; both say the same.
func Pinentry(log *slog.Logger) (*presence.Pinentry, *ProblemError) {
	tty := PinentryTTY()
	p, err := presence.NewPinentry(presence.PinentryOptions{TTYName: tty, TTYType: os.Getenv("TERM"), Logger: log})
	if err != nil {
		return nil, &ProblemError{What: "--presence pinentry: " + err.Error(),
			Fix: "install pinentry-gnome3, pinentry-qt or pinentry-curses, or set PINENTRY_PROGRAM"}
	}
	if pinentryWhere() == "" {
		what := "--presence pinentry: " + p.Program() + " has nowhere to show: no graphical session ($DISPLAY, $WAYLAND_DISPLAY) and no terminal ($GPG_TTY, stdin)"
		if tty != "" {
			what = "--presence pinentry: " + p.Program() + " has nowhere to show: no graphical session ($DISPLAY, $WAYLAND_DISPLAY), and its terminal " + tty + " does not open"
		}
		return nil, &ProblemError{What: what,
			Fix: "run virtkey in a desktop session (for a systemd user unit: systemctl --user import-environment DISPLAY WAYLAND_DISPLAY), on a terminal, or with GPG_TTY set for pinentry-curses; or use --presence notify"}
	}
	return p, nil
}

// pinentryWhere is where a pinentry would show its dialog: the graphical
// session, else the terminal, else "" (nowhere).
func pinentryWhere() string {
	for _, v := range []string{"WAYLAND_DISPLAY", "DISPLAY"} {
		if d := os.Getenv(v); d != "" {
			return "the graphical session ($" + v + "=" + d + ")"
		}
	}
	if tty := PinentryTTY(); tty != "" {
		if f, err := os.OpenFile(tty, os.O_RDWR|syscall.O_NOCTTY, 0); err == nil {
			f.Close()
			return "the terminal " + tty
		}
	}
	return ""
}

// PinentryTTY is the terminal a curses pinentry should use, as gpg-agent
// finds it: $GPG_TTY, else the terminal on this process's stdin, else ""
// (a graphical pinentry needs none).
func PinentryTTY() string {
	if t := os.Getenv("GPG_TTY"); t != "" {
		return t
	}
	if t, err := os.Readlink("/proc/self/fd/0"); err == nil && (strings.HasPrefix(t, "/dev/pts/") || strings.HasPrefix(t, "/dev/tty")) {
		return t
	}
	return ""
}
