package server

import (
	"log/slog"
	"strings"
	"testing"
)

func TestBCDVersion(t *testing.T) {
	t.Parallel()
	if got := bcdVersion([3]byte{1, 2, 3}); got != 0x0123 {
		t.Fatalf("bcdVersion(1.2.3) = %#x", got)
	}
}

func TestNewPresenceErrors(t *testing.T) {
	t.Setenv("PINENTRY_PROGRAM", t.TempDir()+"/no-such-pinentry")
	if _, _, err := newPresence(&Config{Presence: "pinentry"}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "PINENTRY_PROGRAM") {
		t.Fatalf("pinentry missing: %v", err)
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	if _, _, err := newPresence(&Config{Presence: "notify"}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "session D-Bus") {
		t.Fatalf("notify without a bus: %v", err)
	}
	if _, _, err := newPresence(&Config{Presence: "terminal", Host: Host{TTY: t.TempDir() + "/no-tty"}}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "controlling terminal") {
		t.Fatalf("terminal without a tty: %v", err)
	}
}
