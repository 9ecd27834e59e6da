// Package store keeps virtkey's durable state — resident credentials,
// signature counters and named settings (PIN state, config, large blobs) —
// in one file of the state directory. [DB] implements ctap2.Store.
//
// # Why bbolt
//
// The file is a go.etcd.io/bbolt database: a single file, pure Go (no cgo),
// with ACID transactions. bbolt is a copy-on-write B+tree: a transaction
// writes new pages, fsyncs them, then writes and fsyncs a new meta page, so
// after a crash or power loss the file opens with the last committed state
// (old or new, never a mix). Its exclusive flock on the file also makes the
// serving process the only writer of a state directory.
//
// # Layout
//
//	meta      "schema" → 3 (plain) or 4 (sealed); "count" → credentials; "rps" → RPs;
//	          "head" → the sealed binding record (schema 4, see bind.go)
//	creds     SHA-256(credential ID)[:16] → the record and what it is indexed by (sealed in schema 4)
//	index     per RP, side by side: its counts, its credentials newest first, its users' credentials
//	settings  name → value                                         (schema 4: sealed)
//	counters  SHA-256(credential ID) → reserved high-water mark (uint64, big-endian)
//
// index.go has the details. Every question the authenticator asks — the
// RP's newest credential and the next one, how many it has, which belong
// to a user, the next RP, how many there are — is a seek or two in a
// B+tree and opens at most one record, so its cost grows with the log of
// the number of credentials, not with the number; the records are not
// decoded by the store but indexed with an [Indexer] (ctap2.IndexRecord).
//
// # Schema versions
//
// Schemas 1 (plain) and 2 (sealed, from the state binding on) had one
// nested bucket per RP (byRP) and no order, counts or user index: every
// list read and decoded all of an RP's records. [Open] migrates a schema 1
// file to schema 3 (it needs the [Indexer]), [DB.Bind] seals a schema 3
// (or new) file into schema 4 and migrates a schema 2 file to schema 4 in
// one transaction that advances the rollback epoch (migrate.go). A file
// with a schema newer than [SchemaVersion] is refused. A sealed file is
// usable only once bound.
//
// # Damage
//
// Open checks the meta pages, the freelist and the root pages
// (filecheck.go) and refuses a damaged file with [ErrDamaged]; its cost
// does not grow with the file. Every call is protected: before bbolt
// follows page pointers the store checks them itself (verify.go: a search
// path for a lookup, the whole tree for an iteration), so a loop in the
// tree cannot send bbolt into endless recursion; a bbolt panic or a fault
// reading the memory-mapped file is recovered (damage.go). Damage found
// that way fails the call with an [ErrDamaged] error, is logged once, and
// turns the DB read-only. [Check] and [DB.Check] read every page.
//
// # Counters
//
// NextCounter must increase strictly across restarts and crashes without
// an fsync per call. Each counter lives in memory as {current, reserved};
// when current+1 would pass reserved, one transaction persists a new
// reserved = current + step, and values up to it are then handed out from
// memory. After a crash the next process starts from the persisted
// reserved, so a crash skips at most one step of values. The step starts at
// 1024 and doubles (up to 65536) while reservations for a counter come less
// than a second apart, so a burst costs few fsyncs while a crash under
// normal use wastes at most 1024 values. Close persists the exact current
// value, so a clean shutdown wastes none.
package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors returned by this package. Test with errors.Is.
var (
	// ErrLocked reports that another process (or another DB in this one)
	// holds the database.
	ErrLocked = errors.New("store: state dir in use by another virtkey")
	// ErrClosed reports use of a closed DB.
	ErrClosed = errors.New("store: closed")
	// ErrCounterExhausted reports a counter that reached 2³²−1.
	ErrCounterExhausted = errors.New("store: signature counter exhausted")
	// ErrNewerSchema reports a file written by a newer virtkey.
	ErrNewerSchema = errors.New("state.db was written by a newer virtkey")
)

