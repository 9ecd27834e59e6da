package attca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	aaguidA = [16]byte{0xA0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	aaguidB = [16]byte{0xB0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	now     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func verifyChain(t *testing.T, root *x509.Certificate, id *Identity) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := id.Leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("%s does not chain to the root: %v", id.Leaf.Subject.CommonName, err)
	}
}

func TestOpenCreatesAndReopens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir, aaguidA, now, testSealer)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Changed) != 3 {
		t.Fatalf("changed %v", s.Changed)
	}
	if !s.Root.IsCA || s.Root.Subject.CommonName == "" || s.RootFile != filepath.Join(dir, DirName, RootCertFile) {
		t.Fatalf("root %+v at %s", s.Root.Subject, s.RootFile)
	}
	for _, id := range []*Identity{s.Batch, s.Enterprise} {
		if err := Check(id.Leaf, aaguidA, id.Signer); err != nil {
			t.Fatalf("%s: %v", id.Leaf.Subject.CommonName, err)
		}
		verifyChain(t, s.Root, id)
		if len(id.Chain) != 1 || !bytes.Equal(id.Chain[0], id.Leaf.Raw) {
			t.Fatal("chain is not the leaf alone")
		}
		subj := id.Leaf.Subject
		if subj.Country[0] != "ZZ" || subj.Organization[0] != "virtkey" || subj.OrganizationalUnit[0] != "Authenticator Attestation" {
			t.Fatalf("subject %v", subj)
		}
		if !id.Leaf.NotBefore.Before(now) || id.Leaf.NotAfter.Before(now.Add(20*365*24*time.Hour)) {
			t.Fatalf("validity %v – %v", id.Leaf.NotBefore, id.Leaf.NotAfter)
		}
		if len(id.Leaf.SubjectKeyId) != 20 {
			t.Fatal("no subject key identifier")
		}
	}
	if s.Batch.Leaf.Subject.CommonName != BatchCN || !strings.HasPrefix(s.Enterprise.Leaf.Subject.CommonName, "virtkey EA Serial ") {
		t.Fatalf("CNs %q, %q", s.Batch.Leaf.Subject.CommonName, s.Enterprise.Leaf.Subject.CommonName)
	}
	// Modes: directory 0700, keys 0600, certificates 0600 too; no temporaries.
	d := filepath.Join(dir, DirName)
	entries, _ := os.ReadDir(d)
	if len(entries) != 6 {
		t.Fatalf("%d files in %s", len(entries), d)
	}
	for name, mode := range map[string]os.FileMode{"": 0o700 | os.ModeDir, RootKeyFile: 0o600, BatchKeyFile: 0o600, EnterpriseKeyFile: 0o600, RootCertFile: 0o600} {
		fi, err := os.Stat(filepath.Join(d, name))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode(), err, mode)
		}
	}

	// Reopening changes nothing.
	again, err := Open(dir, aaguidA, now.Add(time.Hour), testSealer)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changed) != 0 || !again.Root.Equal(s.Root) || !again.Batch.Leaf.Equal(s.Batch.Leaf) || !again.Enterprise.Leaf.Equal(s.Enterprise.Leaf) {
		t.Fatalf("reopen changed %v", again.Changed)
	}

	// Another AAGUID re-issues both leaves for the same keys and the same
	// enterprise serial.
	other, err := Open(dir, aaguidB, now, testSealer)
	if err != nil {
		t.Fatal(err)
	}
	if len(other.Changed) != 2 || !other.Root.Equal(s.Root) {
		t.Fatalf("AAGUID change: %v", other.Changed)
	}
	for _, id := range []*Identity{other.Batch, other.Enterprise} {
		if err := Check(id.Leaf, aaguidB, id.Signer); err != nil {
			t.Fatal(err)
		}
	}
	if !other.Batch.Signer.Public().(*ecdsa.PublicKey).Equal(s.Batch.Signer.Public()) {
		t.Fatal("batch key replaced")
	}
	if other.Enterprise.Leaf.Subject.CommonName != s.Enterprise.Leaf.Subject.CommonName {
		t.Fatal("enterprise serial changed")
	}

	// A lost leaf certificate is re-issued; a lost leaf key makes a new identity.
	os.Remove(filepath.Join(d, BatchCertFile))
	os.Remove(filepath.Join(d, EnterpriseKeyFile))
	fixed, err := Open(dir, aaguidB, now, testSealer)
	if err != nil {
		t.Fatal(err)
	}
	if len(fixed.Changed) != 2 || !fixed.Batch.Signer.Public().(*ecdsa.PublicKey).Equal(s.Batch.Signer.Public()) {
		t.Fatalf("repair: %v", fixed.Changed)
	}
	verifyChain(t, s.Root, fixed.Enterprise)
}

