// Package rptest is a WebAuthn relying party for tests: go-webauthn, the
// project's test-only oracle for attestations and assertions, verifying
// registrations and logins made with a key through CTAP2 commands. It is
// for tests only (the ctap2 end-to-end tests and internal/tpmtest import
// it): its functions take a [testing.TB] and fail the test instead of
// returning errors.
//
// [RP.Register], [RP.Login] and [RP.DiscoverableLogin] run whole
// ceremonies: the RP's options become authenticatorMakeCredential and
// authenticatorGetAssertion requests, and the key's answers become the
// JSON a browser would send the RP, which go-webauthn parses and
// validates. [CreationResponse] and [AssertionResponse] build that JSON
// for tests that change what the key said.
package rptest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/virtkey/virtkey/ctap2"
)

// Device sends a CTAP2 command (params encoded as CTAP2-canonical CBOR, nil
// for none) and returns the status and the response CBOR. A
// *client.Device is one.
type Device interface {
	Transact(ctx context.Context, cmd byte, params any) (ctap2.StatusCode, []byte, error)
}

// callTimeout bounds one command, user presence included.
const callTimeout = 30 * time.Second

// encMode encodes as a platform does: CTAP2-canonical CBOR.
var encMode = func() cbor.EncMode {
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// User is a relying-party account: a [webauthn.User] whose credentials the
// ceremonies keep up to date.
type User struct {
	ID    []byte // user handle
	Name  string
	Creds []webauthn.Credential
}

func (u *User) WebAuthnID() []byte                         { return u.ID }
func (u *User) WebAuthnName() string                       { return u.Name }
func (u *User) WebAuthnDisplayName() string                { return "Display " + u.Name }
func (u *User) WebAuthnCredentials() []webauthn.Credential { return u.Creds }

// update replaces the stored credential with the one a login returned (new
// sign count, clone warning, flags).
func (u *User) update(c *webauthn.Credential) {
	for i := range u.Creds {
		if bytes.Equal(u.Creds[i].ID, c.ID) {
			u.Creds[i] = *c
			return
		}
	}
}

func (u *User) signCount(id []byte) uint32 {
	for _, c := range u.Creds {
		if bytes.Equal(c.ID, id) {
			return c.Authenticator.SignCount
		}
	}
	return 0
}

// RP is a go-webauthn relying party with one origin.
type RP struct {
	*webauthn.WebAuthn
	ID     string // RP ID
	Origin string // origin of the client data
}

// New is a relying party "Example" with ID rpID at origin.
func New(t testing.TB, rpID, origin string) *RP {
	t.Helper()
	return NewWithConfig(t, &webauthn.Config{RPID: rpID, RPDisplayName: "Example", RPOrigins: []string{origin}})
}

// NewWithConfig is a relying party with cfg (for example one with metadata
// that makes it check attestation chains). Its origin is cfg.RPOrigins[0].
func NewWithConfig(t testing.TB, cfg *webauthn.Config) *RP {
	t.Helper()
	wa, err := webauthn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &RP{WebAuthn: wa, ID: cfg.RPID, Origin: cfg.RPOrigins[0]}
}

// ClientData is the clientDataJSON of a ceremony of type typ
// ("webauthn.create" or "webauthn.get") at the RP's origin.
func (rp *RP) ClientData(typ string, challenge protocol.URLEncodedBase64) []byte {
	b, err := json.Marshal(map[string]any{
		"type":        typ,
		"challenge":   challenge.String(),
		"origin":      rp.Origin,
		"crossOrigin": false,
	})
	if err != nil {
		panic(err) // a map of strings and a bool
	}
	return b
}

// Describe adds go-webauthn's DevInfo, which says what failed, to err.
func Describe(err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return fmt.Errorf("%w (%s)", err, pe.DevInfo)
	}
	return err
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// Call sends cmd with params to d and returns the status and the response
// CBOR; a transport error fails the test.
func Call(t testing.TB, d Device, cmd byte, params any) (ctap2.StatusCode, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	st, out, err := d.Transact(ctx, cmd, params)
	if err != nil {
		t.Fatalf("CTAP2 command %#x: %v", cmd, err)
	}
	return st, out
}

// RegisterOptions are the credential a registration asks for.
type RegisterOptions struct {
	Alg                int      // COSE algorithm (-7 ES256, -8 EdDSA, …)
	Resident           bool     // a discoverable credential (rk)
	AttestationFormats []string // CTAP 2.2 attestationFormatsPreference (0x0B); nil: none sent
	WantFmt            string   // the attestation statement format expected; "": any
	// Token, if set, authenticates the request with a pinUvAuthToken that
	// has the mc permission (a *client.PINToken): pinUvAuthParam over the
	// clientDataHash, and its protocol. A key with a PIN wants one for a
	// discoverable credential.
	Token interface {
		Authenticate(msg []byte) []byte
		Protocol() uint
	}
}

// Register runs a registration ceremony for u on d, has the RP verify the
// attestation, and stores the credential in u.
func (rp *RP) Register(t testing.TB, d Device, u *User, o RegisterOptions) *webauthn.Credential {
	t.Helper()
	var ropts []webauthn.RegistrationOption
	if o.Resident {
		ropts = append(ropts, webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired))
	}
	creation, session, err := rp.BeginRegistration(u, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	opts := creation.Response
	cdj := rp.ClientData("webauthn.create", opts.Challenge)
	params := map[int]any{
		1: sha256Sum(cdj),
		2: map[string]any{"id": opts.RelyingParty.ID, "name": opts.RelyingParty.Name},
		3: map[string]any{"id": u.ID, "name": opts.User.Name, "displayName": opts.User.DisplayName},
		4: []map[string]any{{"type": "public-key", "alg": o.Alg}},
	}
	if o.Resident {
		params[7] = map[string]bool{"rk": true}
	}
	if o.AttestationFormats != nil {
		params[11] = o.AttestationFormats
	}
	if o.Token != nil {
		params[8] = o.Token.Authenticate(sha256Sum(cdj))
		params[9] = o.Token.Protocol()
	}
	st, out := Call(t, d, ctap2.CmdMakeCredential, params)
	if st != ctap2.StatusOK {
		t.Fatalf("makeCredential: %v", st)
	}
	var typed ctap2.MakeCredentialResponse
	if err := cbor.Unmarshal(out, &typed); err != nil {
		t.Fatalf("decode makeCredential response: %v", err)
	}
	if o.WantFmt != "" && typed.Fmt != o.WantFmt {
		t.Fatalf("fmt %q, want %q", typed.Fmt, o.WantFmt)
	}
	att := DecodeAttestation(t, out)
	ad, err := ctap2.ParseAuthData(att.AuthData)
	if err != nil {
		t.Fatal(err)
	}
	if ad.Flags&(ctap2.FlagUP|ctap2.FlagAT) != ctap2.FlagUP|ctap2.FlagAT {
		t.Fatalf("authData flags %#x", ad.Flags)
	}
	cred, err := rp.CreateCredential(u, *session, CreationResponse(t, att, cdj))
	if err != nil {
		t.Fatalf("CreateCredential: %v", Describe(err))
	}
	if o.WantFmt != "" && cred.AttestationFormat != o.WantFmt {
		t.Fatalf("RP saw attestation format %q, want %q", cred.AttestationFormat, o.WantFmt)
	}
	if !bytes.Equal(cred.ID, ad.CredentialID) {
		t.Fatal("credential ID mismatch")
	}
	u.Creds = append(u.Creds, *cred)
	return cred
}

// Attestation is an authenticatorMakeCredential response kept as the
// authenticator encoded it, so that the attestation object carries exactly
// the signed-over statement (CTAP 2.1 §6.1.2).
type Attestation struct {
	Fmt      string          `cbor:"1,keyasint"`
	AuthData []byte          `cbor:"2,keyasint"`
	AttStmt  cbor.RawMessage `cbor:"3,keyasint"`
	EPAtt    *bool           `cbor:"4,keyasint"`
}

// DecodeAttestation decodes a makeCredential response.
func DecodeAttestation(t testing.TB, out []byte) *Attestation {
	t.Helper()
	var att Attestation
	if err := cbor.Unmarshal(out, &att); err != nil {
		t.Fatalf("decode makeCredential response: %v", err)
	}
	return &att
}

// CreationResponse is the client's registration JSON for att and the
// clientDataJSON cdj, parsed by go-webauthn.
func CreationResponse(t testing.TB, att *Attestation, cdj []byte) *protocol.ParsedCredentialCreationData {
	t.Helper()
	ad, err := ctap2.ParseAuthData(att.AuthData)
	if err != nil {
		t.Fatal(err)
	}
	attObj, err := encMode.Marshal(map[string]any{"fmt": att.Fmt, "authData": att.AuthData, "attStmt": att.AttStmt})
	if err != nil {
		t.Fatal(err)
	}
	return parseAs(t, "registration", protocol.ParseCredentialCreationResponseBody, protocol.CredentialCreationResponse{
		PublicKeyCredential: publicKeyCredential(ad.CredentialID),
		AttestationResponse: protocol.AuthenticatorAttestationResponse{
			AuthenticatorResponse: protocol.AuthenticatorResponse{ClientDataJSON: cdj},
			AttestationObject:     attObj,
			Transports:            []string{"usb"},
		},
	})
}

// publicKeyCredential is the PublicKeyCredential part of a security key's
// answer with credential id.
func publicKeyCredential(id []byte) protocol.PublicKeyCredential {
	return protocol.PublicKeyCredential{
		Credential:              protocol.Credential{ID: base64.RawURLEncoding.EncodeToString(id), Type: "public-key"},
		RawID:                   id,
		AuthenticatorAttachment: "cross-platform",
	}
}

// parseAs encodes response as the JSON a browser sends the RP and parses
// it with go-webauthn's parse; what names the ceremony in a failure.
func parseAs[P any](t testing.TB, what string, parse func(io.Reader) (P, error), response any) P {
	t.Helper()
	body, err := json.Marshal(response)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := parse(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v", what, Describe(err))
	}
	return parsed
}

// DecodeAssertion decodes a getAssertion or getNextAssertion response.
func DecodeAssertion(t testing.TB, out []byte) *ctap2.GetAssertionResponse {
	t.Helper()
	var ga ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(out, &ga); err != nil {
		t.Fatalf("decode getAssertion response: %v", err)
	}
	return &ga
}

// AssertionResponse is the client's login JSON for ga and the
// clientDataJSON cdj, parsed by go-webauthn.
func AssertionResponse(t testing.TB, ga *ctap2.GetAssertionResponse, cdj []byte) *protocol.ParsedCredentialAssertionData {
	t.Helper()
	var userHandle []byte
	if ga.User != nil {
		userHandle = ga.User.ID
	}
	return parseAs(t, "assertion", protocol.ParseCredentialRequestResponseBody, protocol.CredentialAssertionResponse{
		PublicKeyCredential: publicKeyCredential(ga.Credential.ID),
		AssertionResponse: protocol.AuthenticatorAssertionResponse{
			AuthenticatorResponse: protocol.AuthenticatorResponse{ClientDataJSON: cdj},
			AuthenticatorData:     ga.AuthData,
			Signature:             ga.Signature,
			UserHandle:            userHandle,
		},
	})
}

// checkCounter requires a strictly growing counter and no clone warning,
// and records the new state in u.
func checkCounter(t testing.TB, u *User, before uint32, got *webauthn.Credential) {
	t.Helper()
	if got.Authenticator.CloneWarning {
		t.Fatalf("%s: clone warning (sign count %d after %d)", u.Name, got.Authenticator.SignCount, before)
	}
	if got.Authenticator.SignCount <= before {
		t.Fatalf("%s: sign count %d did not grow from %d", u.Name, got.Authenticator.SignCount, before)
	}
	u.update(got)
}

// Login runs a username-first login ceremony for u (allowList from the RP)
// and has the RP validate it: the sign count must grow.
func (rp *RP) Login(t testing.TB, d Device, u *User) *webauthn.Credential {
	t.Helper()
	assertion, session, err := rp.BeginLogin(u)
	if err != nil {
		t.Fatal(err)
	}
	opts := assertion.Response
	cdj := rp.ClientData("webauthn.get", opts.Challenge)
	var allow []map[string]any
	for _, c := range opts.AllowedCredentials {
		allow = append(allow, map[string]any{"type": string(c.Type), "id": []byte(c.CredentialID)})
	}
	st, out := Call(t, d, ctap2.CmdGetAssertion, map[int]any{1: opts.RelyingPartyID, 2: sha256Sum(cdj), 3: allow})
	if st != ctap2.StatusOK {
		t.Fatalf("getAssertion: %v", st)
	}
	ga := DecodeAssertion(t, out)
	before := u.signCount(ga.Credential.ID)
	cred, err := rp.ValidateLogin(u, *session, AssertionResponse(t, ga, cdj))
	if err != nil {
		t.Fatalf("ValidateLogin: %v", Describe(err))
	}
	checkCounter(t, u, before, cred)
	return cred
}

// Assertion is one login the RP accepted.
type Assertion struct {
	User       *User
	Credential *webauthn.Credential // as the RP stored it after the login
}

// DiscoverableLogin runs a username-less login: getAssertion without an
// allowList, then getNextAssertion for every further account, which must be
// refused (NOT_ALLOWED) past the last. With more than one user, the key
// must offer exactly that many. Each assertion must be for one of users,
// with a growing sign count; they are returned in the order the key
// offered them.
func (rp *RP) DiscoverableLogin(t testing.TB, d Device, users ...*User) []Assertion {
	t.Helper()
	assertion, session, err := rp.BeginDiscoverableLogin()
	if err != nil {
		t.Fatal(err)
	}
	opts := assertion.Response
	if len(opts.AllowedCredentials) != 0 {
		t.Fatal("discoverable login with an allowList")
	}
	cdj := rp.ClientData("webauthn.get", opts.Challenge)
	st, out := Call(t, d, ctap2.CmdGetAssertion, map[int]any{1: rp.ID, 2: sha256Sum(cdj)})
	if st != ctap2.StatusOK {
		t.Fatalf("getAssertion: %v", st)
	}
	first := DecodeAssertion(t, out)
	n := int(first.NumberOfCredentials)
	if len(users) > 1 && n != len(users) {
		t.Fatalf("numberOfCredentials %d, want %d", n, len(users))
	}
	if n == 0 {
		n = 1
	}
	byHandle := func(userHandle []byte) (*User, error) {
		for _, u := range users {
			if bytes.Equal(u.ID, userHandle) {
				return u, nil
			}
		}
		return nil, fmt.Errorf("no user with handle %x", userHandle)
	}
	handler := func(_, userHandle []byte) (webauthn.User, error) { return byHandle(userHandle) }
	var seen []Assertion
	for i := 0; i < n; i++ {
		ga := first
		if i > 0 {
			st, out := Call(t, d, ctap2.CmdGetNextAssertion, nil)
			if st != ctap2.StatusOK {
				t.Fatalf("getNextAssertion %d: %v", i, st)
			}
			ga = DecodeAssertion(t, out)
		}
		if ga.User == nil || len(ga.User.ID) == 0 {
			t.Fatalf("assertion %d without a user handle", i)
		}
		parsed := AssertionResponse(t, ga, cdj)
		u, err := byHandle(ga.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		before := u.signCount(ga.Credential.ID)
		cred, err := rp.ValidateDiscoverableLogin(handler, *session, parsed)
		if err != nil {
			t.Fatalf("ValidateDiscoverableLogin %d: %v", i, Describe(err))
		}
		checkCounter(t, u, before, cred)
		seen = append(seen, Assertion{User: u, Credential: cred})
	}
	// The sequence is over: one more getNextAssertion is refused.
	if st, _ := Call(t, d, ctap2.CmdGetNextAssertion, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("getNextAssertion past the end: %v, want NOT_ALLOWED", st)
	}
	return seen
}
