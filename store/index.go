package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
)

// Layout 2 (schemas 3 and 4): the credentials and one index bucket whose
// keys put everything of one RP side by side, so that every question the
// authenticator asks — the RP's newest credential, the next one, how many
// there are, which ones belong to a user — is one or two B+tree seeks,
// whatever the number of credentials or of the RP's accounts.
//
//	creds   credKey → value
//	index   rpKey ‖ 0x00                       → all (u32) ‖ visible (u32)
//	        rpKey ‖ 0x01 ‖ order ‖ credKey     → flags (u8)
//	        rpKey ‖ 0x02 ‖ userKey ‖ credKey   → ""
//	meta    "count" → credentials (u64), "rps" → RPs (u64)
//
//	credKey = SHA-256(credential ID)[:16]
//	rpKey   = HMAC-SHA-256(indexKey, 0x01 ‖ rpIdHash)[:16]
//	userKey = HMAC-SHA-256(indexKey, 0x02 ‖ rpIdHash ‖ user ID)[:16]
//	order   = the creation time (Unix ns) mapped so that newer sorts first
//	value   = plaintext (schema 3), or Seal(plaintext, aad = aadCredV2 ‖ credKey) (schema 4)
//	plaintext = SHA-256(credential ID) ‖ rpIdHash (32) ‖ created (i64) ‖ flags (u8) ‖ userKey ‖ record
//
// indexKey is the bound key store's index key; a plain file uses an empty
// HMAC key. 16 bytes keep a million credentials under 1 KiB each; a
// collision of two credKeys is told apart by the whole hash in the
// plaintext, one of two userKeys costs a record read (the authenticator
// compares user IDs). Flag 0x01 (hidden) marks a credential
// that discoverable lists leave out unless asked for (credProtect level 2
// or 3 without user verification); visible counts the others. An
// unlisted credential (flag 0x02: not discoverable) has no index entries
// and is counted in "count" only.
//
// The store does not decode records: an [Indexer], from the authenticator,
// tells each record's user ID, creation time and visibility.

// Index is what the store indexes a credential record by.
type Index struct {
	ID      []byte // the credential ID the record is of
	UserID  []byte // the user handle it was made for
	Created int64  // its creation time: lists are newest first
	Hidden  bool   // discoverable lists leave it out unless asked for
	// Unlisted keeps it out of the RP's list, counts and user index: a
	// credential found by its ID only (not discoverable).
	Unlisted bool
}

// Indexer reads the Index of a credential record: the store does not
// decode records. ctap2.IndexRecord is the authenticator's (statedir
// wires it).
type Indexer func(record []byte) (Index, error)

// WithIndexer sets the indexer (default: none, and every record is indexed
// with an empty user ID, creation time 0 and visible).
func WithIndexer(f Indexer) Option { return func(o *options) { o.indexer = f } }

var (
	bucketIndex = []byte("index")
	keyRPCount  = []byte("rps")
	aadCredV2   = []byte("virtkey store v4 credential\x00")
)

const (
	shortKey = 16
	tagRP    = 0x00
	tagList  = 0x01
	tagUser  = 0x02
	// cursorSize is the length of a list cursor: order ‖ credKey.
	cursorSize   = 8 + shortKey
	flagHidden   = 0x01
	flagUnlisted = 0x02
	// MaxUserIDLength is the longest user ID the index keeps.
	MaxUserIDLength = 255
)

// entry is a credential as layout 2 stores it.
type entry struct {
	idHash   []byte // SHA-256 of the credential ID
	rpIDHash []byte
	created  int64
	hidden   bool
	unlisted bool
	userKey  []byte // under the index key of the file it is in
	record   []byte
}

// credKey is the creds key of a credential ID.
func credKey(id []byte) []byte {
	h := sha256.Sum256(id)
	return h[:shortKey]
}

func (e *entry) credKey() []byte { return e.idHash[:shortKey] }

// keyed is HMAC-SHA-256 under the index key (empty when unbound) of the
// parts, cut to 16 bytes. Called with d.mu held.
func (d *DB) keyed(parts ...[]byte) []byte {
	var key []byte
	if d.bind != nil {
		key = d.bind.indexKey
	}
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)[:shortKey]
}

