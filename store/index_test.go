package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/tpmkeys"
)

// testIndexer reads records of the form "user|created|flag|payload": flag
// 1 is hidden, 2 unlisted; the payload is the credential ID.
func testIndexer(record []byte) (Index, error) {
	f := strings.SplitN(string(record), "|", 4)
	if len(f) != 4 {
		return Index{}, errors.New("not a test record")
	}
	created, err := strconv.ParseInt(f[1], 10, 64)
	return Index{ID: []byte(f[3]), UserID: []byte(f[0]), Created: created, Hidden: f[2] == "1", Unlisted: f[2] == "2"}, err
}

func ctapIndexer(record []byte) (Index, error) {
	x, err := ctap2.IndexRecord(record)
	return Index{ID: x.ID, UserID: x.UserID, Created: x.Created, Hidden: x.Hidden, Unlisted: x.Unlisted}, err
}

func testRecord(c *modelCred, payload string) []byte {
	f := "0"
	switch {
	case c.unlisted:
		f = "2"
	case c.hidden:
		f = "1"
	}
	return fmt.Appendf(nil, "%s|%d|%s|%s", c.user, c.created, f, payload)
}

// modelCred is a credential as the model of TestIndexModel keeps it.
type modelCred struct {
	id, rp, user string
	created      int64
	hidden       bool
	unlisted     bool
	record       []byte
}

// TestIndexModel runs random puts (new, overwrites, moves to another RP,
// replacements of a user's credentials; hidden, listed and unlisted
// credentials), deletes and wipes against a plain
// and a bound store, and compares every view the index gives — counts,
// each RP's list newest first with and without hidden credentials, paged
// with cursors, the RPs paged with cursors, each user's credentials — with
// a model after every step; Check agrees at the end of each round.
func TestIndexModel(t *testing.T) {
	t.Parallel()
	for _, bound := range []bool{false, true} {
		t.Run(fmt.Sprintf("bound=%v", bound), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "state.db")
			d, err := Open(path, WithIndexer(testIndexer), withNoSync())
			must(t, err)
			defer d.Close()
			if bound {
				must(t, d.Bind(context.Background(), softKeys(t, 3), &memGuard{}, BindOptions{}))
			}
			rng := rand.New(rand.NewPCG(1, uint64(len(t.Name()))))
			model := map[string]*modelCred{}
			rps := []string{"a.example", "b.example", "c.example", "d.example"}
			users := []string{"u1", "u2", "u3", "u4", "u5"}
			for step := range 200 {
				switch op := rng.IntN(20); {
				case op < 12: // a new credential, maybe replacing the user's
					c := &modelCred{id: fmt.Sprintf("id-%d", step), rp: rps[rng.IntN(len(rps))], user: users[rng.IntN(len(users))],
						created: int64(rng.IntN(50)), hidden: rng.IntN(3) == 0, unlisted: rng.IntN(8) == 0}
					c.record = testRecord(c, c.id)
					var replaces [][]byte
					if rng.IntN(2) == 0 {
						for _, o := range model {
							if o.rp == c.rp && o.user == c.user && !o.unlisted {
								replaces = append(replaces, []byte(o.id))
							}
						}
					}
					must(t, d.PutCredential([]byte(c.id), rp(c.rp), c.record, replaces...))
					for _, r := range replaces {
						delete(model, string(r))
					}
					model[c.id] = c
				case op < 15 && len(model) > 0: // overwrite, maybe moving RP or user
					c := pick(rng, model)
					n := *c
					if rng.IntN(2) == 0 {
						n.rp = rps[rng.IntN(len(rps))]
					}
					n.user, n.hidden, n.created, n.unlisted = users[rng.IntN(len(users))], !c.hidden, c.created+1, rng.IntN(8) == 0
					n.record = testRecord(&n, "again")
					must(t, d.PutCredential([]byte(n.id), rp(n.rp), n.record))
					model[n.id] = &n
				case op < 19 && len(model) > 0:
					c := pick(rng, model)
					must(t, d.DeleteCredential([]byte(c.id)))
					delete(model, c.id)
				case op == 19 && rng.IntN(10) == 0:
					must(t, d.Wipe())
					clear(model)
				}
				compareModel(t, d, model, rps, users)
				if t.Failed() {
					t.Fatalf("after step %d", step)
				}
			}
			must(t, d.Check())
		})
	}
}

