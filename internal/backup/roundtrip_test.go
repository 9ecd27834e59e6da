package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"filippo.io/age"

	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/backup"
	"github.com/virtkey/virtkey/internal/rptest"
	"github.com/virtkey/virtkey/internal/statedir"
	"github.com/virtkey/virtkey/internal/vktest"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// register makes a credential for u with a PIN token, as a browser does
// on a key with a PIN.
func register(t *testing.T, rp *rptest.RP, d *client.Device, u *rptest.User, alg int, resident bool) {
	t.Helper()
	tok, err := d.GetPINToken(context.Background(), testPIN, client.PermMakeCredential, rp.ID)
	if err != nil {
		t.Fatal(err)
	}
	rp.Register(t, d, u, rptest.RegisterOptions{Alg: alg, Resident: resident, Token: tok})
}

// TestRoundTrip is the move to a new machine: passkeys made with a PIN on
// `virtkey run` — a discoverable ES256 one and a non-discoverable EdDSA
// one — are backed up, restored into a fresh state directory and still
// sign in there, verified by the relying party (go-webauthn), with their
// signature counters moving on (no clone warning), the same PIN and the
// same retry count, and no --accept-rollback.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dirA := filepath.Join(t.TempDir(), "a")
	k := vktest.Start(t, dirA)
	d := k.Client(t)
	if err := d.SetPIN(ctx, testPIN); err != nil {
		t.Fatal(err)
	}
	rp := rptest.New(t, "example.com", "https://example.com")
	alice := &rptest.User{ID: []byte("alice-handle"), Name: "alice"}
	bob := &rptest.User{ID: []byte("bob-handle"), Name: "bob"}
	register(t, rp, d, alice, -7, true)
	register(t, rp, d, bob, -8, false)
	rp.DiscoverableLogin(t, d, alice)
	rp.Login(t, d, bob)
	wrongPINs(t, d, 1)
	k.Stop(t)

	archive := create(t, dirA)
	checkWithAgeLibrary(t, archive, fullState)

	// Another machine: a state directory that does not exist yet.
	dirB := filepath.Join(t.TempDir(), "home", "state", "virtkey")
	r := mustRestore(t, dirB, archive, false)
	if r.Credentials != 1 || !r.PINSet || r.PINRetries != 7 || r.MovedAside != "" {
		t.Fatalf("restored: %+v", r)
	}
	for _, p := range []string{dirB, filepath.Join(dirB, "attestation")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, %v; want mode 0700", p, fi.Mode(), err)
		}
	}
	for _, f := range []string{"master.key", "device.key", "epoch", "state.db", "attestation/ca.key", "attestation/batch.pem"} {
		if fi, err := os.Stat(filepath.Join(dirB, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want mode 0600", f, fi.Mode(), err)
		}
	}
	kb := vktest.Start(t, dirB) // no --accept-rollback
	db := kb.Client(t)
	rp.DiscoverableLogin(t, db, alice)
	rp.Login(t, db, bob)
	if n := pinRetries(t, db); n != 7 {
		t.Fatalf("PIN retries after the restore: %d, want 7", n)
	}
	if _, err := db.GetPINToken(ctx, testPIN, client.PermCredentialMgmt, ""); err != nil {
		t.Fatalf("the PIN after the restore: %v", err)
	}
	// The attestation CA came along: the restored key attests with it.
	for _, f := range []string{"ca.pem", "batch.pem"} {
		a, _ := os.ReadFile(filepath.Join(dirA, "attestation", f))
		b, _ := os.ReadFile(filepath.Join(dirB, "attestation", f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("attestation/%s differs after the restore", f)
		}
	}
	kb.Stop(t)
}

// checkWithAgeLibrary decrypts the archive with age's own Decrypt and
// reads it with archive/tar: the manifest first, every file it lists with
// its digest, the layout of a state directory.
func checkWithAgeLibrary(t *testing.T, archive string, wantNames []string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatalf("age.Decrypt: %v", err)
	}
	checkTar(t, plain, wantNames)
}

