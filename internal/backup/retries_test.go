package backup_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/ctap2/client"
)

// TestPINRetriesLowerOf: a restore keeps the lower of the backup's PIN
// retry count and the count of the state directory it replaces — in both
// directions — and the PIN still works afterwards. Where only one side has
// a PIN there is nothing to compare.
func TestPINRetriesLowerOf(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// wrong PINs before the backup; after it, the right PIN (which
		// resets the count) if rightAfter, then wrong ones.
		wrongBefore, wrongAfter int
		rightAfter              bool
		want                    int
	}{
		{name: "current lower", wrongBefore: 0, wrongAfter: 2, want: 6},
		{name: "backup lower", wrongBefore: 2, rightAfter: true, want: 6},
		{name: "equal", wrongBefore: 1, wrongAfter: 0, want: 7},
		{name: "both lowered", wrongBefore: 1, rightAfter: true, wrongAfter: 2, want: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := newKeyDir(t, true, tc.wrongBefore)
			archive := create(t, dir)

			k, d := inprocKey(t, dir)
			if tc.rightAfter {
				if _, err := d.GetPINToken(ctx, testPIN, client.PermCredentialMgmt, ""); err != nil {
					t.Fatal(err)
				}
			}
			wrongPINs(t, d, tc.wrongAfter)
			closeKey(t, k)

			r := mustRestore(t, dir, archive, true)
			if int(r.PINRetries) != tc.want || int(r.BackupPINRetries) != 8-tc.wrongBefore || !r.CurrentPINSet {
				t.Fatalf("restored: %+v, want %d retries", r, tc.want)
			}
			k, d = inprocKey(t, dir)
			defer closeKey(t, k)
			if n := pinRetries(t, d); n != tc.want {
				t.Fatalf("the restored key has %d PIN retries, want %d", n, tc.want)
			}
			if _, err := d.GetPINToken(ctx, testPIN, client.PermCredentialMgmt, ""); err != nil {
				t.Fatalf("the PIN after the restore: %v", err)
			}
		})
	}

	// No PIN in the state directory replaced: the backup's count stays.
	t.Run("current without PIN", func(t *testing.T) {
		t.Parallel()
		archive := create(t, newKeyDir(t, true, 2))
		dst := newKeyDir(t, false, 0) // a key of its own, never given a PIN
		r := mustRestore(t, dst, archive, true)
		if r.PINRetries != 6 || r.CurrentPINSet || len(r.Notes) != 0 {
			t.Fatalf("restored: %+v", r)
		}
	})
	// A state directory that cannot be read: restore says so and keeps the
	// backup's count.
	t.Run("current unreadable", func(t *testing.T) {
		t.Parallel()
		archive := create(t, newKeyDir(t, true, 2))
		dst := newKeyDir(t, true, 5)
		if err := os.WriteFile(filepath.Join(dst, "state.db"), bytes.Repeat([]byte{0xAA}, 8192), 0o600); err != nil {
			t.Fatal(err)
		}
		r := mustRestore(t, dst, archive, true)
		if r.PINRetries != 6 || r.CurrentPINSet || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "state.db is damaged") ||
			!strings.Contains(r.Notes[0], "the backup's count is kept") {
			t.Fatalf("restored: %+v", r)
		}
	})
	// No PIN in the backup: nothing to keep, whatever the current count.
	t.Run("backup without PIN", func(t *testing.T) {
		t.Parallel()
		archive := create(t, newKeyDir(t, false, 0))
		dst := newKeyDir(t, true, 2)
		r := mustRestore(t, dst, archive, true)
		if r.PINSet || r.PINRetries != 8 {
			t.Fatalf("restored: %+v", r)
		}
		k, d := inprocKey(t, dst)
		defer closeKey(t, k)
		if err := d.SetPIN(ctx, testPIN); err != nil {
			t.Fatalf("setting a PIN on the restored key: %v", err)
		}
	})
}
