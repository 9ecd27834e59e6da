package main

import (
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
)

func TestUHIDOpenErrorExplains(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want []string
	}{
		{&fs.PathError{Op: "open", Path: "/dev/uhid", Err: fs.ErrNotExist},
			[]string{"/dev/uhid does not exist", "sudo modprobe uhid", "--transport udp"}},
		{fmt.Errorf("uhid: %w", &fs.PathError{Op: "open", Path: "/dev/uhid", Err: fs.ErrPermission}),
			[]string{"cannot be opened for reading and writing", "contrib/udev/70-virtkey-uhid.rules",
				"usermod -aG virtkey", "udevadm trigger", "--transport udp"}},
	} {
		msg := uhidOpenError("/dev/uhid", tt.err).Error()
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("message for %v lacks %q:\n%s", tt.err, w, msg)
			}
		}
	}
}

func TestBCDVersion(t *testing.T) {
	t.Parallel()
	if got := bcdVersion([3]byte{1, 2, 3}); got != 0x0123 {
		t.Fatalf("bcdVersion(1.2.3) = %#x", got)
	}
}

func TestNewPresenceErrors(t *testing.T) {
	t.Setenv("PINENTRY_PROGRAM", t.TempDir()+"/no-such-pinentry")
	if _, _, err := newPresence(&runFlags{presence: "pinentry"}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "PINENTRY_PROGRAM") {
		t.Fatalf("pinentry missing: %v", err)
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	if _, _, err := newPresence(&runFlags{presence: "notify"}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "session D-Bus") {
		t.Fatalf("notify without a bus: %v", err)
	}
}
