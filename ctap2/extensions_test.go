package ctap2

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"maps"
	"slices"
	"testing"
)

// Extension tests run end to end through HandleCBOR with the in-memory
// fakes. memKeys derives per-credential secrets as SHA-256(label ‖ 0 ‖ id),
// so the expected hmac-secret outputs can be computed independently.

func uvKey(t testing.TB) *testKey {
	return newTestKey(t, func(c *Config) { c.UV = UVAuto })
}

// withExt returns a copy of an MC (key 6) or GA (key 4) request with extensions.
func withExt(req map[int]any, key int, ext map[string]any) map[int]any {
	return withParam(req, key, ext)
}

// withParam returns a copy of req with v at key.
func withParam(req map[int]any, key int, v any) map[int]any {
	m := maps.Clone(req)
	m[key] = v
	return m
}

func gaParams(rp string, ids ...[]byte) map[int]any {
	m := map[int]any{1: rp, 2: cdh}
	if len(ids) > 0 {
		var allow []map[string]any
		for _, id := range ids {
			allow = append(allow, map[string]any{"type": "public-key", "id": id})
		}
		m[3] = allow
	}
	return m
}

// withOptions returns a copy of an MC (key 7) or GA (key 5) request with
// options.
func withOptions(req map[int]any, key int, opts map[string]bool) map[int]any {
	return withParam(req, key, opts)
}

// extOutputs decodes the authenticator-data extension outputs (nil if none).
func extOutputs(t testing.TB, ad *AuthData) map[string]any {
	t.Helper()
	if len(ad.Extensions) == 0 {
		if ad.Flags&FlagED != 0 {
			t.Fatal("ED flag without extensions")
		}
		return nil
	}
	if ad.Flags&FlagED == 0 {
		t.Fatal("extensions without the ED flag")
	}
	var m map[string]any
	if err := decode(ad.Extensions, &m); err != nil {
		t.Fatalf("extension outputs: %v", err)
	}
	return m
}

// responseAuthData parses the authenticator data of a makeCredential or
// (cmd otherwise) getAssertion response.
func responseAuthData(t testing.TB, cmd byte, resp []byte) *AuthData {
	t.Helper()
	var authData []byte
	if cmd == CmdMakeCredential {
		var r MakeCredentialResponse
		if err := decode(resp, &r); err != nil {
			t.Fatal(err)
		}
		authData = r.AuthData
	} else {
		var r GetAssertionResponse
		if err := decode(resp, &r); err != nil {
			t.Fatal(err)
		}
		authData = r.AuthData
	}
	return mustParseAuthData(t, authData)
}

func (tk *testKey) assertOK(t testing.TB, params map[int]any) (*GetAssertionResponse, *AuthData) {
	t.Helper()
	var ga GetAssertionResponse
	tk.callOK(t, CmdGetAssertion, params, &ga)
	return &ga, mustParseAuthData(t, ga.AuthData)
}

// hmacInput builds an hmac-secret input for salts (32 or 64 bytes) with
// PIN/UV protocol pp.proto; version 1 omits key 4 unless explicit is set.
func hmacInput(pp *pinPlatform, salts []byte, explicit bool) (map[int]any, *SharedSecret) {
	ka, shared := pp.encapsulate()
	enc, err := shared.Encrypt(salts)
	if err != nil {
		pp.t.Fatal(err)
	}
	in := map[int]any{1: ka, 2: enc, 3: shared.Authenticate(enc)}
	if explicit || pp.proto.Version() != 1 {
		in[4] = pp.proto.Version()
	}
	return in, shared
}

// wantHMAC is HMAC-SHA-256(CredRandom, salt1) [‖ HMAC-SHA-256(CredRandom, salt2)].
func wantHMAC(t testing.TB, tk *testKey, credID []byte, uv bool, salts []byte) []byte {
	label := labelCredRandomNoUV
	if uv {
		label = labelCredRandomUV
	}
	cr, err := tk.keys.CredentialSecret(context.Background(), credID, label)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for salt := range slices.Chunk(salts, 32) {
		m := hmac.New(sha256.New, cr)
		m.Write(salt)
		out = m.Sum(out)
	}
	return out
}

// hmacSecret runs a getAssertion with hmac-secret and returns the decrypted output.
func (tk *testKey) hmacSecret(t testing.TB, pp *pinPlatform, req map[int]any, salts []byte, explicit bool) ([]byte, *AuthData) {
	t.Helper()
	in, shared := hmacInput(pp, salts, explicit)
	_, ad := tk.assertOK(t, withExt(req, 4, map[string]any{extHMACSecret: in}))
	out := extOutputs(t, ad)
	enc, ok := out[extHMACSecret].([]byte)
	if !ok {
		t.Fatalf("no hmac-secret output: %v", out)
	}
	wantLen := len(salts)
	if pp.proto.Version() == 2 {
		wantLen += 16 // IV
	}
	if len(enc) != wantLen {
		t.Fatalf("encrypted output %d bytes, want %d", len(enc), wantLen)
	}
	plain, err := shared.Decrypt(enc)
	if err != nil {
		t.Fatal(err)
	}
	return plain, ad
}

