package tpmkeys

import (
	"context"
	"path/filepath"
	"strconv"
)

// SetEpoch replaces the file with epoch v, atomically like AdvanceEpoch.
// The reference otherwise only moves up; this is for virtkey restore,
// which gives a restored state directory a reference that continues from
// the one it replaces (internal/backup). ctx is not used.
func (e *EpochFile) SetEpoch(ctx context.Context, v uint64) error {
	return writeFileAtomic(filepath.Dir(e.path), EpochFileName, []byte(strconv.FormatUint(v, 10)+"\n"), true)
}