// errNeedsIndexer reports a schema 1 file opened without an indexer: it
// cannot be migrated (see migrate.go).
var errNeedsIndexer = errors.New("store: state.db has schema 1; open it with an indexer (store.WithIndexer) to migrate it")

// RPIDHashSize is the length of the rpIdHash keys (SHA-256).
const RPIDHashSize = sha256.Size

// MaxCredentialIDLength is the longest credential ID the store accepts.
const MaxCredentialIDLength = 1023

// Schema versions: see the package documentation.
const (
	schemaPlainV1  = 1 // layout 1, plain
	schemaSealedV1 = 2 // layout 1, sealed
	schemaPlain    = 3 // layout 2 (index.go), plain: not bound yet
	schemaSealed   = 4 // layout 2, sealed
	// SchemaVersion is the newest schema this package reads and writes.
	SchemaVersion = schemaSealed
)

// sealedSchema reports whether schema s seals its values.
func sealedSchema(s byte) bool { return s == schemaSealedV1 || s == schemaSealed }

const (
	// DefaultCounterReserve is the initial counter reservation step.
	DefaultCounterReserve = 1024
	maxCounterReserve     = 65536
	// DefaultLockTimeout is how long Open waits for another process's lock.
	DefaultLockTimeout = 200 * time.Millisecond
)

var (
	bucketMeta     = []byte("meta")
	bucketCreds    = []byte("creds")
	bucketByRP     = []byte("byRP")
	bucketSettings = []byte("settings")
	bucketCounters = []byte("counters")
	keySchema      = []byte("schema")
	// keyCount is the number of credentials (u64), kept with every write so
	// that CountCredentials reads one value: cheap at any size, and still
	// readable when a page of the creds bucket is damaged.
	keyCount = []byte("count")
)

// dataBuckets are the buckets Wipe empties.
var dataBuckets = [][]byte{bucketCreds, bucketIndex, bucketSettings, bucketCounters}

// DB is the state database of one state directory. It implements
// ctap2.Store and is safe for concurrent use.
type DB struct {
	bolt *bolt.DB
	opts options
	log  *slog.Logger

	mu       sync.Mutex // guards everything below; held across transactions
	counters map[[sha256.Size]byte]*counter
	closed   bool
	schema   byte
	bind     *binding  // nil until Bind
	damage   error     // first damage seen: the DB is read-only
	verify   *verifier // checks trees before bbolt walks them (verify.go)
}

type counter struct {
	current, reserved uint64
	step              uint64
	lastReserve       time.Time
}

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
	reserve     uint64
	now         func() time.Time
	log         *slog.Logger
	indexer     Indexer
	noSync      bool // tests only: bbolt without fsync
}

func (o *options) bolt() *bolt.Options {
	return &bolt.Options{Timeout: o.lockTimeout, NoSync: o.noSync}
}

// WithLockTimeout sets how long Open waits for the file lock before failing
// with ErrLocked (default [DefaultLockTimeout]; it must be positive).
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// WithCounterReserve sets the initial counter reservation step (default
// [DefaultCounterReserve]): the most values a crash can skip.
func WithCounterReserve(n uint32) Option { return func(o *options) { o.reserve = uint64(n) } }

