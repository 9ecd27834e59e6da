package cose

import "errors"

// Errors returned (wrapped, with context) by this package. Test with errors.Is.
var (
	// ErrInvalidKey reports a COSE_Key or public key that is malformed:
	// bad CBOR, a missing or mistyped parameter, a wrong coordinate length,
	// a point off its curve, private key material, or a key whose type does
	// not match its algorithm.
	ErrInvalidKey = errors.New("cose: invalid key")
	// ErrUnsupported reports a well-formed key type, curve or algorithm that
	// this package does not implement (for example P-521 or X25519).
	ErrUnsupported = errors.New("cose: unsupported key type, curve or algorithm")
	// ErrInvalidSignature reports a signature that does not verify.
	ErrInvalidSignature = errors.New("cose: invalid signature")
)
