package tpmtest

// A relying party (go-webauthn) that registers and logs in with a key
// through the Go CTAP client.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
)

const (
	rpID     = "example.com"
	rpOrigin = "https://example.com"
)

type rpUser struct {
	id    []byte
	name  string
	creds []webauthn.Credential
}

func (u *rpUser) WebAuthnID() []byte                         { return u.id }
func (u *rpUser) WebAuthnName() string                       { return u.name }
func (u *rpUser) WebAuthnDisplayName() string                { return "Display " + u.name }
func (u *rpUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func newRP(t testing.TB) *webauthn.WebAuthn {
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "Example", RPOrigins: []string{rpOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	return wa
}

func clientData(typ string, challenge protocol.URLEncodedBase64) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge.String(), "origin": rpOrigin, "crossOrigin": false})
	return b
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func describe(err error) error {
	if pe, ok := err.(*protocol.Error); ok {
		return fmt.Errorf("%w (%s)", err, pe.DevInfo)
	}
	return err
}

func call(t testing.TB, d *client.Device, cmd byte, params any) (ctap2.StatusCode, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, out, err := d.Transact(ctx, cmd, params)
	if err != nil {
		t.Fatalf("CTAP2 command %#x: %v", cmd, err)
	}
	return st, out
}

type mcRaw struct {
	Fmt      string          `cbor:"1,keyasint"`
	AuthData []byte          `cbor:"2,keyasint"`
	AttStmt  cbor.RawMessage `cbor:"3,keyasint"`
}

// register makes a credential of COSE algorithm alg (resident when rk) and
// has the RP verify its packed self attestation.
func register(t testing.TB, wa *webauthn.WebAuthn, d *client.Device, u *rpUser, alg int, rk bool) *webauthn.Credential {
	t.Helper()
	var ropts []webauthn.RegistrationOption
	if rk {
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
		4: []map[string]any{{"type": "public-key", "alg": alg}},
	}
	if rk {
		params[7] = map[string]bool{"rk": true}
	}
	st, out := call(t, d, ctap2.CmdMakeCredential, params)
	if st != ctap2.StatusOK {
		t.Fatalf("makeCredential: %v", st)
	}
	var raw mcRaw
	if err := cbor.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	ad, err := ctap2.ParseAuthData(raw.AuthData)
	if err != nil {
		t.Fatal(err)
	}
	attObj, err := cbor.Marshal(map[string]any{"fmt": raw.Fmt, "authData": raw.AuthData, "attStmt": raw.AttStmt})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(protocol.CredentialCreationResponse{
		PublicKeyCredential: protocol.PublicKeyCredential{
			Credential:              protocol.Credential{ID: base64.RawURLEncoding.EncodeToString(ad.CredentialID), Type: "public-key"},
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
	u.creds = append(u.creds, *cred)
	return cred
}

// discoverableLogin runs a username-less login (no allowList) and has the
// RP verify the assertion; it returns the credential ID used.
func discoverableLogin(t testing.TB, wa *webauthn.WebAuthn, d *client.Device, u *rpUser) []byte {
	t.Helper()
	assertion, session, err := wa.BeginDiscoverableLogin()
	if err != nil {
		t.Fatal(err)
	}
	cdj := clientData("webauthn.get", assertion.Response.Challenge)
	st, out := call(t, d, ctap2.CmdGetAssertion, map[int]any{1: rpID, 2: sha(cdj)})
	if st != ctap2.StatusOK {
		t.Fatalf("getAssertion: %v", st)
	}
	var ga ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(out, &ga); err != nil {
		t.Fatal(err)
	}
	if ga.User == nil || !bytes.Equal(ga.User.ID, u.id) {
		t.Fatalf("assertion for user %+v, want %x", ga.User, u.id)
	}
	body, err := json.Marshal(protocol.CredentialAssertionResponse{
		PublicKeyCredential: protocol.PublicKeyCredential{
			Credential:              protocol.Credential{ID: base64.RawURLEncoding.EncodeToString(ga.Credential.ID), Type: "public-key"},
			RawID:                   []byte(ga.Credential.ID),
			AuthenticatorAttachment: "cross-platform",
		},
		AssertionResponse: protocol.AuthenticatorAssertionResponse{
			AuthenticatorResponse: protocol.AuthenticatorResponse{ClientDataJSON: cdj},
			AuthenticatorData:     ga.AuthData,
			Signature:             ga.Signature,
			UserHandle:            []byte(ga.User.ID),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBody(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse assertion: %v", describe(err))
	}
	handler := func(_, userHandle []byte) (webauthn.User, error) {
		if !bytes.Equal(userHandle, u.id) {
			return nil, fmt.Errorf("unknown user %x", userHandle)
		}
		return u, nil
	}
	cred, err := wa.ValidateDiscoverableLogin(handler, *session, parsed)
	if err != nil {
		t.Fatalf("ValidateDiscoverableLogin: %v", describe(err))
	}
	if cred.Authenticator.CloneWarning {
		t.Fatalf("clone warning (sign count %d)", cred.Authenticator.SignCount)
	}
	for i := range u.creds {
		if bytes.Equal(u.creds[i].ID, cred.ID) {
			u.creds[i] = *cred
		}
	}
	return ga.Credential.ID
}