func TestExtensionsAdvertised(t *testing.T) {
	t.Parallel()
	info, err := newTestKey(t).Info()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{extHMACSecret, extHMACSecretMC, extCredProtect, extCredBlob, extLargeBlobKey, extMinPINLength, extThirdPartyPayment} {
		if !slices.Contains(info.Extensions, e) {
			t.Errorf("getInfo extensions %v lack %s", info.Extensions, e)
		}
	}
	if info.MaxCredBlobLength < 32 {
		t.Errorf("maxCredBlobLength %d", info.MaxCredBlobLength)
	}
}

func TestHMACSecret(t *testing.T) {
	t.Parallel()
	salt1 := bytes.Repeat([]byte{0x51}, 32)
	salt2 := bytes.Repeat([]byte{0x52}, 32)
	both := append(bytes.Clone(salt1), salt2...)
	forEachPINProtocol(t, "", func(t *testing.T, v uint) {
		for _, rk := range []bool{false, true} {
			tk := uvKey(t)
			pp := newPINPlatform(t, tk, v)
			mc := withExt(mcParams("example.com", []byte("u1"), "alice", false), 6, map[string]any{extHMACSecret: true})
			if rk {
				mc = withOptions(mc, 7, map[string]bool{"rk": true, "uv": true})
			}
			_, ad := tk.makeCred(t, mc)
			if out := extOutputs(t, ad); out[extHMACSecret] != true {
				t.Fatalf("v%d rk=%v: makeCredential outputs %v", v, rk, out)
			}
			id := ad.CredentialID
			ga := gaParams("example.com", id)
			if rk {
				ga = gaParams("example.com") // discoverable
			}

			one, gad := tk.hmacSecret(t, pp, ga, salt1, false)
			if gad.Flags&FlagUV != 0 {
				t.Fatal("UV flag without UV")
			}
			if !bytes.Equal(one, wantHMAC(t, tk, id, false, salt1)) {
				t.Fatalf("v%d rk=%v: output1 is not HMAC(CredRandomWithoutUV, salt1)", v, rk)
			}
			// Stable across fresh key agreements and power cycles.
			tk.PowerCycle()
			again, _ := tk.hmacSecret(t, pp, ga, salt1, true)
			if !bytes.Equal(again, one) {
				t.Fatalf("v%d rk=%v: output not stable", v, rk)
			}
			// Two salts: output1 unchanged, output2 for salt2.
			two, _ := tk.hmacSecret(t, pp, ga, both, false)
			if !bytes.Equal(two[:32], one) || !bytes.Equal(two, wantHMAC(t, tk, id, false, both)) {
				t.Fatalf("v%d rk=%v: two-salt output", v, rk)
			}
			// With UV the other CredRandom is used.
			withUV, gad := tk.hmacSecret(t, pp, withOptions(ga, 5, map[string]bool{"uv": true}), both, false)
			if gad.Flags&FlagUV == 0 {
				t.Fatal("no UV flag with uv:true")
			}
			if bytes.Equal(withUV[:32], one) || !bytes.Equal(withUV, wantHMAC(t, tk, id, true, both)) {
				t.Fatalf("v%d rk=%v: UV output must use CredRandomWithUV", v, rk)
			}
		}
	})
}

// TestHMACSecretPINTokenUV: a PIN token is user verification too.
func TestHMACSecretPINTokenUV(t *testing.T) {
	t.Parallel()
	tk, pp := pinKey(t, 2)
	_, ad := tk.makeCred(t, withExt(mcParams("example.com", []byte("u1"), "alice", false), 6, map[string]any{extHMACSecret: true}))
	salt := bytes.Repeat([]byte{7}, 32)
	noUV, _ := tk.hmacSecret(t, pp, gaParams("example.com", ad.CredentialID), salt, false)
	tok, st := pp.token("1234", PermGetAssertion, "example.com")
	if st != StatusOK {
		t.Fatal(st)
	}
	uv, gad := tk.hmacSecret(t, pp, pp.withToken(gaParams("example.com", ad.CredentialID), tok, 6), salt, false)
	if gad.Flags&FlagUV == 0 || bytes.Equal(uv, noUV) || !bytes.Equal(uv, wantHMAC(t, tk, ad.CredentialID, true, salt)) {
		t.Fatal("PIN-token assertion did not use CredRandomWithUV")
	}
}

