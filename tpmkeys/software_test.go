package tpmkeys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
)

var (
	_ ctap2.KeyStore = (*Software)(nil)
	_ ctap2.Sealer   = (*Software)(nil)
	_ slog.LogValuer = (*Software)(nil)
	_ slog.LogValuer = (*credentialKey)(nil)
)

func newTestStore(t testing.TB, opts ...Option) *Software {
	t.Helper()
	master := make([]byte, MasterKeySize)
	rand.Read(master)
	s, err := NewSoftware(master, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rpHash(rpID string) []byte {
	h := sha256.Sum256([]byte(rpID))
	return h[:]
}

var ctx = context.Background()

func TestCredentialRoundTrip(t *testing.T) {
	t.Parallel()
	wantLen := map[cose.Algorithm]int{cose.AlgES256: 92, cose.AlgEdDSA: 92, cose.AlgES384: 108, cose.AlgRS256: 100}
	for _, cache := range []int{DefaultCacheSize, 0} {
		s := newTestStore(t, WithCacheSize(cache))
		if got := s.Algorithms(); fmt.Sprint(got) != fmt.Sprint([]cose.Algorithm{cose.AlgES256, cose.AlgEdDSA, cose.AlgES384, cose.AlgRS256}) {
			t.Fatalf("Algorithms() = %v", got)
		}
		if got := s.MaxCredentialIDLength(); got != 108 {
			t.Fatalf("MaxCredentialIDLength() = %d", got)
		}
		for _, alg := range s.Algorithms() {
			for _, meta := range [][]byte{nil, {}, {7}, bytes.Repeat([]byte{0xAA}, MaxMetaLength)} {
				t.Run(fmt.Sprintf("%v/cache=%d/meta=%d", alg, cache, len(meta)), func(t *testing.T) {
					rp := rpHash("example.com")
					id, pub, err := s.NewCredential(ctx, alg, rp, meta)
					if err != nil {
						t.Fatal(err)
					}
					if len(id) != wantLen[alg] || len(id) > s.MaxCredentialIDLength() {
						t.Fatalf("ID length %d, want %d", len(id), wantLen[alg])
					}
					if _, err := cose.FromPublicKey(pub, alg); err != nil {
						t.Fatalf("public key does not fit %v: %v", alg, err)
					}
					// Fresh store with the same master key: no cache, real unwrap.
					for i := 0; i < 2; i++ {
						sig, gotMeta, err := s.Signer(ctx, id, rp)
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(gotMeta, meta) {
							t.Fatalf("meta = %x, want %x", gotMeta, meta)
						}
						if !sig.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
							t.Fatal("Signer's public key differs from NewCredential's")
						}
						msg := []byte("authData || clientDataHash")
						raw, err := cose.Sign(sig, alg, msg)
						if err != nil {
							t.Fatal(err)
						}
						if err := cose.Verify(pub, alg, msg, raw); err != nil {
							t.Fatal(err)
						}
						if ck, ok := sig.(interface{ Algorithm() cose.Algorithm }); !ok || ck.Algorithm() != alg {
							t.Fatal("signer does not report its algorithm")
						}
					}
				})
			}
		}
	}
}

// Every ID of one algorithm has the same length, whatever the metadata.
func TestFixedIDLength(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	for _, alg := range s.Algorithms() {
		n := -1
		for m := 0; m <= MaxMetaLength; m++ {
			id, _, err := s.NewCredential(ctx, alg, rpHash("a"), make([]byte, m))
			if err != nil {
				t.Fatal(err)
			}
			if n >= 0 && len(id) != n {
				t.Fatalf("%v: ID lengths %d and %d", alg, n, len(id))
			}
			n = len(id)
		}
	}
}

func TestSignerRejects(t *testing.T) {
	t.Parallel()
	master := bytes.Repeat([]byte{1}, MasterKeySize)
	s, _ := NewSoftware(master)
	uncached, _ := NewSoftware(master, WithCacheSize(0))
	other, _ := NewSoftware(bytes.Repeat([]byte{2}, MasterKeySize))
	rp := rpHash("example.com")
	id, _, err := s.NewCredential(ctx, cose.AlgES256, rp, []byte("meta"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := uncached.Signer(ctx, id, rp); err != nil {
		t.Fatalf("same master key, no cache: %v", err)
	}
	cases := map[string]struct {
		s      *Software
		id, rp []byte
	}{
		"other RP (cached)":   {s, id, rpHash("evil.com")},
		"other RP (uncached)": {uncached, id, rpHash("evil.com")},
		"other master key":    {other, id, rp},
		"empty":               {s, nil, rp},
		"short rpIDHash":      {uncached, id, rp[:31]},
		"truncated":           {uncached, id[:len(id)-1], rp},
		"extended":            {uncached, append(bytes.Clone(id), 0), rp},
		"version 2":           {uncached, append([]byte{2}, id[1:]...), rp},
		"random 92 bytes":     {uncached, randBytes(92), rp},
	}
	for i := range id {
		bad := bytes.Clone(id)
		bad[i] ^= 0x80
		cases[fmt.Sprintf("bit flip at %d", i)] = struct {
			s      *Software
			id, rp []byte
		}{uncached, bad, rp}
	}
	for name, c := range cases {
		signer, meta, err := c.s.Signer(ctx, c.id, c.rp)
		if err != ErrUnknownCredential || signer != nil || meta != nil {
			t.Errorf("%s: Signer = %v, %x, %v; want ErrUnknownCredential itself", name, signer, meta, err)
		}
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestNewCredentialRejects(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	if _, _, err := s.NewCredential(ctx, cose.Algorithm(-36), rpHash("a"), nil); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("ES512: %v", err)
	}
	if _, _, err := s.NewCredential(ctx, cose.AlgES256, rpHash("a"), make([]byte, MaxMetaLength+1)); err == nil {
		t.Error("17 bytes of meta accepted")
	}
	if _, _, err := s.NewCredential(ctx, cose.AlgES256, []byte("short"), nil); err == nil {
		t.Error("short rpIDHash accepted")
	}
	if _, err := NewSoftware(make([]byte, 16)); err == nil {
		t.Error("16-byte master key accepted")
	}
}

// makeCredentials makes n credentials of alg for rp in s, the i-th with
// meta {i}.
func makeCredentials(t *testing.T, s *Software, n int, alg cose.Algorithm, rp []byte) [][]byte {
	t.Helper()
	ids := make([][]byte, n)
	for i := range ids {
		id, _, err := s.NewCredential(ctx, alg, rp, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, WithCacheSize(3))
	rp := rpHash("a")
	ids := makeCredentials(t, s, 10, cose.AlgEdDSA, rp)
	if n := s.cache.len(); n != 3 {
		t.Fatalf("cache holds %d, want 3", n)
	}
	for i, id := range ids { // evicted ones reopen through the AEAD
		_, meta, err := s.Signer(ctx, id, rp)
		if err != nil || !bytes.Equal(meta, []byte{byte(i)}) {
			t.Fatalf("credential %d: %x, %v", i, meta, err)
		}
	}
	if n := s.cache.len(); n != 3 {
		t.Fatalf("cache holds %d, want 3", n)
	}
	// A cache hit returns the same key object (so Go's per-key ECDSA
	// precomputation is reused) and a copy of meta.
	a, m1, _ := s.Signer(ctx, ids[9], rp)
	b, _, _ := s.Signer(ctx, ids[9], rp)
	if a != b {
		t.Fatal("cache hit returned a new key")
	}
	m1[0] ^= 0xff
	if _, m2, _ := s.Signer(ctx, ids[9], rp); m2[0] != 9 {
		t.Fatal("caller could modify cached meta")
	}
}

func TestConcurrentSigners(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, WithCacheSize(4))
	rp := rpHash("a")
	ids := makeCredentials(t, s, 8, cose.AlgES256, rp)
	runConcurrently(t, 8, func(g int) error {
		for i := 0; i < 20; i++ {
			sig, _, err := s.Signer(ctx, ids[(g+i)%len(ids)], rp)
			if err == nil {
				_, err = cose.Sign(sig, cose.AlgES256, []byte{byte(i)})
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// runConcurrently runs f(0) … f(n-1) in n goroutines and reports their
// errors.
func runConcurrently(t *testing.T, n int, f func(g int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range n {
		wg.Go(func() {
			if err := f(g); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	other := newTestStore(t)
	for _, pt := range [][]byte{nil, []byte("pin verifier"), bytes.Repeat([]byte{9}, 100)} {
		sealed, err := s.Seal(ctx, pt, []byte("aad"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sealed, pt) && len(pt) > 0 {
			t.Fatal("plaintext visible in sealed data")
		}
		got, err := s.Open(ctx, sealed, []byte("aad"))
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open = %x, %v", got, err)
		}
		for name, f := range map[string]func() ([]byte, error){
			"wrong aad": func() ([]byte, error) { return s.Open(ctx, sealed, []byte("aae")) },
			"other key": func() ([]byte, error) { return other.Open(ctx, sealed, []byte("aad")) },
			"tampered": func() ([]byte, error) {
				b := bytes.Clone(sealed)
				b[len(b)-1] ^= 1
				return s.Open(ctx, b, []byte("aad"))
			},
			"truncated":  func() ([]byte, error) { return s.Open(ctx, sealed[:20], []byte("aad")) },
			"credential": func() ([]byte, error) { return s.Open(ctx, sealed, nil) },
			"not a blob": func() ([]byte, error) { return s.Open(ctx, nil, []byte("aad")) },
		} {
			if got, err := f(); err != ErrSealedData || got != nil {
				t.Errorf("%s: Open = %x, %v", name, got, err)
			}
		}
	}
	// A credential ID is not sealed data and vice versa (separate subkeys).
	id, _, _ := s.NewCredential(ctx, cose.AlgES256, rpHash("a"), nil)
	if _, err := s.Open(ctx, id, append([]byte{}, rpHash("a")...)); err != ErrSealedData {
		t.Errorf("credential ID opened as sealed data: %v", err)
	}
}

func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	master := bytes.Repeat([]byte{0x5a}, MasterKeySize)
	s, _ := NewSoftware(master)
	id, _, _ := s.NewCredential(ctx, cose.AlgES256, rpHash("a"), nil)
	signer, _, _ := s.Signer(ctx, id, rpHash("a"))
	d, _ := signer.(*credentialKey).priv.(*ecdsa.PrivateKey).Bytes()

	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "store", s, "key", signer)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s %v %+v %#v", s, s, s, signer, signer, signer, signer)
	if strings.Contains(out, hex.EncodeToString(d)) {
		t.Fatal("private scalar in output")
	}
	if !strings.Contains(buf.String(), `"store":"REDACTED"`) || !strings.Contains(buf.String(), `"key":"REDACTED"`) {
		t.Fatalf("log output %s", buf.String())
	}
	if strings.Contains(out, "D:") {
		t.Fatalf("key fields in fmt output: %s", out)
	}
	if _, err := json.Marshal(s); err == nil {
		t.Error("json.Marshal(store) succeeded")
	}
	if _, err := json.Marshal(signer); err == nil {
		t.Error("json.Marshal(signer) succeeded")
	}
}

// BenchmarkRawSignASN1 is the floor: ECDSA P-256 over a digest with a key
// already in memory.
func BenchmarkRawSignASN1(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte("authData || clientDataHash"))
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, k, d[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignerES256 is what getAssertion pays per signature: open the
// credential ID (a cache hit after the first call) and sign.
func BenchmarkSignerES256(b *testing.B) {
	benchSigner(b, newTestStore(b), cose.AlgES256)
}

// BenchmarkSignerES256Uncached shows the cost the cache removes: AEAD open,
// scalar-base multiplication and ECDSA precomputation on every call.
func BenchmarkSignerES256Uncached(b *testing.B) {
	benchSigner(b, newTestStore(b, WithCacheSize(0)), cose.AlgES256)
}

func BenchmarkSignerEdDSA(b *testing.B) {
	benchSigner(b, newTestStore(b), cose.AlgEdDSA)
}

// benchSigner opens a credential of s and signs with it, once per
// iteration: an ES256 credential signs a SHA-256 digest, an EdDSA one a
// 69-byte message (authenticatorData ‖ clientDataHash).
func benchSigner(b *testing.B, s *Software, alg cose.Algorithm) {
	rp := rpHash("example.com")
	id, _, err := s.NewCredential(ctx, alg, rp, []byte("meta"))
	if err != nil {
		b.Fatal(err)
	}
	msg, opts := make([]byte, 69), crypto.Hash(0)
	if alg == cose.AlgES256 {
		d := sha256.Sum256([]byte("authData || clientDataHash"))
		msg, opts = d[:], crypto.SHA256
	}
	for b.Loop() {
		signer, _, err := s.Signer(ctx, id, rp)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := signer.Sign(rand.Reader, msg, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignerLookup is the key store's own share of a cached
// getAssertion signature: everything but the ECDSA signing.
func BenchmarkSignerLookup(b *testing.B) {
	s := newTestStore(b)
	rp := rpHash("example.com")
	id, _, _ := s.NewCredential(ctx, cose.AlgES256, rp, []byte("meta"))
	for b.Loop() {
		if _, _, err := s.Signer(ctx, id, rp); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCredentialSecret(t *testing.T) {
	t.Parallel()
	s, err := NewSoftware(bytes.Repeat([]byte{7}, MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	var _ ctap2.SecretDeriver = s
	a, _ := s.CredentialSecret(context.Background(), []byte("id1"), "x")
	b, _ := s.CredentialSecret(context.Background(), []byte("id1"), "x")
	c, _ := s.CredentialSecret(context.Background(), []byte("id1"), "y")
	d, _ := s.CredentialSecret(context.Background(), []byte("id2"), "x")
	if len(a) != 32 || !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(a, d) {
		t.Fatal("secrets must be deterministic per (id, label) and differ otherwise")
	}
	if err := s.ResetKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	e, _ := s.CredentialSecret(context.Background(), []byte("id1"), "x")
	if bytes.Equal(a, e) {
		t.Fatal("ResetKeys must change derived secrets")
	}
}
