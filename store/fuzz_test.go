package store

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtkey/virtkey/tpmkeys"
)

func withNoSync() Option { return func(o *options) { o.noSync = true } }

// FuzzOpen opens damaged state.db files and uses them: Open either
// refuses the file or every call that follows returns (an error is fine);
// none panics or faults. Seeds: the state.db that today's binary wrote
// (testdata/state-v1, schema 1), the same file migrated and bound (schema
// 2), and both with 16 bytes flipped at offsets across the file.
func FuzzOpen(f *testing.F) {
	plain, err := os.ReadFile(filepath.Join("..", "testdata", "state-v1", "state.db"))
	if err != nil {
		f.Fatal(err)
	}
	master, err := os.ReadFile(filepath.Join("..", "testdata", "state-v1", "master.key"))
	if err != nil {
		f.Fatal(err)
	}
	keys, err := tpmkeys.NewSoftware(master)
	if err != nil {
		f.Fatal(err)
	}
	boundPath := filepath.Join(f.TempDir(), "state.db")
	if err := os.WriteFile(boundPath, plain, 0o600); err != nil {
		f.Fatal(err)
	}
	d, err := openBound(f, boundPath, keys, &memGuard{}, BindOptions{})
	if err != nil {
		f.Fatal(err)
	}
	d.Close()
	bound, err := os.ReadFile(boundPath)
	if err != nil {
		f.Fatal(err)
	}
	for _, base := range [][]byte{plain, bound} {
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
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := Open(path, WithLockTimeout(50*time.Millisecond), withNoSync())
		if err != nil {
			return
		}
		defer d.Close()
		use := func() {
			rps, _ := d.RPs()
			for _, h := range rps {
				d.CredentialsByRP(h)
			}
			d.CredentialsByRP(rp("example.com"))
			d.Credential(credID)
			d.CountCredentials()
			d.Setting("state")
			d.HoldsState()
			d.NextCounter(credID)
			d.PutCredential([]byte("fuzz"), rp("fuzz.example"), []byte("record"), credID)
			d.PutSetting("fuzz", []byte("value"))
			d.DeleteCredential([]byte("fuzz"))
		}
		use()
		if err := d.Bind(context.Background(), keys, &memGuard{v: 1}, BindOptions{AcceptRollback: true}); err == nil || errors.Is(err, ErrDamaged) {
			use()
		}
		d.Check()
		d.Wipe()
	})
}
