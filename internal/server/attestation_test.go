package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/attca"
	"github.com/virtkey/virtkey/internal/vktest"
)

func TestLoadAttestation(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	flags := func(t *testing.T, args ...string) *Config {
		t.Helper()
		c := Default()
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs)
		if err := fs.Parse(append([]string{"--state-dir", t.TempDir()}, args...)); err != nil {
			t.Fatal(err)
		}
		return &c
	}

	t.Run("default batch", func(t *testing.T) {
		t.Parallel()
		f := flags(t, "--enterprise-rp", "a.example", "--enterprise-rp", "b.example")
		c, err := loadAttestation(f, [16]byte{}, vktest.DeviceSealer(t, t.TempDir()), log)
		if err != nil {
			t.Fatal(err)
		}
		if c.mode != ctap2.AttestationBatch || c.batch == nil || c.enterprise == nil || strings.Join(c.enterpriseRPIDs, ",") != "a.example,b.example" {
			t.Fatalf("%+v", c)
		}
		leaf, _ := x509.ParseCertificate(c.batch.Chain[0])
		if err := attca.Check(leaf, ctap2.DefaultAAGUID, c.batch.Signer); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(f.StateDir, attca.DirName, attca.RootCertFile)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("modes", func(t *testing.T) {
		t.Parallel()
		for arg, want := range map[string]ctap2.Attestation{"self": ctap2.AttestationSelf, "none": ctap2.AttestationNone, "batch": ctap2.AttestationBatch} {
			c, err := loadAttestation(flags(t, "--attestation", arg), [16]byte{}, vktest.DeviceSealer(t, t.TempDir()), log)
			if err != nil || c.mode != want {
				t.Fatalf("--attestation %s: %v %v", arg, c, err)
			}
		}
		if err := flags(t, "--attestation", "packed").Validate(); err == nil || err.Error() != `--attestation "packed": want batch, self or none` {
			t.Fatalf("--attestation packed: %v", err)
		}
	})
	t.Run("user key and certificate", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		set, err := attca.Open(dir, ctap2.DefaultAAGUID, time.Now(), vktest.DeviceSealer(t, t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		// The user's own files: a plaintext key and its certificate.
		keyFile := filepath.Join(dir, "user.key")
		userDER, _ := x509.MarshalPKCS8PrivateKey(set.Batch.Signer)
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: userDER})
		os.WriteFile(keyFile, keyPEM, 0o600)
		certFile := filepath.Join(dir, attca.DirName, attca.BatchCertFile)
		c, err := loadAttestation(flags(t, "--attestation-key", keyFile, "--attestation-cert", certFile), [16]byte{}, vktest.DeviceSealer(t, t.TempDir()), log)
		if err != nil {
			t.Fatal(err)
		}
		if string(c.batch.Chain[0]) != string(set.Batch.Chain[0]) {
			t.Fatal("the given certificate is not used")
		}
		if after, _ := os.ReadFile(keyFile); string(after) != string(keyPEM) {
			t.Fatal("--attestation-key's file was changed; it stays the user's")
		}
		if err := flags(t, "--attestation-key", keyFile).Validate(); err == nil || err.Error() != "--attestation-key and --attestation-cert go together" {
			t.Fatalf("--attestation-key without --attestation-cert: %v", err)
		}
		// A P-521 key cannot sign a statement ctap2 knows.
		k, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		bad := filepath.Join(dir, "p521.key")
		os.WriteFile(bad, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		tmpl := &x509.Certificate{SerialNumber: set.Batch.Leaf.SerialNumber, NotBefore: set.Batch.Leaf.NotBefore, NotAfter: set.Batch.Leaf.NotAfter}
		certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		badCert := filepath.Join(dir, "p521.pem")
		os.WriteFile(badCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644)
		if _, err := loadAttestation(flags(t, "--attestation-key", bad, "--attestation-cert", badCert), [16]byte{}, vktest.DeviceSealer(t, t.TempDir()), log); err == nil || !strings.Contains(err.Error(), "P-521") {
			t.Fatalf("P-521 attestation key: %v", err)
		}
	})
}
