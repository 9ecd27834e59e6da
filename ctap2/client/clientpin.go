package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
)

// Permission is a pinUvAuthToken permission bit (CTAP 2.1 §6.5.5.7): the
// authenticator's own type, so that a client and ctap2 agree on the bits.
type Permission = ctap2.Permission

// Permissions, re-exported from ctap2 for callers of this package.
const (
	PermMakeCredential     = ctap2.PermMakeCredential
	PermGetAssertion       = ctap2.PermGetAssertion
	PermCredentialMgmt     = ctap2.PermCredentialMgmt
	PermBioEnrollment      = ctap2.PermBioEnrollment
	PermLargeBlobWrite     = ctap2.PermLargeBlobWrite
	PermAuthenticatorCfg   = ctap2.PermAuthenticatorCfg
	PermPersistentCredMgmt = ctap2.PermPersistentCredMgmt
)

// clientPINRequest is the authenticatorClientPIN (0x06) input.
type clientPINRequest struct {
	PinUvAuthProtocol uint        `cbor:"1,keyasint,omitempty"`
	SubCommand        uint        `cbor:"2,keyasint"`
	KeyAgreement      map[int]any `cbor:"3,keyasint,omitempty"`
	PinUvAuthParam    []byte      `cbor:"4,keyasint,omitempty"`
	NewPinEnc         []byte      `cbor:"5,keyasint,omitempty"`
	PinHashEnc        []byte      `cbor:"6,keyasint,omitempty"`
	Permissions       uint        `cbor:"9,keyasint,omitempty"`
	RPID              string      `cbor:"10,keyasint,omitempty"`
}

// clientPINResponse is the authenticatorClientPIN output.
type clientPINResponse struct {
	KeyAgreement    RawMessage `cbor:"1,keyasint"`
	PinUvAuthToken  []byte     `cbor:"2,keyasint"`
	PinRetries      *uint      `cbor:"3,keyasint"`
	PowerCycleState *bool      `cbor:"4,keyasint"`
	UVRetries       *uint      `cbor:"5,keyasint"`
}

// PINError is a PIN the authenticator refused: Status is PIN_INVALID,
// PIN_AUTH_BLOCKED or PIN_BLOCKED. Retries is what getPINRetries said
// afterwards, or -1 when that was not asked or failed. It unwraps to Status.
type PINError struct {
	Op      string
	Status  ctap2.StatusCode
	Retries int
}

func (e *PINError) Error() string {
	if e.Retries >= 0 {
		return fmt.Sprintf("%s: %v (%d retries left)", e.Op, e.Status, e.Retries)
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Status)
}

func (e *PINError) Unwrap() error { return e.Status }

// PINToken is a pinUvAuthToken obtained from the authenticator together
// with the protocol it belongs to. It authenticates requests and never
// appears in logs or JSON.
type PINToken struct {
	protocol    ctap2.PINProtocol
	token       *ctap2.PINUVAuthToken
	permissions Permission
	rpID        string
}

// Protocol is the pinUvAuthProtocol to send with the token's pinUvAuthParam.
func (t *PINToken) Protocol() uint { return t.protocol.Version() }

// Permissions are those asked for (a legacy getPinToken token has mc and ga
// implicitly, whatever was asked).
func (t *PINToken) Permissions() Permission { return t.permissions }

// RPID is the RP ID the token was bound to, if any.
func (t *PINToken) RPID() string { return t.rpID }

// Authenticate is authenticate(pinUvAuthToken, msg): the pinUvAuthParam for
// msg.
func (t *PINToken) Authenticate(msg []byte) []byte { return t.protocol.Authenticate(t.token, msg) }

// authenticateCDH is the pinUvAuthParam and pinUvAuthProtocol of a
// makeCredential or getAssertion request with clientDataHash cdh.
func (t *PINToken) authenticateCDH(cdh []byte) ([]byte, *uint) {
	v := t.Protocol()
	return t.Authenticate(cdh), &v
}

// LogValue implements [slog.LogValuer]: the token is never logged.
func (*PINToken) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// String keeps the token out of fmt output.
func (*PINToken) String() string { return "REDACTED" }

