package ctap2

// The authenticator's side of the test-automation control plane: import
// and export of stored credential records, runtime UV and response
// overrides, PIN administration, and the Observer that reports what CTAP
// clients did. The control package speaks HTTP and JSON on top of this;
// ctap2 knows nothing of either.

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/virtkey/virtkey/cose"
)

// EventType names what an [Event] reports.
type EventType string

// Event types.
const (
	EventCredentialAdded    EventType = "credentialAdded"
	EventCredentialAsserted EventType = "credentialAsserted"
	EventCredentialUpdated  EventType = "credentialUpdated"
	EventCredentialDeleted  EventType = "credentialDeleted"
	EventPINSet             EventType = "pinSet"
	EventPINFailed          EventType = "pinFailed"
	EventReset              EventType = "reset"
)

// Event is something the authenticator did for a client (or a controller).
type Event struct {
	Type         EventType
	CredentialID []byte
	RPID         string
	UserHandle   []byte
	// SignCount and Flags are the authenticator data's of a credentialAdded
	// or credentialAsserted event.
	SignCount uint32
	Flags     byte
	// Op is the command ("makeCredential", "getAssertion",
	// "credentialManagement", "clientPIN", "control" for a controller's call).
	Op string
	// Status is a pinFailed event's CTAP status.
	Status StatusCode
}

// Observer receives events. Observe is called with the authenticator's
// lock held, right after the change is stored and before the response
// leaves: it must not block or call back into the authenticator.
type Observer interface {
	Observe(Event)
}

func (a *Authenticator) observe(e Event) {
	if a.cfg.Observer != nil {
		a.cfg.Observer.Observe(e)
	}
}

// Overrides are response override bits (Chromium's DevTools WebAuthn
// domain): assertions get an all-zero signature, authenticator data gets
// its UV or UP flag cleared.
type Overrides struct {
	BogusSignature bool
	BadUV          bool
	BadUP          bool
}

// SetOverrides sets the response override bits for every later response.
func (a *Authenticator) SetOverrides(o Overrides) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.overrides = o
}

// applyFlagOverrides clears the flags the overrides ask to.
func (a *Authenticator) applyFlagOverrides(flags byte) byte {
	if a.overrides.BadUV {
		flags &^= FlagUV
	}
	if a.overrides.BadUP {
		flags &^= FlagUP
	}
	return flags
}

// applySignatureOverride zeroes sig when asked to.
func (a *Authenticator) applySignatureOverride(sig []byte) []byte {
	if a.overrides.BogusSignature {
		return make([]byte, len(sig))
	}
	return sig
}

// SetUV changes built-in user verification from now on. Going to UVAuto
// also gives the "user" back every uvRetry (a controller says the user now
// verifies).
func (a *Authenticator) SetUV(ctx context.Context, mode UVMode) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg.UV = mode
	if mode == UVAuto && a.state.UVRetries != maxUVRetries {
		st := a.state
		st.UVRetries = maxUVRetries
		return a.saveState(st)
	}
	return nil
}

// SetPIN sets or replaces the PIN without a CTAP round trip; the retries
// go back to the maximum and every token is revoked.
func (a *Authenticator) SetPIN(ctx context.Context, pin string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(pin) > 63 || uint(PINCodePoints(pin)) < a.state.MinPINLength {
		return ErrPINPolicyViolation
	}
	return a.storePIN(ctx, pin) // observes pinSet
}

// RemovePIN removes the PIN (no CTAP command can; only a reset does).
func (a *Authenticator) RemovePIN(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.state
	st.PINHashSealed, st.PINCodePoints, st.ForcePINChange, st.PersistentTokenSealed = nil, 0, false, nil
	st.PINRetries = maxPINRetries
	if err := a.saveState(st); err != nil {
		return err
	}
	a.vol.token.revoke()
	a.vol.pinFails = 0
	return nil
}

// PINSet reports whether a PIN is set.
func (a *Authenticator) PINSet() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state.pinSet()
}

// StoredCredential is a credential record as a controller sees it.
type StoredCredential struct {
	ID       []byte
	RPID     string
	User     UserEntity
	Resident bool // discoverable
	Alg      cose.Algorithm
	// PublicKey is the credential's public key.
	PublicKey crypto.PublicKey
	// PrivateKey is set only when asked for and the key can leave.
	PrivateKey     crypto.Signer
	SignCount      uint32
	CredProtect    byte
	HMACSecret     bool
	LargeBlob      []byte
	BackupEligible bool
	BackupState    bool
	Created        time.Time
}

