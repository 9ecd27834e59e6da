package ctap2

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
)

// PIN policy and retry limits.
const (
	maxPINRetries          = 8
	maxConsecutivePINFails = 3 // then PIN_AUTH_BLOCKED until a power cycle
	defaultMinPINLength    = 4
	maxRPIDsForMinPIN      = 8
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
	st, _, err := readState(a.cfg.Store)
	if err != nil {
		return err
	}
	a.state = st
	return nil
}

// readState reads the persistent state in s: the defaults, and stored
// false, if there is none.
func readState(s Settings) (st persistentState, stored bool, err error) {
	raw, err := s.Setting(settingState)
	if err != nil {
		return st, false, err
	}
	st = defaultState()
	if raw != nil {
		if err := decode(raw, &st); err != nil {
			return st, false, fmt.Errorf("ctap2: corrupt persistent state: %w", err)
		}
	}
	return st, raw != nil, nil
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

var errNoSealer = errors.New("ctap2: the key store cannot seal secrets (Config.Sealer)")
