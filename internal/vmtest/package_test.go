//go:build linux

package vmtest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// buildDeb builds virtkey's .deb the way a release does, with
// scripts/package.sh (nfpm as a pinned tool), into share/dist, where the
// package group's guest installs it from.
func buildDeb(ctx context.Context, root, share string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "package.sh"), "-o", filepath.Join(share, "dist"), "deb")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/package.sh: %v\n%s", err, out)
	}
	return nil
}