// CredentialImport describes a credential a controller adds.
type CredentialImport struct {
	// ID is the credential ID (16 to 1023 bytes); nil lets the key store
	// make one (and the key pair, which then never leaves a TPM).
	ID       []byte
	RPID     string
	User     UserEntity
	Resident bool
	// PrivateKey is the key to import: *ecdsa.PrivateKey (P-256, P-384),
	// ed25519.PrivateKey or *rsa.PrivateKey. nil makes a new one of Alg.
	PrivateKey     crypto.Signer
	Alg            cose.Algorithm // for a new key (default ES256)
	SignCount      uint32
	CredProtect    byte
	HMACSecret     bool
	LargeBlob      []byte
	BackupEligible bool
	BackupState    bool
}

// CredentialUpdate changes the fields that are not nil.
type CredentialUpdate struct {
	BackupEligible  *bool
	BackupState     *bool
	SignCount       *uint32
	UserName        *string
	UserDisplayName *string
}

// PrivateKeyExporter is a key store that can hand out the private key of a
// credential it made (tpmkeys.Software; never a TPM).
type PrivateKeyExporter interface {
	ExportPrivateKey(ctx context.Context, credID, rpIDHash []byte) (crypto.Signer, error)
}

// CounterControl is a Store whose counters a controller may read and
// re-base (store.DB).
type CounterControl interface {
	Counter(id []byte) (uint32, error)
	SetCounter(id []byte, v uint32) error
}

// Errors of the control API.
var (
	// ErrCredentialExists: an import names a credential ID already stored.
	ErrCredentialExists = errors.New("ctap2: a credential with this ID exists")
	// ErrNotStored: no stored credential has this ID.
	ErrNotStored = errors.New("ctap2: no stored credential with this ID")
	// ErrNotExportable: the private key cannot leave the key store.
	ErrNotExportable = errors.New("ctap2: the private key cannot leave the key store")
	// ErrBadImport: the import is malformed (the message says how).
	ErrBadImport = errors.New("ctap2: bad credential import")
)

func badImport(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadImport, fmt.Sprintf(format, args...))
}

// importedKeyAAD binds a sealed imported private key to its credential.
func importedKeyAAD(id, rpIDHash []byte) []byte {
	aad := append([]byte("virtkey imported key v1 "), rpIDHash...)
	return append(aad, id...)
}

