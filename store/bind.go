package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Binding ties a state.db to the key store whose master key wrote it, and
// to a rollback reference outside the file.
//
// # What a bound (schema 2) file holds
//
//	creds     credential ID → Seal(rpIdHash ‖ record, aad = "virtkey store v2 credential" 0x00 ‖ ID)
//	byRP      HMAC-SHA-256(indexKey, rpIdHash) → { credential ID → "" }
//	settings  name → Seal(value, aad = "virtkey store v2 setting" 0x00 ‖ name)
//	meta      "head" → Seal(0x01 ‖ epoch (u64) ‖ n (u16) ‖ n × (len (u8) ‖ name ‖ SHA-256 of the stored setting),
//	                         aad = "virtkey store v2 head")
//	          "rekey" → epoch (u64): set by Wipe, cleared by the next write (Rebind's)
//
// Seal is the key store's (XChaCha20-Poly1305 under a key derived from
// its master key); indexKey is the key store's CredentialSecret for a fixed
// label. Nothing in the file names an RP or a user without the key. The
// counters bucket stays as in schema 1: SHA-256 of a credential ID and a
// number.
//
// # The head and the epoch
//
// The head is the binding record. It opens only with the master key that
// sealed it ([ErrKeyMismatch] otherwise), it authenticates every setting
// (PIN state, config, large blobs), and it carries the epoch: a number that
// every write that removes or changes something advances — settings, a
// replaced or deleted credential, a wipe, a counter reservation; only
// adding a new credential does not. After the transaction that writes the
// head with epoch e+1 commits, the [Guard] — a counter outside state.db:
// an epoch file beside master.key, or a TPM NV counter — is advanced to
// e+1. At Bind the two must agree: equal, or the head one ahead (a crash
// between the commit and the advance, which Bind finishes). A head behind
// the reference is an older copy of state.db ([ErrRolledBack]); a head
// more than one ahead means the reference itself was rolled back
// ([ErrReferenceBehind]).
//
// A file without a head (schema 1, or new) is bound — migrated in one
// transaction — when the reference is still at 0; a reference above 0
// means this key store was bound before and the file is missing, empty or
// older than that ([ErrBindingLost]).
//
// authenticatorReset wipes the store (advancing the epoch and setting the
// rekey mark), then the key store changes its master key, then [DB.Rebind]
// seals a new head under the new key. If the process dies between the last
// two, the head no longer opens; Bind accepts that only for an empty store
// whose rekey mark equals the reference.

// Errors of Bind. Test with errors.Is.
var (
	// ErrNeedsBind reports use of a sealed (schema 2) file before Bind.
	ErrNeedsBind = errors.New("store: state.db is sealed to its key store; bind it first")
	// ErrKeyMismatch reports a file bound to another master key.
	ErrKeyMismatch = errors.New("state.db is bound to another key")
	// ErrRolledBack reports a file older than its rollback reference.
	ErrRolledBack = errors.New("state.db is older than its rollback reference")
	// ErrReferenceBehind reports a rollback reference older than the file.
	ErrReferenceBehind = errors.New("the rollback reference is older than state.db")
	// ErrBindingLost reports a file without a binding record while the
	// key store's rollback reference shows one was made.
	ErrBindingLost = errors.New("state.db has no binding record, but this key store was bound to one")
)

// Keys is what a bound DB needs from the key store (ctap2.Sealer and
// ctap2.SecretDeriver): sealing under its master key, and a keyed PRF.
type Keys interface {
	Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, sealed, aad []byte) ([]byte, error)
	CredentialSecret(ctx context.Context, credID []byte, label string) ([]byte, error)
}

// Guard is the rollback reference: a counter kept outside state.db that
// only moves up.
type Guard interface {
	// Epoch returns the reference's value: 0 if it was never advanced.
	Epoch(ctx context.Context) (uint64, error)
	// AdvanceEpoch raises the reference by one and returns the new value.
	AdvanceEpoch(ctx context.Context) (uint64, error)
	// String names the reference for messages ("epoch file /x/epoch").
	String() string
}

