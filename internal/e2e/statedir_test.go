package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/internal/attca"
	"github.com/virtkey/virtkey/internal/vktest"
)

// TestStateDirSealsAttestationKeys: after a start, the state directory of
// the software key store holds no plaintext private key; one written by an
// older virtkey (plaintext attestation keys) is sealed at start, its
// certificates untouched.
func TestStateDirSealsAttestationKeys(t *testing.T) {
	t.Parallel()
	fresh := t.TempDir()
	k := vktest.Start(t, fresh)
	k.Stop(t)
	vktest.NoPlaintextKeys(t, fresh)

	old := t.TempDir()
	src := filepath.Join("..", "attca", "testdata", "plaintext-v0", attca.DirName)
	d := filepath.Join(old, attca.DirName)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		if err := os.WriteFile(filepath.Join(d, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The fixture was issued for attca_test.go's AAGUID.
	k = vktest.Start(t, old, "--aaguid", "a0010203-0405-0607-0809-0a0b0c0d0e0f")
	k.Stop(t)
	if n := strings.Count(k.Output(), "sealed the plaintext key"); n != 3 {
		t.Errorf("the log names %d sealed keys, want 3:\n%s", n, k.Output())
	}
	vktest.NoPlaintextKeys(t, old)
	for _, name := range []string{attca.RootCertFile, attca.BatchCertFile, attca.EnterpriseCertFile} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		if got, _ := os.ReadFile(filepath.Join(d, name)); !bytes.Equal(got, want) {
			t.Errorf("%s changed", name)
		}
	}
}
