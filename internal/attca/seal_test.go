package attca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/internal/vktest"
	"github.com/virtkey/virtkey/tpmkeys"
)

// sealerFor returns the device sealer of an in-memory key store keyed by
// a master key of fill bytes.
func sealerFor(fill byte) Sealer {
	ks, err := tpmkeys.NewSoftware(bytes.Repeat([]byte{fill}, tpmkeys.MasterKeySize))
	if err != nil {
		panic(err)
	}
	d, err := ks.DeviceSealer(context.Background())
	if err != nil {
		panic(err)
	}
	return d
}

// testSealer seals the keys of the tests.
var testSealer = sealerFor(1)

func TestOpenSealsKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Open(dir, aaguidA, now, nil); err == nil {
		t.Fatal("Open without a Sealer succeeded")
	}
	s, err := Open(dir, aaguidA, now, testSealer)
	if err != nil {
		t.Fatal(err)
	}
	vktest.NoPlaintextKeys(t, dir)
	d := filepath.Join(dir, DirName)
	for _, name := range []string{RootKeyFile, BatchKeyFile, EnterpriseKeyFile} {
		b, _ := os.ReadFile(filepath.Join(d, name))
		if blk, _ := pem.Decode(b); blk == nil || blk.Type != sealedKeyType {
			t.Fatalf("%s is not a sealed key:\n%s", name, b)
		}
	}
	again, err := Open(dir, aaguidA, now, testSealer)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changed) != 0 || !samePublic(again.Batch.Signer, s.Batch.Signer.Public()) {
		t.Fatalf("reopen changed %v", again.Changed)
	}

	// Another device key opens nothing, and nothing is replaced.
	if _, err := Open(dir, aaguidA, now, sealerFor(2)); err == nil || !strings.Contains(err.Error(), "does not open with this state directory's device key") {
		t.Fatalf("Open with another device key = %v", err)
	}
	// A sealed key is bound to its role: swapping files is refused.
	batch, _ := os.ReadFile(filepath.Join(d, BatchKeyFile))
	ent, _ := os.ReadFile(filepath.Join(d, EnterpriseKeyFile))
	os.WriteFile(filepath.Join(d, BatchKeyFile), ent, 0o600)
	os.WriteFile(filepath.Join(d, EnterpriseKeyFile), batch, 0o600)
	if _, err := Open(dir, aaguidA, now, testSealer); err == nil {
		t.Fatal("swapped batch and enterprise keys were accepted")
	}
}

// TestOpenMigratesPlaintextKeys opens an attestation directory written by
// virtkey before keys were sealed: its keys are sealed in place, and the
// root, batch and enterprise certificates — the chain relying parties
// know — stay exactly the same.
func TestOpenMigratesPlaintextKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join("testdata", "plaintext-v0", DirName)
	d := filepath.Join(dir, DirName)
	os.Mkdir(d, 0o700)
	certs := map[string][]byte{}
	for _, name := range []string{RootKeyFile, RootCertFile, BatchKeyFile, BatchCertFile, EnterpriseKeyFile, EnterpriseCertFile} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		certs[name] = b
	}
	s, err := Open(dir, aaguidA, now, testSealer)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Changed) != 3 {
		t.Fatalf("changed %v; want the three keys sealed and nothing re-issued", s.Changed)
	}
	for _, c := range s.Changed {
		if !strings.HasPrefix(c, "sealed the plaintext key") {
			t.Fatalf("changed %v", s.Changed)
		}
	}
	vktest.NoPlaintextKeys(t, dir)
	for file, got := range map[string]*x509.Certificate{RootCertFile: s.Root, BatchCertFile: s.Batch.Leaf, EnterpriseCertFile: s.Enterprise.Leaf} {
		blk, _ := pem.Decode(certs[file])
		if !bytes.Equal(got.Raw, blk.Bytes) {
			t.Errorf("%s changed in the migration", file)
		}
		if after, _ := os.ReadFile(filepath.Join(d, file)); !bytes.Equal(after, certs[file]) {
			t.Errorf("%s was rewritten", file)
		}
	}
	for _, id := range []*Identity{s.Batch, s.Enterprise} {
		verifyChain(t, s.Root, id)
		if err := Check(id.Leaf, aaguidA, id.Signer); err != nil {
			t.Fatal(err)
		}
	}
	// The migrated keys are the old ones.
	old, err := parseKey(certs[BatchKeyFile])
	if err != nil {
		t.Fatal(err)
	}
	if !samePublic(old, s.Batch.Signer.Public()) {
		t.Fatal("the batch key changed")
	}
	again, err := Open(dir, aaguidA, now, testSealer)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changed) != 0 || !again.Root.Equal(s.Root) {
		t.Fatalf("reopen after migration changed %v", again.Changed)
	}
}
