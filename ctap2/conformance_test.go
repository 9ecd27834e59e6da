package ctap2

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"testing"
)

// Unit tests for the CTAP 2.1/2.2 rules of issue 9 (see README
// "Conformance"): each failed on the code before the fix.

// zeroCDH is the clientDataHash of a client's silent probe (python-fido2
// 2.x _filter_creds): 32 zero bytes.
var zeroCDH = make([]byte, 32)

// probe is a silent getAssertion (up=false) over zeroCDH, with a
// pinUvAuthParam made with tok, as python-fido2 2.x filters an allowList or
// excludeList.
func probe(pp *pinPlatform, tok *PINUVAuthToken, rp string, ids ...[]byte) map[int]any {
	req := withOptions(gaParams(rp, ids...), 5, map[string]bool{"up": false})
	req[2] = zeroCDH
	req[6] = pp.proto.Authenticate(tok, zeroCDH)
	req[7] = pp.proto.Version()
	return req
}

// TestSilentProbeKeepsToken: a getAssertion with up=false does not consume
// the pinUvAuthToken (CTAP 2.1 §6.2.2: permissions except lbw are cleared
// only after a use with up=true), so the makeCredential or getAssertion
// that follows succeeds with the same token.
func TestSilentProbeKeepsToken(t *testing.T) {
	t.Parallel()
	for _, v := range []uint{1, 2} {
		tk := newTestKey(t)
		_, old := tk.makeCred(t, mcParams("example.com", []byte("old"), "old", false))
		pp, tok := setPINAndGetToken(t, tk, testPIN, PermMakeCredential|PermGetAssertion, "example.com", v)

		// The probe finds nothing: NO_CREDENTIALS, and the token stays.
		if st, _ := tk.call(t, CmdGetAssertion, probe(pp, tok, "example.com", []byte("not ours"))); st != ErrNoCredentials {
			t.Fatalf("P%d: probe of an unknown id: %v, want NO_CREDENTIALS", v, st)
		}
		// The probe finds the excluded credential: a signed assertion
		// without UP, with UV (the token), and the token stays.
		ga, ad := tk.assertOK(t, probe(pp, tok, "example.com", []byte("not ours"), old.CredentialID))
		if !bytes.Equal(ga.Credential.ID, old.CredentialID) {
			t.Fatalf("P%d: probe answered credential %x", v, ga.Credential.ID)
		}
		if ad.Flags&(FlagUP|FlagUV) != FlagUV {
			t.Fatalf("P%d: probe flags %#x, want UV without UP", v, ad.Flags)
		}
		// makeCredential with the same token and the excludeList the probe
		// narrowed: CREDENTIAL_EXCLUDED (not PIN_AUTH_INVALID).
		mc := pp.withToken(mcParams("example.com", []byte("new"), "new", false), tok, 8)
		mc[5] = []map[string]any{{"type": "public-key", "id": old.CredentialID}}
		if st, _ := tk.call(t, CmdMakeCredential, mc); st != ErrCredentialExcluded {
			t.Fatalf("P%d: makeCredential after a probe that found the credential: %v, want CREDENTIAL_EXCLUDED", v, st)
		}
		// Without an excluded credential the same token registers, UV set.
		delete(mc, 5)
		_, nad := tk.makeCred(t, mc)
		if nad.Flags&(FlagUP|FlagUV) != FlagUP|FlagUV {
			t.Fatalf("P%d: makeCredential flags %#x, want UP|UV", v, nad.Flags)
		}
		// That use had user presence: mc and ga are gone now.
		if st, _ := tk.call(t, CmdGetAssertion, probe(pp, tok, "example.com", old.CredentialID)); st != ErrPINAuthInvalid {
			t.Fatalf("P%d: probe after a use with UP: %v, want PIN_AUTH_INVALID", v, st)
		}

		// The same for getAssertion: probe, then the real call.
		tok2, st := pp.token(testPIN, PermGetAssertion, "example.com")
		if st != StatusOK {
			t.Fatal(st)
		}
		tk.assertOK(t, probe(pp, tok2, "example.com", old.CredentialID))
		_, gad := tk.assertOK(t, pp.withToken(gaParams("example.com", old.CredentialID), tok2, 6))
		if gad.Flags&(FlagUP|FlagUV) != FlagUP|FlagUV {
			t.Fatalf("P%d: getAssertion flags %#x, want UP|UV", v, gad.Flags)
		}
		if st, _ := tk.call(t, CmdGetAssertion, pp.withToken(gaParams("example.com", old.CredentialID), tok2, 6)); st != ErrPINAuthInvalid {
			t.Fatalf("P%d: second getAssertion with UP on one token: %v, want PIN_AUTH_INVALID", v, st)
		}
	}
}