// MarshalJSON always fails: a token is never serialized.
func (*PINToken) MarshalJSON() ([]byte, error) {
	return nil, errors.New("client: refusing to marshal a pinUvAuthToken")
}

// SetPINProtocol makes the device use PIN/UV auth protocol v (1 or 2)
// instead of the one chosen from getInfo.
func (d *Device) SetPINProtocol(v uint) error {
	p, ok := ctap2.PINProtocolByVersion(v)
	if !ok {
		return fmt.Errorf("unknown PIN/UV auth protocol %d", v)
	}
	d.mu.Lock()
	d.protocol = p
	d.mu.Unlock()
	return nil
}

// PINProtocol returns the PIN/UV auth protocol the device uses: the one set
// with [Device.SetPINProtocol], else 2 if the authenticator offers it, else 1.
func (d *Device) PINProtocol(ctx context.Context) (uint, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, err := d.pinProtocol(ctx)
	if err != nil {
		return 0, err
	}
	return p.Version(), nil
}

func (d *Device) pinProtocol(ctx context.Context) (ctap2.PINProtocol, error) {
	if d.protocol != nil {
		return d.protocol, nil
	}
	info, err := d.cachedInfo(ctx)
	if err != nil {
		return nil, err
	}
	offered := info.PinUvAuthProtocols
	if len(offered) == 0 {
		offered = []uint{1} // CTAP 2.0 keys may omit the list
	}
	for _, v := range []uint{2, 1} {
		if slices.Contains(offered, v) {
			p, _ := ctap2.PINProtocolByVersion(v)
			return p, nil
		}
	}
	return nil, fmt.Errorf("the authenticator offers no PIN/UV auth protocol this client knows (it lists %v)", offered)
}

// clientPIN sends one authenticatorClientPIN subcommand.
func (d *Device) clientPIN(ctx context.Context, op string, req *clientPINRequest) (*clientPINResponse, error) {
	var resp clientPINResponse
	if err := d.call(ctx, "clientPIN "+op, ctap2.CmdClientPIN, req, &resp); err != nil {
		if errors.Is(err, errEmptyResponse) {
			return &clientPINResponse{}, nil // setPIN and changePIN answer nothing
		}
		return nil, err
	}
	return &resp, nil
}

// pinQuery sends clientPIN subcommand sub, which takes nothing but the
// PIN/UV auth protocol.
func (d *Device) pinQuery(ctx context.Context, op string, sub uint) (*clientPINResponse, error) {
	p, err := d.pinProtocol(ctx)
	if err != nil {
		return nil, err
	}
	return d.clientPIN(ctx, op, &clientPINRequest{PinUvAuthProtocol: p.Version(), SubCommand: sub})
}

// GetPINRetries returns the number of PIN attempts left
// (getPINRetries) and, if the authenticator says, whether a power cycle is
// needed before the next attempt (powerCycleState).
func (d *Device) GetPINRetries(ctx context.Context) (retries int, powerCycle *bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.getPINRetries(ctx)
}

func (d *Device) getPINRetries(ctx context.Context) (int, *bool, error) {
	resp, err := d.pinQuery(ctx, "getPINRetries", ctap2.ClientPINGetRetries)
	if err != nil {
		return 0, nil, err
	}
	if resp.PinRetries == nil {
		return 0, nil, errors.New("clientPIN getPINRetries: response without pinRetries")
	}
	return int(*resp.PinRetries), resp.PowerCycleState, nil
}

// GetUVRetries returns the number of built-in user verification attempts
// left (getUVRetries).
func (d *Device) GetUVRetries(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	resp, err := d.pinQuery(ctx, "getUVRetries", ctap2.ClientPINGetUVRetries)
	if err != nil {
		return 0, err
	}
	if resp.UVRetries == nil {
		return 0, errors.New("clientPIN getUVRetries: response without uvRetries")
	}
	return int(*resp.UVRetries), nil
}

