package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
)

var _ ctap2.Store = (*DB)(nil)

func openTemp(t testing.TB, opts ...Option) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "state.db")
	d, err := Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func rp(name string) []byte {
	h := sha256.Sum256([]byte(name))
	return h[:]
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenModes(t *testing.T) {
	t.Parallel()
	_, path := openTemp(t)
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		must(t, err)
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
		}
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	t.Parallel()
	_, path := openTemp(t)
	start := time.Now()
	d2, err := Open(path)
	if !errors.Is(err, ErrLocked) || d2 != nil {
		t.Fatalf("second Open = %v, %v; want ErrLocked", d2, err)
	}
	if !strings.Contains(err.Error(), "in use by another virtkey") {
		t.Errorf("unclear error: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("second Open took %v", el)
	}
	if _, err := Open(path, WithLockTimeout(0)); err == nil {
		t.Error("zero lock timeout accepted")
	}
}

func TestCredentialsCRUD(t *testing.T) {
	t.Parallel()
	d, _ := openTemp(t)
	if rec, ok, err := d.Credential([]byte("none")); rec != nil || ok || err != nil {
		t.Fatalf("missing credential: %x %v %v", rec, ok, err)
	}
	must(t, d.PutCredential([]byte("id1"), rp("a.com"), []byte("rec1")))
	must(t, d.PutCredential([]byte("id2"), rp("a.com"), []byte("rec2")))
	must(t, d.PutCredential([]byte("id3"), rp("b.com"), []byte{}))
	rec, ok, err := d.Credential([]byte("id1"))
	if string(rec) != "rec1" || !ok || err != nil {
		t.Fatalf("Credential(id1) = %q %v %v", rec, ok, err)
	}
	if rec, ok, _ := d.Credential([]byte("id3")); !ok || rec == nil || len(rec) != 0 {
		t.Fatalf("empty record: %v %v", rec, ok)
	}
	checkState(t, d, map[string][]string{"a.com": {"rec1", "rec2"}, "b.com": {""}})

	// Replace in place, then move to another RP.
	must(t, d.PutCredential([]byte("id1"), rp("a.com"), []byte("rec1b")))
	checkState(t, d, map[string][]string{"a.com": {"rec1b", "rec2"}, "b.com": {""}})
	must(t, d.PutCredential([]byte("id2"), rp("c.com"), []byte("rec2c")))
	checkState(t, d, map[string][]string{"a.com": {"rec1b"}, "b.com": {""}, "c.com": {"rec2c"}})

	// Delete: the RP disappears with its last credential.
	must(t, d.DeleteCredential([]byte("id3")))
	must(t, d.DeleteCredential([]byte("id3")))
	must(t, d.DeleteCredential([]byte("never")))
	checkState(t, d, map[string][]string{"a.com": {"rec1b"}, "c.com": {"rec2c"}})

	// The caller's buffers are not retained, returned ones are copies.
	buf := []byte("mutable")
	must(t, d.PutCredential([]byte("id4"), rp("a.com"), buf))
	buf[0] = 'X'
	got, _, _ := d.Credential([]byte("id4"))
	got[1] = 'Y'
	if again, _, _ := d.Credential([]byte("id4")); string(again) != "mutable" {
		t.Fatalf("record aliasing: %q", again)
	}

	for _, bad := range []struct{ id, rp []byte }{{nil, rp("a")}, {make([]byte, 1024), rp("a")}, {[]byte("x"), []byte("short")}} {
		if err := d.PutCredential(bad.id, bad.rp, nil); err == nil {
			t.Errorf("PutCredential(%d-byte id, %d-byte rp) accepted", len(bad.id), len(bad.rp))
		}
	}
}

// checkState compares every view of the credentials with want (RP name →
// records).
func checkState(t *testing.T, d *DB, want map[string][]string) {
	t.Helper()
	n := 0
	var wantRPs [][]byte
	for name, recs := range want {
		n += len(recs)
		wantRPs = append(wantRPs, rp(name))
		got, err := d.CredentialsByRP(rp(name))
		must(t, err)
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if fmt.Sprint(slices.Sorted(slices.Values(gs))) != fmt.Sprint(slices.Sorted(slices.Values(recs))) {
			t.Errorf("CredentialsByRP(%s) = %q, want %q", name, gs, recs)
		}
	}
	if got, _ := d.CredentialsByRP(rp("nobody")); len(got) != 0 {
		t.Errorf("CredentialsByRP(nobody) = %q", got)
	}
	rps, err := d.RPs()
	must(t, err)
	slices.SortFunc(wantRPs, bytes.Compare)
	if fmt.Sprintf("%x", rps) != fmt.Sprintf("%x", wantRPs) {
		t.Errorf("RPs() = %x, want %x (sorted, distinct)", rps, wantRPs)
	}
	if c, err := d.CountCredentials(); c != n || err != nil {
		t.Errorf("CountCredentials() = %d, %v; want %d", c, err, n)
	}
	if c, err := d.CountRPs(); c != len(want) || err != nil {
		t.Errorf("CountRPs() = %d, %v; want %d", c, err, len(want))
	}
	must(t, d.Check()) // the index agrees with the credentials, no stray entries
}

func TestSettings(t *testing.T) {
	t.Parallel()
	d, path := openTemp(t)
	if v, err := d.Setting("pin"); v != nil || err != nil {
		t.Fatalf("unset: %x %v", v, err)
	}
	must(t, d.PutSetting("pin", []byte{1, 2}))
	must(t, d.PutSetting("empty", []byte{}))
	if v, _ := d.Setting("pin"); !bytes.Equal(v, []byte{1, 2}) {
		t.Fatalf("pin = %x", v)
	}
	if v, _ := d.Setting("empty"); v == nil || len(v) != 0 {
		t.Fatalf("empty = %#v", v)
	}
	must(t, d.PutSetting("pin", nil))
	if v, _ := d.Setting("pin"); v != nil {
		t.Fatalf("deleted pin = %x", v)
	}
	if err := d.PutSetting("", []byte{1}); err == nil {
		t.Error("empty name accepted")
	}
	must(t, d.PutSetting("retries", []byte{8}))
	must(t, d.Close())
	d2, err := Open(path)
	must(t, err)
	defer d2.Close()
	if v, _ := d2.Setting("retries"); !bytes.Equal(v, []byte{8}) {
		t.Fatalf("after reopen: %x", v)
	}
}

func TestWipe(t *testing.T) {
	t.Parallel()
	d, path := openTemp(t)
	must(t, d.PutCredential([]byte("id"), rp("a"), []byte("r")))
	must(t, d.PutSetting("pin", []byte("x")))
	c1, _ := d.NextCounter([]byte("id"))
	must(t, d.Wipe())
	checkState(t, d, map[string][]string{})
	if v, _ := d.Setting("pin"); v != nil {
		t.Fatal("setting survived Wipe")
	}
	if c, _ := d.NextCounter([]byte("id")); c != 1 || c1 != 1 {
		t.Fatalf("counter after Wipe = %d", c)
	}
	must(t, d.Close())
	d2, err := Open(path) // schema kept
	must(t, err)
	d2.Close()
}

func TestCountersAcrossReopen(t *testing.T) {
	t.Parallel()
	d, path := openTemp(t, WithCounterReserve(8))
	a, b := []byte("cred-a"), bytes.Repeat([]byte{7}, 200)
	last := map[string]uint32{}
	next := func(d *DB, id []byte) {
		t.Helper()
		v, err := d.NextCounter(id)
		must(t, err)
		if v <= last[string(id)] {
			t.Fatalf("counter went from %d to %d", last[string(id)], v)
		}
		last[string(id)] = v
	}
	for i := 0; i < 20; i++ {
		next(d, a)
	}
	next(d, b)
	if last["cred-a"] != 20 || last[string(b)] != 1 {
		t.Fatalf("counters %v", last)
	}
	for round := 0; round < 3; round++ {
		must(t, d.Close())
		if _, err := d.NextCounter(a); !errors.Is(err, ErrClosed) {
			t.Fatalf("NextCounter after Close: %v", err)
		}
		var err error
		d, err = Open(path, WithCounterReserve(8))
		must(t, err)
		// A clean Close persists exact values: nothing is skipped.
		v, err := d.NextCounter(a)
		must(t, err)
		if v != last["cred-a"]+1 {
			t.Fatalf("after clean reopen: %d, want %d", v, last["cred-a"]+1)
		}
		last["cred-a"] = v
		next(d, b)
	}
	// DeleteCredential drops the counter.
	must(t, d.DeleteCredential(a))
	if v, _ := d.NextCounter(a); v != 1 {
		t.Fatalf("counter after delete = %d", v)
	}
	d.Close()
}

// Without Close (a crash), the next process resumes above the reservation.
func TestCountersWithoutClose(t *testing.T) {
	t.Parallel()
	d, path := openTemp(t, WithCounterReserve(8))
	var last uint32
	for i := 0; i < 5; i++ {
		last, _ = d.NextCounter([]byte("x"))
	}
	// Simulate a crash: close only the file, skipping DB.Close's flush.
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	must(t, d.bolt.Close())
	d2, err := Open(path, WithCounterReserve(8))
	must(t, err)
	defer d2.Close()
	v, _ := d2.NextCounter([]byte("x"))
	if v <= last || v > last+8+1 {
		t.Fatalf("after crash: %d (last handed out %d, reserve 8)", v, last)
	}
}

func TestCounterAdaptiveStepAndCeiling(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	d, _ := openTemp(t, WithCounterReserve(4))
	d.opts.now = func() time.Time { return now }
	id := []byte("id")
	reservations := 0
	for i := 0; i < 100; i++ {
		before := d.counters[sha256.Sum256(id)]
		var r uint64
		if before != nil {
			r = before.reserved
		}
		_, err := d.NextCounter(id)
		must(t, err)
		if c := d.counters[sha256.Sum256(id)]; c.reserved != r {
			reservations++
		}
	}
	if reservations > 6 { // 4+8+16+32+64 covers 100
		t.Errorf("%d reservations for 100 fast calls", reservations)
	}
	// Slow use: the step falls back to the base.
	now = now.Add(time.Hour)
	c := d.counters[sha256.Sum256(id)]
	c.current = c.reserved
	_, _ = d.NextCounter(id)
	if c.step != 4 {
		t.Errorf("step after a pause = %d, want 4", c.step)
	}
	// The ceiling: 2³²−1 is the last value.
	c.current, c.reserved = 1<<32-2, 1<<32-2
	if v, err := d.NextCounter(id); v != 1<<32-1 || err != nil {
		t.Fatalf("last counter = %d, %v", v, err)
	}
	if _, err := d.NextCounter(id); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("past the ceiling: %v", err)
	}
}

