package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
)

func (m *manager) reset(ctx context.Context, args []string) error {
	fs := m.flagSet("virtkey reset", "virtkey reset [--device D] [--json]\n  erases every passkey, the PIN and the settings; the key asks for a touch")
	pos, err := parseArgs(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return m.usageError(fs, "reset: unexpected argument %q", pos[0])
	}
	dev, err := m.open(ctx)
	if err != nil {
		return err
	}
	ok, err := m.confirm(fmt.Sprintf("Erase every passkey, the PIN and the settings of the key at %s?", m.dev.name))
	if err != nil {
		return err
	}
	if !ok {
		return &cliError{code: exitFailure, msg: "reset cancelled; nothing was erased"}
	}
	if err := dev.Reset(ctx); err != nil {
		switch {
		case errors.Is(err, ctap2.ErrNotAllowed):
			return &cliError{code: exitFailure, status: ctap2.ErrNotAllowed,
				msg: "the key allows a reset only in the first seconds after it is plugged in: remove and reinsert it, then run \"virtkey reset\" at once"}
		case errors.Is(err, ctap2.ErrUserActionTimeout), errors.Is(err, ctap2.ErrActionTimeout):
			return &cliError{code: exitFailure, status: ctap2.ErrUserActionTimeout, msg: "the key was not touched in time; nothing was erased"}
		case errors.Is(err, ctap2.ErrOperationDenied):
			return &cliError{code: exitFailure, status: ctap2.ErrOperationDenied, msg: "the reset was declined on the key; nothing was erased"}
		}
		return err
	}
	if m.json {
		return m.printJSON(struct {
			Reset bool `json:"reset"`
		}{true})
	}
	_, err = fmt.Fprintln(m.stdout, "The key is reset: no passkeys, no PIN.")
	return err
}

func (m *manager) config(ctx context.Context, args []string) error {
	const usage = "virtkey config always-uv on|off\n       virtkey config min-pin-length N [--rp ID]... [--force-change]"
	fs := m.flagSet("virtkey config", usage)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	args = fs.Args()
	if len(args) == 0 {
		return m.usageError(fs, "config: want always-uv or min-pin-length")
	}
	switch args[0] {
	case "always-uv":
		return m.configAlwaysUV(ctx, args[1:])
	case "min-pin-length":
		return m.configMinPINLength(ctx, args[1:])
	}
	return m.usageError(fs, "config: unknown setting %q (want always-uv or min-pin-length)", args[0])
}

// configToken gets a token with the acfg permission, or none on a key that
// has neither PIN nor built-in UV (authenticatorConfig is then open).
func (m *manager) configDevice(ctx context.Context, dev *client.Device) (*client.Config, error) {
	tok, err := m.token(ctx, dev, client.PermAuthenticatorCfg)
	if err != nil && !errors.Is(err, errNoProtection) {
		return nil, err
	}
	return dev.Config(ctx, tok)
}