func (d *DB) rpKey(rpIDHash []byte) []byte { return d.keyed([]byte{0x01}, rpIDHash) }

func (d *DB) userKey(rpIDHash, userID []byte) []byte {
	return d.keyed([]byte{0x02}, rpIDHash, userID)
}

// order maps a creation time to 8 bytes that sort newest first.
func order(created int64) []byte {
	return binary.BigEndian.AppendUint64(nil, ^(uint64(created) ^ (1 << 63)))
}

func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func rpInfoKey(rpKey []byte) []byte { return cat(rpKey, []byte{tagRP}) }

func (d *DB) listKey(e *entry) []byte {
	return cat(d.rpKey(e.rpIDHash), []byte{tagList}, order(e.created), e.credKey())
}

func (d *DB) userIndexKey(e *entry) []byte {
	return cat(d.rpKey(e.rpIDHash), []byte{tagUser}, e.userKey, e.credKey())
}

func (e *entry) flags() byte {
	var f byte
	if e.hidden {
		f |= flagHidden
	}
	if e.unlisted {
		f |= flagUnlisted
	}
	return f
}

// plaintextPrefix is the size of a plaintext before its record.
const plaintextPrefix = sha256.Size + RPIDHashSize + 8 + 1 + shortKey

func (e *entry) plaintext() []byte {
	b := make([]byte, 0, plaintextPrefix+len(e.record))
	b = append(append(b, e.idHash...), e.rpIDHash...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.created))
	b = append(append(b, e.flags()), e.userKey...)
	return append(b, e.record...)
}

func parsePlaintext(p []byte) (*entry, bool) {
	if len(p) < plaintextPrefix {
		return nil, false
	}
	e := &entry{idHash: p[:sha256.Size], rpIDHash: p[sha256.Size : sha256.Size+RPIDHashSize]}
	p = p[sha256.Size+RPIDHashSize:]
	e.created = int64(binary.BigEndian.Uint64(p))
	e.hidden, e.unlisted = p[8]&flagHidden != 0, p[8]&flagUnlisted != 0
	e.userKey, e.record = p[9:9+shortKey], p[9+shortKey:]
	return e, true
}

// newEntry indexes a record with the indexer (no indexer: an empty user
// ID, time 0, visible).
func (d *DB) newEntry(id, rpIDHash, record []byte) (*entry, error) {
	h := sha256.Sum256(id)
	e := &entry{idHash: h[:], rpIDHash: rpIDHash, record: record}
	var x Index
	if d.opts.indexer != nil {
		var err error
		if x, err = d.opts.indexer(record); err != nil {
			return nil, fmt.Errorf("store: indexing the credential record: %w", err)
		}
	}
	if len(x.UserID) > MaxUserIDLength {
		return nil, fmt.Errorf("store: user ID of %d bytes", len(x.UserID))
	}
	e.created, e.hidden, e.unlisted, e.userKey = x.Created, x.Hidden, x.Unlisted, d.userKey(rpIDHash, x.UserID)
	return e, nil
}

// rekey recomputes e's user key under the current index key (after a
// bind changed it), reading the user ID from the record.
func (d *DB) rekey(e *entry) {
	var x Index
	if d.opts.indexer != nil {
		x, _ = d.opts.indexer(e.record)
	}
	e.userKey = d.userKey(e.rpIDHash, x.UserID)
}

// sealEntry is the creds value of e. Called with d.mu held.
func (d *DB) sealEntry(e *entry) ([]byte, error) {
	p := e.plaintext()
	if d.schema != schemaSealed {
		return p, nil
	}
	s, err := d.bind.keys.Seal(context.Background(), p, cat(aadCredV2, e.credKey()))
	if err != nil {
		return nil, fmt.Errorf("store: sealing: %w", err)
	}
	return s, nil
}

