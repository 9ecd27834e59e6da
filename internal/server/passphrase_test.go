package server

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/tpmkeys"
)

// cheapArgon2 keeps the passphrase stores of these tests fast; a store
// keeps the parameters it was created with.
var cheapArgon2 = tpmkeys.WithArgon2Params(tpmkeys.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1})

// newPassphraseStore creates a passphrase-protected software key store in
// a new state directory.
func newPassphraseStore(t *testing.T, passphrase string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := tpmkeys.OpenSoftwarePassphrase(dir, []byte(passphrase), cheapArgon2); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The sources in order: --passphrase-file, the systemd credential,
// $VIRTKEY_PASSPHRASE; with none, a key-file store, or for a passphrase
// store without a terminal an error that names every source.
func TestPassphraseSources(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	file := writeFile(t, filepath.Join(tmp, "pass"), "from-file\n")
	creds := filepath.Join(tmp, "creds")
	writeFile(t, filepath.Join(creds, CredentialName), "from-credential\r\n")
	otherCreds := filepath.Join(tmp, "other-creds")
	writeFile(t, filepath.Join(otherCreds, "something-else"), "x")
	protected := newPassphraseStore(t, "pw")
	fresh := filepath.Join(tmp, "fresh")

	for _, tt := range []struct {
		name    string
		file    string
		env     map[string]string
		dir     string
		want    string // "" = nil (a key file)
		wantErr []string
	}{
		{name: "file first", file: file, env: map[string]string{"CREDENTIALS_DIRECTORY": creds, "VIRTKEY_PASSPHRASE": "from-env"}, dir: fresh, want: "from-file"},
		{name: "credential before env", env: map[string]string{"CREDENTIALS_DIRECTORY": creds, "VIRTKEY_PASSPHRASE": "from-env"}, dir: fresh, want: "from-credential"},
		{name: "other credentials only", env: map[string]string{"CREDENTIALS_DIRECTORY": otherCreds, "VIRTKEY_PASSPHRASE": "from-env"}, dir: fresh, want: "from-env"},
		{name: "env", env: map[string]string{"VIRTKEY_PASSPHRASE": "from-env"}, dir: protected, want: "from-env"},
		{name: "none, new store", dir: fresh},
		{name: "none, key-file store", dir: protected + "-not"},
		{name: "none, passphrase store, no terminal", dir: protected, wantErr: []string{
			"protected by a passphrase", "--passphrase-file", CredentialName, "LoadCredential=", "$VIRTKEY_PASSPHRASE", "terminal"}},
		{name: "missing file", file: filepath.Join(tmp, "nope"), dir: fresh, wantErr: []string{"--passphrase-file", "no such file"}},
	} {
		var prompt bytes.Buffer
		src := passphraseSource{file: tt.file, stateDir: tt.dir, getenv: func(k string) string { return tt.env[k] },
			stdin: nil, prompt: &prompt}
		got, err := src.read()
		switch {
		case tt.wantErr != nil:
			if err == nil {
				t.Errorf("%s: got %q, want an error", tt.name, got)
				continue
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: the error lacks %q: %v", tt.name, w, err)
				}
			}
		case err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case string(got) != tt.want || (tt.want == "") != (got == nil):
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
		if prompt.Len() != 0 {
			t.Errorf("%s: asked %q without a terminal", tt.name, prompt.String())
		}
	}
}

// run opens a passphrase store with the systemd credential, and refuses
// one without any source before it serves.
func TestNewPassphraseCredential(t *testing.T) {
	dir := newPassphraseStore(t, "correct horse")
	creds := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	t.Setenv("VIRTKEY_PASSPHRASE", "")
	cfg := udpConfig(t)
	cfg.StateDir = dir

	if _, err := New(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "protected by a passphrase") {
		t.Fatalf("New without a passphrase: %v", err)
	}
	writeFile(t, filepath.Join(creds, CredentialName), "wrong horse\n")
	if _, err := New(context.Background(), cfg, nil); !errors.Is(err, tpmkeys.ErrWrongPassphrase) {
		t.Fatalf("New with a wrong credential: %v, want ErrWrongPassphrase", err)
	}
	writeFile(t, filepath.Join(creds, CredentialName), "correct horse\n")
	k, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New with the credential: %v", err)
	}
	k.Close()
}
