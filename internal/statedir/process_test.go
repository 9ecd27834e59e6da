package statedir_test

// These tests run the virtkey binary (internal/vktest) on state
// directories in the situations of issue 10 and check what the process
// does: refuse to start with a message that says what is wrong and how to
// recover, or keep serving.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/statedir"
	"github.com/virtkey/virtkey/internal/vktest"
	"github.com/virtkey/virtkey/tpmkeys"
)

// TestRunRefusesLostMasterKey: item 1. Without master.key, or with
// another one, every passkey in state.db is dead: virtkey refuses to start
// (it used to create a new key silently) and creates nothing.
func TestRunRefusesLostMasterKey(t *testing.T) {
	t.Parallel()
	dir, _ := setUp(t)
	keyPath := filepath.Join(dir, tpmkeys.KeyFileName)
	orig := readFile(t, keyPath)

	must(t, os.Remove(keyPath))
	out := runFails(t, dir)
	wantOutput(t, out, "master.key", "is missing", "Restore the file from a backup", "move the state directory away")
	if _, err := os.Stat(keyPath); err == nil {
		t.Error("a new master.key was created")
	}

	other := make([]byte, 32)
	rand.Read(other)
	must(t, os.WriteFile(keyPath, other, 0o600))
	out = runFails(t, dir)
	wantOutput(t, out, "bound to another key", "Restore the key store file", "move the state directory away")

	must(t, os.WriteFile(keyPath, orig, 0o600))
	vktest.Start(t, dir)
}

// TestRunRefusesLostStateDB: item 1. With master.key in place, a deleted
// or zero-byte state.db used to give a fresh PIN-less key (whose new PIN
// then unlocked the old non-resident credentials).
func TestRunRefusesLostStateDB(t *testing.T) {
	t.Parallel()
	dir, _ := setUp(t)
	db := filepath.Join(dir, statedir.StateFileName)
	for name, prepare := range map[string]func(){
		"deleted":    func() { os.Remove(db) },
		"zero bytes": func() { os.WriteFile(db, nil, 0o600) },
	} {
		prepare()
		out := runFails(t, dir)
		if !strings.Contains(out, "missing, empty or older") || !strings.Contains(out, "epoch file") {
			t.Errorf("%s state.db: output:\n%s", name, out)
		}
	}
}

// TestRunRefusesRollback: item 1. Copying an older state.db back used to
// restore PIN retries (unlimited guessing); it is refused, and accepted
// only with --accept-rollback.
func TestRunRefusesRollback(t *testing.T) {
	t.Parallel()
	dir, _ := setUp(t)
	db := filepath.Join(dir, statedir.StateFileName)
	old := readFile(t, db)

	k := vktest.Start(t, dir)
	d := k.Client(t)
	if _, err := d.GetPINToken(context.Background(), "9999", client.PermGetAssertion, "example.com"); err == nil {
		t.Fatal("a wrong PIN was accepted")
	}
	if n, _, err := d.GetPINRetries(context.Background()); err != nil || n != 7 {
		t.Fatalf("retries %d, %v after one wrong PIN", n, err)
	}
	k.Stop(t)

	must(t, os.WriteFile(db, old, 0o600))
	out := runFails(t, dir)
	wantOutput(t, out, "older than its rollback reference", "epoch file", "--accept-rollback", "Restore the newest state.db")

	k = vktest.Start(t, dir, "--accept-rollback")
	d = k.Client(t)
	if n, _, err := d.GetPINRetries(context.Background()); err != nil || n != 8 {
		t.Errorf("accepted copy: retries %d, %v; want the copy's 8", n, err)
	}
	k.Stop(t)
	vktest.Start(t, dir) // accepted for good
}

// TestRunStartsFresh: a new directory, and one where a first start died
// after creating master.key, start without help.
func TestRunStartsFresh(t *testing.T) {
	t.Parallel()
	vktest.Start(t, filepath.Join(t.TempDir(), "new"))

	half := filepath.Join(t.TempDir(), "half")
	must(t, os.MkdirAll(half, 0o700))
	key := make([]byte, 32)
	rand.Read(key)
	must(t, os.WriteFile(filepath.Join(half, tpmkeys.KeyFileName), key, 0o600))
	k := vktest.Start(t, half)
	d := k.Client(t)
	must(t, d.SetPIN(context.Background(), testPIN))
}

