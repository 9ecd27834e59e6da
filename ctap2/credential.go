package ctap2

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"time"

	"github.com/virtkey/virtkey/cose"
)

// credMeta is the small authenticated metadata sealed into every credential
// ID by the key store: version, flags, credProtect level.
type credMeta struct {
	Resident          bool
	HMACSecret        bool
	LargeBlobKey      bool
	ThirdPartyPayment bool
	CredProtect       byte
}

const credMetaVersion = 1

const (
	metaResident byte = 1 << iota
	metaHMACSecret
	metaLargeBlobKey
	metaThirdPartyPayment
)

func (m credMeta) marshal() []byte {
	var flags byte
	for _, f := range []struct {
		on  bool
		bit byte
	}{{m.Resident, metaResident}, {m.HMACSecret, metaHMACSecret}, {m.LargeBlobKey, metaLargeBlobKey}, {m.ThirdPartyPayment, metaThirdPartyPayment}} {
		if f.on {
			flags |= f.bit
		}
	}
	return []byte{credMetaVersion, flags, m.CredProtect}
}

func parseCredMeta(b []byte) (credMeta, bool) {
	if len(b) < 3 || b[0] != credMetaVersion {
		return credMeta{}, false
	}
	f := b[1]
	return credMeta{
		Resident: f&metaResident != 0, HMACSecret: f&metaHMACSecret != 0,
		LargeBlobKey: f&metaLargeBlobKey != 0, ThirdPartyPayment: f&metaThirdPartyPayment != 0,
		CredProtect: b[2],
	}, true
}

// credentialRecord is what the store keeps for a resident (discoverable)
// credential. The private key is not here: it is wrapped inside ID.
type credentialRecord struct {
	ID          Bytes      `cbor:"1,keyasint"`
	RPID        string     `cbor:"2,keyasint"`
	RPName      string     `cbor:"3,keyasint,omitempty"`
	User        UserEntity `cbor:"4,keyasint"`
	Alg         int64      `cbor:"5,keyasint"`
	PublicKey   Bytes      `cbor:"6,keyasint"` // COSE_Key
	Created     int64      `cbor:"7,keyasint"` // Unix nanoseconds; newest first in discoverable lists
	CredProtect byte       `cbor:"8,keyasint,omitempty"`
	// CredBlobSealed is the credBlob extension's data, sealed by the key store.
	CredBlobSealed Bytes `cbor:"9,keyasint,omitempty"`
	LargeBlobKey   bool  `cbor:"10,keyasint,omitempty"` // created with largeBlobKey
	// ThirdPartyPayment: created with the CTAP 2.2 thirdPartyPayment
	// extension. Records written before it was kept decode as false.
	ThirdPartyPayment bool `cbor:"11,keyasint,omitempty"`
	// PrivateKeySealed is an imported credential's PKCS#8 private key,
	// sealed by the key store; its ID then carries no key (control.go).
	PrivateKeySealed Bytes `cbor:"12,keyasint,omitempty"`
	// NonResident marks a credential a controller stored that is not
	// discoverable: found through an allowList only.
	NonResident    bool `cbor:"13,keyasint,omitempty"`
	HMACSecret     bool `cbor:"14,keyasint,omitempty"` // of an imported credential
	BackupEligible bool `cbor:"15,keyasint,omitempty"`
	BackupState    bool `cbor:"16,keyasint,omitempty"`
}

func (r *credentialRecord) rpIDHash() []byte {
	h := sha256.Sum256([]byte(r.RPID))
	return h[:]
}

func parseCredentialRecord(b []byte) (*credentialRecord, error) {
	var r credentialRecord
	if err := decode(b, &r); err != nil {
		return nil, fmt.Errorf("ctap2: corrupt credential record: %w", err)
	}
	return &r, nil
}

// RecordIndex is what a store indexes a resident credential record by
// (see [CredStore] and [IndexRecord]).
type RecordIndex struct {
	ID      []byte // the credential ID
	UserID  []byte // the user handle it was made for
	Created int64  // creation time, Unix ns: lists are newest first
	// Hidden: discoverable lists leave it out unless the user is verified
	// (credProtect uvOptionalWithCredentialIDList or uvRequired).
	Hidden bool
	// Unlisted: not discoverable at all (a non-resident credential a
	// controller stored): in no list, count or user index of its RP.
	Unlisted bool
}

