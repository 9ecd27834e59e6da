package ctap2_test

// End-to-end WebAuthn ceremonies through CTAPHID reports: an in-process key
// (inproc) driven by a hid.Client, with github.com/go-webauthn/webauthn as
// the relying party verifying every attestation and assertion.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/inproc"
)

// rpUser is a relying-party account.
type rpUser struct {
	id    []byte
	name  string
	creds []webauthn.Credential
}

func (u *rpUser) WebAuthnID() []byte                         { return u.id }
func (u *rpUser) WebAuthnName() string                       { return u.name }
func (u *rpUser) WebAuthnDisplayName() string                { return "Display " + u.name }
func (u *rpUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// update replaces the stored credential with the one a login returned
// (new sign count, clone warning, flags).
func (u *rpUser) update(c *webauthn.Credential) {
	for i := range u.creds {
		if bytes.Equal(u.creds[i].ID, c.ID) {
			u.creds[i] = *c
			return
		}
	}
}

func newRP(t testing.TB) *webauthn.WebAuthn {
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          rpID,
		RPDisplayName: "Example",
		RPOrigins:     []string{rpOrigin},
	})
	if err != nil {
		t.Fatal(err)
	}
	return wa
}

// device sends CTAP2 commands as CTAPHID_CBOR messages.
type device struct {
	c *hid.Client
}

func openDevice(t testing.TB, k *inproc.Key) *device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := k.Client(ctx)
	if err != nil {
		t.Fatalf("CTAPHID INIT: %v", err)
	}
	return &device{c: c}
}

