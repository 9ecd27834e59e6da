// Package attca is virtkey's attestation certificate authority: a
// self-signed ECDSA P-256 root that issues the batch and enterprise
// attestation certificates ctap2 signs packed and fido-u2f attestation
// statements with.
//
// # Certificates
//
// Every leaf meets the WebAuthn packed attestation certificate requirements
// (WebAuthn L3 §8.2.1): X.509 version 3; Subject C (an ISO 3166 code), O
// (the vendor), OU "Authenticator Attestation" and CN; Basic Constraints
// with CA false; and the id-fido-gen-ce-aaguid extension
// (1.3.6.1.4.1.45724.1.1.4), non-critical, whose value is an OCTET STRING
// holding the 16-byte AAGUID (extnValue 04 12 04 10 ‖ aaguid). Leaves also
// carry id-fido-u2f-ce-transports (1.3.6.1.4.1.45724.2.1.1) saying USB, as
// FIDO U2F certificates do, and a Subject Key Identifier (metadata services
// index U2F attestation certificates by it).
//
// virtkey is not an incorporated vendor, so C is "ZZ", the ISO 3166
// user-assigned code for an unknown country, and O is "virtkey".
//
// # Privacy
//
// The CA is made on the machine, so its batch certificate is shared by no
// other key: a relying party that sees it can link every credential this
// installation registers with batch attestation. Use self or none
// attestation where that matters, or give several installations the same
// key and certificate (--attestation-key, --attestation-cert). The
// enterprise certificate is unique per installation by design (CN
// "virtkey EA Serial N") and is only ever sent when enterprise attestation
// was enabled with authenticatorConfig and requested.
package attca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// OIDAAGUID is id-fido-gen-ce-aaguid, the extension holding the AAGUID.
var OIDAAGUID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 1, 1, 4}

// OIDTransports is id-fido-u2f-ce-transports (FIDO U2F Authenticator
// Transports Extension), a BIT STRING of transports.
var OIDTransports = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 2, 1, 1}

// Subject fields of virtkey's certificates.
const (
	Country = "ZZ" // ISO 3166 user-assigned: unknown country
	Vendor  = "virtkey"
	// OrgUnit is required, literally, by WebAuthn §8.2.1.
	OrgUnit = "Authenticator Attestation"
	// BatchCN names the batch certificate.
	BatchCN = "virtkey Batch Attestation"
)

// Validity: the root and its leaves are valid from an hour before their
// creation (clock skew) for 30 years.
const (
	backdate = time.Hour
	lifetime = 30 * 365 * 24 * time.Hour
)

// Identity is an attestation key with its certificate chain.
type Identity struct {
	// Signer is the attestation private key (ECDSA P-256).
	Signer crypto.Signer
	// Chain is the DER certificate chain, leaf first. For virtkey's own CA
	// it holds the leaf only: the root is a trust anchor that relying
	// parties take from ca.pem or metadata, never from the statement.
	Chain [][]byte
	// Leaf is Chain[0], parsed.
	Leaf *x509.Certificate
}

// Authority is the attestation root and its key.
type Authority struct {
	Root *x509.Certificate
	key  crypto.Signer
}

// NewAuthority makes a new self-signed root valid from now.
func NewAuthority(now time.Time) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial := randomSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Country: []string{Country}, Organization: []string{Vendor},
			CommonName: fmt.Sprintf("virtkey Attestation Root %x", serial.Bytes()[:4]),
		},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              now.Add(lifetime).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("attca: creating the root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Root: root, key: key}, nil
}

// Issue certifies pub (an attestation key) under the root with common name
// cn and the given AAGUID.
func (ca *Authority) Issue(pub crypto.PublicKey, cn string, aaguid [16]byte, now time.Time) (*x509.Certificate, error) {
	aaguidExt, err := asn1.Marshal(aaguid[:])
	if err != nil {
		return nil, err
	}
	// Bit 2 is uSB: {bluetoothRadio(0), bluetoothLowEnergyRadio(1), uSB(2), nFC(3), uSBInternal(4)}.
	transports, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x20}, BitLength: 3})
	if err != nil {
		return nil, err
	}
	id, err := keyIDOf(pub)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Root.NotAfter) {
		notAfter = ca.Root.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject: pkix.Name{
			Country: []string{Country}, Organization: []string{Vendor},
			OrganizationalUnit: []string{OrgUnit}, CommonName: cn,
		},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              notAfter.UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          id,
		ExtraExtensions: []pkix.Extension{
			{Id: OIDAAGUID, Critical: false, Value: aaguidExt},
			{Id: OIDTransports, Critical: false, Value: transports},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Root, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("attca: issuing %q: %w", cn, err)
	}
	return x509.ParseCertificate(der)
}

