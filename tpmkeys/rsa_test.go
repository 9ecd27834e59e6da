package tpmkeys

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/virtkey/virtkey/cose"
)

// The derivation is part of the credential ID format: this known answer
// pins it (changing it would orphan every RS256 credential).
func TestRSADerivationKnownAnswer(t *testing.T) {
	t.Parallel()
	seed := bytes.Repeat([]byte{1}, rsaSeedSize)
	raw := append(bytes.Clone(seed), 0, 0, 0, 181, 0, 0, 0x04, 0xC5) // stepsP 181, stepsQ 1221
	k, err := loadRSA(raw)
	if err != nil {
		t.Fatal(err)
	}
	n := k.Public().(*rsa.PublicKey).N.Bytes()
	h := sha256.Sum256(n)
	if got := hex.EncodeToString(h[:]); got != "43dd0b6b55a11370adacedeee41f98709c46d0e5166f79648f5e0b23a726b3b7" {
		t.Fatalf("SHA-256(n) = %s", got)
	}
	// The recorded steps are exactly what the search finds.
	if _, kp, ok := rsaSearch(seed, 'p'); !ok || kp != 181 {
		t.Fatalf("p search: %d %v", kp, ok)
	}
}

func TestRSAGenerateLoad(t *testing.T) {
	t.Parallel()
	priv, raw, err := genRSA()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != rsaPrivLen {
		t.Fatalf("private encoding of %d bytes", len(raw))
	}
	k := priv.(*rsa.PrivateKey)
	if k.N.BitLen() != 2048 || k.E != 65537 {
		t.Fatalf("modulus %d bits, e %d", k.N.BitLen(), k.E)
	}
	again, err := loadRSA(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !again.(*rsa.PrivateKey).Equal(k) {
		t.Fatal("reloaded key differs")
	}
	d := sha256.Sum256([]byte("msg"))
	sig, err := again.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, d[:], sig); err != nil {
		t.Fatal(err)
	}
	// Damaged encodings fail cleanly, without a search.
	for _, bad := range [][]byte{nil, raw[:rsaPrivLen-1], append(bytes.Clone(raw), 0)} {
		if _, err := loadRSA(bad); err == nil {
			t.Errorf("loadRSA accepted %d bytes", len(bad))
		}
	}
	huge := bytes.Clone(raw)
	binary.BigEndian.PutUint32(huge[rsaSeedSize:], rsaMaxSteps)
	if _, err := loadRSA(huge); err == nil {
		t.Error("loadRSA accepted an out-of-range step count")
	}
	wrong := bytes.Clone(raw)
	binary.BigEndian.PutUint32(wrong[rsaSeedSize:], binary.BigEndian.Uint32(raw[rsaSeedSize:])+1)
	if k2, err := loadRSA(wrong); err == nil && k2.(*rsa.PrivateKey).Equal(k) {
		t.Error("another step count gave the same key")
	}
}

// An RS256 credential through the Software store: a 100-byte ID that
// opens to the same key and signs RS256.
func TestSoftwareRS256(t *testing.T) {
	t.Parallel()
	s, err := NewSoftware(bytes.Repeat([]byte{3}, MasterKeySize), WithCacheSize(0))
	if err != nil {
		t.Fatal(err)
	}
	rp := rpHash("rsa.example")
	id, pub, err := s.NewCredential(ctx, cose.AlgRS256, rp, []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != 100 || len(id) > s.MaxCredentialIDLength() {
		t.Fatalf("RS256 ID of %d bytes", len(id))
	}
	signer, meta, err := s.Signer(ctx, id, rp)
	if err != nil || !bytes.Equal(meta, []byte{1, 2, 3}) {
		t.Fatalf("Signer: %v %x", err, meta)
	}
	msg := []byte("authData || clientDataHash")
	sig, err := cose.Sign(signer, cose.AlgRS256, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cose.Verify(pub, cose.AlgRS256, msg, sig); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Signer(ctx, id, rpHash("other.example")); err == nil {
		t.Fatal("RS256 ID opened for another RP")
	}
}
