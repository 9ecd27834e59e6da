package tpmkeys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// TPMStateFileName is the file in the state directory that ties it to one
// TPM: the pinned SRK Name and the sealed master key's TPM blobs.
const TPMStateFileName = "tpm.json"

// tpmState is the JSON form of dir/tpm.json. Nothing in it is secret
// without the TPM: the sealed object's private blob is encrypted under the
// SRK, whose private key never leaves the TPM.
type tpmState struct {
	Version int `json:"version"`
	// SRKName is the Name (nameAlg ‖ SHA-256 of the public area) of the
	// ECC P-256 SRK the blobs were made under.
	SRKName []byte `json:"srk_name"`
	// MasterPublic and MasterPrivate are the sealed master key's
	// TPM2B_PUBLIC and TPM2B_PRIVATE contents.
	MasterPublic  []byte `json:"master_public"`
	MasterPrivate []byte `json:"master_private"`
	// NVCounter is the handle of the TPM NV counter that is the rollback
	// reference of state.db, and NVBase its value when it was defined
	// (epoch 0). EpochFile says the TPM refused a counter and the
	// reference is the epoch file instead. A tpm.json written before the
	// counters has none of them: OpenTPM adds them.
	NVCounter uint32 `json:"nv_counter,omitempty"`
	NVBase    uint64 `json:"nv_base,omitempty"`
	EpochFile bool   `json:"epoch_file,omitempty"`
}

// readTPMState returns dir/tpm.json, or nil if there is none.
func readTPMState(dir string) (*tpmState, error) {
	path := filepath.Join(dir, TPMStateFileName)
	b, err := readSecretFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st tpmState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("tpmkeys: %s: %w", path, err)
	}
	if st.Version != 1 || len(st.SRKName) == 0 || len(st.MasterPublic) == 0 || len(st.MasterPrivate) == 0 {
		return nil, fmt.Errorf("tpmkeys: %s: unsupported version %d or missing fields", path, st.Version)
	}
	return &st, nil
}

// writeTPMState writes dir/tpm.json (0600, atomically): created once, or
// replaced by ResetKeys.
func writeTPMState(dir string, st *tpmState, replace bool) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("tpmkeys: %w", err)
	}
	return writeFileAtomic(dir, TPMStateFileName, append(b, '\n'), replace)
}
