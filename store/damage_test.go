package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// manyCreds makes a closed store whose creds bucket spans several pages:
// n credentials of RP "big" and one of RP "small", and a setting.
func manyCreds(t testing.TB, n int) string {
	t.Helper()
	d, path := openTemp(t)
	for i := range n {
		must(t, d.PutCredential(fmt.Appendf(nil, "big-%04d", i), rp("big"), bytes.Repeat([]byte{'r'}, 300)))
	}
	must(t, d.PutCredential([]byte("small-0"), rp("small"), []byte("the small record")))
	must(t, d.PutSetting("state", []byte("pin state")))
	must(t, d.Close())
	return path
}

// pageOf returns the page size and the id of a leaf page of the creds
// bucket that holds key but not avoid (nil: any leaf but the root).
func leafPage(t testing.TB, path string, holds, avoid []byte) (pageSize int, id uint64) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	defer bdb.Close()
	raw, err := os.ReadFile(path)
	must(t, err)
	pageSize = bdb.Info().PageSize
	must(t, bdb.View(func(tx *bolt.Tx) error {
		root := uint64(tx.Bucket(bucketCreds).Root())
		for i := 2; i < int(tx.Size())/pageSize; i++ {
			info, err := tx.Page(i)
			if err != nil || info == nil || info.Type != "leaf" || uint64(i) == root {
				continue
			}
			page := raw[i*pageSize : (i+1+info.OverflowCount)*pageSize]
			if bytes.Contains(page, holds) && (avoid == nil || !bytes.Contains(page, avoid)) {
				id = uint64(i)
				return nil
			}
		}
		return errors.New("no such leaf page")
	}))
	return pageSize, id
}

// credsRoot returns the creds bucket's root page, which must be a branch
// page, the page size and the number of children.
func credsRoot(t testing.TB, path string) (root uint64, pageSize, children int) {
	t.Helper()
	root, pageSize, raw := rootOf(t, path, bucketCreds)
	return root, pageSize, int(binary.NativeEndian.Uint16(raw[int(root)*pageSize+10:]))
}

func patch(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	_, err = f.WriteAt(b, off)
	must(t, err)
}

func wantDamaged(t testing.TB, err error, what string) {
	t.Helper()
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("%s: %v, want ErrDamaged", what, err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "state.db is damaged: ") || !strings.Contains(msg, "from a backup or move it away") {
		t.Errorf("%s: message %q", what, msg)
	}
}

// TestOpenRefusesDamage: the item 2: damage to the structures
// bbolt trusts at open — which panicked inside bbolt.Open or later — is
// refused at Open with "state.db is damaged: <what>; restore … or move it
// away".
func TestOpenRefusesDamage(t *testing.T) {
	t.Parallel()
	src := manyCreds(t, 40)
	good, err := os.ReadFile(src)
	must(t, err)
	ps := 4096
	m := parseMeta(good[:ps])
	if !m.valid {
		t.Fatal("fixture meta invalid")
	}
	ps = int(m.pageSize)
	hi := m
	if m1 := parseMeta(good[ps : 2*ps]); m1.txid > m.txid {
		hi = m1
	}
	for name, tc := range map[string]struct {
		mutate func(b []byte) []byte
		want   string
	}{
		"16 bytes of both meta pages": {func(b []byte) []byte {
			copy(b[20:36], bytes.Repeat([]byte{0xA5}, 16))
			copy(b[ps+20:ps+36], bytes.Repeat([]byte{0xA5}, 16))
			return b
		}, "meta pages are invalid"},
		"freelist page type": {func(b []byte) []byte {
			binary.NativeEndian.PutUint16(b[int(hi.freelist)*ps+8:], flagLeaf)
			return b
		}, "freelist page"},
		"freelist entry out of range": {func(b []byte) []byte {
			off := int(hi.freelist) * ps
			binary.NativeEndian.PutUint16(b[off+10:], 1)
			binary.NativeEndian.PutUint64(b[off+16:], 1<<40)
			return b
		}, "freelist: page"},
		"root page id": {func(b []byte) []byte {
			binary.NativeEndian.PutUint64(b[int(hi.root)*ps:], 0xDEAD)
			return b
		}, "root page"},
		"truncated": {func(b []byte) []byte { return b[:int(hi.pgid-1)*ps] }, "truncated"},
		"zeroed":    {func(b []byte) []byte { return make([]byte, len(b)) }, "meta pages are invalid"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "state.db")
			must(t, os.WriteFile(path, tc.mutate(bytes.Clone(good)), 0o600))
			d, err := Open(path)
			if err == nil {
				d.Close()
			}
			wantDamaged(t, err, name)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want it to say %q", name, err, tc.want)
			}
		})
	}
}

