package cose

import (
	"bytes"
	"fmt"
	"math"
	"slices"
)

// KeyType is a COSE key type (IANA "COSE Key Types").
type KeyType int

// Key types. See RFC 9053 §7 and RFC 8230 §4.
const (
	KeyTypeOKP KeyType = 1 // OKP: Octet Key Pair (Ed25519)
	KeyTypeEC2 KeyType = 2 // EC2: elliptic curve key with x- and y-coordinates
	KeyTypeRSA KeyType = 3 // RSA
)

// Curve is a COSE elliptic curve identifier (IANA "COSE Elliptic Curves").
type Curve int

// Curves. Only P-256, P-384 and Ed25519 are supported; the others are named
// so that errors can say what was rejected.
const (
	CurveP256    Curve = 1 // P-256 (EC2)
	CurveP384    Curve = 2 // P-384 (EC2)
	CurveP521    Curve = 3 // P-521 (EC2, unsupported)
	CurveX25519  Curve = 4 // X25519 (OKP, unsupported)
	CurveEd25519 Curve = 6 // Ed25519 (OKP)
)

// COSE_Key labels (RFC 9052 §7.1, RFC 9053 §7, RFC 8230 §4). The negative
// labels depend on the key type.
const (
	labelKty = 1
	labelAlg = 3

	labelCrv = -1 // EC2, OKP
	labelX   = -2 // EC2, OKP
	labelY   = -3 // EC2
	labelD   = -4 // EC2, OKP private key

	labelN = -1 // RSA modulus
	labelE = -2 // RSA public exponent
	// RSA private parameters use labels -3 … -12.
)

// RSA moduli accepted by this package, in bytes.
const (
	minRSABytes = 2048 / 8
	maxRSABytes = 8192 / 8
)

// Key is a COSE_Key public key (RFC 9052 §7). The zero Alg means the
// optional alg parameter is absent.
//
// A Key holds only public parameters. For EC2 keys X and Y are the fixed-size
// big-endian affine coordinates (32 bytes for P-256, 48 for P-384); for OKP
// keys X is the 32-byte Ed25519 public key; for RSA keys N and E are the
// big-endian modulus and public exponent without leading zero bytes.
type Key struct {
	Kty  KeyType
	Alg  Algorithm
	Crv  Curve  // EC2 and OKP
	X, Y []byte // EC2 (X and Y) and OKP (X)
	N, E []byte // RSA
}

// The wire forms, one per key type. The CTAP2 canonical encoder orders their
// labels 1, 3, -1, -2, -3.
type ec2Key struct {
	Kty KeyType   `cbor:"1,keyasint"`
	Alg Algorithm `cbor:"3,keyasint,omitempty"`
	Crv Curve     `cbor:"-1,keyasint"`
	X   []byte    `cbor:"-2,keyasint"`
	Y   []byte    `cbor:"-3,keyasint"`
}

type okpKey struct {
	Kty KeyType   `cbor:"1,keyasint"`
	Alg Algorithm `cbor:"3,keyasint,omitempty"`
	Crv Curve     `cbor:"-1,keyasint"`
	X   []byte    `cbor:"-2,keyasint"`
}

type rsaKey struct {
	Kty KeyType   `cbor:"1,keyasint"`
	Alg Algorithm `cbor:"3,keyasint,omitempty"`
	N   []byte    `cbor:"-1,keyasint"`
	E   []byte    `cbor:"-2,keyasint"`
}

// Marshal encodes k in CTAP2 canonical CBOR. It checks the key's shape
// (types, lengths, algorithm) but not that an EC point is on its curve; keys
// from [ParseKey] and [FromPublicKey] always are.
func (k *Key) Marshal() ([]byte, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: nil key", ErrInvalidKey)
	}
	if err := k.check(); err != nil {
		return nil, err
	}
	var v any
	switch k.Kty {
	case KeyTypeEC2:
		v = ec2Key{Kty: k.Kty, Alg: k.Alg, Crv: k.Crv, X: k.X, Y: k.Y}
	case KeyTypeOKP:
		v = okpKey{Kty: k.Kty, Alg: k.Alg, Crv: k.Crv, X: k.X}
	case KeyTypeRSA:
		v = rsaKey{Kty: k.Kty, Alg: k.Alg, N: k.N, E: k.E}
	}
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cose: encoding key: %w", err)
	}
	return b, nil
}

