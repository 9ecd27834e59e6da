package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

// TestJSClient runs the TypeScript client's node tests (clients/js)
// against this build of virtkey: `npm ci` once (typescript is its only,
// build-time, dependency), then `npm test` (tsc, node --test).
func TestJSClient(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		vktest.MissingTool(t, "node not found (Debian nodejs)")
	}
	bin := vktest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if !vktest.NPMInstalled(repoRoot, "clients/js", "typescript") {
		vktest.NPM(t, ctx, repoRoot, "clients/js", nil, "ci")
	}
	out := vktest.NPM(t, ctx, repoRoot, "clients/js", []string{"VIRTKEY_BIN=" + bin}, "test")
	t.Logf("npm test:\n%s", out)
}
