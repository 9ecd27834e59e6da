package vmtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/virtkey/virtkey/internal/vktest"
)

// preparePlaywright readies the Playwright example for the guest, which
// sees the host's root read-only: the TypeScript client is built
// (clients/js: npm ci, tsc) and the example's packages installed
// (examples/playwright: npm ci — playwright-core, which drives the
// system's Chromium, and the client). The guest script finds the
// repository through share/testdata/vm/repo.env.
func preparePlaywright(t *testing.T, ctx context.Context, root, share string) {
	t.Helper()
	if !vktest.NPMInstalled(root, "clients/js", "typescript") {
		vktest.NPM(t, ctx, root, "clients/js", nil, "ci")
	}
	vktest.NPM(t, ctx, root, "clients/js", nil, "run", "build")
	if !vktest.NPMInstalled(root, "examples/playwright", "playwright-core") {
		vktest.NPM(t, ctx, root, "examples/playwright", nil, "ci")
	}
	env := "REPO=" + root + "\n"
	if err := os.WriteFile(filepath.Join(share, "testdata", "vm", "repo.env"), []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
}