func TestOpenRefusesDamage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(d string)
		want   string
	}{
		{"root key lost", func(d string) { os.Remove(filepath.Join(d, RootKeyFile)) }, "its key is not"},
		{"root certificate garbage", func(d string) { os.WriteFile(filepath.Join(d, RootCertFile), []byte("junk"), 0o644) }, "no PEM certificate"},
		{"root key of another root", func(d string) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			(&keyFiles{dir: d, sealer: testSealer, set: &Set{}}).write(RootKeyFile, k)
		}, "does not hold the key"},
		{"batch key garbage", func(d string) { os.WriteFile(filepath.Join(d, BatchKeyFile), []byte("junk"), 0o600) }, "no PEM private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := Open(dir, aaguidA, now, testSealer); err != nil {
				t.Fatal(err)
			}
			tc.damage(filepath.Join(dir, DirName))
			if _, err := Open(dir, aaguidA, now, testSealer); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// Without the root certificate nothing can have trusted the root: a
	// crash between writing the key and the certificate starts over.
	dir := t.TempDir()
	first, _ := Open(dir, aaguidA, now, testSealer)
	os.Remove(filepath.Join(dir, DirName, RootCertFile))
	s, err := Open(dir, aaguidA, now, testSealer)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Equal(first.Root) {
		t.Fatal("root not re-created")
	}
	verifyChain(t, s.Root, s.Batch)
	verifyChain(t, s.Root, s.Enterprise)
}

// A user-supplied identity: key and a root → intermediate → leaf chain.
func TestLoadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := NewAuthority(now)
	if err != nil {
		t.Fatal(err)
	}
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour * 24 * 365),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, ca.Root, &interKey.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(interDER)
	sub := &Authority{Root: inter, key: interKey}
	id, err := sub.NewIdentity("vendor batch", aaguidA, now)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, certFile := filepath.Join(dir, "att.key"), filepath.Join(dir, "att.pem")
	// A SEC 1 key, as openssl ecparam -genkey writes it (with parameters).
	sec1, _ := x509.MarshalECPrivateKey(id.Signer.(*ecdsa.PrivateKey))
	keyPEM := append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)
	os.WriteFile(keyFile, keyPEM, 0o600)
	if err := writeCerts(certFile, id.Leaf.Raw, interDER); err != nil {
		t.Fatal(err)
	}
	got, err := LoadFiles(keyFile, certFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Chain) != 2 || !bytes.Equal(got.Chain[1], interDER) || !got.Leaf.Equal(id.Leaf) {
		t.Fatalf("chain of %d", len(got.Chain))
	}
	// The user's key file stays theirs: read, never sealed or rewritten.
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(after, keyPEM) {
		t.Fatal("LoadFiles changed the user's key file")
	}
	if err := Check(got.Leaf, aaguidA, got.Signer); err != nil {
		t.Fatal(err)
	}
	pool, inters := x509.NewCertPool(), x509.NewCertPool()
	pool.AddCert(ca.Root)
	inters.AddCert(inter)
	if _, err := got.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inters, CurrentTime: now}); err != nil {
		t.Fatal(err)
	}
	// Mismatched key and certificate.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if _, err := LoadFiles(keyFile, certFile); err == nil {
		t.Fatal("mismatched key accepted")
	}
}

func TestCheckFindsProblems(t *testing.T) {
	t.Parallel()
	ca, _ := NewAuthority(now)
	id, _ := ca.NewIdentity("x", aaguidA, now)
	if err := Check(id.Leaf, aaguidB, nil); err == nil || !strings.Contains(err.Error(), "AAGUID") {
		t.Errorf("AAGUID mismatch: %v", err)
	}
	if err := Check(ca.Root, aaguidA, nil); err == nil || !strings.Contains(err.Error(), "OU") || !strings.Contains(err.Error(), "CA") {
		t.Errorf("root as attestation certificate: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := Check(id.Leaf, aaguidA, other); err == nil {
		t.Error("wrong key accepted")
	}
}