func pick(rng *rand.Rand, m map[string]*modelCred) *modelCred {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	return m[keys[rng.IntN(len(keys))]]
}

func compareModel(t *testing.T, d *DB, model map[string]*modelCred, rps, users []string) {
	t.Helper()
	if n, err := d.CountCredentials(); err != nil || n != len(model) {
		t.Errorf("CountCredentials = %d, %v; want %d", n, err, len(model))
	}
	wantRPs := map[string]bool{}
	var all [][]byte
	for _, c := range model {
		if !c.unlisted {
			wantRPs[string(rp(c.rp))] = true
		}
		all = append(all, c.record)
	}
	got, err := d.Credentials()
	must(t, err)
	slices.SortFunc(got, bytes.Compare)
	slices.SortFunc(all, bytes.Compare)
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", all) {
		t.Errorf("Credentials() = %q, want %q", got, all)
	}
	if n, err := d.CountRPs(); err != nil || n != len(wantRPs) {
		t.Errorf("CountRPs = %d, %v; want %d", n, err, len(wantRPs))
	}
	// NextRP visits every RP once, each with its newest credential.
	var cursor []byte
	seen := map[string]bool{}
	for range len(wantRPs) + 1 {
		rec, next, err := d.NextRP(cursor)
		must(t, err)
		if rec == nil {
			break
		}
		_, err = testIndexer(rec)
		must(t, err)
		var owner *modelCred
		for _, c := range model {
			if bytes.Equal(c.record, rec) {
				owner = c
			}
		}
		if owner == nil || seen[owner.rp] {
			t.Fatalf("NextRP gave %q (seen %v)", rec, seen)
		}
		seen[owner.rp] = true
		if want := modelList(model, owner.rp, true); !bytes.Equal(want[0].record, rec) {
			t.Errorf("NextRP: %q is not %s's newest (%q)", rec, owner.rp, want[0].record)
		}
		cursor = next
	}
	if len(seen) != len(wantRPs) {
		t.Errorf("NextRP visited %d RPs, want %d", len(seen), len(wantRPs))
	}
	for _, name := range rps {
		for _, withHidden := range []bool{false, true} {
			want := modelList(model, name, withHidden)
			var got [][]byte
			var cursor []byte
			for range len(want) + 1 {
				rec, next, err := d.NextCredentialOfRP(rp(name), cursor, withHidden)
				must(t, err)
				if rec == nil {
					break
				}
				got, cursor = append(got, rec), next
			}
			if len(got) != len(want) {
				t.Errorf("%s (hidden %v): %d credentials, want %d", name, withHidden, len(got), len(want))
				continue
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i].record) {
					t.Errorf("%s (hidden %v) #%d: %q, want %q", name, withHidden, i, got[i], want[i].record)
				}
			}
		}
		all, visible, err := d.CountOfRP(rp(name))
		if err != nil || all != len(modelList(model, name, true)) || visible != len(modelList(model, name, false)) {
			t.Errorf("CountOfRP(%s) = %d, %d, %v", name, all, visible, err)
		}
		for _, u := range users {
			recs, err := d.CredentialsOfUser(rp(name), []byte(u))
			must(t, err)
			var want [][]byte
			for _, c := range model {
				if c.rp == name && c.user == u && !c.unlisted {
					want = append(want, c.record)
				}
			}
			slices.SortFunc(recs, bytes.Compare)
			slices.SortFunc(want, bytes.Compare)
			if fmt.Sprintf("%q", recs) != fmt.Sprintf("%q", want) {
				t.Errorf("CredentialsOfUser(%s, %s) = %q, want %q", name, u, recs, want)
			}
		}
	}
}

