package tpmkeys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/virtkey/virtkey/cose"
)

// MasterKeySize is the size of a Software master key in bytes.
const MasterKeySize = 32

// MaxMetaLength is the most metadata NewCredential seals into an ID.
const MaxMetaLength = 16

// RPIDHashSize is the length of the rpIdHash (SHA-256) every call takes.
const RPIDHashSize = sha256.Size

const (
	credVersion = 0x01
	sealVersion = 0x01
	nonceSize   = chacha20poly1305.NonceSizeX
	tagSize     = chacha20poly1305.Overhead
	algSize     = 2
	metaField   = 1 + MaxMetaLength // length byte ‖ padded meta

	// HKDF info strings; changing one orphans every credential.
	infoWrap  = "virtkey tpmkeys v1: credential wrapping"
	infoSeal  = "virtkey tpmkeys v1: seal"
	infoCheck = "virtkey tpmkeys v1: passphrase check"
	// infoGeneration, a space and the decimal generation number derive a
	// passphrase store's master key from its Argon2id output.
	infoGeneration = "virtkey tpmkeys v1: master key generation"
)

// algSpec describes one supported algorithm. The table is immutable.
type algSpec struct {
	alg     cose.Algorithm
	privLen int
	// generate makes a key and returns it with its raw private encoding.
	generate func() (crypto.Signer, []byte, error)
	// load rebuilds the key from its raw private encoding.
	load func(raw []byte) (crypto.Signer, error)
}

// specs lists the supported algorithms, preferred first.
var specs = []algSpec{
	{cose.AlgES256, 32, genECDSA(elliptic.P256()), loadECDSA(elliptic.P256())},
	{cose.AlgEdDSA, ed25519.SeedSize, genEd25519, loadEd25519},
	{cose.AlgES384, 48, genECDSA(elliptic.P384()), loadECDSA(elliptic.P384())},
	{cose.AlgRS256, rsaPrivLen, genRSA, loadRSA}, // seed-derived RSA-2048: rsa.go
}

func specFor(alg cose.Algorithm) (*algSpec, bool) {
	for i := range specs {
		if specs[i].alg == alg {
			return &specs[i], true
		}
	}
	return nil, false
}

// idLen is the credential ID length for a private key of privLen bytes.
func idLen(privLen int) int {
	return 1 + nonceSize + algSize + privLen + metaField + tagSize
}

func genECDSA(c elliptic.Curve) func() (crypto.Signer, []byte, error) {
	return func() (crypto.Signer, []byte, error) {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		raw, err := k.Bytes()
		if err != nil {
			return nil, nil, err
		}
		return k, raw, nil
	}
}

func loadECDSA(c elliptic.Curve) func([]byte) (crypto.Signer, error) {
	return func(raw []byte) (crypto.Signer, error) { return ecdsa.ParseRawPrivateKey(c, raw) }
}

func genEd25519() (crypto.Signer, []byte, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return k, bytes.Clone(k.Seed()), nil
}

func loadEd25519(raw []byte) (crypto.Signer, error) {
	if len(raw) != ed25519.SeedSize {
		return nil, errors.New("bad Ed25519 seed length")
	}
	return ed25519.NewKeyFromSeed(raw), nil
}

// Software is a key store whose credential IDs carry their own private keys,
// wrapped under a master key (see the package documentation for the
// format). It implements ctap2.KeyStore and ctap2.Sealer, is safe for
// concurrent use, and keeps no per-credential state beyond a bounded cache.
type Software struct {
	redacted
	mu   sync.RWMutex // write-locked only by ResetKeys
	wrap cipher.AEAD  // credential IDs
	seal cipher.AEAD  // Seal / Open
	// secret keys CredentialSecret (HMAC-SHA-256).
	secret []byte
	cache  *keyCache
	// rotate persists and returns a new master key for ResetKeys; nil
	// means the key lives only in memory (NewSoftware).
	rotate func() ([]byte, error)
	// device returns the device key, which ResetKeys leaves alone
	// (devicekey.go).
	device func() ([]byte, error)
}

