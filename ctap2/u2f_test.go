package ctap2

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"testing"

	"github.com/virtkey/virtkey/ctap1"
)

// u2f sends one command APDU and splits the answer.
func (tk *testKey) u2f(t testing.TB, apdu []byte) ([]byte, ctap1.StatusWord) {
	t.Helper()
	resp := tk.HandleMSG(context.Background(), 1, apdu, nil)
	data, sw, err := ctap1.SplitResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	return data, sw
}

func u2fAPDU(t testing.TB, ins, p1 byte, data []byte) []byte {
	t.Helper()
	b, err := (&ctap1.Command{INS: ins, P1: p1, Data: data, Ne: 65536}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func u2fRegister(t testing.TB, tk *testKey, challenge, app []byte) *ctap1.RegisterResponse {
	t.Helper()
	data, sw := tk.u2f(t, u2fAPDU(t, ctap1.InsRegister, 0, append(bytes.Clone(challenge), app...)))
	if sw != ctap1.SWNoError {
		t.Fatalf("U2F_REGISTER: %v", sw)
	}
	r, err := ctap1.ParseRegisterResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func u2fAuthData(challenge, app, kh []byte) []byte {
	d := append(bytes.Clone(challenge), app...)
	d = append(d, byte(len(kh)))
	return append(d, kh...)
}

// verifyRegistration checks the attestation signature of a register
// response with the key of its certificate.
func verifyRegistration(t testing.TB, r *ctap1.RegisterResponse, challenge, app []byte) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(r.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	signed := append([]byte{0}, app...)
	signed = append(signed, challenge...)
	signed = append(signed, r.KeyHandle...)
	signed = append(signed, r.PublicKey...)
	if err := cert.CheckSignature(x509.ECDSAWithSHA256, signed, r.Signature); err != nil {
		t.Fatalf("registration signature: %v", err)
	}
	return cert
}

func TestU2FRoundTrip(t *testing.T) {
	t.Parallel()
	batch := testIdentity(t)
	var asked []PresenceRequest
	tk := newTestKey(t, func(c *Config) {
		c.Attestation, c.Batch = AttestationBatch, batch
		c.Presence = PresenceFunc(func(_ context.Context, r PresenceRequest) error { asked = append(asked, r); return nil })
	})
	challenge := bytes.Repeat([]byte{0xC1}, 32)
	app := rpHash("example.com")

	r := u2fRegister(t, tk, challenge, app)
	cert := verifyRegistration(t, r, challenge, app)
	if !bytes.Equal(cert.Raw, batch.Chain[0]) {
		t.Fatal("registration not certified by the batch certificate")
	}
	if len(asked) != 1 || asked[0].Op != ctap1.OpRegister {
		t.Fatalf("presence requests %+v", asked)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), r.PublicKey)
	if err != nil {
		t.Fatal(err)
	}

	// Check-only: a valid handle answers 6985, other handles or
	// applications 6A80; no presence is asked and no counter used.
	for _, tc := range []struct {
		name    string
		app, kh []byte
		want    ctap1.StatusWord
	}{
		{"valid", app, r.KeyHandle, ctap1.SWConditionsNotSatisfied},
		{"other application", rpHash("other.example"), r.KeyHandle, ctap1.SWWrongData},
		{"foreign handle", app, bytes.Repeat([]byte{7}, 48), ctap1.SWWrongData},
		{"empty handle", app, nil, ctap1.SWWrongData},
	} {
		if _, sw := tk.u2f(t, u2fAPDU(t, ctap1.InsAuthenticate, ctap1.ControlCheckOnly, u2fAuthData(challenge, tc.app, tc.kh))); sw != tc.want {
			t.Errorf("check-only %s: %v, want %v", tc.name, sw, tc.want)
		}
	}
	if len(asked) != 1 {
		t.Fatalf("check-only asked for presence: %+v", asked)
	}

	// Enforce and don't-enforce user presence: signatures over
	// application ‖ flags ‖ counter ‖ challenge, counters growing.
	var last uint32
	for i, control := range []byte{ctap1.ControlEnforceUserPresence, ctap1.ControlDontEnforceUserPresence, ctap1.ControlEnforceUserPresence} {
		ch := bytes.Repeat([]byte{byte(i)}, 32)
		data, sw := tk.u2f(t, u2fAPDU(t, ctap1.InsAuthenticate, control, u2fAuthData(ch, app, r.KeyHandle)))
		if sw != ctap1.SWNoError {
			t.Fatalf("authenticate %#x: %v", control, sw)
		}
		a, err := ctap1.ParseAuthenticateResponse(data)
		if err != nil {
			t.Fatal(err)
		}
		wantUP := byte(0)
		if control == ctap1.ControlEnforceUserPresence {
			wantUP = 1
		}
		if a.UserPresence != wantUP || a.Counter <= last {
			t.Fatalf("authenticate %#x: presence %d counter %d (last %d)", control, a.UserPresence, a.Counter, last)
		}
		last = a.Counter
		signed := append(bytes.Clone(app), data[:5]...)
		signed = append(signed, ch...)
		d := sha256.Sum256(signed)
		if !ecdsa.VerifyASN1(pub, d[:], a.Signature) {
			t.Fatalf("authenticate %#x: signature does not verify", control)
		}
	}
	if len(asked) != 3 || asked[1].Op != ctap1.OpAuthenticate {
		t.Fatalf("presence requests %+v", asked)
	}

	// The U2F credential answers a CTAP2 getAssertion for the RP whose
	// hash is the application parameter, with the same counter.
	ga, ad := tk.assertOK(t, map[int]any{1: "example.com", 2: cdh,
		3: []map[string]any{{"type": "public-key", "id": r.KeyHandle}}})
	if ad.SignCount <= last {
		t.Fatalf("CTAP2 counter %d after U2F %d", ad.SignCount, last)
	}
	d := sha256.Sum256(append(bytes.Clone(ga.AuthData), cdh...))
	if !ecdsa.VerifyASN1(pub, d[:], ga.Signature) {
		t.Fatal("getAssertion signature does not verify with the U2F public key")
	}
	// It is not discoverable.
	if st, _ := tk.call(t, CmdGetAssertion, map[int]any{1: "example.com", 2: cdh}); st != ErrNoCredentials {
		t.Fatalf("discoverable getAssertion found the U2F credential: %v", st)
	}
}

func TestU2FPresence(t *testing.T) {
	t.Parallel()
	for _, err := range []error{ErrDeclined, context.DeadlineExceeded, context.Canceled} {
		tk := newTestKey(t)
		app := rpHash("example.com")
		r := u2fRegister(t, tk, cdh, app)
		tk.cfg.Presence = PresenceFunc(func(context.Context, PresenceRequest) error { return err })
		if _, sw := tk.u2f(t, u2fAPDU(t, ctap1.InsRegister, 0, append(bytes.Clone(cdh), app...))); sw != ctap1.SWConditionsNotSatisfied {
			t.Errorf("register with presence %v: %v", err, sw)
		}
		if _, sw := tk.u2f(t, u2fAPDU(t, ctap1.InsAuthenticate, ctap1.ControlEnforceUserPresence, u2fAuthData(cdh, app, r.KeyHandle))); sw != ctap1.SWConditionsNotSatisfied {
			t.Errorf("authenticate with presence %v: %v", err, sw)
		}
		// Don't-enforce needs no presence.
		if _, sw := tk.u2f(t, u2fAPDU(t, ctap1.InsAuthenticate, ctap1.ControlDontEnforceUserPresence, u2fAuthData(cdh, app, r.KeyHandle))); sw != ctap1.SWNoError {
			t.Errorf("don't-enforce with presence %v: %v", err, sw)
		}
	}
	// UPNEEDED is reported while the user is asked.
	tk := newTestKey(t)
	var states []byte
	tk.HandleMSG(context.Background(), 1, u2fAPDU(t, ctap1.InsRegister, 0, make([]byte, 64)), func(s byte) { states = append(states, s) })
	if !bytes.Equal(states, []byte{2, 1}) {
		t.Fatalf("keepalive states %v", states)
	}
}

// Without batch attestation a registration is certified by the
// credential's own key.
func TestU2FSelfAttestation(t *testing.T) {
	t.Parallel()
	for _, cfg := range []func(*Config){
		nil,
		func(c *Config) { c.Attestation = AttestationNone },
		func(c *Config) { c.Attestation, c.Batch = AttestationSelf, testIdentity(t) },
	} {
		var mods []func(*Config)
		if cfg != nil {
			mods = append(mods, cfg)
		}
		tk := newTestKey(t, mods...)
		app := rpHash("example.com")
		r := u2fRegister(t, tk, cdh, app)
		cert := verifyRegistration(t, r, cdh, app)
		certPub, _ := cert.PublicKey.(*ecdsa.PublicKey)
		pub, _ := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), r.PublicKey)
		if certPub == nil || !certPub.Equal(pub) {
			t.Fatal("self attestation certificate does not hold the credential key")
		}
	}
}

