package store

import (
	"crypto/sha256"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// counterKey is the counters bucket's key of credential id.
func counterKey(id []byte) ([32]byte, error) {
	if len(id) == 0 {
		return [32]byte{}, errors.New("store: empty credential ID")
	}
	return sha256.Sum256(id), nil
}

// Counter returns credential id's current signature counter: the last
// value [DB.NextCounter] handed out, or 0 if none. After a crash it is the
// persisted high-water mark, which the next NextCounter passes.
func (d *DB) Counter(id []byte) (uint32, error) {
	key, err := counterKey(id)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	if c := d.counters[key]; c != nil {
		return uint32(c.current), nil
	}
	c, err := d.loadCounter(key)
	if err != nil {
		return 0, err
	}
	return uint32(c.current), nil
}

// SetCounter re-bases credential id's counter to v, lower values included
// (the control plane's tests of clone detection need them): the next
// NextCounter returns v+1. v is durable when SetCounter returns, so the
// crash guarantee of NextCounter holds from v on.
func (d *DB) SetCounter(id []byte, v uint32) error {
	key, err := counterKey(id)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	err = d.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCounters).Put(key[:], be64(uint64(v)))
	})
	if err != nil {
		return fmt.Errorf("store: setting a counter: %w", err)
	}
	d.counters[key] = &counter{current: uint64(v), reserved: uint64(v), step: d.opts.reserve}
	return nil
}