// Option configures a Software store.
type Option func(*options)

type options struct {
	cacheSize int
	argon2    Argon2Params
}

func defaultOptions() options {
	return options{cacheSize: DefaultCacheSize, argon2: defaultArgon2Params}
}

// applyOptions is the default options with opts applied.
func applyOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithCacheSize sets how many opened credential keys are cached (0 turns
// the cache off). The default is [DefaultCacheSize].
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = max(n, 0) } }

// NewSoftware returns a Software store keyed by masterKey (32 bytes), for
// callers that keep the master key themselves (a TPM-sealed key, tests).
// masterKey is not retained.
func NewSoftware(masterKey []byte, opts ...Option) (*Software, error) {
	return newSoftware(masterKey, applyOptions(opts))
}

func newSoftware(master []byte, o options) (*Software, error) {
	s := &Software{cache: newKeyCache(o.cacheSize)}
	if err := s.setMaster(master); err != nil {
		return nil, err
	}
	dev, err := deriveKey(master, infoDevice)
	if err != nil {
		return nil, err
	}
	s.device = fixedDevice(dev) // OpenSoftware and OpenSoftwarePassphrase replace it
	return s, nil
}

// setMaster derives the subkeys of master. Called before s is shared or
// with s.mu write-locked.
func (s *Software) setMaster(master []byte) error {
	if len(master) != MasterKeySize {
		return fmt.Errorf("tpmkeys: master key of %d bytes, want %d", len(master), MasterKeySize)
	}
	wrap, err := deriveAEAD(master, infoWrap)
	if err != nil {
		return err
	}
	seal, err := deriveAEAD(master, infoSeal)
	if err != nil {
		return err
	}
	secret, err := deriveKey(master, infoSecret)
	if err != nil {
		return err
	}
	s.wrap, s.seal, s.secret = wrap, seal, secret
	return nil
}

// infoSecret is the HKDF info of the per-credential secret key.
const infoSecret = "virtkey software credential secrets v1"

// CredentialSecret derives a 32-byte secret for credential credID and label
// (hmac-secret CredRandoms, largeBlobKey): HMAC-SHA-256 under a subkey of the
// master key over len(label) ‖ label ‖ credID. It implements
// ctap2.SecretDeriver; ResetKeys changes every derived secret. ctx is not used.
func (s *Software) CredentialSecret(_ context.Context, credID []byte, label string) ([]byte, error) {
	if len(label) > 255 {
		return nil, fmt.Errorf("tpmkeys: secret label too long")
	}
	s.mu.RLock()
	key := s.secret
	s.mu.RUnlock()
	m := hmac.New(sha256.New, key)
	m.Write([]byte{byte(len(label))})
	m.Write([]byte(label))
	m.Write(credID)
	return m.Sum(nil), nil
}

// ResetKeys replaces the master key with a new random one, so that every
// credential ID and sealed blob made so far stops opening
// (authenticatorReset; it implements ctap2.KeyResetter). A store from
// OpenSoftware writes the new key file before it switches; one from
// OpenSoftwarePassphrase moves to the next key generation derived from the
// same passphrase (recorded in passphrase.json); one from NewSoftware
// changes the key in memory only, so its caller's key keeps opening the
// old credentials. ctx is not used.
func (s *Software) ResetKeys(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var master []byte
	if s.rotate != nil {
		var err error
		if master, err = s.rotate(); err != nil {
			return err
		}
	} else {
		master = make([]byte, MasterKeySize)
		rand.Read(master)
	}
	defer clear(master)
	if err := s.setMaster(master); err != nil {
		return err
	}
	s.cache.clear()
	return nil
}

func deriveKey(master []byte, info string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, master, nil, info, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("tpmkeys: deriving %q: %w", info, err)
	}
	return k, nil
}

func deriveAEAD(master []byte, info string) (cipher.AEAD, error) {
	k, err := deriveKey(master, info)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	a, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, fmt.Errorf("tpmkeys: %w", err)
	}
	return a, nil
}

