// Package deptest checks a package's dependencies against an allow list
// with `go list -deps` (after Tailscale's tstest/deptest), so that the
// dependency direction of docs/architecture.md holds. It is for tests
// only: each package's deps_test.go calls [Check] with its own list, and
// [CheckImports] where a standard package (os, net) is off limits.
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

// CheckImports fails t for every package that pkg imports directly and that
// forbidden covers (an entry covers the path and every path below it, so
// "net" covers net/http). It is the rule for standard packages, which
// Check does not look at: fmt itself imports os, so only a package's own
// imports can promise "never os".
func CheckImports(t testing.TB, pkg string, forbidden []string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, pkg).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if imp == f || strings.HasPrefix(imp, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("forbidden import %s", imp)
			}
		}
	}
}
