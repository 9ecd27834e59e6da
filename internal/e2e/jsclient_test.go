package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

// TestJSClient runs the TypeScript client's node tests (clients/js)
// against this build of virtkey: `npm ci` once (typescript is its only,
// build-time, dependency), then `npm test`.
func TestJSClient(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			vktest.MissingTool(t, tool+" not found (Debian nodejs, npm)")
		}
	}
	bin := vktest.Binary(t)
	dir := filepath.Join(repoRoot, "clients", "js")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "npm", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "VIRTKEY_BIN="+bin, "npm_config_audit=false", "npm_config_fund=false")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("npm %v: %v\n%s", args, err, out)
		}
		t.Logf("npm %v:\n%s", args, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "typescript")); err != nil {
		run("ci", "--no-audit", "--no-fund")
	}
	run("test")
}
