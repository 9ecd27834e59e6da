package attca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files of the attestation directory (<state-dir>/attestation, mode 0700).
// Certificates are PEM; private keys are PKCS#8 sealed with the key store's
// device key (a [Sealer]) in a "VIRTKEY SEALED KEY" PEM block — a copy of
// the state directory does not hand out the power to mint this device's
// attestations — all mode 0600 like every file in the state directory
// (certificates are public, but the state directory's rule is simple and
// checked by virtkey doctor). Plaintext keys an older virtkey wrote are
// sealed in place when [Open] reads them. Keys are never logged; a key an
// administrator wants to share between installations is given with
// --attestation-key ([LoadFiles]), which stays the administrator's file.
const (
	DirName            = "attestation"
	RootKeyFile        = "ca.key"
	RootCertFile       = "ca.pem"
	BatchKeyFile       = "batch.key"
	BatchCertFile      = "batch.pem"
	EnterpriseKeyFile  = "enterprise.key"
	EnterpriseCertFile = "enterprise.pem"
)

// Sealer seals the attestation private keys at rest. It is the key
// store's device sealer (tpmkeys.DeviceSealer), whose key survives
// authenticatorReset: the attestation identity belongs to the device, not
// to its user.
type Sealer interface {
	Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, sealed, aad []byte) ([]byte, error)
}

// sealedKeyType is the PEM block type of a sealed private key.
const sealedKeyType = "VIRTKEY SEALED KEY"

// keyAAD binds a sealed key to its file name, so that keys cannot be
// swapped between roles.
func keyAAD(name string) []byte { return []byte("virtkey attestation key v1: " + name) }

// Set is the attestation CA of a state directory with the identities it
// issued.
type Set struct {
	Root *x509.Certificate
	// RootFile is the root certificate's path, to give relying parties.
	RootFile   string
	Batch      *Identity
	Enterprise *Identity
	// Changed lists what Open created or re-issued, for the log.
	Changed []string
}