// openEntry opens the creds value v stored under ck. Called with d.mu
// held, on a readable DB.
func (d *DB) openEntry(ck, v []byte) (*entry, error) {
	p := v
	if d.schema == schemaSealed {
		var err error
		if p, err = d.bind.keys.Open(context.Background(), v, cat(aadCredV2, ck)); err != nil {
			return nil, errDamage{fmt.Sprintf("credential %x does not open with the key store", ck)}
		}
	}
	e, ok := parsePlaintext(p)
	if !ok || !bytes.Equal(e.credKey(), ck) {
		return nil, errDamage{fmt.Sprintf("credential %x: malformed value", ck)}
	}
	return e, nil
}

// lookup reads credential id; nil if there is none.
func (d *DB) lookup(creds kv, id []byte) (*entry, error) {
	ck := credKey(id)
	v, err := creds.get(ck)
	if err != nil || v == nil {
		return nil, err
	}
	e, err := d.openEntry(ck, v)
	if err != nil {
		return nil, err
	}
	if h := sha256.Sum256(id); !bytes.Equal(e.idHash, h[:]) {
		return nil, nil // another credential with the same short key: not this one
	}
	return e, nil
}

// kv is a bucket's point operations: a checked vbucket, or a raw bbolt
// bucket of a file being written from scratch (a migration's).
type kv interface {
	get(k []byte) ([]byte, error)
	put(k, v []byte) error
	delete(k []byte) error
}

// rawBucket is a bbolt bucket of a new file: nothing on disk to check.
type rawBucket struct{ b *bolt.Bucket }

func (r rawBucket) get(k []byte) ([]byte, error) { return r.b.Get(k), nil }
func (r rawBucket) put(k, v []byte) error        { return r.b.Put(k, v) }
func (r rawBucket) delete(k []byte) error        { return r.b.Delete(k) }

// layout is the buckets a credential write touches.
type layout struct{ creds, index, meta, counters kv }

// buckets is tx's layout, checked.
func (d *DB) buckets(tx *bolt.Tx) (l layout, err error) {
	var bs [4]vbucket
	for i, name := range [][]byte{bucketCreds, bucketIndex, bucketMeta, bucketCounters} {
		if bs[i], err = d.top(tx, name); err != nil {
			return l, err
		}
	}
	return layout{bs[0], bs[1], bs[2], bs[3]}, nil
}

// rawBuckets is the layout of a new file's tx.
func rawBuckets(tx *bolt.Tx) layout {
	return layout{rawBucket{tx.Bucket(bucketCreds)}, rawBucket{tx.Bucket(bucketIndex)}, rawBucket{tx.Bucket(bucketMeta)}, rawBucket{tx.Bucket(bucketCounters)}}
}

// lookupKey reads the stored version of e (same credential ID); nil if
// there is none.
func (d *DB) lookupKey(creds kv, e *entry) (*entry, error) {
	v, err := creds.get(e.credKey())
	if err != nil || v == nil {
		return nil, err
	}
	o, err := d.openEntry(e.credKey(), v)
	if err != nil || !bytes.Equal(o.idHash, e.idHash) {
		return nil, err
	}
	return o, nil
}

// storeEntry adds e, first unlisting the credential it overwrites, if
// any: an overwrite keeps the counter; the index entries move. It reports
// whether there was one.
func (d *DB) storeEntry(l layout, e *entry) (overwrote bool, err error) {
	o, err := d.lookupKey(l.creds, e)
	if err != nil {
		return false, err
	}
	if o != nil {
		if err := d.unlistEntry(l, o); err != nil {
			return false, err
		}
	}
	return o != nil, d.addEntry(l, e)
}

// rpCounts reads the RP's counts (0, 0 when it has none).
func rpCounts(index kv, rpKey []byte) (all, visible uint32, err error) {
	v, err := index.get(rpInfoKey(rpKey))
	switch {
	case err != nil || v == nil:
		return 0, 0, err
	case len(v) != 8:
		return 0, 0, errDamage{fmt.Sprintf("RP record %x: %d bytes", rpKey, len(v))}
	}
	all, visible = binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:])
	if visible > all || all == 0 {
		return 0, 0, errDamage{fmt.Sprintf("RP record %x: counts %d, %d", rpKey, all, visible)}
	}
	return all, visible, nil
}

