// Package statedir opens the state of one `virtkey run`: it checks who
// owns the state directory, opens state.db and binds it to the key store,
// and refuses — with what is wrong and how to recover — a state directory
// whose files do not belong together.
//
// # What is refused
//
//   - a state directory or file owned by another user, writable by group
//     or others, or a link ([CheckOwner]);
//   - a damaged state.db, or one written by a newer virtkey (store.Open);
//   - a state.db that holds passkeys, a PIN or settings (or that was ever
//     bound) while the key store's file (master.key, passphrase.json or
//     tpm.json) is missing — before the key store would create a new key;
//   - a state.db bound to another master key;
//   - a state.db that is missing, empty or older than what the key store's
//     rollback reference (the epoch file beside master.key, or the TPM NV
//     counter recorded in tpm.json) says was written last, unless the user
//     accepts it (--accept-rollback).
//
// A new, empty state directory needs nothing; one where a first start died
// half-way (a key store file but no binding record and a reference still
// at 0) counts as new. See store/bind.go for the binding itself.
//
// # Wiring
//
//	db, err := statedir.OpenStore(dir, log)            // before the key store exists
//	keys, err := <open the key store of dir>
//	keys, err = statedir.Bind(ctx, dir, db, keys, opts) // hand this KeyStore to ctap2
package statedir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// StateFileName is the state database in the state directory.
const StateFileName = "state.db"

// keyFiles are the key stores' files; a state directory uses one.
var keyFiles = []string{tpmkeys.KeyFileName, tpmkeys.PassphraseFileName, tpmkeys.TPMStateFileName}

// KeyStore is what a state can be bound to: the key custody ctap2 uses,
// with sealing, per-credential secrets and key reset (tpmkeys.Software and
// tpmkeys.TPM).
type KeyStore interface {
	ctap2.KeyStore
	ctap2.Sealer
	ctap2.SecretDeriver
	ctap2.KeyResetter
}

// OpenStore checks the state directory's owner and modes ([CheckOwner]),
// opens its state.db (creating the directory 0700 and the file 0600), and
// refuses it when it holds state but the key store's file is missing. Call
// it before opening the key store, which would create a new key.
func OpenStore(dir string, log *slog.Logger) (*store.DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := CheckOwner(dir); err != nil {
		return nil, err
	}
	db, err := store.Open(filepath.Join(dir, StateFileName), store.WithLogger(log), store.WithIndexer(IndexRecord))
	if err != nil {
		return nil, err
	}
	holds, err := db.HoldsState()
	if err != nil {
		db.Close()
		return nil, err
	}
	if hasKeyFile(dir) {
		return db, nil
	}
	if holds {
		db.Close()
		return nil, fmt.Errorf("state directory %s: state.db holds passkeys, a PIN or settings, but the key store's file is missing "+
			"(%s; or %s with --passphrase-file, %s with --keystore tpm), and without it they cannot be used. "+
			"Restore the file from a backup, or move the state directory away to start fresh (its passkeys are lost)",
			dir, tpmkeys.KeyFileName, tpmkeys.PassphraseFileName, tpmkeys.TPMStateFileName)
	}
	// Nothing to protect: an epoch file left alone would make the new key
	// store look bound before.
	if err := os.Remove(filepath.Join(dir, tpmkeys.EpochFileName)); err == nil {
		log.Info("removed a stale epoch file (there is no key store and no state)", "dir", dir)
	}
	return db, nil
}

// IndexRecord is ctap2's record index for the store: pass
// store.WithIndexer(IndexRecord) to a store.Open whose DB ctap2 will use
// (OpenStore does).
func IndexRecord(record []byte) (store.Index, error) {
	x, err := ctap2.IndexRecord(record)
	return store.Index{ID: x.ID, UserID: x.UserID, Created: x.Created, Hidden: x.Hidden, Unlisted: x.Unlisted}, err
}

func hasKeyFile(dir string) bool {
	for _, f := range keyFiles {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// Options adjust Bind.
type Options struct {
	// AcceptRollback binds a state.db that the rollback reference says is
	// older (or newer) than the newest one, or that lost its binding: the
	// user restored it on purpose (virtkey run --accept-rollback).
	AcceptRollback bool
}

// Bind binds db, from [OpenStore], to keys, the key store of state
// directory dir, with the key store's rollback reference (the TPM NV
// counter of a tpmkeys.TPM, else the epoch file in dir). It returns the key
// store to hand to ctap2: keys, whose ResetKeys also rebinds db to the new
// master key. On error db is left open (the caller closes it).
func Bind(ctx context.Context, dir string, db *store.DB, keys ctap2.KeyStore, o Options) (KeyStore, error) {
	ks, ok := keys.(KeyStore)
	if !ok {
		return nil, fmt.Errorf("statedir: the key store %T cannot seal, derive secrets and reset keys", keys)
	}
	var guard store.Guard = tpmkeys.NewEpochFile(dir)
	if r, ok := keys.(interface {
		RollbackReference() tpmkeys.RollbackReference
	}); ok {
		guard = r.RollbackReference()
	}
	verify := func(id, rpIDHash []byte) bool {
		_, _, err := ks.Signer(ctx, id, rpIDHash)
		return err == nil
	}
	err := db.Bind(ctx, ks, guard, store.BindOptions{Verify: verify, AcceptRollback: o.AcceptRollback})
	if err != nil {
		return nil, explain(err, dir)
	}
	return &boundKeys{KeyStore: ks, db: db}, nil
}

// explain adds to a Bind error what it means and how to recover.
func explain(err error, dir string) error {
	const fresh = "or move the state directory away to start fresh (its passkeys are lost)"
	const accept = "or, to keep this state.db anyway (PIN retries, a PIN or passkeys deleted since come back), run virtkey run with --accept-rollback"
	switch {
	case errors.Is(err, store.ErrKeyMismatch):
		return fmt.Errorf("state directory %s: %w. The key store's file (%s, %s or %s) was replaced, or state.db comes from another state directory. "+
			"Restore the key store file that belongs to this state.db, %s", dir, err,
			tpmkeys.KeyFileName, tpmkeys.PassphraseFileName, tpmkeys.TPMStateFileName, fresh)
	case errors.Is(err, store.ErrBindingLost):
		return fmt.Errorf("state directory %s: %w: state.db is missing, empty or older than the key store's binding. "+
			"Restore the newest state.db from a backup; %s; %s", dir, err, accept, fresh)
	case errors.Is(err, store.ErrRolledBack):
		return fmt.Errorf("state directory %s: %w: state.db was restored from an older copy. "+
			"Restore the newest state.db; %s; %s", dir, err, accept, fresh)
	case errors.Is(err, store.ErrReferenceBehind):
		return fmt.Errorf("state directory %s: %w: the reference was deleted or restored from an older copy. "+
			"Restore it; or, to accept state.db as it is, run virtkey run with --accept-rollback", dir, err)
	}
	return err
}

// boundKeys is the key store handed to ctap2: ResetKeys also seals a new
// binding record under the new master key.
type boundKeys struct {
	KeyStore
	db *store.DB
}

// ResetKeys changes the key store's master key (authenticatorReset, after
// the store was wiped) and rebinds the store to it.
func (b *boundKeys) ResetKeys(ctx context.Context) error {
	if err := b.KeyStore.ResetKeys(ctx); err != nil {
		return err
	}
	return b.db.Rebind(ctx)
}
