package ctap2

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
)

// cfgRequest builds an authenticatorConfig request. params (a value to
// encode, or a RawMessage sent as is) is authenticated, as 32×0xFF ‖ 0x0D ‖
// sub ‖ params, when pp is not nil.
func cfgRequest(t testing.TB, pp *pinPlatform, tok *PINUVAuthToken, sub byte, params any) map[int]any {
	t.Helper()
	return subcommandRequest(t, pp, tok, append(bytes.Repeat([]byte{0xFF}, 32), CmdConfig), sub, params)
}

func (tk *testKey) config(t testing.TB, req map[int]any) StatusCode {
	t.Helper()
	st, out := tk.call(t, CmdConfig, req)
	if len(out) != 0 {
		t.Fatalf("config answered %v with a body %x", st, out)
	}
	return st
}

// reloaded is the persistent state a fresh authenticator reads from tk's store.
func (tk *testKey) reloaded(t testing.TB) persistentState {
	t.Helper()
	a, err := New(Config{KeyStore: tk.keys, Store: tk.store})
	if err != nil {
		t.Fatal(err)
	}
	return a.state
}

func TestConfigToggleAlwaysUV(t *testing.T) {
	t.Parallel()
	alwaysUV := func(t *testing.T, tk *testKey) bool {
		info := tk.info(t)
		if info.Options["alwaysUv"] != tk.reloaded(t).AlwaysUV {
			t.Fatal("alwaysUv not persisted")
		}
		return info.Options["alwaysUv"]
	}
	t.Run("unprotected", func(t *testing.T) {
		t.Parallel()
		tk := newTestKey(t)
		for _, want := range []bool{true, false, true} {
			if st := tk.config(t, cfgRequest(t, nil, nil, ConfigToggleAlwaysUV, nil)); st != StatusOK {
				t.Fatalf("toggle: %v", st)
			}
			if alwaysUV(t, tk) != want {
				t.Fatalf("alwaysUv != %v", want)
			}
		}
		// A pinUvAuthParam that is sent is checked, even when none is needed.
		req := cfgRequest(t, nil, nil, ConfigToggleAlwaysUV, nil)
		req[3], req[4] = uint(2), bytes.Repeat([]byte{1}, 32)
		if st := tk.config(t, req); st != ErrPINAuthInvalid {
			t.Fatalf("bogus pinUvAuthParam: %v", st)
		}
	})
	t.Run("built-in UV", func(t *testing.T) {
		t.Parallel()
		tk := newTestKey(t, func(c *Config) { c.UV = UVAuto })
		if st := tk.config(t, cfgRequest(t, nil, nil, ConfigToggleAlwaysUV, nil)); st != ErrPUATRequired {
			t.Fatalf("protected by built-in UV, no pinUvAuthParam: %v", st)
		}
	})
	forEachPINProtocol(t, "PIN", func(t *testing.T, v uint) {
		tk := newTestKey(t)
		pp, tok := setPINAndGetToken(t, tk, testPIN, PermAuthenticatorCfg, "", v)
		if st := tk.config(t, cfgRequest(t, nil, nil, ConfigToggleAlwaysUV, nil)); st != ErrPUATRequired {
			t.Fatalf("no pinUvAuthParam: %v", st)
		}
		if st := tk.config(t, cfgRequest(t, pp, tok, ConfigToggleAlwaysUV, nil)); st != StatusOK {
			t.Fatalf("toggle on: %v", st)
		}
		if !alwaysUV(t, tk) {
			t.Fatal("alwaysUv off after toggling on")
		}
		if st := tk.config(t, cfgRequest(t, pp, tok, ConfigToggleAlwaysUV, nil)); st != StatusOK {
			t.Fatalf("toggle off: %v", st)
		}
		if alwaysUV(t, tk) {
			t.Fatal("alwaysUv on after toggling off")
		}
	})
}