// WithLogger sets the logger for damage and binding events (default: none).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Open opens (creating if needed) the database file at path, mode 0600,
// creating its parent directory with mode 0700. It fails with [ErrLocked]
// if another process has it open, with [ErrDamaged] if its meta pages or
// freelist are damaged, and with [ErrNewerSchema] if a newer virtkey wrote
// it.
func Open(path string, opts ...Option) (*DB, error) {
	o := options{lockTimeout: DefaultLockTimeout, reserve: DefaultCounterReserve, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.lockTimeout <= 0 {
		return nil, errors.New("store: lock timeout must be positive (zero would wait forever)")
	}
	if o.reserve < 1 {
		o.reserve = 1
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, wrap("store", err)
	}
	if err := checkFile(path); err != nil {
		return nil, err
	}
	var bdb *bolt.DB
	err := protect(func() (err error) {
		bdb, err = bolt.Open(path, 0o600, o.bolt())
		return err
	})
	if err != nil {
		var p panicked
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("%w (%s is locked)", ErrLocked, path)
		case errors.As(err, &p):
			return nil, damaged(path, p.Error())
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
			return nil, damaged(path, err.Error())
		}
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	os.Remove(path + migrateSuffix) // left by a migration that died before its rename
	d := &DB{bolt: bdb, opts: o, log: o.log, counters: make(map[[sha256.Size]byte]*counter)}
	if d.verify, err = newVerifier(path, bdb.Info().PageSize); err != nil {
		d.closeBolt()
		return nil, err
	}
	if err := d.init(); err != nil {
		d.closeBolt()
		return nil, err
	}
	return d, nil
}

// init checks the buckets' root pages and the schema, creating the
// buckets of a new file.
func (d *DB) init() error {
	err := protect(func() error {
		if err := d.bolt.View(func(tx *bolt.Tx) error { return checkRoots(tx) }); err != nil {
			return err
		}
		defer d.verify.forget()
		return d.bolt.Update(func(tx *bolt.Tx) error {
			root, err := d.rootBucket(tx)
			if err != nil {
				return err
			}
			meta, err := root.createBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			v, err := meta.get(keySchema)
			switch {
			case err != nil:
				return err
			case v == nil: // a new file
				d.schema = schemaPlain
				for _, name := range dataBuckets {
					if _, err := root.createBucketIfNotExists(name); err != nil {
						return err
					}
				}
				return errors.Join(meta.put(keySchema, []byte{schemaPlain}), meta.put(keyCount, be64(0)), meta.put(keyRPCount, be64(0)))
			case len(v) != 1 || v[0] == 0:
				return errDamage{fmt.Sprintf("schema record %x", v)}
			case v[0] > SchemaVersion:
				return fmt.Errorf("%w: %s has schema %d, this virtkey understands schemas up to %d; run a newer virtkey, or move the file away to start over",
					ErrNewerSchema, d.bolt.Path(), v[0], SchemaVersion)
			}
			d.schema = v[0]
			switch d.schema {
			case schemaPlainV1:
				if d.opts.indexer == nil {
					return nil // readable only once migrated, with an indexer
				}
				return d.migrateV1(tx) // plain already: rewritten in place
			case schemaSealedV1:
				return nil // Bind migrates it
			}
			for _, name := range dataBuckets {
				if _, err := d.top(tx, name); err != nil {
					return err
				}
			}
			for _, name := range [][]byte{keyCount, keyRPCount} {
				if v, err := meta.get(name); err != nil {
					return err
				} else if len(v) != 8 {
					return errDamage{fmt.Sprintf("meta %s: %x", name, v)}
				}
			}
			return nil
		})
	})
	var dm errDamage
	var p panicked
	switch {
	case errors.As(err, &dm):
		return damaged(d.bolt.Path(), dm.what)
	case errors.As(err, &p):
		return damaged(d.bolt.Path(), p.Error())
	case err != nil && !errors.Is(err, ErrNewerSchema):
		return wrap("store", err)
	}
	return err
}

// Close persists the exact counter values (so a clean restart skips none)
// and closes the database. A damaged DB is closed without writing.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var err error
	if d.damage == nil {
		err = d.protected("close", func() error {
			defer d.verify.forget()
			return d.bolt.Update(func(tx *bolt.Tx) error {
				b, err := d.top(tx, bucketCounters)
				if err != nil {
					return err
				}
				for k, c := range d.counters {
					if c.current < c.reserved {
						if err := b.put(k[:], be64(c.current)); err != nil {
							return err
						}
					}
				}
				return nil
			})
		})
	}
	d.counters = nil
	if d.bind != nil {
		clear(d.bind.indexKey)
	}
	return errors.Join(err, d.closeBolt())
}

