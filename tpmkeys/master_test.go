package tpmkeys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
)

// cheap keeps Argon2id fast in tests.
var cheap = WithArgon2Params(Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1})

// sameKeys reports whether a credential made by a opens in b.
func sameKeys(t *testing.T, a, b *Software) bool {
	t.Helper()
	id, _, err := a.NewCredential(ctx, cose.AlgES256, rpHash("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = b.Signer(ctx, id, rpHash("x"))
	return err == nil
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state", "virtkey")
	a, err := OpenSoftware(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("dir mode %o", m)
	}
	keyPath := filepath.Join(dir, KeyFileName)
	if m := mode(t, keyPath); m != 0o600 {
		t.Errorf("key file mode %o", m)
	}
	if b, _ := os.ReadFile(keyPath); len(b) != MasterKeySize {
		t.Fatalf("key file of %d bytes", len(b))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left-over files: %v", ents)
	}
	b, err := OpenSoftware(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(t, a, b) {
		t.Fatal("reopened store does not open old credentials")
	}
	other, _ := OpenSoftware(t.TempDir())
	if sameKeys(t, a, other) {
		t.Fatal("two state dirs share a key")
	}

	// Refusals: loose permissions, wrong size, passphrase given.
	os.Chmod(keyPath, 0o644)
	if _, err := OpenSoftware(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key file: %v", err)
	}
	os.Chmod(keyPath, 0o600)
	if _, err := OpenSoftwarePassphrase(dir, []byte("pw"), cheap); err == nil {
		t.Error("passphrase accepted for a key-file state dir")
	}
	os.WriteFile(keyPath, []byte("short"), 0o600)
	if _, err := OpenSoftware(dir); err == nil {
		t.Error("5-byte key file accepted")
	}
}

// Processes racing to create the key must all end up with the same one.
func TestKeyFileCreationRace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stores := make([]*Software, 8)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			s, err := OpenSoftware(dir)
			if err != nil {
				t.Error(err)
			}
			stores[i] = s
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, s := range stores[1:] {
		if !sameKeys(t, stores[0], s) {
			t.Fatal("racing opens produced different master keys")
		}
	}
}

func TestPassphrase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, err := OpenSoftwarePassphrase(dir, []byte("correct horse"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, PassphraseFileName)
	if m := mode(t, path); m != 0o600 {
		t.Errorf("passphrase file mode %o", m)
	}
	// Reopening uses the stored parameters, whatever the options say.
	b, err := OpenSoftwarePassphrase(dir, []byte("correct horse"), WithArgon2Params(Argon2Params{Time: 9, MemoryKiB: 1 << 30, Threads: 9}))
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(t, a, b) {
		t.Fatal("same passphrase, different key")
	}
	if _, err := OpenSoftwarePassphrase(dir, []byte("correct horsf"), cheap); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := OpenSoftware(dir); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("passphrase dir opened without one: %v", err)
	}
	if _, err := OpenSoftwarePassphrase(t.TempDir(), nil, cheap); err == nil {
		t.Fatal("empty passphrase accepted")
	}
	c, _ := OpenSoftwarePassphrase(t.TempDir(), []byte("correct horse"), cheap)
	if sameKeys(t, a, c) {
		t.Fatal("same passphrase in two dirs gave the same key (salt unused?)")
	}

	// The file holds a check value, not the key, and nothing unexpected.
	data, _ := os.ReadFile(path)
	for _, bad := range []string{
		strings.Replace(string(data), `"version": 1`, `"version": 2`, 1),
		strings.Replace(string(data), `"time": 1`, `"time": 100000`, 1),
		strings.Replace(string(data), `"memory_kib": 64`, `"memory_kib": 4000000000`, 1),
		strings.Replace(string(data), `{`, `{"extra": 1,`, 1),
		`{}`,
		``,
	} {
		if bad == string(data) {
			t.Fatalf("edit did not apply to %s", data)
		}
		os.WriteFile(path, []byte(bad), 0o600)
		if _, err := OpenSoftwarePassphrase(dir, []byte("correct horse"), cheap); err == nil {
			t.Errorf("accepted passphrase file %q", bad)
		}
	}
	os.WriteFile(path, data, 0o600)
	if _, err := OpenSoftwarePassphrase(dir, []byte("correct horse"), cheap); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("correct horse")) {
		t.Fatal("passphrase stored")
	}
}

func TestArgon2ParamsValidate(t *testing.T) {
	t.Parallel()
	if err := defaultArgon2Params.validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Argon2Params{{}, {Time: 1, MemoryKiB: 7, Threads: 1}, {Time: 1, MemoryKiB: 64, Threads: 0}, {Time: 65, MemoryKiB: 64, Threads: 1}} {
		if p.validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if _, err := OpenSoftwarePassphrase(t.TempDir(), []byte("pw"), WithArgon2Params(Argon2Params{})); err == nil {
		t.Error("zero Argon2 params accepted")
	}
}

var _ ctap2.KeyResetter = (*Software)(nil)

func TestResetKeys(t *testing.T) {
	t.Parallel()
	type opener func() (*Software, error)
	keyDir, passDir := t.TempDir(), t.TempDir()
	master := bytes.Repeat([]byte{3}, MasterKeySize)
	for name, open := range map[string]opener{
		"key file":   func() (*Software, error) { return OpenSoftware(keyDir) },
		"passphrase": func() (*Software, error) { return OpenSoftwarePassphrase(passDir, []byte("pw"), cheap) },
		"in memory":  func() (*Software, error) { return NewSoftware(master) },
	} {
		t.Run(name, func(t *testing.T) {
			s, err := open()
			if err != nil {
				t.Fatal(err)
			}
			rp := rpHash("a")
			oldID, _, _ := s.NewCredential(ctx, cose.AlgES256, rp, nil)
			if _, _, err := s.Signer(ctx, oldID, rp); err != nil { // now cached
				t.Fatal(err)
			}
			oldSealed, _ := s.Seal(ctx, []byte("pin"), nil)
			if err := s.ResetKeys(ctx); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Signer(ctx, oldID, rp); err != ErrUnknownCredential {
				t.Fatalf("old credential after ResetKeys: %v", err)
			}
			if _, err := s.Open(ctx, oldSealed, nil); err != ErrSealedData {
				t.Fatalf("old sealed data after ResetKeys: %v", err)
			}
			newID, _, _ := s.NewCredential(ctx, cose.AlgES256, rp, nil)
			again, err := open()
			if err != nil {
				t.Fatal(err)
			}
			_, _, errNew := again.Signer(ctx, newID, rp)
			_, _, errOld := again.Signer(ctx, oldID, rp)
			if name == "in memory" { // the caller's key is unchanged
				if errNew == nil || errOld != nil {
					t.Fatalf("in-memory reset leaked to the caller's key: %v / %v", errNew, errOld)
				}
				return
			}
			if errNew != nil || errOld == nil {
				t.Fatalf("after reopen: new credential %v, old credential %v", errNew, errOld)
			}
		})
	}
	ents, _ := os.ReadDir(keyDir)
	pents, _ := os.ReadDir(passDir)
	if len(ents) != 1 || len(pents) != 1 {
		t.Fatalf("left-over files: %v %v", ents, pents)
	}
	if m := mode(t, filepath.Join(keyDir, KeyFileName)); m != 0o600 {
		t.Fatalf("rotated key file mode %o", m)
	}
	if _, err := OpenSoftwarePassphrase(passDir, []byte("pW"), cheap); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase after reset: %v", err)
	}
}