// ImportCredential stores a credential made outside CTAP. It then works
// for getAssertion, credential management and the extensions like one made
// by makeCredential; a non-resident one is stored too (so a controller can
// list and delete it) but is found only through an allowList.
func (a *Authenticator) ImportCredential(ctx context.Context, in CredentialImport) (*StoredCredential, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in.RPID == "" || len(in.RPID) > maxRPIDLength {
		return nil, badImport("rpId: 1 to %d bytes", maxRPIDLength)
	}
	if in.ID != nil && (len(in.ID) < 16 || len(in.ID) > 1023) {
		return nil, badImport("credential ID: 16 to 1023 bytes")
	}
	if len(in.User.ID) > maxUserIDLength || (in.Resident && len(in.User.ID) == 0) {
		return nil, badImport("user handle: 1 to %d bytes for a resident credential, at most %d otherwise", maxUserIDLength, maxUserIDLength)
	}
	if in.CredProtect > credProtectUVRequired {
		return nil, badImport("credProtect: 1, 2 or 3")
	}
	if in.BackupState && !in.BackupEligible {
		return nil, badImport("backupState needs backupEligibility")
	}
	if in.User.ID == nil {
		in.User.ID = Bytes{} // a record's user id is a byte string, never null
	}
	in.User.Name = truncateUTF8(in.User.Name, maxUserNameLength)
	in.User.DisplayName = truncateUTF8(in.User.DisplayName, maxUserNameLength)
	counters, ok := a.cfg.Store.(CounterControl)
	if !ok && in.SignCount != 0 {
		return nil, badImport("this store cannot set signature counters")
	}
	rpIDHash := rpIDHashOf(in.RPID)
	if in.ID == nil && in.PrivateKey != nil {
		in.ID = make([]byte, 32)
		rand.Read(in.ID)
	}
	if in.ID != nil {
		if _, exists, err := a.cfg.Store.Credential(in.ID); err != nil {
			return nil, err
		} else if exists {
			return nil, ErrCredentialExists
		}
	}
	var replaced [][]byte
	if in.Resident {
		var err error
		if replaced, err = a.residentSlot(rpIDHash, in.User.ID); err != nil {
			return nil, err
		}
	}
	rec := &credentialRecord{
		RPID: in.RPID, User: in.User, Created: a.cfg.Now().UnixNano(), CredProtect: in.CredProtect,
		LargeBlobKey: in.Resident || in.LargeBlob != nil, NonResident: !in.Resident, HMACSecret: in.HMACSecret,
		BackupEligible: in.BackupEligible, BackupState: in.BackupState,
	}
	var pub crypto.PublicKey
	var alg cose.Algorithm
	switch {
	case in.PrivateKey == nil && in.ID == nil:
		// The key store makes the key; it stays inside (TPM-safe). The
		// metadata says "resident" so that the ID opens only while the
		// record exists: deleting it revokes the credential.
		alg = in.Alg
		if alg == 0 {
			alg = cose.AlgES256
		}
		if !a.keyStoreSupports(alg) {
			return nil, badImport("algorithm %v: not supported by this key store", alg)
		}
		meta := credMeta{Resident: true, HMACSecret: in.HMACSecret, LargeBlobKey: rec.LargeBlobKey, CredProtect: in.CredProtect}
		id, p, err := a.cfg.KeyStore.NewCredential(ctx, alg, rpIDHash, meta.marshal())
		if err != nil {
			return nil, err
		}
		in.ID, pub = id, p
	default:
		key := in.PrivateKey
		if key == nil {
			var err error
			if key, err = generateKey(in.Alg); err != nil {
				return nil, err
			}
		}
		var err error
		if alg, err = importedAlgorithm(key); err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, badImport("private key: %v", err)
		}
		if rec.PrivateKeySealed, err = a.sealer.Seal(ctx, der, importedKeyAAD(in.ID, rpIDHash)); err != nil {
			return nil, err
		}
		clear(der)
		pub = key.Public()
	}
	rec.ID, rec.Alg = in.ID, int64(alg)
	coseKey, err := cose.EncodePublicKey(pub, alg)
	if err != nil {
		return nil, err
	}
	rec.PublicKey = coseKey
	raw, err := encode(rec)
	if err != nil {
		return nil, err
	}
	if counters != nil {
		if err := counters.SetCounter(rec.ID, in.SignCount); err != nil {
			return nil, err
		}
	}
	a.forgetRecords()
	if err := a.cfg.Store.PutCredential(rec.ID, rpIDHash, raw, replaced...); err != nil {
		return nil, err
	}
	if in.LargeBlob != nil {
		if err := a.putLargeBlob(ctx, rec.ID, in.LargeBlob); err != nil {
			a.cfg.Store.DeleteCredential(rec.ID)
			return nil, err
		}
	}
	a.log.Info("credential imported", "rp", rec.RPID, "alg", alg.String(), "resident", in.Resident)
	a.observe(Event{Type: EventCredentialAdded, CredentialID: rec.ID, RPID: rec.RPID, UserHandle: rec.User.ID, SignCount: in.SignCount, Op: "control"})
	return a.storedCredential(ctx, rec, false, nil)
}

func (a *Authenticator) keyStoreSupports(alg cose.Algorithm) bool {
	for _, x := range a.cfg.KeyStore.Algorithms() {
		if x == alg {
			return true
		}
	}
	return false
}

