package manage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/cli"
	"github.com/virtkey/virtkey/internal/testkit"
	"github.com/virtkey/virtkey/internal/vktest"
)

// result is what one in-process run of a management command produced.
type result struct {
	stdout, stderr string
	err            error
}

// runInProcess runs a management command in this process with env as the
// environment and no terminal.
func runInProcess(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr strings.Builder
	err := Run(context.Background(), Env{
		Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
		Getenv:  func(k string) string { return env[k] },
		OpenTTY: func() (*os.File, error) { return nil, errors.New("no terminal in tests") },
	}, args)
	return result{stdout.String(), stderr.String(), err}
}

// TestTouchPrompt checks that the user is asked to touch the key while it
// waits for presence (CTAPHID KEEPALIVE with UPNEEDED).
func TestTouchPrompt(t *testing.T) {
	t.Parallel()
	addr := vktest.ServeUDP(t, func(c *ctap2.Config) {
		c.Presence = ctap2.PresenceFunc(func(ctx context.Context, _ ctap2.PresenceRequest) error {
			select {
			case <-time.After(300 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	})
	r := runInProcess(t, nil, "reset", "--device", "udp:"+addr)
	if r.err != nil || strings.Count(r.stderr, "Touch your security key") != 1 {
		t.Errorf("%v, stderr %q; want one touch prompt", r.err, r.stderr)
	}
}

// The walk from words to a command: common flags anywhere, unknown words
// and missing ones explained, with the usage of the group.
func TestDispatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"--json"}, "virtkey: want a command: info, pin, creds, reset or config\nusage: virtkey [--device D] [--json] COMMAND\n  virtkey info\n"},
		{[]string{"creds"}, "virtkey: creds: want list, rename or delete\nusage: virtkey creds COMMAND [--device D] [--json]\n  virtkey creds list [--rp ID]\n  virtkey creds rename CRED-ID --name N [--display-name D]\n  virtkey creds delete CRED-ID\n"},
		{[]string{"--json", "creds", "--device", "udp:x:1", "frob"}, "virtkey: creds: unknown subcommand \"frob\" (want list, rename or delete)\n"},
		{[]string{"pin", "set", "extra"}, "virtkey: pin set: unexpected argument \"extra\"\nusage: virtkey pin set [--device D] [--json]\n"},
		{[]string{"config", "always-uv", "maybe", "--json"}, "virtkey: config always-uv: want on or off\n"},
		{[]string{"config", "min-pin-length", "64"}, "virtkey: config min-pin-length: N must be a number from 4 to 63\n"},
		{[]string{"creds", "rename", "-AAA"}, "virtkey: creds rename: --name is required\n"},
		{[]string{"creds", "delete", "!!"}, "virtkey: creds delete: credential ID \"!!\" is not base64url, base64 or hex\n"},
		{[]string{"info", "--nope"}, "flag provided but not defined: -nope\nusage: virtkey info [--device D] [--json]\n"},
	} {
		r := runInProcess(t, nil, tc.args...)
		if !errors.Is(r.err, cli.ErrUsage) || !strings.HasPrefix(r.stderr, tc.stderr) {
			t.Errorf("%q: %v, stderr\n%s\nwant it to start with\n%s", tc.args, r.err, r.stderr, tc.stderr)
		}
	}
}

func TestNoDevice(t *testing.T) {
	t.Parallel()
	addr := vktest.FreeUDPAddr(t) // nothing listens: the INIT times out (or is refused)
	r := runInProcess(t, nil, "info", "--device", "udp:"+addr)
	if cli.ExitCode(r.err) != cli.ExitNoDevice || !strings.Contains(r.err.Error(), "no FIDO key answers at udp:"+addr) {
		t.Errorf("exit %d, %v", cli.ExitCode(r.err), r.err)
	}
}

func TestCredIDCandidates(t *testing.T) {
	t.Parallel()
	id := []byte{0xfb, 0xff, 0x01, 0x02, 0x03}
	for _, s := range []string{"-_8BAgM", "-_8BAgM=", "+/8BAgM=", "+/8BAgM", "fbff010203"} {
		found := false
		for _, c := range credIDCandidates(s) {
			found = found || string(c) == string(id)
		}
		if !found {
			t.Errorf("credIDCandidates(%q) = %x lacks %x", s, credIDCandidates(s), id)
		}
	}
	if c := credIDCandidates("!!"); len(c) != 0 {
		t.Errorf("credIDCandidates(!!) = %x", c)
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	const replug = "remove and reinsert the key"
	five, zero := 5, 0
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{&client.PINError{Status: ctap2.ErrPINInvalid, Retries: 1}, cli.ExitWrongPIN, "wrong PIN, 1 retry left"},
		{&client.PINError{Status: ctap2.ErrPINInvalid, Retries: -1}, cli.ExitWrongPIN, "wrong PIN"},
		{&client.PINError{Status: ctap2.ErrPINAuthBlocked, Retries: five}, cli.ExitPINBlocked, "too many wrong PINs; remove and reinsert the key (5 retries left)"},
		{&client.PINError{Status: ctap2.ErrPINBlocked, Retries: zero}, cli.ExitPINBlocked, "the PIN is blocked"},
		{fmt.Errorf("x: %w", ctap2.ErrPINBlocked), cli.ExitPINBlocked, "the PIN is blocked"},
		{fmt.Errorf("x: %w", ctap2.ErrNoCredentials), cli.ExitNotFound, "no such credential"},
		{fmt.Errorf("x: %w", ctap2.ErrPINNotSet), cli.ExitPINNeeded, "no PIN is set"},
		{fmt.Errorf("credential management: %w", client.ErrNotSupported), cli.ExitUnsupported, "the key does not support this: credential management: not supported"},
		{unsupported("credential management"), cli.ExitUnsupported, "this key does not support credential management"},
		{fmt.Errorf("x: %w", ctap2.ErrInvalidCommand), cli.ExitUnsupported, "does not support"},
		{fmt.Errorf("x: %w", ctap2.ErrUserActionTimeout), cli.ExitFailure, "not touched in time"},
		{fmt.Errorf("x: %w", ctap2.StatusCode(0xF3)), cli.ExitFailure, "the key refused"},
		{errors.New("boom"), cli.ExitFailure, "boom"},
	} {
		e := explain(tc.err, replug)
		if e.code != tc.code || !strings.Contains(e.msg, tc.msg) {
			t.Errorf("explain(%v) = %d %q; want %d %q", tc.err, e.code, e.msg, tc.code, tc.msg)
		}
	}
}