func TestHMACSecretPerCredentialAndSalt(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	pp := newPINPlatform(t, tk, 2)
	ext := map[string]any{extHMACSecret: true}
	_, a := tk.makeCred(t, withExt(mcParams("example.com", []byte("u1"), "a", false), 6, ext))
	_, b := tk.makeCred(t, withExt(mcParams("example.com", []byte("u2"), "b", false), 6, ext))
	_, plain := tk.makeCred(t, mcParams("example.com", []byte("u3"), "c", false))
	s1, s2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	oa1, _ := tk.hmacSecret(t, pp, gaParams("example.com", a.CredentialID), s1, false)
	oa2, _ := tk.hmacSecret(t, pp, gaParams("example.com", a.CredentialID), s2, false)
	ob1, _ := tk.hmacSecret(t, pp, gaParams("example.com", b.CredentialID), s1, false)
	if bytes.Equal(oa1, oa2) || bytes.Equal(oa1, ob1) {
		t.Fatal("outputs must differ per salt and per credential")
	}
	// A credential made without hmac-secret gives no output.
	in, _ := hmacInput(pp, s1, false)
	_, ad := tk.assertOK(t, withExt(gaParams("example.com", plain.CredentialID), 4, map[string]any{extHMACSecret: in}))
	if out := extOutputs(t, ad); out != nil {
		t.Fatalf("output for a credential without hmac-secret: %v", out)
	}
}

func TestHMACSecretBadInput(t *testing.T) {
	t.Parallel()
	forEachPINProtocol(t, "", func(t *testing.T, v uint) {
		tk := newTestKey(t)
		pp := newPINPlatform(t, tk, v)
		_, ad := tk.makeCred(t, withExt(mcParams("example.com", []byte("u1"), "alice", false), 6, map[string]any{extHMACSecret: true}))
		ga := gaParams("example.com", ad.CredentialID)
		salt := bytes.Repeat([]byte{9}, 32)
		mutate := func(f func(in map[int]any, shared *SharedSecret)) map[string]any {
			in, shared := hmacInput(pp, salt, true)
			f(in, shared)
			return map[string]any{extHMACSecret: in}
		}
		reenc := func(in map[int]any, shared *SharedSecret, salts []byte) {
			enc, _ := shared.Encrypt(salts)
			in[2], in[3] = enc, shared.Authenticate(enc)
		}
		for _, tc := range []struct {
			name string
			ext  map[string]any
			want StatusCode
		}{
			{"bad saltAuth", mutate(func(in map[int]any, _ *SharedSecret) { in[3].([]byte)[0] ^= 1 }), ErrPINAuthInvalid},
			{"saltAuth over other data", mutate(func(in map[int]any, s *SharedSecret) { in[3] = s.Authenticate([]byte("x")) }), ErrPINAuthInvalid},
			{"salt of 16 bytes", mutate(func(in map[int]any, s *SharedSecret) { reenc(in, s, salt[:16]) }), ErrInvalidLength},
			{"salts of 48 bytes", mutate(func(in map[int]any, s *SharedSecret) { reenc(in, s, bytes.Repeat(salt, 2)[:48]) }), ErrInvalidLength},
			{"salts of 96 bytes", mutate(func(in map[int]any, s *SharedSecret) { reenc(in, s, bytes.Repeat(salt, 3)) }), ErrInvalidLength},
			{"missing keyAgreement", mutate(func(in map[int]any, _ *SharedSecret) { delete(in, 1) }), ErrMissingParameter},
			{"missing saltEnc", mutate(func(in map[int]any, _ *SharedSecret) { delete(in, 2) }), ErrMissingParameter},
			{"missing saltAuth", mutate(func(in map[int]any, _ *SharedSecret) { delete(in, 3) }), ErrMissingParameter},
			{"unknown protocol", mutate(func(in map[int]any, _ *SharedSecret) { in[4] = 3 }), ErrInvalidParameter},
			{"keyAgreement not on the curve", mutate(func(in map[int]any, _ *SharedSecret) {
				in[1] = map[int]any{1: 2, 3: -25, -1: 1, -2: make([]byte, 32), -3: make([]byte, 32)}
			}), ErrInvalidParameter},
			{"keyAgreement is text", mutate(func(in map[int]any, _ *SharedSecret) { in[1] = "key" }), ErrCBORUnexpectedType},
			{"saltEnc is text", mutate(func(in map[int]any, _ *SharedSecret) { in[2] = "salt" }), ErrCBORUnexpectedType},
			{"hmac-secret is true in getAssertion", map[string]any{extHMACSecret: true}, ErrCBORUnexpectedType},
		} {
			if st, out := tk.call(t, CmdGetAssertion, withExt(ga, 4, tc.ext)); st != tc.want || len(out) != 0 {
				t.Errorf("v%d %s: %v, want %v", v, tc.name, st, tc.want)
			}
		}
		// Protocol mismatch: a protocol-2 input labelled as protocol 1 (or
		// the reverse) does not authenticate.
		in, _ := hmacInput(pp, salt, true)
		in[4] = 3 - v
		if st, _ := tk.call(t, CmdGetAssertion, withExt(ga, 4, map[string]any{extHMACSecret: in})); st != ErrPINAuthInvalid && st != ErrInvalidLength {
			t.Errorf("v%d labelled as v%d: %v", v, 3-v, st)
		}
	})
}

