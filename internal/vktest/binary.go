package vktest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/virtkey/virtkey/internal/testkit"
)

// build is the binary of this test process: built at most once, removed
// by [Run].
var build struct {
	once sync.Once
	dir  string // temporary directory holding path; "" when not built here
	path string
	err  error
}

// Run runs the tests and then removes the binary [Binary] built, if any.
// It returns m.Run's exit code, for TestMain to pass to os.Exit.
//
// In a probe process (see testkit.SendProbe) it serves the probe instead
// and never returns.
func Run(m *testing.M) int {
	return testkit.Run(m, func() {
		if build.dir != "" {
			os.RemoveAll(build.dir)
		}
	})
}

// Binary returns the virtkey binary, building ./cmd/virtkey on first use
// (with -race when the test binary has it, unless VIRTKEY_E2E_RACE=0), or
// $VIRTKEY_BIN when set. It skips the test in -short mode and fails it
// when the build fails.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the virtkey binary: skipped in -short mode")
	}
	build.once.Do(func() { build.path, build.err = buildBinary() })
	if build.err != nil {
		t.Fatalf("building virtkey: %v", build.err)
	}
	return build.path
}

func buildBinary() (string, error) {
	if bin := os.Getenv("VIRTKEY_BIN"); bin != "" {
		return bin, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go tool not found: %w", err)
	}
	dir, err := os.MkdirTemp("", "virtkey-test-")
	if err != nil {
		return "", err
	}
	build.dir = dir
	bin := filepath.Join(dir, "virtkey")
	args := []string{"build", "-o", bin}
	if raceEnabled && os.Getenv("VIRTKEY_E2E_RACE") != "0" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/virtkey")
	cmd := exec.Command(goCmd, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// RepoRoot is the module root: the first directory above the working
// directory (a test's package directory) that has a go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Environ is the test's environment without the VIRTKEY_* variables
// (a $VIRTKEY_PASSPHRASE or $VIRTKEY_DEVICE of the user's must not reach
// the key or the command under test). Keys run with it.
func Environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIRTKEY_") {
			env = append(env, kv)
		}
	}
	return env
}

// MissingTool skips the test because of what msg says is missing, or fails
// it under CI=true (testkit's rule).
func MissingTool(t testing.TB, msg string) { t.Helper(); testkit.MissingTool(t, msg) }

// RequireTool returns the path of the program name, found on PATH. When it
// is missing it calls [MissingTool], naming the Debian package that has it.
func RequireTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		MissingTool(t, fmt.Sprintf("%s not found on PATH (Debian package %s)", name, debianPackage))
	}
	return p
}
