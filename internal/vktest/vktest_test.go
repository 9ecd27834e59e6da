package vktest_test

import (
	"os"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/vktest"
)

func TestMain(m *testing.M) { os.Exit(vktest.Run(m)) }

// A key answers INIT after a start, a restart and a crash, always on the
// same state directory.
func TestKeyLifecycle(t *testing.T) {
	state := t.TempDir()
	k := vktest.Start(t, state, "--log-level", "debug")
	if _, err := vktest.InitChannel(k.Addr, time.Second); err != nil {
		t.Fatalf("INIT: %v", err)
	}
	k = k.Restart(t)
	if _, err := vktest.InitChannel(k.Addr, time.Second); err != nil {
		t.Fatalf("INIT after a restart: %v", err)
	}
	k.Kill(t)
	k = k.Restart(t)
	if k.StateDir != state {
		t.Errorf("restarted on %s, want %s", k.StateDir, state)
	}
	if _, err := vktest.InitChannel(k.Addr, time.Second); err != nil {
		t.Fatalf("INIT after SIGKILL and a restart: %v", err)
	}
	if k.Output() == "" {
		t.Error("no output captured at --log-level debug")
	}
}

// A missing tool skips the test outside CI.
func TestRequireToolSkips(t *testing.T) {
	t.Setenv("CI", "")
	if p := vktest.RequireTool(t, "go", "golang-go"); p == "" {
		t.Fatal("no path for go")
	}
	t.Run("missing", func(t *testing.T) {
		defer func() {
			if !t.Skipped() {
				t.Error("not skipped")
			}
		}()
		vktest.RequireTool(t, "virtkey-no-such-tool", "none")
		t.Error("RequireTool returned for a missing tool")
	})
}