// GetKeyAgreement returns the authenticator's current key-agreement public
// key for the device's PIN protocol (getKeyAgreement).
func (d *Device) GetKeyAgreement(ctx context.Context) (*ecdh.PublicKey, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, err := d.pinProtocol(ctx)
	if err != nil {
		return nil, err
	}
	return d.getKeyAgreement(ctx, p)
}

func (d *Device) getKeyAgreement(ctx context.Context, p ctap2.PINProtocol) (*ecdh.PublicKey, error) {
	resp, err := d.clientPIN(ctx, "getKeyAgreement", &clientPINRequest{PinUvAuthProtocol: p.Version(), SubCommand: ctap2.ClientPINGetKeyAgreement})
	if err != nil {
		return nil, err
	}
	if resp.KeyAgreement == nil {
		return nil, errors.New("clientPIN getKeyAgreement: response without keyAgreement")
	}
	k, err := cose.ParseKey(resp.KeyAgreement)
	if err != nil {
		return nil, fmt.Errorf("clientPIN getKeyAgreement: %w", err)
	}
	if k.Kty != cose.KeyTypeEC2 || k.Crv != cose.CurveP256 {
		return nil, errors.New("clientPIN getKeyAgreement: not a P-256 key")
	}
	pub, err := k.ECDH()
	if err != nil {
		return nil, fmt.Errorf("clientPIN getKeyAgreement: %w", err)
	}
	return pub, nil
}

