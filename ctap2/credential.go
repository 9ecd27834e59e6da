package ctap2

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"slices"

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

// residentCredentials returns the RP's resident (discoverable)
// credentials, newest first. Unreadable records are skipped and logged.
func (a *Authenticator) residentCredentials(rpIDHash []byte) ([]*credentialRecord, error) {
	recs, err := a.storedRecordsByRP(rpIDHash)
	return slices.DeleteFunc(recs, func(r *credentialRecord) bool { return r.NonResident }), err
}

// storedRecordsByRP returns every record stored for the RP, newest first:
// the resident credentials and the non-resident ones a controller stored.
func (a *Authenticator) storedRecordsByRP(rpIDHash []byte) ([]*credentialRecord, error) {
	raws, err := a.cfg.Store.CredentialsByRP(rpIDHash)
	if err != nil {
		return nil, err
	}
	recs := make([]*credentialRecord, 0, len(raws))
	for _, raw := range raws {
		r, err := parseCredentialRecord(raw)
		if err != nil {
			a.log.Error("skipping unreadable credential record", "err", err)
			continue
		}
		recs = append(recs, r)
	}
	slices.SortStableFunc(recs, func(x, y *credentialRecord) int {
		if c := -cmp.Compare(x.Created, y.Created); c != 0 {
			return c
		}
		return bytes.Compare(x.ID, y.ID)
	})
	return recs, nil
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