func TestHMACSecretMC(t *testing.T) {
	t.Parallel()
	forEachPINProtocol(t, "", func(t *testing.T, v uint) {
		for _, nsalts := range []int{1, 2} {
			tk := newTestKey(t)
			pp := newPINPlatform(t, tk, v)
			salts := bytes.Repeat([]byte{0x33, 0x44}, 16*nsalts)
			in, shared := hmacInput(pp, salts, false)
			_, ad := tk.makeCred(t, withExt(mcParams("example.com", []byte("u1"), "alice", true), 6,
				map[string]any{extHMACSecret: true, extHMACSecretMC: in}))
			out := extOutputs(t, ad)
			if out[extHMACSecret] != true {
				t.Fatalf("hmac-secret output %v", out)
			}
			enc, ok := out[extHMACSecretMC].([]byte)
			if !ok {
				t.Fatalf("v%d: no hmac-secret-mc output: %v", v, out)
			}
			atMC, err := shared.Decrypt(enc)
			if err != nil {
				t.Fatal(err)
			}
			atGA, _ := tk.hmacSecret(t, pp, gaParams("example.com", ad.CredentialID), salts, false)
			if !bytes.Equal(atMC, atGA) || !bytes.Equal(atMC, wantHMAC(t, tk, ad.CredentialID, false, salts)) {
				t.Fatalf("v%d %d salts: hmac-secret-mc output differs from getAssertion's", v, nsalts)
			}
		}
	})
	// Bad hmac-secret-mc inputs fail the makeCredential and store nothing.
	tk := newTestKey(t)
	pp := newPINPlatform(t, tk, 2)
	in, _ := hmacInput(pp, bytes.Repeat([]byte{1}, 32), false)
	in[3] = make([]byte, 32)
	st, _ := tk.call(t, CmdMakeCredential, withExt(mcParams("example.com", []byte("u1"), "alice", true), 6,
		map[string]any{extHMACSecret: true, extHMACSecretMC: in}))
	if st != ErrPINAuthInvalid {
		t.Fatalf("hmac-secret-mc bad saltAuth: %v", st)
	}
	if n, _ := tk.store.CountCredentials(); n != 0 {
		t.Fatal("a failed makeCredential stored a credential")
	}
}

func TestCredProtect(t *testing.T) {
	t.Parallel()
	tk := uvKey(t)
	ids := map[byte][]byte{}
	for _, level := range []byte{0, 1, 2, 3} {
		p := mcParams("example.com", []byte{'u', level}, "user", true)
		p = withOptions(p, 7, map[string]bool{"rk": true, "uv": true})
		if level != 0 {
			p = withExt(p, 6, map[string]any{extCredProtect: level})
		}
		_, ad := tk.makeCred(t, p)
		out := extOutputs(t, ad)
		if level == 0 && out != nil || level != 0 && out[extCredProtect] != uint64(level) {
			t.Fatalf("level %d: outputs %v", level, out)
		}
		ids[level] = ad.CredentialID
		tk.now = tk.now.Add(1)
	}
	users := func(req map[int]any) []string {
		t.Helper()
		ga, _ := tk.assertOK(t, req)
		got := []string{string(ga.User.ID)}
		for i := 1; i < int(ga.NumberOfCredentials); i++ {
			var next GetAssertionResponse
			tk.callOK(t, CmdGetNextAssertion, nil, &next)
			got = append(got, string(next.User.ID))
		}
		slices.Sort(got)
		return got
	}
	// Discoverable without UV: levels 2 and 3 are hidden.
	if got := users(gaParams("example.com")); !slices.Equal(got, []string{"u\x00", "u\x01"}) {
		t.Fatalf("discoverable without UV: %q", got)
	}
	// With UV: all four.
	if got := users(withOptions(gaParams("example.com"), 5, map[string]bool{"uv": true})); len(got) != 4 {
		t.Fatalf("discoverable with UV: %q", got)
	}
	// allowList without UV: only level 3 is hidden.
	for level, id := range ids {
		st, _ := tk.call(t, CmdGetAssertion, gaParams("example.com", id))
		want := StatusOK
		if level == 3 {
			want = ErrNoCredentials
		}
		if st != want {
			t.Errorf("allowList level %d without UV: %v, want %v", level, st, want)
		}
		if st, _ := tk.call(t, CmdGetAssertion, withOptions(gaParams("example.com", id), 5, map[string]bool{"uv": true})); st != StatusOK {
			t.Errorf("allowList level %d with UV: %v", level, st)
		}
	}
	// excludeList without UV ignores level-3 credentials; with UV it does not.
	for level, id := range ids {
		p := mcParams("example.com", []byte("new"), "new", false)
		p[5] = []map[string]any{{"type": "public-key", "id": id}}
		want := ErrCredentialExcluded
		if level == 3 {
			want = StatusOK
		}
		if st, _ := tk.call(t, CmdMakeCredential, p); st != want {
			t.Errorf("excludeList level %d without UV: %v, want %v", level, st, want)
		}
		if st, _ := tk.call(t, CmdMakeCredential, withOptions(p, 7, map[string]bool{"uv": true})); st != ErrCredentialExcluded {
			t.Errorf("excludeList level %d with UV: %v", level, st)
		}
	}
	// A non-resident level-3 credential needs UV as well.
	_, ad := tk.makeCred(t, withExt(mcParams("example.com", []byte("nr"), "nr", false), 6, map[string]any{extCredProtect: 3}))
	if st, _ := tk.call(t, CmdGetAssertion, gaParams("example.com", ad.CredentialID)); st != ErrNoCredentials {
		t.Errorf("non-resident level 3 without UV: %v", st)
	}
	// Out-of-range and mistyped levels.
	for _, tc := range []struct {
		v    any
		want StatusCode
	}{{0, ErrInvalidParameter}, {4, ErrInvalidParameter}, {255, ErrInvalidParameter}, {-1, ErrCBORUnexpectedType}, {"3", ErrCBORUnexpectedType}, {true, ErrCBORUnexpectedType}} {
		p := withExt(mcParams("example.com", []byte("x"), "x", false), 6, map[string]any{extCredProtect: tc.v})
		if st, _ := tk.call(t, CmdMakeCredential, p); st != tc.want {
			t.Errorf("credProtect %v: %v, want %v", tc.v, st, tc.want)
		}
	}
}

