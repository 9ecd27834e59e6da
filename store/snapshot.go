package store

import (
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Snapshot writes a consistent copy of the database file, as of one read
// transaction, to the writer that open returns for the copy's size in
// bytes (bbolt's Tx.WriteTo). It works before Bind (the copy is the file
// as it is: sealed records stay sealed) and while other goroutines use
// the DB, and refuses a DB that met damage. It returns the bytes written.
// virtkey backup (internal/backup) uses it.
func (d *DB) Snapshot(open func(size int64) (io.Writer, error)) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	if d.damage != nil {
		return 0, d.damage
	}
	var n int64
	err := d.protected("snapshot", func() error {
		return d.bolt.View(func(tx *bolt.Tx) error {
			w, err := open(tx.Size())
			if err != nil {
				return err
			}
			n, err = tx.WriteTo(w)
			if err == nil && n != tx.Size() {
				err = fmt.Errorf("store: snapshot of %d bytes, want %d", n, tx.Size())
			}
			return err
		})
	})
	if err != nil {
		return n, wrap("store: snapshot", err)
	}
	return n, nil
}
