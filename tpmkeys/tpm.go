package tpmkeys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/crypto/cryptobyte"

	"github.com/virtkey/virtkey/cose"
)

// ErrTPMMismatch reports that the TPM is not the one the state directory
// was set up with: it was cleared (a new storage seed), or this is another
// machine's TPM or a fresh swtpm. The credentials made before cannot be
// used any more; virtkey never replaces them silently.
var ErrTPMMismatch = errors.New("tpmkeys: the TPM has been cleared or replaced; credentials made on the old TPM cannot be used")

// ErrTPMUnavailable reports that the TPM could not be reached (no device,
// no permission, swtpm not running).
var ErrTPMUnavailable = errors.New("tpmkeys: TPM unavailable")

// EdDSAMode says what a TPM key store does with EdDSA (Ed25519), which
// TPMs do not implement.
type EdDSAMode int

const (
	// EdDSARefuse (the default) offers ES256 only: every credential key is a
	// TPM key. getInfo does not list EdDSA, and a request for EdDSA alone
	// fails with UNSUPPORTED_ALGORITHM.
	EdDSARefuse EdDSAMode = iota
	// EdDSAWrapped also offers EdDSA, as software Ed25519 keys wrapped
	// (inside the credential ID) under the TPM-sealed master key: they
	// cannot be used without this TPM, but the private key exists in
	// process memory while it signs.
	EdDSAWrapped
)

// TPMOption configures OpenTPM.
type TPMOption func(*tpmOptions)

type tpmOptions struct {
	eddsa EdDSAMode
	log   *slog.Logger
}

// WithEdDSA chooses what happens to EdDSA; the default is [EdDSARefuse].
func WithEdDSA(m EdDSAMode) TPMOption { return func(o *tpmOptions) { o.eddsa = m } }

// WithTPMLogger sets the logger for TPM events (reconnects, a mismatch).
func WithTPMLogger(l *slog.Logger) TPMOption { return func(o *tpmOptions) { o.log = l } }

// TPM credential ID format (version 2):
//
//	id        = 0x02 ‖ nonce (24) ‖ XChaCha20-Poly1305(tpmWrapKey, nonce, plaintext, aad)
//	aad       = 0x02 ‖ rpIdHash (32)
//	plaintext = alg (int16, -7) ‖ blobs, zero-padded to 320 ‖ len(meta) (1) ‖ meta, zero-padded to 16
//	blobs     = TPM2B_PUBLIC ‖ TPM2B_PRIVATE  (each a 2-byte size and its contents)
const (
	tpmCredVersion  = 0x02
	tpmBlobCapacity = 320
	tpmPlainLen     = algSize + tpmBlobCapacity + metaField
	tpmIDLen        = 1 + nonceSize + tpmPlainLen + tagSize // 380

	// infoTPMWrap is the HKDF info of the TPM credential wrapping key;
	// changing it orphans every TPM credential.
	infoTPMWrap = "virtkey tpmkeys v1: TPM credential wrapping"
)

