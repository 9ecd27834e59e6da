package backup_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/backup"
	"github.com/virtkey/virtkey/internal/vktest"
)

func TestMain(m *testing.M) { os.Exit(vktest.Run(m)) }

const (
	testPIN    = "135790"
	passphrase = "correct horse battery staple"
	// workFactor keeps scrypt at about a millisecond (age's default, 18,
	// takes a second, and far longer under -race).
	workFactor = 10
)

func fixed(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }

// create backs up dir into a new archive and returns its path.
func create(t testing.TB, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "key.age")
	if _, err := backup.Create(context.Background(), backup.Options{
		StateDir: dir, Out: out, Passphrase: fixed(passphrase), WorkFactor: workFactor, Virtkey: "test",
	}); err != nil {
		t.Fatalf("backup of %s: %v", dir, err)
	}
	return out
}

// restore restores archive into dir with the right passphrase.
func restore(dir, archive string, force bool) (*backup.Restored, error) {
	return backup.Restore(context.Background(), backup.RestoreOptions{
		StateDir: dir, Archive: archive, Passphrase: fixed(passphrase), Force: force,
	})
}

func mustRestore(t testing.TB, dir, archive string, force bool) *backup.Restored {
	t.Helper()
	r, err := restore(dir, archive, force)
	if err != nil {
		t.Fatalf("restore into %s: %v", dir, err)
	}
	return r
}

// inprocKey runs an in-process key (the same state as virtkey run's,
// bound without --accept-rollback) on dir with a CTAP2 client; closing it
// is the caller's.
func inprocKey(t testing.TB, dir string) (*inproc.Key, *client.Device) {
	t.Helper()
	k, err := inproc.New(inproc.Options{Dir: dir})
	if err != nil {
		t.Fatalf("starting a key on %s: %v", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := client.Open(ctx, k.Device(), &client.Options{Timeout: 30 * time.Second})
	if err != nil {
		k.Close()
		t.Fatal(err)
	}
	return k, d
}

func closeKey(t testing.TB, k *inproc.Key) {
	t.Helper()
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
}

// wrongPINs sends n wrong PINs.
func wrongPINs(t testing.TB, d *client.Device, n int) {
	t.Helper()
	for range n {
		if _, err := d.GetPINToken(context.Background(), "000000", client.PermCredentialMgmt, ""); err == nil {
			t.Fatal("a wrong PIN was taken")
		}
	}
}

func pinRetries(t testing.TB, d *client.Device) int {
	t.Helper()
	n, _, err := d.GetPINRetries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// newKeyDir makes a state directory of a key — with a PIN and then wrong
// wrong PINs if pin is set — and returns it with the key stopped.
func newKeyDir(t testing.TB, pin bool, wrong int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	k, d := inprocKey(t, dir)
	if pin {
		if err := d.SetPIN(context.Background(), testPIN); err != nil {
			t.Fatal(err)
		}
		wrongPINs(t, d, wrong)
	}
	closeKey(t, k)
	return dir
}
