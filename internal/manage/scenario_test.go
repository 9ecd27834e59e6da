package manage

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/vktest"
)

// cliResult is what one run of a management command produced.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cliRunner runs "virtkey ARGS" with extra environment variables (VIRTKEY_*
// from the test's own environment are never inherited).
type cliRunner func(t *testing.T, env map[string]string, args ...string) cliResult

// TestManageInProcess runs the management scenario against an in-process
// key over loopback UDP.
func TestManageInProcess(t *testing.T) {
	t.Parallel()
	manageScenario(t, vktest.ServeUDP(t, nil), func(t *testing.T, env map[string]string, args ...string) cliResult {
		t.Helper()
		r := runInProcess(t, env, args...)
		if r.err != nil && !errors.Is(r.err, cli.ErrUsage) {
			r.stderr += "virtkey: " + r.err.Error() + "\n"
		}
		return cliResult{stdout: r.stdout, stderr: r.stderr, code: code(r.err)}
	})
}

// manageScenario drives the management commands against a virtual key
// served over UDP at addr (presence auto, reset always allowed), through
// run: PIN set, passkeys made with the Go client, list, rename, delete,
// wrong PIN, the lockout sequence across power cycles, reset, config.
func manageScenario(t *testing.T, addr string, run cliRunner) {
	dev := "udp:" + addr
	pin := map[string]string{"VIRTKEY_DEVICE": dev, "VIRTKEY_PIN": "1234"}
	wrongPIN := map[string]string{"VIRTKEY_DEVICE": dev, "VIRTKEY_PIN": "0000"}
	noPIN := map[string]string{"VIRTKEY_DEVICE": dev}
	want := func(r cliResult, code int, stderrHas string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stderr, stderrHas) {
			t.Fatalf("exit %d, stderr %q (stdout %q); want exit %d and %q", r.code, r.stderr, r.stdout, code, stderrHas)
		}
	}

	// info, --device given before the subcommand.
	r := run(t, nil, "--device", dev, "info", "--json")
	want(r, 0, "")
	var info infoJSON
	decodeJSON(t, r.stdout, &info)
	if info.PINSet || !slices.Contains(info.Versions, "FIDO_2_1") || !info.Options["credMgmt"] || info.Device != dev {
		t.Fatalf("info: %+v", info)
	}
	r = run(t, noPIN, "info")
	want(r, 0, "")
	if !strings.Contains(r.stdout, "PIN:") || !strings.Contains(r.stdout, "not set") {
		t.Errorf("human info:\n%s", r.stdout)
	}

	// No PIN yet.
	want(run(t, pin, "creds", "list"), cli.ExitPINNeeded, "no PIN is set")
	want(run(t, pin, "pin", "change"), cli.ExitPINNeeded, "no PIN is set")
	want(run(t, map[string]string{"VIRTKEY_DEVICE": dev, "VIRTKEY_PIN": "12"}, "pin", "set"), cli.ExitFailure, "too short")
	want(run(t, noPIN, "pin", "set"), cli.ExitPINNeeded, "VIRTKEY_PIN")
	r = run(t, pin, "pin", "set", "--json")
	want(r, 0, "")
	var pinOut struct {
		PINSet     bool `json:"pinSet"`
		PINRetries int  `json:"pinRetries"`
	}
	decodeJSON(t, r.stdout, &pinOut)
	if !pinOut.PINSet || pinOut.PINRetries != 8 {
		t.Errorf("pin set --json: %s", r.stdout)
	}
	want(run(t, pin, "pin", "set"), cli.ExitFailure, "already set")

	// Passkeys, made by the Go client with PIN tokens.
	ids := map[string][]byte{}
	func() {
		d := vktest.Dial(t, addr)
		ctx := context.Background()
		for _, c := range []struct{ rp, user string }{{"example.com", "alice"}, {"example.com", "bob"}, {"other.example", "carol"}} {
			tok, err := d.GetPINToken(ctx, "1234", client.PermMakeCredential, c.rp)
			if err != nil {
				t.Fatal(err)
			}
			alg, rk := int64(cose.AlgES256), true
			att, err := d.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
				ClientDataHash:   bytes.Repeat([]byte{1}, 32),
				RP:               &ctap2.RPEntity{ID: c.rp},
				User:             &ctap2.UserEntity{ID: []byte("id-" + c.user), Name: c.user, DisplayName: "Display " + c.user},
				PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
				Options:          &ctap2.Options{RK: &rk},
			}, tok)
			if err != nil {
				t.Fatal(err)
			}
			ids[c.user] = att.AuthData.CredentialID
		}
	}()

	list := func(args ...string) credsListJSON {
		t.Helper()
		r := run(t, pin, append([]string{"creds", "list", "--json"}, args...)...)
		want(r, 0, "")
		var out credsListJSON
		decodeJSON(t, r.stdout, &out)
		return out
	}
	byUser := func(l credsListJSON) map[string]credJSON {
		m := map[string]credJSON{}
		for _, c := range l.Credentials {
			m[c.UserName] = c
		}
		return m
	}
	l := list()
	if l.Existing != 3 || len(l.Credentials) != 3 {
		t.Fatalf("creds list: %+v", l)
	}
	alice := byUser(l)["alice"]
	if alice.RPID != "example.com" || alice.CredentialID != base64.RawURLEncoding.EncodeToString(ids["alice"]) ||
		alice.UserID != base64.RawURLEncoding.EncodeToString([]byte("id-alice")) || alice.DisplayName != "Display alice" ||
		alice.Algorithm != "ES256" {
		t.Errorf("alice: %+v", alice)
	}
	if l := list("--rp", "example.com"); len(l.Credentials) != 2 {
		t.Errorf("creds list --rp example.com: %+v", l)
	}
	if l := list("--rp", "nobody.example"); len(l.Credentials) != 0 || l.Existing != 3 {
		t.Errorf("creds list --rp nobody.example: %+v", l)
	}
	r = run(t, pin, "creds", "list")
	want(r, 0, "")
	for _, s := range []string{"CREDENTIAL ID", "example.com", "carol", alice.CredentialID, "3 passkeys on the key"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("human list lacks %q:\n%s", s, r.stdout)
		}
	}

	// Rename: name and display name; then name only (display name kept);
	// the ID in hex works too.
	want(run(t, pin, "creds", "rename", alice.CredentialID, "--name", "alice2", "--display-name", "Alice Two"), 0, "")
	want(run(t, pin, "creds", "rename", "--name", "bobby", hex.EncodeToString(ids["bob"])), 0, "")
	users := byUser(list())
	if a := users["alice2"]; a.DisplayName != "Alice Two" || a.UserID != alice.UserID || a.CredentialID != alice.CredentialID {
		t.Errorf("after rename: %+v", users)
	}
	if b := users["bobby"]; b.DisplayName != "Display bob" {
		t.Errorf("rename without --display-name changed it: %+v", b)
	}
	want(run(t, pin, "creds", "rename", "AAAA", "--name", "x"), cli.ExitNotFound, "no such credential")
	want(run(t, pin, "creds", "rename", alice.CredentialID), cli.ExitUsage, "--name is required")
	want(run(t, pin, "creds", "rename", "!!", "--name", "x"), cli.ExitUsage, "not base64url")

	// Delete, by standard base64.
	r = run(t, pin, "creds", "delete", base64.StdEncoding.EncodeToString(ids["carol"]), "--json")
	want(r, 0, "")
	var del struct {
		Deleted credJSON `json:"deleted"`
	}
	decodeJSON(t, r.stdout, &del)
	if del.Deleted.UserName != "carol" || del.Deleted.RPID != "other.example" {
		t.Errorf("delete --json: %s", r.stdout)
	}
	want(run(t, pin, "creds", "delete", base64.RawURLEncoding.EncodeToString(ids["carol"])), cli.ExitNotFound, "no such credential")
	if l := list(); l.Existing != 2 {
		t.Errorf("after delete: %+v", l)
	}

	// Wrong PINs: 3 in a row block until a power cycle.
	want(run(t, wrongPIN, "creds", "list"), cli.ExitWrongPIN, "wrong PIN, 7 retries left")
	r = run(t, wrongPIN, "creds", "list", "--json")
	want(r, cli.ExitWrongPIN, "wrong PIN, 6 retries left")
	var je jsonError
	decodeJSON(t, r.stdout, &je)
	if je.ExitCode != cli.ExitWrongPIN || je.Status != "PIN_INVALID" || je.Retries == nil || *je.Retries != 6 {
		t.Errorf("--json error: %s", r.stdout)
	}
	want(run(t, wrongPIN, "creds", "list"), cli.ExitPINBlocked, "too many wrong PINs; power-cycle the virtual key: kill -USR1")
	want(run(t, pin, "creds", "list"), cli.ExitPINBlocked, "power-cycle the virtual key")
	reboot(t, addr)
	if l := list(); l.Existing != 2 {
		t.Errorf("after the power cycle: %+v", l)
	}
	r = run(t, noPIN, "info", "--json")
	decodeJSON(t, r.stdout, &info)
	if info.PINRetries == nil || *info.PINRetries != 8 {
		t.Errorf("retries after the right PIN: %v", info.PINRetries)
	}

	// Change the PIN, wrong current PIN first.
	want(run(t, map[string]string{"VIRTKEY_DEVICE": dev, "VIRTKEY_PIN": "9999", "VIRTKEY_NEW_PIN": "4321"}, "pin", "change"), cli.ExitWrongPIN, "wrong PIN, 7 retries left")
	want(run(t, map[string]string{"VIRTKEY_DEVICE": dev, "VIRTKEY_PIN": "1234", "VIRTKEY_NEW_PIN": "4321"}, "pin", "change"), 0, "")
	pin["VIRTKEY_PIN"] = "4321"

	// Config.
	r = run(t, pin, "config", "always-uv", "on", "--json")
	want(r, 0, "")
	if !strings.Contains(r.stdout, `"alwaysUv": true`) {
		t.Errorf("always-uv on: %s", r.stdout)
	}
	want(run(t, pin, "config", "always-uv", "off"), 0, "")
	r = run(t, pin, "config", "min-pin-length", "6", "--rp", "example.com", "--rp", "other.example", "--json")
	want(r, 0, "")
	var mpl struct {
		MinPINLength   uint     `json:"minPINLength"`
		RPIDs          []string `json:"rpIds"`
		ForcePINChange bool     `json:"forcePINChange"`
	}
	decodeJSON(t, r.stdout, &mpl)
	if mpl.MinPINLength != 6 || len(mpl.RPIDs) != 2 || !mpl.ForcePINChange {
		t.Errorf("min-pin-length: %s", r.stdout) // the 4-digit PIN is now too short: change forced
	}
	want(run(t, pin, "config", "min-pin-length", "5"), cli.ExitFailure, "can only grow")
	want(run(t, pin, "creds", "list"), cli.ExitFailure, "virtkey pin change")
	want(run(t, map[string]string{"VIRTKEY_DEVICE": dev, "VIRTKEY_PIN": "4321", "VIRTKEY_NEW_PIN": "54321"}, "pin", "change"), cli.ExitFailure, "at least 6")
	want(run(t, map[string]string{"VIRTKEY_DEVICE": dev, "VIRTKEY_PIN": "4321", "VIRTKEY_NEW_PIN": "654321"}, "pin", "change"), 0, "")
	pin["VIRTKEY_PIN"] = "654321"
	wrongPIN["VIRTKEY_PIN"] = "000000"

	// Block the PIN for good: 8 wrong PINs, power-cycling after every third.
	for i := 1; i <= 8; i++ {
		r := run(t, wrongPIN, "creds", "list")
		switch {
		case i == 8:
			want(r, cli.ExitPINBlocked, "the PIN is blocked")
		case i%3 == 0:
			want(r, cli.ExitPINBlocked, "too many wrong PINs")
			reboot(t, addr)
		default:
			want(r, cli.ExitWrongPIN, "wrong PIN")
		}
	}
	want(run(t, pin, "creds", "list"), cli.ExitPINBlocked, "the PIN is blocked")

	// Reset recovers (no terminal: no confirmation question).
	r = run(t, noPIN, "reset", "--json")
	want(r, 0, "")
	r = run(t, noPIN, "info", "--json")
	decodeJSON(t, r.stdout, &info)
	if info.PINSet || info.MinPINLength != 4 {
		t.Errorf("after reset: %+v", info)
	}
	want(run(t, pin, "pin", "set"), 0, "")
	if l := list(); l.Existing != 0 || len(l.Credentials) != 0 {
		t.Errorf("after reset: %+v", l)
	}

	// Usage errors.
	want(run(t, pin, "config", "always-uv", "maybe"), cli.ExitUsage, "want on or off")
	want(run(t, pin, "creds", "frobnicate"), cli.ExitUsage, "unknown subcommand")
	want(run(t, pin, "creds", "delete"), cli.ExitUsage, "want one CRED-ID")
	want(run(t, nil, "--device", "bogus", "info"), cli.ExitUsage, "want udp:HOST:PORT")
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("parsing JSON output %q: %v", s, err)
	}
}

// reboot power-cycles the UDP key at addr with the magic reboot datagram
// and waits until it answers again.
func reboot(t *testing.T, addr string) {
	t.Helper()
	conn, err := udp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Reboot(); err != nil {
		t.Fatal(err)
	}
	if _, err := vktest.Dial(t, addr).GetInfo(context.Background()); err != nil {
		t.Fatal(err)
	}
}
