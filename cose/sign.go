package cose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
)

// Sign signs msg (the whole message, not a digest) with s as alg specifies:
// ES256 and ES384 hash with SHA-256 / SHA-384 and return an ASN.1 DER
// ECDSA signature (the WebAuthn form, not COSE's raw r‖s), EdDSA signs msg
// itself (PureEdDSA), and RS256 is RSASSA-PKCS1-v1_5 with SHA-256. The
// signer's public key must fit alg.
func Sign(s crypto.Signer, alg Algorithm, msg []byte) ([]byte, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil signer", ErrInvalidKey)
	}
	if err := keyFits(s.Public(), alg); err != nil {
		return nil, err
	}
	var (
		sig []byte
		err error
	)
	switch alg {
	case AlgES256, AlgRS256:
		d := sha256.Sum256(msg)
		sig, err = s.Sign(rand.Reader, d[:], crypto.SHA256)
	case AlgES384:
		d := sha512.Sum384(msg)
		sig, err = s.Sign(rand.Reader, d[:], crypto.SHA384)
	case AlgEdDSA:
		sig, err = s.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	if err != nil {
		return nil, fmt.Errorf("cose: signing with %v: %w", alg, err)
	}
	return sig, nil
}

// Verify checks sig over msg (the whole message) under pub for alg, with
// the encodings [Sign] produces. It returns nil or an error wrapping
// [ErrInvalidSignature], [ErrInvalidKey] or [ErrUnsupported].
func Verify(pub crypto.PublicKey, alg Algorithm, msg, sig []byte) error {
	if err := keyFits(pub, alg); err != nil {
		return err
	}
	ok := false
	switch alg {
	case AlgES256:
		d := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig)
	case AlgES384:
		d := sha512.Sum384(msg)
		ok = ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig)
	case AlgEdDSA:
		ok = ed25519.Verify(pub.(ed25519.PublicKey), msg, sig)
	case AlgRS256:
		d := sha256.Sum256(msg)
		ok = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig) == nil
	}
	if !ok {
		return fmt.Errorf("%w (%v)", ErrInvalidSignature, alg)
	}
	return nil
}

// keyFits checks that pub is a usable key of the type and curve alg needs,
// so that the crypto calls after it cannot panic.
func keyFits(pub crypto.PublicKey, alg Algorithm) error {
	switch alg {
	case AlgES256, AlgES384:
		p, ok := pub.(*ecdsa.PublicKey)
		//lint:ignore SA1019 nil coordinates make ecdsa.VerifyASN1 panic; reading them is the only way to refuse such a key
		if !ok || p == nil || p.X == nil || p.Y == nil {
			return fmt.Errorf("%w: %v needs an ECDSA key, have %T", ErrInvalidKey, alg, pub)
		}
		want := elliptic.P256()
		if alg == AlgES384 {
			want = elliptic.P384()
		}
		if p.Curve != want {
			return fmt.Errorf("%w: %v needs %s", ErrInvalidKey, alg, want.Params().Name)
		}
	case AlgEdDSA:
		p, ok := pub.(ed25519.PublicKey)
		if !ok || len(p) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: EdDSA needs an Ed25519 key, have %T", ErrInvalidKey, pub)
		}
	case AlgRS256:
		p, ok := pub.(*rsa.PublicKey)
		if !ok || p == nil || p.N == nil {
			return fmt.Errorf("%w: RS256 needs an RSA key, have %T", ErrInvalidKey, pub)
		}
	default:
		return fmt.Errorf("%w: signature algorithm %v (%d)", ErrUnsupported, alg, int(alg))
	}
	return nil
}