// TestThirdPartyPaymentEnumerated: thirdPartyPayment is kept in the
// credential record and enumerateCredentials returns it at 0x0C (CTAP
// 2.2); a record written before the flag was kept answers false.
func TestThirdPartyPaymentEnumerated(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	_, pay := tk.makeCred(t, withExt(mcParams("shop.example", []byte("u1"), "pay", true), 6, map[string]any{extThirdPartyPayment: true}))
	tk.now = tk.now.Add(1e9)
	_, plain := tk.makeCred(t, mcParams("shop.example", []byte("u2"), "plain", true))

	// A record as the code before the fix wrote it (no key 11), although
	// its credential ID carries the flag: what is stored answers.
	tk.now = tk.now.Add(1e9)
	_, legacy := tk.makeCred(t, withExt(mcParams("shop.example", []byte("u3"), "legacy", true), 6, map[string]any{extThirdPartyPayment: true}))
	raw, ok, _ := tk.store.Credential(legacy.CredentialID)
	if !ok {
		t.Fatal("legacy record missing")
	}
	var m map[int]RawMessage
	if err := decode(raw, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m[11]; !ok {
		t.Fatal("record of a thirdPartyPayment credential lacks key 11")
	}
	delete(m, 11)
	if err := tk.store.PutCredential(legacy.CredentialID, rpHash("shop.example"), mustEncode(t, m)); err != nil {
		t.Fatal(err)
	}
	tk.forgetRecords()

	pp, tok := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", 2)
	_, creds := enumerateAll(t, tk, CmdCredentialManagement, pp, tok)
	want := map[string]bool{string(pay.CredentialID): true, string(plain.CredentialID): false, string(legacy.CredentialID): false}
	got := map[string]bool{}
	for _, list := range creds {
		for _, c := range list {
			if c.ThirdPartyPayment == nil {
				t.Fatalf("credential %x: no thirdPartyPayment (0x0C)", c.CredentialID.ID)
			}
			got[string(c.CredentialID.ID)] = *c.ThirdPartyPayment
		}
	}
	if len(got) != len(want) {
		t.Fatalf("enumerated %d credentials, want %d", len(got), len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("credential %x: thirdPartyPayment %v, want %v", id, got[id], w)
		}
	}
	// The raw response carries key 0x0C as a CBOR boolean.
	var rawResp map[int]any
	tk.callOK(t, CmdCredentialManagement, cmRequest(t, pp, tok, CredMgmtEnumerateCredentialsBegin, map[int]any{1: rpHash("shop.example")}), &rawResp)
	if _, ok := rawResp[0x0C].(bool); !ok {
		t.Fatalf("enumerateCredentialsBegin key 0x0C = %#v, want a bool", rawResp[0x0C])
	}
}

// TestGetInfoPerCredMgmtRO: pcmr tokens are issued, so getInfo says
// perCredMgmtRO: true (CTAP 2.2), and a pcmr token is granted.
func TestGetInfoPerCredMgmtRO(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	info := tk.info(t)
	if v, ok := info.Options["perCredMgmtRO"]; !ok || !v {
		t.Fatalf("getInfo options perCredMgmtRO = %v (present %v), want true", v, ok)
	}
	setPINAndGetToken(t, tk, testPIN, PermPersistentCredMgmt, "", 2)
}

// TestGetInfoArrayOrder: versions, extensions and transports are in
// canonical CBOR order (shorter first, then bytewise); pinUvAuthProtocols,
// algorithms and attestationFormats keep their preference order.
func TestGetInfoArrayOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"default", nil},
		{"u2f batch uv", func(c *Config) { c.UV = UVAuto; c.Batch = testIdentity(t) }},
	} {
		var mods []func(*Config)
		if tc.cfg != nil {
			mods = append(mods, tc.cfg)
		}
		tk := newTestKey(t, mods...)
		st, out := tk.call(t, CmdGetInfo, nil)
		if st != StatusOK {
			t.Fatal(st)
		}
		var raw struct {
			Versions   []string         `cbor:"1,keyasint"`
			Extensions []string         `cbor:"2,keyasint"`
			Protocols  []uint           `cbor:"6,keyasint"`
			Transports []string         `cbor:"9,keyasint"`
			Algorithms []AlgorithmParam `cbor:"10,keyasint"`
			AttFormats []string         `cbor:"22,keyasint"`
		}
		if err := decode(out, &raw); err != nil {
			t.Fatal(err)
		}
		canonical := func(x, y string) int {
			if c := cmp.Compare(len(x), len(y)); c != 0 {
				return c
			}
			return cmp.Compare(x, y)
		}
		for name, list := range map[string][]string{"versions": raw.Versions, "extensions": raw.Extensions, "transports": raw.Transports} {
			if len(list) == 0 {
				t.Fatalf("%s: getInfo %s empty", tc.name, name)
			}
			if !slices.IsSortedFunc(list, canonical) {
				t.Errorf("%s: getInfo %s %q not in canonical order", tc.name, name, list)
			}
		}
		if !slices.Contains(raw.Versions, "FIDO_2_0") || !slices.Contains(raw.Versions, "FIDO_2_1") {
			t.Errorf("%s: versions %q", tc.name, raw.Versions)
		}
		if !slices.Equal(raw.Protocols, []uint{2, 1}) {
			t.Errorf("%s: pinUvAuthProtocols %v, want [2 1] (preference order)", tc.name, raw.Protocols)
		}
		var algs []int64
		for _, a := range raw.Algorithms {
			algs = append(algs, a.Alg)
		}
		var want []int64
		for _, a := range tk.keys.Algorithms() {
			want = append(want, int64(a))
		}
		if !slices.Equal(algs, want) {
			t.Errorf("%s: algorithms %v, want the key store's preference order %v", tc.name, algs, want)
		}
		if len(raw.AttFormats) == 0 || raw.AttFormats[0] != "packed" {
			t.Errorf("%s: attestationFormats %q: the default format must come first", tc.name, raw.AttFormats)
		}
	}
}

