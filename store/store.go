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
//	meta      "schema" → 1
//	creds     credential ID → rpIdHash (32) ‖ record
//	byRP      rpIdHash → nested bucket { credential ID → "" }
//	settings  name → value
//	counters  SHA-256(credential ID) → reserved high-water mark (uint64, big-endian)
//
// byRP makes CredentialsByRP a scan of one small bucket and RPs a walk of
// the bucket names (sorted by bbolt); a nested bucket is deleted with its
// last credential.
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
	"math"
	"os"
	"path/filepath"
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
)

// RPIDHashSize is the length of the rpIdHash keys (SHA-256).
const RPIDHashSize = sha256.Size

// MaxCredentialIDLength is the longest credential ID the store accepts.
const MaxCredentialIDLength = 1023

const (
	schemaVersion = 1

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
)

// dataBuckets are the buckets Wipe empties.
var dataBuckets = [][]byte{bucketCreds, bucketByRP, bucketSettings, bucketCounters}

// DB is the state database of one state directory. It implements
// ctap2.Store and is safe for concurrent use.
type DB struct {
	bolt *bolt.DB
	opts options

	mu       sync.Mutex // guards counters and closed; held across counter and delete transactions
	counters map[[sha256.Size]byte]*counter
	closed   bool
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
}

// WithLockTimeout sets how long Open waits for the file lock before failing
// with ErrLocked (default [DefaultLockTimeout]; it must be positive).
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// WithCounterReserve sets the initial counter reservation step (default
// [DefaultCounterReserve]): the most values a crash can skip.
func WithCounterReserve(n uint32) Option { return func(o *options) { o.reserve = uint64(n) } }

// Open opens (creating if needed) the database file at path, mode 0600,
// creating its parent directory with mode 0700. It fails with [ErrLocked]
// if another process has it open.
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
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w (%s is locked)", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	d := &DB{bolt: bdb, opts: o, counters: make(map[[sha256.Size]byte]*counter)}
	if err := d.init(); err != nil {
		bdb.Close()
		return nil, err
	}
	return d, nil
}

func (d *DB) init() error {
	return d.bolt.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, []byte{schemaVersion}); err != nil {
				return err
			}
		case len(v) != 1 || v[0] != schemaVersion:
			return fmt.Errorf("store: %s has schema %x; this virtkey understands %d", d.bolt.Path(), v, schemaVersion)
		}
		for _, name := range dataBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close persists the exact counter values (so a clean restart skips none)
// and closes the database.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCounters)
		for k, c := range d.counters {
			if c.current < c.reserved {
				if err := b.Put(k[:], be64(c.current)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	d.counters = nil
	return errors.Join(err, d.bolt.Close())
}

// Path returns the database file's path.
func (d *DB) Path() string { return d.bolt.Path() }

func checkCredID(id []byte) error {
	if len(id) == 0 || len(id) > MaxCredentialIDLength {
		return fmt.Errorf("store: credential ID of %d bytes", len(id))
	}
	return nil
}

// PutCredential inserts or replaces the record of credential id under
// rpIDHash (32 bytes), moving it in the RP index if its RP changed. The
// credentials in replaces (a discoverable credential superseded by a new one
// for the same user) are deleted in the same transaction, so a crash leaves
// either the old credentials or the new one.
func (d *DB) PutCredential(id, rpIDHash, record []byte, replaces ...[]byte) error {
	if err := checkCredID(id); err != nil {
		return err
	}
	if len(rpIDHash) != RPIDHashSize {
		return fmt.Errorf("store: rpIDHash of %d bytes, want %d", len(rpIDHash), RPIDHashSize)
	}
	v := make([]byte, 0, RPIDHashSize+len(record))
	v = append(v, rpIDHash...)
	v = append(v, record...)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		for _, old := range replaces {
			if bytes.Equal(old, id) {
				continue
			}
			if err := deleteCredentialTx(tx, old); err != nil {
				return err
			}
		}
		creds := tx.Bucket(bucketCreds)
		if old := creds.Get(id); old != nil {
			oldRP, _, err := splitCred(id, old)
			if err != nil {
				return err
			}
			if !bytes.Equal(oldRP, rpIDHash) {
				if err := unindex(tx, oldRP, id); err != nil {
					return err
				}
			}
		}
		if err := creds.Put(id, v); err != nil {
			return err
		}
		rp, err := tx.Bucket(bucketByRP).CreateBucketIfNotExists(rpIDHash)
		if err != nil {
			return err
		}
		return rp.Put(id, []byte{})
	})
	if err != nil {
		return fmt.Errorf("store: putting credential: %w", err)
	}
	for _, old := range replaces {
		if !bytes.Equal(old, id) {
			delete(d.counters, sha256.Sum256(old))
		}
	}
	return nil
}

// deleteCredentialTx removes id, its index entry and its counter row.
func deleteCredentialTx(tx *bolt.Tx, id []byte) error {
	creds := tx.Bucket(bucketCreds)
	if v := creds.Get(id); v != nil {
		rp, _, err := splitCred(id, v)
		if err != nil {
			return err
		}
		if err := unindex(tx, rp, id); err != nil {
			return err
		}
		if err := creds.Delete(id); err != nil {
			return err
		}
	}
	key := sha256.Sum256(id)
	return tx.Bucket(bucketCounters).Delete(key[:])
}