func TestConfigAuth(t *testing.T) {
	t.Parallel()
	type build func(pp *pinPlatform, tok *PINUVAuthToken) map[int]any
	sign := func(sub byte, params any) build {
		return func(pp *pinPlatform, tok *PINUVAuthToken) map[int]any { return cfgRequest(t, pp, tok, sub, params) }
	}
	edit := func(f build, e func(r map[int]any)) build {
		return func(pp *pinPlatform, tok *PINUVAuthToken) map[int]any {
			r := f(pp, tok)
			e(r)
			return r
		}
	}
	toggle := sign(ConfigToggleAlwaysUV, nil)
	setMin := sign(ConfigSetMinPINLength, map[int]any{1: 6})
	for _, tc := range []struct {
		name  string
		perms Permission
		req   build
		want  StatusCode
	}{
		{"acfg token", PermAuthenticatorCfg, toggle, StatusOK},
		{"acfg token with other permissions", PermAuthenticatorCfg | PermCredentialMgmt, setMin, StatusOK},
		{"token without acfg", PermCredentialMgmt, toggle, ErrPINAuthInvalid},
		{"getPinToken token", 0, setMin, ErrPINAuthInvalid},
		{"pcmr token", PermPersistentCredMgmt, toggle, ErrPINAuthInvalid},
		{"no pinUvAuthParam", PermAuthenticatorCfg, edit(toggle, func(r map[int]any) { delete(r, 4) }), ErrPUATRequired},
		{"no protocol", PermAuthenticatorCfg, edit(toggle, func(r map[int]any) { delete(r, 3) }), ErrMissingParameter},
		{"unknown protocol", PermAuthenticatorCfg, edit(toggle, func(r map[int]any) { r[3] = uint(7) }), ErrInvalidParameter},
		{"wrong pinUvAuthParam", PermAuthenticatorCfg, edit(toggle, func(r map[int]any) { r[4].([]byte)[1] ^= 0x80 }), ErrPINAuthInvalid},
		{"pinUvAuthParam of another subcommand", PermAuthenticatorCfg, edit(toggle, func(r map[int]any) {
			r[1], r[2] = ConfigSetMinPINLength, RawMessage{0xA0}
		}), ErrPINAuthInvalid},
		{"pinUvAuthParam not covering subCommandParams", PermAuthenticatorCfg, edit(setMin, func(r map[int]any) {
			r[2] = RawMessage(mustEncode(t, map[int]any{1: 7}))
		}), ErrPINAuthInvalid},
		{"pinUvAuthParam without the config prefix", PermAuthenticatorCfg, func(pp *pinPlatform, tok *PINUVAuthToken) map[int]any {
			return map[int]any{1: ConfigToggleAlwaysUV, 3: pp.proto.Version(), 4: pp.proto.Authenticate(tok, []byte{ConfigToggleAlwaysUV})}
		}, ErrPINAuthInvalid},
		// Keys 3 before 1: not canonical, yet authenticated exactly as sent.
		{"non-canonical subCommandParams", PermAuthenticatorCfg, sign(ConfigSetMinPINLength, RawMessage{0xA2, 0x03, 0xF4, 0x01, 0x06}), StatusOK},
		{"no subCommand", PermAuthenticatorCfg, edit(toggle, func(r map[int]any) { delete(r, 1) }), ErrMissingParameter},
		{"enableEnterpriseAttestation", PermAuthenticatorCfg, sign(ConfigEnableEnterpriseAttestation, nil), ErrInvalidSubcommand},
		{"vendorPrototype", PermAuthenticatorCfg, sign(ConfigVendorPrototype, map[int]any{1: 1}), ErrInvalidSubcommand},
		{"unknown subCommand", PermAuthenticatorCfg, sign(0x04, nil), ErrInvalidSubcommand},
		{"subCommandParams not a map", PermAuthenticatorCfg, sign(ConfigSetMinPINLength, []int{6}), ErrCBORUnexpectedType},
		{"newMinPINLength of the wrong type", PermAuthenticatorCfg, sign(ConfigSetMinPINLength, map[int]any{1: "6"}), ErrCBORUnexpectedType},
	} {
		forEachPINProtocol(t, tc.name, func(t *testing.T, v uint) {
			tk := newTestKey(t)
			pp, tok := setPINAndGetToken(t, tk, testPIN, tc.perms, "", v)
			if st := tk.config(t, tc.req(pp, tok)); st != tc.want {
				t.Fatalf("status %v, want %v", st, tc.want)
			}
		})
	}
	// Without a PIN the unsupported subcommands are refused just the same.
	tk := newTestKey(t)
	for _, sub := range []byte{ConfigEnableEnterpriseAttestation, ConfigVendorPrototype, 0x00, 0x04, 0x7F} {
		if st := tk.config(t, cfgRequest(t, nil, nil, sub, nil)); st != ErrInvalidSubcommand {
			t.Errorf("subcommand %#x: %v", sub, st)
		}
	}
}