func TestCredBlob(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	blob := bytes.Repeat([]byte{0xB1}, maxCredBlobLength)
	get := map[string]any{extCredBlob: true}
	for _, tc := range []struct {
		name     string
		rk       bool
		blob     []byte
		stored   bool
		wantBlob []byte
	}{
		{"resident", true, blob, true, blob},
		{"resident short", true, []byte{1}, true, []byte{1}},
		{"resident empty", true, []byte{}, true, []byte{}},
		{"too long", true, append(bytes.Clone(blob), 0), false, []byte{}},
		{"non-resident", false, blob, false, []byte{}},
	} {
		p := withExt(mcParams("example.com", []byte(tc.name), tc.name, tc.rk), 6, map[string]any{extCredBlob: tc.blob})
		_, ad := tk.makeCred(t, p)
		if out := extOutputs(t, ad); out[extCredBlob] != tc.stored {
			t.Errorf("%s: makeCredential credBlob output %v, want %v", tc.name, out[extCredBlob], tc.stored)
		}
		_, gad := tk.assertOK(t, withExt(gaParams("example.com", ad.CredentialID), 4, get))
		got, ok := extOutputs(t, gad)[extCredBlob].([]byte)
		if !ok || !bytes.Equal(got, tc.wantBlob) {
			t.Errorf("%s: getAssertion credBlob %x (%v), want %x", tc.name, got, ok, tc.wantBlob)
		}
		// Not asked: not returned.
		_, gad = tk.assertOK(t, gaParams("example.com", ad.CredentialID))
		if out := extOutputs(t, gad); out != nil {
			t.Errorf("%s: outputs without asking: %v", tc.name, out)
		}
		// getCredBlob false: nothing either.
		_, gad = tk.assertOK(t, withExt(gaParams("example.com", ad.CredentialID), 4, map[string]any{extCredBlob: false}))
		if out := extOutputs(t, gad); out != nil {
			t.Errorf("%s: outputs for credBlob:false: %v", tc.name, out)
		}
	}
	// A credential made without credBlob returns an empty one when asked.
	_, ad := tk.makeCred(t, mcParams("example.com", []byte("none"), "none", true))
	_, gad := tk.assertOK(t, withExt(gaParams("example.com", ad.CredentialID), 4, get))
	if got, ok := extOutputs(t, gad)[extCredBlob].([]byte); !ok || len(got) != 0 {
		t.Errorf("credential without credBlob: %x", got)
	}
}

