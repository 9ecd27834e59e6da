package tpmtest

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/vktest"
)

// TestTPMRollbackRefused: issue 10 item 1 with --keystore tpm. state.db's
// rollback reference is a TPM NV counter, so an older copy of the state
// directory — state.db and tpm.json together, which the software key
// store cannot notice — is refused, and accepted only with
// --accept-rollback.
func TestTPMRollbackRefused(t *testing.T) {
	tmp, sw, state := swtpmTest(t)
	ctx := context.Background()

	k := startKey(t, state, sw.Addr())
	d := k.Client(t)
	if err := d.SetPIN(ctx, "1234"); err != nil {
		t.Fatal(err)
	}
	k.Stop(t)
	backup := filepath.Join(tmp, "backup")
	copyDir(t, state, backup)

	k = startKey(t, state, sw.Addr())
	d = k.Client(t)
	if _, err := d.GetPINToken(ctx, "9999", client.PermGetAssertion, rpID); err == nil {
		t.Fatal("a wrong PIN was accepted")
	}
	k.Stop(t)

	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, state)
	out := runFails(t, vktest.RunArgs(vktest.FreeUDPAddr(t), state, tpmArgs(sw.Addr())...)...)
	for _, want := range []string{"older than its rollback reference", "TPM NV counter", "--accept-rollback"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}

	k = startKey(t, state, sw.Addr(), "--accept-rollback")
	d = k.Client(t)
	if n, _, err := d.GetPINRetries(ctx); err != nil || n != 8 {
		t.Errorf("accepted copy: retries %d, %v; want 8", n, err)
	}
}

// copyDir copies a state directory, keeping modes.
func copyDir(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(dst, info.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}
