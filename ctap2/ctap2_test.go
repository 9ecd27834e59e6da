package ctap2

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/virtkey/virtkey/cose"
)

type testKey struct {
	*Authenticator
	store *memStore
	keys  *memKeys
	now   time.Time
}

func newTestKey(t testing.TB, mod ...func(*Config)) *testKey {
	t.Helper()
	tk := &testKey{store: newMemStore(), keys: newMemKeys(), now: time.Unix(1_700_000_000, 0)}
	cfg := Config{KeyStore: tk.keys, Store: tk.store, Now: func() time.Time { return tk.now }}
	for _, m := range mod {
		m(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tk.Authenticator = a
	return tk
}

func mustEncode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (tk *testKey) call(t testing.TB, cmd byte, params any) (StatusCode, []byte) {
	t.Helper()
	var p []byte
	if params != nil {
		p = mustEncode(t, params)
	}
	return tk.Transact(context.Background(), cmd, p)
}

var cdh = bytes.Repeat([]byte{0xCD}, 32)

func mcParams(rp string, userID []byte, name string, rk bool, algs ...int) map[int]any {
	if len(algs) == 0 {
		algs = []int{-7}
	}
	var params []map[string]any
	for _, a := range algs {
		params = append(params, map[string]any{"type": "public-key", "alg": a})
	}
	m := map[int]any{
		1: cdh,
		2: map[string]any{"id": rp, "name": rp},
		3: map[string]any{"id": userID, "name": name, "displayName": "Display " + name},
		4: params,
	}
	if rk {
		m[7] = map[string]bool{"rk": true}
	}
	return m
}

// callOK sends command cmd with params, requires StatusOK and decodes the
// response into resp.
func (tk *testKey) callOK(t testing.TB, cmd byte, params map[int]any, resp any) {
	t.Helper()
	st, out := tk.call(t, cmd, params)
	if st != StatusOK {
		t.Fatalf("command %#x: %v", cmd, st)
	}
	if err := decode(out, resp); err != nil {
		t.Fatalf("command %#x: decode response: %v", cmd, err)
	}
}

// info is the key's getInfo; the test stops on an error.
func (tk *testKey) info(t testing.TB) *GetInfoResponse {
	t.Helper()
	info, err := tk.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// mustParseAuthData parses authenticator data or stops the test.
func mustParseAuthData(t testing.TB, raw []byte) *AuthData {
	t.Helper()
	ad, err := ParseAuthData(raw)
	if err != nil {
		t.Fatalf("authenticator data: %v", err)
	}
	return ad
}

func (tk *testKey) makeCred(t testing.TB, params map[int]any) (*MakeCredentialResponse, *AuthData) {
	t.Helper()
	var resp MakeCredentialResponse
	tk.callOK(t, CmdMakeCredential, params, &resp)
	return &resp, mustParseAuthData(t, resp.AuthData)
}

func verifySig(t testing.TB, coseKey []byte, msg, sig []byte) {
	t.Helper()
	pub, _, err := cose.DecodePublicKey(coseKey)
	if err != nil {
		t.Fatal(err)
	}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(p, d[:], sig) {
			t.Fatal("ES256 signature does not verify")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(p, msg, sig) {
			t.Fatal("EdDSA signature does not verify")
		}
	default:
		t.Fatalf("unexpected key %T", pub)
	}
}

func TestMakeCredentialAndAssert(t *testing.T) {
	t.Parallel()
	for _, alg := range []int{-7, -8} {
		tk := newTestKey(t)
		resp, ad := tk.makeCred(t, mcParams("example.com", []byte("u1"), "alice", false, -257, alg))
		if resp.Fmt != "packed" {
			t.Fatalf("fmt %q", resp.Fmt)
		}
		if ad.Flags&(FlagUP|FlagAT) != FlagUP|FlagAT || ad.RPIDHash != [32]byte(rpHash("example.com")) {
			t.Fatalf("authData flags %x", ad.Flags)
		}
		if ad.AAGUID != DefaultAAGUID {
			t.Fatal("aaguid")
		}
		verifySig(t, ad.PublicKey, append(bytes.Clone(resp.AuthData), cdh...), resp.AttStmt["sig"].([]byte))
		if got := resp.AttStmt["alg"]; got != int64(alg) {
			t.Fatalf("attStmt alg %v", got)
		}
		last := ad.SignCount
		for i := 0; i < 3; i++ {
			ga, gad := tk.assertOK(t, map[int]any{1: "example.com", 2: cdh,
				3: []map[string]any{{"type": "public-key", "id": ad.CredentialID}}})
			if gad.SignCount <= last {
				t.Fatalf("counter did not increase: %d after %d", gad.SignCount, last)
			}
			last = gad.SignCount
			verifySig(t, ad.PublicKey, append(bytes.Clone(ga.AuthData), cdh...), ga.Signature)
			if ga.User != nil {
				t.Fatal("non-resident credential returned a user")
			}
		}
		// Another RP cannot use it.
		st, _ := tk.call(t, CmdGetAssertion, map[int]any{1: "evil.com", 2: cdh,
			3: []map[string]any{{"type": "public-key", "id": ad.CredentialID}}})
		if st != ErrNoCredentials {
			t.Fatalf("other RP: %v", st)
		}
	}
}

func TestDiscoverableNewestFirstAndNext(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	tk.makeCred(t, mcParams("example.com", []byte("u1"), "alice", true))
	tk.now = tk.now.Add(time.Second)
	_, adBob := tk.makeCred(t, mcParams("example.com", []byte("u2"), "bob", true))
	tk.makeCred(t, mcParams("other.com", []byte("u3"), "carol", true))

	ga, _ := tk.assertOK(t, map[int]any{1: "example.com", 2: cdh})
	if ga.NumberOfCredentials != 2 || !bytes.Equal(ga.Credential.ID, adBob.CredentialID) || string(ga.User.ID) != "u2" {
		t.Fatalf("first: n=%d user=%q", ga.NumberOfCredentials, ga.User.ID)
	}
	if ga.User.Name != "" {
		t.Fatal("user name returned without UV")
	}
	// getNextAssertion from another channel is refused and ends the sequence.
	if st, _ := tk.HandleCBOROn(7, CmdGetNextAssertion); st != ErrNotAllowed {
		t.Fatalf("GNA other channel: %v", st)
	}
	tk.assertOK(t, map[int]any{1: "example.com", 2: cdh})
	ga = &GetAssertionResponse{}
	tk.callOK(t, CmdGetNextAssertion, nil, ga)
	if string(ga.User.ID) != "u1" || ga.NumberOfCredentials != 0 {
		t.Fatalf("next: user %q n=%d", ga.User.ID, ga.NumberOfCredentials)
	}
	if st, _ := tk.call(t, CmdGetNextAssertion, nil); st != ErrNotAllowed {
		t.Fatalf("GNA past the end: %v", st)
	}
	// Expiry after 30 s, and any other command in between, end the sequence.
	tk.call(t, CmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
	tk.now = tk.now.Add(31 * time.Second)
	if st, _ := tk.call(t, CmdGetNextAssertion, nil); st != ErrNotAllowed {
		t.Fatalf("GNA after 31 s: %v", st)
	}
	tk.call(t, CmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
	tk.call(t, CmdGetInfo, nil)
	if st, _ := tk.call(t, CmdGetNextAssertion, nil); st != ErrNotAllowed {
		t.Fatalf("GNA after getInfo: %v", st)
	}
	tk.call(t, CmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
	tk.PowerCycle()
	if st, _ := tk.call(t, CmdGetNextAssertion, nil); st != ErrNotAllowed {
		t.Fatalf("GNA after power cycle: %v", st)
	}
}

// HandleCBOROn sends a parameterless command on channel cid.
func (tk *testKey) HandleCBOROn(cid uint32, cmd byte) (StatusCode, []byte) {
	out := tk.HandleCBOR(context.Background(), cid, []byte{cmd}, nil)
	return StatusCode(out[0]), out[1:]
}

func TestResidentReplaceExcludeAndReset(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t, func(c *Config) { c.MaxResidentCredentials = 2; c.ResetWindow = 10 * time.Second })
	_, ad1 := tk.makeCred(t, mcParams("example.com", []byte("u1"), "alice", true))
	_, ad2 := tk.makeCred(t, mcParams("example.com", []byte("u1"), "alice2", true)) // same user: replaces
	if n, _ := tk.store.CountCredentials(); n != 1 {
		t.Fatalf("same user id must replace: %d records", n)
	}
	// The replaced resident credential no longer signs even though its ID opens.
	st, _ := tk.call(t, CmdGetAssertion, map[int]any{1: "example.com", 2: cdh,
		3: []map[string]any{{"type": "public-key", "id": ad1.CredentialID}}})
	if st != ErrNoCredentials {
		t.Fatalf("replaced credential: %v", st)
	}
	p := mcParams("example.com", []byte("u9"), "x", false)
	p[5] = []map[string]any{{"type": "public-key", "id": ad2.CredentialID}}
	if st, _ := tk.call(t, CmdMakeCredential, p); st != ErrCredentialExcluded {
		t.Fatalf("excluded: %v", st)
	}
	tk.makeCred(t, mcParams("b.com", []byte("u2"), "b", true))
	if st, _ := tk.call(t, CmdMakeCredential, mcParams("c.com", []byte("u3"), "c", true)); st != ErrKeyStoreFull {
		t.Fatalf("full: %v", st)
	}
	info := tk.info(t)
	if *info.RemainingDiscoverableCredentials != 0 {
		t.Fatal("remaining should be 0")
	}
	tk.now = tk.now.Add(11 * time.Second)
	if st, _ := tk.call(t, CmdReset, nil); st != ErrNotAllowed {
		t.Fatalf("reset outside window: %v", st)
	}
	tk.PowerCycle()
	if st, _ := tk.call(t, CmdReset, nil); st != StatusOK {
		t.Fatalf("reset: %v", st)
	}
	if n, _ := tk.store.CountCredentials(); n != 0 {
		t.Fatal("reset left credentials")
	}
}

func TestPresence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want StatusCode
	}{
		{"declined", ErrDeclined, ErrOperationDenied},
		{"timeout", context.DeadlineExceeded, ErrUserActionTimeout},
		{"cancel", context.Canceled, ErrKeepaliveCancel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var asked []PresenceRequest
			tk := newTestKey(t, func(c *Config) {
				c.Presence = PresenceFunc(func(_ context.Context, r PresenceRequest) error { asked = append(asked, r); return tc.err })
			})
			if st, _ := tk.call(t, CmdMakeCredential, mcParams("example.com", []byte("u"), "n", true)); st != tc.want {
				t.Fatalf("makeCredential: %v, want %v", st, tc.want)
			}
			if st, _ := tk.call(t, CmdSelection, nil); st != tc.want {
				t.Fatalf("selection: %v", st)
			}
			if st, _ := tk.call(t, CmdReset, nil); st != tc.want {
				t.Fatalf("reset: %v", st)
			}
			if len(asked) != 3 || asked[0].RPID != "example.com" || asked[0].Op != "makeCredential" {
				t.Fatalf("presence requests: %+v", asked)
			}
			if n, _ := tk.store.CountCredentials(); n != 0 {
				t.Fatal("declined makeCredential stored a credential")
			}
		})
	}
	// Keepalive UPNEEDED is raised while waiting.
	tk := newTestKey(t, func(c *Config) {
		c.Presence = PresenceFunc(func(context.Context, PresenceRequest) error { return nil })
	})
	var states []byte
	tk.HandleCBOR(context.Background(), 1, []byte{CmdSelection}, func(s byte) { states = append(states, s) })
	if !bytes.Equal(states, []byte{2, 1}) {
		t.Fatalf("keepalive states %v", states)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	good := mcParams("example.com", []byte("u"), "n", false)
	with := func(k int, v any) map[int]any {
		m := map[int]any{}
		for kk, vv := range good {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	raw := func(b ...byte) []byte { return b }
	tests := []struct {
		name   string
		cmd    byte
		params []byte
		want   StatusCode
	}{
		{"unknown command", 0x55, nil, ErrInvalidCommand},
		{"truncated cbor", CmdMakeCredential, raw(0xA1, 0x01), ErrInvalidCBOR},
		{"trailing bytes", CmdGetAssertion, raw(0xA0, 0x00), ErrInvalidCBOR},
		{"not a map", CmdMakeCredential, raw(0x80), ErrCBORUnexpectedType},
		{"indefinite map", CmdMakeCredential, raw(0xBF, 0xFF), ErrInvalidCBOR},
		{"tagged", CmdMakeCredential, raw(0xC1, 0xA0), ErrInvalidCBOR},
		{"duplicate key", CmdGetAssertion, raw(0xA2, 0x01, 0x61, 0x61, 0x01, 0x61, 0x62), ErrInvalidCBOR},
		{"too deep", CmdMakeCredential, raw(0xA1, 0x06, 0xA1, 0x61, 0x78, 0x81, 0x81, 0x81, 0x00), ErrInvalidCBOR},
		{"empty mc", CmdMakeCredential, nil, ErrInvalidCBOR},
		{"empty map mc", CmdMakeCredential, raw(0xA0), ErrMissingParameter},
		{"missing cdh", CmdMakeCredential, mustEncode(t, with(1, nil)), ErrMissingParameter},
		{"missing rp", CmdMakeCredential, mustEncode(t, with(2, nil)), ErrMissingParameter},
		{"missing user", CmdMakeCredential, mustEncode(t, with(3, nil)), ErrMissingParameter},
		{"missing params", CmdMakeCredential, mustEncode(t, with(4, nil)), ErrMissingParameter},
		{"rp is text", CmdMakeCredential, mustEncode(t, with(2, "example.com")), ErrCBORUnexpectedType},
		{"rp id is int", CmdMakeCredential, mustEncode(t, with(2, map[string]any{"id": 5})), ErrCBORUnexpectedType},
		{"user id is text", CmdMakeCredential, mustEncode(t, with(3, map[string]any{"id": "u"})), ErrCBORUnexpectedType},
		{"user id missing", CmdMakeCredential, mustEncode(t, with(3, map[string]any{"name": "u"})), ErrMissingParameter},
		{"user id too long", CmdMakeCredential, mustEncode(t, with(3, map[string]any{"id": make([]byte, 65)})), ErrInvalidParameter},
		{"cdh is text", CmdMakeCredential, mustEncode(t, with(1, "x")), ErrCBORUnexpectedType},
		{"alg is text", CmdMakeCredential, mustEncode(t, with(4, []map[string]any{{"type": "public-key", "alg": "ES256"}})), ErrCBORUnexpectedType},
		{"alg missing", CmdMakeCredential, mustEncode(t, with(4, []map[string]any{{"type": "public-key"}})), ErrMissingParameter},
		{"unsupported alg", CmdMakeCredential, mustEncode(t, with(4, []map[string]any{{"type": "public-key", "alg": -257}})), ErrUnsupportedAlgorithm},
		{"option not bool", CmdMakeCredential, mustEncode(t, with(7, map[string]any{"rk": 1})), ErrCBORUnexpectedType},
		{"up false", CmdMakeCredential, mustEncode(t, with(7, map[string]any{"up": false})), ErrInvalidOption},
		{"uv true", CmdMakeCredential, mustEncode(t, with(7, map[string]any{"uv": true})), ErrInvalidOption},
		{"pinUvAuthParam without protocol", CmdMakeCredential, mustEncode(t, with(8, []byte{1, 2})), ErrMissingParameter},
		{"bad pin protocol", CmdMakeCredential, mustEncode(t, map[int]any{1: cdh, 2: good[2], 3: good[3], 4: good[4], 8: []byte{1}, 9: 7}), ErrInvalidParameter},
		{"extensions not a map", CmdMakeCredential, mustEncode(t, with(6, 1)), ErrCBORUnexpectedType},
		{"exclude list too long", CmdMakeCredential, mustEncode(t, with(5, make([]map[string]any, 33))), ErrLimitExceeded},
		{"ga missing rp", CmdGetAssertion, mustEncode(t, map[int]any{2: cdh}), ErrMissingParameter},
		{"ga missing cdh", CmdGetAssertion, mustEncode(t, map[int]any{1: "a"}), ErrMissingParameter},
		{"ga rk option", CmdGetAssertion, mustEncode(t, map[int]any{1: "a", 2: cdh, 5: map[string]bool{"rk": true}}), ErrUnsupportedOption},
		{"ga allow entry not a map", CmdGetAssertion, mustEncode(t, map[int]any{1: "a", 2: cdh, 3: []int{1}}), ErrCBORUnexpectedType},
		{"ga allow entry without id", CmdGetAssertion, mustEncode(t, map[int]any{1: "a", 2: cdh, 3: []map[string]any{{"type": "public-key"}}}), ErrMissingParameter},
		{"ga nothing", CmdGetAssertion, mustEncode(t, map[int]any{1: "a", 2: cdh}), ErrNoCredentials},
		{"huge array", CmdGetAssertion, append(raw(0xA3, 0x01, 0x61, 0x61, 0x02, 0x40, 0x03, 0x99, 0x01, 0x2C), bytes.Repeat([]byte{0}, 300)...), ErrLimitExceeded},
		{"getInfo with params", CmdGetInfo, raw(0xA0), ErrInvalidLength},
		{"GNA without GA", CmdGetNextAssertion, nil, ErrNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := tk.Transact(context.Background(), tc.cmd, tc.params)
			if st != tc.want {
				t.Fatalf("got %v, want %v", st, tc.want)
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want StatusCode
	}{
		{nil, StatusOK},
		{ErrPINInvalid, ErrPINInvalid},
		{errors.Join(errors.New("x"), ErrNoCredentials), ErrNoCredentials},
		{context.Canceled, ErrKeepaliveCancel},
		{context.DeadlineExceeded, ErrUserActionTimeout},
		{ErrDeclined, ErrOperationDenied},
		{errors.New("disk on fire"), ErrOther},
	} {
		if got, _ := statusOf(tc.err); got != tc.want {
			t.Errorf("statusOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestSelectNewestAccount(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t, func(c *Config) { c.SelectNewestAccount = true })
	tk.makeCred(t, mcParams("example.com", []byte("u1"), "alice", true))
	tk.now = tk.now.Add(time.Second)
	tk.makeCred(t, mcParams("example.com", []byte("u2"), "bob", true))
	ga, _ := tk.assertOK(t, map[int]any{1: "example.com", 2: cdh})
	if ga.NumberOfCredentials != 0 || ga.UserSelected == nil || !*ga.UserSelected || string(ga.User.ID) != "u2" {
		t.Fatalf("n=%d selected=%v user=%q", ga.NumberOfCredentials, ga.UserSelected, ga.User.ID)
	}
	if st, _ := tk.call(t, CmdGetNextAssertion, nil); st != ErrNotAllowed {
		t.Fatalf("GNA after a key-side selection: %v", st)
	}
}

func TestSelectNewestAccountSingle(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t, func(c *Config) { c.SelectNewestAccount = true })
	_, ad := tk.makeCred(t, mcParams("example.com", []byte("u1"), "alice", true))
	for _, tc := range []struct {
		name     string
		req      map[int]any
		selected bool
	}{
		{"discoverable", map[int]any{1: "example.com", 2: cdh}, true},
		{"allowList", map[int]any{1: "example.com", 2: cdh, 3: []map[string]any{{"type": "public-key", "id": ad.CredentialID}}}, false},
	} {
		ga, _ := tk.assertOK(t, tc.req)
		if got := ga.UserSelected != nil && *ga.UserSelected; got != tc.selected {
			t.Fatalf("%s: userSelected %v, want %v", tc.name, got, tc.selected)
		}
	}
}