// encapsulate runs getKeyAgreement and derives a fresh shared secret.
func (d *Device) encapsulate(ctx context.Context) (ctap2.PINProtocol, map[int]any, *ctap2.SharedSecret, error) {
	p, err := d.pinProtocol(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	authKey, err := d.getKeyAgreement(ctx, p)
	if err != nil {
		return nil, nil, nil, err
	}
	platformKey, shared, err := ctap2.PlatformEncapsulate(p, authKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("key agreement: %w", err)
	}
	return p, ctap2.PublicKeyCOSE(platformKey), shared, nil
}

// SetPIN sets the first PIN (setPIN). The PIN must be 1–63 bytes of UTF-8;
// the authenticator enforces its minPINLength (PIN_POLICY_VIOLATION).
func (d *Device) SetPIN(ctx context.Context, pin string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	req, shared, err := d.newPINRequest(ctx, "setPIN", ctap2.ClientPINSetPIN, pin)
	if err != nil {
		return err
	}
	req.PinUvAuthParam = shared.Authenticate(req.NewPinEnc)
	_, err = d.clientPIN(ctx, "setPIN", req)
	d.info = nil // clientPin is now true
	return err
}

// ChangePIN replaces the PIN (changePIN). A wrong current PIN is a
// [*PINError].
func (d *Device) ChangePIN(ctx context.Context, oldPIN, newPIN string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	req, shared, err := d.newPINRequest(ctx, "changePIN", ctap2.ClientPINChangePIN, newPIN)
	if err != nil {
		return err
	}
	if req.PinHashEnc, err = shared.Encrypt(ctap2.PINHash(oldPIN)); err != nil {
		return err
	}
	req.PinUvAuthParam = shared.Authenticate(append(bytes.Clone(req.NewPinEnc), req.PinHashEnc...))
	_, err = d.clientPIN(ctx, "changePIN", req)
	d.info = nil // forcePINChange may have been cleared
	return d.pinError(ctx, "clientPIN changePIN", err)
}

// newPINRequest starts the setPIN or changePIN (sub) request that sets
// newPIN: a fresh key agreement, and newPIN padded and encrypted under its
// shared secret, which it returns for the pinUvAuthParam.
func (d *Device) newPINRequest(ctx context.Context, op string, sub uint, newPIN string) (*clientPINRequest, *ctap2.SharedSecret, error) {
	padded, err := ctap2.PadPIN(newPIN)
	if err != nil {
		return nil, nil, fmt.Errorf("clientPIN %s: %w", op, err)
	}
	p, ka, shared, err := d.encapsulate(ctx)
	if err != nil {
		return nil, nil, err
	}
	newPinEnc, err := shared.Encrypt(padded)
	if err != nil {
		return nil, nil, err
	}
	return &clientPINRequest{
		PinUvAuthProtocol: p.Version(),
		SubCommand:        sub,
		KeyAgreement:      ka,
		NewPinEnc:         newPinEnc,
	}, shared, nil
}

// GetPINToken gets a pinUvAuthToken with the PIN: with permissions (and,
// when not empty, bound to rpID) through getPinUvAuthTokenUsingPinWithPermissions
// when the authenticator has the pinUvAuthToken option, else through the
// legacy getPinToken. A wrong PIN is a [*PINError].
func (d *Device) GetPINToken(ctx context.Context, pin string, perms Permission, rpID string) (*PINToken, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	info, err := d.cachedInfo(ctx)
	if err != nil {
		return nil, err
	}
	p, ka, shared, err := d.encapsulate(ctx)
	if err != nil {
		return nil, err
	}
	pinHashEnc, err := shared.Encrypt(ctap2.PINHash(pin))
	if err != nil {
		return nil, err
	}
	req := &clientPINRequest{
		PinUvAuthProtocol: p.Version(),
		SubCommand:        ctap2.ClientPINGetPINToken,
		KeyAgreement:      ka,
		PinHashEnc:        pinHashEnc,
	}
	op := "getPinToken"
	if v, _ := Option(info, "pinUvAuthToken"); v {
		op = "getPinUvAuthTokenUsingPinWithPermissions"
		req.SubCommand = ctap2.ClientPINGetTokenUsingPIN
		req.Permissions = uint(perms)
		req.RPID = rpID
	}
	resp, err := d.clientPIN(ctx, op, req)
	if err != nil {
		return nil, d.pinError(ctx, "clientPIN "+op, err)
	}
	return d.token(p, shared, resp, op, perms, rpID)
}

// GetUVToken gets a pinUvAuthToken through the authenticator's built-in
// user verification (getPinUvAuthTokenUsingUvWithPermissions).
func (d *Device) GetUVToken(ctx context.Context, perms Permission, rpID string) (*PINToken, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ka, shared, err := d.encapsulate(ctx)
	if err != nil {
		return nil, err
	}
	const op = "getPinUvAuthTokenUsingUvWithPermissions"
	resp, err := d.clientPIN(ctx, op, &clientPINRequest{
		PinUvAuthProtocol: p.Version(),
		SubCommand:        ctap2.ClientPINGetTokenUsingUV,
		KeyAgreement:      ka,
		Permissions:       uint(perms),
		RPID:              rpID,
	})
	if err != nil {
		return nil, err
	}
	return d.token(p, shared, resp, op, perms, rpID)
}

func (d *Device) token(p ctap2.PINProtocol, shared *ctap2.SharedSecret, resp *clientPINResponse, op string, perms Permission, rpID string) (*PINToken, error) {
	if resp.PinUvAuthToken == nil {
		return nil, fmt.Errorf("clientPIN %s: response without pinUvAuthToken", op)
	}
	raw, err := shared.Decrypt(resp.PinUvAuthToken)
	if err != nil {
		return nil, fmt.Errorf("clientPIN %s: decrypting the token: %w", op, err)
	}
	tok, err := ctap2.ParsePINUVAuthToken(p, raw)
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("clientPIN %s: %w", op, err)
	}
	return &PINToken{protocol: p, token: tok, permissions: perms, rpID: rpID}, nil
}

// pinError turns a refused PIN into a *PINError, asking getPINRetries how
// many attempts are left. Other errors pass through.
func (d *Device) pinError(ctx context.Context, op string, err error) error {
	var st ctap2.StatusCode
	if err == nil || !errors.As(err, &st) {
		return err
	}
	switch st {
	case ctap2.ErrPINInvalid, ctap2.ErrPINAuthBlocked, ctap2.ErrPINBlocked:
	default:
		return err
	}
	pe := &PINError{Op: op, Status: st, Retries: -1}
	if st == ctap2.ErrPINBlocked {
		pe.Retries = 0
	} else if n, _, rerr := d.getPINRetries(ctx); rerr == nil {
		pe.Retries = n
	}
	return pe
}
