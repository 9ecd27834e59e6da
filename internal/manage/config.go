package manage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/cli"
)

func reset(ctx context.Context, c *call) error {
	ok, err := c.confirm(fmt.Sprintf("Erase every passkey, the PIN and the settings of the key at %s?", c.opened.name))
	if err != nil {
		return err
	}
	if !ok {
		return &cliError{code: cli.ExitFailure, msg: "reset cancelled; nothing was erased"}
	}
	if err := c.dev.Reset(ctx); err != nil {
		switch {
		case errors.Is(err, ctap2.ErrNotAllowed):
			return &cliError{code: cli.ExitFailure, status: ctap2.ErrNotAllowed,
				msg: "the key allows a reset only in the first seconds after it is powered up: " + c.powerCycleAdvice() + ", then run \"virtkey reset\" at once"}
		case errors.Is(err, ctap2.ErrUserActionTimeout), errors.Is(err, ctap2.ErrActionTimeout):
			return &cliError{code: cli.ExitFailure, status: ctap2.ErrUserActionTimeout, msg: "the key was not touched in time; nothing was erased"}
		case errors.Is(err, ctap2.ErrOperationDenied):
			return &cliError{code: cli.ExitFailure, status: ctap2.ErrOperationDenied, msg: "the reset was declined on the key; nothing was erased"}
		}
		return err
	}
	if c.json {
		return c.printJSON(struct {
			Reset bool `json:"reset"`
		}{true})
	}
	_, err = fmt.Fprintln(c.Stdout, "The key is reset: no passkeys, no PIN.")
	return err
}

// configSession opens an authenticatorConfig session with a token that has
// the acfg permission, or with none on a key that has neither PIN nor
// built-in UV (authenticatorConfig is then open).
func (c *call) configSession(ctx context.Context) (*client.AuthenticatorConfig, error) {
	tok, err := c.token(ctx, c.dev, client.PermAuthenticatorCfg)
	if err != nil && !errors.Is(err, errNoProtection) {
		return nil, err
	}
	return c.dev.AuthenticatorConfig(ctx, tok)
}

func configAlwaysUV(ctx context.Context, c *call) error {
	want := c.args[0] == "on"
	cur, _ := client.Option(c.info, "alwaysUv")
	changed := cur != want
	if changed {
		cfg, err := c.configSession(ctx)
		if err != nil {
			return err
		}
		if err := cfg.ToggleAlwaysUV(ctx); err != nil {
			if errors.Is(err, ctap2.ErrOperationDenied) {
				return &cliError{code: cli.ExitFailure, status: ctap2.ErrOperationDenied, msg: "the key refuses to turn alwaysUv off (it may be required by its certification)"}
			}
			return err
		}
		info, err := c.dev.GetInfo(ctx)
		if err != nil {
			return err
		}
		if cur, _ = client.Option(info, "alwaysUv"); cur != want {
			return &cliError{code: cli.ExitFailure, msg: fmt.Sprintf("the key accepted the change but reports alwaysUv %s", onOff(cur))}
		}
	}
	if c.json {
		return c.printJSON(struct {
			AlwaysUV bool `json:"alwaysUv"`
			Changed  bool `json:"changed"`
		}{want, changed})
	}
	verb := "is now"
	if !changed {
		verb = "is already"
	}
	_, err := fmt.Fprintf(c.Stdout, "alwaysUv %s %s.\n", verb, c.args[0])
	return err
}

// minPINLengthArg parses the N of "config min-pin-length N".
func minPINLengthArg(s string) (uint, bool) {
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n < ctap2.DefaultMinPINLength || n > ctap2.MaxPINBytes {
		return 0, false
	}
	return uint(n), true
}

func configMinPINLength(ctx context.Context, c *call) error {
	n, _ := minPINLengthArg(c.args[0]) // checked by the leaf
	rpIDs := []string(*c.flag("rp").(*cli.StringList))
	force := c.flag("force-change").String() == "true"
	if limit := int(c.info.MaxRPIDsForSetMinPINLength); len(rpIDs) > limit {
		msg := fmt.Sprintf("this key accepts at most %d --rp IDs", limit)
		if limit == 0 {
			msg = "this key does not accept --rp IDs for the minimum PIN length"
		}
		return &cliError{code: cli.ExitUnsupported, msg: msg}
	}
	cur := c.info.MinPINLength
	if cur == 0 {
		cur = ctap2.DefaultMinPINLength
	}
	if n < cur {
		return &cliError{code: cli.ExitFailure, msg: fmt.Sprintf("the minimum PIN length can only grow: it is %d now", cur)}
	}
	cfg, err := c.configSession(ctx)
	if err != nil {
		return err
	}
	if err := cfg.SetMinPINLength(ctx, n, rpIDs, force); err != nil {
		if errors.Is(err, ctap2.ErrPINPolicyViolation) {
			return &cliError{code: cli.ExitFailure, status: ctap2.ErrPINPolicyViolation,
				msg: fmt.Sprintf("the key refused a minimum PIN length of %d (it can only grow; it is %d now)", n, cur)}
		}
		return err
	}
	info, err := c.dev.GetInfo(ctx)
	if err != nil {
		return err
	}
	forced := info.ForcePINChange != nil && *info.ForcePINChange
	if c.json {
		return c.printJSON(struct {
			MinPINLength   uint     `json:"minPINLength"`
			RPIDs          []string `json:"rpIds"`
			ForcePINChange bool     `json:"forcePINChange"`
		}{info.MinPINLength, nonNil(rpIDs), forced})
	}
	fmt.Fprintf(c.Stdout, "The minimum PIN length is now %d.\n", info.MinPINLength)
	if len(rpIDs) > 0 {
		fmt.Fprintf(c.Stdout, "These sites may read it: %s.\n", strings.Join(rpIDs, ", "))
	}
	if forced {
		fmt.Fprintln(c.Stdout, "The key asks for a new PIN before its next use: run \"virtkey pin change\".")
	}
	return nil
}