// splitCred splits a creds value into rpIdHash and record.
func splitCred(id, v []byte) (rpIDHash, record []byte, err error) {
	if len(v) < RPIDHashSize {
		return nil, nil, fmt.Errorf("credential %x: corrupt value of %d bytes", id, len(v))
	}
	return v[:RPIDHashSize], v[RPIDHashSize:], nil
}

// unindex removes id from rpIDHash's index bucket, and the bucket if empty.
func unindex(tx *bolt.Tx, rpIDHash, id []byte) error {
	byRP := tx.Bucket(bucketByRP)
	rp := byRP.Bucket(rpIDHash)
	if rp == nil {
		return nil
	}
	if err := rp.Delete(id); err != nil {
		return err
	}
	if k, _ := rp.Cursor().First(); k == nil {
		return byRP.DeleteBucket(rpIDHash)
	}
	return nil
}

// Credential returns the record of id; ok is false when there is none.
func (d *DB) Credential(id []byte) (record []byte, ok bool, err error) {
	err = d.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCreds).Get(id)
		if v == nil {
			return nil
		}
		_, rec, err := splitCred(id, v)
		record, ok = append([]byte{}, rec...), err == nil
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: %w", err)
	}
	return record, ok, nil
}

// CredentialsByRP returns the records stored under rpIDHash, ordered by
// credential ID. It reads only that RP's index.
func (d *DB) CredentialsByRP(rpIDHash []byte) ([][]byte, error) {
	var recs [][]byte
	err := d.bolt.View(func(tx *bolt.Tx) error {
		rp := tx.Bucket(bucketByRP).Bucket(rpIDHash)
		if rp == nil {
			return nil
		}
		creds := tx.Bucket(bucketCreds)
		return rp.ForEach(func(id, _ []byte) error {
			v := creds.Get(id)
			if v == nil {
				return fmt.Errorf("index entry %x has no credential", id)
			}
			rp, rec, err := splitCred(id, v)
			if err != nil {
				return err
			}
			if !bytes.Equal(rp, rpIDHash) {
				return fmt.Errorf("index entry %x points to another RP's credential", id)
			}
			recs = append(recs, append([]byte{}, rec...))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return recs, nil
}

// RPs returns the distinct rpIDHashes with at least one credential, sorted.
func (d *DB) RPs() ([][]byte, error) {
	var rps [][]byte
	err := d.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketByRP).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			rps = append(rps, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return rps, nil
}

// DeleteCredential removes id, its index entry and its counter (no error
// if absent).
func (d *DB) DeleteCredential(id []byte) error {
	key := sha256.Sum256(id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	err := d.bolt.Update(func(tx *bolt.Tx) error { return deleteCredentialTx(tx, id) })
	if err != nil {
		return fmt.Errorf("store: deleting credential: %w", err)
	}
	delete(d.counters, key)
	return nil
}

// CountCredentials is the number of resident credentials.
func (d *DB) CountCredentials() (int, error) {
	var n int
	err := d.bolt.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketCreds).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return n, nil
}

// Setting returns the value of name, or nil if unset (an empty value set
// with PutSetting is returned as a non-nil empty slice).
func (d *DB) Setting(name string) ([]byte, error) {
	var v []byte
	err := d.bolt.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketSettings).Get([]byte(name)); b != nil {
			v = append([]byte{}, b...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return v, nil
}

// PutSetting stores value under name; a nil value deletes the setting.
func (d *DB) PutSetting(name string, value []byte) error {
	if name == "" {
		return errors.New("store: empty setting name")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSettings)
		if value == nil {
			return b.Delete([]byte(name))
		}
		return b.Put([]byte(name), value)
	})
	if err != nil {
		return fmt.Errorf("store: setting %q: %w", name, err)
	}
	return nil
}

// Wipe erases every credential, counter and setting in one transaction
// (authenticatorReset).
func (d *DB) Wipe() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		for _, name := range dataBuckets {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: wipe: %w", err)
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
	if d.closed {
		return 0, ErrClosed
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
	err := d.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCounters).Get(key[:])
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("counter %x has %d bytes", key[:4], len(v))
		}
		stored = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: loading counter: %w", err)
	}
	return &counter{current: stored, reserved: stored, step: d.opts.reserve}, nil
}

// reserve persists a new high-water mark for c. Called with d.mu held.
func (d *DB) reserve(key [sha256.Size]byte, c *counter) error {
	now := d.opts.now()
	step := d.opts.reserve
	if !c.lastReserve.IsZero() && now.Sub(c.lastReserve) < time.Second {
		step = min(c.step*2, max(maxCounterReserve, d.opts.reserve))
	}
	reserved := min(c.current+step, math.MaxUint32)
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCounters).Put(key[:], be64(reserved))
	})
	if err != nil {
		return fmt.Errorf("store: reserving counter values: %w", err)
	}
	c.reserved, c.step, c.lastReserve = reserved, step, now
	return nil
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
