package store

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
)

func withNoSync() Option { return func(o *options) { o.noSync = true } }

// FuzzOpen opens damaged state.db files and uses them: Open either
// refuses the file or every call that follows returns (an error is fine);
// none panics or faults. Seeds: the state.db files that earlier binaries
// wrote (testdata/state-v1, schema 1; testdata/state-v2, schema 2), the
// first migrated and bound (schema 4), and all with 16 bytes flipped at
// offsets across the file.
func FuzzOpen(f *testing.F) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	plain, v2 := read("state-v1/state.db"), read("state-v2/state.db")
	keys := softKeysFrom(f, read("state-v1/master.key"))
	keys2 := softKeysFrom(f, read("state-v2/master.key"))
	boundPath := filepath.Join(f.TempDir(), "state.db")
	if err := os.WriteFile(boundPath, plain, 0o600); err != nil {
		f.Fatal(err)
	}
	d, err := openBound(f, boundPath, keys, &memGuard{}, BindOptions{}, WithIndexer(ctapIndexer))
	if err != nil {
		f.Fatal(err)
	}
	d.Close()
	bound, err := os.ReadFile(boundPath)
	if err != nil {
		f.Fatal(err)
	}
	for _, base := range [][]byte{plain, v2, bound} {
		f.Add(base)
		for off := 0; off+16 <= len(base); off += 1021 {
			b := append([]byte{}, base...)
			for i := off; i < off+16; i++ {
				b[i] ^= 0xA5
			}
			f.Add(b)
		}
	}
	credID, _ := hex.DecodeString(fixtureCredID)
	res, err := ctap2.NewResident(context.Background(), keys, ctap2.RPEntity{ID: "fuzz.example"},
		ctap2.UserEntity{ID: []byte("fuzz-user")}, cose.AlgES256, time.Unix(1e9, 0))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := Open(path, WithLockTimeout(50*time.Millisecond), withNoSync(), WithIndexer(ctapIndexer))
		if err != nil {
			return
		}
		defer d.Close()
		use := func() {
			rps, _ := d.RPs()
			for _, h := range rps {
				d.CredentialsByRP(h)
				d.CountOfRP(h)
			}
			var cursor []byte
			for range 4 {
				rec, next, err := d.NextRP(cursor)
				if err != nil || rec == nil {
					break
				}
				cursor = next
			}
			d.CountRPs()
			d.CredentialsByRP(rp("example.com"))
			d.NextCredentialOfRP(rp("example.com"), nil, false)
			d.CredentialsOfUser(rp("example.com"), []byte("bob-handle"))
			d.Credential(credID)
			d.CountCredentials()
			d.Setting("state")
			d.HoldsState()
			d.NextCounter(credID)
			d.PutCredential(res.ID, res.RPIDHash, res.Record, credID)
			d.PutSetting("fuzz", []byte("value"))
			d.DeleteCredential(res.ID)
		}
		use()
		err = d.Bind(context.Background(), keys, &memGuard{v: 1}, BindOptions{AcceptRollback: true})
		if errors.Is(err, ErrKeyMismatch) {
			err = d.Bind(context.Background(), keys2, &memGuard{v: 10}, BindOptions{AcceptRollback: true})
		}
		if err == nil || errors.Is(err, ErrDamaged) {
			use()
		}
		d.Check()
		d.Wipe()
	})
}
