package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// serveUDPKey serves an in-process virtual key on a free loopback UDP port
// and returns its address.
func serveUDPKey(t *testing.T, mod ...func(*ctap2.Config)) string {
	t.Helper()
	dir := t.TempDir()
	keys, err := tpmkeys.OpenSoftware(dir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := ctap2.Config{KeyStore: keys, Store: db}
	for _, m := range mod {
		m(&cfg)
	}
	auth, err := ctap2.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := udp.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { conn.Serve(ctx, auth, nil); close(done) }()
	t.Cleanup(func() { cancel(); conn.Close(); <-done; db.Close() })
	return conn.Addr().String()
}

// runInProcess runs a management command in this process, with the exit
// code and stderr message main would produce.
func runInProcess(t *testing.T, env map[string]string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr strings.Builder
	m := &manager{
		stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		getenv:  func(k string) string { return env[k] },
		openTTY: func() (*os.File, error) { return nil, errors.New("no terminal in tests") },
	}
	err := m.run(context.Background(), args)
	code := 0
	if err != nil {
		code = exitFailure
		var ee *exitError
		switch {
		case errors.Is(err, errUsage):
			code = exitUsage
		case errors.As(err, &ee):
			code = ee.code
		}
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(&stderr, "virtkey:", err)
		}
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// TestManageInProcess runs the management scenario against an in-process
// key over loopback UDP.
func TestManageInProcess(t *testing.T) {
	t.Parallel()
	manageScenario(t, serveUDPKey(t), runInProcess)
}

// TestTouchPrompt checks that the user is asked to touch the key while it
// waits for presence (CTAPHID KEEPALIVE with UPNEEDED).
func TestTouchPrompt(t *testing.T) {
	t.Parallel()
	addr := serveUDPKey(t, func(c *ctap2.Config) {
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
	if r.code != 0 || strings.Count(r.stderr, "Touch your security key") != 1 {
		t.Errorf("exit %d, stderr %q; want one touch prompt", r.code, r.stderr)
	}
}

func TestNoDevice(t *testing.T) {
	t.Parallel()
	// Nothing listens on this port: the INIT times out (or is refused).
	conn, err := udp.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.Addr().String()
	conn.Close()
	r := runInProcess(t, nil, "info", "--device", "udp:"+addr)
	if r.code != exitNoDevice || !strings.Contains(r.stderr, "no FIDO key answers at udp:"+addr) {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestIsManageCommand(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"info": true, "pin": true, "creds": true, "reset": true, "config": true,
		"--device": true, "-device": true, "--device=udp:x:1": true, "--json": true,
		"run": false, "help": false, "--devices": false, "ctl": false, "device": false,
	} {
		if got := isManageCommand(name); got != want {
			t.Errorf("isManageCommand(%q) = %v", name, got)
		}
	}
}

func TestParseArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		dashIDs bool
		pos     []string
		name    string
	}{
		{[]string{"ID", "--name", "n"}, true, []string{"ID"}, "n"},
		{[]string{"--name", "n", "ID"}, true, []string{"ID"}, "n"},
		{[]string{"--name=n", "-xYz_", "--json"}, true, []string{"-xYz_"}, "n"},
		{[]string{"--name", "n", "--", "--json"}, false, []string{"--json"}, "n"},
		{[]string{"a", "b"}, false, []string{"a", "b"}, ""},
	} {
		m := &manager{stderr: &strings.Builder{}}
		fs := m.flagSet("t", "t")
		name := fs.String("name", "", "")
		pos, err := parseArgs(fs, tc.args, tc.dashIDs)
		if err != nil || !slices.Equal(pos, tc.pos) || *name != tc.name {
			t.Errorf("parseArgs(%q) = %q, name %q, %v; want %q, %q", tc.args, pos, *name, err, tc.pos, tc.name)
		}
	}
	m := &manager{stderr: &strings.Builder{}}
	if _, err := parseArgs(m.flagSet("t", "t"), []string{"-nope"}, false); !errors.Is(err, errUsage) {
		t.Errorf("unknown flag: %v", err)
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
	five, zero := 5, 0
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{&client.PINError{Status: ctap2.ErrPINInvalid, Retries: 1}, exitWrongPIN, "wrong PIN, 1 retry left"},
		{&client.PINError{Status: ctap2.ErrPINInvalid, Retries: -1}, exitWrongPIN, "wrong PIN"},
		{&client.PINError{Status: ctap2.ErrPINAuthBlocked, Retries: five}, exitPINBlocked, "too many wrong PINs; remove and reinsert the key (5 retries left)"},
		{&client.PINError{Status: ctap2.ErrPINBlocked, Retries: zero}, exitPINBlocked, "the PIN is blocked"},
		{fmt.Errorf("x: %w", ctap2.ErrPINBlocked), exitPINBlocked, "the PIN is blocked"},
		{fmt.Errorf("x: %w", ctap2.ErrNoCredentials), exitNotFound, "no such credential"},
		{fmt.Errorf("x: %w", ctap2.ErrPINNotSet), exitPINNeeded, "no PIN is set"},
		{fmt.Errorf("credential management: %w", client.ErrNotSupported), exitUnsupported, "this key does not support credential management"},
		{fmt.Errorf("x: %w", ctap2.ErrInvalidCommand), exitUnsupported, "does not support"},
		{fmt.Errorf("x: %w", ctap2.ErrUserActionTimeout), exitFailure, "not touched in time"},
		{fmt.Errorf("x: %w", ctap2.StatusCode(0xF3)), exitFailure, "the key refused"},
		{errors.New("boom"), exitFailure, "boom"},
	} {
		e := explain(tc.err)
		if e.code != tc.code || !strings.Contains(e.msg, tc.msg) {
			t.Errorf("explain(%v) = %d %q; want %d %q", tc.err, e.code, e.msg, tc.code, tc.msg)
		}
	}
}
