//go:build linux

package vmtest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

// buildDeb builds virtkey's .deb the way a release does, with
// scripts/package.sh (nfpm as a pinned tool), into share/dist, where the
// package group's guest installs it from.
// prepareDeb builds the .deb the package group installs.
func prepareDeb(t *testing.T, ctx context.Context, root, share string) {
	t.Helper()
	if err := buildDeb(ctx, root, share); err != nil {
		t.Fatalf("preparing the package group: %v", err)
	}
}

func buildDeb(ctx context.Context, root, share string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "package.sh"), "-o", filepath.Join(share, "dist"), "deb")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/package.sh: %v\n%s", err, out)
	}
	return nil
}
