package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// The benchmarks in this file split a durable resident registration
// (PutCredential on a bound DB) into its parts, for the store-engine
// decision in docs/architecture.md. They run in $TMPDIR: point it at the
// state directory's file system (TMPDIR=/work/... for a disk,
// TMPDIR=/dev/shm for tmpfs).
//
//	go test -run '^$' -bench 'Engine' -benchtime 200x ./store
//
// The sizes are those of a Software ES256 resident credential: a 92-byte
// ID and a ~350-byte record (sealed: +41 bytes).

const (
	engineIDSize     = 92
	engineRecordSize = 350
	enginePrefill    = 10000 // credentials already stored
)

func engineID(i int) []byte {
	id := make([]byte, engineIDSize)
	rand.Read(id)
	copy(id, fmt.Appendf(nil, "%08d", i))
	return id
}

// BenchmarkEngineAppendSync is the yardstick: append 512 bytes to a file
// and fdatasync it — the least any durable registration costs.
func BenchmarkEngineAppendSync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 512)
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
	}
}

// boltPrefilled opens a raw bbolt file holding enginePrefill values.
func boltPrefilled(b *testing.B, o *bolt.Options) *bolt.DB {
	b.Helper()
	db, err := bolt.Open(filepath.Join(b.TempDir(), "state.db"), 0o600, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	rec := make([]byte, engineRecordSize+41)
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucket(bucketCreds)
		if err != nil {
			return err
		}
		for i := range enginePrefill {
			if err := bk.Put(engineID(i), rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return db
}

func boltPuts(b *testing.B, db *bolt.DB) {
	rec := make([]byte, engineRecordSize+41)
	i := enginePrefill
	for b.Loop() {
		i++
		err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCreds).Put(engineID(i), rec) })
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineBoltCommit is one bbolt transaction putting one value:
// bbolt's cost alone (two fdatasyncs: the data pages, then the meta page).
func BenchmarkEngineBoltCommit(b *testing.B) {
	boltPuts(b, boltPrefilled(b, &bolt.Options{}))
}

// BenchmarkEngineBoltCommitNoFreelistSync is the same with the freelist
// left out of the file (rebuilt by scanning at open).
func BenchmarkEngineBoltCommitNoFreelistSync(b *testing.B) {
	boltPuts(b, boltPrefilled(b, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType}))
}

// BenchmarkEngineBoltCommitNoSync is bbolt without fsync: its CPU cost.
func BenchmarkEngineBoltCommitNoSync(b *testing.B) {
	boltPuts(b, boltPrefilled(b, &bolt.Options{NoSync: true}))
}

// boundPrefilled is a bound DB holding enginePrefill credentials over
// enginePrefill/10 RPs.
func boundPrefilled(b *testing.B, opts ...Option) *DB {
	b.Helper()
	path := filepath.Join(b.TempDir(), "state.db")
	d, err := Open(path, append([]Option{withNoSync()}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Bind(context.Background(), softKeys(b, 1), &memGuard{}, BindOptions{}); err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, engineRecordSize)
	for i := range enginePrefill {
		if err := d.PutCredential(engineID(i), rp(fmt.Sprint(i%(enginePrefill/10))), rec); err != nil {
			b.Fatal(err)
		}
	}
	d.opts.noSync = false
	d.bolt.NoSync = false
	for _, o := range opts {
		o(&d.opts)
	}
	d.bolt.NoSync = d.opts.noSync
	b.Cleanup(func() { d.Close() })
	return d
}

func storePuts(b *testing.B, d *DB) {
	rec := make([]byte, engineRecordSize)
	i := enginePrefill
	for b.Loop() {
		i++
		if err := d.PutCredential(engineID(i), rp(fmt.Sprint(i)), rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnginePutCredential is a durable resident registration's store
// write as virtkey makes it: sealed, page checks, one bbolt transaction.
func BenchmarkEnginePutCredential(b *testing.B) { storePuts(b, boundPrefilled(b)) }

// BenchmarkEnginePutCredentialNoSync is the same without fsync: the CPU
// cost of sealing, the page checks and bbolt.
func BenchmarkEnginePutCredentialNoSync(b *testing.B) { storePuts(b, boundPrefilled(b, withNoSync())) }

// BenchmarkEngineSeal is the sealing of one credential value.
func BenchmarkEngineSeal(b *testing.B) {
	d := boundPrefilled(b)
	rec := make([]byte, engineRecordSize)
	for b.Loop() {
		d.mu.Lock()
		if _, err := d.sealEntry(&entry{idHash: make([]byte, 32), rpIDHash: rp("x"), userKey: make([]byte, 16), record: rec}); err != nil {
			b.Fatal(err)
		}
		d.mu.Unlock()
	}
}

// BenchmarkEngineVerifyPath is the page check of one lookup path in the
// creds bucket, cache dropped as after a commit.
func BenchmarkEngineVerifyPath(b *testing.B) {
	d := boundPrefilled(b)
	id := engineID(7)
	for b.Loop() {
		d.mu.Lock()
		err := d.bolt.View(func(tx *bolt.Tx) error {
			d.verify.forget()
			_, err := d.get(tx, bucketCreds, id)
			return err
		})
		d.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}

func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// BenchmarkEngineOverwriteSync writes one 4 KiB page inside a file that
// does not grow, then fdatasyncs: what each of bbolt's two syncs costs.
func BenchmarkEngineOverwriteSync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "file"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	if _, err := f.WriteAt(make([]byte, 1<<20), 0); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		if _, err := f.WriteAt(page, int64(i%256)*4096); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
	}
}
