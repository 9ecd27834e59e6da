package ctap2

import (
	"bytes"
	"fmt"
	"testing"
)

// pinPlatform is the platform side of the PIN protocol, for tests.
type pinPlatform struct {
	t     testing.TB
	tk    *testKey
	proto PINProtocol
}

// forEachPINProtocol runs f as parallel subtests name/P1 and name/P2 (P1
// and P2 when name is empty), once with each PIN/UV auth protocol.
func forEachPINProtocol(t *testing.T, name string, f func(t *testing.T, v uint)) {
	if name != "" {
		name += "/"
	}
	for _, v := range []uint{1, 2} {
		t.Run(fmt.Sprintf("%sP%d", name, v), func(t *testing.T) {
			t.Parallel()
			f(t, v)
		})
	}
}

// pinKey is a new test key with the PIN 1234 set through PIN/UV auth
// protocol v, and the platform side of that protocol.
func pinKey(t testing.TB, v uint) (*testKey, *pinPlatform) {
	t.Helper()
	tk := newTestKey(t)
	pp := newPINPlatform(t, tk, v)
	if st := pp.setPIN("1234"); st != StatusOK {
		t.Fatalf("setPIN: %v", st)
	}
	return tk, pp
}

func newPINPlatform(t testing.TB, tk *testKey, version uint) *pinPlatform {
	p, _ := PINProtocolByVersion(version)
	return &pinPlatform{t: t, tk: tk, proto: p}
}

// encapsulate fetches the authenticator's key and derives a shared secret.
func (pp *pinPlatform) encapsulate() (map[int]any, *SharedSecret) {
	pp.t.Helper()
	st, out := pp.tk.call(pp.t, CmdClientPIN, map[int]any{1: pp.proto.Version(), 2: ClientPINGetKeyAgreement})
	if st != StatusOK {
		pp.t.Fatalf("getKeyAgreement: %v", st)
	}
	var resp struct {
		KA KeyAgreementCOSE `cbor:"1,keyasint"`
	}
	if err := decode(out, &resp); err != nil {
		pp.t.Fatal(err)
	}
	if resp.KA.Alg != -25 || len(resp.KA.X) != 32 || len(resp.KA.Y) != 32 {
		pp.t.Fatalf("key agreement key %+v", resp.KA)
	}
	authKey, err := ParsePlatformKey(resp.KA.X, resp.KA.Y)
	if err != nil {
		pp.t.Fatal(err)
	}
	pub, shared, err := PlatformEncapsulate(pp.proto, authKey)
	if err != nil {
		pp.t.Fatal(err)
	}
	return PublicKeyCOSE(pub), shared
}

func (pp *pinPlatform) setPIN(pin string) StatusCode {
	pp.t.Helper()
	ka, shared := pp.encapsulate()
	padded, err := PadPIN(pin)
	if err != nil {
		pp.t.Fatal(err)
	}
	enc, _ := shared.Encrypt(padded)
	st, _ := pp.tk.call(pp.t, CmdClientPIN, map[int]any{1: pp.proto.Version(), 2: ClientPINSetPIN, 3: ka, 4: shared.Authenticate(enc), 5: enc})
	return st
}

func (pp *pinPlatform) changePIN(old, pin string) StatusCode {
	pp.t.Helper()
	ka, shared := pp.encapsulate()
	padded, _ := PadPIN(pin)
	newEnc, _ := shared.Encrypt(padded)
	hashEnc, _ := shared.Encrypt(PINHash(old))
	st, _ := pp.tk.call(pp.t, CmdClientPIN, map[int]any{1: pp.proto.Version(), 2: ClientPINChangePIN, 3: ka,
		4: shared.Authenticate(append(bytes.Clone(newEnc), hashEnc...)), 5: newEnc, 6: hashEnc})
	return st
}

// token runs getPinUvAuthTokenUsingPinWithPermissions (or getPinToken when perms is 0).
func (pp *pinPlatform) token(pin string, perms Permission, rpID string) (*PINUVAuthToken, StatusCode) {
	pp.t.Helper()
	ka, shared := pp.encapsulate()
	hashEnc, _ := shared.Encrypt(PINHash(pin))
	req := map[int]any{1: pp.proto.Version(), 2: ClientPINGetTokenUsingPIN, 3: ka, 6: hashEnc, 9: uint(perms)}
	if perms == 0 {
		req[2] = ClientPINGetPINToken
		delete(req, 9)
	}
	if rpID != "" {
		req[10] = rpID
	}
	st, out := pp.tk.call(pp.t, CmdClientPIN, req)
	if st != StatusOK {
		return nil, st
	}
	var resp ClientPINResponse
	if err := decode(out, &resp); err != nil {
		pp.t.Fatal(err)
	}
	raw, err := shared.Decrypt(resp.PinUvAuthToken)
	if err != nil {
		pp.t.Fatal(err)
	}
	tok, err := ParsePINUVAuthToken(pp.proto, raw)
	if err != nil {
		pp.t.Fatal(err)
	}
	return tok, st
}