// TPM is a key store whose ES256 credential keys are generated and used
// inside a TPM 2.0, with go-tpm's tpm2 API. It implements ctap2.KeyStore,
// ctap2.Sealer, ctap2.SecretDeriver and ctap2.KeyResetter, and is safe for
// concurrent use (all TPM commands are serialized).
//
// # Keys
//
// The parent of every object is the TCG ECC P-256 storage root key (SRK),
// re-created with TPM2_CreatePrimary once per process (or the persistent
// SRK at 0x81000001 when its Name is the pinned one). Its Name is pinned
// in dir/tpm.json at first start and compared at every start and
// reconnect; a different Name is [ErrTPMMismatch].
//
// A credential key is an ECDSA P-256 key created by TPM2_Create under the
// SRK (fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA, empty
// auth). Its private part leaves the TPM only as TPM2B_PRIVATE, encrypted
// and integrity-protected under the SRK. Both blobs go into the credential
// ID (see the format above), an AEAD envelope under a key derived from the
// master key and bound to the rpIdHash, so IDs are RP-bound, tamper-evident
// and opaque to the relying party. An assertion is TPM2_Load, TPM2_Sign,
// TPM2_FlushContext under one lock; the signature is DER-encoded.
//
// # Master key
//
// A random 32-byte master key is sealed to the TPM at first start, as a
// keyedhash object under the SRK whose blobs are in dir/tpm.json, and
// unsealed once per start (over a session salted with the SRK, so it never
// crosses the bus in the clear). It keys, through HKDF, the credential-ID
// envelope, [TPM.Seal] and [TPM.Open] (PIN state, credBlobs),
// [TPM.CredentialSecret] (hmac-secret CredRandoms, largeBlobKeys) and, with
// [EdDSAWrapped], Ed25519 credentials (the [Software] format).
//
// # Failures
//
// If a command fails (a TPM restart flushed our handles, swtpm restarted
// and dropped the connection), TPM reconnects, re-creates the SRK, compares
// its Name and retries once. Once a mismatch is seen every call returns
// [ErrTPMMismatch].
type TPM struct {
	redacted
	dir   string
	open  Opener
	log   *slog.Logger
	eddsa EdDSAMode

	mu     sync.Mutex // serializes TPM commands; guards the fields below
	conn   transport.TPMCloser
	srk    *srk
	pinned []byte // the SRK Name from tpm.json
	failed error  // sticky ErrTPMMismatch

	// The rollback reference, as in tpm.json (set at open, then constant).
	nvCounter tpm2.TPMHandle
	nvBase    uint64
	epochFile bool

	kmu  sync.RWMutex // guards keys (swapped by ResetKeys)
	keys *tpmKeys
}

// tpmKeys is what the master key keys.
type tpmKeys struct {
	wrap cipher.AEAD // TPM credential IDs
	soft *Software   // Seal, Open, CredentialSecret, EdDSA credentials
}

func newTPMKeys(master []byte) (*tpmKeys, error) {
	wrap, err := deriveAEAD(master, infoTPMWrap)
	if err != nil {
		return nil, err
	}
	soft, err := newSoftware(master, defaultOptions())
	if err != nil {
		return nil, err
	}
	return &tpmKeys{wrap: wrap, soft: soft}, nil
}

// OpenTPM opens the TPM key store of state directory dir (created 0700)
// on the TPM that open reaches (see [OpenerFor]). On first use it pins the
// SRK Name and seals a new master key (dir/tpm.json, 0600, atomic);
// afterwards it checks the Name — [ErrTPMMismatch] if the TPM was cleared
// or replaced — and unseals the master key. A TPM that cannot be reached is
// [ErrTPMUnavailable]; there is no fallback to software keys. It refuses a
// state directory set up for the software key store.
func OpenTPM(ctx context.Context, dir string, open Opener, opts ...TPMOption) (*TPM, error) {
	o := tpmOptions{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := makeStateDir(dir); err != nil {
		return nil, err
	}
	for _, f := range []string{KeyFileName, PassphraseFileName} {
		if exists(filepath.Join(dir, f)) {
			return nil, fmt.Errorf("tpmkeys: state directory %s belongs to the software key store (it has %s); use --keystore software or another --state-dir", dir, f)
		}
	}
	st, err := readTPMState(dir)
	if err != nil {
		return nil, err
	}
	t := &TPM{dir: dir, open: open, log: o.log, eddsa: o.eddsa}
	if st != nil {
		t.pinned = st.SRKName
	}
	conn, err := open()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTPMUnavailable, err)
	}
	t.conn = conn
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	if err := t.loadSRK(); err != nil {
		return nil, err
	}
	var master []byte
	if st == nil {
		master = make([]byte, MasterKeySize)
		rand.Read(master)
		blobs, err := createSealed(t.conn, t.srk, master)
		if err != nil {
			return nil, fmt.Errorf("tpmkeys: sealing the master key: %w", err)
		}
		st = &tpmState{Version: 1, SRKName: bytes.Clone(t.srk.name.Buffer), MasterPublic: blobs.public, MasterPrivate: blobs.private}
		t.newReference(st)
		if err := writeTPMState(dir, st, false); err != nil {
			return nil, err
		}
		t.pinned = st.SRKName
		t.log.Info("TPM key store created", "srkName", hex.EncodeToString(t.pinned))
	} else {
		master, err = unseal(t.conn, t.srk, &keyBlobs{public: st.MasterPublic, private: st.MasterPrivate})
		if err != nil {
			return nil, fmt.Errorf("tpmkeys: unsealing the master key from %s: %w", filepath.Join(dir, TPMStateFileName), err)
		}
	}
	defer clear(master)
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("tpmkeys: unsealed master key of %d bytes, want %d", len(master), MasterKeySize)
	}
	if t.keys, err = newTPMKeys(master); err != nil {
		return nil, err
	}
	if err := t.setupReference(st); err != nil {
		return nil, err
	}
	t.log.Info("TPM key store ready", "srk", srkKind(t.srk), "eddsa", t.eddsa == EdDSAWrapped, "rollbackReference", t.RollbackReference().String())
	ok = true
	return t, nil
}