// BindOptions adjust Bind.
type BindOptions struct {
	// Verify, if set, reports whether credential id of rpIDHash opens with
	// the key store. Bind uses it on an unbound file that holds credentials
	// before binding it, so that a replaced master key is refused rather
	// than sealed in.
	Verify func(id, rpIDHash []byte) bool
	// AcceptRollback binds a file whose epoch disagrees with the rollback
	// reference, or that has no binding record although the reference has
	// moved: the user restored an older state.db on purpose.
	AcceptRollback bool
}

type binding struct {
	keys     Keys
	guard    Guard
	indexKey []byte
	epoch    uint64 // of the head in the file
	lag      bool   // the guard is one behind epoch
}

var (
	keyHead      = []byte("head")
	keyRekey     = []byte("rekey")
	aadCred      = []byte("virtkey store v2 credential\x00")
	aadSetting   = []byte("virtkey store v2 setting\x00")
	aadHead      = []byte("virtkey store v2 head")
	indexLabel   = "virtkey store v2 RP index"
	indexKeyName = []byte("byRP")
)

const headVersion = 1

func deriveIndexKey(ctx context.Context, k Keys) ([]byte, error) {
	key, err := k.CredentialSecret(ctx, indexKeyName, indexLabel)
	if err != nil {
		return nil, fmt.Errorf("store: deriving the index key: %w", err)
	}
	return key, nil
}

// Bound reports whether the file is sealed (schema 2): bound to a key
// store at some point.
func (d *DB) Bound() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return sealedSchema(d.schema)
}

// HoldsState reports whether the file holds anything worth a key store: a
// binding record, credentials or settings. It works before Bind.
func (d *DB) HoldsState() (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false, ErrClosed
	}
	if sealedSchema(d.schema) {
		return true, nil
	}
	var holds bool
	err := d.protected("holdsState", func() error {
		return d.bolt.View(func(tx *bolt.Tx) error {
			empty, err := d.emptyStore(tx)
			holds = !empty
			return err
		})
	})
	return holds, err
}

// emptyStore reports whether the store holds no credential and no setting.
// In layout 2 the credential count says it without walking the tree.
func (d *DB) emptyStore(tx *bolt.Tx) (bool, error) {
	names := [][]byte{bucketCreds, bucketSettings}
	if d.schema == schemaPlain || d.schema == schemaSealed {
		n, err := d.metaCount(tx, keyCount)
		if err != nil || n > 0 {
			return false, err
		}
		names = names[1:]
	}
	for _, name := range names {
		b, err := d.top(tx, name)
		if err != nil {
			return false, err
		}
		k, err := b.first()
		if err != nil || k != nil {
			return false, err
		}
	}
	return true, nil
}

// Bind binds d to keys and guard (see the comment at the top of this
// file): it checks the binding record of a bound file, or binds — migrating
// to schema 2 — an unbound one. Until Bind succeeds a sealed file cannot
// be read or written.
func (d *DB) Bind(ctx context.Context, keys Keys, guard Guard, o BindOptions) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return ErrClosed
	case d.bind != nil:
		return errors.New("store: already bound")
	case d.damage != nil:
		return d.damage
	}
	ext, err := guard.Epoch(ctx)
	if err != nil {
		return fmt.Errorf("store: reading the rollback reference (%s): %w", guard, err)
	}
	indexKey, err := deriveIndexKey(ctx, keys)
	if err != nil {
		return err
	}
	b := &binding{keys: keys, guard: guard, indexKey: indexKey}
	schema := d.schema
	if sealedSchema(d.schema) {
		err = d.bindSealed(ctx, b, ext, o)
		if err == nil && d.schema == schemaSealedV1 {
			err = d.update("migrate", true, d.migrateV1)
		}
	} else {
		if d.schema == schemaPlainV1 {
			err = errNeedsIndexer
			if d.opts.indexer != nil { // (Open migrates it then)
				err = errors.New("store: schema 1 left after Open")
			}
		}
		if err == nil {
			err = d.bindPlain(ctx, b, ext, o)
		}
	}
	if err != nil {
		d.bind, d.schema = nil, schema
		clear(indexKey)
	}
	return err
}