func (pp *pinPlatform) retries() uint {
	pp.t.Helper()
	st, out := pp.tk.call(pp.t, CmdClientPIN, map[int]any{2: ClientPINGetRetries})
	if st != StatusOK {
		pp.t.Fatalf("getPINRetries: %v", st)
	}
	var resp ClientPINResponse
	if err := decode(out, &resp); err != nil {
		pp.t.Fatal(err)
	}
	return *resp.PinRetries
}

// withToken adds a pinUvAuthParam over clientDataHash to an MC/GA request.
func (pp *pinPlatform) withToken(req map[int]any, tok *PINUVAuthToken, paramKey int) map[int]any {
	m := map[int]any{}
	for k, v := range req {
		m[k] = v
	}
	m[paramKey] = pp.proto.Authenticate(tok, cdh)
	m[paramKey+1] = pp.proto.Version()
	return m
}

func TestClientPINLifecycle(t *testing.T) {
	t.Parallel()
	forEachPINProtocol(t, "", func(t *testing.T, v uint) {
		tk := newTestKey(t)
		pp := newPINPlatform(t, tk, v)
		info := tk.info(t)
		if info.Options["clientPin"] {
			t.Fatal("clientPin true before a PIN is set")
		}
		if st := pp.setPIN("12"); st != ErrPINPolicyViolation {
			t.Fatalf("short PIN: %v", st)
		}
		if _, st := pp.token("1234", PermMakeCredential, "example.com"); st != ErrPINNotSet {
			t.Fatalf("token without PIN: %v", st)
		}
		if st := pp.setPIN("1234"); st != StatusOK {
			t.Fatalf("setPIN: %v", st)
		}
		if st := pp.setPIN("5678"); st != ErrNotAllowed {
			t.Fatalf("second setPIN: %v", st)
		}
		info = tk.info(t)
		if !info.Options["clientPin"] {
			t.Fatal("clientPin false after setPIN")
		}
		// makeCredUvNotRqd: a discoverable credential now needs a token; a non-discoverable one does not.
		if st, _ := tk.call(t, CmdMakeCredential, mcParams("example.com", []byte("u"), "n", true)); st != ErrPUATRequired {
			t.Fatalf("rk without token: %v", st)
		}
		tk.makeCred(t, mcParams("example.com", []byte("u"), "n", false))
		tok, st := pp.token("1234", PermMakeCredential|PermGetAssertion, "example.com")
		if st != StatusOK {
			t.Fatalf("token: %v", st)
		}
		resp, ad := tk.makeCred(t, pp.withToken(mcParams("example.com", []byte("u"), "n", true), tok, 8))
		if ad.Flags&FlagUV == 0 || resp.Fmt != "packed" {
			t.Fatalf("flags %x", ad.Flags)
		}
		// The token's mc/ga permissions are used up by makeCredential.
		if st, _ := tk.call(t, CmdGetAssertion, pp.withToken(map[int]any{1: "example.com", 2: cdh}, tok, 6)); st != ErrPINAuthInvalid {
			t.Fatalf("reused token: %v", st)
		}
		tok, _ = pp.token("1234", PermGetAssertion, "example.com")
		ga, gad := tk.assertOK(t, pp.withToken(map[int]any{1: "example.com", 2: cdh}, tok, 6))
		if gad.Flags&(FlagUV|FlagUP) != FlagUV|FlagUP || ga.User.Name != "n" {
			t.Fatalf("GA with UV: flags %x user %+v", gad.Flags, ga.User)
		}
		// Wrong permission, wrong RP, wrong MAC.
		tok, _ = pp.token("1234", PermCredentialMgmt, "")
		if st, _ := tk.call(t, CmdMakeCredential, pp.withToken(mcParams("example.com", []byte("u"), "n", true), tok, 8)); st != ErrPINAuthInvalid {
			t.Fatalf("token without mc: %v", st)
		}
		tok, _ = pp.token("1234", PermMakeCredential, "other.com")
		if st, _ := tk.call(t, CmdMakeCredential, pp.withToken(mcParams("example.com", []byte("u"), "n", true), tok, 8)); st != ErrPINAuthInvalid {
			t.Fatalf("token for another RP: %v", st)
		}
		bad := pp.withToken(mcParams("example.com", []byte("u"), "n", true), tok, 8)
		bad[8] = bytes.Repeat([]byte{1}, len(bad[8].([]byte)))
		if st, _ := tk.call(t, CmdMakeCredential, bad); st != ErrPINAuthInvalid {
			t.Fatalf("bad MAC: %v", st)
		}
		// A new token revokes the old one.
		old, _ := pp.token("1234", PermMakeCredential, "example.com")
		pp.token("1234", PermMakeCredential, "example.com")
		if st, _ := tk.call(t, CmdMakeCredential, pp.withToken(mcParams("example.com", []byte("u"), "n", true), old, 8)); st != ErrPINAuthInvalid {
			t.Fatalf("revoked token: %v", st)
		}
		// Probe with a zero-length pinUvAuthParam.
		probe := mcParams("example.com", []byte("u"), "n", false)
		probe[8], probe[9] = []byte{}, v
		if st, _ := tk.call(t, CmdMakeCredential, probe); st != ErrPINAuthInvalid {
			t.Fatalf("probe: %v", st)
		}
		// Change PIN; the old one stops working.
		if st := pp.changePIN("1234", "abcd"); st != StatusOK {
			t.Fatalf("changePIN: %v", st)
		}
		if _, st := pp.token("abcd", PermGetAssertion, "x"); st != StatusOK {
			t.Fatalf("token with new PIN: %v", st)
		}
		// Permissions.
		for _, tc := range []struct {
			perms Permission
			rp    string
			want  StatusCode
		}{
			{PermBioEnrollment, "", ErrUnauthorizedPermission},
			{PermLargeBlobWrite, "", StatusOK},
			{PermMakeCredential, "", ErrMissingParameter},
			{PermPersistentCredMgmt | PermCredentialMgmt, "", ErrUnauthorizedPermission},
		} {
			if _, st := pp.token("abcd", tc.perms, tc.rp); st != tc.want {
				t.Errorf("perms %x: %v, want %v", tc.perms, st, tc.want)
			}
		}
	})
}

