package server

import (
	"bytes"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/virtkey/virtkey/internal/attca"
	"github.com/virtkey/virtkey/internal/vktest"
)

// TestAttestationMigratesPlaintextCA: a state directory whose attestation
// keys an older virtkey left in plaintext gets them sealed at start, and
// the key attests with the same certificates as before.
func TestAttestationMigratesPlaintextCA(t *testing.T) {
	t.Parallel()
	stateDir := t.TempDir()
	src := filepath.Join("..", "..", "internal", "attca", "testdata", "plaintext-v0", attca.DirName)
	d := filepath.Join(stateDir, attca.DirName)
	os.Mkdir(d, 0o700)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		os.WriteFile(filepath.Join(d, e.Name()), b, 0o600)
	}
	sealer := vktest.DeviceSealer(t, stateDir)
	f := Default()
	f.StateDir = stateDir
	// The fixture's certificates carry attca_test.go's AAGUID.
	aaguid := [16]byte{0xA0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	c, err := loadAttestation(&f, aaguid, sealer, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for file, chain := range map[string][][]byte{attca.BatchCertFile: c.batch.Chain, attca.EnterpriseCertFile: c.enterprise.Chain} {
		b, _ := os.ReadFile(filepath.Join(src, file))
		blk, _ := pem.Decode(b)
		if len(chain) != 1 || !bytes.Equal(chain[0], blk.Bytes) {
			t.Errorf("%s: the attestation chain changed in the migration", file)
		}
	}
	vktest.NoPlaintextKeys(t, stateDir)
}
