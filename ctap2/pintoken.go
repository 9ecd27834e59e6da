package ctap2

import (
	"context"
	"time"
)

// This file is the pinUvAuthToken: the volatile token a PIN or built-in UV
// earns (tokenState), the CTAP 2.2 persistent read-only token
// (persistentToken), and verifyPinUvAuth, which every command that takes a
// pinUvAuthParam calls. Earning a token (the PIN and UV checks) stays with
// clientPIN (clientpin.go) and built-in UV (uv.go), as OpenSK keeps its
// PinUvAuthTokenState apart from ClientPin.

// Permission is a pinUvAuthToken permission bit (CTAP 2.1 §6.5.5.7).
type Permission byte

// Permissions.
const (
	PermMakeCredential     Permission = 0x01 // mc
	PermGetAssertion       Permission = 0x02 // ga
	PermCredentialMgmt     Permission = 0x04 // cm
	PermBioEnrollment      Permission = 0x08 // be
	PermLargeBlobWrite     Permission = 0x10 // lbw
	PermAuthenticatorCfg   Permission = 0x20 // acfg
	PermPersistentCredMgmt Permission = 0x40 // pcmr (CTAP 2.2, read-only credential management)
)

// tokenMaxUsage is the pinUvAuthToken's maximum usage period.
const tokenMaxUsage = 10 * time.Minute

// tokenState is the pinUvAuthToken state (CTAP 2.1 §6.5.2.1): one token
// per power cycle, replaced by every new issue. The zero value holds no
// token.
type tokenState struct {
	token    *PINUVAuthToken
	protocol uint // the PIN/UV auth protocol it was issued under
	perms    Permission
	rpID     string // bound RP id, "" if unbound
	issued   time.Time
	inUse    bool
}

// issue makes a fresh token for protocol at time now, revoking the
// previous one. The token authenticates only requests made with that
// protocol.
func (t *tokenState) issue(protocol uint, perms Permission, rpID string, now time.Time) *PINUVAuthToken {
	*t = tokenState{token: NewPINUVAuthToken(), protocol: protocol, perms: perms, rpID: rpID, issued: now, inUse: true}
	return t.token
}

// revoke forgets the token (stopUsingPinUvAuthToken).
func (t *tokenState) revoke() { *t = tokenState{} }

// verify checks that param is the token's MAC over msg under protocol p,
// that the token has perm and, when rpID is not empty, that it is bound to
// rpID or unbound (it then becomes bound to rpID). A token past its
// maximum usage period is revoked first. Every failure is PIN_AUTH_INVALID.
func (t *tokenState) verify(p PINProtocol, msg, param []byte, perm Permission, rpID string, now time.Time) error {
	if t.inUse && now.Sub(t.issued) > tokenMaxUsage {
		t.revoke()
	}
	if !t.inUse || t.protocol != p.Version() || !p.Verify(t.token, msg, param) {
		return ErrPINAuthInvalid
	}
	if t.perms&perm == 0 {
		return ErrPINAuthInvalid
	}
	if rpID != "" {
		if t.rpID != "" && t.rpID != rpID {
			return ErrPINAuthInvalid
		}
		t.rpID = rpID
	}
	return nil
}

// clearAfterUse ends a makeCredential or getAssertion that the token
// authorised (CTAP 2.1 §6.1.2 step 19, §6.2.2): with user presence every
// permission except lbw is gone. A use without user presence (a
// getAssertion up=false probe, as clients send to filter an allowList or
// excludeList) leaves the token as it was for the call that follows.
func (t *tokenState) clearAfterUse(userPresent bool) {
	if userPresent {
		t.perms &= PermLargeBlobWrite
	}
}

// persistentToken is the CTAP 2.2 persistent pinUvAuthToken: it carries
// only pcmr (read-only credential management), survives power cycles and
// lives sealed in the persistent state (PersistentTokenSealed).
type persistentToken struct {
	sealer Sealer
	sealed []byte // nil: none issued since the PIN was last set
}

var persistentTokenAAD = []byte("virtkey pcmr token v1")

// issuePersistentToken makes a new persistent token and returns it with
// the sealed form the persistent state keeps.
func issuePersistentToken(ctx context.Context, sealer Sealer) (tok *PINUVAuthToken, sealed []byte, err error) {
	tok = NewPINUVAuthToken()
	if sealed, err = sealer.Seal(ctx, tok.Bytes(), persistentTokenAAD); err != nil {
		return nil, nil, err
	}
	return tok, sealed, nil
}

// verify reports whether param is the persistent token's MAC over msg
// under protocol p.
func (pt persistentToken) verify(p PINProtocol, msg, param []byte) bool {
	if len(pt.sealed) == 0 {
		return false
	}
	raw, err := pt.sealer.Open(context.Background(), pt.sealed, persistentTokenAAD)
	if err != nil {
		return false
	}
	tok, err := ParsePINUVAuthToken(p, raw)
	if err != nil {
		return false
	}
	return p.Verify(tok, msg, param)
}

// verifyPinUvAuth checks a pinUvAuthParam over msg made with a token that
// has perm (and, when rpID is not empty, is bound to rpID or unbound; it
// then becomes bound). pcmr is checked against the persistent token, every
// other permission against the volatile one. Every failure is
// PIN_AUTH_INVALID; a missing or unknown protocol is MISSING_PARAMETER /
// INVALID_PARAMETER.
func (a *Authenticator) verifyPinUvAuth(protocol *uint, param, msg []byte, perm Permission, rpID string) error {
	if protocol == nil {
		return ErrMissingParameter
	}
	p, ok := PINProtocolByVersion(*protocol)
	if !ok {
		return ErrInvalidParameter
	}
	if perm == PermPersistentCredMgmt {
		// Only the persistent token carries pcmr: the volatile token is
		// never issued with it (ClientPINRequest.permissions, getUVToken).
		if !(persistentToken{a.sealer, a.state.PersistentTokenSealed}).verify(p, msg, param) {
			return ErrPINAuthInvalid
		}
		return nil
	}
	return a.vol.token.verify(p, msg, param, perm, rpID, a.cfg.Now())
}