func TestPINLockout(t *testing.T) {
	t.Parallel()
	tk, pp := pinKey(t, 2)
	want := []StatusCode{ErrPINInvalid, ErrPINInvalid, ErrPINAuthBlocked}
	for i, w := range want {
		if _, st := pp.token("0000", PermGetAssertion, "x"); st != w {
			t.Fatalf("attempt %d: %v, want %v", i+1, st, w)
		}
	}
	// Blocked until a power cycle, even with the right PIN.
	if _, st := pp.token("1234", PermGetAssertion, "x"); st != ErrPINAuthBlocked {
		t.Fatalf("right PIN while auth-blocked: %v", st)
	}
	if pp.retries() != 5 {
		t.Fatalf("retries %d, want 5", pp.retries())
	}
	tk.PowerCycle()
	// A correct PIN restores 8.
	if _, st := pp.token("1234", PermGetAssertion, "x"); st != StatusOK {
		t.Fatalf("after power cycle: %v", st)
	}
	if pp.retries() != 8 {
		t.Fatal("correct PIN must restore retries")
	}
	// 8 wrong PINs across power cycles block the PIN for good.
	var last StatusCode
	for i := 0; i < 8; i++ {
		if i%3 == 0 {
			tk.PowerCycle()
		}
		_, last = pp.token("0000", PermGetAssertion, "x")
	}
	if last != ErrPINBlocked {
		t.Fatalf("8th wrong PIN: %v", last)
	}
	tk.PowerCycle()
	if _, st := pp.token("1234", PermGetAssertion, "x"); st != ErrPINBlocked {
		t.Fatalf("right PIN when blocked: %v", st)
	}
	// Retries persist in the store: a new authenticator on the same store agrees.
	a2, err := New(Config{KeyStore: tk.keys, Store: tk.store})
	if err != nil {
		t.Fatal(err)
	}
	if a2.state.PINRetries != 0 {
		t.Fatalf("persisted retries %d", a2.state.PINRetries)
	}
	if st, _ := tk.call(t, CmdReset, nil); st != StatusOK {
		t.Fatal(st)
	}
	// No PIN after the reset: getPINRetries answers PIN_NOT_SET (a
	// compatibility choice, see TestGetPINRetriesWithoutPIN).
	if st, _ := tk.call(t, CmdClientPIN, map[int]any{2: ClientPINGetRetries}); st != ErrPINNotSet {
		t.Fatalf("getPINRetries after reset: %v, want PIN_NOT_SET", st)
	}
	if st := pp.setPIN("1234"); st != StatusOK {
		t.Fatalf("setPIN after reset: %v", st)
	}
	if pp.retries() != 8 {
		t.Fatal("reset must restore retries")
	}
}

