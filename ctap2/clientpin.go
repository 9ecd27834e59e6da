package ctap2

import (
	"bytes"
	"context"
)

// ClientPIN subcommands (CTAP 2.1 §6.5.5), for the authenticator and its
// clients (ctap2/client).
const (
	ClientPINGetRetries       = 0x01
	ClientPINGetKeyAgreement  = 0x02
	ClientPINSetPIN           = 0x03
	ClientPINChangePIN        = 0x04
	ClientPINGetPINToken      = 0x05
	ClientPINGetTokenUsingUV  = 0x06
	ClientPINGetUVRetries     = 0x07
	ClientPINGetTokenUsingPIN = 0x09
)

// ClientPINRequest is the authenticatorClientPIN (0x06) input. See CTAP 2.1 §6.5.5.
type ClientPINRequest struct {
	PinUvAuthProtocol *uint             `cbor:"1,keyasint,omitempty"`
	SubCommand        *uint             `cbor:"2,keyasint,omitempty"`
	KeyAgreement      *KeyAgreementCOSE `cbor:"3,keyasint,omitempty"`
	PinUvAuthParam    Bytes             `cbor:"4,keyasint,omitempty"`
	NewPinEnc         Bytes             `cbor:"5,keyasint,omitempty"`
	PinHashEnc        Bytes             `cbor:"6,keyasint,omitempty"`
	Permissions       *uint             `cbor:"9,keyasint,omitempty"`
	RPID              *string           `cbor:"10,keyasint,omitempty"`
}

// KeyAgreementCOSE is the platform's key-agreement key as a COSE_Key
// (EC2, P-256; the alg is nominally -25 and not checked).
type KeyAgreementCOSE struct {
	Kty int   `cbor:"1,keyasint"`
	Alg int   `cbor:"3,keyasint,omitempty"`
	Crv int   `cbor:"-1,keyasint"`
	X   Bytes `cbor:"-2,keyasint"`
	Y   Bytes `cbor:"-3,keyasint"`
}

// ClientPINResponse is the authenticatorClientPIN output.
type ClientPINResponse struct {
	KeyAgreement    map[int]any `cbor:"1,keyasint,omitempty"`
	PinUvAuthToken  []byte      `cbor:"2,keyasint,omitempty"`
	PinRetries      *uint       `cbor:"3,keyasint,omitempty"`
	PowerCycleState *bool       `cbor:"4,keyasint,omitempty"`
	UVRetries       *uint       `cbor:"5,keyasint,omitempty"`
}

func (req *ClientPINRequest) validate() error {
	if req.SubCommand == nil {
		return ErrMissingParameter
	}
	// Every subcommand except the two retry queries needs a protocol.
	switch *req.SubCommand {
	case ClientPINGetRetries, ClientPINGetUVRetries:
		return nil
	}
	if req.PinUvAuthProtocol == nil {
		return ErrMissingParameter
	}
	if _, ok := PINProtocolByVersion(*req.PinUvAuthProtocol); !ok {
		return ErrInvalidParameter
	}
	need := func(ok bool) error {
		if !ok {
			return ErrMissingParameter
		}
		return nil
	}
	ka := req.KeyAgreement != nil
	switch *req.SubCommand {
	case ClientPINGetKeyAgreement:
		return nil
	case ClientPINSetPIN:
		return need(ka && req.NewPinEnc != nil && req.PinUvAuthParam != nil)
	case ClientPINChangePIN:
		return need(ka && req.NewPinEnc != nil && req.PinHashEnc != nil && req.PinUvAuthParam != nil)
	case ClientPINGetPINToken:
		if err := need(ka && req.PinHashEnc != nil); err != nil {
			return err
		}
		if req.Permissions != nil || req.RPID != nil {
			return ErrInvalidParameter
		}
		return nil
	case ClientPINGetTokenUsingPIN:
		return need(ka && req.PinHashEnc != nil && req.Permissions != nil)
	case ClientPINGetTokenUsingUV:
		return need(ka && req.Permissions != nil)
	}
	return ErrInvalidSubcommand
}

