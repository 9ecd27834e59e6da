package hidraw

import (
	"testing"

	"github.com/virtkey/virtkey/internal/deptest"
)

// hidraw is the host side of a transport: it needs hid and nothing of the
// protocol (ctap2), the state or the key custody.
func TestDependencies(t *testing.T) {
	deptest.Check(t, ".", []string{"github.com/virtkey/virtkey/hid", "github.com/bearsh/hid"})
}