// bindSealed checks the head of a schema 2 file against keys and the
// reference at ext.
func (d *DB) bindSealed(ctx context.Context, b *binding, ext uint64, o BindOptions) error {
	var (
		h            head
		opened       bool
		what         string
		rekey        uint64
		hasRekey     bool
		empty        bool
		headNotFound bool
	)
	err := d.protected("bind", func() error {
		return d.bolt.View(func(tx *bolt.Tx) error {
			meta, err := d.top(tx, bucketMeta)
			if err != nil {
				return err
			}
			sealed, err := meta.get(keyHead)
			if err != nil || sealed == nil {
				headNotFound = sealed == nil
				return err
			}
			v, err := meta.get(keyRekey)
			if err != nil {
				return err
			}
			if len(v) == 8 {
				rekey, hasRekey = binary.BigEndian.Uint64(v), true
			}
			if empty, err = d.emptyStore(tx); err != nil {
				return err
			}
			raw, err := b.keys.Open(ctx, sealed, aadHead)
			if err != nil {
				return nil
			}
			opened = true
			h, what = decodeHead(raw)
			if what == "" {
				what, err = d.verifyHead(tx, h)
			}
			return err
		})
	})
	switch {
	case err != nil:
		return err
	case headNotFound:
		return damaged(d.bolt.Path(), "schema 2 without its binding record")
	case !opened && hasRekey && rekey == ext && empty:
		// A reset died between the new master key and the new head.
		d.bind, b.epoch = b, ext
		d.log.Warn("state.db: finishing an interrupted reset (binding the empty store to the new key)")
		return d.update("bind", true, func(*bolt.Tx) error { return nil })
	case !opened:
		return fmt.Errorf("%w: its binding record does not open with this key store's master key", ErrKeyMismatch)
	case what != "":
		return damaged(d.bolt.Path(), what)
	}
	d.bind, b.epoch = b, h.epoch
	switch {
	case h.epoch == ext:
		return nil
	case h.epoch == ext+1:
		// The last write committed but the reference was not advanced.
		d.advanceGuard(ctx)
		return d.damage
	case !o.AcceptRollback && h.epoch < ext:
		return fmt.Errorf("%w: state.db is at epoch %d, the %s at %d", ErrRolledBack, h.epoch, b.guard, ext)
	case !o.AcceptRollback:
		return fmt.Errorf("%w: state.db is at epoch %d, the %s at %d", ErrReferenceBehind, h.epoch, b.guard, ext)
	}
	d.log.Warn("state.db: accepting an epoch that disagrees with the rollback reference (--accept-rollback)",
		"state", h.epoch, "reference", b.guard.String(), "at", ext)
	b.epoch = ext
	return d.update("bind", true, func(*bolt.Tx) error { return nil })
}