// clientPIN runs authenticatorClientPIN.
func (a *Authenticator) clientPIN(ctx context.Context, r request, req *ClientPINRequest) (any, error) {
	switch *req.SubCommand {
	case ClientPINGetRetries:
		if !a.state.pinSet() {
			// Compatibility choice: the spec names no error here, but
			// python-fido2's device tests expect PIN_NOT_SET right after a
			// factory reset, and then set their PIN; there are no retries
			// to count without a PIN.
			return nil, ErrPINNotSet
		}
		retries := a.state.PINRetries
		blocked := a.vol.pinFails >= maxConsecutivePINFails
		return &ClientPINResponse{PinRetries: &retries, PowerCycleState: &blocked}, nil
	case ClientPINGetUVRetries:
		if a.cfg.UV == UVNone {
			return nil, ErrInvalidSubcommand
		}
		retries := a.state.UVRetries
		return &ClientPINResponse{UVRetries: &retries}, nil
	case ClientPINGetKeyAgreement:
		return &ClientPINResponse{KeyAgreement: a.vol.keyAgreement.PublicCOSE()}, nil
	}
	p, _ := PINProtocolByVersion(*req.PinUvAuthProtocol)
	shared, err := a.sharedSecret(p, req.KeyAgreement)
	if err != nil {
		return nil, err
	}
	switch *req.SubCommand {
	case ClientPINSetPIN:
		return nil, a.setPIN(ctx, shared, req)
	case ClientPINChangePIN:
		return nil, a.changePIN(ctx, shared, req)
	case ClientPINGetPINToken:
		return a.getPINToken(ctx, shared, req.PinHashEnc, PermMakeCredential|PermGetAssertion, "", true)
	case ClientPINGetTokenUsingPIN:
		perms, rpID, err := req.permissions()
		if err != nil {
			return nil, err
		}
		return a.getPINToken(ctx, shared, req.PinHashEnc, perms, rpID, false)
	case ClientPINGetTokenUsingUV:
		return a.getUVToken(ctx, shared, req)
	}
	return nil, ErrInvalidSubcommand
}

func (a *Authenticator) sharedSecret(p PINProtocol, k *KeyAgreementCOSE) (*SharedSecret, error) {
	if k.Kty != 2 || k.Crv != 1 {
		return nil, ErrInvalidParameter
	}
	pub, err := ParsePlatformKey(k.X, k.Y)
	if err != nil {
		return nil, ErrInvalidParameter
	}
	return a.vol.keyAgreement.SharedSecret(p, pub)
}

// decryptNewPIN decrypts and checks newPinEnc against the PIN policy.
func (a *Authenticator) decryptNewPIN(shared *SharedSecret, newPinEnc []byte) (string, error) {
	want := 64
	if shared.Version() == 2 {
		want = 80
	}
	if len(newPinEnc) != want {
		return "", ErrInvalidParameter
	}
	padded, err := shared.Decrypt(newPinEnc)
	if err != nil {
		return "", ErrInvalidParameter
	}
	pin, err := UnpadPIN(padded)
	if err != nil {
		return "", err
	}
	if uint(PINCodePoints(pin)) < a.state.MinPINLength {
		return "", ErrPINPolicyViolation
	}
	return pin, nil
}

// setPIN sets the first PIN (§6.5.5.5).
func (a *Authenticator) setPIN(ctx context.Context, shared *SharedSecret, req *ClientPINRequest) error {
	if a.state.pinSet() {
		return ErrNotAllowed
	}
	if !shared.Verify(req.NewPinEnc, req.PinUvAuthParam) {
		return ErrPINAuthInvalid
	}
	pin, err := a.decryptNewPIN(shared, req.NewPinEnc)
	if err != nil {
		return err
	}
	return a.storePIN(ctx, pin)
}

func (a *Authenticator) storePIN(ctx context.Context, pin string) error {
	sealed, err := a.sealPINHash(ctx, PINHash(pin))
	if err != nil {
		return err
	}
	st := a.state
	st.PINHashSealed = sealed
	st.PINRetries = maxPINRetries
	st.PINCodePoints = uint(PINCodePoints(pin))
	st.ForcePINChange = false
	st.PersistentTokenSealed = nil
	if err := a.saveState(st); err != nil {
		return err
	}
	a.vol.token.revoke()
	a.log.Info("PIN set")
	a.observe(Event{Type: EventPINSet})
	return nil
}

// changePIN replaces the PIN (§6.5.5.6).
func (a *Authenticator) changePIN(ctx context.Context, shared *SharedSecret, req *ClientPINRequest) error {
	if !a.state.pinSet() {
		return ErrPINNotSet
	}
	if err := a.pinUsable(); err != nil {
		return err
	}
	if !shared.Verify(append(bytes.Clone(req.NewPinEnc), req.PinHashEnc...), req.PinUvAuthParam) {
		return ErrPINAuthInvalid
	}
	if err := a.checkPINHash(ctx, shared, req.PinHashEnc); err != nil {
		return err
	}
	pin, err := a.decryptNewPIN(shared, req.NewPinEnc)
	if err != nil {
		return err
	}
	if a.state.ForcePINChange {
		same, err := a.pinHashMatches(ctx, PINHash(pin))
		if err != nil {
			return err
		}
		if same {
			return ErrPINPolicyViolation // must differ from the PIN it replaces
		}
	}
	return a.storePIN(ctx, pin)
}

// pinUsable refuses PIN attempts when the PIN is blocked.
func (a *Authenticator) pinUsable() error {
	if a.state.PINRetries == 0 {
		return ErrPINBlocked
	}
	if a.vol.pinFails >= maxConsecutivePINFails {
		return ErrPINAuthBlocked
	}
	return nil
}