func TestConfigSetMinPINLength(t *testing.T) {
	t.Parallel()
	forEachPINProtocol(t, "", func(t *testing.T, v uint) {
		tk := newTestKey(t)
		pp, tok := setPINAndGetToken(t, tk, testPIN, PermAuthenticatorCfg, "", v) // 6 code points
		set := func(params map[int]any) StatusCode {
			return tk.config(t, cfgRequest(t, pp, tok, ConfigSetMinPINLength, params))
		}
		check := func(minLen uint, force bool) {
			t.Helper()
			info := tk.info(t)
			gotForce := info.ForcePINChange != nil && *info.ForcePINChange
			if info.MinPINLength != minLen || gotForce != force {
				t.Fatalf("getInfo minPINLength %d forcePINChange %v; want %d %v", info.MinPINLength, gotForce, minLen, force)
			}
			if st := tk.reloaded(t); st.MinPINLength != minLen || st.ForcePINChange != force {
				t.Fatalf("persisted %d %v", st.MinPINLength, st.ForcePINChange)
			}
		}
		check(4, false)
		if st := set(map[int]any{1: 6}); st != StatusOK {
			t.Fatalf("raise to the PIN's length: %v", st)
		}
		check(6, false)
		if st := set(map[int]any{1: 5}); st != ErrPINPolicyViolation {
			t.Fatalf("lower: %v", st)
		}
		if st := set(map[int]any{1: 64}); st != ErrPINPolicyViolation {
			t.Fatalf("above 63: %v", st)
		}
		if st := set(map[int]any{}); st != StatusOK {
			t.Fatalf("no change: %v", st)
		}
		check(6, false)
		// Longer than the current PIN: a PIN change is forced.
		if st := set(map[int]any{1: 8}); st != StatusOK {
			t.Fatalf("raise above the PIN's length: %v", st)
		}
		check(8, true)
		if _, st := pp.token(testPIN, PermGetAssertion, "a.example"); st != ErrPINPolicyViolation {
			t.Fatalf("token while a PIN change is forced: %v", st)
		}
		// The legacy getPinToken (0x05) answers PIN_INVALID there
		// (CTAP 2.1 §6.5.5.7.1); only 0x09 answers PIN_POLICY_VIOLATION.
		// The PIN itself was right: the retries are restored.
		if _, st := pp.token(testPIN, 0, ""); st != ErrPINInvalid {
			t.Fatalf("getPinToken while a PIN change is forced: %v, want PIN_INVALID", st)
		}
		if n := pp.retries(); n != 8 {
			t.Fatalf("retries after the right PIN with a forced change: %d, want 8", n)
		}
		if st := pp.changePIN(testPIN, "1234567"); st != ErrPINPolicyViolation {
			t.Fatalf("change to a PIN below the new minimum: %v", st)
		}
		if st := pp.changePIN(testPIN, "12345678"); st != StatusOK {
			t.Fatalf("changePIN: %v", st)
		}
		check(8, false)
		tok, _ = pp.token("12345678", PermAuthenticatorCfg, "")
		// forceChangePin alone.
		if st := set(map[int]any{3: true}); st != StatusOK {
			t.Fatalf("forceChangePin: %v", st)
		}
		check(8, true)
		if st := pp.changePIN("12345678", "12345678"); st != ErrPINPolicyViolation {
			t.Fatalf("forced change to the same PIN: %v", st)
		}
		if st := pp.changePIN("12345678", "abcdefgh"); st != StatusOK {
			t.Fatalf("changePIN: %v", st)
		}
		check(8, false)
	})
}

func TestConfigMinPINLengthRPIDs(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	pp, tok := setPINAndGetToken(t, tk, testPIN, PermAuthenticatorCfg, "", 2)
	set := func(params map[int]any) StatusCode {
		return tk.config(t, cfgRequest(t, pp, tok, ConfigSetMinPINLength, params))
	}
	rpids := func(n int) []string {
		var ids []string
		for i := range n {
			ids = append(ids, fmt.Sprintf("rp%d.example", i))
		}
		return ids
	}
	for _, tc := range []struct {
		name   string
		params map[int]any
		want   StatusCode
		stored []string
	}{
		{"set two", map[int]any{2: []string{"a.example", "b.example"}}, StatusOK, []string{"a.example", "b.example"}},
		{"absent keeps the list", map[int]any{1: 4}, StatusOK, []string{"a.example", "b.example"}},
		{"a new list replaces the old", map[int]any{2: []string{"c.example"}}, StatusOK, []string{"c.example"}},
		{"duplicates count once", map[int]any{2: append(rpids(maxRPIDsForMinPIN), "rp0.example")}, StatusOK, rpids(maxRPIDsForMinPIN)},
		{"too many", map[int]any{2: rpids(maxRPIDsForMinPIN + 1)}, ErrKeyStoreFull, rpids(maxRPIDsForMinPIN)},
		{"empty RP ID", map[int]any{2: []string{""}}, ErrInvalidParameter, rpids(maxRPIDsForMinPIN)},
		{"not a list of strings", map[int]any{2: []int{1}}, ErrCBORUnexpectedType, rpids(maxRPIDsForMinPIN)},
		{"an empty list clears it", map[int]any{2: []string{}}, StatusOK, nil},
	} {
		if st := set(tc.params); st != tc.want {
			t.Fatalf("%s: %v, want %v", tc.name, st, tc.want)
		}
		if got := tk.reloaded(t).MinPINRPIDs; !slices.Equal(got, tc.stored) {
			t.Fatalf("%s: stored %q, want %q", tc.name, got, tc.stored)
		}
	}
}