// logCounter counts log records at level Error.
type logCounter struct {
	mu     sync.Mutex
	errors []string
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.mu.Lock()
		h.errors = append(h.errors, r.Message)
		h.mu.Unlock()
	}
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }
func (h *logCounter) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.errors)
}

// TestDamagedPageLater: a damaged page that the open check does not read
// (a leaf of the creds bucket) fails the calls that reach it with
// ErrDamaged — not a panic —, is logged once, turns the store read-only,
// and what does not touch it keeps working.
func TestDamagedPageLater(t *testing.T) {
	t.Parallel()
	path := manyCreds(t, 60)
	ps, leaf := leafPage(t, path, credKey([]byte("big-0030")), credKey([]byte("small-0")))
	patch(t, path, int64(leaf)*int64(ps), binary.NativeEndian.AppendUint64(nil, 0xBAD))

	logs := &logCounter{}
	d, err := Open(path, WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatalf("Open: %v (the damage is below the open check)", err)
	}
	defer d.Close()
	_, err = d.CredentialsByRP(rp("big"))
	wantDamaged(t, err, "CredentialsByRP of the damaged RP")
	_, _, err = d.Credential([]byte("big-0030"))
	wantDamaged(t, err, "Credential on the damaged page")
	if logs.count() != 1 {
		t.Errorf("%d error logs, want 1: %q", logs.count(), logs.errors)
	}
	if err := d.PutSetting("x", []byte("y")); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("write after damage: %v, want read-only", err)
	}
	if recs, err := d.CredentialsByRP(rp("small")); err != nil || len(recs) != 1 {
		t.Errorf("an intact RP: %d records, %v", len(recs), err)
	}
	if v, err := d.Setting("state"); err != nil || string(v) != "pin state" {
		t.Errorf("an intact setting: %q, %v", v, err)
	}
	if n, err := d.CountCredentials(); err != nil || n != 61 {
		t.Errorf("CountCredentials = %d, %v", n, err)
	}
	if d.Damaged() == nil {
		t.Error("Damaged() = nil")
	}
	if err := Check(path); err == nil {
		t.Error("Check found nothing (the file is locked? it must fail either way)")
	}
}

// TestFaultBecomesError: a read of the memory-mapped file that faults —
// SIGBUS past the end of a file truncated under the mapping, SIGSEGV
// through a page pointer far outside it — fails the call instead of
// killing the process.
func TestFaultBecomesError(t *testing.T) {
	t.Parallel()
	t.Run("SIGBUS", func(t *testing.T) {
		t.Parallel()
		path := manyCreds(t, 60)
		d, err := Open(path)
		must(t, err)
		defer d.Close()
		must(t, os.Truncate(path, 2*int64(d.bolt.Info().PageSize)))
		_, err = d.CredentialsByRP(rp("big"))
		wantDamaged(t, err, "read past the truncated file")
	})
	t.Run("SIGSEGV", func(t *testing.T) {
		t.Parallel()
		path := manyCreds(t, 60)
		// The creds bucket's root is a branch page: point its first child
		// far outside the mapping.
		root, ps, _ := credsRoot(t, path)
		// branch element 0: pos u32, ksize u32, pgid u64
		patch(t, path, int64(root)*int64(ps)+pageHeaderSize+8, binary.NativeEndian.AppendUint64(nil, 1<<34))
		d, err := Open(path)
		must(t, err)
		defer d.Close()
		// The credential with the smallest key lives below that child.
		first := []byte("small-0")
		for i := range 60 {
			if id := fmt.Appendf(nil, "big-%04d", i); bytes.Compare(credKey(id), credKey(first)) < 0 {
				first = id
			}
		}
		_, _, err = d.Credential(first)
		wantDamaged(t, err, "a page pointer outside the mapping")
	})
}

// TestCheckFindsDamage: the full check reads what Open does not.
func TestCheckFindsDamage(t *testing.T) {
	t.Parallel()
	path := manyCreds(t, 60)
	if err := Check(path); err != nil {
		t.Fatalf("Check of a sound file: %v", err)
	}
	ps, leaf := leafPage(t, path, credKey([]byte("big-0030")), nil)
	patch(t, path, int64(leaf)*int64(ps)+8, []byte{0xFF, 0xFF})
	err := Check(path)
	wantDamaged(t, err, "Check")

	d, err := Open(path)
	must(t, err)
	defer d.Close()
	wantDamaged(t, d.Check(), "DB.Check")
	if err := d.PutSetting("x", nil); err == nil {
		t.Error("writable after Check found damage")
	}
}

