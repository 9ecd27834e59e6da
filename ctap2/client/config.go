package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/virtkey/virtkey/ctap2"
)

type setMinPINLengthParams struct {
	NewMinPINLength   uint     `cbor:"1,keyasint,omitempty"`
	MinPINLengthRPIDs []string `cbor:"2,keyasint,omitempty"`
	ForceChangePIN    bool     `cbor:"3,keyasint,omitempty"`
}

// AuthenticatorConfig changes the authenticator's settings (authenticatorConfig, CTAP
// 2.1 §6.11). Get one from [Device.AuthenticatorConfig].
type AuthenticatorConfig struct {
	d     *Device
	token *PINToken // nil: the key has neither PIN nor built-in UV
}

// AuthenticatorConfig returns the authenticatorConfig interface of the device,
// authenticated by token (which needs the acfg permission). token may be
// nil only on a key protected by neither a PIN nor built-in UV. It fails
// with [ErrNotSupported] when getInfo lacks the option authnrCfg.
func (d *Device) AuthenticatorConfig(ctx context.Context, token *PINToken) (*AuthenticatorConfig, error) {
	info, err := d.CachedInfo(ctx)
	if err != nil {
		return nil, err
	}
	if v, _ := Option(info, "authnrCfg"); !v {
		return nil, fmt.Errorf("authenticatorConfig: %w", ErrNotSupported)
	}
	return &AuthenticatorConfig{d: d, token: token}, nil
}

var cfgNames = map[uint]string{
	ctap2.ConfigEnableEnterpriseAttestation: "enableEnterpriseAttestation",
	ctap2.ConfigToggleAlwaysUV:              "toggleAlwaysUv",
	ctap2.ConfigSetMinPINLength:             "setMinPINLength",
}

// do sends one subcommand with pinUvAuthParam =
// authenticate(token, 32×0xFF ‖ 0x0D ‖ subCommand ‖ subCommandParams).
func (c *AuthenticatorConfig) do(ctx context.Context, sub uint, params any) error {
	req, err := newSubcommandRequest(sub, params, c.token, append(bytes.Repeat([]byte{0xFF}, 32), ctap2.CmdConfig))
	if err != nil {
		return fmt.Errorf("config %s: %w", cfgNames[sub], err)
	}
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	err = c.d.call(ctx, "config "+cfgNames[sub], ctap2.CmdConfig, req, nil)
	c.d.info = nil // the options changed
	return err
}

// ToggleAlwaysUV flips the alwaysUv option (toggleAlwaysUv).
func (c *AuthenticatorConfig) ToggleAlwaysUV(ctx context.Context) error {
	return c.do(ctx, ctap2.ConfigToggleAlwaysUV, nil)
}

// EnableEnterpriseAttestation turns enterprise attestation on
// (enableEnterpriseAttestation).
func (c *AuthenticatorConfig) EnableEnterpriseAttestation(ctx context.Context) error {
	return c.do(ctx, ctap2.ConfigEnableEnterpriseAttestation, nil)
}

// SetMinPINLength raises the minimum PIN length to n code points (0 keeps
// it), sets the RP IDs that may read it through the minPinLength extension,
// and with forceChange makes the user change the PIN before the next use
// (setMinPINLength). The minimum can only grow (PIN_POLICY_VIOLATION).
func (c *AuthenticatorConfig) SetMinPINLength(ctx context.Context, n uint, rpIDs []string, forceChange bool) error {
	if n == 0 && len(rpIDs) == 0 && !forceChange {
		return errors.New("config setMinPINLength: nothing to change")
	}
	return c.do(ctx, ctap2.ConfigSetMinPINLength, &setMinPINLengthParams{
		NewMinPINLength:   n,
		MinPINLengthRPIDs: rpIDs,
		ForceChangePIN:    forceChange,
	})
}