// NewIdentity makes a fresh P-256 attestation key certified by ca.
func (ca *Authority) NewIdentity(cn string, aaguid [16]byte, now time.Time) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(&key.PublicKey, cn, aaguid, now)
	if err != nil {
		return nil, err
	}
	return &Identity{Signer: key, Chain: [][]byte{cert.Raw}, Leaf: cert}, nil
}

// EnterpriseCN is the common name of an enterprise attestation
// certificate with the given serial number.
func EnterpriseCN(serial uint64) string { return fmt.Sprintf("virtkey EA Serial %d", serial) }

// randomSerial is a positive 127-bit serial number (RFC 5280 §4.1.2.2
// allows up to 20 octets).
func randomSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7F
	b[0] |= 0x40 // always 16 octets, so the root's CN suffix exists
	return new(big.Int).SetBytes(b)
}

// keyID is the RFC 5280 §4.2.1.2 method 1 key identifier: SHA-1 of the
// subjectPublicKey bits.
func keyID(pub *ecdsa.PublicKey) []byte {
	id, _ := keyIDOf(pub)
	return id
}

func keyIDOf(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, err
	}
	h := sha1.Sum(info.PublicKey.Bytes)
	return h[:], nil
}

// AAGUID returns the value of cert's id-fido-gen-ce-aaguid extension; ok
// is false when the extension is absent.
func AAGUID(cert *x509.Certificate) (aaguid []byte, critical, ok bool, err error) {
	for _, e := range cert.Extensions {
		if !e.Id.Equal(OIDAAGUID) {
			continue
		}
		var v []byte
		rest, err := asn1.Unmarshal(e.Value, &v)
		if err != nil || len(rest) != 0 || len(v) != 16 {
			return nil, e.Critical, true, errors.New("attca: malformed AAGUID extension")
		}
		return v, e.Critical, true, nil
	}
	return nil, false, false, nil
}

// Check reports how leaf falls short of the packed attestation certificate
// requirements (WebAuthn §8.2.1) for an authenticator with aaguid; nil
// means it meets them. signer, if not nil, must hold the certified key.
func Check(leaf *x509.Certificate, aaguid [16]byte, signer crypto.Signer) error {
	var errs []error
	if leaf.Version != 3 {
		errs = append(errs, fmt.Errorf("version %d, want 3", leaf.Version))
	}
	s := leaf.Subject
	if len(s.Country) != 1 || len(s.Country[0]) != 2 {
		errs = append(errs, errors.New("subject C is not one ISO 3166 code"))
	}
	if len(s.Organization) == 0 || s.Organization[0] == "" {
		errs = append(errs, errors.New("subject O is missing"))
	}
	if len(s.OrganizationalUnit) != 1 || s.OrganizationalUnit[0] != OrgUnit {
		errs = append(errs, fmt.Errorf("subject OU is not %q", OrgUnit))
	}
	if s.CommonName == "" {
		errs = append(errs, errors.New("subject CN is missing"))
	}
	if leaf.IsCA {
		errs = append(errs, errors.New("basic constraints say CA"))
	}
	switch v, critical, ok, err := AAGUID(leaf); {
	case err != nil:
		errs = append(errs, err)
	case ok && critical:
		errs = append(errs, errors.New("the AAGUID extension is critical"))
	case ok && [16]byte(v) != aaguid:
		errs = append(errs, fmt.Errorf("the AAGUID extension says %x, the authenticator %x", v, aaguid))
	}
	if signer != nil {
		if eq, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(leaf.PublicKey) {
			errs = append(errs, errors.New("the private key does not match the certificate"))
		}
	}
	return errors.Join(errs...)
}
