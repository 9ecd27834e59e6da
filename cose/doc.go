// Package cose encodes and decodes the COSE_Key public keys that CTAP2 and
// WebAuthn carry (RFC 9052 §7, RFC 9053 §7, RFC 8230 §4), converts them to
// and from Go's crypto public keys, and signs and verifies with the COSE
// algorithms CTAP2 uses.
//
// # Supported keys
//
//   - EC2 P-256: ES256 (-7) and the CTAP PIN/UV auth protocol key-agreement
//     form {1:2, 3:-25, -1:1, -2:x, -3:y}.
//   - EC2 P-384: ES384 (-35) (and -25).
//   - OKP Ed25519: EdDSA (-8).
//   - RSA: RS256 (-257), 2048 to 8192-bit moduli.
//
// # Encoding contract
//
// [Key.Marshal] writes only the key's public parameters in CTAP2 canonical
// CBOR (CTAP 2.1 §8 "CTAP2 canonical CBOR encoding form": labels ordered
// 1, 3, -1, -2, -3). [ParseKey] is strict: duplicate labels, indefinite
// lengths, tags, deep nesting, private-key parameters and unknown key-type
// parameters (negative labels) are rejected; EC points must lie on their
// curve and coordinates must have the curve's fixed size. Unknown common
// parameters (positive labels such as kid) are accepted and dropped, so
// ParseKey followed by Marshal yields the canonical form of the key.
//
// Errors wrap [ErrInvalidKey], [ErrUnsupported] or [ErrInvalidSignature].
// Nothing in this package panics on input.
//
// The package imports only the standard library and fxamacker/cbor.
package cose
