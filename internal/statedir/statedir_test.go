package statedir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// TestOpenStoreKeyFiles: the check that runs before the key store exists.
func TestOpenStoreKeyFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// State without any key store file: refused for each kind of state.
	dir := filepath.Join(t.TempDir(), "state")
	db, err := OpenStore(dir, nil)
	mustOK(t, err)
	mustOK(t, db.PutSetting("state", []byte("pin")))
	mustOK(t, db.Close())
	if _, err := OpenStore(dir, nil); err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Errorf("state without a key file: %v", err)
	}

	// A bound but empty store counts as state too (non-resident passkeys).
	dir = filepath.Join(t.TempDir(), "state")
	db, err = OpenStore(dir, nil)
	mustOK(t, err)
	keys, err := tpmkeys.OpenSoftware(dir)
	mustOK(t, err)
	_, err = Bind(ctx, dir, db, keys, Options{})
	mustOK(t, err)
	mustOK(t, db.Close())
	mustOK(t, os.Remove(filepath.Join(dir, tpmkeys.KeyFileName)))
	if _, err := OpenStore(dir, nil); err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Errorf("bound store without a key file: %v", err)
	}

	// Nothing to protect: a stale epoch file is dropped, the start is new.
	dir = filepath.Join(t.TempDir(), "state")
	mustOK(t, os.MkdirAll(dir, 0o700))
	mustOK(t, os.WriteFile(filepath.Join(dir, tpmkeys.EpochFileName), []byte("9\n"), 0o600))
	db, err = OpenStore(dir, nil)
	mustOK(t, err)
	defer db.Close()
	keys, err = tpmkeys.OpenSoftware(dir)
	mustOK(t, err)
	if _, err := Bind(ctx, dir, db, keys, Options{}); err != nil {
		t.Errorf("new state with a stale epoch file: %v", err)
	}
}

// TestBindExplains: each refusal says what it means and how to recover.
func TestBindExplains(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{store.ErrKeyMismatch, []string{"/d", "replaced", "move the state directory away"}},
		{store.ErrBindingLost, []string{"missing, empty or older", "--accept-rollback", "Restore the newest state.db"}},
		{store.ErrRolledBack, []string{"older copy", "--accept-rollback"}},
		{store.ErrReferenceBehind, []string{"Restore it", "--accept-rollback"}},
	} {
		err := explain(tc.err, "/d")
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: explain lost the error", tc.err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q does not say %q", tc.err, err, w)
			}
		}
	}
}