// TestClientDataHashLength: clientDataHash must be exactly 32 bytes in
// makeCredential and getAssertion; anything else is INVALID_LENGTH, before
// any user interaction and without creating a credential.
func TestClientDataHashLength(t *testing.T) {
	t.Parallel()
	asked := 0
	tk := newTestKey(t, func(c *Config) {
		c.Presence = PresenceFunc(func(ctx context.Context, r PresenceRequest) error { asked++; return nil })
	})
	_, ad := tk.makeCred(t, mcParams("example.com", []byte("u"), "u", true))
	asked = 0
	for _, n := range []int{0, 1, 31, 33, 64, 4000} {
		h := bytes.Repeat([]byte{0xAB}, n)
		mc := mcParams("example.com", []byte("v"), "v", true)
		mc[1] = h
		if st, out := tk.call(t, CmdMakeCredential, mc); st != ErrInvalidLength || len(out) != 0 {
			t.Errorf("makeCredential with a %d-byte clientDataHash: %v, want INVALID_LENGTH", n, st)
		}
		for _, ga := range []map[int]any{gaParams("example.com"), gaParams("example.com", ad.CredentialID)} {
			ga[2] = h
			if st, out := tk.call(t, CmdGetAssertion, ga); st != ErrInvalidLength || len(out) != 0 {
				t.Errorf("getAssertion with a %d-byte clientDataHash: %v, want INVALID_LENGTH", n, st)
			}
		}
	}
	if asked != 0 {
		t.Errorf("user presence asked %d times for refused requests", asked)
	}
	if n, _ := tk.store.CountCredentials(); n != 1 {
		t.Errorf("%d credentials stored, want 1", n)
	}
	// The wrong type stays CBOR_UNEXPECTED_TYPE; a missing one
	// MISSING_PARAMETER.
	mc := mcParams("example.com", []byte("v"), "v", false)
	mc[1] = "not bytes"
	if st, _ := tk.call(t, CmdMakeCredential, mc); st != ErrCBORUnexpectedType {
		t.Errorf("text clientDataHash: %v", st)
	}
	delete(mc, 1)
	if st, _ := tk.call(t, CmdMakeCredential, mc); st != ErrMissingParameter {
		t.Errorf("no clientDataHash: %v", st)
	}
}
