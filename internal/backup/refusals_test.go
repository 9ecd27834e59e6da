package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/virtkey/virtkey/internal/backup"
	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/store"
)

// fixtureArchive backs up a state directory of a key with a PIN.
func fixtureArchive(t *testing.T) (dir, archive string) {
	t.Helper()
	dir = newKeyDir(t, true, 0)
	return dir, create(t, dir)
}

// noTrace fails t if the parent of dir holds anything but want.
func noTrace(t *testing.T, parent string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s holds %q, want %q (a restore left something behind)", parent, got, want)
	}
}

// TestBackupRefusals: what backup refuses, with which exit status, and
// that it then writes nothing.
func TestBackupRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, _ := fixtureArchive(t)
	out := filepath.Join(t.TempDir(), "out.age")
	opts := func(mod func(*backup.Options)) backup.Options {
		o := backup.Options{StateDir: dir, Out: out, Passphrase: fixed(passphrase), WorkFactor: workFactor}
		mod(&o)
		return o
	}
	tpmDir := t.TempDir()
	os.WriteFile(filepath.Join(tpmDir, "tpm.json"), []byte("{}\n"), 0o600)
	os.WriteFile(filepath.Join(tpmDir, "state.db"), nil, 0o600)
	noKey := t.TempDir()
	os.WriteFile(filepath.Join(noKey, "state.db"), nil, 0o600)
	exists := filepath.Join(t.TempDir(), "exists.age")
	os.WriteFile(exists, []byte("keep me"), 0o600)
	asked := false

	for _, tc := range []struct {
		name string
		o    backup.Options
		kind error
		code int
		msg  string
	}{
		{"keystore tpm", opts(func(o *backup.Options) { o.Keystore = "tpm" }), backup.ErrTPMKeystore, cli.ExitUnsupported,
			"--keystore tpm: TPM-bound passkeys cannot leave the TPM (by design"},
		{"keystore tpm+eddsa", opts(func(o *backup.Options) { o.Keystore = "tpm+eddsa" }), backup.ErrTPMKeystore, cli.ExitUnsupported,
			"--keystore tpm+eddsa: TPM-bound passkeys cannot leave the TPM"},
		{"TPM state directory", opts(func(o *backup.Options) { o.StateDir = tpmDir }), backup.ErrTPMKeystore, cli.ExitUnsupported,
			"belongs to the TPM key store (it has tpm.json)"},
		{"no state directory", opts(func(o *backup.Options) { o.StateDir = filepath.Join(tpmDir, "nope") }), backup.ErrNoState, cli.ExitFailure,
			"nothing to back up"},
		{"no key store file", opts(func(o *backup.Options) { o.StateDir = noKey }), backup.ErrNoState, cli.ExitFailure,
			"but no key store file"},
		{"out exists", opts(func(o *backup.Options) { o.Out = exists }), nil, cli.ExitFailure, "exists: remove it or choose another name"},
		{"passphrase fails", opts(func(o *backup.Options) {
			o.Passphrase = func() ([]byte, error) { asked = true; return nil, backup.ErrPassphraseNeeded }
		}), backup.ErrPassphraseNeeded, cli.ExitFailure, "a passphrase is needed"},
	} {
		_, err := backup.Create(ctx, tc.o)
		if err == nil || (tc.kind != nil && !errors.Is(err, tc.kind)) || cli.ExitCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v (exit %d); want %v, exit %d, %q", tc.name, err, cli.ExitCode(err), tc.kind, tc.code, tc.msg)
		}
	}
	if !asked {
		t.Error("the passphrase was not asked")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused backup wrote %s: %v", out, err)
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep me" {
		t.Errorf("an existing --out file was changed: %q", b)
	}

	// A running key holds state.db: refused before the passphrase is asked.
	db, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	asked = false
	_, err = backup.Create(ctx, opts(func(o *backup.Options) {
		o.Passphrase = func() ([]byte, error) { asked = true; return []byte("x"), nil }
	}))
	if !errors.Is(err, backup.ErrRunning) || asked || !strings.Contains(err.Error(), "stop the key first") {
		t.Errorf("backup of a running key: %v (passphrase asked: %v)", err, asked)
	}
	r, err := backup.Restore(ctx, backup.RestoreOptions{StateDir: dir, Archive: create(t, newKeyDir(t, false, 0)), Force: true, Passphrase: fixed(passphrase)})
	if !errors.Is(err, backup.ErrRunning) || r != nil {
		t.Errorf("restore over a running key: %v", err)
	}
	db.Close()
}

