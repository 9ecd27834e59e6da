package doctor

import (
	"os"
	"strings"

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
		p, err := presence.NewPinentry(presence.PinentryOptions{})
		if err != nil {
			c.Status, c.What = Problem, "--presence pinentry: "+err.Error()
			c.Fix = "install pinentry-gnome3, pinentry-qt or pinentry-curses, or set PINENTRY_PROGRAM"
			break
		}
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" && PinentryTTY() == "" {
			c.Status, c.What = Problem, "--presence pinentry: "+p.Program()+" has nowhere to show: no graphical session ($DISPLAY, $WAYLAND_DISPLAY) and no terminal ($GPG_TTY)"
			c.Fix = "run virtkey in a desktop session (for a systemd user unit: systemctl --user import-environment DISPLAY WAYLAND_DISPLAY), or set GPG_TTY for pinentry-curses"
			break
		}
		c.Status, c.What = OK, "presence pinentry: "+p.Program()
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