// addEntry stores e (which must not be stored) with its index entries and
// counts.
func (d *DB) addEntry(l layout, e *entry) error {
	v, err := d.sealEntry(e)
	if err != nil {
		return err
	}
	if err := l.creds.put(e.credKey(), v); err != nil {
		return err
	}
	if e.unlisted {
		return addMeta(l.meta, keyCount, 1)
	}
	if err := l.index.put(d.listKey(e), []byte{e.flags()}); err != nil {
		return err
	}
	if err := l.index.put(d.userIndexKey(e), []byte{}); err != nil {
		return err
	}
	rk := d.rpKey(e.rpIDHash)
	all, visible, err := rpCounts(l.index, rk)
	if err != nil {
		return err
	}
	if all == math.MaxUint32 {
		return fmt.Errorf("store: too many credentials for one RP")
	}
	if all == 0 {
		if err := addMeta(l.meta, keyRPCount, 1); err != nil {
			return err
		}
	}
	all++
	if !e.hidden {
		visible++
	}
	if err := l.index.put(rpInfoKey(rk), counts(all, visible)); err != nil {
		return err
	}
	return addMeta(l.meta, keyCount, 1)
}

func counts(all, visible uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, all), visible)
}

// removeEntry deletes stored credential e, its index entries, counts and
// counter.
func (d *DB) removeEntry(l layout, e *entry) error {
	if err := d.unlistEntry(l, e); err != nil {
		return err
	}
	return l.counters.delete(e.idHash)
}

// unlistEntry deletes stored credential e, its index entries and counts.
func (d *DB) unlistEntry(l layout, e *entry) error {
	if err := l.creds.delete(e.credKey()); err != nil {
		return err
	}
	if e.unlisted {
		return addMeta(l.meta, keyCount, -1)
	}
	for _, k := range [][]byte{d.listKey(e), d.userIndexKey(e)} {
		if v, err := l.index.get(k); err != nil {
			return err
		} else if v == nil {
			return d.inconsistent(fmt.Sprintf("credential %x is not indexed", e.credKey()))
		}
		if err := l.index.delete(k); err != nil {
			return err
		}
	}
	rk := d.rpKey(e.rpIDHash)
	all, visible, err := rpCounts(l.index, rk)
	if err != nil {
		return err
	}
	if all == 0 || (!e.hidden && visible == 0) {
		return d.inconsistent(fmt.Sprintf("RP record %x: counts %d, %d with a credential to remove", rk, all, visible))
	}
	all--
	if !e.hidden {
		visible--
	}
	if all == 0 {
		if err := l.index.delete(rpInfoKey(rk)); err != nil {
			return err
		}
		if err := addMeta(l.meta, keyRPCount, -1); err != nil {
			return err
		}
	} else if err := l.index.put(rpInfoKey(rk), counts(all, visible)); err != nil {
		return err
	}
	return addMeta(l.meta, keyCount, -1)
}

// addMeta adds delta to the u64 meta value name (credentials or RPs).
func addMeta(meta kv, name []byte, delta int) error {
	v, err := meta.get(name)
	if err != nil {
		return err
	}
	if len(v) != 8 {
		return errDamage{fmt.Sprintf("meta %s: %x", name, v)}
	}
	n := int64(binary.BigEndian.Uint64(v)) + int64(delta)
	if n < 0 {
		return errDamage{fmt.Sprintf("meta %s below zero", name)}
	}
	return meta.put(name, be64(uint64(n)))
}

// metaCount reads the u64 meta value name.
func (d *DB) metaCount(tx *bolt.Tx, name []byte) (int, error) {
	v, err := d.get(tx, bucketMeta, name)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 || binary.BigEndian.Uint64(v) > math.MaxInt32 {
		return 0, d.inconsistent(fmt.Sprintf("meta %s: %x", name, v))
	}
	return int(binary.BigEndian.Uint64(v)), nil
}

// next returns the first index entry at or after from whose key starts
// with prefix; nil when there is none. Every step is a checked seek.
func next(index vbucket, prefix, from []byte) (k, v []byte, err error) {
	c := index.b.Cursor()
	k, v, err = index.seek(c, from)
	if err != nil || k == nil || !bytes.HasPrefix(k, prefix) {
		return nil, nil, err
	}
	return k, v, nil
}