// TestGetPINRetriesWithoutPIN: the spec names no error for getPINRetries
// before a PIN is set; virtkey answers PIN_NOT_SET, as python-fido2's
// device tests expect right after a factory reset. Both protocol fields
// (absent, 1, 2) get the same answer, and once a PIN is set the retries
// are reported.
func TestGetPINRetriesWithoutPIN(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	for _, req := range []map[int]any{{2: ClientPINGetRetries}, {1: 1, 2: ClientPINGetRetries}, {1: 2, 2: ClientPINGetRetries}} {
		if st, out := tk.call(t, CmdClientPIN, req); st != ErrPINNotSet || len(out) != 0 {
			t.Fatalf("getPINRetries %v without a PIN: %v %x, want PIN_NOT_SET and no body", req, st, out)
		}
	}
	pp := newPINPlatform(t, tk, 2)
	if st := pp.setPIN("1234"); st != StatusOK {
		t.Fatal(st)
	}
	if n := pp.retries(); n != 8 {
		t.Fatalf("retries after setPIN: %d, want 8", n)
	}
}

func TestBuiltInUV(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t, func(c *Config) { c.UV = UVAuto })
	info := tk.info(t)
	if !info.Options["uv"] {
		t.Fatal("uv option not advertised")
	}
	// Protected by UV: rk needs uv.
	if st, _ := tk.call(t, CmdMakeCredential, mcParams("example.com", []byte("u"), "n", true)); st != ErrPUATRequired {
		t.Fatalf("rk without uv: %v", st)
	}
	p := mcParams("example.com", []byte("u"), "n", true)
	p[7] = map[string]bool{"rk": true, "uv": true}
	_, ad := tk.makeCred(t, p)
	if ad.Flags&FlagUV == 0 {
		t.Fatal("UV flag missing")
	}
	ga, _ := tk.assertOK(t, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"uv": true}})
	if ga.User.Name != "n" {
		t.Fatal("user name must be returned after UV")
	}

	deny := newTestKey(t, func(c *Config) { c.UV = UVDeny })
	for i := 0; i < maxUVRetries-1; i++ {
		if st, _ := deny.call(t, CmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"uv": true}}); st != ErrUVInvalid {
			t.Fatalf("deny %d: %v", i, st)
		}
	}
	if st, _ := deny.call(t, CmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"uv": true}}); st != ErrUVBlocked {
		t.Fatalf("last deny: %v", st)
	}
	st, out := deny.call(t, CmdClientPIN, map[int]any{2: ClientPINGetUVRetries})
	var r ClientPINResponse
	decode(out, &r)
	if st != StatusOK || *r.UVRetries != 0 {
		t.Fatalf("uvRetries: %v %v", st, r.UVRetries)
	}
}

func TestClientPINBadInput(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	for _, tc := range []struct {
		name string
		req  map[int]any
		want StatusCode
	}{
		{"no subcommand", map[int]any{1: 2}, ErrMissingParameter},
		{"no protocol", map[int]any{2: ClientPINGetKeyAgreement}, ErrMissingParameter},
		{"bad protocol", map[int]any{1: 3, 2: ClientPINGetKeyAgreement}, ErrInvalidParameter},
		{"unknown subcommand", map[int]any{1: 2, 2: 0x08}, ErrInvalidSubcommand},
		{"setPIN without key", map[int]any{1: 2, 2: ClientPINSetPIN, 4: []byte{1}, 5: []byte{1}}, ErrMissingParameter},
		{"bad key", map[int]any{1: 2, 2: ClientPINSetPIN, 3: map[int]any{1: 2, 3: -25, -1: 1, -2: make([]byte, 32), -3: make([]byte, 32)}, 4: []byte{1}, 5: make([]byte, 80)}, ErrInvalidParameter},
		{"key not a map", map[int]any{1: 2, 2: ClientPINSetPIN, 3: 7, 4: []byte{1}, 5: []byte{1}}, ErrCBORUnexpectedType},
		{"getPinToken with permissions", map[int]any{1: 2, 2: ClientPINGetPINToken, 3: map[int]any{1: 2}, 6: []byte{1}, 9: 1}, ErrInvalidParameter},
		{"uv token without built-in uv", map[int]any{1: 2, 2: ClientPINGetTokenUsingUV, 3: map[int]any{1: 2, -1: 1, -2: []byte{}, -3: []byte{}}, 9: 1, 10: "x"}, ErrInvalidParameter},
		{"uv retries without built-in uv", map[int]any{2: ClientPINGetUVRetries}, ErrInvalidSubcommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, _ := tk.call(t, CmdClientPIN, tc.req); st != tc.want {
				t.Fatalf("got %v, want %v", st, tc.want)
			}
		})
	}
}
