package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/virtkey/virtkey/ctap2"
)

// makeCredentialResponse is the authenticatorMakeCredential output.
type makeCredentialResponse struct {
	Fmt          string     `cbor:"1,keyasint"`
	AuthData     []byte     `cbor:"2,keyasint"`
	AttStmt      RawMessage `cbor:"3,keyasint"`
	EPAtt        *bool      `cbor:"4,keyasint"`
	LargeBlobKey []byte     `cbor:"5,keyasint"`
}

// Attestation is a makeCredential result.
type Attestation struct {
	Fmt          string
	AuthData     *ctap2.AuthData // parsed; CredentialID and PublicKey are set
	RawAuthData  []byte
	AttStmt      RawMessage // the attestation statement map, undecoded
	EPAtt        bool
	LargeBlobKey []byte
}

// MakeCredential creates a credential (authenticatorMakeCredential, CTAP
// 2.1 §6.1). If token is not nil, the request gets pinUvAuthParam =
// authenticate(token, clientDataHash) and the token's protocol; req itself
// is not modified.
func (d *Device) MakeCredential(ctx context.Context, req *ctap2.MakeCredentialRequest, token *PINToken) (*Attestation, error) {
	r := *req
	if token != nil {
		r.PinUvAuthParam, r.PinUvAuthProtocol = token.authenticateCDH(r.ClientDataHash)
	}
	var resp makeCredentialResponse
	d.mu.Lock()
	err := d.call(ctx, "makeCredential", ctap2.CmdMakeCredential, &r, &resp)
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ad, err := ctap2.ParseAuthData(resp.AuthData)
	if err != nil {
		return nil, fmt.Errorf("makeCredential: %w", err)
	}
	if ad.Flags&ctap2.FlagAT == 0 {
		return nil, errors.New("makeCredential: authenticator data without attested credential data")
	}
	return &Attestation{
		Fmt:          resp.Fmt,
		AuthData:     ad,
		RawAuthData:  resp.AuthData,
		AttStmt:      resp.AttStmt,
		EPAtt:        resp.EPAtt != nil && *resp.EPAtt,
		LargeBlobKey: resp.LargeBlobKey,
	}, nil
}

// getAssertionResponse is the authenticatorGetAssertion and
// authenticatorGetNextAssertion output.
type getAssertionResponse struct {
	Credential          *ctap2.CredDescriptor `cbor:"1,keyasint"`
	AuthData            []byte                `cbor:"2,keyasint"`
	Signature           []byte                `cbor:"3,keyasint"`
	User                *ctap2.UserEntity     `cbor:"4,keyasint"`
	NumberOfCredentials *uint                 `cbor:"5,keyasint"`
	UserSelected        *bool                 `cbor:"6,keyasint"`
	LargeBlobKey        []byte                `cbor:"7,keyasint"`
}

// Assertion is a getAssertion or getNextAssertion result.
type Assertion struct {
	CredentialID        []byte
	AuthData            *ctap2.AuthData
	RawAuthData         []byte // what the signature covers, with clientDataHash
	Signature           []byte
	User                *ctap2.UserEntity // discoverable credentials only
	NumberOfCredentials int               // 0 when not reported
	UserSelected        bool
	LargeBlobKey        []byte
}

// GetAssertion asks for an assertion (authenticatorGetAssertion, CTAP 2.1
// §6.2). If token is not nil, the request gets pinUvAuthParam =
// authenticate(token, clientDataHash) and the token's protocol; req itself
// is not modified.
func (d *Device) GetAssertion(ctx context.Context, req *ctap2.GetAssertionRequest, token *PINToken) (*Assertion, error) {
	r := *req
	if token != nil {
		r.PinUvAuthParam, r.PinUvAuthProtocol = token.authenticateCDH(r.ClientDataHash)
	}
	return d.assertion(ctx, "getAssertion", ctap2.CmdGetAssertion, &r)
}

// GetNextAssertion returns the next of the NumberOfCredentials assertions
// of the previous getAssertion (authenticatorGetNextAssertion).
func (d *Device) GetNextAssertion(ctx context.Context) (*Assertion, error) {
	return d.assertion(ctx, "getNextAssertion", ctap2.CmdGetNextAssertion, nil)
}

func (d *Device) assertion(ctx context.Context, op string, cmd byte, params any) (*Assertion, error) {
	var resp getAssertionResponse
	d.mu.Lock()
	err := d.call(ctx, op, cmd, params, &resp)
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if resp.Credential == nil || resp.AuthData == nil || resp.Signature == nil {
		return nil, fmt.Errorf("%s: incomplete response", op)
	}
	ad, err := ctap2.ParseAuthData(resp.AuthData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	a := &Assertion{
		CredentialID: resp.Credential.ID,
		AuthData:     ad,
		RawAuthData:  resp.AuthData,
		Signature:    resp.Signature,
		User:         resp.User,
		UserSelected: resp.UserSelected != nil && *resp.UserSelected,
		LargeBlobKey: resp.LargeBlobKey,
	}
	if resp.NumberOfCredentials != nil {
		a.NumberOfCredentials = int(*resp.NumberOfCredentials)
	}
	return a, nil
}
