package manage

import (
	"context"
	"fmt"

	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/cli"
)

func pinSet(ctx context.Context, c *call) error {
	if set, _ := client.Option(c.info, "clientPin"); set {
		return &cliError{code: cli.ExitFailure, msg: "a PIN is already set; change it with \"virtkey pin change\""}
	}
	pin, err := c.readPIN(envPIN, "New PIN", true)
	if err != nil {
		return err
	}
	if err := checkNewPIN(c.info, pin); err != nil {
		return err
	}
	if err := c.dev.SetPIN(ctx, pin); err != nil {
		return err
	}
	return c.pinDone(ctx, "The PIN is set.")
}

func pinChange(ctx context.Context, c *call) error {
	if set, _ := client.Option(c.info, "clientPin"); !set {
		return &cliError{code: cli.ExitPINNeeded, msg: "no PIN is set on the key; set one with \"virtkey pin set\""}
	}
	old, err := c.readPIN(envPIN, "Current PIN", false)
	if err != nil {
		return err
	}
	pin, err := c.readPIN(envNewPIN, "New PIN", true)
	if err != nil {
		return err
	}
	if err := checkNewPIN(c.info, pin); err != nil {
		return err
	}
	if err := c.dev.ChangePIN(ctx, old, pin); err != nil {
		return err
	}
	return c.pinDone(ctx, "The PIN is changed.")
}

// pinDone reports a PIN set or changed, with the retries now left.
func (c *call) pinDone(ctx context.Context, done string) error {
	retries, _, err := c.dev.GetPINRetries(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(struct {
			PINSet     bool `json:"pinSet"`
			PINRetries int  `json:"pinRetries"`
		}{true, retries})
	}
	_, err = fmt.Fprintln(c.Stdout, done)
	return err
}