// CheckTPM reports whether the TPM that open reaches can serve state
// directory dir, without changing either: nil, an [ErrTPMUnavailable]
// error, or an [ErrTPMMismatch] error when dir was set up on another TPM
// (or before a TPM clear). It re-creates the SRK and flushes it.
func CheckTPM(ctx context.Context, dir string, open Opener) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st, err := readTPMState(dir)
	if err != nil {
		return err
	}
	conn, err := open()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTPMUnavailable, err)
	}
	t := &TPM{dir: dir, conn: conn, log: slog.New(slog.DiscardHandler)}
	if st != nil {
		t.pinned = st.SRKName
	}
	defer t.Close()
	return t.loadSRK()
}

func srkKind(k *srk) string {
	if k.persistent {
		return "persistent 0x81000001"
	}
	return "transient (CreatePrimary)"
}

// loadSRK makes t.srk the pinned SRK (or, on first use, pins nothing yet).
// t.mu is held or t is not shared yet.
func (t *TPM) loadSRK() error {
	if t.pinned != nil {
		if k, ok := readPersistentSRK(t.conn, t.pinned); ok {
			t.srk = k
			return nil
		}
	}
	k, err := createSRK(t.conn)
	if err != nil {
		return fmt.Errorf("tpmkeys: %w", err)
	}
	if t.pinned != nil && !bytes.Equal(k.name.Buffer, t.pinned) {
		flush(t.conn, k.handle)
		return fmt.Errorf("%w (the state directory %s was set up on a TPM whose storage root key Name is %x; this TPM's is %x. "+
			"To start over on this TPM, move the state directory away: every passkey in it is lost)",
			ErrTPMMismatch, t.dir, t.pinned, k.name.Buffer)
	}
	t.srk = k
	return nil
}

// do runs op with the TPM connection and the SRK, under t.mu. If op fails,
// do reconnects (a transport error) or re-creates the SRK (a TPM error),
// checks the SRK Name and runs op once more.
func (t *TPM) do(op func(tpm transport.TPM, parent *srk) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed != nil {
		return t.failed
	}
	if t.conn == nil || t.srk == nil {
		if err := t.reconnect(nil); err != nil {
			return err
		}
	}
	err := op(t.conn, t.srk)
	if err == nil {
		return nil
	}
	t.log.Warn("TPM command failed; re-creating the storage root key and retrying once", "err", err)
	if rerr := t.reconnect(err); rerr != nil {
		return rerr
	}
	return op(t.conn, t.srk)
}