// TestRestoreRefusals: a non-empty state directory without --force, a
// wrong passphrase and damaged archives are refused, and leave the target
// and its parent as they were.
func TestRestoreRefusals(t *testing.T) {
	t.Parallel()
	_, archive := fixtureArchive(t)
	good, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "archive.age")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flip := bytes.Clone(good)
	flip[len(flip)-100] ^= 1

	for _, tc := range []struct {
		name, archive string
		pass          string
		kind          error
		msg           string
	}{
		{"wrong passphrase", archive, "wrong", backup.ErrWrongPassphrase, "wrong passphrase for "},
		{"payload bit flipped", write(flip), passphrase, backup.ErrDamaged, "is damaged or not a virtkey backup"},
		{"truncated", write(good[:len(good)-17]), passphrase, backup.ErrDamaged, "is damaged or not a virtkey backup"},
		{"header only", write(good[:bytes.Index(good, []byte("\n---"))+48]), passphrase, backup.ErrDamaged, "is damaged"},
		{"not age", write([]byte("hello\n")), passphrase, backup.ErrDamaged, "is damaged or not a virtkey backup"},
		{"empty", write(nil), passphrase, backup.ErrDamaged, "is damaged or not a virtkey backup"},
		{"another recipient", write(encryptX25519(t, []byte("x"))), passphrase, backup.ErrDamaged, "is not encrypted with a passphrase (its age recipients: X25519)"},
		{"not a tar", write(encrypt(t, []byte("just text"))), passphrase, backup.ErrDamaged, "is damaged or not a virtkey backup"},
		{"digest differs", write(encrypt(t, tamperedTar(t, good, "digest"))), passphrase, backup.ErrDamaged, "does not match its SHA-256"},
		{"unlisted file", write(encrypt(t, tamperedTar(t, good, "extra"))), passphrase, backup.ErrDamaged, "is not in the manifest"},
		{"missing file", write(encrypt(t, tamperedTar(t, good, "drop"))), passphrase, backup.ErrDamaged, "is in the manifest but not in the archive"},
		{"newer version", write(encrypt(t, tamperedTar(t, good, "version"))), passphrase, backup.ErrDamaged, "written by a newer virtkey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dir := filepath.Join(parent, "state")
			r, err := backup.Restore(context.Background(), backup.RestoreOptions{StateDir: dir, Archive: tc.archive, Passphrase: fixed(tc.pass)})
			if !errors.Is(err, tc.kind) || r != nil || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "nothing was restored") {
				t.Fatalf("%v; want %v with %q", err, tc.kind, tc.msg)
			}
			noTrace(t, parent)
		})
	}

	// A non-empty state directory, before any passphrase is asked.
	parent := t.TempDir()
	dir := filepath.Join(parent, "state")
	os.Mkdir(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600)
	asked := false
	_, err = backup.Restore(context.Background(), backup.RestoreOptions{StateDir: dir, Archive: archive,
		Passphrase: func() ([]byte, error) { asked = true; return []byte(passphrase), nil }})
	if !errors.Is(err, backup.ErrNotEmpty) || asked || !strings.Contains(err.Error(), "(it holds notes.txt)") || !strings.Contains(err.Error(), "add --force") {
		t.Fatalf("restore into a non-empty directory: %v (passphrase asked: %v)", err, asked)
	}
	noTrace(t, parent, "state")
	if b, _ := os.ReadFile(filepath.Join(dir, "notes.txt")); string(b) != "mine" {
		t.Fatal("the non-empty directory was changed")
	}
	// An empty one is fine.
	empty := filepath.Join(t.TempDir(), "empty")
	os.Mkdir(empty, 0o700)
	mustRestore(t, empty, archive, false)
}

func encrypt(t *testing.T, plain []byte) []byte {
	t.Helper()
	r, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		t.Fatal(err)
	}
	r.SetWorkFactor(workFactor)
	return encryptTo(t, plain, r)
}

func encryptX25519(t *testing.T, plain []byte) []byte {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return encryptTo(t, plain, id.Recipient())
}

func encryptTo(t *testing.T, plain []byte, r age.Recipient) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tamperedTar decrypts a good archive and rewrites its tar: "digest"
// changes a byte of master.key, "extra" adds an unlisted file, "drop"
// leaves out state.db, "version" makes the manifest's version 2.
func tamperedTar(t *testing.T, good []byte, how string) []byte {
	t.Helper()
	id, _ := age.NewScryptIdentity(passphrase)
	plain, err := age.Decrypt(bytes.NewReader(good), id)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(plain)
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var b bytes.Buffer
		b.ReadFrom(tr)
		data := b.Bytes()
		switch {
		case how == "digest" && h.Name == "state/master.key":
			data[0] ^= 1
		case how == "drop" && h.Name == "state/state.db":
			continue
		case how == "version" && h.Name == backup.ManifestName:
			var m map[string]any
			json.Unmarshal(data, &m)
			m["version"] = 2
			data, _ = json.Marshal(m)
			h.Size = int64(len(data))
		}
		tw.WriteHeader(h)
		tw.Write(data)
		if how == "extra" && h.Name == "state/master.key" {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "state/device.key.old", Mode: 0o600, Size: 1})
			tw.Write([]byte{1})
		}
	}
	tw.Close()
	return out.Bytes()
}
