package store

import (
	"math"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// BytesPerCredential is the space a resident credential takes in state.db
// on average, rounded up: the index and the page fill included (the scale
// benchmark measures it; a million credentials take under 1 KiB each).
const BytesPerCredential = 1024

// SpaceReserve is the free space RemainingCredentials leaves alone, for
// bbolt's growth, the settings and the rest of the system.
const SpaceReserve = 64 << 20

// RemainingCredentials estimates how many more credentials fit on the
// state directory's file system: the space available to this user, less
// [SpaceReserve], over [BytesPerCredential] (ctap2.CredentialSpace).
func (d *DB) RemainingCredentials() (int, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(d.bolt.Path()), &st); err != nil {
		return 0, wrap("store: free space", err)
	}
	free := st.Bavail * uint64(st.Bsize)
	if free <= SpaceReserve {
		return 0, nil
	}
	return int(min((free-SpaceReserve)/BytesPerCredential, math.MaxInt32)), nil
}
