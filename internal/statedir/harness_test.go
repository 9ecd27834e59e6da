package statedir_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/vktest"
)

func TestMain(m *testing.M) { os.Exit(vktest.Run(m)) }

const testPIN = "1234"

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readFile returns the contents of path; the test stops if it cannot.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

// fixture copies files of testdata/NAME (a state directory an older
// virtkey wrote) into a new state directory and returns its path.
func fixture(t testing.TB, name string, files ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	must(t, os.MkdirAll(dir, 0o700))
	for _, f := range files {
		must(t, os.WriteFile(filepath.Join(dir, f), readFile(t, filepath.Join("..", "..", "testdata", name, f)), 0o600))
	}
	return dir
}

func cdh() []byte { h := sha256.Sum256([]byte("client data")); return h[:] }

// makeRK makes a discoverable ES256 credential for rpID with a PIN token.
func makeRK(t testing.TB, d *client.Device, rpID, user string) []byte {
	t.Helper()
	ctx := context.Background()
	tok, err := d.GetPINToken(ctx, testPIN, client.PermMakeCredential, rpID)
	must(t, err)
	rk, alg := true, int64(-7)
	att, err := d.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
		ClientDataHash:   cdh(),
		RP:               &ctap2.RPEntity{ID: rpID},
		User:             &ctap2.UserEntity{ID: []byte(user + "-id"), Name: user},
		PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
		Options:          &ctap2.RequestOptions{RK: &rk},
	}, tok)
	if err != nil {
		t.Fatalf("makeCredential for %s: %v", rpID, err)
	}
	return att.AuthData.CredentialID
}

// assertRK asks for a discoverable assertion (user presence only) and
// returns the CTAP status.
func assertRK(t testing.TB, d *client.Device, rpID string) ctap2.StatusCode {
	t.Helper()
	_, err := d.GetAssertion(context.Background(), &ctap2.GetAssertionRequest{RPID: rpID, ClientDataHash: cdh()}, nil)
	if err == nil {
		return ctap2.StatusOK
	}
	var st ctap2.StatusCode
	if !errors.As(err, &st) {
		t.Fatalf("getAssertion for %s: %v (no CTAP status: did the key die?)", rpID, err)
	}
	return st
}

// setUp makes a state directory with a PIN and one passkey for
// example.com, served once by the virtkey under test.
func setUp(t testing.TB) (dir string, credID []byte) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "state")
	k := vktest.Start(t, dir)
	d := k.Client(t)
	must(t, d.SetPIN(context.Background(), testPIN))
	credID = makeRK(t, d, "example.com", "alice")
	k.Stop(t)
	return dir, credID
}

// runFails runs `virtkey run` on dir (UDP, as vktest.Start does) and
// requires it to exit non-zero within 20 s, without a Go panic; it returns
// the output.
func runFails(t testing.TB, dir string, args ...string) string {
	t.Helper()
	bin := vktest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, vktest.RunArgs(vktest.FreeUDPAddr(t), dir, args...)...)
	cmd.Env = vktest.Environ()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("virtkey run on %s: want a refusal (non-zero exit), got %v:\n%s", dir, err, out)
	}
	if s := string(out); strings.Contains(s, "panic:") || strings.Contains(s, "goroutine ") {
		t.Fatalf("virtkey crashed instead of refusing:\n%s", s)
	}
	return string(out)
}

func wantOutput(t testing.TB, out string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(out, p) {
			t.Errorf("output does not say %q:\n%s", p, out)
		}
	}
}
