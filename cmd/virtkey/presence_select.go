package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/presence"
)

// newPresence builds the user-presence provider chosen by --presence. The
// returned function releases it.
func newPresence(f *runFlags, log *slog.Logger) (ctap2.Presence, func(), error) {
	switch f.presence {
	case "auto":
		return presence.NewAuto(log), func() {}, nil
	case "terminal":
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("--presence terminal needs a controlling terminal (%v); use --presence auto for automated tests", err)
		}
		return presence.NewTerminal(tty, tty), func() { tty.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--presence %q: want auto or terminal", f.presence)
}