// call sends cmd with params (CTAP2-canonical CBOR; nil: none) and returns
// the status and the response CBOR.
func (d *device) call(t testing.TB, cmd byte, params any) (ctap2.StatusCode, []byte) {
	t.Helper()
	req := []byte{cmd}
	if params != nil {
		p, err := encMode.Marshal(params)
		if err != nil {
			t.Fatal(err)
		}
		req = append(req, p...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := d.c.CBOR(ctx, req)
	if err != nil {
		t.Fatalf("CTAPHID_CBOR %#x: %v", cmd, err)
	}
	if len(resp) == 0 {
		t.Fatalf("CTAPHID_CBOR %#x: empty response", cmd)
	}
	return ctap2.StatusCode(resp[0]), resp[1:]
}

func clientData(typ string, challenge protocol.URLEncodedBase64) []byte {
	b, err := json.Marshal(map[string]any{
		"type":        typ,
		"challenge":   challenge.String(),
		"origin":      rpOrigin,
		"crossOrigin": false,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// mcRaw keeps attStmt as the authenticator encoded it, so the
// attestationObject carries exactly the signed-over statement.
type mcRaw struct {
	Fmt      string          `cbor:"1,keyasint"`
	AuthData []byte          `cbor:"2,keyasint"`
	AttStmt  cbor.RawMessage `cbor:"3,keyasint"`
}

type regOpts struct {
	alg     int      // COSE algorithm (-7 ES256, -8 EdDSA)
	rk      bool     // resident (discoverable) credential
	attPref []string // CTAP 2.2 attestationFormatsPreference (0x0B)
	wantFmt string   // expected attestation statement format
}

// register runs a registration ceremony and stores the credential in u.
func register(t testing.TB, wa *webauthn.WebAuthn, d *device, u *rpUser, o regOpts) *webauthn.Credential {
	t.Helper()
	var ropts []webauthn.RegistrationOption
	if o.rk {
		ropts = append(ropts, webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired))
	}
	creation, session, err := wa.BeginRegistration(u, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	opts := creation.Response
	cdj := clientData("webauthn.create", opts.Challenge)
	params := map[int]any{
		1: sha(cdj),
		2: map[string]any{"id": opts.RelyingParty.ID, "name": opts.RelyingParty.Name},
		3: map[string]any{"id": u.id, "name": opts.User.Name, "displayName": opts.User.DisplayName},
		4: []map[string]any{{"type": "public-key", "alg": o.alg}},
	}
	if o.rk {
		params[7] = map[string]bool{"rk": true}
	}
	if o.attPref != nil {
		params[11] = o.attPref
	}
	st, out := d.call(t, ctap2.CmdMakeCredential, params)
	if st != ctap2.StatusOK {
		t.Fatalf("makeCredential: %v", st)
	}
	var typed ctap2.MakeCredentialResponse
	if err := cbor.Unmarshal(out, &typed); err != nil {
		t.Fatalf("decode makeCredential response: %v", err)
	}
	var raw mcRaw
	if err := cbor.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	if typed.Fmt != o.wantFmt {
		t.Fatalf("fmt %q, want %q", typed.Fmt, o.wantFmt)
	}
	ad, err := ctap2.ParseAuthData(raw.AuthData)
	if err != nil {
		t.Fatal(err)
	}
	if ad.Flags&(ctap2.FlagUP|ctap2.FlagAT) != ctap2.FlagUP|ctap2.FlagAT {
		t.Fatalf("authData flags %#x", ad.Flags)
	}
	attObj, err := encMode.Marshal(map[string]any{
		"fmt":      raw.Fmt,
		"authData": raw.AuthData,
		"attStmt":  raw.AttStmt,
	})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(protocol.CredentialCreationResponse{
		PublicKeyCredential: protocol.PublicKeyCredential{
			Credential: protocol.Credential{
				ID:   base64.RawURLEncoding.EncodeToString(ad.CredentialID),
				Type: "public-key",
			},
			RawID:                   ad.CredentialID,
			AuthenticatorAttachment: "cross-platform",
		},
		AttestationResponse: protocol.AuthenticatorAttestationResponse{
			AuthenticatorResponse: protocol.AuthenticatorResponse{ClientDataJSON: cdj},
			AttestationObject:     attObj,
			Transports:            []string{"usb"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBody(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse registration: %v", describe(err))
	}
	cred, err := wa.CreateCredential(u, *session, parsed)
	if err != nil {
		t.Fatalf("CreateCredential: %v", describe(err))
	}
	if cred.AttestationFormat != o.wantFmt {
		t.Fatalf("RP saw attestation format %q, want %q", cred.AttestationFormat, o.wantFmt)
	}
	if !bytes.Equal(cred.ID, ad.CredentialID) {
		t.Fatal("credential ID mismatch")
	}
	u.creds = append(u.creds, *cred)
	return cred
}

// describe includes go-webauthn's DevInfo, which says what failed.
func describe(err error) error {
	if pe, ok := err.(*protocol.Error); ok {
		return fmt.Errorf("%w (%s)", err, pe.DevInfo)
	}
	return err
}

func decodeGA(t testing.TB, out []byte) *ctap2.GetAssertionResponse {
	t.Helper()
	var ga ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(out, &ga); err != nil {
		t.Fatalf("decode getAssertion response: %v", err)
	}
	return &ga
}

// assertionBody is the client's JSON for an assertion.
func assertionBody(t testing.TB, ga *ctap2.GetAssertionResponse, cdj []byte) *protocol.ParsedCredentialAssertionData {
	t.Helper()
	var userHandle []byte
	if ga.User != nil {
		userHandle = ga.User.ID
	}
	body, err := json.Marshal(protocol.CredentialAssertionResponse{
		PublicKeyCredential: protocol.PublicKeyCredential{
			Credential: protocol.Credential{
				ID:   base64.RawURLEncoding.EncodeToString(ga.Credential.ID),
				Type: "public-key",
			},
			RawID:                   []byte(ga.Credential.ID),
			AuthenticatorAttachment: "cross-platform",
		},
		AssertionResponse: protocol.AuthenticatorAssertionResponse{
			AuthenticatorResponse: protocol.AuthenticatorResponse{ClientDataJSON: cdj},
			AuthenticatorData:     ga.AuthData,
			Signature:             ga.Signature,
			UserHandle:            userHandle,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBody(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse assertion: %v", describe(err))
	}
	return parsed
}

// checkCounter requires a strictly growing counter and no clone warning,
// and records the new state in u.
func checkCounter(t testing.TB, u *rpUser, before uint32, got *webauthn.Credential) {
	t.Helper()
	if got.Authenticator.CloneWarning {
		t.Fatalf("%s: clone warning (sign count %d after %d)", u.name, got.Authenticator.SignCount, before)
	}
	if got.Authenticator.SignCount <= before {
		t.Fatalf("%s: sign count %d did not grow from %d", u.name, got.Authenticator.SignCount, before)
	}
	u.update(got)
}

func signCount(u *rpUser, id []byte) uint32 {
	for _, c := range u.creds {
		if bytes.Equal(c.ID, id) {
			return c.Authenticator.SignCount
		}
	}
	return 0
}

// login runs a username-first login ceremony (allowList from the RP).
func login(t testing.TB, wa *webauthn.WebAuthn, d *device, u *rpUser) *webauthn.Credential {
	t.Helper()
	assertion, session, err := wa.BeginLogin(u)
	if err != nil {
		t.Fatal(err)
	}
	opts := assertion.Response
	cdj := clientData("webauthn.get", opts.Challenge)
	var allow []map[string]any
	for _, c := range opts.AllowedCredentials {
		allow = append(allow, map[string]any{"type": string(c.Type), "id": []byte(c.CredentialID)})
	}
	st, out := d.call(t, ctap2.CmdGetAssertion, map[int]any{1: opts.RelyingPartyID, 2: sha(cdj), 3: allow})
	if st != ctap2.StatusOK {
		t.Fatalf("getAssertion: %v", st)
	}
	ga := decodeGA(t, out)
	parsed := assertionBody(t, ga, cdj)
	before := signCount(u, ga.Credential.ID)
	cred, err := wa.ValidateLogin(u, *session, parsed)
	if err != nil {
		t.Fatalf("ValidateLogin: %v", describe(err))
	}
	checkCounter(t, u, before, cred)
	return cred
}

// discoverableLogin runs a username-less login: getAssertion without an
// allowList, then getNextAssertion for every further account. It returns
// the users in the order the key offered them, each validated by the RP.
func discoverableLogin(t testing.TB, wa *webauthn.WebAuthn, d *device, users ...*rpUser) []*rpUser {
	t.Helper()
	assertion, session, err := wa.BeginDiscoverableLogin()
	if err != nil {
		t.Fatal(err)
	}
	opts := assertion.Response
	if len(opts.AllowedCredentials) != 0 {
		t.Fatal("discoverable login with an allowList")
	}
	cdj := clientData("webauthn.get", opts.Challenge)
	st, out := d.call(t, ctap2.CmdGetAssertion, map[int]any{1: rpID, 2: sha(cdj)})
	if st != ctap2.StatusOK {
		t.Fatalf("getAssertion: %v", st)
	}
	first := decodeGA(t, out)
	n := int(first.NumberOfCredentials)
	if len(users) > 1 && n != len(users) {
		t.Fatalf("numberOfCredentials %d, want %d", n, len(users))
	}
	if n == 0 {
		n = 1
	}
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		for _, u := range users {
			if bytes.Equal(u.id, userHandle) {
				return u, nil
			}
		}
		return nil, fmt.Errorf("no user with handle %x", userHandle)
	}
	var seen []*rpUser
	for i := 0; i < n; i++ {
		ga := first
		if i > 0 {
			st, out := d.call(t, ctap2.CmdGetNextAssertion, nil)
			if st != ctap2.StatusOK {
				t.Fatalf("getNextAssertion %d: %v", i, st)
			}
			ga = decodeGA(t, out)
		}
		if ga.User == nil || len(ga.User.ID) == 0 {
			t.Fatalf("assertion %d without a user handle", i)
		}
		parsed := assertionBody(t, ga, cdj)
		u, err := handler(nil, ga.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		before := signCount(u.(*rpUser), ga.Credential.ID)
		cred, err := wa.ValidateDiscoverableLogin(handler, *session, parsed)
		if err != nil {
			t.Fatalf("ValidateDiscoverableLogin %d: %v", i, describe(err))
		}
		checkCounter(t, u.(*rpUser), before, cred)
		seen = append(seen, u.(*rpUser))
	}
	// The sequence is over: one more getNextAssertion is refused.
	if st, _ := d.call(t, ctap2.CmdGetNextAssertion, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("getNextAssertion past the end: %v, want NOT_ALLOWED", st)
	}
	return seen
}

func newKey(t testing.TB, opts inproc.Options) *inproc.Key {
	t.Helper()
	k, err := inproc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestWebAuthnRegisterAndLogin(t *testing.T) {
	t.Parallel()
	algs := []struct {
		name string
		alg  int
	}{{"ES256", -7}, {"EdDSA", -8}}
	atts := []struct {
		name      string
		pref      []string
		configure func(*ctap2.Config)
		fmt       string
	}{
		{"packed-self", nil, nil, "packed"},
		{"packed-preferred", []string{"packed", "none"}, func(c *ctap2.Config) { c.Attestation = ctap2.AttestationNone }, "packed"},
		{"none-preferred", []string{"none"}, nil, "none"},
		{"none-configured", nil, func(c *ctap2.Config) { c.Attestation = ctap2.AttestationNone }, "none"},
	}
	for _, a := range algs {
		for _, at := range atts {
			for _, rk := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/rk=%v", a.name, at.name, rk)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					k := newKey(t, inproc.Options{Configure: at.configure})
					d := openDevice(t, k)
					wa := newRP(t)
					u := &rpUser{id: []byte("user-" + name), name: "alice"}
					cred := register(t, wa, d, u, regOpts{alg: a.alg, rk: rk, attPref: at.pref, wantFmt: at.fmt})
					// Self attestation is "basic_surrogate" in FIDO metadata terms.
					if want := map[string]string{"packed": "basic_surrogate", "none": "none"}[at.fmt]; cred.AttestationType != want {
						t.Errorf("attestation type %q, want %q", cred.AttestationType, want)
					}
					for i := 0; i < 4; i++ {
						login(t, wa, d, u)
					}
					if rk {
						if got := discoverableLogin(t, wa, d, u); len(got) != 1 || got[0] != u {
							t.Fatalf("discoverable login returned %v", got)
						}
					}
				})
			}
		}
	}
}

// Two accounts on one RP, both discoverable: the key offers both (newest
// first) through getAssertion + getNextAssertion, and the RP accepts each.
func TestWebAuthnDiscoverableTwoAccounts(t *testing.T) {
	t.Parallel()
	k := newKey(t, inproc.Options{})
	d := openDevice(t, k)
	wa := newRP(t)
	alice := &rpUser{id: []byte("alice-handle-0001"), name: "alice"}
	bob := &rpUser{id: []byte("bob-handle-0002"), name: "bob"}
	register(t, wa, d, alice, regOpts{alg: -7, rk: true, wantFmt: "packed"})
	time.Sleep(2 * time.Millisecond) // distinct creation times for the newest-first order
	register(t, wa, d, bob, regOpts{alg: -8, rk: true, wantFmt: "packed"})

	// A credential on another RP must not be offered.
	registerOn(t, "other.example", d, &rpUser{id: []byte("carol"), name: "carol"})

	for round := 0; round < 3; round++ {
		got := discoverableLogin(t, wa, d, alice, bob)
		if len(got) != 2 || got[0] != bob || got[1] != alice {
			t.Fatalf("round %d: order %v, want bob then alice", round, names(got))
		}
	}
	// Each account still logs in username-first.
	login(t, wa, d, alice)
	login(t, wa, d, bob)
}

func names(us []*rpUser) []string {
	var s []string
	for _, u := range us {
		s = append(s, u.name)
	}
	return s
}

// registerOn makes a resident credential on another RP (checked only by the key).
func registerOn(t testing.TB, id string, d *device, u *rpUser) {
	t.Helper()
	st, _ := d.call(t, ctap2.CmdMakeCredential, map[int]any{
		1: sha([]byte("other")),
		2: map[string]any{"id": id, "name": id},
		3: map[string]any{"id": u.id, "name": u.name},
		4: []map[string]any{{"type": "public-key", "alg": -7}},
		7: map[string]bool{"rk": true},
	})
	if st != ctap2.StatusOK {
		t.Fatalf("makeCredential on %s: %v", id, st)
	}
}

// Power cycles and reopening the state directory keep credentials and
// counters: every login after either is accepted without a clone warning.
func TestWebAuthnPowerCycleAndReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, err := inproc.New(inproc.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d := openDevice(t, k)
	wa := newRP(t)
	alice := &rpUser{id: []byte("alice-handle-0001"), name: "alice"}
	bob := &rpUser{id: []byte("bob-handle-0002"), name: "bob"}
	register(t, wa, d, alice, regOpts{alg: -7, rk: true, wantFmt: "packed"})
	time.Sleep(2 * time.Millisecond)
	register(t, wa, d, bob, regOpts{alg: -7, rk: true, wantFmt: "packed"})
	login(t, wa, d, alice)
	login(t, wa, d, bob)

	for i := 0; i < 2; i++ {
		k.PowerCycle()
		d = openDevice(t, k)
		login(t, wa, d, alice)
		discoverableLogin(t, wa, d, alice, bob)
	}

	// getNextAssertion state does not survive a power cycle.
	assertion, _, err := wa.BeginDiscoverableLogin()
	if err != nil {
		t.Fatal(err)
	}
	cdj := clientData("webauthn.get", assertion.Response.Challenge)
	if st, _ := d.call(t, ctap2.CmdGetAssertion, map[int]any{1: rpID, 2: sha(cdj)}); st != ctap2.StatusOK {
		t.Fatalf("getAssertion: %v", st)
	}
	k.PowerCycle()
	d = openDevice(t, k)
	if st, _ := d.call(t, ctap2.CmdGetNextAssertion, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("getNextAssertion after power cycle: %v, want NOT_ALLOWED", st)
	}

	for i := 0; i < 2; i++ {
		if err := k.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		k, err = inproc.New(inproc.Options{Dir: dir})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		d = openDevice(t, k)
		login(t, wa, d, alice)
		login(t, wa, d, bob)
		got := discoverableLogin(t, wa, d, alice, bob)
		if len(got) != 2 || got[0] != bob {
			t.Fatalf("after reopen: order %v, want bob first", names(got))
		}
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// The oracle is live: a tampered signature, a replayed challenge and
// another origin are refused.
func TestWebAuthnRejectsTampering(t *testing.T) {
	t.Parallel()
	k := newKey(t, inproc.Options{})
	d := openDevice(t, k)
	wa := newRP(t)
	u := &rpUser{id: []byte("alice-handle-0001"), name: "alice"}
	cred := register(t, wa, d, u, regOpts{alg: -7, wantFmt: "packed"})

	getAssertion := func(cdj []byte) *ctap2.GetAssertionResponse {
		st, out := d.call(t, ctap2.CmdGetAssertion, map[int]any{1: rpID, 2: sha(cdj),
			3: []map[string]any{{"type": "public-key", "id": cred.ID}}})
		if st != ctap2.StatusOK {
			t.Fatalf("getAssertion: %v", st)
		}
		return decodeGA(t, out)
	}
	for _, tc := range []struct {
		name   string
		mutate func(ga *ctap2.GetAssertionResponse, cdj *[]byte, challenge protocol.URLEncodedBase64)
	}{
		{"signature", func(ga *ctap2.GetAssertionResponse, _ *[]byte, _ protocol.URLEncodedBase64) {
			ga.Signature[len(ga.Signature)-1] ^= 1
		}},
		{"authData", func(ga *ctap2.GetAssertionResponse, _ *[]byte, _ protocol.URLEncodedBase64) {
			ga.AuthData[33] ^= 0xff // sign count
		}},
		{"challenge", func(ga *ctap2.GetAssertionResponse, cdj *[]byte, _ protocol.URLEncodedBase64) {
			*cdj = clientData("webauthn.get", protocol.URLEncodedBase64(bytes.Repeat([]byte{1}, 32)))
			*ga = *getAssertion(*cdj)
		}},
		{"origin", func(ga *ctap2.GetAssertionResponse, cdj *[]byte, challenge protocol.URLEncodedBase64) {
			*cdj, _ = json.Marshal(map[string]any{"type": "webauthn.get", "challenge": challenge.String(), "origin": "https://evil.example"})
			*ga = *getAssertion(*cdj)
		}},
	} {
		assertion, session, err := wa.BeginLogin(u)
		if err != nil {
			t.Fatal(err)
		}
		cdj := clientData("webauthn.get", assertion.Response.Challenge)
		ga := getAssertion(cdj)
		tc.mutate(ga, &cdj, assertion.Response.Challenge)
		if _, err := wa.ValidateLogin(u, *session, assertionBody(t, ga, cdj)); err == nil {
			t.Errorf("%s: tampered assertion accepted", tc.name)
		}
	}
	// The untampered path still works afterwards.
	login(t, wa, d, u)
}