// closeBolt closes the bbolt handle. After damage a panic may have left a
// bbolt lock held, so it gives up after a second rather than hang: the
// process's exit releases the file.
func (d *DB) closeBolt() error {
	d.verify.close()
	done := make(chan error, 1)
	go func() { done <- protect(d.bolt.Close) }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Second):
		return errors.New("store: closing the damaged database timed out")
	}
}

// Path returns the database file's path.
func (d *DB) Path() string { return d.bolt.Path() }

func checkCredID(id []byte) error {
	if len(id) == 0 || len(id) > MaxCredentialIDLength {
		return fmt.Errorf("store: credential ID of %d bytes", len(id))
	}
	return nil
}

// checkPut checks a credential's ID and rpIDHash before it is stored.
func checkPut(id, rpIDHash []byte) error {
	if err := checkCredID(id); err != nil {
		return err
	}
	if len(rpIDHash) != RPIDHashSize {
		return fmt.Errorf("store: rpIDHash of %d bytes, want %d", len(rpIDHash), RPIDHashSize)
	}
	return nil
}

// readable reports why d cannot be read (closed, or sealed and not
// bound). Called with d.mu held.
func (d *DB) readable() error {
	if d.closed {
		return ErrClosed
	}
	if sealedSchema(d.schema) && d.bind == nil {
		return ErrNeedsBind
	}
	if d.schema == schemaPlainV1 {
		return errNeedsIndexer
	}
	return nil
}

// writable reports why d cannot be written. Called with d.mu held.
func (d *DB) writable() error {
	if err := d.readable(); err != nil {
		return err
	}
	if d.damage != nil {
		return fmt.Errorf("store: read-only after damage: %w", d.damage)
	}
	return nil
}

// view runs fn in a read transaction, protected. Called with d.mu held.
func (d *DB) view(op string, fn func(tx *bolt.Tx) error) error {
	if err := d.readable(); err != nil {
		return err
	}
	return d.protected(op, func() error { return d.bolt.View(fn) })
}

// read runs fn in a read transaction under d.mu, the way every read of the
// API does, and prefixes an error with "store".
func (d *DB) read(op string, fn func(tx *bolt.Tx) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.view(op, fn); err != nil {
		return wrap("store", err)
	}
	return nil
}

// change runs fn in a write transaction that advances the rollback epoch
// of a bound DB, and prefixes an error with what (an error of a DB that
// cannot be written stays as it is). Called with d.mu held.
func (d *DB) change(op, what string, fn func(tx *bolt.Tx) error) error {
	if err := d.writable(); err != nil {
		return err
	}
	return wrapNil(what, d.update(op, true, fn))
}

// PutCredential inserts or replaces the record of credential id under
// rpIDHash (32 bytes), indexed by the [Indexer]. The credentials in
// replaces (a discoverable credential superseded by a new one for the same
// user) are deleted in the same transaction, so a crash leaves either the
// old credentials or the new one. Replacing or deleting advances the
// rollback epoch of a bound DB; adding a new credential does not.
func (d *DB) PutCredential(id, rpIDHash, record []byte, replaces ...[]byte) error {
	if err := checkPut(id, rpIDHash); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writable(); err != nil {
		return err
	}
	e, err := d.newEntry(id, rpIDHash, record)
	if err != nil {
		return err
	}
	err = d.updateAdvancing("putCredential", func(tx *bolt.Tx) (removed bool, err error) {
		l, err := d.buckets(tx)
		if err != nil {
			return false, err
		}
		for _, old := range replaces {
			if bytes.Equal(old, id) {
				continue
			}
			o, err := d.lookup(l.creds, old)
			if err != nil {
				return false, err
			}
			if o != nil {
				removed = true
				if err := d.removeEntry(l, o); err != nil {
					return false, err
				}
			}
		}
		overwrote, err := d.storeEntry(l, e)
		return removed || overwrote, err
	})
	if err != nil {
		return wrap("store: putting credential", err)
	}
	for _, old := range replaces {
		if !bytes.Equal(old, id) {
			delete(d.counters, sha256.Sum256(old))
		}
	}
	return nil
}