// Algorithms returns ES256, EdDSA, ES384 and RS256, in order of preference.
func (s *Software) Algorithms() []cose.Algorithm {
	algs := make([]cose.Algorithm, len(specs))
	for i, sp := range specs {
		algs[i] = sp.alg
	}
	return algs
}

// MaxCredentialIDLength is the length of the longest ID NewCredential
// returns (108 bytes, for ES384; RS256 IDs are 100).
func (s *Software) MaxCredentialIDLength() int {
	n := 0
	for _, sp := range specs {
		n = max(n, idLen(sp.privLen))
	}
	return n
}

// NewCredential creates a key pair for alg bound to rpIDHash (32 bytes) and
// returns its credential ID and public key. meta (at most [MaxMetaLength]
// bytes) is sealed into the ID and returned by Signer. All IDs of one
// algorithm have the same length. ctx is not used.
func (s *Software) NewCredential(_ context.Context, alg cose.Algorithm, rpIDHash, meta []byte) ([]byte, crypto.PublicKey, error) {
	if len(rpIDHash) != RPIDHashSize {
		return nil, nil, fmt.Errorf("tpmkeys: rpIDHash of %d bytes, want %d", len(rpIDHash), RPIDHashSize)
	}
	if len(meta) > MaxMetaLength {
		return nil, nil, fmt.Errorf("tpmkeys: %d bytes of credential metadata, at most %d fit", len(meta), MaxMetaLength)
	}
	sp, ok := specFor(alg)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %v (%d)", ErrUnsupportedAlgorithm, alg, int(alg))
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	priv, raw, err := sp.generate()
	if err != nil {
		return nil, nil, fmt.Errorf("tpmkeys: generating %v key: %w", alg, err)
	}
	defer clear(raw)

	pt := make([]byte, algSize, algSize+sp.privLen+metaField)
	binary.BigEndian.PutUint16(pt, uint16(int16(alg)))
	pt = append(pt, raw...)
	pt = append(pt, byte(len(meta)))
	pt = append(pt, meta...)
	pt = append(pt, make([]byte, MaxMetaLength-len(meta))...)
	defer clear(pt)

	id := make([]byte, 1+nonceSize, idLen(sp.privLen))
	id[0] = credVersion
	rand.Read(id[1:])
	id = s.wrap.Seal(id, id[1:1+nonceSize], pt, credAAD(rpIDHash))

	key := &credentialKey{alg: alg, priv: priv, pub: priv.Public()}
	s.cache.put(&cacheEntry{id: string(id), rpIDHash: bytes.Clone(rpIDHash), key: key, meta: bytes.Clone(meta)})
	return id, key.pub, nil
}

// Signer opens a credential ID made by NewCredential for rpIDHash and
// returns its signer and metadata. Every failure is [ErrUnknownCredential].
// The signer's Sign takes a digest for ES256/ES384 (crypto.SHA256 /
// crypto.SHA384 opts) and the whole message for EdDSA (crypto.Hash(0)), as
// crypto.Signer does; cose.Sign does this for a COSE algorithm. ctx is not
// used.
func (s *Software) Signer(_ context.Context, credID, rpIDHash []byte) (crypto.Signer, []byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e, ok := s.cache.get(credID); ok && bytes.Equal(e.rpIDHash, rpIDHash) {
		return e.key, bytes.Clone(e.meta), nil
	}
	key, meta, err := s.open(credID, rpIDHash)
	if err != nil {
		return nil, nil, ErrUnknownCredential
	}
	s.cache.put(&cacheEntry{id: string(credID), rpIDHash: bytes.Clone(rpIDHash), key: key, meta: meta})
	return key, bytes.Clone(meta), nil
}

