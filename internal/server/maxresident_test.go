package server

import (
	"testing"

	"github.com/virtkey/virtkey/ctap2"
)

// TestMaxResident: --max-resident 0 lifts the limit (ctap2's
// NoResidentLimit: the state directory's free space is the only one); any
// other value is the limit itself.
func TestMaxResident(t *testing.T) {
	t.Parallel()
	for in, want := range map[int]int{0: ctap2.NoResidentLimit, 1: 1, 256: 256, 100000: 100000} {
		if got := maxResident(in); got != want {
			t.Errorf("maxResident(%d) = %d, want %d", in, got, want)
		}
	}
}