func TestConfigWithoutPIN(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	if st := tk.config(t, cfgRequest(t, nil, nil, ConfigSetMinPINLength, map[int]any{3: true})); st != ErrPINNotSet {
		t.Fatalf("forceChangePin without a PIN: %v", st)
	}
	if st := tk.config(t, cfgRequest(t, nil, nil, ConfigSetMinPINLength, map[int]any{1: 8, 3: false})); st != StatusOK {
		t.Fatalf("setMinPINLength without a PIN: %v", st)
	}
	if st := tk.reloaded(t); st.MinPINLength != 8 || st.ForcePINChange {
		t.Fatalf("state %+v", st)
	}
	// The new minimum now applies to setPIN.
	pp := newPINPlatform(t, tk, 2)
	if st := pp.setPIN(testPIN); st != ErrPINPolicyViolation {
		t.Fatalf("setPIN below the minimum: %v", st)
	}
	if st := pp.setPIN("12345678"); st != StatusOK {
		t.Fatalf("setPIN: %v", st)
	}
	// Now protected: a pinUvAuthParam is required.
	if st := tk.config(t, cfgRequest(t, nil, nil, ConfigSetMinPINLength, map[int]any{1: 9})); st != ErrPUATRequired {
		t.Fatalf("after setPIN: %v", st)
	}
}

// FuzzConfigRequest sends arbitrary authenticatorConfig parameters, first
// as they are and then as the subCommandParams of a request signed with a
// valid acfg token. The state is restored after every input.
func FuzzConfigRequest(f *testing.F) {
	tk := newTestKey(f)
	pp, tok := setPINAndGetToken(f, tk, testPIN, PermAuthenticatorCfg, "", 1)
	initial, _ := tk.store.Setting(settingState)
	seed := func(sub byte, params any) { addSignedSeed(f, cfgRequest(f, pp, tok, sub, params)) }
	seed(ConfigToggleAlwaysUV, nil)
	seed(ConfigSetMinPINLength, map[int]any{1: 8, 2: []string{"a.example"}, 3: true})
	seed(ConfigSetMinPINLength, map[int]any{2: []string{}})
	seed(ConfigEnableEnterpriseAttestation, nil)
	seed(ConfigVendorPrototype, map[int]any{1: 1})
	f.Add([]byte{0xA1, 0x01, 0x02}, byte(3), []byte{0xA1, 0x01, 0x3F}, true)
	f.Add([]byte{}, byte(0), []byte(nil), false)
	f.Fuzz(func(t *testing.T, raw []byte, sub byte, params []byte, signed bool) {
		defer func() {
			tk.store.PutSetting(settingState, initial)
			tk.loadState()
		}()
		st, out := tk.Transact(context.Background(), CmdConfig, raw)
		checkResponseShape(t, st, out)
		if st == StatusOK && len(out) != 0 {
			t.Fatal("config answered with a body")
		}
		if !signed {
			return
		}
		msg := append(append(bytes.Repeat([]byte{0xFF}, 32), CmdConfig, sub), params...)
		req := map[int]any{1: sub, 3: pp.proto.Version(), 4: pp.proto.Authenticate(tok, msg)}
		if len(params) > 0 {
			req[2] = RawMessage(params)
		}
		b, err := encode(req)
		if err != nil {
			return // params is not one well-formed CBOR item
		}
		st, out = tk.Transact(context.Background(), CmdConfig, b)
		checkResponseShape(t, st, out)
		if st == StatusOK && len(out) != 0 {
			t.Fatal("config answered with a body")
		}
	})
}
