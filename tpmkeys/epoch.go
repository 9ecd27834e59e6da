package tpmkeys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
)

// EpochFileName is the software rollback reference: a file beside
// master.key (or passphrase.json) holding the epoch of the newest state.db.
const EpochFileName = "epoch"

// RollbackReference is a counter kept outside state.db that only moves
// up; the store records the value it expects (see store.Guard). A restored
// older state.db then shows as an epoch below the reference.
type RollbackReference interface {
	// Epoch returns the current value: 0 if it was never advanced.
	Epoch(ctx context.Context) (uint64, error)
	// AdvanceEpoch raises the value by one and returns it.
	AdvanceEpoch(ctx context.Context) (uint64, error)
	// String names the reference for messages.
	String() string
}

// EpochFile is the [RollbackReference] of the software key store:
// dir/epoch, the decimal epoch and a newline, mode 0600, replaced
// atomically (a temporary file, fsync, rename, directory fsync). It
// catches a state.db restored alone; whoever restores both files together
// (or edits this one) is not caught.
type EpochFile struct {
	path string
}

// NewEpochFile returns the epoch file of state directory dir.
func NewEpochFile(dir string) *EpochFile {
	return &EpochFile{path: filepath.Join(dir, EpochFileName)}
}

// Epoch reads the file; a missing file is epoch 0.
func (e *EpochFile) Epoch(context.Context) (uint64, error) {
	b, err := readSecretFile(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(string(b), "\n"), 10, 64)
	if err != nil || len(b) > 24 {
		return 0, fmt.Errorf("tpmkeys: %s does not hold an epoch", e.path)
	}
	return v, nil
}

// AdvanceEpoch writes the next epoch and returns it.
func (e *EpochFile) AdvanceEpoch(ctx context.Context) (uint64, error) {
	v, err := e.Epoch(ctx)
	if err != nil {
		return 0, err
	}
	v++
	if err := writeFileAtomic(filepath.Dir(e.path), EpochFileName, []byte(strconv.FormatUint(v, 10)+"\n"), true); err != nil {
		return 0, err
	}
	return v, nil
}

// String names the file.
func (e *EpochFile) String() string { return "epoch file " + e.path }
