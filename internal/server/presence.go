package server

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/doctor"
	"github.com/virtkey/virtkey/presence"
)

// newPresence builds the user-presence provider chosen by --presence. The
// returned function releases it.
func newPresence(c *Config, log *slog.Logger) (ctap2.Presence, func(), error) {
	switch c.Presence {
	case "auto":
		return presence.NewAuto(log), func() {}, nil
	case "terminal":
		tty, err := os.OpenFile(c.Host.ttyPath(), os.O_RDWR, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("--presence terminal needs a controlling terminal (%v); use --presence pinentry or notify in a desktop session, or auto for automated tests", err)
		}
		return presence.NewTerminal(tty, tty), func() { tty.Close() }, nil
	case "pinentry":
		p, problem := doctor.Pinentry(log)
		if problem != nil {
			return nil, nil, problem
		}
		log.Debug("presence: pinentry", "program", p.Program())
		return p, func() {}, nil
	case "notify":
		n, err := presence.DialNotify("", log)
		if err != nil {
			return nil, nil, fmt.Errorf("--presence notify: %w", err)
		}
		return n, func() { n.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--presence %q: want auto, terminal, pinentry or notify", c.Presence)
}