// MarshalCBOR implements cbor.Marshaler, so a *Key can be a field of a CBOR
// message struct. It is [Key.Marshal].
func (k *Key) MarshalCBOR() ([]byte, error) { return k.Marshal() }

// UnmarshalCBOR implements cbor.Unmarshaler with the rules of [ParseKey].
func (k *Key) UnmarshalCBOR(b []byte) error {
	p, err := ParseKey(b)
	if err != nil {
		return err
	}
	*k = *p
	return nil
}

// ParseKey decodes one COSE_Key public key (a CBOR map, nothing after it)
// and validates it completely, including that an EC point is on its curve.
// See the package documentation for what it rejects.
func ParseKey(b []byte) (*Key, error) {
	var m map[int]any
	if err := decMode.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: not a map", ErrInvalidKey)
	}
	kty, err := intParam(m, labelKty, "kty")
	if err != nil {
		return nil, err
	}
	k := &Key{Kty: KeyType(kty)}
	if _, ok := m[labelAlg]; ok {
		alg, err := intParam(m, labelAlg, "alg")
		if err != nil {
			return nil, err
		}
		k.Alg = Algorithm(alg)
	}

	var public []int // the negative labels this key type may carry
	switch k.Kty {
	case KeyTypeEC2, KeyTypeOKP: // both carry crv and x; EC2 adds y
		public = []int{labelCrv, labelX}
		crv, err := intParam(m, labelCrv, "crv")
		if err != nil {
			return nil, err
		}
		k.Crv = Curve(crv)
		if k.X, err = bytesParam(m, labelX, "x"); err != nil {
			return nil, err
		}
		if k.Kty == KeyTypeEC2 {
			public = append(public, labelY)
			if _, isBool := m[labelY].(bool); isBool {
				return nil, fmt.Errorf("%w: compressed EC2 point", ErrUnsupported)
			}
			if k.Y, err = bytesParam(m, labelY, "y"); err != nil {
				return nil, err
			}
		}
	case KeyTypeRSA:
		public = []int{labelN, labelE}
		if k.N, err = bytesParam(m, labelN, "n"); err != nil {
			return nil, err
		}
		if k.E, err = bytesParam(m, labelE, "e"); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: key type %d", ErrUnsupported, k.Kty)
	}
	for label := range m {
		if label >= 0 || slices.Contains(public, label) {
			continue // common parameters (kid, key_ops, …) are dropped
		}
		if k.Kty == KeyTypeRSA || label == labelD {
			return nil, fmt.Errorf("%w: private key parameter %d", ErrInvalidKey, label)
		}
		return nil, fmt.Errorf("%w: unknown parameter %d for key type %d", ErrInvalidKey, label, k.Kty)
	}
	if err := k.check(); err != nil {
		return nil, err
	}
	if k.Kty == KeyTypeEC2 {
		if _, err := k.PublicKey(); err != nil { // on-curve check
			return nil, err
		}
	}
	return k, nil
}