func (m *manager) configAlwaysUV(ctx context.Context, args []string) error {
	fs := m.flagSet("virtkey config always-uv", "virtkey config always-uv on|off [--device D] [--json]")
	pos, err := parseArgs(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "on" && pos[0] != "off") {
		return m.usageError(fs, "config always-uv: want on or off")
	}
	want := pos[0] == "on"
	dev, err := m.open(ctx)
	if err != nil {
		return err
	}
	info, err := dev.GetInfo(ctx)
	if err != nil {
		return err
	}
	cur, known := client.Option(info, "alwaysUv")
	cfgOK, _ := client.Option(info, "authnrCfg")
	if !known || !cfgOK {
		return &cliError{code: exitUnsupported, msg: "this key does not support the alwaysUv setting"}
	}
	changed := cur != want
	if changed {
		cfg, err := m.configDevice(ctx, dev)
		if err != nil {
			return err
		}
		if err := cfg.ToggleAlwaysUV(ctx); err != nil {
			if errors.Is(err, ctap2.ErrOperationDenied) {
				return &cliError{code: exitFailure, status: ctap2.ErrOperationDenied, msg: "the key refuses to turn alwaysUv off (it may be required by its certification)"}
			}
			return err
		}
		if info, err = dev.GetInfo(ctx); err != nil {
			return err
		}
		if cur, _ = client.Option(info, "alwaysUv"); cur != want {
			return &cliError{code: exitFailure, msg: fmt.Sprintf("the key accepted the change but reports alwaysUv %s", onOff(cur))}
		}
	}
	if m.json {
		return m.printJSON(struct {
			AlwaysUV bool `json:"alwaysUv"`
			Changed  bool `json:"changed"`
		}{want, changed})
	}
	if !changed {
		_, err = fmt.Fprintf(m.stdout, "alwaysUv is already %s.\n", pos[0])
		return err
	}
	_, err = fmt.Fprintf(m.stdout, "alwaysUv is now %s.\n", pos[0])
	return err
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

var _ flag.Value = (*stringList)(nil)

func (m *manager) configMinPINLength(ctx context.Context, args []string) error {
	fs := m.flagSet("virtkey config min-pin-length", "virtkey config min-pin-length N [--rp ID]... [--force-change] [--device D] [--json]")
	var rpIDs stringList
	fs.Var(&rpIDs, "rp", "an RP ID allowed to read the minimum PIN length (minPinLength extension); repeatable")
	force := fs.Bool("force-change", false, "make the user change the PIN before the key is used again")
	pos, err := parseArgs(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return m.usageError(fs, "config min-pin-length: want one number N")
	}
	n, err := strconv.ParseUint(pos[0], 10, 8)
	if err != nil || n < 4 || n > maxPINBytes {
		return m.usageError(fs, "config min-pin-length: N must be a number from 4 to %d", maxPINBytes)
	}
	dev, err := m.open(ctx)
	if err != nil {
		return err
	}
	info, err := dev.GetInfo(ctx)
	if err != nil {
		return err
	}
	if ok, _ := client.Option(info, "setMinPINLength"); !ok {
		return &cliError{code: exitUnsupported, msg: "this key does not support setting the minimum PIN length"}
	}
	if limit := int(info.MaxRPIDsForSetMinPINLength); len(rpIDs) > limit {
		msg := fmt.Sprintf("this key accepts at most %d --rp IDs", limit)
		if limit == 0 {
			msg = "this key does not accept --rp IDs for the minimum PIN length"
		}
		return &cliError{code: exitUnsupported, msg: msg}
	}
	cur := info.MinPINLength
	if cur == 0 {
		cur = 4
	}
	if uint(n) < cur {
		return &cliError{code: exitFailure, msg: fmt.Sprintf("the minimum PIN length can only grow: it is %d now", cur)}
	}
	cfg, err := m.configDevice(ctx, dev)
	if err != nil {
		return err
	}
	if err := cfg.SetMinPINLength(ctx, uint(n), rpIDs, *force); err != nil {
		if errors.Is(err, ctap2.ErrPINPolicyViolation) {
			return &cliError{code: exitFailure, status: ctap2.ErrPINPolicyViolation,
				msg: fmt.Sprintf("the key refused a minimum PIN length of %d (it can only grow; it is %d now)", n, cur)}
		}
		return err
	}
	info, err = dev.GetInfo(ctx)
	if err != nil {
		return err
	}
	forced := info.ForcePINChange != nil && *info.ForcePINChange
	if m.json {
		return m.printJSON(struct {
			MinPINLength   uint     `json:"minPINLength"`
			RPIDs          []string `json:"rpIds"`
			ForcePINChange bool     `json:"forcePINChange"`
		}{info.MinPINLength, nonNil([]string(rpIDs)), forced})
	}
	fmt.Fprintf(m.stdout, "The minimum PIN length is now %d.\n", info.MinPINLength)
	if len(rpIDs) > 0 {
		fmt.Fprintf(m.stdout, "These sites may read it: %s.\n", strings.Join(rpIDs, ", "))
	}
	if forced {
		fmt.Fprintln(m.stdout, "The key asks for a new PIN before its next use: run \"virtkey pin change\".")
	}
	return nil
}
