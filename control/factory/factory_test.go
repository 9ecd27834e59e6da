package factory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/control"
)

// newKey makes a UDP key on stateDir with defaults, as POST /v1/keys does.
func newKey(t *testing.T, stateDir string) (control.Key, func() error, error) {
	t.Helper()
	return newKeyWith(t, control.KeyConfig{Attach: control.AttachUDP, StateDir: stateDir})
}

func newKeyWith(t *testing.T, cfg control.KeyConfig) (control.Key, func() error, error) {
	t.Helper()
	if err := cfg.Normalize(); err != nil {
		t.Fatal(err)
	}
	return New(Options{}).NewKey(context.Background(), cfg)
}

// withKey makes a key on dir, runs fn with it and closes it.
func withKey(t *testing.T, dir string, fn func(ctx context.Context, k control.Key) error) {
	t.Helper()
	k, closeKey, err := newKey(t, dir)
	if err != nil {
		t.Fatalf("NewKey(%s): %v", dir, err)
	}
	defer closeKey()
	if err := fn(context.Background(), k); err != nil {
		t.Fatal(err)
	}
}

func addPasskey(ctx context.Context, k control.Key, rpID string) error {
	_, err := k.AddCredential(ctx, control.CredentialParams{RPID: rpID, UserHandle: []byte("u-" + rpID)})
	return err
}

// TestStateDirOpenedLikeRun: a persistent stateDir is opened the way
// `virtkey run --state-dir` opens one (internal/statedir): its passkeys
// survive the key, a state.db copied back over a newer one — a deleted
// passkey back — is refused (rollback), and so is a directory others may
// write to. With acceptRollback the copy is taken, deleted passkey and all.
func TestStateDirOpenedLikeRun(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	withKey(t, dir, func(ctx context.Context, k control.Key) error { return addPasskey(ctx, k, "one.example") })
	old, err := os.ReadFile(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	withKey(t, dir, func(ctx context.Context, k control.Key) error {
		if err := addPasskey(ctx, k, "two.example"); err != nil {
			return err
		}
		creds, err := k.Credentials(ctx)
		if err != nil || len(creds) != 2 {
			t.Fatalf("reopened: %d passkeys, %v; want 2", len(creds), err)
		}
		return k.DeleteCredential(ctx, creds[0].CredentialID)
	})

	if err := os.WriteFile(filepath.Join(dir, "state.db"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := newKey(t, dir); err == nil || !strings.Contains(err.Error(), "older") {
		t.Errorf("a copied-back state.db: err %v; want it refused as older than the last one written", err)
	} else if bad := (*control.BadRequestError)(nil); !errors.As(err, &bad) {
		t.Errorf("a copied-back state.db: %v; want a bad request", err)
	}

	k, closeKey, err := newKeyWith(t, control.KeyConfig{Attach: control.AttachUDP, StateDir: dir, AcceptRollback: true})
	if err != nil {
		t.Fatalf("acceptRollback: %v", err)
	}
	creds, err := k.Credentials(context.Background())
	closeKey()
	if err != nil || len(creds) != 1 || creds[0].RPID != "one.example" {
		t.Errorf("acceptRollback: %+v, %v; want the copy's one passkey, at one.example", creds, err)
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, _, err := newKey(t, open); err == nil {
		t.Error("a state directory anyone may write to was accepted")
	}
}
