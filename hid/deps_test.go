package hid

import (
	"testing"

	"github.com/virtkey/virtkey/internal/deptest"
)

// TestDeps keeps the promise of the package doc (see docs/architecture.md):
// hid imports only the standard library — never ctap2, ctap1, tpmkeys or
// store; it reaches the authenticator through [Handler]. Its transports
// hid/udp and hid/uhid carry reports and know no more than hid (hid/udp
// also asks the kernel's socket table who sent a datagram, through x/sys/unix).
func TestDeps(t *testing.T) {
	t.Parallel()
	deptest.Check(t, ".", []string{"github.com/virtkey/virtkey/hid"})
	deptest.Check(t, "./udp", []string{"github.com/virtkey/virtkey/hid", "golang.org/x/sys/unix"})
	deptest.Check(t, "./uhid", []string{"github.com/virtkey/virtkey/hid/uhid"})
}
