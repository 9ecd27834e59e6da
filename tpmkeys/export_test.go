package tpmkeys

import (
	"context"
	"crypto"
	"crypto/sha256"
	"testing"
)

func TestExportPrivateKey(t *testing.T) {
	t.Parallel()
	s, err := NewSoftware(make([]byte, MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rp := sha256.Sum256([]byte("example.com"))
	other := sha256.Sum256([]byte("example.org"))
	for _, alg := range s.Algorithms() {
		id, pub, err := s.NewCredential(ctx, alg, rp[:], nil)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := s.ExportPrivateKey(ctx, id, rp[:])
		if err != nil {
			t.Fatalf("%v: %v", alg, err)
		}
		if !priv.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Errorf("%v: exported key does not match the credential's public key", alg)
		}
		if _, err := s.ExportPrivateKey(ctx, id, other[:]); err != ErrUnknownCredential {
			t.Errorf("%v: export for another RP: %v", alg, err)
		}
	}
	if _, err := s.ExportPrivateKey(ctx, []byte("junk"), rp[:]); err != ErrUnknownCredential {
		t.Errorf("export of junk: %v", err)
	}
}