// checkPINHash decrements the persistent retry counter before comparing
// (so that cutting power mid-attempt still costs a try), then compares the
// decrypted pinHashEnc with the stored hash (§6.5.5.7 steps 4–6).
func (a *Authenticator) checkPINHash(ctx context.Context, shared *SharedSecret, pinHashEnc []byte) error {
	st := a.state
	st.PINRetries--
	if err := a.saveState(st); err != nil {
		return err
	}
	hash, err := shared.Decrypt(pinHashEnc)
	ok := false
	if err == nil && len(hash) == 16 {
		if ok, err = a.pinHashMatches(ctx, hash); err != nil {
			return err
		}
	}
	if !ok {
		a.vol.keyAgreement.Regenerate()
		a.vol.pinFails++
		code := ErrPINInvalid
		switch {
		case a.state.PINRetries == 0:
			a.log.Warn("PIN blocked: only a reset can recover the key")
			code = ErrPINBlocked
		case a.vol.pinFails >= maxConsecutivePINFails:
			code = ErrPINAuthBlocked
		}
		a.observe(Event{Type: EventPINFailed, Op: "clientPIN", Status: code})
		return code
	}
	a.vol.pinFails = 0
	st = a.state
	st.PINRetries = maxPINRetries
	return a.saveState(st)
}

// permissions validates the permissions and rpId of subcommands 0x06 and
// 0x09 (§6.5.5.7).
func (req *ClientPINRequest) permissions() (Permission, string, error) {
	perms := *req.Permissions
	if perms == 0 || perms > 0xFF {
		return 0, "", ErrInvalidParameter
	}
	p := Permission(perms)
	rpID := ""
	if req.RPID != nil {
		rpID = *req.RPID
	}
	if p&(PermMakeCredential|PermGetAssertion) != 0 && rpID == "" {
		return 0, "", ErrMissingParameter
	}
	const supported = PermMakeCredential | PermGetAssertion | PermCredentialMgmt | PermLargeBlobWrite | PermAuthenticatorCfg | PermPersistentCredMgmt
	if p&^supported != 0 {
		return 0, "", ErrUnauthorizedPermission
	}
	if p&PermPersistentCredMgmt != 0 && p != PermPersistentCredMgmt {
		return 0, "", ErrUnauthorizedPermission // pcmr is granted only on its own
	}
	return p, rpID, nil
}

// getPINToken verifies the PIN and issues a token: the legacy getPinToken
// (0x05, §6.5.5.7.1) when legacy is set, else
// getPinUvAuthTokenUsingPinWithPermissions (0x09, §6.5.5.7.2).
func (a *Authenticator) getPINToken(ctx context.Context, shared *SharedSecret, pinHashEnc []byte, perms Permission, rpID string, legacy bool) (any, error) {
	if !a.state.pinSet() {
		return nil, ErrPINNotSet
	}
	if err := a.pinUsable(); err != nil {
		return nil, err
	}
	if err := a.checkPINHash(ctx, shared, pinHashEnc); err != nil {
		return nil, err
	}
	if a.state.ForcePINChange {
		// The PIN was right (retries are restored) but must be changed
		// first. CTAP 2.1 gives the legacy getPinToken PIN_INVALID here
		// (§6.5.5.7.1) and 0x09 PIN_POLICY_VIOLATION (§6.5.5.7.2).
		if legacy {
			return nil, ErrPINInvalid
		}
		return nil, ErrPINPolicyViolation
	}
	var tok *PINUVAuthToken
	if perms == PermPersistentCredMgmt {
		t, sealed, err := issuePersistentToken(ctx, a.sealer)
		if err != nil {
			return nil, err
		}
		tok = t
		st := a.state
		st.PersistentTokenSealed = sealed
		if err := a.saveState(st); err != nil {
			return nil, err
		}
	} else {
		tok = a.vol.token.issue(shared.Version(), perms, rpID, a.cfg.Now())
	}
	enc, err := shared.Encrypt(tok.Bytes())
	if err != nil {
		return nil, err
	}
	return &ClientPINResponse{PinUvAuthToken: enc}, nil
}

// getUVToken verifies the user with built-in UV and issues a token (0x06).
func (a *Authenticator) getUVToken(ctx context.Context, shared *SharedSecret, req *ClientPINRequest) (any, error) {
	if a.cfg.UV == UVNone {
		return nil, ErrInvalidSubcommand
	}
	perms, rpID, err := req.permissions()
	if err != nil {
		return nil, err
	}
	if perms == PermPersistentCredMgmt {
		return nil, ErrUnauthorizedPermission
	}
	if err := a.performBuiltInUV(ctx, PresenceRequest{Op: "getPinUvAuthTokenUsingUv", RPID: rpID}); err != nil {
		return nil, err
	}
	tok := a.vol.token.issue(shared.Version(), perms, rpID, a.cfg.Now())
	enc, err := shared.Encrypt(tok.Bytes())
	if err != nil {
		return nil, err
	}
	return &ClientPINResponse{PinUvAuthToken: enc}, nil
}