func TestLargeBlobKey(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	p := withExt(mcParams("example.com", []byte("u1"), "alice", true), 6, map[string]any{extLargeBlobKey: true})
	resp, ad := tk.makeCred(t, p)
	if len(resp.LargeBlobKey) != 32 {
		t.Fatalf("makeCredential largeBlobKey %x", resp.LargeBlobKey)
	}
	if out := extOutputs(t, ad); out != nil {
		t.Fatalf("largeBlobKey is not an authData extension: %v", out)
	}
	for _, ga := range []map[int]any{gaParams("example.com", ad.CredentialID), gaParams("example.com")} {
		r, _ := tk.assertOK(t, withExt(ga, 4, map[string]any{extLargeBlobKey: true}))
		if !bytes.Equal(r.LargeBlobKey, resp.LargeBlobKey) {
			t.Fatalf("getAssertion largeBlobKey %x, want %x", r.LargeBlobKey, resp.LargeBlobKey)
		}
		if r, _ := tk.assertOK(t, ga); r.LargeBlobKey != nil {
			t.Fatal("largeBlobKey returned without asking")
		}
	}
	// Keys differ per credential; a credential made without it has none.
	resp2, _ := tk.makeCred(t, withExt(mcParams("example.com", []byte("u2"), "bob", true), 6, map[string]any{extLargeBlobKey: true}))
	if bytes.Equal(resp2.LargeBlobKey, resp.LargeBlobKey) {
		t.Fatal("two credentials share a largeBlobKey")
	}
	resp3, ad3 := tk.makeCred(t, mcParams("example.com", []byte("u3"), "carol", true))
	if resp3.LargeBlobKey != nil {
		t.Fatal("largeBlobKey without the extension")
	}
	if r, _ := tk.assertOK(t, withExt(gaParams("example.com", ad3.CredentialID), 4, map[string]any{extLargeBlobKey: true})); r.LargeBlobKey != nil {
		t.Fatal("largeBlobKey for a credential made without it")
	}
	// false is not allowed.
	if st, _ := tk.call(t, CmdMakeCredential, withExt(mcParams("example.com", []byte("u4"), "d", true), 6, map[string]any{extLargeBlobKey: false})); st != ErrInvalidOption {
		t.Fatalf("makeCredential largeBlobKey:false: %v", st)
	}
	if st, _ := tk.call(t, CmdGetAssertion, withExt(gaParams("example.com"), 4, map[string]any{extLargeBlobKey: false})); st != ErrInvalidOption {
		t.Fatalf("getAssertion largeBlobKey:false: %v", st)
	}
}

func TestMinPINLengthExtension(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	ask := map[string]any{extMinPINLength: true}
	mc := func(rp string, ext map[string]any) map[string]any {
		t.Helper()
		_, ad := tk.makeCred(t, withExt(mcParams(rp, []byte("u"), "n", false), 6, ext))
		return extOutputs(t, ad)
	}
	// No RP is on the list yet.
	if out := mc("example.com", ask); out != nil {
		t.Fatalf("minPinLength for an RP not on the list: %v", out)
	}
	// setMinPINLength through authenticatorConfig (no PIN: no token needed).
	st, _ := tk.call(t, CmdConfig, map[int]any{1: ConfigSetMinPINLength, 2: map[int]any{1: 6, 2: []string{"example.com", "pay.example"}}})
	if st != StatusOK {
		t.Fatalf("setMinPINLength: %v", st)
	}
	for _, rp := range []string{"example.com", "pay.example"} {
		if out := mc(rp, ask); out[extMinPINLength] != uint64(6) {
			t.Errorf("%s: minPinLength output %v, want 6", rp, out)
		}
	}
	if out := mc("other.example", ask); out != nil {
		t.Errorf("other.example: %v", out)
	}
	if out := mc("example.com", map[string]any{extMinPINLength: false}); out != nil {
		t.Errorf("minPinLength:false: %v", out)
	}
	if st, _ := tk.call(t, CmdMakeCredential, withExt(mcParams("example.com", []byte("u"), "n", false), 6, map[string]any{extMinPINLength: 1})); st != ErrCBORUnexpectedType {
		t.Errorf("minPinLength:1: %v", st)
	}
}

func TestThirdPartyPayment(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	_, pay := tk.makeCred(t, withExt(mcParams("shop.example", []byte("u1"), "a", true), 6, map[string]any{extThirdPartyPayment: true}))
	_, plain := tk.makeCred(t, mcParams("shop.example", []byte("u2"), "b", false))
	_, off := tk.makeCred(t, withExt(mcParams("shop.example", []byte("u3"), "c", false), 6, map[string]any{extThirdPartyPayment: false}))
	for _, tc := range []struct {
		name string
		id   []byte
		want bool
	}{{"payment", pay.CredentialID, true}, {"plain", plain.CredentialID, false}, {"false", off.CredentialID, false}} {
		_, ad := tk.assertOK(t, withExt(gaParams("shop.example", tc.id), 4, map[string]any{extThirdPartyPayment: true}))
		if got := extOutputs(t, ad)[extThirdPartyPayment]; got != tc.want {
			t.Errorf("%s: thirdPartyPayment %v, want %v", tc.name, got, tc.want)
		}
		_, ad = tk.assertOK(t, gaParams("shop.example", tc.id))
		if out := extOutputs(t, ad); out != nil {
			t.Errorf("%s: output without asking: %v", tc.name, out)
		}
	}
}

