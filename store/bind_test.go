package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/virtkey/virtkey/tpmkeys"
)

// memGuard is a rollback reference in memory.
type memGuard struct {
	mu       sync.Mutex
	v        uint64
	fail     bool
	advances int
}

func (g *memGuard) Epoch(context.Context) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.v, nil
}

func (g *memGuard) AdvanceEpoch(context.Context) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail {
		return 0, errors.New("reference unavailable")
	}
	g.v++
	g.advances++
	return g.v, nil
}

func (g *memGuard) String() string { return "test reference" }

func (g *memGuard) get() (v uint64, advances int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.v, g.advances
}

func softKeys(t testing.TB, seed byte) *tpmkeys.Software {
	t.Helper()
	k, err := tpmkeys.NewSoftware(bytes.Repeat([]byte{seed}, tpmkeys.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// openBound opens path and binds it.
func openBound(t testing.TB, path string, keys Keys, g Guard, o BindOptions, opts ...Option) (*DB, error) {
	t.Helper()
	d, err := Open(path, opts...)
	if err != nil {
		return nil, err
	}
	if err := d.Bind(context.Background(), keys, g, o); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func mustBound(t testing.TB, path string, keys Keys, g Guard) *DB {
	t.Helper()
	d, err := openBound(t, path, keys, g, BindOptions{})
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// boundStore is a new store at path, bound to the software keys of seed
// and an in-memory reference.
func boundStore(t testing.TB, seed byte) (path string, keys *tpmkeys.Software, g *memGuard, d *DB) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "state.db")
	keys, g = softKeys(t, seed), &memGuard{}
	return path, keys, g, mustBound(t, path, keys, g)
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, b, 0o600))
}

// TestBoundFileHoldsNoPlaintext: with a binding, state.db names no RP and
// no user, and holds no setting in the clear (the item 4: RP ids,
// user names and user ids were plaintext). The same data reads back.
func TestBoundFileHoldsNoPlaintext(t *testing.T) {
	t.Parallel()
	path, keys, g, d := boundStore(t, 1)
	rpHash := rp("example.com")
	record := []byte("record: rp example.com, user alice-user-handle, name alice")
	must(t, d.PutCredential([]byte("cred-1"), rpHash, record))
	must(t, d.PutCredential([]byte("cred-2"), rp("other.example"), []byte("record two")))
	must(t, d.PutSetting("state", []byte("pin state: retries 8")))
	must(t, d.PutSetting("empty", []byte{}))
	must(t, d.Close())

	raw, err := os.ReadFile(path)
	must(t, err)
	for _, secret := range [][]byte{[]byte("example.com"), []byte("alice"), []byte("record two"), []byte("retries 8"), rpHash} {
		if bytes.Contains(raw, secret) {
			t.Errorf("state.db contains %q in the clear", secret)
		}
	}

	d = mustBound(t, path, keys, g)
	got, ok, err := d.Credential([]byte("cred-1"))
	if err != nil || !ok || !bytes.Equal(got, record) {
		t.Errorf("Credential = %q, %v, %v", got, ok, err)
	}
	recs, err := d.CredentialsByRP(rpHash)
	if err != nil || len(recs) != 1 || !bytes.Equal(recs[0], record) {
		t.Errorf("CredentialsByRP = %q, %v", recs, err)
	}
	rps, err := d.RPs()
	want := [][]byte{rp("example.com"), rp("other.example")}
	if bytes.Compare(want[0], want[1]) > 0 {
		want[0], want[1] = want[1], want[0]
	}
	if err != nil || len(rps) != 2 || !bytes.Equal(rps[0], want[0]) || !bytes.Equal(rps[1], want[1]) {
		t.Errorf("RPs = %x, %v; want %x", rps, err, want)
	}
	if v, err := d.Setting("state"); err != nil || string(v) != "pin state: retries 8" {
		t.Errorf("Setting = %q, %v", v, err)
	}
	if v, err := d.Setting("empty"); err != nil || v == nil || len(v) != 0 {
		t.Errorf("empty Setting = %#v, %v; want a non-nil empty slice", v, err)
	}
	if n, err := d.CountCredentials(); n != 2 || err != nil {
		t.Errorf("CountCredentials = %d, %v", n, err)
	}
	if err := d.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// TestBoundCRUD repeats the credential life of TestCredentialsCRUD on a
// bound store: moving between RPs, replacing, deleting.
func TestBoundCRUD(t *testing.T) {
	t.Parallel()
	d := mustBound(t, filepath.Join(t.TempDir(), "state.db"), softKeys(t, 2), &memGuard{})
	must(t, d.PutCredential([]byte("a"), rp("one"), []byte("A1")))
	must(t, d.PutCredential([]byte("b"), rp("one"), []byte("B1")))
	must(t, d.PutCredential([]byte("a"), rp("two"), []byte("A2"))) // moves RP
	checkState(t, d, map[string][]string{"one": {"B1"}, "two": {"A2"}})
	must(t, d.PutCredential([]byte("c"), rp("one"), []byte("C1"), []byte("b"), []byte("missing")))
	checkState(t, d, map[string][]string{"one": {"C1"}, "two": {"A2"}})
	must(t, d.DeleteCredential([]byte("a")))
	checkState(t, d, map[string][]string{"one": {"C1"}})
	must(t, d.Wipe())
	checkState(t, d, map[string][]string{})
	if err := d.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// TestSealedFileNeedsBind: a bound file cannot be read or written without
// its key store, nor with another one.
func TestSealedFileNeedsBind(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	d := mustBound(t, path, softKeys(t, 3), &memGuard{})
	must(t, d.PutCredential([]byte("a"), rp("one"), []byte("A")))
	must(t, d.Close())

	d, err := Open(path)
	must(t, err)
	defer d.Close()
	if _, _, err := d.Credential([]byte("a")); !errors.Is(err, ErrNeedsBind) {
		t.Errorf("unbound Credential: %v, want ErrNeedsBind", err)
	}
	if err := d.PutSetting("x", []byte("y")); !errors.Is(err, ErrNeedsBind) {
		t.Errorf("unbound PutSetting: %v, want ErrNeedsBind", err)
	}
	if !d.Bound() {
		t.Error("Bound() = false for a sealed file")
	}
	if err := d.Bind(context.Background(), softKeys(t, 4), &memGuard{v: 2}, BindOptions{}); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("Bind with another key: %v, want ErrKeyMismatch", err)
	}
}

// TestRollbackDetected: the item 1: an older copy of state.db
// (more PIN retries) is refused; so is a rolled-back reference; both can be
// accepted deliberately.
func TestRollbackDetected(t *testing.T) {
	t.Parallel()
	path, keys, g, d := boundStore(t, 5)
	dir := filepath.Dir(path)
	must(t, d.PutSetting("state", []byte("retries 8")))
	must(t, d.Close())
	copyFile(t, path, filepath.Join(dir, "old.db"))

	d = mustBound(t, path, keys, g)
	must(t, d.PutSetting("state", []byte("retries 7")))
	must(t, d.Close())

	copyFile(t, filepath.Join(dir, "old.db"), path)
	_, err := openBound(t, path, keys, g, BindOptions{})
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "test reference") {
		t.Fatalf("rolled-back state.db: %v, want ErrRolledBack naming the reference", err)
	}
	d, err = openBound(t, path, keys, g, BindOptions{AcceptRollback: true})
	if err != nil {
		t.Fatalf("AcceptRollback: %v", err)
	}
	if v, _ := d.Setting("state"); string(v) != "retries 8" {
		t.Errorf("accepted state %q", v)
	}
	must(t, d.Close())
	// Accepted: it opens without the option from now on.
	d = mustBound(t, path, keys, g)
	must(t, d.Close())

	g.mu.Lock()
	g.v -= 2
	g.mu.Unlock()
	if _, err := openBound(t, path, keys, g, BindOptions{}); !errors.Is(err, ErrReferenceBehind) {
		t.Fatalf("rolled-back reference: %v, want ErrReferenceBehind", err)
	}
}

// TestEpochAdvances: which writes advance the epoch.
func TestEpochAdvances(t *testing.T) {
	t.Parallel()
	g := &memGuard{}
	d := mustBound(t, filepath.Join(t.TempDir(), "state.db"), softKeys(t, 6), g)
	_, base := g.get()
	step := func(name string, want int, fn func() error) {
		t.Helper()
		_, before := g.get()
		must(t, fn())
		if _, after := g.get(); after-before != want {
			t.Errorf("%s advanced the reference %d times, want %d", name, after-before, want)
		}
	}
	step("a new credential", 0, func() error { return d.PutCredential([]byte("a"), rp("one"), []byte("A")) })
	step("a replaced record", 1, func() error { return d.PutCredential([]byte("a"), rp("one"), []byte("A'")) })
	step("a superseding credential", 1, func() error { return d.PutCredential([]byte("b"), rp("one"), []byte("B"), []byte("a")) })
	step("a setting", 1, func() error { return d.PutSetting("state", []byte("s")) })
	step("a deletion", 1, func() error { return d.DeleteCredential([]byte("b")) })
	step("a counter reservation", 1, func() error { _, err := d.NextCounter([]byte("b")); return err })
	step("a counter from the reservation", 0, func() error { _, err := d.NextCounter([]byte("b")); return err })
	step("a wipe", 1, d.Wipe)
	if _, n := g.get(); n <= base {
		t.Error("nothing advanced")
	}
}

// TestReferenceLagsOne: a write whose reference update fails is kept (it
// committed); the next write that needs the reference waits for it; Bind
// finishes the advance after a crash.
func TestReferenceLagsOne(t *testing.T) {
	t.Parallel()
	path, keys, g, d := boundStore(t, 7)
	g.fail = true
	must(t, d.PutSetting("state", []byte("one")))
	if err := d.PutSetting("state", []byte("two")); err == nil {
		t.Fatal("a second write went ahead of the reference")
	}
	if v, _ := d.Setting("state"); string(v) != "one" {
		t.Fatalf("state %q after the refused write", v)
	}
	// A crash now: the file is one ahead of the reference.
	d.bolt.Close()
	g.fail = false
	before, _ := g.get()
	d2 := mustBound(t, path, keys, g)
	if after, _ := g.get(); after != before+1 {
		t.Errorf("Bind left the reference at %d, want %d", after, before+1)
	}
	must(t, d2.PutSetting("state", []byte("two")))
}

// TestBindingLost: a missing, empty or pre-binding state.db is refused
// once the reference has moved; a new state directory is not.
func TestBindingLost(t *testing.T) {
	t.Parallel()
	path, keys, g, d := boundStore(t, 8)
	must(t, d.PutSetting("state", []byte("pin")))
	must(t, d.Close())

	for name, prepare := range map[string]func(){
		"missing": func() { os.Remove(path) },
		"empty":   func() { os.WriteFile(path, nil, 0o600) },
	} {
		prepare()
		if _, err := openBound(t, path, keys, g, BindOptions{}); !errors.Is(err, ErrBindingLost) {
			t.Errorf("%s state.db: %v, want ErrBindingLost", name, err)
		}
	}
	// A first start (reference at 0) binds a new file.
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	d = mustBound(t, fresh, softKeys(t, 9), &memGuard{})
	must(t, d.Close())
}

// TestResetRebinds: Wipe, a new master key, Rebind; and the same reset
// interrupted before Rebind, which Bind finishes for an empty store only.
func TestResetRebinds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, interrupted := range []bool{false, true} {
		path, keys, g, d := boundStore(t, 10)
		must(t, d.PutCredential([]byte("a"), rp("one"), []byte("A")))
		must(t, d.Wipe())
		must(t, keys.ResetKeys(ctx))
		if !interrupted {
			must(t, d.Rebind(ctx))
		}
		must(t, d.Close())
		d = mustBound(t, path, keys, g)
		must(t, d.PutCredential([]byte("b"), rp("one"), []byte("B")))
		must(t, d.Close())
	}

	// An interrupted reset whose store is no longer empty is another key.
	path, keys, g, d := boundStore(t, 11)
	must(t, d.Wipe())
	must(t, keys.ResetKeys(ctx))
	must(t, d.Close())
	boltUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketSettings).Put([]byte("planted"), []byte("x")) })
	if _, err := openBound(t, path, keys, g, BindOptions{}); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("non-empty store after an interrupted reset: %v, want ErrKeyMismatch", err)
	}
}