// reconnect re-establishes t.conn (after a transport failure, or when
// there is none) and t.srk. t.mu is held.
func (t *TPM) reconnect(cause error) error {
	var rc tpm2.TPMRC
	if t.conn == nil || (cause != nil && !errors.As(cause, &rc)) {
		if t.conn != nil {
			t.conn.Close()
			t.conn = nil
		}
		conn, err := t.open()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrTPMUnavailable, err)
		}
		t.conn = conn
	}
	// Free the old SRK if it is still there: a TPM without a resource
	// manager (swtpm, /dev/tpm0) keeps transient objects across client
	// connections. Under /dev/tpmrm0 or after a TPM restart this fails
	// harmlessly.
	if t.srk != nil && !t.srk.persistent {
		flush(t.conn, t.srk.handle)
	}
	t.srk = nil
	if err := t.loadSRK(); err != nil {
		if errors.Is(err, ErrTPMMismatch) {
			t.failed = err
			t.log.Error("the TPM has been cleared or replaced: the credentials in the state directory can no longer be used", "err", err)
		}
		return err
	}
	return nil
}

// Close flushes the SRK (unless it is the persistent one) and closes the
// TPM connection. The store is unusable afterwards.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil
	}
	if t.srk != nil && !t.srk.persistent {
		flush(t.conn, t.srk.handle)
	}
	err := t.conn.Close()
	t.conn, t.srk = nil, nil
	t.failed = errors.New("tpmkeys: TPM key store closed")
	return err
}

func (t *TPM) currentKeys() *tpmKeys {
	t.kmu.RLock()
	defer t.kmu.RUnlock()
	return t.keys
}

// Algorithms returns ES256 and, with [EdDSAWrapped], EdDSA.
func (t *TPM) Algorithms() []cose.Algorithm {
	if t.eddsa == EdDSAWrapped {
		return []cose.Algorithm{cose.AlgES256, cose.AlgEdDSA}
	}
	return []cose.Algorithm{cose.AlgES256}
}

// MaxCredentialIDLength is the length of every TPM credential ID (380
// bytes); wrapped EdDSA IDs are shorter (92).
func (t *TPM) MaxCredentialIDLength() int { return tpmIDLen }

