package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Layout 1 (schemas 1 and 2) kept a credential under its full ID, its
// value rpIdHash ‖ record (sealed in schema 2 with aad = aadCred ‖ ID),
// and a nested bucket per RP in byRP, keyed by the rpIdHash (schema 2: an
// HMAC of it) and holding { credential ID → "" }. It had no creation
// order, no user index and no per-RP counts: listing an RP read and
// decoded all its credentials. migrateV1 rewrites such a file in layout 2
// in one transaction: a schema 1 file when it is opened (plain already), a
// schema 2 file when it is bound (its head then advances the epoch, so the
// older file is a rolled-back copy).

// migrateV1 rewrites the layout 1 credentials of tx in layout 2 and sets
// the schema: 1 → 3, 2 → 4 (d must be bound). Records the indexer cannot
// read are kept, indexed with an empty user ID and time 0. Called with d.mu
// held.
func (d *DB) migrateV1(tx *bolt.Tx) error {
	from := d.schema
	sealed := from == schemaSealedV1
	if sealed && d.bind == nil {
		return fmt.Errorf("store: migrating a sealed file before Bind")
	}
	root, err := d.rootBucket(tx)
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketCreds, bucketSettings, bucketCounters} {
		if _, err := root.createBucketIfNotExists(name); err != nil {
			return err
		}
	}
	creds, err := d.top(tx, bucketCreds)
	if err != nil {
		return err
	}
	var entries []*entry
	err = creds.forEach(func(id, v []byte) error {
		rp, rec, err := d.openCredIn(sealed, id, v)
		if err != nil {
			return err
		}
		e, err := d.newEntry(bytes.Clone(id), bytes.Clone(rp), bytes.Clone(rec))
		if err != nil {
			d.log.Warn("store: migrating a credential record the indexer cannot read; it is listed last", "err", err)
			h := sha256.Sum256(id)
			e = &entry{idHash: h[:], rpIDHash: bytes.Clone(rp), record: bytes.Clone(rec), userKey: d.userKey(rp, nil)}
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketCreds, bucketByRP, bucketIndex} {
		if b, err := root.bucket(name); err != nil {
			return err
		} else if b.b != nil {
			if err := root.deleteBucket(name); err != nil {
				return err
			}
		}
	}
	for _, name := range [][]byte{bucketCreds, bucketIndex} {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	to := byte(schemaPlain)
	if sealed {
		to = schemaSealed
	}
	d.schema = to // sealEntry and the keys follow the new schema
	ok := false
	defer func() {
		if !ok {
			d.schema = from
		}
	}()
	meta, err := d.top(tx, bucketMeta)
	if err != nil {
		return err
	}
	counters, err := d.top(tx, bucketCounters)
	if err != nil {
		return err
	}
	// creds and index were made in this transaction: nothing on disk to
	// check.
	l := layout{rawBucket{tx.Bucket(bucketCreds)}, rawBucket{tx.Bucket(bucketIndex)}, meta, counters}
	if err := errors.Join(meta.put(keyCount, be64(0)), meta.put(keyRPCount, be64(0))); err != nil {
		return err
	}
	for _, e := range entries {
		if err := d.addEntry(l, e); err != nil {
			return err
		}
	}
	if err := l.meta.put(keySchema, []byte{to}); err != nil {
		return err
	}
	ok = true
	if len(entries) > 0 {
		d.log.Info("state.db: migrated to schema "+fmt.Sprint(to), "credentials", len(entries))
	}
	return nil
}
