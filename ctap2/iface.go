package ctap2

import (
	"context"
	"crypto"

	"github.com/virtkey/virtkey/cose"
)

// KeyStore holds credential private keys (key custody). It is satisfied by
// tpmkeys.Software and tpmkeys.TPM.
//
// A credential ID is self-contained: it is the credential's private key (or
// TPM key blobs) wrapped with an AEAD whose additional data binds it to
// rpIDHash, plus a small authenticated metadata blob chosen by ctap2. Nothing
// has to be stored for a non-resident credential.
type KeyStore interface {
	// NewCredential creates a key pair for alg, bound to rpIDHash, and
	// returns its credential ID and public key. meta (at most 16 bytes) is
	// sealed into the ID and returned by Signer.
	NewCredential(ctx context.Context, alg cose.Algorithm, rpIDHash, meta []byte) (credID []byte, pub crypto.PublicKey, err error)
	// Signer opens a credential ID made by NewCredential for rpIDHash. Any
	// failure (foreign ID, corrupted, another RP, another master key) is an
	// error; callers treat every such error as "no credential".
	Signer(ctx context.Context, credID, rpIDHash []byte) (s crypto.Signer, meta []byte, err error)
	// Algorithms lists the algorithms NewCredential supports, preferred first.
	Algorithms() []cose.Algorithm
	// MaxCredentialIDLength is the longest ID NewCredential returns.
	MaxCredentialIDLength() int
}

// Sealer protects small secrets at rest (PIN verifier, CredRandoms) with the
// key store's master key.
type Sealer interface {
	Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, sealed, aad []byte) ([]byte, error)
}

// SecretDeriver derives per-credential secrets — the two hmac-secret
// CredRandoms, the largeBlobKey — deterministically from a credential ID
// and a label, under the key store's master key. Nothing has to be stored,
// so non-resident credentials support these extensions too. The result is
// 32 bytes and never leaves the authenticator except as the protocol says.
type SecretDeriver interface {
	CredentialSecret(ctx context.Context, credID []byte, label string) ([]byte, error)
}

// CredStore keeps resident-credential records durably. Records are opaque
// to the store (ctap2 encodes them); the store indexes them by credential
// ID, by rpIDHash and by user ID, in creation order, with [IndexRecord]
// (which tells a record's user ID, creation time and whether discoverable
// lists hide it or leave it out), so that no question about one RP or one user reads the
// others' records, and an RP's list is read one credential at a time.
// Every method is atomic: after a crash the store holds the old or the new
// state.
type CredStore interface {
	// PutCredential inserts or replaces the record of credential id and, in
	// the same atomic step, deletes the credentials in replaces.
	PutCredential(id, rpIDHash, record []byte, replaces ...[]byte) error
	// Credential returns the record of id; ok is false when there is none.
	Credential(id []byte) (record []byte, ok bool, err error)
	// CredentialsOfUser returns the records of the RP's credentials made
	// for userID.
	CredentialsOfUser(rpIDHash, userID []byte) ([][]byte, error)
	// NextCredentialOfRP returns the record of the RP's next credential,
	// newest first, after the one cursor names (nil: the newest), leaving
	// out hidden ones unless withHidden; record is nil when there is no
	// more. next is the cursor for the following call.
	NextCredentialOfRP(rpIDHash, cursor []byte, withHidden bool) (record, next []byte, err error)
	// CountOfRP returns the number of the RP's credentials, and of those
	// not hidden.
	CountOfRP(rpIDHash []byte) (all, visible int, err error)
	// NextRP returns a record of the RP that follows the one cursor names
	// (nil: the first RP) — its newest credential's —, or nil when there is
	// no more. next is the cursor for the following call.
	NextRP(cursor []byte) (record, next []byte, err error)
	// CountRPs is the number of RPs with at least one credential.
	CountRPs() (int, error)
	// Credentials returns every stored record, listed or not, in no
	// particular order (the control plane's export).
	Credentials() ([][]byte, error)
	// DeleteCredential removes id (no error if absent).
	DeleteCredential(id []byte) error
	// CountCredentials is the number of resident credentials.
	CountCredentials() (int, error)
}

// CredentialSpace is implemented by a store that can tell how many more
// credentials fit (the free space of its file system). With no limit set
// (Config.MaxResidentCredentials < 0), getInfo and getCredsMetadata report
// it and makeCredential answers KEY_STORE_FULL when it reaches 0.
type CredentialSpace interface {
	RemainingCredentials() (int, error)
}

// Counters hands out per-credential signature counters that strictly
// increase across restarts and crashes. Implementations must not fsync on
// every call (reserve a high-water mark instead).
type Counters interface {
	NextCounter(id []byte) (uint32, error)
}

// Settings keeps small named values durably (PIN state, config).
type Settings interface {
	// Setting returns the value of name, or nil if unset.
	Setting(name string) ([]byte, error)
	// PutSetting stores value under name (nil deletes it).
	PutSetting(name string, value []byte) error
}

// Store is everything ctap2 persists. Wipe erases all of it
// (authenticatorReset) in one atomic step.
type Store interface {
	CredStore
	Counters
	Settings
	Wipe() error
}

// PresenceRequest describes what the user is asked to approve.
type PresenceRequest struct {
	Op       string // "makeCredential", "getAssertion", "reset", "selection", …
	RPID     string // may be empty
	UserName string // may be empty
	// UV asks for user verification as well as presence (built-in UV).
	UV bool
}

// Presence asks the user to confirm. It blocks until the user answers or
// ctx ends; it returns nil (approved), [ErrDeclined], or ctx.Err().
type Presence interface {
	Confirm(ctx context.Context, req PresenceRequest) error
}

// PresenceFunc adapts a function to [Presence].
type PresenceFunc func(ctx context.Context, req PresenceRequest) error

// Confirm calls f.
func (f PresenceFunc) Confirm(ctx context.Context, req PresenceRequest) error { return f(ctx, req) }
