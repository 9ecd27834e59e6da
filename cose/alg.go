package cose

// Algorithm is a COSE algorithm identifier (IANA "COSE Algorithms").
type Algorithm int

// Algorithms used by CTAP2.
const (
	AlgES256         Algorithm = -7   // ECDSA w/ SHA-256 on P-256
	AlgEdDSA         Algorithm = -8   // EdDSA (Ed25519)
	AlgECDHESHKDF256 Algorithm = -25  // ECDH-ES + HKDF-256 (CTAP PIN protocol key agreement, nominal)
	AlgES384         Algorithm = -35  // ECDSA w/ SHA-384 on P-384
	AlgRS256         Algorithm = -257 // RSASSA-PKCS1-v1_5 w/ SHA-256
)

// String returns the IANA name of the algorithm.
func (a Algorithm) String() string {
	switch a {
	case AlgES256:
		return "ES256"
	case AlgEdDSA:
		return "EdDSA"
	case AlgECDHESHKDF256:
		return "ECDH-ES+HKDF-256"
	case AlgES384:
		return "ES384"
	case AlgRS256:
		return "RS256"
	}
	return "unknown"
}
