package tpmkeys

import (
	"testing"

	"github.com/virtkey/virtkey/internal/deptest"
)

// TestDeps keeps the package's imports to those docs/architecture.md allows.
func TestDeps(t *testing.T) {
	t.Parallel()
	deptest.Check(t, ".", []string{
		"github.com/virtkey/virtkey/tpmkeys",
		"github.com/virtkey/virtkey/cose", "github.com/fxamacker/cbor/", "github.com/x448/float16",
		"golang.org/x/crypto/", "golang.org/x/sys/", "github.com/google/go-tpm/",
	})
}