// CTAP2 credentials work over U2F when U2F can use them.
func TestU2FWithCTAP2Credentials(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	app := rpHash("example.com")
	check := func(id []byte) ctap1.StatusWord {
		_, sw := tk.u2f(t, u2fAPDU(t, ctap1.InsAuthenticate, ctap1.ControlCheckOnly, u2fAuthData(cdh, app, id)))
		return sw
	}
	_, es256 := tk.makeCred(t, mcParams("example.com", []byte("u1"), "a", false, -7))
	_, resident := tk.makeCred(t, mcParams("example.com", []byte("u2"), "b", true, -7))
	_, eddsa := tk.makeCred(t, mcParams("example.com", []byte("u3"), "c", false, -8))
	uvRequired := mcParams("example.com", []byte("u4"), "d", false, -7)
	uvRequired[6] = map[string]any{"credProtect": 3}
	_, protected := tk.makeCred(t, uvRequired)
	for _, tc := range []struct {
		name string
		id   []byte
		want ctap1.StatusWord
	}{
		{"ES256", es256.CredentialID, ctap1.SWConditionsNotSatisfied},
		{"resident ES256", resident.CredentialID, ctap1.SWConditionsNotSatisfied},
		{"EdDSA", eddsa.CredentialID, ctap1.SWWrongData},
		{"credProtect 3", protected.CredentialID, ctap1.SWWrongData},
	} {
		if got := check(tc.id); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// A deleted resident credential is gone for U2F as well.
	if err := tk.store.DeleteCredential(resident.CredentialID); err != nil {
		t.Fatal(err)
	}
	tk.forgetRecords() // the test wrote the store behind the authenticator's back
	if got := check(resident.CredentialID); got != ctap1.SWWrongData {
		t.Errorf("deleted resident credential: %v", got)
	}
}

func TestU2FVersionAndGetInfo(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	info := tk.info(t)
	if !slices.Equal(info.Versions, []string{"U2F_V2", "FIDO_2_0", "FIDO_2_1"}) {
		t.Fatalf("versions %v", info.Versions)
	}
	for _, apdu := range [][]byte{
		{0, 3, 0, 0},                         // case 1
		{0, 3, 0, 0, 0},                      // case 2S, Le 256
		{0, 3, 0, 0, 0, 0, 0},                // case 2E, Le 65536
		{0, 3, 0, 0, 0, 0, 0, 0, 0},          // python-fido2: Lc 0, Le 0
		{0, 3, 0, 0, 0, 0, 0, 0xAA, 0xBB},    // Lc 0, Le aabb
		{0, 3, 0, 0, 0, 0xAA},                // short Lc 0, Le aa
		{0, 3, 0xFF, 0xFF, 0, 0, 0, 0x01, 0}, // P1/P2 ignored
	} {
		data, sw := tk.u2f(t, apdu)
		if sw != ctap1.SWNoError || string(data) != "U2F_V2" {
			t.Errorf("VERSION % x: %q %v", apdu, data, sw)
		}
	}
}

// alwaysUv turns U2F off (CTAP 2.1 §7.2).
func TestU2FOffWithAlwaysUV(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	st := tk.state
	st.AlwaysUV = true
	if err := tk.saveState(st); err != nil {
		t.Fatal(err)
	}
	info := tk.info(t)
	if slices.Contains(info.Versions, "U2F_V2") {
		t.Fatalf("versions %v with alwaysUv", info.Versions)
	}
	for _, ins := range []byte{ctap1.InsVersion, ctap1.InsRegister, ctap1.InsAuthenticate} {
		if _, sw := tk.u2f(t, u2fAPDU(t, ins, 0, nil)); sw != ctap1.SWInsNotSupported {
			t.Errorf("INS %#x with alwaysUv: %v", ins, sw)
		}
	}
}

// A key store whose IDs do not fit a key handle has no U2F.
func TestU2FOffWithLongIDs(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t, func(c *Config) { c.Sealer, c.KeyStore = c.KeyStore.(Sealer), longIDKeys{c.KeyStore} })
	info := tk.info(t)
	if slices.Contains(info.Versions, "U2F_V2") {
		t.Fatalf("versions %v with 380-byte IDs", info.Versions)
	}
	if _, sw := tk.u2f(t, u2fAPDU(t, ctap1.InsVersion, 0, nil)); sw != ctap1.SWInsNotSupported {
		t.Fatalf("VERSION: %v", sw)
	}
}

