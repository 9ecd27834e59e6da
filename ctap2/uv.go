package ctap2

import "context"

// This file is user verification: built-in UV (a [UVMode] chosen in
// Config.UV, counted in uvRetries) and userVerification, the PIN/UV
// decision makeCredential and getAssertion share. The pinUvAuthToken it
// checks is in pintoken.go.

// maxUVRetries is uvRetries after a successful built-in UV or a reset.
const maxUVRetries = 8

// protectedByUV reports whether some form of user verification is
// configured: a PIN is set or built-in UV is on.
func (a *Authenticator) protectedByUV() bool {
	return a.state.pinSet() || a.cfg.UV != UVNone
}

// UVMode selects the built-in user verification used for testing.
type UVMode int

// Built-in UV modes.
const (
	UVNone UVMode = iota // no built-in user verification
	UVAuto               // the "user" always verifies (test mode)
	UVDeny               // verification always fails with UV_INVALID, counting uvRetries
)

// performBuiltInUV runs built-in user verification, which includes user
// presence. It counts uvRetries persistently.
func (a *Authenticator) performBuiltInUV(ctx context.Context, req PresenceRequest) error {
	if a.cfg.UV == UVNone {
		return ErrInvalidOption
	}
	if a.state.UVRetries == 0 {
		return ErrUVBlocked
	}
	req.UV = true
	if err := a.confirm(ctx, req); err != nil {
		return err
	}
	if a.cfg.UV == UVDeny {
		st := a.state
		st.UVRetries--
		if err := a.saveState(st); err != nil {
			return err
		}
		if st.UVRetries == 0 {
			return ErrUVBlocked
		}
		return ErrUVInvalid
	}
	if a.state.UVRetries != maxUVRetries {
		st := a.state
		st.UVRetries = maxUVRetries
		if err := a.saveState(st); err != nil {
			return err
		}
	}
	return nil
}

// uvRequest is the part of makeCredential / getAssertion that decides user
// verification (CTAP 2.1 §6.1.2 steps 1–11 and §6.2.2 steps 1–8).
type uvRequest struct {
	presence       PresenceRequest
	param          []byte // pinUvAuthParam (nil: absent)
	protocol       *uint
	uvOption       bool
	clientDataHash []byte
	perm           Permission // mc or ga
	// makeCredential only: a discoverable credential needs UV when the
	// authenticator is protected (makeCredUvNotRqd).
	needsUVIfProtected bool
}

// uvResult says what the user did.
type uvResult struct {
	verified  bool // UV flag: PIN token or built-in UV
	present   bool // presence already collected (by built-in UV)
	usedToken bool
}

// userVerification runs the PIN/UV checks before a credential is touched.
func (a *Authenticator) userVerification(ctx context.Context, req uvRequest) (uvResult, error) {
	// Zero-length pinUvAuthParam: "touch to select" probe.
	if req.param != nil && len(req.param) == 0 {
		if err := a.confirm(ctx, req.presence); err != nil {
			return uvResult{}, err
		}
		if a.state.pinSet() {
			return uvResult{}, ErrPINAuthInvalid
		}
		return uvResult{}, ErrPINNotSet
	}
	if req.param != nil {
		if req.protocol == nil {
			return uvResult{}, ErrMissingParameter
		}
		if _, ok := PINProtocolByVersion(*req.protocol); !ok {
			return uvResult{}, ErrInvalidParameter
		}
		req.uvOption = false // a pinUvAuthParam replaces the uv option
	}
	if req.uvOption && a.cfg.UV == UVNone {
		return uvResult{}, ErrInvalidOption
	}
	if a.state.AlwaysUV && req.param == nil && !req.uvOption {
		if a.cfg.UV == UVNone {
			return uvResult{}, ErrPUATRequired
		}
		req.uvOption = true
	}
	if req.needsUVIfProtected && a.protectedByUV() && req.param == nil && !req.uvOption {
		return uvResult{}, ErrPUATRequired
	}
	switch {
	case req.param != nil:
		if err := a.verifyPinUvAuth(req.protocol, req.param, req.clientDataHash, req.perm, req.presence.RPID); err != nil {
			return uvResult{}, err
		}
		return uvResult{verified: true, usedToken: true}, nil
	case req.uvOption:
		if err := a.performBuiltInUV(ctx, req.presence); err != nil {
			return uvResult{}, err
		}
		return uvResult{verified: true, present: true}, nil
	}
	return uvResult{}, nil
}