// TestExtensionBadInput: wrong CBOR types are CBOR_UNEXPECTED_TYPE;
// unknown extensions are ignored.
func TestExtensionBadInput(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	_, ad := tk.makeCred(t, mcParams("example.com", []byte("u"), "n", true))
	mc := mcParams("example.com", []byte("v"), "m", false)
	ga := gaParams("example.com", ad.CredentialID)
	for _, tc := range []struct {
		name string
		cmd  byte
		ext  any
		want StatusCode
	}{
		{"mc extensions not a map", CmdMakeCredential, []int{1}, ErrCBORUnexpectedType},
		{"mc extensions keyed by int", CmdMakeCredential, map[int]any{1: true}, ErrCBORUnexpectedType},
		{"mc hmac-secret int", CmdMakeCredential, map[string]any{extHMACSecret: 1}, ErrCBORUnexpectedType},
		{"mc hmac-secret map", CmdMakeCredential, map[string]any{extHMACSecret: map[int]any{}}, ErrCBORUnexpectedType},
		{"mc credProtect text", CmdMakeCredential, map[string]any{extCredProtect: "userVerificationRequired"}, ErrCBORUnexpectedType},
		{"mc credBlob text", CmdMakeCredential, map[string]any{extCredBlob: "blob"}, ErrCBORUnexpectedType},
		{"mc credBlob array of big ints", CmdMakeCredential, map[string]any{extCredBlob: []int{300}}, ErrCBORUnexpectedType},
		{"mc largeBlobKey int", CmdMakeCredential, map[string]any{extLargeBlobKey: 1}, ErrCBORUnexpectedType},
		{"mc minPinLength text", CmdMakeCredential, map[string]any{extMinPINLength: "yes"}, ErrCBORUnexpectedType},
		{"mc thirdPartyPayment bytes", CmdMakeCredential, map[string]any{extThirdPartyPayment: []byte{1}}, ErrCBORUnexpectedType},
		{"mc hmac-secret-mc true", CmdMakeCredential, map[string]any{extHMACSecret: true, extHMACSecretMC: true}, ErrCBORUnexpectedType},
		{"mc hmac-secret-mc saltEnc text", CmdMakeCredential, map[string]any{extHMACSecret: true, extHMACSecretMC: map[int]any{2: "x"}}, ErrCBORUnexpectedType},
		{"ga extensions not a map", CmdGetAssertion, "hmac-secret", ErrCBORUnexpectedType},
		{"ga hmac-secret bytes", CmdGetAssertion, map[string]any{extHMACSecret: []byte{1}}, ErrCBORUnexpectedType},
		{"ga hmac-secret saltAuth int", CmdGetAssertion, map[string]any{extHMACSecret: map[int]any{3: 5}}, ErrCBORUnexpectedType},
		{"ga hmac-secret protocol text", CmdGetAssertion, map[string]any{extHMACSecret: map[int]any{4: "2"}}, ErrCBORUnexpectedType},
		{"ga credBlob int", CmdGetAssertion, map[string]any{extCredBlob: 1}, ErrCBORUnexpectedType},
		{"ga largeBlobKey text", CmdGetAssertion, map[string]any{extLargeBlobKey: "true"}, ErrCBORUnexpectedType},
		{"ga thirdPartyPayment int", CmdGetAssertion, map[string]any{extThirdPartyPayment: 0}, ErrCBORUnexpectedType},
		{"ga empty hmac-secret map", CmdGetAssertion, map[string]any{extHMACSecret: map[int]any{}}, ErrMissingParameter},
		{"mc unknown extension", CmdMakeCredential, map[string]any{"unknownExt": map[string]any{"x": []int{1, 2}}}, StatusOK},
		{"mc unknown next to known", CmdMakeCredential, map[string]any{"foo": 1, extCredProtect: 2}, StatusOK},
		{"ga unknown extension", CmdGetAssertion, map[string]any{"appid": "https://example.com", "bar": nil}, StatusOK},
		{"mc empty map", CmdMakeCredential, map[string]any{}, StatusOK},
		{"ga empty map", CmdGetAssertion, map[string]any{}, StatusOK},
	} {
		req := map[int]any{}
		key := 4
		base := ga
		if tc.cmd == CmdMakeCredential {
			key, base = 6, mc
		}
		for k, v := range base {
			req[k] = v
		}
		req[key] = tc.ext
		st, out := tk.call(t, tc.cmd, req)
		if st != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, st, tc.want)
			continue
		}
		if st != StatusOK {
			if len(out) != 0 {
				t.Errorf("%s: error with a body", tc.name)
			}
			continue
		}
		// Unknown extensions produce no output.
		ad := responseAuthData(t, tc.cmd, out)
		for k := range extOutputs(t, ad) {
			if k != extCredProtect {
				t.Errorf("%s: unexpected output %q", tc.name, k)
			}
		}
	}
}