// TestEditedSettingRefused: a setting swapped for another validly sealed
// value (from an older copy) no longer matches the binding record.
func TestEditedSettingRefused(t *testing.T) {
	t.Parallel()
	path, keys, g, d := boundStore(t, 12)
	must(t, d.PutSetting("state", []byte("retries 8")))
	var old []byte
	must(t, d.bolt.View(func(tx *bolt.Tx) error { old = bytes.Clone(tx.Bucket(bucketSettings).Get([]byte("state"))); return nil }))
	must(t, d.PutSetting("state", []byte("retries 1")))
	must(t, d.Close())
	boltUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketSettings).Put([]byte("state"), old) })
	if _, err := openBound(t, path, keys, g, BindOptions{}); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "binding record") {
		t.Errorf("swapped setting: %v, want ErrDamaged about the binding record", err)
	}
}

// boltUpdate edits a closed state.db behind the store's back.
func boltUpdate(t testing.TB, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	must(t, bdb.Update(fn))
	must(t, bdb.Close())
}

// fixture copies testdata/state-v1 (written by the a42143a binary) and
// returns the state.db path and the master key.
func fixture(t testing.TB) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	copyFile(t, filepath.Join("..", "testdata", "state-v1", "state.db"), path)
	key, err := os.ReadFile(filepath.Join("..", "testdata", "state-v1", "master.key"))
	must(t, err)
	return path, key
}

