package ctap2

import (
	"testing"

	"github.com/virtkey/virtkey/internal/deptest"
)

// TestDeps keeps the promise of the package doc (see docs/architecture.md):
// ctap2 reaches transports, key custody, storage and the operating system
// only through the interfaces it declares, so it never imports hid,
// tpmkeys, store, go-tpm, bbolt, os or net.
func TestDeps(t *testing.T) {
	t.Parallel()
	deptest.Check(t, ".", []string{
		"github.com/virtkey/virtkey/ctap2", "github.com/virtkey/virtkey/ctap1",
		"github.com/virtkey/virtkey/cose", "github.com/fxamacker/cbor/", "github.com/x448/float16",
		"golang.org/x/crypto/",
	})
	deptest.CheckImports(t, ".", []string{"os", "net", "syscall"})
}