// TestByteStringGivenAsArray: a byte-string input sent as a CBOR array of
// small integers must be CBOR_UNEXPECTED_TYPE. The decoder currently fills
// a Go []byte from such an array (any []byte field in any request: the
// clientDataHash, user.id, credBlob, saltEnc, a largeBlobs fragment).
func TestByteStringGivenAsArray(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	_, ad := tk.makeCred(t, mcParams("example.com", []byte("u"), "n", true))
	for _, tc := range []struct {
		name   string
		cmd    byte
		params map[int]any
	}{
		{"credBlob", CmdMakeCredential, withExt(mcParams("example.com", []byte("v"), "m", true), 6, map[string]any{extCredBlob: []int{1, 2}})},
		{"hmac-secret saltEnc", CmdGetAssertion, withExt(gaParams("example.com", ad.CredentialID), 4, map[string]any{extHMACSecret: map[int]any{2: make([]int, 32)}})},
		{"clientDataHash", CmdMakeCredential, func() map[int]any {
			p := mcParams("example.com", []byte("w"), "w", false)
			p[1] = make([]int, 32)
			return p
		}()},
		{"largeBlobs fragment", CmdLargeBlobs, map[int]any{2: make([]int, 17), 3: 0, 4: 17}},
	} {
		if st, _ := tk.call(t, tc.cmd, tc.params); st != ErrCBORUnexpectedType {
			t.Errorf("%s as an array: %v, want CBOR_UNEXPECTED_TYPE", tc.name, st)
		}
	}
}

// FuzzExtensionInputs feeds arbitrary CBOR as the extensions map of
// makeCredential and getAssertion (with and without an allowList). It must
// never panic, answer a status byte alone on error, and produce parseable
// authenticator data with a decodable extensions map on success.
func FuzzExtensionInputs(f *testing.F) {
	tk := newTestKey(f, func(c *Config) { c.UV = UVAuto })
	pp := newPINPlatform(f, tk, 2)
	pp1 := newPINPlatform(f, tk, 1)
	all := map[string]any{extHMACSecret: true, extCredProtect: 2, extCredBlob: []byte("blob"), extLargeBlobKey: true, extThirdPartyPayment: true, extMinPINLength: true}
	_, ad := tk.makeCred(f, withOptions(withExt(mcParams("example.com", []byte("u1"), "alice", false), 6, all), 7, map[string]bool{"rk": true, "uv": true}))
	id := ad.CredentialID
	enc := func(v any) []byte {
		b, err := encode(v)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	in2, _ := hmacInput(pp, bytes.Repeat([]byte{1}, 64), true)
	in1, _ := hmacInput(pp1, bytes.Repeat([]byte{2}, 32), false)
	f.Add(enc(all), byte(0))
	f.Add(enc(map[string]any{extHMACSecret: in2}), byte(1))
	f.Add(enc(map[string]any{extHMACSecret: in1, extCredBlob: true, extLargeBlobKey: true, extThirdPartyPayment: true}), byte(2))
	f.Add(enc(map[string]any{extHMACSecret: true, extHMACSecretMC: in2, extCredProtect: 3}), byte(0))
	f.Add(enc(map[string]any{extCredProtect: 4, "x": []any{1, "y"}}), byte(3))
	f.Add([]byte{0xA1, 0x6B, 'h', 'm', 'a', 'c', '-', 's', 'e', 'c', 'r', 'e', 't', 0xA1, 0x01, 0xA0}, byte(1))
	f.Add([]byte{0xA0}, byte(2))
	f.Add([]byte{0xF6}, byte(0))

	mcHead := enc(mcParams("example.com", []byte("f"), "fuzz", false))
	gaAllow := enc(gaParams("example.com", id))
	gaDisc := enc(gaParams("example.com"))
	// withKey appends key ‖ raw to an encoded CBOR map of fewer than 23 entries.
	withKey := func(m []byte, key byte, raw []byte) []byte {
		out := append([]byte{m[0] + 1}, m[1:]...)
		return append(append(out, key), raw...)
	}
	f.Fuzz(func(t *testing.T, ext []byte, mode byte) {
		var msg []byte
		switch mode % 4 {
		case 0:
			msg = withKey(mcHead, 6, ext)
			msg = append([]byte{CmdMakeCredential}, msg...)
		case 1:
			msg = append([]byte{CmdGetAssertion}, withKey(gaAllow, 4, ext)...)
		case 2:
			msg = append([]byte{CmdGetAssertion}, withKey(gaDisc, 4, ext)...)
		case 3: // with uv
			m := withKey(gaAllow, 4, ext)
			m = withKey(m, 5, []byte{0xA1, 0x62, 'u', 'v', 0xF5})
			msg = append([]byte{CmdGetAssertion}, m...)
		}
		body, ok := fuzzedAnswer(t, tk.HandleCBOR(context.Background(), 1, msg, nil))
		if !ok {
			return
		}
		ad := responseAuthData(t, msg[0], body)
		if len(ad.Extensions) > 0 {
			var m map[string]any
			if err := decode(ad.Extensions, &m); err != nil {
				t.Fatalf("extension outputs: %v", err)
			}
		}
		// Keep the store small: forget resident credentials made here.
		if ad.CredentialID != nil {
			tk.store.DeleteCredential(ad.CredentialID)
		}
	})
}