// NewCredential creates a key for alg bound to rpIDHash (32 bytes) and
// returns its credential ID and public key: for ES256 a TPM key (one
// TPM2_Create), for EdDSA with [EdDSAWrapped] a wrapped software key. meta
// (at most [MaxMetaLength] bytes) is sealed into the ID and returned by
// Signer. ctx is not used: TPM commands cannot be interrupted.
func (t *TPM) NewCredential(ctx context.Context, alg cose.Algorithm, rpIDHash, meta []byte) ([]byte, crypto.PublicKey, error) {
	if len(rpIDHash) != RPIDHashSize {
		return nil, nil, fmt.Errorf("tpmkeys: rpIDHash of %d bytes, want %d", len(rpIDHash), RPIDHashSize)
	}
	if len(meta) > MaxMetaLength {
		return nil, nil, fmt.Errorf("tpmkeys: %d bytes of credential metadata, at most %d fit", len(meta), MaxMetaLength)
	}
	keys := t.currentKeys()
	switch {
	case alg == cose.AlgEdDSA && t.eddsa == EdDSAWrapped:
		return keys.soft.NewCredential(ctx, alg, rpIDHash, meta)
	case alg != cose.AlgES256:
		return nil, nil, fmt.Errorf("%w: %v (%d) with the TPM key store", ErrUnsupportedAlgorithm, alg, int(alg))
	}
	var blobs *keyBlobs
	var pub *ecdsa.PublicKey
	err := t.do(func(tpm transport.TPM, parent *srk) (err error) {
		blobs, pub, err = createSigningKey(tpm, parent)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("tpmkeys: creating a TPM key: %w", err)
	}
	pt, err := tpmPlaintext(alg, blobs, meta)
	if err != nil {
		return nil, nil, err
	}
	id := make([]byte, 1+nonceSize, tpmIDLen)
	id[0] = tpmCredVersion
	rand.Read(id[1:])
	id = keys.wrap.Seal(id, id[1:1+nonceSize], pt, tpmCredAAD(rpIDHash))
	return id, pub, nil
}

func tpmPlaintext(alg cose.Algorithm, b *keyBlobs, meta []byte) ([]byte, error) {
	var blobs cryptobyte.Builder
	blobs.AddUint16LengthPrefixed(func(c *cryptobyte.Builder) { c.AddBytes(b.public) })
	blobs.AddUint16LengthPrefixed(func(c *cryptobyte.Builder) { c.AddBytes(b.private) })
	raw, err := blobs.Bytes()
	if err != nil || len(raw) > tpmBlobCapacity {
		return nil, fmt.Errorf("tpmkeys: TPM key blobs of %d bytes do not fit the %d-byte credential ID field", len(raw), tpmBlobCapacity)
	}
	pt := make([]byte, tpmPlainLen)
	binary.BigEndian.PutUint16(pt, uint16(int16(alg)))
	copy(pt[algSize:], raw)
	mf := pt[algSize+tpmBlobCapacity:]
	mf[0] = byte(len(meta))
	copy(mf[1:], meta)
	return pt, nil
}

func tpmCredAAD(rpIDHash []byte) []byte {
	return append([]byte{tpmCredVersion}, rpIDHash...)
}

// Signer opens a credential ID made by NewCredential for rpIDHash and
// returns its signer and metadata. It does not touch the TPM: the
// signer's Sign does (Load, Sign, Flush). Every failure to open an ID is
// [ErrUnknownCredential]; once the TPM is known to be cleared or replaced
// it is [ErrTPMMismatch]. The signer's Sign takes a SHA-256 digest (opts
// crypto.SHA256) and returns an ASN.1 DER signature.
func (t *TPM) Signer(ctx context.Context, credID, rpIDHash []byte) (crypto.Signer, []byte, error) {
	keys := t.currentKeys()
	if len(credID) != tpmIDLen || credID[0] != tpmCredVersion {
		if t.eddsa != EdDSAWrapped {
			return nil, nil, ErrUnknownCredential
		}
		s, meta, err := keys.soft.Signer(ctx, credID, rpIDHash)
		if err != nil {
			return nil, nil, ErrUnknownCredential
		}
		if k, ok := s.(*credentialKey); !ok || k.alg != cose.AlgEdDSA {
			return nil, nil, ErrUnknownCredential
		}
		return s, meta, nil
	}
	t.mu.Lock()
	failed := t.failed
	t.mu.Unlock()
	if failed != nil {
		return nil, nil, failed
	}
	k, meta, err := t.openTPMCredential(keys, credID, rpIDHash)
	if err != nil {
		return nil, nil, ErrUnknownCredential
	}
	return k, meta, nil
}

// openTPMCredential authenticates and decodes a TPM credential ID. Its
// errors are for tests and never leave the package.
func (t *TPM) openTPMCredential(keys *tpmKeys, id, rpIDHash []byte) (*tpmSigner, []byte, error) {
	if len(rpIDHash) != RPIDHashSize {
		return nil, nil, errors.New("bad rpIDHash length")
	}
	pt, err := keys.wrap.Open(nil, id[1:1+nonceSize], id[1+nonceSize:], tpmCredAAD(rpIDHash))
	if err != nil {
		return nil, nil, err
	}
	if len(pt) != tpmPlainLen || cose.Algorithm(int16(binary.BigEndian.Uint16(pt))) != cose.AlgES256 {
		return nil, nil, errors.New("bad plaintext")
	}
	s := cryptobyte.String(pt[algSize : algSize+tpmBlobCapacity])
	var public, private cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&public) || !s.ReadUint16LengthPrefixed(&private) || len(public) == 0 || len(private) == 0 {
		return nil, nil, errors.New("bad TPM blobs")
	}
	pub, err := signingPublic(public)
	if err != nil {
		return nil, nil, err
	}
	mf := pt[algSize+tpmBlobCapacity:]
	n := int(mf[0])
	if n > MaxMetaLength {
		return nil, nil, errors.New("bad metadata length")
	}
	k := &tpmSigner{t: t, pub: pub, blobs: keyBlobs{public: bytes.Clone(public), private: bytes.Clone(private)}}
	return k, bytes.Clone(mf[1 : 1+n]), nil
}