func TestConcurrentCounters(t *testing.T) {
	t.Parallel()
	d, _ := openTemp(t, WithCounterReserve(16))
	const goroutines, calls = 4, 200
	seen := make(chan uint32, goroutines*calls)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				v, err := d.NextCounter([]byte("shared"))
				if err != nil {
					t.Error(err)
					return
				}
				seen <- v
			}
		})
	}
	wg.Wait()
	close(seen)
	got := map[uint32]bool{}
	for v := range seen {
		if got[v] {
			t.Fatalf("counter %d handed out twice", v)
		}
		got[v] = true
	}
	if len(got) != goroutines*calls {
		t.Fatalf("%d distinct values", len(got))
	}
}

func BenchmarkNextCounter(b *testing.B) {
	d, _ := openTemp(b)
	id := bytes.Repeat([]byte{1}, 92) // a Software ES256 credential ID
	for b.Loop() {
		if _, err := d.NextCounter(id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutCredential(b *testing.B) {
	d, _ := openTemp(b)
	rec := make([]byte, 300)
	i := 0
	for b.Loop() {
		i++
		if err := d.PutCredential(fmt.Appendf(nil, "id-%d", i), rp("a"), rec); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPutCredentialReplaces(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	rp := bytes.Repeat([]byte{1}, RPIDHashSize)
	if err := db.PutCredential([]byte("old"), rp, []byte("r-old")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.NextCounter([]byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := db.PutCredential([]byte("new"), rp, []byte("r-new"), []byte("old"), []byte("absent")); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.Credential([]byte("old")); ok {
		t.Fatal("replaced credential still present")
	}
	recs, err := db.CredentialsByRP(rp)
	if err != nil || len(recs) != 1 || string(recs[0]) != "r-new" {
		t.Fatalf("RP index after replace: %q %v", recs, err)
	}
	if n, _ := db.CountCredentials(); n != 1 {
		t.Fatalf("count %d", n)
	}
	// Replacing itself is a plain overwrite.
	if err := db.PutCredential([]byte("new"), rp, []byte("r-new2"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	if r, ok, _ := db.Credential([]byte("new")); !ok || string(r) != "r-new2" {
		t.Fatalf("self-replace: %q %v", r, ok)
	}
}