// IndexRecord reads the [RecordIndex] of a resident credential record. A
// store indexes records with it (statedir wires it into store.Open).
func IndexRecord(record []byte) (RecordIndex, error) {
	r, err := parseCredentialRecord(record)
	if err != nil {
		return RecordIndex{}, err
	}
	return RecordIndex{ID: r.ID, UserID: r.User.ID, Created: r.Created, Hidden: !visibleWithoutUV(r.CredProtect, false), Unlisted: r.NonResident}, nil
}

// nextResident returns the RP's next discoverable credential after cursor
// (nil: the newest) that opens and that the user may see (verified: all;
// else those credProtect shows without UV), and the cursor after it; nil
// when there is no more. Records that do not read or open are skipped and
// logged.
func (a *Authenticator) nextResident(ctx context.Context, rpIDHash, cursor []byte, verified bool) (*foundCredential, []byte, error) {
	for {
		rec, next, err := a.nextRecord(rpIDHash, cursor, verified)
		if err != nil || rec == nil {
			return nil, nil, err
		}
		cursor = next
		if f, ok := a.openResident(ctx, rec, rpIDHash); ok && (verified || visibleWithoutUV(f.meta.CredProtect, false)) {
			return f, cursor, nil
		}
	}
}

// nextRecord returns the RP's next credential record after cursor (hidden
// ones only withHidden) without opening it, and the cursor after it; nil
// when there is no more. Unreadable records are skipped and logged.
func (a *Authenticator) nextRecord(rpIDHash, cursor []byte, withHidden bool) (*credentialRecord, []byte, error) {
	for {
		raw, next, err := a.cfg.Store.NextCredentialOfRP(rpIDHash, cursor, withHidden)
		if err != nil || raw == nil {
			return nil, nil, err
		}
		cursor = next
		rec, err := parseCredentialRecord(raw)
		if err != nil {
			a.log.Error("skipping unreadable credential record", "err", err)
			continue
		}
		return rec, cursor, nil
	}
}

// remainingResident is how many more discoverable credentials fit: the
// limit less those stored, or with no limit the store's estimate of its
// free space. known is false when nothing tells.
func (a *Authenticator) remainingResident() (n int, known bool, err error) {
	var space CredentialSpace
	if s, ok := a.cfg.Store.(CredentialSpace); ok {
		space = s
	}
	if limit := a.cfg.MaxResidentCredentials; limit > 0 {
		stored, err := a.cfg.Store.CountCredentials()
		if err != nil {
			return 0, false, err
		}
		n = max(limit-stored, 0)
		if space != nil && n > 0 {
			free, err := space.RemainingCredentials()
			if err != nil {
				return 0, false, err
			}
			n = min(n, free)
		}
		return n, true, nil
	}
	if space == nil {
		return 0, false, nil
	}
	n, err = space.RemainingCredentials()
	return n, err == nil, err
}

// foundCredential is a credential located for an operation.
type foundCredential struct {
	id     []byte
	signer crypto.Signer
	meta   credMeta
	record *credentialRecord // nil for non-resident credentials
}

// lookupCredential finds credential id for rpIDHash: a resident credential
// in the store, or a non-resident one that the key store can open. A
// resident credential that was deleted is not found even though its ID
// still opens. ok is false when the credential is not ours.
func (a *Authenticator) lookupCredential(ctx context.Context, id, rpIDHash []byte) (*foundCredential, bool, error) {
	signer, rawMeta, err := a.cfg.KeyStore.Signer(ctx, id, rpIDHash)
	if err != nil {
		// Not a key-store ID: an imported credential, or not ours (key-store
		// failures are indistinguishable).
		return a.importedCredential(ctx, id, rpIDHash)
	}
	meta, ok := parseCredMeta(rawMeta)
	if !ok {
		return nil, false, nil
	}
	f := &foundCredential{id: id, signer: signer, meta: meta}
	if meta.Resident {
		rec, err := a.residentRecordCached(id)
		if err != nil {
			return nil, false, err
		}
		if rec == nil || !bytes.Equal(rec.rpIDHash, rpIDHash) {
			return nil, false, nil
		}
		f.record = rec.credentialRecord
	}
	return f, true, nil
}