// Seal encrypts and authenticates plaintext, bound to aad, under a key
// derived from the TPM-sealed master key (the [Software.Seal] format).
func (t *TPM) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	return t.currentKeys().soft.Seal(ctx, plaintext, aad)
}

// Open reverses Seal with the same aad. Any failure is [ErrSealedData].
func (t *TPM) Open(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	return t.currentKeys().soft.Open(ctx, sealed, aad)
}

// CredentialSecret derives a 32-byte per-credential secret (hmac-secret
// CredRandoms, largeBlobKey) under the TPM-sealed master key, as
// [Software.CredentialSecret] does. It implements ctap2.SecretDeriver.
func (t *TPM) CredentialSecret(ctx context.Context, credID []byte, label string) ([]byte, error) {
	return t.currentKeys().soft.CredentialSecret(ctx, credID, label)
}

// ResetKeys seals a new random master key to the TPM and replaces
// dir/tpm.json with it (atomically), so every credential ID and sealed blob
// made so far stops opening (authenticatorReset; ctap2.KeyResetter). The
// old TPM key blobs become unreachable: they live only inside IDs that no
// longer open. The pinned SRK stays.
func (t *TPM) ResetKeys(context.Context) error {
	master := make([]byte, MasterKeySize)
	rand.Read(master)
	defer clear(master)
	var blobs *keyBlobs
	var name []byte
	err := t.do(func(tpm transport.TPM, parent *srk) (err error) {
		blobs, err = createSealed(tpm, parent, master)
		name = bytes.Clone(parent.name.Buffer)
		return err
	})
	if err != nil {
		return fmt.Errorf("tpmkeys: sealing a new master key: %w", err)
	}
	keys, err := newTPMKeys(master)
	if err != nil {
		return err
	}
	st := &tpmState{Version: 1, SRKName: name, MasterPublic: blobs.public, MasterPrivate: blobs.private,
		NVCounter: uint32(t.nvCounter), NVBase: t.nvBase, EpochFile: t.epochFile}
	t.kmu.Lock()
	defer t.kmu.Unlock()
	if err := writeTPMState(t.dir, st, true); err != nil {
		return err
	}
	t.keys = keys
	return nil
}

// String keeps key material out of fmt output.
func (t *TPM) String() string { return "tpmkeys.TPM(REDACTED)" }

// GoString keeps key material out of %#v output.
func (t *TPM) GoString() string { return t.String() }

// tpmSigner is the crypto.Signer of a TPM credential: its blobs, loaded
// into the TPM for each signature.
type tpmSigner struct {
	t     *TPM
	pub   *ecdsa.PublicKey
	blobs keyBlobs
}

// Public returns the credential's *ecdsa.PublicKey.
func (k *tpmSigner) Public() crypto.PublicKey { return k.pub }

// Sign signs a SHA-256 digest inside the TPM (Load, Sign, Flush) and
// returns the ASN.1 DER signature. rand is not used: the TPM makes its own
// nonce.
func (k *tpmSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, errors.New("tpmkeys: a TPM credential signs SHA-256 digests only")
	}
	var sig []byte
	err := k.t.do(func(tpm transport.TPM, parent *srk) (err error) {
		sig, err = signDigest(tpm, parent, &k.blobs, digest)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpmkeys: signing in the TPM: %w", err)
	}
	return sig, nil
}

// Algorithm is the COSE algorithm of the credential (ES256).
func (k *tpmSigner) Algorithm() cose.Algorithm { return cose.AlgES256 }

func (k *tpmSigner) LogValue() slog.Value { return slog.StringValue("TPM ES256 key") }
func (k *tpmSigner) String() string       { return "tpmkeys TPM credential key ES256" }
func (k *tpmSigner) GoString() string     { return k.String() }

