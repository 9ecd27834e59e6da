package tpmkeys

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestSetEpoch: SetEpoch moves the reference anywhere (down too), and the
// file keeps its form and mode.
func TestSetEpoch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	e := NewEpochFile(dir)
	for _, v := range []uint64{41, 7, 0} {
		if err := e.SetEpoch(ctx, v); err != nil {
			t.Fatal(err)
		}
		if got, err := e.Epoch(ctx); got != v || err != nil {
			t.Fatalf("after SetEpoch(%d): Epoch = %d, %v", v, got, err)
		}
	}
	if v, err := e.AdvanceEpoch(ctx); v != 1 || err != nil {
		t.Fatalf("AdvanceEpoch after SetEpoch(0) = %d, %v", v, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, EpochFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
	}
}