type longIDKeys struct{ KeyStore }

func (longIDKeys) MaxCredentialIDLength() int { return 380 }

func TestU2FBadAPDUs(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	app := rpHash("example.com")
	r := u2fRegister(t, tk, cdh, app)
	auth := u2fAuthData(cdh, app, r.KeyHandle)
	ext := func(ins, p1 byte, lc int, data []byte, tail ...byte) []byte {
		b := []byte{0, ins, p1, 0, 0, byte(lc >> 8), byte(lc)}
		return append(append(b, data...), tail...)
	}
	for _, tc := range []struct {
		name string
		apdu []byte
		want ctap1.StatusWord
	}{
		{"empty", nil, ctap1.SWWrongLength},
		{"3 bytes", []byte{0, 3, 0}, ctap1.SWWrongLength},
		{"CLA 0x80", []byte{0x80, 3, 0, 0}, ctap1.SWClaNotSupported},
		{"CLA 0xFF with data", append([]byte{0xFF, 1, 0, 0, 0, 0, 64}, make([]byte, 64)...), ctap1.SWClaNotSupported},
		{"unknown INS", []byte{0, 0x04, 0, 0}, ctap1.SWInsNotSupported},
		{"SELECT", []byte{0, 0xA4, 4, 0, 0}, ctap1.SWInsNotSupported},
		{"vendor INS", []byte{0, 0xC0, 0, 0}, ctap1.SWInsNotSupported},
		{"VERSION with data", ext(3, 0, 1, []byte{1}), ctap1.SWWrongLength},
		{"REGISTER short data", ext(1, 0, 63, make([]byte, 63)), ctap1.SWWrongLength},
		{"REGISTER long data", ext(1, 0, 65, make([]byte, 65)), ctap1.SWWrongLength},
		{"REGISTER no data", []byte{0, 1, 0, 0}, ctap1.SWWrongLength},
		{"REGISTER Lc too big", ext(1, 0, 65, make([]byte, 64)), ctap1.SWWrongLength},
		{"REGISTER Lc too small", ext(1, 0, 63, make([]byte, 64)), ctap1.SWWrongLength},
		{"REGISTER partial Le", ext(1, 0, 64, make([]byte, 64), 0), ctap1.SWWrongLength},
		{"REGISTER 3 trailing bytes", ext(1, 0, 64, make([]byte, 64), 0, 0, 0), ctap1.SWWrongLength},
		{"AUTHENTICATE key handle length too long", ext(2, 3, len(auth), append(append(bytes.Clone(auth[:64]), byte(len(r.KeyHandle)+1)), r.KeyHandle...)), ctap1.SWWrongLength},
		{"AUTHENTICATE key handle length too short", ext(2, 3, len(auth), append(append(bytes.Clone(auth[:64]), byte(len(r.KeyHandle)-1)), r.KeyHandle...)), ctap1.SWWrongLength},
		{"AUTHENTICATE without key handle length", ext(2, 3, 64, auth[:64]), ctap1.SWWrongLength},
		{"AUTHENTICATE bad control byte", ext(2, 0x05, len(auth), auth), ctap1.SWWrongData},
		{"AUTHENTICATE control 0", ext(2, 0, len(auth), auth), ctap1.SWWrongData},
		{"AUTHENTICATE corrupted key handle", ext(2, 3, len(auth), append(bytes.Clone(auth[:len(auth)-1]), auth[len(auth)-1]^1)), ctap1.SWWrongData},
		{"short Lc too big", []byte{0, 3, 0, 0, 2, 1}, ctap1.SWWrongLength},
	} {
		if _, sw := tk.u2f(t, tc.apdu); sw != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, sw, tc.want)
		}
	}
}

