package ctap2

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"time"
)

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

// PIN policy and retry limits.
const (
	maxPINRetries          = 8
	maxConsecutivePINFails = 3 // then PIN_AUTH_BLOCKED until a power cycle
	maxUVRetries           = 8
	defaultMinPINLength    = 4
	maxRPIDsForMinPIN      = 8
	// tokenMaxUsage is the pinUvAuthToken's maximum usage period.
	tokenMaxUsage = 10 * time.Minute
)

const settingState = "state"

// persistentState is everything about PINs, UV and configuration that
// survives a power cycle. It is stored as one setting, written whole, so
// every update is atomic. The PIN hash is sealed by the key store.
type persistentState struct {
	PINHashSealed  Bytes    `cbor:"1,keyasint,omitempty"`
	PINRetries     uint     `cbor:"2,keyasint"`
	PINCodePoints  uint     `cbor:"3,keyasint,omitempty"`
	ForcePINChange bool     `cbor:"4,keyasint,omitempty"`
	MinPINLength   uint     `cbor:"5,keyasint"`
	MinPINRPIDs    []string `cbor:"6,keyasint,omitempty"`
	UVRetries      uint     `cbor:"7,keyasint"`
	AlwaysUV       bool     `cbor:"8,keyasint,omitempty"`
	EnterpriseAtt  bool     `cbor:"9,keyasint,omitempty"`
	// PersistentTokenSealed is the CTAP 2.2 pcmr token, which survives power cycles.
	PersistentTokenSealed Bytes `cbor:"10,keyasint,omitempty"`
}

func defaultState() persistentState {
	return persistentState{PINRetries: maxPINRetries, MinPINLength: defaultMinPINLength, UVRetries: maxUVRetries}
}

func (s *persistentState) pinSet() bool { return len(s.PINHashSealed) > 0 }

// loadState reads the persistent state (defaults if none).
func (a *Authenticator) loadState() error {
	raw, err := a.cfg.Store.Setting(settingState)
	if err != nil {
		return err
	}
	st := defaultState()
	if raw != nil {
		if err := decode(raw, &st); err != nil {
			return fmt.Errorf("ctap2: corrupt persistent state: %w", err)
		}
	}
	a.state = st
	return nil
}

// saveState writes st durably and then adopts it, so that a failed write
// leaves the previous state in force.
func (a *Authenticator) saveState(st persistentState) error {
	raw, err := encode(&st)
	if err != nil {
		return err
	}
	if err := a.cfg.Store.PutSetting(settingState, raw); err != nil {
		return err
	}
	a.state = st
	return nil
}

var pinHashAAD = []byte("virtkey pin hash v1")

func (a *Authenticator) sealPINHash(ctx context.Context, hash []byte) ([]byte, error) {
	return a.sealer.Seal(ctx, hash, pinHashAAD)
}

// pinHashMatches compares a PIN hash with the stored one in constant time.
func (a *Authenticator) pinHashMatches(ctx context.Context, hash []byte) (bool, error) {
	stored, err := a.sealer.Open(ctx, a.state.PINHashSealed, pinHashAAD)
	if err != nil {
		return false, fmt.Errorf("ctap2: stored PIN hash does not open: %w", err)
	}
	return hmac.Equal(stored, hash), nil
}

// tokenState is the pinUvAuthToken state (CTAP 2.1 §6.5.2.1): one token
// per power cycle, replaced by every new issue.
type tokenState struct {
	token    *PINUVAuthToken
	protocol uint // the PIN/UV auth protocol it was issued under
	perms    Permission
	rpID     string // bound RP id, "" if unbound
	issued   time.Time
	inUse    bool
}

// issueToken makes a fresh token for protocol (revoking the previous one).
// The token authenticates only requests made with that protocol.
func (a *Authenticator) issueToken(protocol uint, perms Permission, rpID string) *PINUVAuthToken {
	a.token = tokenState{token: NewPINUVAuthToken(), protocol: protocol, perms: perms, rpID: rpID, issued: a.cfg.Now(), inUse: true}
	return a.token.token
}

func (a *Authenticator) revokeTokens() { a.token = tokenState{} }

// verifyPinUvAuth checks a pinUvAuthParam made with the current token over
// msg, and that the token has perm and (when rpID is not empty) is bound to
// rpID or unbound (it then becomes bound). Every failure is PIN_AUTH_INVALID;
// a missing or unknown protocol is MISSING_PARAMETER / INVALID_PARAMETER.
func (a *Authenticator) verifyPinUvAuth(protocol *uint, param, msg []byte, perm Permission, rpID string) error {
	if protocol == nil {
		return ErrMissingParameter
	}
	p, ok := PINProtocolByVersion(*protocol)
	if !ok {
		return ErrInvalidParameter
	}
	t := &a.token
	if t.inUse && a.cfg.Now().Sub(t.issued) > tokenMaxUsage {
		a.revokeTokens()
	}
	if !t.inUse || t.protocol != p.Version() || !p.Verify(t.token, msg, param) {
		if a.verifyPersistentToken(p, msg, param, perm) {
			return nil
		}
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

// verifyPersistentToken accepts the CTAP 2.2 persistent (pcmr) token for
// read-only credential management only.
func (a *Authenticator) verifyPersistentToken(p PINProtocol, msg, param []byte, perm Permission) bool {
	if perm != PermPersistentCredMgmt || len(a.state.PersistentTokenSealed) == 0 {
		return false
	}
	raw, err := a.sealer.Open(context.Background(), a.state.PersistentTokenSealed, persistentTokenAAD)
	if err != nil {
		return false
	}
	tok, err := ParsePINUVAuthToken(p, raw)
	if err != nil {
		return false
	}
	return p.Verify(tok, msg, param)
}

var persistentTokenAAD = []byte("virtkey pcmr token v1")

// clearTokenAfterUse drops the token's permissions except lbw after a
// makeCredential or getAssertion that used it with user presence (CTAP 2.1
// §6.1.2 step 19, §6.2.2). A getAssertion with up=false must not
// call it.
func (a *Authenticator) clearTokenAfterUse() {
	a.token.perms &= PermLargeBlobWrite
}

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

var errNoSealer = errors.New("ctap2: the key store cannot seal secrets (Config.Sealer)")
