package tpmkeys

import (
	"os"
	"path/filepath"
	"testing"
)

// TestEpochFile is the software key store's rollback reference.
func TestEpochFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := NewEpochFile(dir)
	if v, err := e.Epoch(ctx); v != 0 || err != nil {
		t.Fatalf("missing file: Epoch = %d, %v; want 0", v, err)
	}
	for want := uint64(1); want <= 3; want++ {
		if v, err := e.AdvanceEpoch(ctx); v != want || err != nil {
			t.Fatalf("AdvanceEpoch = %d, %v; want %d", v, err, want)
		}
	}
	path := filepath.Join(dir, EpochFileName)
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "3\n" {
		t.Errorf("file holds %q, %v", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", fi.Mode(), err)
	}
	for _, bad := range []string{"", "x\n", "-1\n", "99999999999999999999999\n"} {
		os.WriteFile(path, []byte(bad), 0o600)
		if _, err := e.Epoch(ctx); err == nil {
			t.Errorf("Epoch of %q: no error", bad)
		}
	}
	os.WriteFile(path, []byte("5\n"), 0o600)
	os.Chmod(path, 0o644)
	if _, err := e.Epoch(ctx); err == nil {
		t.Error("a group-readable epoch file was accepted")
	}
}
