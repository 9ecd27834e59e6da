// Package deptest checks a package's dependencies against an allow list
// with `go list -deps` (after Tailscale's tstest/deptest), so that the
// dependency direction of ../shared/ARCHITECTURE.md holds. It is for tests
// only: each package's deps_test.go calls [Check] with its own list.
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

// Check fails t for every non-standard package that pkg (an import path, or
// "." for the test's own package) depends on, directly or not, and that
// allowed does not cover. An entry covers the import path itself and every
// path below it ("golang.org/x/sys/" covers golang.org/x/sys/unix).
func Check(t testing.TB, pkg string, allowed []string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			ok = ok || dep == a || strings.HasPrefix(dep, strings.TrimSuffix(a, "/")+"/")
		}
		if !ok {
			t.Errorf("forbidden dependency %s", dep)
		}
	}
}
