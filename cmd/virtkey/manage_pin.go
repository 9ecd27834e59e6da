package main

import (
	"context"
	"fmt"

	"github.com/virtkey/virtkey/ctap2/client"
)

func (m *manager) pin(ctx context.Context, args []string) error {
	fs := m.flagSet("virtkey pin", "virtkey pin set|change [--device D] [--json]")
	pos, err := parseArgs(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "set" && pos[0] != "change") {
		return m.usageError(fs, "pin: want \"set\" or \"change\"")
	}
	dev, err := m.open(ctx)
	if err != nil {
		return err
	}
	info, err := dev.GetInfo(ctx)
	if err != nil {
		return err
	}
	pinSet, pinKnown := client.Option(info, "clientPin")
	if !pinKnown {
		return &cliError{code: exitUnsupported, msg: "this key does not support a PIN"}
	}
	var done string
	switch pos[0] {
	case "set":
		if pinSet {
			return &cliError{code: exitFailure, msg: "a PIN is already set; change it with \"virtkey pin change\""}
		}
		pin, err := m.readPIN(envPIN, "New PIN", true)
		if err != nil {
			return err
		}
		if err := checkNewPIN(info, pin); err != nil {
			return err
		}
		if err := dev.SetPIN(ctx, pin); err != nil {
			return err
		}
		done = "The PIN is set."
	case "change":
		if !pinSet {
			return &cliError{code: exitPINNeeded, msg: "no PIN is set on the key; set one with \"virtkey pin set\""}
		}
		old, err := m.readPIN(envPIN, "Current PIN", false)
		if err != nil {
			return err
		}
		pin, err := m.readPIN(envNewPIN, "New PIN", true)
		if err != nil {
			return err
		}
		if err := checkNewPIN(info, pin); err != nil {
			return err
		}
		if err := dev.ChangePIN(ctx, old, pin); err != nil {
			return err
		}
		done = "The PIN is changed."
	}
	retries, _, err := dev.GetPINRetries(ctx)
	if err != nil {
		return err
	}
	if m.json {
		return m.printJSON(struct {
			PINSet     bool `json:"pinSet"`
			PINRetries int  `json:"pinRetries"`
		}{true, retries})
	}
	_, err = fmt.Fprintln(m.stdout, done)
	return err
}
