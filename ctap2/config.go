package ctap2

import (
	"bytes"
	"context"
	"slices"
)

// authenticatorConfig subcommands (CTAP 2.1 §6.11), for the authenticator
// and its clients (ctap2/client).
const (
	ConfigEnableEnterpriseAttestation = 0x01
	ConfigToggleAlwaysUV              = 0x02
	ConfigSetMinPINLength             = 0x03
	ConfigVendorPrototype             = 0xFF
)

// ConfigRequest is the authenticatorConfig (0x0D) input. See CTAP 2.1 §6.11.
//
// SubCommandParams stays raw: pinUvAuthParam authenticates the parameter
// bytes exactly as the platform sent them.
type ConfigRequest struct {
	SubCommand        *uint      `cbor:"1,keyasint,omitempty"`
	SubCommandParams  RawMessage `cbor:"2,keyasint,omitempty"`
	PinUvAuthProtocol *uint      `cbor:"3,keyasint,omitempty"`
	PinUvAuthParam    Bytes      `cbor:"4,keyasint,omitempty"`

	minPIN setMinPINLengthParams // decoded SubCommandParams of setMinPINLength
}

// setMinPINLengthParams is the subCommandParams of setMinPINLength
// (§6.11.4). Every field is optional.
type setMinPINLengthParams struct {
	NewMinPINLength   *uint     `cbor:"1,keyasint,omitempty"`
	MinPINLengthRPIDs *[]string `cbor:"2,keyasint,omitempty"`
	ForceChangePIN    *bool     `cbor:"3,keyasint,omitempty"`
}

// configAuthPrefix is the 32×0xFF ‖ 0x0D that starts every authenticated
// authenticatorConfig message (§6.11 step 4).
var configAuthPrefix = append(bytes.Repeat([]byte{0xFF}, 32), CmdConfig)

func (req *ConfigRequest) validate() error {
	if req.SubCommand == nil {
		return ErrMissingParameter
	}
	switch *req.SubCommand {
	case ConfigEnableEnterpriseAttestation, ConfigToggleAlwaysUV:
	case ConfigSetMinPINLength:
		if req.SubCommandParams != nil {
			if err := decode(req.SubCommandParams, &req.minPIN); err != nil {
				return err
			}
		}
	default:
		// No vendor prototype commands are defined
		// (vendorPrototypeConfigCommands is absent from getInfo).
		return ErrInvalidSubcommand
	}
	if req.PinUvAuthParam != nil && req.PinUvAuthProtocol == nil {
		return ErrMissingParameter
	}
	return nil
}

// authenticatorConfig runs authenticatorConfig (0x0D).
func (a *Authenticator) authenticatorConfig(ctx context.Context, r request, req *ConfigRequest) (any, error) {
	// An authenticator protected by user verification needs a token with
	// the acfg permission; an unprotected one accepts the command without
	// (§6.11 steps 3–4). A pinUvAuthParam that is sent is always checked.
	if req.PinUvAuthParam == nil && a.protectedByUV() {
		return nil, ErrPUATRequired
	}
	if req.PinUvAuthParam != nil {
		msg := append(append(bytes.Clone(configAuthPrefix), byte(*req.SubCommand)), req.SubCommandParams...)
		if err := a.verifyPinUvAuth(req.PinUvAuthProtocol, req.PinUvAuthParam, msg, PermAuthenticatorCfg, ""); err != nil {
			return nil, err
		}
	}
	switch *req.SubCommand {
	case ConfigEnableEnterpriseAttestation:
		// §6.11.1; refused by an authenticator that is not enterprise
		// attestation capable (no Config.Enterprise, no "ep" in getInfo).
		if !a.enterpriseCapable() {
			return nil, ErrInvalidSubcommand
		}
		st := a.state
		st.EnterpriseAtt = true
		if err := a.saveState(st); err != nil {
			return nil, err
		}
		a.log.Info("enterprise attestation enabled")
		return nil, nil
	case ConfigToggleAlwaysUV:
		st := a.state
		st.AlwaysUV = !st.AlwaysUV
		if err := a.saveState(st); err != nil {
			return nil, err
		}
		a.log.Info("alwaysUv toggled", "alwaysUv", st.AlwaysUV)
		return nil, nil
	case ConfigSetMinPINLength:
		return nil, a.setMinPINLength(&req.minPIN)
	}
	return nil, ErrInvalidSubcommand
}

// setMinPINLength is setMinPINLength (§6.11.4). All three changes are
// written together in one state update.
func (a *Authenticator) setMinPINLength(p *setMinPINLengthParams) error {
	st := a.state
	newMin := st.MinPINLength
	if p.NewMinPINLength != nil {
		newMin = *p.NewMinPINLength
	}
	// The minimum can only grow (only a reset lowers it), and a minimum
	// above 63 code points could never be met by a PIN of at most 63 bytes.
	if newMin < st.MinPINLength || newMin > pinMaxBytes {
		return ErrPINPolicyViolation
	}
	force := p.ForceChangePIN != nil && *p.ForceChangePIN
	if force && !st.pinSet() {
		return ErrPINNotSet
	}
	if st.pinSet() && newMin > st.PINCodePoints {
		force = true // the current PIN no longer satisfies the policy
	}
	if p.MinPINLengthRPIDs != nil {
		// The list replaces the previous one (Yubico's SDK documents
		// exactly this: "each time you set this list, all previous entries
		// in that list are replaced", docs.yubico.com/yesdk users-manual
		// "The minimum PIN length"). Its documentation gives the limit,
		// getInfo maxRPIDsForSetMinPINLength, but no status code for a
		// longer list; KEY_STORE_FULL is what OpenSK
		// (storage::set_min_pin_length_rp_ids) and pico-fido (cbor_config.c)
		// return when the list does not fit, and what we return.
		var ids []string
		for _, id := range *p.MinPINLengthRPIDs {
			if id == "" || len(id) > maxRPIDLength {
				return ErrInvalidParameter
			}
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		if len(ids) > maxRPIDsForMinPIN {
			return ErrKeyStoreFull
		}
		st.MinPINRPIDs = ids
	}
	st.MinPINLength = newMin
	if force {
		st.ForcePINChange = true
	}
	if err := a.saveState(st); err != nil {
		return err
	}
	a.log.Info("PIN policy configured", "minPINLength", newMin, "rpIDs", len(st.MinPINRPIDs), "forcePINChange", st.ForcePINChange)
	return nil
}
