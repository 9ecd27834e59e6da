package vmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// preparePlaywright readies the Playwright example for the guest, which
// sees the host's root read-only: the TypeScript client is built
// (clients/js: npm ci, tsc) and the example's packages installed
// (examples/playwright: npm ci — playwright-core, which drives the
// system's Chromium, and the client). The guest script finds the
// repository through share/testdata/vm/repo.env.
func preparePlaywright(t *testing.T, ctx context.Context, root, share string) {
	t.Helper()
	npm := func(dir string, args ...string) {
		cmd := exec.CommandContext(ctx, "npm", args...)
		cmd.Dir = filepath.Join(root, dir)
		cmd.Env = append(os.Environ(), "npm_config_audit=false", "npm_config_fund=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			skipOrFail(t, "npm %v in %s: %v\n%s", args, dir, err, out)
		}
	}
	npm("clients/js", "ci")
	npm("clients/js", "run", "build")
	npm("examples/playwright", "ci")
	env := "REPO=" + root + "\n"
	if err := os.WriteFile(filepath.Join(share, "testdata", "vm", "repo.env"), []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
}