const fixtureCredID = "013345773e330b598fa1f5943556742e7f820589512ea26f4ce7945766adbcd251109e028d3cc1b81ec6d64a5a34871d9e825eb46900a885bed98681f7949ae101ad64f449d00de4f8d05b022dca44a585531d3091e39fb911ada3d2"

// TestMigrateFixture: a state.db written by the a42143a binary (schema 1)
// migrates to schema 3 when opened with an indexer (it was plain already)
// and is sealed into schema 4 when bound: every record and setting reads
// back the same, nothing is left in the clear, and another master key is
// refused before anything changes. Without an indexer it is not migrated
// (its index could not be built) and cannot be used.
func TestMigrateFixture(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, master := fixture(t)
	plain, err := Open(path)
	must(t, err)
	if _, err := plain.CountCredentials(); !errors.Is(err, errNeedsIndexer) {
		t.Errorf("schema 1 opened without an indexer: %v, want errNeedsIndexer", err)
	}
	must(t, plain.Close())
	plain, err = Open(path, WithIndexer(ctapIndexer))
	must(t, err)
	if plain.Bound() {
		t.Fatal("the fixture is already bound")
	}
	rps, err := plain.RPs()
	must(t, err)
	if len(rps) != 1 || !bytes.Equal(rps[0], rp("example.com")) {
		t.Fatalf("fixture RPs %x", rps)
	}
	recs, err := plain.CredentialsByRP(rps[0])
	must(t, err)
	state, err := plain.Setting("state")
	must(t, err)
	if len(recs) != 1 || state == nil {
		t.Fatalf("fixture holds %d records, state %x", len(recs), state)
	}
	must(t, plain.Close())

	keys, err := tpmkeys.NewSoftware(master)
	must(t, err)
	verify := func(id, rpIDHash []byte) bool { _, _, err := keys.Signer(ctx, id, rpIDHash); return err == nil }

	// Another master key: refused, and the file stays schema 1.
	if _, err := openBound(t, path, softKeys(t, 13), &memGuard{}, BindOptions{Verify: func(id, rpIDHash []byte) bool {
		_, _, err := softKeys(t, 13).Signer(ctx, id, rpIDHash)
		return err == nil
	}}, WithIndexer(ctapIndexer)); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("fixture with another key: %v, want ErrKeyMismatch", err)
	}

	g := &memGuard{}
	d, err := openBound(t, path, keys, g, BindOptions{Verify: verify}, WithIndexer(ctapIndexer))
	if err != nil {
		t.Fatalf("migrating the fixture: %v", err)
	}
	if !d.Bound() {
		t.Error("not bound after Bind")
	}
	if v, _ := g.get(); v != 1 {
		t.Errorf("reference at %d after the first binding, want 1", v)
	}
	got, err := d.CredentialsByRP(rp("example.com"))
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], recs[0]) {
		t.Errorf("migrated records differ: %v", err)
	}
	if s, err := d.Setting("state"); err != nil || !bytes.Equal(s, state) {
		t.Errorf("migrated state differs: %v", err)
	}
	if n, err := d.CountCredentials(); n != 1 || err != nil {
		t.Errorf("CountCredentials = %d, %v", n, err)
	}
	if err := d.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	must(t, d.Close())
	raw, err := os.ReadFile(path)
	must(t, err)
	for _, s := range []string{"example.com", "alice"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("migrated state.db still holds %q", s)
		}
	}
	if _, err := os.Stat(path + migrateSuffix); err == nil {
		t.Error("the migration's temporary file is left")
	}
	d = mustBound(t, path, keys, g)
	must(t, d.Close())
}

// TestNewerSchemaRefused: a file from a newer virtkey is refused with a
// message, not misread.
func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	d, path := openTemp(t)
	must(t, d.Close())
	boltUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{SchemaVersion + 1}) })
	_, err := Open(path)
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "newer virtkey") {
		t.Errorf("Open of schema %d: %v", SchemaVersion+1, err)
	}
}

// TestHoldsState is what statedir asks before the key store exists.
func TestHoldsState(t *testing.T) {
	t.Parallel()
	d, _ := openTemp(t)
	if h, err := d.HoldsState(); h || err != nil {
		t.Errorf("new store HoldsState = %v, %v", h, err)
	}
	must(t, d.PutSetting("state", []byte("x")))
	if h, err := d.HoldsState(); !h || err != nil {
		t.Errorf("HoldsState with a setting = %v, %v", h, err)
	}
	path := filepath.Join(t.TempDir(), "state.db")
	b := mustBound(t, path, softKeys(t, 14), &memGuard{})
	must(t, b.Close())
	b, err := Open(path)
	must(t, err)
	defer b.Close()
	if h, err := b.HoldsState(); !h || err != nil {
		t.Errorf("an empty bound store: HoldsState = %v, %v; a binding counts", h, err)
	}
}