// TestRefuseAnotherUsersSocket: while the key is down another user
// (nobody) holds its port; the CLI refuses to talk to it before sending
// anything (a PIN would follow).
func TestRefuseAnotherUsersSocket(t *testing.T) {
	addr := vktest.FreeUDPAddr(t)
	probe := testkit.ListenProbe(t, addr)
	r := runInProcess(t, map[string]string{envPIN: "123456"}, "pin", "change", "--device", "udp:"+addr)
	if cli.ExitCode(r.err) != cli.ExitNoDevice || r.err == nil || !strings.Contains(r.err.Error(), "belongs to uid 65534") {
		t.Errorf("exit %d, %v; want a refusal naming nobody's uid", cli.ExitCode(r.err), r.err)
	}
	if b, ok := probe.Recv(300 * time.Millisecond); ok {
		t.Fatalf("nobody's socket received % X", b[:min(len(b), 8)])
	}
}

// TestCredsListHostileNames: a relying party chooses the RP ID, user name
// and display name a passkey carries. "creds list" and "creds delete"
// print them escaped — no terminal escape, control or bidi character
// reaches the screen and every passkey stays on its own line and columns —
// while --json carries them exactly.
func TestCredsListHostileNames(t *testing.T) {
	t.Parallel()
	addr := vktest.ServeUDP(t, nil)
	env := map[string]string{"VIRTKEY_PIN": "1234"}
	dev := "udp:" + addr
	if r := runInProcess(t, env, "pin", "set", "--device", dev); r.err != nil {
		t.Fatalf("pin set: %v %s", r.err, r.stderr)
	}
	d, closeConn, err := vktest.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	ctx := context.Background()
	const (
		rp          = "evil.example"
		name        = "\x1b]0;pwned\x07alice\nroot\tx"
		displayName = "\u202egnp.exe\u009b31m\x7f"
	)
	tok, err := d.GetPINToken(ctx, "1234", client.PermMakeCredential, rp)
	if err != nil {
		t.Fatal(err)
	}
	alg, rk := int64(-7), true
	if _, err := d.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
		ClientDataHash:   make([]byte, 32),
		RP:               &ctap2.RPEntity{ID: rp},
		User:             &ctap2.UserEntity{ID: []byte{1}, Name: name, DisplayName: displayName},
		PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
		Options:          &ctap2.RequestOptions{RK: &rk},
	}, tok); err != nil {
		t.Fatal(err)
	}
	clean := func(what, out string) {
		t.Helper()
		for _, r := range strings.TrimSuffix(out, "\n") {
			if r == '\n' {
				continue
			}
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' {
				t.Errorf("%s prints %U: %q", what, r, out)
			}
		}
	}
	r := runInProcess(t, env, "creds", "list", "--device", dev)
	if r.err != nil {
		t.Fatalf("creds list: %v %s", r.err, r.stderr)
	}
	clean("creds list", r.stdout)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 4 || !strings.Contains(lines[1], `\x1b]0;pwned\aalice\nroot\tx  \u202egnp.exe\u009b31m\x7f`) {
		t.Errorf("creds list: want a header, one passkey line with the names escaped, a blank line and the total; got %q", r.stdout)
	}
	r = runInProcess(t, env, "creds", "list", "--json", "--device", dev)
	if r.err != nil || !strings.Contains(r.stdout, `"userName": "\u001b]0;pwned\u0007alice\nroot\tx"`) {
		t.Errorf("creds list --json: %v; want the exact name in JSON; got %s", r.err, r.stdout)
	}
	var id string
	if f := strings.Fields(strings.Split(runInProcess(t, env, "creds", "list", "--device", dev).stdout, "\n")[1]); len(f) > 0 {
		id = f[len(f)-1]
	}
	r = runInProcess(t, env, "creds", "delete", id, "--device", dev)
	if r.err != nil {
		t.Fatalf("creds delete %s: %v %s", id, r.err, r.stderr)
	}
	clean("creds delete", r.stdout)
}