// TestRunMigratesTodaysState: a state directory written by the binary of
// commit a42143a (testdata/state-v1: PIN 1234 with 7 retries left, one
// passkey for example.com) keeps its PIN, retries and passkey.
func TestRunMigratesTodaysState(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "state-v1", "state.db", "master.key")
	want, _ := hex.DecodeString("013345773e330b598fa1f5943556742e7f820589512ea26f4ce7945766adbcd251109e028d3cc1b81ec6d64a5a34871d9e825eb46900a885bed98681f7949ae101ad64f449d00de4f8d05b022dca44a585531d3091e39fb911ada3d2")
	for round := range 2 { // the migration, then the migrated file
		k := vktest.Start(t, dir)
		d := k.Client(t)
		ctx := context.Background()
		// 7 as the fixture left them; 8 once the right PIN was given.
		if n, _, err := d.GetPINRetries(ctx); err != nil || n != 7+round {
			t.Fatalf("round %d: retries %d, %v; want %d", round, n, err, 7+round)
		}
		cm := vktest.CredMgmt(t, ctx, d, testPIN)
		creds, err := cm.EnumerateCredentials(ctx, client.RPIDHash("example.com"))
		if err != nil || len(creds) != 1 || !bytes.Equal(creds[0].ID, want) || creds[0].User.Name != "alice" {
			t.Fatalf("round %d: credentials %+v, %v", round, creds, err)
		}
		if st := assertRK(t, d, "example.com"); st != ctap2.StatusOK {
			t.Errorf("round %d: getAssertion: %v", round, st)
		}
		k.Stop(t)
		if !strings.Contains(k.Output(), "sealed (schema 4) and bound to the key store") != (round == 1) {
			t.Errorf("round %d: migration logged %v:\n%s", round, round == 0, k.Output())
		}
	}
	raw := readFile(t, filepath.Join(dir, statedir.StateFileName))
	if bytes.Contains(raw, []byte("example.com")) || bytes.Contains(raw, []byte("alice")) {
		t.Error("the migrated state.db names the RP or the user in the clear")
	}
}

// TestRunMigratesSchema2: a state directory written at commit 0b16522
// (testdata/state-v2: schema 2, PIN 1234, four passkeys — example.com:
// alice, bob, carol with credProtect 3, 10 ms apart; other.example: dave —
// and its epoch file at 10) is migrated to schema 4 at the first start and
// then served from the index: credentials listed newest first, carol
// hidden without UV, a registration for bob replacing his passkey.
func TestRunMigratesSchema2(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "state-v2", "state.db", "master.key", "epoch")
	ctx := context.Background()
	for round := range 2 { // the migration, then the migrated file
		k := vktest.Start(t, dir)
		d := k.Client(t)
		tok, err := d.GetPINToken(ctx, testPIN, client.PermCredentialMgmt, "")
		if err != nil {
			t.Fatalf("round %d: the fixture's PIN: %v\n%s", round, err, k.Output())
		}
		cm, err := d.CredentialManagement(ctx, tok)
		must(t, err)
		rps, err := cm.EnumerateRPs(ctx)
		if err != nil || len(rps) != 2 {
			t.Fatalf("round %d: RPs %+v, %v", round, rps, err)
		}
		creds, err := cm.EnumerateCredentials(ctx, client.RPIDHash("example.com"))
		must(t, err)
		var users []string
		for _, c := range creds {
			users = append(users, c.User.Name)
		}
		want := "[carol bob alice]"
		if round == 1 {
			want = "[bob carol alice]" // bob registered again in round 0
		}
		if fmt.Sprint(users) != want {
			t.Errorf("round %d: example.com's credentials %v, want %s (newest first)", round, users, want)
		}
		a, err := d.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh()}, nil)
		if err != nil || a.NumberOfCredentials != 2 || string(a.User.ID) != "bob-handle" {
			t.Errorf("round %d: discoverable getAssertion without UV: %+v, %v; want bob's of 2", round, a, err)
		}
		if round == 0 {
			tok, err := d.GetPINToken(ctx, testPIN, client.PermMakeCredential, "example.com")
			must(t, err)
			rk, alg := true, int64(-7)
			_, err = d.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
				ClientDataHash: cdh(), RP: &ctap2.RPEntity{ID: "example.com"},
				User:             &ctap2.UserEntity{ID: []byte("bob-handle"), Name: "bob"},
				PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
				Options:          &ctap2.RequestOptions{RK: &rk},
			}, tok)
			must(t, err)
		}
		k.Stop(t)
		if strings.Contains(k.Output(), "migrated to schema 4") != (round == 0) {
			t.Errorf("round %d: migration logged %v:\n%s", round, round == 1, k.Output())
		}
	}
	epoch := readFile(t, filepath.Join(dir, "epoch"))
	if n, _ := strconv.Atoi(strings.TrimSpace(string(epoch))); n <= 10 {
		t.Errorf("epoch %q: the migration did not advance it (a copy of the schema 2 file would not count as rolled back)", epoch)
	}
}