// Credential returns the record of id; ok is false when there is none.
func (d *DB) Credential(id []byte) (record []byte, ok bool, err error) {
	err = d.read("credential", func(tx *bolt.Tx) error {
		creds, err := d.top(tx, bucketCreds)
		if err != nil {
			return err
		}
		e, err := d.lookup(creds, id)
		if err != nil || e == nil {
			return err
		}
		record, ok = bytes.Clone(e.record), true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return record, ok, nil
}

// CredentialsByRP returns the records stored under rpIDHash, newest first
// (see [DB.NextCredentialOfRP], which pages through them one at a time).
func (d *DB) CredentialsByRP(rpIDHash []byte) ([][]byte, error) {
	var recs [][]byte
	var cursor []byte
	for {
		rec, next, err := d.NextCredentialOfRP(rpIDHash, cursor, true)
		if err != nil || rec == nil {
			return recs, err
		}
		recs, cursor = append(recs, rec), next
	}
}

// RPs returns the distinct rpIDHashes with at least one credential, sorted.
// It opens one credential of each RP to learn it.
func (d *DB) RPs() ([][]byte, error) {
	var rps [][]byte
	err := d.read("rps", func(tx *bolt.Tx) error {
		index, creds, err := d.indexAndCreds(tx)
		if err != nil {
			return err
		}
		var cursor []byte
		for {
			e, next, err := d.nextRP(index, creds, cursor)
			if err != nil || e == nil {
				return err
			}
			rps, cursor = append(rps, bytes.Clone(e.rpIDHash)), next
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rps, bytes.Compare)
	return rps, nil
}

// DeleteCredential removes id, its index entries and its counter (no
// error if absent). It advances the rollback epoch of a bound DB.
func (d *DB) DeleteCredential(id []byte) error {
	key := sha256.Sum256(id)
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.change("deleteCredential", "store: deleting credential", func(tx *bolt.Tx) error {
		l, err := d.buckets(tx)
		if err != nil {
			return err
		}
		e, err := d.lookup(l.creds, id)
		if err != nil {
			return err
		}
		if e == nil {
			// No credential; a counter row may be left by an older
			// virtkey.
			return l.counters.delete(key[:])
		}
		return d.removeEntry(l, e)
	})
	if err != nil {
		return err
	}
	delete(d.counters, key)
	return nil
}

// CountCredentials is the number of resident credentials: one stored
// value, whatever the number.
func (d *DB) CountCredentials() (int, error) { return d.countOf("countCredentials", keyCount) }

// countOf reads the u64 meta value name in a read transaction.
func (d *DB) countOf(op string, name []byte) (int, error) {
	var n int
	err := d.read(op, func(tx *bolt.Tx) error {
		var err error
		n, err = d.metaCount(tx, name)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Setting returns the value of name, or nil if unset (an empty value set
// with PutSetting is returned as a non-nil empty slice).
func (d *DB) Setting(name string) ([]byte, error) {
	var v []byte
	err := d.read("setting", func(tx *bolt.Tx) error {
		b, err := d.get(tx, bucketSettings, []byte(name))
		if err != nil || b == nil {
			return err
		}
		v, err = d.openSetting(name, b)
		return err
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// PutSetting stores value under name; a nil value deletes the setting. It
// advances the rollback epoch of a bound DB.
func (d *DB) PutSetting(name string, value []byte) error {
	if name == "" || len(name) > maxSettingName {
		return fmt.Errorf("store: setting name of %d bytes", len(name))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writable(); err != nil {
		return err
	}
	var sealed []byte
	if value != nil {
		var err error
		if sealed, err = d.sealSetting(name, value); err != nil {
			return err
		}
	}
	err := d.update("putSetting", true, func(tx *bolt.Tx) error {
		b, err := d.top(tx, bucketSettings)
		if err != nil {
			return err
		}
		if value == nil {
			return b.delete([]byte(name))
		}
		return b.put([]byte(name), sealed)
	})
	if err != nil {
		return wrap(fmt.Sprintf("store: setting %q", name), err)
	}
	return nil
}

// maxSettingName bounds setting names (the binding record lists them).
const maxSettingName = 255

// Wipe erases every credential, counter and setting in one transaction
// (authenticatorReset). A bound DB keeps its binding record, advanced, and
// notes that a new key is expected (see [DB.Rebind]).
func (d *DB) Wipe() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.change("wipe", "store: wipe", func(tx *bolt.Tx) error {
		root, err := d.rootBucket(tx)
		if err != nil {
			return err
		}
		for _, name := range dataBuckets {
			if err := root.deleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		meta, err := d.top(tx, bucketMeta)
		if err != nil {
			return err
		}
		if err := errors.Join(meta.put(keyCount, be64(0)), meta.put(keyRPCount, be64(0))); err != nil {
			return err
		}
		if d.bind != nil {
			return meta.put(keyRekey, be64(d.bind.epoch+1))
		}
		return nil
	})
	if err != nil {
		return err
	}
	clear(d.counters)
	return nil
}

// NextCounter returns the next signature counter of credential id: 1 for a
// new credential, then strictly increasing, also across restarts and
// crashes. Most calls touch only memory (see the package documentation).
func (d *DB) NextCounter(id []byte) (uint32, error) {
	if len(id) == 0 {
		return 0, errors.New("store: empty credential ID")
	}
	key := sha256.Sum256(id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.readable(); err != nil {
		return 0, err
	}
	c := d.counters[key]
	if c == nil {
		var err error
		if c, err = d.loadCounter(key); err != nil {
			return 0, err
		}
		d.counters[key] = c
	}
	if c.current >= math.MaxUint32 {
		return 0, ErrCounterExhausted
	}
	if c.current >= c.reserved {
		if err := d.reserve(key, c); err != nil {
			return 0, err
		}
	}
	c.current++
	return uint32(c.current), nil
}

func (d *DB) loadCounter(key [sha256.Size]byte) (*counter, error) {
	var stored uint64
	err := d.view("loadCounter", func(tx *bolt.Tx) error {
		v, err := d.get(tx, bucketCounters, key[:])
		if err != nil || v == nil {
			return err
		}
		if len(v) != 8 {
			return d.inconsistent(fmt.Sprintf("counter %x has %d bytes", key[:4], len(v)))
		}
		stored = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return nil, wrap("store: loading counter", err)
	}
	return &counter{current: stored, reserved: stored, step: d.opts.reserve}, nil
}

// reserve persists a new high-water mark for c, advancing the rollback
// epoch of a bound DB (an older copy would hand out used values again).
// Called with d.mu held.
func (d *DB) reserve(key [sha256.Size]byte, c *counter) error {
	if err := d.writable(); err != nil {
		return wrap("store: reserving counter values", err)
	}
	now := d.opts.now()
	step := d.opts.reserve
	if !c.lastReserve.IsZero() && now.Sub(c.lastReserve) < time.Second {
		step = min(c.step*2, max(maxCounterReserve, d.opts.reserve))
	}
	reserved := min(c.current+step, math.MaxUint32)
	err := d.update("reserveCounter", true, func(tx *bolt.Tx) error {
		return d.put(tx, bucketCounters, key[:], be64(reserved))
	})
	if err != nil {
		return wrap("store: reserving counter values", err)
	}
	c.reserved, c.step, c.lastReserve = reserved, step, now
	return nil
}

// wrap prefixes err, except an ErrDamaged error, whose message is for
// the user as it is.
func wrap(prefix string, err error) error {
	if errors.Is(err, ErrDamaged) {
		return err
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