// Open loads the attestation CA in dir/attestation and its batch and
// enterprise identities, creating whatever does not exist yet. A leaf
// certificate that is missing, was not issued by the root, does not match
// its key or carries another AAGUID (after --aaguid changed) is re-issued
// for the same key. A root certificate without its key, or a file that
// does not parse, is an error: the root may be trusted by relying parties
// and is never replaced silently. So is a sealed key that sealer cannot
// open (the device key was lost or changed). Private keys are sealed with
// sealer, which must not be nil; a plaintext key is sealed in place. Every
// file is written atomically.
func Open(dir string, aaguid [16]byte, now time.Time, sealer Sealer) (*Set, error) {
	if sealer == nil {
		return nil, errors.New("attca: no Sealer for the attestation keys")
	}
	d := filepath.Join(dir, DirName)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, fmt.Errorf("attca: %w", err)
	}
	s := &Set{RootFile: filepath.Join(d, RootCertFile)}
	k := &keyFiles{dir: d, sealer: sealer, set: s}
	ca, err := openRoot(k, now, s)
	if err != nil {
		return nil, err
	}
	s.Root = ca.Root
	if s.Batch, err = openLeaf(k, ca, BatchKeyFile, BatchCertFile, aaguid, now, s, func(*x509.Certificate) string { return BatchCN }); err != nil {
		return nil, err
	}
	s.Enterprise, err = openLeaf(k, ca, EnterpriseKeyFile, EnterpriseCertFile, aaguid, now, s, func(old *x509.Certificate) string {
		if old != nil && strings.HasPrefix(old.Subject.CommonName, "virtkey EA Serial ") {
			return old.Subject.CommonName // keep the device's serial
		}
		var b [8]byte
		rand.Read(b[:])
		return EnterpriseCN(binary.BigEndian.Uint64(b[:]) >> 1)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openRoot(k *keyFiles, now time.Time, s *Set) (*Authority, error) {
	d := k.dir
	keyPath, certPath := filepath.Join(d, RootKeyFile), filepath.Join(d, RootCertFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		// The certificate is written after the key, so without it no
		// relying party can have seen this root: (re)create it.
		ca, err := NewAuthority(now)
		if err != nil {
			return nil, err
		}
		if err := k.create(RootKeyFile, ca.key, certPath, ca.Root.Raw); err != nil {
			return nil, err
		}
		// Leaves of an earlier root are stale.
		for _, f := range []string{BatchCertFile, EnterpriseCertFile} {
			if err := os.Remove(filepath.Join(d, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("attca: %w", err)
			}
		}
		s.Changed = append(s.Changed, "created the attestation root "+certPath)
		return ca, nil
	}
	if err != nil {
		return nil, fmt.Errorf("attca: %w", err)
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("attca: %s: %w", certPath, err)
	}
	key, err := k.read(RootKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("attca: the root certificate %s is there but its key is not: %w", certPath, err)
	}
	if err != nil {
		return nil, err
	}
	if !samePublic(key, certs[0].PublicKey) {
		return nil, fmt.Errorf("attca: %s does not hold the key of %s", keyPath, certPath)
	}
	return &Authority{Root: certs[0], key: key}, nil
}

func openLeaf(k *keyFiles, ca *Authority, keyFile, certFile string, aaguid [16]byte, now time.Time, s *Set, cn func(old *x509.Certificate) string) (*Identity, error) {
	certPath := filepath.Join(k.dir, certFile)
	key, err := k.read(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		id, err := ca.NewIdentity(cn(nil), aaguid, now)
		if err != nil {
			return nil, err
		}
		if err := k.create(keyFile, id.Signer, certPath, id.Leaf.Raw); err != nil {
			return nil, err
		}
		s.Changed = append(s.Changed, "created "+certPath)
		return id, nil
	}
	if err != nil {
		return nil, err
	}
	var old *x509.Certificate
	if certPEM, err := os.ReadFile(certPath); err == nil {
		certs, err := parseCerts(certPEM)
		if err != nil {
			return nil, fmt.Errorf("attca: %s: %w", certPath, err)
		}
		old = certs[0]
		if old.CheckSignatureFrom(ca.Root) == nil && Check(old, aaguid, key) == nil {
			return &Identity{Signer: key, Chain: [][]byte{old.Raw}, Leaf: old}, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("attca: %w", err)
	}
	leaf, err := ca.Issue(key.Public(), cn(old), aaguid, now)
	if err != nil {
		return nil, err
	}
	if err := writeCerts(certPath, leaf.Raw); err != nil {
		return nil, err
	}
	s.Changed = append(s.Changed, "re-issued "+certPath)
	return &Identity{Signer: key, Chain: [][]byte{leaf.Raw}, Leaf: leaf}, nil
}

// LoadFiles reads a user-supplied attestation identity: keyFile holds a
// PEM private key (PKCS#8, SEC 1 "EC PRIVATE KEY" or PKCS#1), certFile one
// or more PEM certificates, the attestation certificate first and then its
// chain (the root may be left out). The key must match the first
// certificate. It does not check the FIDO certificate requirements: see
// [Check].
func LoadFiles(keyFile, certFile string) (*Identity, error) {
	key, err := parseFile(keyFile, parseKey)
	if err != nil {
		return nil, err
	}
	certs, err := parseFile(certFile, parseCerts)
	if err != nil {
		return nil, err
	}
	if !samePublic(key, certs[0].PublicKey) {
		return nil, fmt.Errorf("%s does not hold the key of the first certificate in %s", keyFile, certFile)
	}
	id := &Identity{Signer: key, Leaf: certs[0]}
	for _, c := range certs {
		id.Chain = append(id.Chain, c.Raw)
	}
	return id, nil
}

// parseFile reads path and parses it; a parse error names the file.
func parseFile[T any](path string, parse func([]byte) (T, error)) (T, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := parse(b)
	if err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// parseKey decodes the first PEM private key in b.
func parseKey(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM private key")
		}
		var k any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			return parsePKCS8(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue // e.g. EC PARAMETERS
		}
		if err != nil {
			return nil, err
		}
		return signer(k)
	}
}

// parsePKCS8 decodes a PKCS#8 private key.
func parsePKCS8(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	return signer(k)
}

// signer accepts the private key types attestation can sign with.
func signer(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

// parseCerts decodes every PEM certificate in b, in order.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

func samePublic(k crypto.Signer, pub crypto.PublicKey) bool {
	eq, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(pub)
}

// keyFiles reads and writes the sealed private keys of an attestation
// directory.
type keyFiles struct {
	dir    string
	sealer Sealer
	set    *Set // notes the keys it seals in place
}

// read returns the private key in file name: sealed, or plaintext as an
// older virtkey wrote it, which it then seals in place (atomically: a
// crash leaves the plaintext or the sealed file). A missing file's error
// matches fs.ErrNotExist.
func (k *keyFiles) read(name string) (crypto.Signer, error) {
	path := filepath.Join(k.dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("attca: %w", err)
	}
	defer clear(b)
	if blk, _ := pem.Decode(b); blk != nil && blk.Type == sealedKeyType {
		der, err := k.sealer.Open(context.Background(), blk.Bytes, keyAAD(name))
		if err != nil {
			return nil, fmt.Errorf("attca: %s does not open with this state directory's device key (%v); "+
				"restore the device key it was sealed with (device.key, the same passphrase, tpm-device.json on the same TPM), "+
				"or move %s away to make a new attestation CA", path, err, k.dir)
		}
		defer clear(der)
		key, err := parsePKCS8(der)
		if err != nil {
			return nil, fmt.Errorf("attca: %s: %w", path, err)
		}
		return key, nil
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("attca: %s: %w", path, err)
	}
	if err := k.write(name, key); err != nil {
		return nil, err
	}
	k.set.Changed = append(k.set.Changed, "sealed the plaintext key "+path)
	return key, nil
}

// create writes a new key and then its certificate: a certificate on disk
// means its key is there too (see openRoot).
func (k *keyFiles) create(keyName string, key crypto.Signer, certPath string, cert []byte) error {
	if err := k.write(keyName, key); err != nil {
		return err
	}
	return writeCerts(certPath, cert)
}

// write replaces file name with key, sealed.
func (k *keyFiles) write(name string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("attca: %w", err)
	}
	defer clear(der)
	sealed, err := k.sealer.Seal(context.Background(), der, keyAAD(name))
	if err != nil {
		return fmt.Errorf("attca: sealing %s: %w", name, err)
	}
	return writeFile(filepath.Join(k.dir, name), pem.EncodeToMemory(&pem.Block{Type: sealedKeyType, Bytes: sealed}), 0o600)
}

func writeCerts(path string, ders ...[]byte) error {
	var buf bytes.Buffer
	for _, der := range ders {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return writeFile(path, buf.Bytes(), 0o600)
}

// writeFile replaces path atomically: a temporary file in the same
// directory is written, fsynced and renamed over path, and the directory
// is fsynced.
func writeFile(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("attca: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("attca: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("attca: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("attca: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("attca: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("attca: %w", err)
	}
	df, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("attca: %w", err)
	}
	defer df.Close()
	if err := df.Sync(); err != nil {
		return fmt.Errorf("attca: %w", err)
	}
	return nil
}