// maxCachedRecords bounds the resident-record cache.
const maxCachedRecords = 256

// cachedRecord is a parsed resident record with its rpIdHash.
type cachedRecord struct {
	*credentialRecord
	rpIDHash []byte
}

// residentRecordCached reads and parses resident record id, caching the
// result (this process is the store's only writer; every write through
// the authenticator calls forgetRecords). nil means there is none.
func (a *Authenticator) residentRecordCached(id []byte) (*cachedRecord, error) {
	if c, ok := a.records[string(id)]; ok {
		return c, nil
	}
	raw, ok, err := a.cfg.Store.Credential(id)
	if err != nil || !ok {
		return nil, err
	}
	rec, err := parseCredentialRecord(raw)
	if err != nil {
		return nil, nil
	}
	c := &cachedRecord{credentialRecord: rec, rpIDHash: rec.rpIDHash()}
	if a.records == nil || len(a.records) >= maxCachedRecords {
		a.records = map[string]*cachedRecord{}
	}
	a.records[string(id)] = c
	return c, nil
}

// forgetRecords empties the resident-record cache; call it on every write
// to the credential store.
func (a *Authenticator) forgetRecords() { a.records = nil }

// openResident opens a resident credential already read from the store.
func (a *Authenticator) openResident(ctx context.Context, rec *credentialRecord, rpIDHash []byte) (*foundCredential, bool) {
	if rec.PrivateKeySealed != nil {
		f, ok, _ := a.importedCredential(ctx, rec.ID, rpIDHash)
		return f, ok
	}
	signer, rawMeta, err := a.cfg.KeyStore.Signer(ctx, rec.ID, rpIDHash)
	if err != nil {
		a.log.Warn("resident credential does not open", "rp", rec.RPID)
		return nil, false
	}
	meta, ok := parseCredMeta(rawMeta)
	if !ok || !meta.Resident {
		return nil, false
	}
	return &foundCredential{id: rec.ID, signer: signer, meta: meta, record: rec}, true
}

// sign signs msg with a credential key of algorithm alg, hashing as the
// algorithm requires.
func sign(s crypto.Signer, alg cose.Algorithm, msg []byte) ([]byte, error) {
	switch alg {
	case cose.AlgES256, cose.AlgRS256:
		d := sha256.Sum256(msg)
		return s.Sign(rand.Reader, d[:], crypto.SHA256)
	case cose.AlgES384:
		d := sha512.Sum384(msg)
		return s.Sign(rand.Reader, d[:], crypto.SHA384)
	case cose.AlgEdDSA:
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	return nil, fmt.Errorf("ctap2: cannot sign with algorithm %d", alg)
}

// algOf tells a signer's COSE algorithm from its public key (0 if none).
func algOf(s crypto.Signer) cose.Algorithm {
	alg, _ := identityAlgorithm(s)
	return alg
}

// Resident is a discoverable credential NewResident made.
type Resident struct {
	ID        []byte // credential ID
	RPIDHash  []byte
	PublicKey []byte // COSE_Key
	Record    []byte // for Store.PutCredential
}

// NewResident makes a discoverable credential as makeCredential makes one
// (no extensions) — a key from ks bound to rp, and the record the store
// keeps — without a CTAP exchange, for tools that fill a store (the scale
// generator). created is the record's creation time (lists are newest
// first).
func NewResident(ctx context.Context, ks KeyStore, rp RPEntity, user UserEntity, alg cose.Algorithm, created time.Time) (*Resident, error) {
	if err := user.validate(); err != nil {
		return nil, err
	}
	r := &Resident{RPIDHash: rpIDHashOf(rp.ID)}
	id, pub, err := ks.NewCredential(ctx, alg, r.RPIDHash, credMeta{Resident: true}.marshal())
	if err != nil {
		return nil, err
	}
	r.ID = id
	if r.PublicKey, err = cose.EncodePublicKey(pub, alg); err != nil {
		return nil, err
	}
	r.Record, err = encode(&credentialRecord{
		ID: id, RPID: rp.ID, RPName: rp.Name, User: user, Alg: int64(alg),
		PublicKey: r.PublicKey, Created: created.UnixNano(),
	})
	return r, err
}