// generateKey makes a software key pair for alg.
func generateKey(alg cose.Algorithm) (crypto.Signer, error) {
	switch alg {
	case 0, cose.AlgES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case cose.AlgES384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case cose.AlgEdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case cose.AlgRS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, badImport("algorithm %v: want ES256, EdDSA, ES384 or RS256", alg)
}

// importedAlgorithm tells the COSE algorithm of an imported key.
func importedAlgorithm(k crypto.Signer) (cose.Algorithm, error) {
	if r, ok := k.(*rsa.PrivateKey); ok && r.N.BitLen() < 2048 {
		return 0, badImport("RSA keys need at least 2048 bits")
	}
	alg, err := identityAlgorithm(k)
	if err != nil {
		return 0, badImport("private key %T: want ECDSA P-256 or P-384, Ed25519 or RSA", k)
	}
	return alg, nil
}

// openImported opens the sealed private key of an imported record.
func (a *Authenticator) openImported(ctx context.Context, rec *credentialRecord) (crypto.Signer, error) {
	der, err := a.sealer.Open(ctx, rec.PrivateKeySealed, importedKeyAAD(rec.ID, rec.rpIDHash()))
	if err != nil {
		return nil, err
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ctap2: imported key %T is not a signer", k)
	}
	return s, nil
}

// importedCredential finds a stored record whose key is not in its ID
// (imported), for rpIDHash.
func (a *Authenticator) importedCredential(ctx context.Context, id, rpIDHash []byte) (*foundCredential, bool, error) {
	c, err := a.residentRecordCached(id)
	if err != nil || c == nil || c.PrivateKeySealed == nil || !bytes.Equal(c.rpIDHash, rpIDHash) {
		return nil, false, err
	}
	s, err := a.openImported(ctx, c.credentialRecord)
	if err != nil {
		a.log.Warn("imported credential does not open", "rp", c.RPID)
		return nil, false, nil
	}
	return &foundCredential{id: id, signer: s, meta: c.meta(), record: c.credentialRecord}, true, nil
}

// meta is the credMeta of a record whose ID carries none (imported).
func (r *credentialRecord) meta() credMeta {
	return credMeta{Resident: !r.NonResident, HMACSecret: r.HMACSecret, LargeBlobKey: r.LargeBlobKey, ThirdPartyPayment: r.ThirdPartyPayment, CredProtect: r.CredProtect}
}

// backupFlags are the BE and BS flags a credential's authenticator data carries.
func (r *credentialRecord) backupFlags() byte {
	var f byte
	if r != nil && r.BackupEligible {
		f |= FlagBE
	}
	if r != nil && r.BackupState {
		f |= FlagBS
	}
	return f
}

// StoredCredentials lists every stored credential (resident ones and
// those a controller added), with the current signature counters. With
// withPrivate, private keys are included, or the call fails with
// ErrNotExportable.
func (a *Authenticator) StoredCredentials(ctx context.Context, withPrivate bool) ([]*StoredCredential, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := a.allRecords()
	if err != nil {
		return nil, err
	}
	blobs, err := a.largeBlobEntries()
	if err != nil {
		return nil, err
	}
	out := make([]*StoredCredential, 0, len(recs))
	for _, r := range recs {
		c, err := a.storedCredential(ctx, r, withPrivate, blobs)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// allRecords reads every stored record, in RP order (by rpIdHash) then
// newest first. Unreadable records are skipped and logged.
func (a *Authenticator) allRecords() ([]*credentialRecord, error) {
	raws, err := a.cfg.Store.Credentials()
	if err != nil {
		return nil, err
	}
	out := make([]*credentialRecord, 0, len(raws))
	for _, raw := range raws {
		r, err := parseCredentialRecord(raw)
		if err != nil {
			a.log.Error("skipping unreadable credential record", "err", err)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(x, y *credentialRecord) int {
		if c := bytes.Compare(x.rpIDHash(), y.rpIDHash()); c != 0 {
			return c
		}
		if c := -cmp.Compare(x.Created, y.Created); c != 0 {
			return c
		}
		return bytes.Compare(x.ID, y.ID)
	})
	return out, nil
}

// StoredCredential reads one stored credential (ErrNotStored if none).
func (a *Authenticator) StoredCredential(ctx context.Context, id []byte, withPrivate bool) (*StoredCredential, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, err := a.storedRecord(id)
	if err != nil {
		return nil, err
	}
	return a.storedCredential(ctx, rec, withPrivate, nil)
}

// storedCredential describes r; blobs are the large-blob array's entries
// (nil: read them here).
func (a *Authenticator) storedCredential(ctx context.Context, r *credentialRecord, withPrivate bool, blobs []RawMessage) (*StoredCredential, error) {
	pub, _, err := cose.DecodePublicKey(r.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ctap2: stored public key: %w", err)
	}
	c := &StoredCredential{
		ID: r.ID, RPID: r.RPID, User: r.User, Resident: !r.NonResident, Alg: cose.Algorithm(r.Alg),
		PublicKey: pub, CredProtect: r.CredProtect, HMACSecret: r.HMACSecret,
		BackupEligible: r.BackupEligible, BackupState: r.BackupState, Created: time.Unix(0, r.Created),
	}
	if r.PrivateKeySealed == nil {
		// Made by the key store: its metadata says what the record cannot.
		if f, ok := a.openResident(ctx, r, r.rpIDHash()); ok {
			c.HMACSecret = f.meta.HMACSecret
		}
	}
	if cc, ok := a.cfg.Store.(CounterControl); ok {
		if c.SignCount, err = cc.Counter(r.ID); err != nil {
			return nil, err
		}
	}
	if r.LargeBlobKey {
		if blobs == nil {
			if blobs, err = a.largeBlobEntries(); err != nil {
				return nil, err
			}
		}
		if c.LargeBlob, err = a.largeBlobOf(ctx, r.ID, blobs); err != nil {
			return nil, err
		}
	}
	if withPrivate {
		if r.PrivateKeySealed != nil {
			if c.PrivateKey, err = a.openImported(ctx, r); err != nil {
				return nil, err
			}
		} else {
			ex, ok := a.cfg.KeyStore.(PrivateKeyExporter)
			if !ok {
				return nil, ErrNotExportable
			}
			if c.PrivateKey, err = ex.ExportPrivateKey(ctx, r.ID, r.rpIDHash()); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrNotExportable, err)
			}
		}
	}
	return c, nil
}

// DeleteStoredCredential deletes one stored credential (ErrNotStored if none).
func (a *Authenticator) DeleteStoredCredential(ctx context.Context, id []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, err := a.storedRecord(id)
	if err != nil {
		return err
	}
	return a.deleteRecord(rec, "control")
}

// DeleteStoredCredentials deletes every stored credential. Non-resident
// credentials made over CTAP are stateless (their ID is the wrapped key)
// and stay valid; a reset revokes them.
func (a *Authenticator) DeleteStoredCredentials(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := a.allRecords()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := a.deleteRecord(r, "control"); err != nil {
			return err
		}
	}
	return nil
}

func (a *Authenticator) deleteRecord(rec *credentialRecord, op string) error {
	a.forgetRecords()
	a.vol.takeFollowUps() // an enumeration or getNextAssertion may name it
	if err := a.cfg.Store.DeleteCredential(rec.ID); err != nil {
		return err
	}
	a.log.Info("credential deleted", "rp", rec.RPID, "by", op)
	a.observe(Event{Type: EventCredentialDeleted, CredentialID: rec.ID, RPID: rec.RPID, UserHandle: rec.User.ID, Op: op})
	return nil
}

// UpdateStoredCredential changes a stored credential's properties. A new
// SignCount re-bases the counter, lower values included.
func (a *Authenticator) UpdateStoredCredential(ctx context.Context, id []byte, u CredentialUpdate) (*StoredCredential, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, err := a.storedRecord(id)
	if err != nil {
		return nil, err
	}
	if u.BackupEligible != nil {
		rec.BackupEligible = *u.BackupEligible
	}
	if u.BackupState != nil {
		rec.BackupState = *u.BackupState
	}
	if rec.BackupState && !rec.BackupEligible {
		return nil, badImport("backupState needs backupEligibility")
	}
	if u.UserName != nil {
		rec.User.Name = truncateUTF8(*u.UserName, maxUserNameLength)
	}
	if u.UserDisplayName != nil {
		rec.User.DisplayName = truncateUTF8(*u.UserDisplayName, maxUserNameLength)
	}
	if u.SignCount != nil {
		cc, ok := a.cfg.Store.(CounterControl)
		if !ok {
			return nil, badImport("this store cannot set signature counters")
		}
		if err := cc.SetCounter(rec.ID, *u.SignCount); err != nil {
			return nil, err
		}
	}
	raw, err := encode(rec)
	if err != nil {
		return nil, err
	}
	a.forgetRecords()
	if err := a.cfg.Store.PutCredential(rec.ID, rec.rpIDHash(), raw); err != nil {
		return nil, err
	}
	c, err := a.storedCredential(ctx, rec, false, nil)
	if err != nil {
		return nil, err
	}
	a.observe(Event{Type: EventCredentialUpdated, CredentialID: rec.ID, RPID: rec.RPID, UserHandle: rec.User.ID, SignCount: c.SignCount, Op: "control"})
	return c, nil
}

// defaultBackupFlags are the BE and BS flags of credentials made over CTAP.
func (a *Authenticator) defaultBackupFlags() byte {
	var f byte
	if a.cfg.BackupEligible {
		f |= FlagBE
	}
	if a.cfg.BackupState {
		f |= FlagBS
	}
	return f
}

// backupFlagsOf are the BE and BS flags of credential c's assertions.
func (a *Authenticator) backupFlagsOf(c *foundCredential) byte {
	if c.record != nil {
		return c.record.backupFlags()
	}
	return a.defaultBackupFlags()
}

func userHandleOf(c *foundCredential) []byte {
	if c.record != nil {
		return c.record.User.ID
	}
	return nil
}

// storedRecord reads stored credential id (ErrNotStored if none).
func (a *Authenticator) storedRecord(id []byte) (*credentialRecord, error) {
	rec, ok, err := a.residentRecord(id)
	if err == nil && !ok {
		err = ErrNotStored
	}
	return rec, err
}