// check validates the shape of k: key type, curve, lengths and the
// algorithm's fit. It does not check that an EC point is on its curve.
func (k *Key) check() error {
	switch k.Kty {
	case KeyTypeEC2:
		if k.N != nil || k.E != nil {
			return fmt.Errorf("%w: RSA parameters in an EC2 key", ErrInvalidKey)
		}
		size, err := coordSize(k.Crv)
		if err != nil {
			return err
		}
		if len(k.X) != size || len(k.Y) != size {
			return fmt.Errorf("%w: EC2 coordinates of %d and %d bytes, want %d", ErrInvalidKey, len(k.X), len(k.Y), size)
		}
		switch k.Alg {
		case 0, AlgECDHESHKDF256:
		case AlgES256:
			if k.Crv != CurveP256 {
				return fmt.Errorf("%w: ES256 needs P-256, not curve %d", ErrInvalidKey, k.Crv)
			}
		case AlgES384:
			if k.Crv != CurveP384 {
				return fmt.Errorf("%w: ES384 needs P-384, not curve %d", ErrInvalidKey, k.Crv)
			}
		default:
			return algError(k.Alg, k.Kty)
		}
	case KeyTypeOKP:
		if k.Y != nil || k.N != nil || k.E != nil {
			return fmt.Errorf("%w: stray parameters in an OKP key", ErrInvalidKey)
		}
		if k.Crv != CurveEd25519 {
			return fmt.Errorf("%w: OKP curve %d", ErrUnsupported, k.Crv)
		}
		if len(k.X) != 32 {
			return fmt.Errorf("%w: Ed25519 key of %d bytes", ErrInvalidKey, len(k.X))
		}
		if k.Alg != 0 && k.Alg != AlgEdDSA {
			return algError(k.Alg, k.Kty)
		}
	case KeyTypeRSA:
		if k.Crv != 0 || k.X != nil || k.Y != nil {
			return fmt.Errorf("%w: EC parameters in an RSA key", ErrInvalidKey)
		}
		if k.Alg != 0 && k.Alg != AlgRS256 {
			return algError(k.Alg, k.Kty)
		}
		if len(k.N) < minRSABytes || len(k.N) > maxRSABytes || k.N[0] == 0 {
			return fmt.Errorf("%w: RSA modulus of %d bytes (want %d–%d, no leading zero)", ErrInvalidKey, len(k.N), minRSABytes, maxRSABytes)
		}
		if k.N[len(k.N)-1]&1 == 0 {
			return fmt.Errorf("%w: even RSA modulus", ErrInvalidKey)
		}
		if _, err := rsaExponent(k.E); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: key type %d", ErrUnsupported, k.Kty)
	}
	return nil
}

// algError says whether alg is one of ours misapplied (invalid) or one we
// do not know (unsupported).
func algError(alg Algorithm, kty KeyType) error {
	switch alg {
	case AlgES256, AlgES384, AlgEdDSA, AlgRS256, AlgECDHESHKDF256:
		return fmt.Errorf("%w: algorithm %v on key type %d", ErrInvalidKey, alg, kty)
	}
	return fmt.Errorf("%w: algorithm %d", ErrUnsupported, int(alg))
}

func coordSize(c Curve) (int, error) {
	switch c {
	case CurveP256:
		return 32, nil
	case CurveP384:
		return 48, nil
	}
	return 0, fmt.Errorf("%w: EC2 curve %d", ErrUnsupported, c)
}

// rsaExponent decodes e: 1–4 bytes, no leading zero, odd, 3 ≤ e < 2³¹.
func rsaExponent(e []byte) (int, error) {
	if len(e) == 0 || len(e) > 4 || e[0] == 0 {
		return 0, fmt.Errorf("%w: RSA exponent of %d bytes", ErrInvalidKey, len(e))
	}
	var v uint64
	for _, b := range e {
		v = v<<8 | uint64(b)
	}
	if v < 3 || v&1 == 0 || v > math.MaxInt32 {
		return 0, fmt.Errorf("%w: RSA exponent %d", ErrInvalidKey, v)
	}
	return int(v), nil
}

func intParam(m map[int]any, label int, name string) (int, error) {
	switch v := m[label].(type) {
	case nil:
		return 0, fmt.Errorf("%w: missing %s", ErrInvalidKey, name)
	case uint64:
		if v <= math.MaxInt32 {
			return int(v), nil
		}
	case int64:
		if v >= math.MinInt32 {
			return int(v), nil
		}
	default:
		return 0, fmt.Errorf("%w: %s is %T, want an integer", ErrInvalidKey, name, v)
	}
	return 0, fmt.Errorf("%w: %s out of range", ErrInvalidKey, name)
}

func bytesParam(m map[int]any, label int, name string) ([]byte, error) {
	switch v := m[label].(type) {
	case nil:
		return nil, fmt.Errorf("%w: missing %s", ErrInvalidKey, name)
	case []byte:
		return bytes.Clone(v), nil
	default:
		return nil, fmt.Errorf("%w: %s is %T, want a byte string", ErrInvalidKey, name, v)
	}
}