// bindPlain binds a schema 3 (or new) file, sealing it into schema 4.
// The sealed file is written beside the old one and renamed over it, so
// that no plaintext record stays behind in the file's free pages, and a
// crash leaves either the old file or the new one.
func (d *DB) bindPlain(ctx context.Context, b *binding, ext uint64, o BindOptions) error {
	if ext > 0 && !o.AcceptRollback {
		return fmt.Errorf("%w (the %s is at %d)", ErrBindingLost, b.guard, ext)
	}
	type kv struct{ k, v []byte }
	var creds []*entry
	var settings, counters []kv
	collect := func(tx *bolt.Tx, name []byte, into *[]kv) error {
		b, err := d.top(tx, name)
		if err != nil {
			return err
		}
		return b.forEach(func(k, v []byte) error {
			*into = append(*into, kv{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
	}
	err := d.protected("bind", func() error {
		return d.bolt.View(func(tx *bolt.Tx) error {
			var raw []kv
			if err := errors.Join(collect(tx, bucketCreds, &raw), collect(tx, bucketSettings, &settings), collect(tx, bucketCounters, &counters)); err != nil {
				return err
			}
			for _, c := range raw {
				e, err := d.openEntry(c.k, c.v)
				if err != nil {
					return err
				}
				creds = append(creds, e)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if len(creds) > 0 && o.Verify != nil && d.opts.indexer != nil {
		ok := false
		for _, c := range creds[:min(len(creds), 8)] {
			x, err := d.opts.indexer(c.record)
			ok = ok || err == nil && o.Verify(x.ID, c.rpIDHash)
		}
		if !ok {
			return fmt.Errorf("%w: its credentials do not open with this key store's master key", ErrKeyMismatch)
		}
	}
	d.bind = b
	next := ext + 1
	path := d.bolt.Path()
	tmp := path + migrateSuffix
	os.Remove(tmp)
	ndb, err := bolt.Open(tmp, 0o600, d.opts.bolt())
	if err != nil {
		return fmt.Errorf("store: migrating: %w", err)
	}
	err = ndb.Update(func(tx *bolt.Tx) error {
		for _, name := range append([][]byte{bucketMeta}, dataBuckets...) {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		// A new file: nothing on disk to check.
		l := rawBuckets(tx)
		if err := errors.Join(l.meta.put(keyCount, be64(0)), l.meta.put(keyRPCount, be64(0))); err != nil {
			return err
		}
		d.schema = schemaSealed // for the keys and the sealing of addEntry
		defer func() { d.schema = schemaPlain }()
		for _, e := range creds {
			d.rekey(e)
			if err := d.addEntry(l, e); err != nil {
				return err
			}
		}
		for _, s := range settings {
			sealed, err := b.keys.Seal(ctx, s.v, append(bytes.Clone(aadSetting), s.k...))
			if err != nil {
				return fmt.Errorf("sealing: %w", err)
			}
			if err := tx.Bucket(bucketSettings).Put(s.k, sealed); err != nil {
				return err
			}
		}
		for _, c := range counters {
			if err := tx.Bucket(bucketCounters).Put(c.k, c.v); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keySchema, []byte{schemaSealed}); err != nil {
			return err
		}
		return d.writeHead(tx.Bucket(bucketSettings).ForEach, meta.Put, next)
	})
	err = errors.Join(err, ndb.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: migrating %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	// Reopen: the old handle (and its lock) belongs to the replaced file.
	if err := d.closeBolt(); err != nil {
		d.log.Warn("store: closing the replaced file", "err", err)
	}
	if d.bolt, err = bolt.Open(path, 0o600, d.opts.bolt()); err == nil {
		d.verify, err = newVerifier(path, d.bolt.Info().PageSize)
	}
	if err != nil {
		d.closed = true
		return fmt.Errorf("store: reopening %s after migrating it: %w", path, err)
	}
	d.schema = schemaSealed
	b.epoch = next
	if len(creds)+len(settings) > 0 {
		d.log.Info("state.db: sealed (schema 4) and bound to the key store", "credentials", len(creds), "settings", len(settings))
	}
	d.advanceGuard(ctx)
	return d.damage
}

// migrateSuffix names the file a migration writes before renaming it.
const migrateSuffix = ".migrate"

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// Rebind seals a new binding record under the key store's current master
// key, after authenticatorReset changed it (ctap2.KeyResetter). The store
// must be empty (Wipe first): records sealed under the old key could not be
// read again.
func (d *DB) Rebind(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writable(); err != nil {
		return err
	}
	b := d.bind
	if b == nil {
		return errors.New("store: Rebind before Bind")
	}
	var empty bool
	err := d.protected("rebind", func() error {
		return d.bolt.View(func(tx *bolt.Tx) error {
			var err error
			empty, err = d.emptyStore(tx)
			return err
		})
	})
	if err != nil {
		return err
	}
	if !empty {
		return errors.New("store: Rebind of a store that still holds records (wipe it first)")
	}
	key, err := deriveIndexKey(ctx, b.keys)
	if err != nil {
		return err
	}
	clear(b.indexKey)
	b.indexKey = key
	return d.update("rebind", true, func(*bolt.Tx) error { return nil })
}

// update runs fn in a write transaction, protected. With advance, on a
// bound DB, the same transaction writes the head with the next epoch and
// the guard is advanced after the commit. Called with d.mu held.
func (d *DB) update(op string, advance bool, fn func(tx *bolt.Tx) error) error {
	return d.updateAdvancing(op, func(tx *bolt.Tx) (bool, error) { return advance, fn(tx) })
}

// updateAdvancing is update where fn tells whether its write advances the
// epoch (whether it removed or changed something), which it learns inside
// the transaction.
func (d *DB) updateAdvancing(op string, fn func(tx *bolt.Tx) (advance bool, err error)) error {
	if err := d.writable(); err != nil {
		return err
	}
	b := d.bind
	if b != nil && b.lag {
		// Never let the reference fall two behind.
		d.advanceGuard(context.Background())
		if d.damage != nil {
			return d.damage
		}
	}
	advanced := false
	err := d.protected(op, func() error {
		defer d.verify.forget()
		return d.bolt.Update(func(tx *bolt.Tx) error {
			var meta vbucket
			if b != nil {
				var err error
				if meta, err = d.top(tx, bucketMeta); err == nil {
					err = meta.delete(keyRekey)
				}
				if err != nil {
					return err
				}
			}
			advance, err := fn(tx)
			if err != nil || !advance || b == nil {
				return err
			}
			if b.lag {
				return fmt.Errorf("store: the rollback reference (%s) cannot be advanced; not changing state.db", b.guard)
			}
			settings, err := d.top(tx, bucketSettings)
			if err != nil {
				return err
			}
			if err := d.writeHead(settings.forEach, meta.put, b.epoch+1); err != nil {
				return err
			}
			advanced = true
			return nil
		})
	})
	if err != nil {
		return err
	}
	if advanced {
		b.epoch++
		d.advanceGuard(context.Background())
	}
	return nil
}

// advanceGuard raises the guard to b.epoch, which is at most one ahead.
// A failure leaves b.lag set (the next advancing write retries first); a
// guard that lands elsewhere was moved by someone else, and the DB turns
// read-only. Called with d.mu held.
func (d *DB) advanceGuard(ctx context.Context) {
	b := d.bind
	v, err := b.guard.AdvanceEpoch(ctx)
	switch {
	case err != nil:
		b.lag = true
		d.log.Error("state.db: the rollback reference could not be advanced; the next change waits for it",
			"reference", b.guard.String(), "err", err)
	case v != b.epoch:
		b.lag = false
		if d.damage == nil {
			d.damage = fmt.Errorf("the %s moved to %d while state.db is at epoch %d: another process uses it; read-only until restart", b.guard, v, b.epoch)
			d.log.Error("state.db: " + d.damage.Error())
		}
	default:
		b.lag = false
	}
}

func (b *binding) index(rpIDHash []byte) []byte {
	m := hmac.New(sha256.New, b.indexKey)
	m.Write(rpIDHash)
	return m.Sum(nil)
}

// indexKeyIn is the layout 1 byRP key of rpIDHash.
func (d *DB) indexKeyIn(sealed bool, rpIDHash []byte) []byte {
	if !sealed || d.bind == nil {
		return rpIDHash
	}
	return d.bind.index(rpIDHash)
}

// openCredIn opens a layout 1 creds value of a plain or sealed file. Without a
// binding (Check on a sealed file) it checks the value's size only and
// returns nil slices.
func (d *DB) openCredIn(sealed bool, id, v []byte) (rpIDHash, record []byte, err error) {
	if sealed {
		if d.bind == nil {
			if len(v) < minSealed+RPIDHashSize {
				return nil, nil, errDamage{fmt.Sprintf("credential %x: sealed value of %d bytes", id, len(v))}
			}
			return nil, nil, nil
		}
		pt, err := d.bind.keys.Open(context.Background(), v, append(bytes.Clone(aadCred), id...))
		if err != nil {
			return nil, nil, errDamage{fmt.Sprintf("credential %x does not open with the key store", id)}
		}
		v = pt
	}
	if len(v) < RPIDHashSize {
		return nil, nil, errDamage{fmt.Sprintf("credential %x: value of %d bytes", id, len(v))}
	}
	return v[:RPIDHashSize], v[RPIDHashSize:], nil
}

// minSealed is the overhead of the key stores' Seal (version, nonce, tag).
const minSealed = 1 + 24 + 16

func (d *DB) sealSetting(name string, value []byte) ([]byte, error) {
	if d.schema != schemaSealed {
		return value, nil
	}
	s, err := d.bind.keys.Seal(context.Background(), value, append(bytes.Clone(aadSetting), name...))
	if err != nil {
		return nil, fmt.Errorf("store: sealing: %w", err)
	}
	return s, nil
}

func (d *DB) openSetting(name string, v []byte) ([]byte, error) {
	if d.schema != schemaSealed {
		return bytes.Clone(v), nil
	}
	pt, err := d.bind.keys.Open(context.Background(), v, append(bytes.Clone(aadSetting), name...))
	if err != nil {
		return nil, errDamage{fmt.Sprintf("setting %q does not open with the key store", name)}
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// head is the decoded binding record.
type head struct {
	epoch    uint64
	settings map[string][sha256.Size]byte
}

// writeHead seals a head with epoch over the settings as this transaction
// leaves them (settings iterates them) and stores it with put. Called with
// d.mu held, d.bind set.
func (d *DB) writeHead(settings func(func(k, v []byte) error) error, put func(k, v []byte) error, epoch uint64) error {
	type entry struct {
		name   string
		digest [sha256.Size]byte
	}
	var entries []entry
	err := settings(func(k, v []byte) error {
		if len(k) > maxSettingName {
			return errDamage{fmt.Sprintf("setting name of %d bytes", len(k))}
		}
		entries = append(entries, entry{string(k), sha256.Sum256(v)})
		return nil
	})
	if err != nil {
		return err
	}
	if len(entries) > 0xFFFF {
		return errors.New("store: too many settings")
	}
	raw := []byte{headVersion}
	raw = binary.BigEndian.AppendUint64(raw, epoch)
	raw = binary.BigEndian.AppendUint16(raw, uint16(len(entries)))
	for _, e := range entries { // ForEach visits keys in order
		raw = append(raw, byte(len(e.name)))
		raw = append(raw, e.name...)
		raw = append(raw, e.digest[:]...)
	}
	sealed, err := d.bind.keys.Seal(context.Background(), raw, aadHead)
	if err != nil {
		return fmt.Errorf("store: sealing the binding record: %w", err)
	}
	return put(keyHead, sealed)
}

// decodeHead parses an opened head; what is "" or what is wrong.
func decodeHead(raw []byte) (h head, what string) {
	const malformed = "binding record: malformed"
	if len(raw) < 11 || raw[0] != headVersion {
		return head{}, malformed
	}
	h.epoch = binary.BigEndian.Uint64(raw[1:])
	n := int(binary.BigEndian.Uint16(raw[9:]))
	rest := raw[11:]
	h.settings = make(map[string][sha256.Size]byte, n)
	for range n {
		if len(rest) < 1 || len(rest) < 1+int(rest[0])+sha256.Size {
			return head{}, malformed
		}
		l := int(rest[0])
		var dg [sha256.Size]byte
		copy(dg[:], rest[1+l:])
		h.settings[string(rest[1:1+l])] = dg
		rest = rest[1+l+sha256.Size:]
	}
	if len(rest) != 0 {
		return head{}, malformed
	}
	return h, ""
}

// verifyHead compares the settings bucket with the head: what is "" or
// what differs.
func (d *DB) verifyHead(tx *bolt.Tx, h head) (what string, err error) {
	settings, err := d.top(tx, bucketSettings)
	if err != nil {
		return "", err
	}
	var names []string
	err = settings.forEach(func(k, v []byte) error {
		names = append(names, string(k))
		if want, ok := h.settings[string(k)]; !ok || want != sha256.Sum256(v) {
			what = fmt.Sprintf("setting %q does not match the binding record (state.db was edited, or pieced together from copies)", k)
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return "", err
	}
	if what != "" {
		return what, nil
	}
	for name := range h.settings {
		if !slices.Contains(names, name) {
			return fmt.Sprintf("setting %q of the binding record is missing (state.db was edited, or pieced together from copies)", name), nil
		}
	}
	return "", nil
}

// readHead opens and checks the head of a bound DB (for Check).
func (d *DB) readHead(tx *bolt.Tx) (head, string) {
	sealed := tx.Bucket(bucketMeta).Get(keyHead) // after Check's walk
	if sealed == nil {
		return head{}, "the binding record is missing"
	}
	raw, err := d.bind.keys.Open(context.Background(), sealed, aadHead)
	if err != nil {
		return head{}, "the binding record does not open with the key store"
	}
	h, what := decodeHead(raw)
	if what == "" {
		var err error
		if what, err = d.verifyHead(tx, h); err != nil {
			what = err.Error()
		}
	}
	return h, what
}