// fullState is the archive of a state directory of virtkey run.
var fullState = []string{"state/", "state/master.key", "state/device.key", "state/epoch", "state/attestation/",
	"state/attestation/ca.key", "state/attestation/ca.pem", "state/attestation/batch.key", "state/attestation/batch.pem",
	"state/attestation/enterprise.key", "state/attestation/enterprise.pem", "state/state.db"}

// checkTar checks a decrypted archive independently of the package's
// reader: its entries are wantNames after the manifest.
func checkTar(t *testing.T, plain io.Reader, wantNames []string) {
	t.Helper()
	tr := tar.NewReader(plain)
	var m backup.Manifest
	var names []string
	contents := map[string][]byte{}
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if h.Name != backup.ManifestName {
				t.Fatalf("first entry %q", h.Name)
			}
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want := int64(0o600)
		if h.Typeflag == tar.TypeDir {
			want = 0o700
		} else {
			contents[h.Name] = b
		}
		if h.Mode != want {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, want)
		}
		names = append(names, h.Name)
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("entries %q\nwant %q", names, wantNames)
	}
	if m.Format != "virtkey-backup" || m.Version != 1 || m.Keystore != "key-file" || m.Epoch == 0 || len(m.Files) != len(contents) {
		t.Fatalf("manifest %+v", m)
	}
	for _, f := range m.Files {
		b, ok := contents[f.Name]
		if !ok || int64(len(b)) != f.Size || sha256Hex(b) != f.SHA256 {
			t.Fatalf("%s does not match the manifest", f.Name)
		}
	}
}

// TestRestoreInPlace is a deliberate rollback: the state directory moved
// on after the backup (a passkey deleted, a PIN attempt), and the backup
// restored over it with --force brings the passkey back, starts without
// --accept-rollback, and leaves the reference ahead of both older
// state.db copies, which are still refused.
func TestRestoreInPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	k, d := inprocKey(t, dir)
	if err := d.SetPIN(ctx, testPIN); err != nil {
		t.Fatal(err)
	}
	rp := rptest.New(t, "example.org", "https://example.org")
	carol := &rptest.User{ID: []byte("carol-handle"), Name: "carol"}
	register(t, rp, d, carol, -7, true)
	closeKey(t, k)
	archive := create(t, dir)
	backedUp, _ := os.ReadFile(filepath.Join(dir, "state.db"))

	// Afterwards: carol's passkey is deleted.
	k, d = inprocKey(t, dir)
	cm := vktest.CredMgmt(t, ctx, d, testPIN)
	if err := cm.DeleteCredential(ctx, carol.Creds[0].ID); err != nil {
		t.Fatal(err)
	}
	closeKey(t, k)
	before, _ := tpmkeys.NewEpochFile(dir).Epoch(ctx)

	if _, err := restore(dir, archive, false); !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("restore over a state directory without --force: %v, want ErrNotEmpty", err)
	}
	r := mustRestore(t, dir, archive, true)
	if r.MovedAside == "" || r.Epoch <= before {
		t.Fatalf("restored: %+v (reference was %d)", r, before)
	}
	if _, err := os.Stat(filepath.Join(r.MovedAside, "master.key")); err != nil {
		t.Fatalf("the replaced directory was not moved aside: %v", err)
	}
	k, d = inprocKey(t, dir) // binds without --accept-rollback
	rp.DiscoverableLogin(t, d, carol)
	closeKey(t, k)

	// Both older state.db copies are refused now, each put back alone.
	replaced, _ := os.ReadFile(filepath.Join(r.MovedAside, "state.db"))
	for name, old := range map[string][]byte{"the backed-up state.db": backedUp, "the replaced state.db": replaced} {
		if err := os.WriteFile(filepath.Join(dir, "state.db"), old, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := statedir.OpenStore(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := tpmkeys.OpenSoftware(dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = statedir.Bind(ctx, dir, db, keys, statedir.Options{})
		db.Close()
		if !errors.Is(err, store.ErrRolledBack) {
			t.Errorf("%s put back alone: %v, want ErrRolledBack", name, err)
		}
	}
}
