//go:build linux

package vmtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// guestPrograms are what TestVM's guests run: virtkey and the helpers.
var guestPrograms = []string{"./cmd/virtkey", "./internal/vmtest/hidtool", "./internal/vmtest/rp", "./examples/playwright/demo-rp"}

// buildGuestFiles builds the packages pkgs (of the module at root) into
// share/bin (static, no race detector: the guest runs them under TCG) and
// copies the scenario scripts to share/testdata/vm.
func buildGuestFiles(ctx context.Context, root, share string, pkgs ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is not on PATH: %w", err)
	}
	bin := filepath.Join(share, "bin")
	cmd := exec.CommandContext(ctx, goBin, append([]string{"build", "-o", bin + string(os.PathSeparator)}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	src := filepath.Join(root, "testdata", "vm")
	dst := filepath.Join(share, "testdata", "vm")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