// TestRunRefusesDamagedStateDB: item 2. 16 flipped bytes used to make
// virtkey panic; it refuses to start with what is damaged and the fix.
func TestRunRefusesDamagedStateDB(t *testing.T) {
	t.Parallel()
	dir, _ := setUp(t)
	db := filepath.Join(dir, statedir.StateFileName)
	good := readFile(t, db)
	ps := int(binary.NativeEndian.Uint32(good[16+8:]))
	for name, off := range map[string]int{
		"meta pages": -1,
		"freelist":   int(freelistPage(t, good, ps)) * ps,
	} {
		b := bytes.Clone(good)
		if off < 0 {
			for _, o := range []int{16, ps + 16} {
				for i := range 16 {
					b[o+i] ^= 0xFF
				}
			}
		} else {
			for i := range 16 {
				b[off+i] ^= 0xFF
			}
		}
		must(t, os.WriteFile(db, b, 0o600))
		out := runFails(t, dir)
		if !strings.Contains(out, "state.db is damaged: ") || !strings.Contains(out, "from a backup or move it away") {
			t.Errorf("%s: output:\n%s", name, out)
		}
	}
}

// freelistPage is the freelist page of the newest valid meta page.
func freelistPage(t testing.TB, file []byte, ps int) uint64 {
	t.Helper()
	txid := func(p int) uint64 { return binary.NativeEndian.Uint64(file[p*ps+16+48:]) }
	p := 0
	if txid(1) > txid(0) {
		p = 1
	}
	return binary.NativeEndian.Uint64(file[p*ps+16+32:])
}

