package ctap2

import "context"

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
