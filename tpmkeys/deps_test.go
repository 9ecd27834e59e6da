package tpmkeys

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the package's imports to those ARCHITECTURE.md allows.
func TestDeps(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{"github.com/virtkey/virtkey/tpmkeys", "github.com/virtkey/virtkey/cose", "github.com/fxamacker/cbor/", "github.com/x448/float16", "golang.org/x/crypto/", "golang.org/x/sys/", "github.com/google/go-tpm/"}
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
