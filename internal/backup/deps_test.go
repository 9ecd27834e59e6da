package backup

import (
	"testing"

	"github.com/virtkey/virtkey/internal/deptest"
)

// TestDeps: backup works on a state directory's files — the store, the
// software key store, the PIN state — and age; it never reaches a
// transport, the server's wiring or the management client.
func TestDeps(t *testing.T) {
	t.Parallel()
	deptest.Check(t, ".", []string{
		"github.com/virtkey/virtkey/internal/backup", "github.com/virtkey/virtkey/internal/statedir",
		"github.com/virtkey/virtkey/internal/attca", "github.com/virtkey/virtkey/internal/cli",
		"github.com/virtkey/virtkey/store", "github.com/virtkey/virtkey/tpmkeys", "github.com/virtkey/virtkey/ctap2",
		"github.com/virtkey/virtkey/ctap1", "github.com/virtkey/virtkey/cose",
		"filippo.io/age", "filippo.io/hpke", "filippo.io/edwards25519", "filippo.io/nistec",
		"github.com/fxamacker/cbor/", "github.com/x448/float16", "go.etcd.io/bbolt",
		"golang.org/x/crypto/", "golang.org/x/sys/", "golang.org/x/term", "github.com/google/go-tpm/",
	})
}