// modelList is the model's list of an RP: newest first, then by the
// credential's short key (the store's tie order).
func modelList(model map[string]*modelCred, name string, withHidden bool) []*modelCred {
	var out []*modelCred
	for _, c := range model {
		if c.rp == name && !c.unlisted && (withHidden || !c.hidden) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *modelCred) int {
		if a.created != b.created {
			return -cmpInt(a.created, b.created)
		}
		return bytes.Compare(credKey([]byte(a.id)), credKey([]byte(b.id)))
	})
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestMigrateSchema2: a schema 2 file (testdata/state-v2, written at
// commit 0b16522 with its epoch file at 10) is rewritten in layout 2 when
// it is bound — sealed records, the index with creation order, users and
// counts — in one transaction whose head advances the epoch, so the old
// file is then a rolled-back copy.
func TestMigrateSchema2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	copyFile(t, filepath.Join("..", "testdata", "state-v2", "state.db"), path)
	copyFile(t, path, path+".old")
	master, err := os.ReadFile(filepath.Join("..", "testdata", "state-v2", "master.key"))
	must(t, err)
	keys := softKeysFrom(t, master)
	guard := &memGuard{v: 10}
	d, err := Open(path, WithIndexer(ctapIndexer))
	must(t, err)
	if _, err := d.CountCredentials(); !errors.Is(err, ErrNeedsBind) {
		t.Errorf("schema 2 before Bind: %v, want ErrNeedsBind", err)
	}
	must(t, d.Bind(context.Background(), keys, guard, BindOptions{}))
	if v, _ := guard.get(); v != 11 {
		t.Errorf("epoch %d after the migration, want 11", v)
	}
	must(t, d.Check())
	if n, err := d.CountRPs(); n != 2 || err != nil {
		t.Errorf("CountRPs = %d, %v", n, err)
	}
	if all, visible, err := d.CountOfRP(rp("example.com")); all != 3 || visible != 2 || err != nil {
		t.Errorf("CountOfRP(example.com) = %d, %d, %v; want 3, 2 (carol has credProtect 3)", all, visible, err)
	}
	var names []string
	for _, rec := range mustList(t, d, "example.com") {
		x, err := ctap2.IndexRecord(rec)
		must(t, err)
		names = append(names, string(x.UserID))
	}
	if fmt.Sprint(names) != "[carol-handle bob-handle alice-handle]" {
		t.Errorf("example.com newest first: %v", names)
	}
	if recs, err := d.CredentialsOfUser(rp("example.com"), []byte("bob-handle")); len(recs) != 1 || err != nil {
		t.Errorf("CredentialsOfUser(bob) = %d records, %v", len(recs), err)
	}
	must(t, d.Close())
	raw, err := os.ReadFile(path)
	must(t, err)
	if bytes.Contains(raw, []byte("example.com")) || bytes.Contains(raw, []byte("alice")) {
		t.Error("the migrated file names an RP or a user")
	}
	d, err = Open(path, WithIndexer(ctapIndexer))
	must(t, err)
	must(t, d.Bind(context.Background(), keys, guard, BindOptions{}))
	if v, _ := guard.get(); v != 11 {
		t.Errorf("epoch %d after reopening the migrated file, want 11", v)
	}
	must(t, d.Close())
	copyFile(t, path+".old", path)
	if _, err := openBound(t, path, keys, guard, BindOptions{}); !errors.Is(err, ErrRolledBack) {
		t.Errorf("the schema 2 copy after the migration: %v, want ErrRolledBack", err)
	}
}

func mustList(t *testing.T, d *DB, name string) [][]byte {
	t.Helper()
	recs, err := d.CredentialsByRP(rp(name))
	must(t, err)
	return recs
}

func softKeysFrom(t testing.TB, master []byte) *tpmkeys.Software {
	t.Helper()
	k, err := tpmkeys.NewSoftware(master)
	must(t, err)
	return k
}

// TestRemainingCredentials: the estimate is the file system's available
// space less the reserve over BytesPerCredential.
func TestRemainingCredentials(t *testing.T) {
	t.Parallel()
	d, path := openTemp(t)
	n, err := d.RemainingCredentials()
	must(t, err)
	var st unix.Statfs_t
	must(t, unix.Statfs(filepath.Dir(path), &st))
	free := int64(st.Bavail) * int64(st.Bsize)
	if want := (free - SpaceReserve) / BytesPerCredential; want > 0 && (int64(n) > want || int64(n) < want-1024) {
		t.Errorf("RemainingCredentials = %d, want about %d", n, want)
	}
}
