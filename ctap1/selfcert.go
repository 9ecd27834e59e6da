package ctap1

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"time"
)

// SelfAttestationCertificate makes the certificate of a U2F registration
// by a token without an attestation key: the credential's own key,
// self-signed, so that the registration reveals nothing beyond the
// credential (the U2F counterpart of packed self attestation). It is
// valid from an hour before now for 20 years.
func SelfAttestationCertificate(key crypto.Signer, now time.Time) ([]byte, error) {
	serial := make([]byte, 16)
	rand.Read(serial)
	serial[0] &= 0x7F
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(serial),
		Subject:               pkix.Name{CommonName: "U2F self attestation"},
		NotBefore:             now.Add(-time.Hour).UTC(),
		NotAfter:              now.Add(20 * 365 * 24 * time.Hour).UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
}