// open authenticates and decodes a credential ID. Its errors are for tests
// and never leave the package.
func (s *Software) open(id, rpIDHash []byte) (*credentialKey, []byte, error) {
	if len(rpIDHash) != RPIDHashSize {
		return nil, nil, errors.New("bad rpIDHash length")
	}
	if len(id) < 1+nonceSize+tagSize || id[0] != credVersion {
		return nil, nil, errors.New("not a version 1 credential ID")
	}
	known := false
	for _, sp := range specs {
		known = known || len(id) == idLen(sp.privLen)
	}
	if !known {
		return nil, nil, errors.New("bad credential ID length")
	}
	pt, err := s.wrap.Open(nil, id[1:1+nonceSize], id[1+nonceSize:], credAAD(rpIDHash))
	if err != nil {
		return nil, nil, err
	}
	defer clear(pt)
	alg := cose.Algorithm(int16(binary.BigEndian.Uint16(pt)))
	sp, ok := specFor(alg)
	if !ok || len(pt) != algSize+sp.privLen+metaField {
		return nil, nil, errors.New("bad plaintext")
	}
	raw := pt[algSize : algSize+sp.privLen]
	mf := pt[algSize+sp.privLen:]
	n := int(mf[0])
	if n > MaxMetaLength {
		return nil, nil, errors.New("bad metadata length")
	}
	priv, err := sp.load(raw)
	if err != nil {
		return nil, nil, err
	}
	return &credentialKey{alg: alg, priv: priv, pub: priv.Public()}, bytes.Clone(mf[1 : 1+n]), nil
}

func credAAD(rpIDHash []byte) []byte {
	aad := make([]byte, 0, 1+len(rpIDHash))
	aad = append(aad, credVersion)
	return append(aad, rpIDHash...)
}

// Seal encrypts and authenticates plaintext, bound to aad, under the seal
// subkey: 0x01 ‖ nonce (24) ‖ ciphertext ‖ tag (16). ctx is not used.
func (s *Software) Seal(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(plaintext)+tagSize)
	out[0] = sealVersion
	rand.Read(out[1:])
	return s.seal.Seal(out, out[1:], plaintext, sealAAD(aad)), nil
}

// Open reverses Seal with the same aad. Any failure is [ErrSealedData].
func (s *Software) Open(_ context.Context, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+nonceSize+tagSize || sealed[0] != sealVersion {
		return nil, ErrSealedData
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	pt, err := s.seal.Open(nil, sealed[1:1+nonceSize], sealed[1+nonceSize:], sealAAD(aad))
	if err != nil {
		return nil, ErrSealedData
	}
	return pt, nil
}

func sealAAD(aad []byte) []byte {
	b := make([]byte, 0, 1+len(aad))
	b = append(b, sealVersion)
	return append(b, aad...)
}

// redacted, embedded in a type that holds key material, makes it log as
// "REDACTED" (slog.LogValuer) and refuse to be marshalled to JSON. The
// type's own String and GoString keep it out of fmt output.
type redacted struct{}

// LogValue implements slog.LogValuer: key material logs as "REDACTED".
func (redacted) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// MarshalJSON refuses to serialize key material.
func (redacted) MarshalJSON() ([]byte, error) {
	return nil, errors.New("tpmkeys: refusing to marshal key material")
}

// String keeps key material out of fmt output.
func (s *Software) String() string { return "tpmkeys.Software(REDACTED)" }

// GoString keeps key material out of %#v output.
func (s *Software) GoString() string { return s.String() }

// credentialKey is the crypto.Signer Signer returns: the credential's
// private key behind a wrapper that never prints or serializes it.
type credentialKey struct {
	redacted
	alg  cose.Algorithm
	priv crypto.Signer // *ecdsa.PrivateKey, ed25519.PrivateKey or *rsa.PrivateKey
	pub  crypto.PublicKey
}

// Public returns the credential's *ecdsa.PublicKey or ed25519.PublicKey.
func (k *credentialKey) Public() crypto.PublicKey { return k.pub }

// Sign signs as the underlying key does.
func (k *credentialKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.priv.Sign(r, digest, opts)
}

// Algorithm is the COSE algorithm the credential was created for.
func (k *credentialKey) Algorithm() cose.Algorithm { return k.alg }

func (k *credentialKey) String() string {
	return "tpmkeys credential key " + k.alg.String() + " (REDACTED)"
}
func (k *credentialKey) GoString() string { return k.String() }
