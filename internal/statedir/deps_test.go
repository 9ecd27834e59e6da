package statedir

import (
	"testing"

	"github.com/virtkey/virtkey/internal/deptest"
)

// TestDeps: statedir wires the store to key custody; it never reaches a
// transport or the CLI.
func TestDeps(t *testing.T) {
	t.Parallel()
	deptest.Check(t, ".", []string{
		"github.com/virtkey/virtkey/internal/statedir", "github.com/virtkey/virtkey/store",
		"github.com/virtkey/virtkey/tpmkeys", "github.com/virtkey/virtkey/ctap2", "github.com/virtkey/virtkey/ctap1",
		"github.com/virtkey/virtkey/cose", "github.com/fxamacker/cbor/", "github.com/x448/float16",
		"go.etcd.io/bbolt", "golang.org/x/crypto/", "golang.org/x/sys/", "github.com/google/go-tpm/",
	})
}