// TestCycleRefused: a branch page that points back to itself (a damaged
// child pointer) sent bbolt's lookups into endless recursion — a fatal
// stack overflow — and its iterations and its own Check into endless
// loops (FuzzOpen found one). Every call now refuses the loop.
func TestCycleRefused(t *testing.T) {
	t.Parallel()
	path := manyCreds(t, 60)
	// Every child of the creds root branch page: the page itself.
	root, ps, n := credsRoot(t, path)
	pointChildren(t, path, root, ps, n)
	d, err := Open(path)
	must(t, err)
	defer d.Close()
	noEndlessLoop(t, func() {
		_, _, err := d.Credential([]byte("big-0001"))
		wantDamaged(t, err, "Credential through the loop")
		_, err = d.CredentialsByRP(rp("big"))
		wantDamaged(t, err, "CredentialsByRP through the loop")
		wantDamaged(t, d.Check(), "Check")
	})
	if err := Check(path); err == nil {
		t.Error("Check(path) found nothing")
	}
	d2, err := Open(filepath.Join(t.TempDir(), "state.db"))
	must(t, err)
	defer d2.Close()
	if err := d2.Wipe(); err != nil {
		t.Errorf("Wipe of a sound store: %v", err)
	}
}

// noEndlessLoop runs calls, which go through a damaged page loop, and
// fails the test if they have not returned within 20 s.
func noEndlessLoop(t testing.TB, calls func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		calls()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a call went round the loop")
	}
}

// pointChildren points the n children of branch page root back to root.
func pointChildren(t testing.TB, path string, root uint64, ps, n int) {
	t.Helper()
	for i := range n {
		patch(t, path, int64(root)*int64(ps)+pageHeaderSize+int64(i)*16+8, binary.NativeEndian.AppendUint64(nil, root))
	}
}

// rootOf returns bucket name's root page (a branch page) and the page size.
func rootOf(t testing.TB, path string, name []byte) (root uint64, pageSize int, raw []byte) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	must(t, bdb.View(func(tx *bolt.Tx) error { root = uint64(tx.Bucket(name).Root()); return nil }))
	pageSize = bdb.Info().PageSize
	must(t, bdb.Close())
	raw, err = os.ReadFile(path)
	must(t, err)
	if binary.NativeEndian.Uint16(raw[int(root)*pageSize+8:]) != flagBranch {
		t.Fatalf("the %s root is not a branch page; add credentials", name)
	}
	return root, pageSize, raw
}

// TestIndexSeekDamageRefused: the index is read with cursor seeks, which
// bbolt may carry past a leaf's last key into the next leaf; the page
// checks follow the same way. A loop in the index tree, and a child
// pointer out of range met only on the way to the next leaf, fail the
// calls with ErrDamaged instead of sending bbolt round the loop or off
// the map.
func TestIndexSeekDamageRefused(t *testing.T) {
	t.Parallel()
	calls := func(d *DB) map[string]error {
		_, _, e1 := d.NextRP(nil)
		_, _, e2 := d.NextCredentialOfRP(rp("big"), nil, true)
		_, e3 := d.CredentialsOfUser(rp("small"), nil)
		_, e4 := d.RPs()
		return map[string]error{"NextRP": e1, "NextCredentialOfRP": e2, "CredentialsOfUser": e3, "RPs": e4}
	}
	t.Run("loop", func(t *testing.T) {
		t.Parallel()
		path := manyCreds(t, 200)
		root, ps, raw := rootOf(t, path, bucketIndex)
		pointChildren(t, path, root, ps, int(binary.NativeEndian.Uint16(raw[int(root)*ps+10:])))
		d, err := Open(path)
		must(t, err)
		defer d.Close()
		noEndlessLoop(t, func() {
			for name, err := range calls(d) {
				wantDamaged(t, err, name+" through the loop")
			}
		})
	})
	t.Run("next leaf", func(t *testing.T) {
		t.Parallel()
		path := manyCreds(t, 200)
		root, ps, raw := rootOf(t, path, bucketIndex)
		// The first leaf's last key is one of big's list entries; a seek
		// for the entry after it passes the leaf's end and goes on through
		// the root's second child, which now points back to the root: bbolt
		// would come back to the first leaf and answer with a key before
		// the one sought.
		first := binary.NativeEndian.Uint64(raw[int(root)*ps+pageHeaderSize+8:])
		es, err := leafElems("leaf", raw[int(first)*ps:(int(first)+1)*ps])
		must(t, err)
		last := es[len(es)-1].key
		patch(t, path, int64(root)*int64(ps)+pageHeaderSize+16+8, binary.NativeEndian.AppendUint64(nil, root))
		d, err := Open(path)
		must(t, err)
		defer d.Close()
		if !bytes.HasPrefix(last, cat(d.rpKey(rp("big")), []byte{tagList})) || len(last) != shortKey+1+cursorSize {
			t.Fatalf("the first leaf ends with %x, not one of big's list entries", last)
		}
		_, _, err = d.NextCredentialOfRP(rp("big"), last[shortKey+1:], true)
		wantDamaged(t, err, "NextCredentialOfRP past the first leaf")
	})
}