// setupReference adopts the rollback reference recorded in st or, for a
// tpm.json without one (written before the counters), makes one with
// newReference and records it in tpm.json.
func (t *TPM) setupReference(st *tpmState) error {
	if st.NVCounter == 0 && !st.EpochFile {
		next := *st
		t.newReference(&next)
		if err := writeTPMState(t.dir, &next, true); err != nil {
			return err
		}
		*st = next
	}
	t.nvCounter, t.nvBase, t.epochFile = tpm2.TPMHandle(st.NVCounter), st.NVBase, st.EpochFile
	return nil
}

// newReference defines a TPM NV counter, increments it once (a counter
// cannot be read before) and sets st's NVCounter and NVBase. A TPM that
// refuses (an owner password, no NV space) gets the epoch file instead,
// with a warning.
func (t *TPM) newReference(st *tpmState) {
	var h tpm2.TPMHandle
	var base uint64
	err := t.do(func(tpm transport.TPM, _ *srk) (err error) {
		if h == 0 {
			if h, err = defineCounter(tpm, randomUint32); err != nil {
				return err
			}
		}
		if base, err = readCounter(tpm, h); errors.Is(err, tpm2.TPMRCNVUninitialized) {
			if err = incrementCounter(tpm, h); err == nil {
				base, err = readCounter(tpm, h)
			}
		}
		return err
	})
	if err != nil {
		t.log.Warn("the TPM refused an NV counter; state.db's rollback reference is the epoch file instead (a restored state.db is caught only if the epoch file is not restored with it)",
			"err", err)
		st.EpochFile = true
		return
	}
	st.NVCounter, st.NVBase = uint32(h), base
}

func randomUint32() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// RollbackReference returns state.db's rollback reference: the TPM NV
// counter recorded in tpm.json (its epoch is the counter's value minus the
// value it had when defined), or the epoch file when the TPM refused one.
func (t *TPM) RollbackReference() RollbackReference {
	if t.epochFile {
		return NewEpochFile(t.dir)
	}
	return &nvReference{t: t}
}

// nvReference is a [RollbackReference] on the TPM NV counter of t.
type nvReference struct{ t *TPM }

func (r *nvReference) String() string {
	return fmt.Sprintf("TPM NV counter %#08x", uint32(r.t.nvCounter))
}

func (r *nvReference) Epoch(context.Context) (uint64, error) {
	var v uint64
	err := r.t.do(func(tpm transport.TPM, _ *srk) (err error) {
		v, err = readCounter(tpm, r.t.nvCounter)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("tpmkeys: reading the %s: %w", r, err)
	}
	return r.epoch(v)
}

// epoch is the epoch of counter value v: how far the counter has gone
// since it was defined.
func (r *nvReference) epoch(v uint64) (uint64, error) {
	if v < r.t.nvBase {
		return 0, fmt.Errorf("tpmkeys: the %s reads %d, below its first value %d (it was re-defined)", r, v, r.t.nvBase)
	}
	return v - r.t.nvBase, nil
}

// AdvanceEpoch increments the counter once. A command retried after a
// lost connection first reads the counter, so one call never increments
// twice.
func (r *nvReference) AdvanceEpoch(ctx context.Context) (uint64, error) {
	before, err := r.Epoch(ctx)
	if err != nil {
		return 0, err
	}
	var v uint64
	err = r.t.do(func(tpm transport.TPM, _ *srk) (err error) {
		if v, err = readCounter(tpm, r.t.nvCounter); err != nil {
			return err
		}
		if v < r.t.nvBase {
			return fmt.Errorf("the counter reads %d, below its first value %d", v, r.t.nvBase)
		}
		if v-r.t.nvBase > before {
			return nil // an earlier attempt landed
		}
		if err := incrementCounter(tpm, r.t.nvCounter); err != nil {
			return err
		}
		v, err = readCounter(tpm, r.t.nvCounter)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("tpmkeys: advancing the %s: %w", r, err)
	}
	return r.epoch(v)
}