// FuzzAPDU: any CTAPHID_MSG payload gets a response ending in a status
// word, never a panic; success only for well-formed commands.
func FuzzAPDU(f *testing.F) {
	tk := newTestKey(f)
	app := rpHash("example.com")
	challenge := bytes.Repeat([]byte{9}, 32)
	reg, _ := (&ctap1.Command{INS: ctap1.InsRegister, Data: append(bytes.Clone(challenge), app...)}).Encode()
	out := tk.HandleMSG(context.Background(), 1, reg, nil)
	r, err := ctap1.ParseRegisterResponse(out[:len(out)-2])
	if err != nil {
		f.Fatal(err)
	}
	for _, p1 := range []byte{ctap1.ControlCheckOnly, ctap1.ControlEnforceUserPresence, ctap1.ControlDontEnforceUserPresence} {
		b, _ := (&ctap1.Command{INS: ctap1.InsAuthenticate, P1: p1, Data: u2fAuthData(challenge, app, r.KeyHandle), Ne: 65536}).Encode()
		f.Add(b)
	}
	f.Add(reg)
	f.Add([]byte{0, 3, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 3, 0, 0, 0, 0xAA})
	f.Add([]byte{0, 1, 0, 0, 64})
	f.Add([]byte{0x80, 2, 7, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, apdu []byte) {
		resp := tk.HandleMSG(context.Background(), 1, apdu, nil)
		data, sw, err := ctap1.SplitResponse(resp)
		if err != nil {
			t.Fatal(err)
		}
		if sw != ctap1.SWNoError {
			if len(data) != 0 {
				t.Fatalf("status %v with %d bytes of data", sw, len(data))
			}
			return
		}
		c, err := ctap1.ParseCommand(apdu)
		if err != nil || c.CLA != 0 {
			t.Fatalf("success for a malformed APDU % x", apdu)
		}
		switch c.INS {
		case ctap1.InsVersion:
			if string(data) != ctap1.Version {
				t.Fatalf("VERSION answered %q", data)
			}
		case ctap1.InsRegister:
			if _, err := ctap1.ParseRegisterResponse(data); err != nil {
				t.Fatal(err)
			}
		case ctap1.InsAuthenticate:
			a, err := ctap1.ParseAuthenticateResponse(data)
			if err != nil {
				t.Fatal(err)
			}
			if c.P1 == ctap1.ControlCheckOnly || a.UserPresence != b2u(c.P1 == ctap1.ControlEnforceUserPresence) {
				t.Fatalf("authenticate with control %#x answered presence %d", c.P1, a.UserPresence)
			}
		default:
			t.Fatalf("success for INS %#x", c.INS)
		}
	})
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}
