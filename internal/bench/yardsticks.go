package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// signedMessage stands in for authenticatorData ‖ clientDataHash (37 + 32 bytes).
var signedMessage = make([]byte, 69)

// RawSignOp is the getAssertion yardstick: one P-256 ECDSA signature over a
// SHA-256 digest computed beforehand.
func RawSignOp(b *testing.B) func() {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256(signedMessage)
	return func() {
		if _, err := ecdsa.SignASN1(rand.Reader, priv, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// RawKeygenSignOp is the makeCredential yardstick: a P-256 key generation
// and one signature.
func RawKeygenSignOp(b *testing.B) func() {
	digest := sha256.Sum256(signedMessage)
	return func() {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ecdsa.SignASN1(rand.Reader, priv, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// Loop runs op b.N times, reporting allocations.
func Loop(b *testing.B, op func()) {
	b.ReportAllocs()
	for b.Loop() {
		op()
	}
}