// after is the smallest key greater than k.
func after(k []byte) []byte { return append(bytes.Clone(k), 0) }

// CredentialsOfUser returns the records of rpIDHash's credentials made for
// userID (in a store with an indexer; see [Indexer]). It reads only those.
func (d *DB) CredentialsOfUser(rpIDHash, userID []byte) ([][]byte, error) {
	var recs [][]byte
	err := d.read("credentialsOfUser", func(tx *bolt.Tx) error {
		index, creds, err := d.indexAndCreds(tx)
		if err != nil {
			return err
		}
		prefix := cat(d.rpKey(rpIDHash), []byte{tagUser}, d.userKey(rpIDHash, userID))
		for from := prefix; ; {
			k, _, err := next(index, prefix, from)
			if err != nil || k == nil {
				return err
			}
			e, err := d.indexed(creds, k[len(prefix):])
			if err != nil {
				return err
			}
			if bytes.Equal(e.rpIDHash, rpIDHash) && bytes.Equal(e.userKey, prefix[len(prefix)-shortKey:]) {
				recs = append(recs, bytes.Clone(e.record))
			}
			from = after(k)
		}
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

func (d *DB) indexAndCreds(tx *bolt.Tx) (index, creds vbucket, err error) {
	if index, err = d.top(tx, bucketIndex); err == nil {
		creds, err = d.top(tx, bucketCreds)
	}
	return index, creds, err
}

// indexed reads the credential an index entry names by its credKey.
func (d *DB) indexed(creds vbucket, ck []byte) (*entry, error) {
	v, err := creds.get(ck)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, d.inconsistent(fmt.Sprintf("index entry %x has no credential", ck))
	}
	return d.openEntry(ck, v)
}

// NextCredentialOfRP returns the record of rpIDHash's next credential in
// list order — newest first — after the one cursor names (nil: the
// first), leaving out hidden ones (see [Indexer]) unless withHidden. record
// is nil when there is no more; pass nextCursor to the following call.
// Each call is one or two B+tree seeks and opens one record.
func (d *DB) NextCredentialOfRP(rpIDHash, cursor []byte, withHidden bool) (record, nextCursor []byte, err error) {
	if cursor != nil && len(cursor) != cursorSize {
		return nil, nil, fmt.Errorf("store: cursor of %d bytes", len(cursor))
	}
	err = d.read("nextCredentialOfRP", func(tx *bolt.Tx) error {
		index, creds, err := d.indexAndCreds(tx)
		if err != nil {
			return err
		}
		prefix := cat(d.rpKey(rpIDHash), []byte{tagList})
		from := prefix
		if cursor != nil {
			from = after(cat(prefix, cursor))
		}
		for {
			k, v, err := next(index, prefix, from)
			if err != nil || k == nil {
				return err
			}
			if len(k) != len(prefix)+cursorSize || len(v) != 1 {
				return d.inconsistent(fmt.Sprintf("index entry %x: malformed", k))
			}
			if withHidden || v[0]&flagHidden == 0 {
				e, err := d.indexed(creds, k[len(prefix)+8:])
				if err != nil {
					return err
				}
				if !bytes.Equal(e.rpIDHash, rpIDHash) {
					return d.inconsistent(fmt.Sprintf("index entry %x points to another RP's credential", k))
				}
				record, nextCursor = bytes.Clone(e.record), bytes.Clone(k[len(prefix):])
				return nil
			}
			from = after(k)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return record, nextCursor, nil
}

// CountOfRP returns the number of rpIDHash's credentials, and of those
// that discoverable lists show without being asked for hidden ones.
func (d *DB) CountOfRP(rpIDHash []byte) (all, visible int, err error) {
	err = d.read("countOfRP", func(tx *bolt.Tx) error {
		index, err := d.top(tx, bucketIndex)
		if err != nil {
			return err
		}
		a, v, err := rpCounts(index, d.rpKey(rpIDHash))
		all, visible = int(a), int(v)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return all, visible, nil
}

// NextRP returns the newest credential's record of the RP that follows
// the one cursor names (nil: the first RP), in the index's order (which a
// bound store keys by HMAC: no order a user would recognise). record is
// nil when there is no more; pass nextCursor to the following call. Each
// call is a few B+tree seeks.
func (d *DB) NextRP(cursor []byte) (record, nextCursor []byte, err error) {
	if cursor != nil && len(cursor) != shortKey {
		return nil, nil, fmt.Errorf("store: RP cursor of %d bytes", len(cursor))
	}
	err = d.read("nextRP", func(tx *bolt.Tx) error {
		index, creds, err := d.indexAndCreds(tx)
		if err != nil {
			return err
		}
		e, next, err := d.nextRP(index, creds, cursor)
		if err != nil || e == nil {
			return err
		}
		record, nextCursor = bytes.Clone(e.record), next
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return record, nextCursor, nil
}

// nextRP finds the newest credential of the RP after cursor (nil: the
// first RP); nil when there is none.
func (d *DB) nextRP(index, creds vbucket, cursor []byte) (e *entry, nextCursor []byte, err error) {
	var from []byte // First
	if cursor != nil {
		from = cat(cursor, []byte{0xFF})
	}
	k, _, err := next(index, nil, from)
	if err != nil || k == nil {
		return nil, nil, err
	}
	if len(k) != shortKey+1 || k[shortKey] != tagRP {
		return nil, nil, d.inconsistent(fmt.Sprintf("index entry %x: an RP without its record", k))
	}
	rk := k[:shortKey]
	prefix := cat(rk, []byte{tagList})
	if k, _, err = next(index, prefix, prefix); err != nil {
		return nil, nil, err
	}
	if k == nil || len(k) != len(prefix)+cursorSize {
		return nil, nil, d.inconsistent(fmt.Sprintf("RP %x has no credential", rk))
	}
	if e, err = d.indexed(creds, k[len(prefix)+8:]); err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(d.rpKey(e.rpIDHash), rk) {
		return nil, nil, d.inconsistent(fmt.Sprintf("index entry %x points to another RP's credential", k))
	}
	return e, bytes.Clone(rk), nil
}

// Credentials returns every stored record, listed or not, in no
// particular order. It reads the whole store.
func (d *DB) Credentials() ([][]byte, error) {
	var recs [][]byte
	err := d.read("credentials", func(tx *bolt.Tx) error {
		creds, err := d.top(tx, bucketCreds)
		if err != nil {
			return err
		}
		return creds.forEach(func(k, v []byte) error {
			e, err := d.openEntry(k, v)
			if err == nil {
				recs = append(recs, bytes.Clone(e.record))
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// CountRPs is the number of RPs with at least one listed credential.
func (d *DB) CountRPs() (int, error) { return d.countOf("countRPs", keyRPCount) }

// PutCredentials stores many new credentials in one transaction (a bulk
// load: the scale generator, an import): each as PutCredential would,
// without replacements; a credential already stored is overwritten.
func (d *DB) PutCredentials(ids, rpIDHashes, records [][]byte) error {
	if len(ids) != len(rpIDHashes) || len(ids) != len(records) {
		return fmt.Errorf("store: %d IDs, %d rpIDHashes, %d records", len(ids), len(rpIDHashes), len(records))
	}
	for i := range ids {
		if err := checkPut(ids[i], rpIDHashes[i]); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writable(); err != nil {
		return err
	}
	entries := make([]*entry, len(ids))
	for i := range ids {
		var err error
		if entries[i], err = d.newEntry(ids[i], rpIDHashes[i], records[i]); err != nil {
			return err
		}
	}
	err := d.updateAdvancing("putCredentials", func(tx *bolt.Tx) (removed bool, err error) {
		l, err := d.buckets(tx)
		if err != nil {
			return false, err
		}
		for _, e := range entries {
			overwrote, err := d.storeEntry(l, e)
			if err != nil {
				return false, err
			}
			removed = removed || overwrote
		}
		return removed, nil
	})
	return wrapNil("store: putting credentials", err)
}

func wrapNil(prefix string, err error) error {
	if err == nil {
		return nil
	}
	return wrap(prefix, err)
}
