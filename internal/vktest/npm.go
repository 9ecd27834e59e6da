package vktest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// NPM runs npm with args in dir (relative to the module root root),
// holding an exclusive lock on dir: test binaries of several packages run
// at once and share clients/js (its node_modules and dist). A missing npm
// is [MissingTool].
func NPM(t testing.TB, ctx context.Context, root, dir string, env []string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		MissingTool(t, "npm not found (Debian nodejs)")
	}
	path := filepath.Join(root, dir)
	lock, err := os.OpenFile(filepath.Join(path, ".test-lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	cmd := exec.CommandContext(ctx, "npm", args...)
	cmd.Dir = path
	cmd.Env = append(append(os.Environ(), "npm_config_audit=false", "npm_config_fund=false"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm %v in %s: %v\n%s", args, dir, err, out)
	}
	return out
}

// NPMInstalled reports whether dir's node_modules holds pkg.
func NPMInstalled(root, dir, pkg string) bool {
	_, err := os.Stat(filepath.Join(root, dir, "node_modules", pkg, "package.json"))
	return err == nil
}
