package vktest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// NoPlaintextKeys fails the test for every file under dir that holds a PEM
// private key ("PRIVATE KEY": PKCS#8, SEC 1 or PKCS#1).
func NoPlaintextKeys(t testing.TB, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a plaintext private key", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
