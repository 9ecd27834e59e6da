package cose

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"
)

// FromPublicKey builds the COSE_Key of pub for use with alg (0 leaves alg
// out). pub is an *ecdsa.PublicKey or *ecdh.PublicKey on P-256 or P-384, an
// ed25519.PublicKey, or an *rsa.PublicKey. Coordinates are always the
// curve's fixed size.
//
// The CTAP PIN/UV auth protocol key-agreement key is
// FromPublicKey(ecdhKey.PublicKey(), AlgECDHESHKDF256).
func FromPublicKey(pub crypto.PublicKey, alg Algorithm) (*Key, error) {
	var k *Key
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		//lint:ignore SA1019 nil coordinates make p.Bytes panic; reading them is the only way to refuse such a key
		if p == nil || p.X == nil || p.Y == nil {
			return nil, fmt.Errorf("%w: incomplete ECDSA key", ErrInvalidKey)
		}
		crv, err := ecdsaCurve(p.Curve)
		if err != nil {
			return nil, err
		}
		b, err := p.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		k = ec2FromUncompressed(crv, b)
	case *ecdh.PublicKey:
		if p == nil {
			return nil, fmt.Errorf("%w: nil public key", ErrInvalidKey)
		}
		var crv Curve
		switch p.Curve() {
		case ecdh.P256():
			crv = CurveP256
		case ecdh.P384():
			crv = CurveP384
		default:
			return nil, fmt.Errorf("%w: ECDH curve %v", ErrUnsupported, p.Curve())
		}
		k = ec2FromUncompressed(crv, p.Bytes())
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrInvalidKey, len(p))
		}
		k = &Key{Kty: KeyTypeOKP, Crv: CurveEd25519, X: bytes.Clone(p)}
	case *rsa.PublicKey:
		if p == nil || p.N == nil || p.E <= 0 {
			return nil, fmt.Errorf("%w: incomplete RSA key", ErrInvalidKey)
		}
		e := big.NewInt(int64(p.E)).Bytes()
		k = &Key{Kty: KeyTypeRSA, N: p.N.Bytes(), E: e}
	default:
		return nil, fmt.Errorf("%w: public key type %T", ErrUnsupported, pub)
	}
	k.Alg = alg
	if err := k.check(); err != nil {
		return nil, err
	}
	return k, nil
}

// EncodePublicKey is FromPublicKey followed by Marshal: the CTAP2 canonical
// COSE_Key of pub.
func EncodePublicKey(pub crypto.PublicKey, alg Algorithm) ([]byte, error) {
	k, err := FromPublicKey(pub, alg)
	if err != nil {
		return nil, err
	}
	return k.Marshal()
}

// DecodePublicKey is ParseKey followed by PublicKey, the inverse of
// EncodePublicKey: the public key of a COSE_Key and its algorithm (0 when
// the key names none).
func DecodePublicKey(b []byte) (crypto.PublicKey, Algorithm, error) {
	k, err := ParseKey(b)
	if err != nil {
		return nil, 0, err
	}
	pub, err := k.PublicKey()
	if err != nil {
		return nil, 0, err
	}
	return pub, k.Alg, nil
}

// PublicKey returns k as an *ecdsa.PublicKey (EC2), ed25519.PublicKey (OKP)
// or *rsa.PublicKey (RSA), after checking that an EC point is on its curve.
func (k *Key) PublicKey() (crypto.PublicKey, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: nil key", ErrInvalidKey)
	}
	if err := k.check(); err != nil {
		return nil, err
	}
	switch k.Kty {
	case KeyTypeEC2:
		curve := elliptic.P256()
		if k.Crv == CurveP384 {
			curve = elliptic.P384()
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, k.uncompressed())
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		return pub, nil
	case KeyTypeOKP:
		return ed25519.PublicKey(bytes.Clone(k.X)), nil
	default: // KeyTypeRSA; check admits nothing else
		e, err := rsaExponent(k.E)
		if err != nil {
			return nil, err
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(k.N), E: e}, nil
	}
}

// ECDH returns an EC2 key as an ECDH public key, after checking that the
// point is on its curve. The CTAP PIN/UV auth protocols use it on the
// platform's keyAgreement.
func (k *Key) ECDH() (*ecdh.PublicKey, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: nil key", ErrInvalidKey)
	}
	if err := k.check(); err != nil {
		return nil, err
	}
	if k.Kty != KeyTypeEC2 {
		return nil, fmt.Errorf("%w: ECDH needs an EC2 key, not key type %d", ErrInvalidKey, k.Kty)
	}
	curve := ecdh.P256()
	if k.Crv == CurveP384 {
		curve = ecdh.P384()
	}
	pub, err := curve.NewPublicKey(k.uncompressed())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return pub, nil
}

// uncompressed is the SEC 1 §2.3.3 encoding 0x04 ‖ X ‖ Y.
func (k *Key) uncompressed() []byte {
	b := make([]byte, 0, 1+len(k.X)+len(k.Y))
	b = append(b, 4)
	b = append(b, k.X...)
	return append(b, k.Y...)
}

// ec2FromUncompressed splits a SEC 1 uncompressed point of a supported
// curve (already validated by its producer) into fixed-size coordinates.
func ec2FromUncompressed(crv Curve, b []byte) *Key {
	n := (len(b) - 1) / 2
	return &Key{Kty: KeyTypeEC2, Crv: crv, X: bytes.Clone(b[1 : 1+n]), Y: bytes.Clone(b[1+n:])}
}

func ecdsaCurve(c elliptic.Curve) (Curve, error) {
	switch c {
	case elliptic.P256():
		return CurveP256, nil
	case elliptic.P384():
		return CurveP384, nil
	case nil:
		return 0, fmt.Errorf("%w: ECDSA key without a curve", ErrInvalidKey)
	}
	return 0, fmt.Errorf("%w: ECDSA curve %s", ErrUnsupported, c.Params().Name)
}