// TestRunServesAroundDamage: item 2. A page damaged while the key runs
// fails the commands that reach it with CTAP2_ERR_OTHER (it used to crash
// the process), is logged once, turns the store read-only, and the rest
// keeps working; the process still stops cleanly.
func TestRunServesAroundDamage(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	k := vktest.Start(t, dir)
	d := k.Client(t)
	must(t, d.SetPIN(context.Background(), testPIN))
	small := makeRK(t, d, "small.example", "carol")
	var big [][]byte
	for i := range 40 {
		big = append(big, makeRK(t, d, "big.example", "user"+string(rune('a'+i%26))+string(rune('a'+i/26))))
	}
	k.Stop(t)
	page, ps, hit := liveLeaf(t, filepath.Join(dir, statedir.StateFileName), big, small)

	k = vktest.Start(t, dir)
	d = k.Client(t)
	if st := assertRK(t, d, "small.example"); st != ctap2.StatusOK { // reserves counter values
		t.Fatalf("before the damage: %v", st)
	}
	f, err := os.OpenFile(filepath.Join(dir, statedir.StateFileName), os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt(binary.NativeEndian.AppendUint64(nil, 0xBAD0BAD), int64(page)*int64(ps))
	must(t, err)
	must(t, f.Close())

	for range 2 {
		_, err := d.GetAssertion(context.Background(), &ctap2.GetAssertionRequest{
			RPID: "big.example", ClientDataHash: cdh(), AllowList: []ctap2.CredDescriptor{{Type: "public-key", ID: big[hit]}},
		}, nil)
		if !errors.Is(err, ctap2.ErrOther) {
			t.Errorf("getAssertion through the damaged page: %v, want CTAP2_ERR_OTHER", err)
		}
	}
	if st := assertRK(t, d, "small.example"); st != ctap2.StatusOK {
		t.Errorf("getAssertion of an intact credential: %v", st)
	}
	if _, err := d.GetInfo(context.Background()); err != nil {
		t.Errorf("getInfo: %v", err)
	}
	if _, err := d.GetPINToken(context.Background(), testPIN, client.PermMakeCredential, "x.example"); err == nil {
		t.Error("a PIN check (it writes the retry counter) went through on a read-only store")
	}
	k.Stop(t)
	if n := strings.Count(k.Output(), "the store is read-only until virtkey restarts"); n != 1 {
		t.Errorf("the damage was logged %d times, want once:\n%s", n, k.Output())
	}
}

// liveLeaf finds a leaf page of the credentials (16-byte keys, sealed
// values) that holds the record of one of the IDs in some — some[hit] — and
// not avoid's.
func liveLeaf(t testing.TB, path string, some [][]byte, avoid []byte) (page uint64, ps, hit int) {
	t.Helper()
	raw := readFile(t, path)
	bdb, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	defer bdb.Close()
	ps = bdb.Info().PageSize
	key := func(id []byte) []byte { h := sha256.Sum256(id); return h[:16] }
	must(t, bdb.View(func(tx *bolt.Tx) error {
		for i := 2; i < int(tx.Size())/ps && page == 0; i++ {
			info, err := tx.Page(i)
			if err != nil || info == nil || info.Type != "leaf" {
				continue
			}
			p := raw[i*ps : (i+1+info.OverflowCount)*ps]
			// leaf element 0: flags, pos, ksize, vsize (u32 each)
			if binary.NativeEndian.Uint32(p[16+8:]) != 16 || binary.NativeEndian.Uint32(p[16+12:]) < 100 || bytes.Contains(p, key(avoid)) {
				continue
			}
			for j, id := range some {
				if bytes.Contains(p, key(id)) {
					page, hit = uint64(i), j
					break
				}
			}
		}
		return nil
	}))
	if page == 0 {
		t.Fatal("no leaf page with the credentials")
	}
	return page, ps, hit
}

// TestRunAfterReset: authenticatorReset wipes the store and changes the
// master key; the store is bound to the new key, so the key starts again
// (and keeps refusing the old master key).
func TestRunAfterReset(t *testing.T) {
	t.Parallel()
	dir, _ := setUp(t)
	oldKey := readFile(t, filepath.Join(dir, tpmkeys.KeyFileName))
	k := vktest.Start(t, dir)
	d := k.Client(t)
	must(t, d.Reset(context.Background()))
	must(t, d.SetPIN(context.Background(), testPIN))
	makeRK(t, d, "after.example", "bob")
	k.Stop(t)

	k = vktest.Start(t, dir)
	d = k.Client(t)
	if st := assertRK(t, d, "after.example"); st != ctap2.StatusOK {
		t.Errorf("passkey made after the reset: %v", st)
	}
	if st := assertRK(t, d, "example.com"); st != ctap2.ErrNoCredentials {
		t.Errorf("passkey from before the reset: %v, want NO_CREDENTIALS", st)
	}
	k.Stop(t)
	must(t, os.WriteFile(filepath.Join(dir, tpmkeys.KeyFileName), oldKey, 0o600))
	wantOutput(t, runFails(t, dir), "bound to another key")
}

// TestRunRefusesUntrustedStateDir: item 4, end to end. `virtkey run`
// accepted a 0777 state directory, a planted 0666 state.db and a state
// directory owned by another user (doctor flagged them; run did not).
func TestRunRefusesUntrustedStateDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	must(t, os.MkdirAll(dir, 0o700))
	must(t, os.Chmod(dir, 0o777))
	wantOutput(t, runFails(t, dir), "writable by group or others", "chmod 700 "+dir)

	must(t, os.Chmod(dir, 0o700))
	must(t, os.WriteFile(filepath.Join(dir, statedir.StateFileName), nil, 0o600))
	must(t, os.Chmod(filepath.Join(dir, statedir.StateFileName), 0o666))
	wantOutput(t, runFails(t, dir), "state.db is writable by group or others", "chmod 600")

	if os.Getuid() != 0 {
		// TestCheckOwner covers another owner without root.
		return
	}
	must(t, os.Chmod(filepath.Join(dir, statedir.StateFileName), 0o600))
	must(t, os.Chown(filepath.Join(dir, statedir.StateFileName), 65534, 65534))
	wantOutput(t, runFails(t, dir), "owned by uid 65534, not by you", "chown")
	must(t, os.Chown(dir, 65534, 65534))
	wantOutput(t, runFails(t, dir), "state directory "+dir+" is owned by uid 65534")
}
