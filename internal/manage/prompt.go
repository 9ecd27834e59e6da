package manage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/cli"
)

// Reading PINs and getting tokens.

// readPIN returns the PIN from the environment variable env, else asks on
// the terminal without echo (twice when confirm is set).
func (m *manager) readPIN(env, prompt string, confirm bool) (string, error) {
	if v := m.Getenv(env); v != "" {
		return v, nil
	}
	tty, err := m.OpenTTY()
	if err != nil {
		return "", &cliError{code: cli.ExitPINNeeded, msg: fmt.Sprintf("a PIN is needed: set %s or run virtkey in a terminal", env)}
	}
	defer tty.Close()
	ask := func(p string) (string, error) {
		fmt.Fprint(tty, p)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return "", &cliError{code: cli.ExitPINNeeded, msg: fmt.Sprintf("reading the PIN from the terminal: %v (or set %s)", err, env)}
		}
		return string(b), nil
	}
	pin, err := ask(prompt + ": ")
	if err != nil {
		return "", err
	}
	if pin == "" {
		return "", &cliError{code: cli.ExitFailure, msg: "no PIN entered"}
	}
	if confirm {
		again, err := ask("Repeat " + strings.ToLower(prompt[:1]) + prompt[1:] + ": ")
		if err != nil {
			return "", err
		}
		if again != pin {
			return "", &cliError{code: cli.ExitFailure, msg: "the two PINs differ"}
		}
	}
	return pin, nil
}

// checkNewPIN applies the key's PIN policy before the PIN is sent, so the
// user gets a clear message: at least minPINLength code points
// (ctap2.DefaultMinPINLength unless the key says otherwise), at most
// ctap2.MaxPINBytes bytes.
func checkNewPIN(info *ctap2.GetInfoResponse, pin string) error {
	minLen := ctap2.DefaultMinPINLength
	if info.MinPINLength > 0 {
		minLen = int(info.MinPINLength)
	}
	switch {
	case ctap2.PINCodePoints(pin) < minLen:
		return &cliError{code: cli.ExitFailure, msg: fmt.Sprintf("the PIN is too short: this key wants at least %d characters", minLen)}
	case len(pin) > ctap2.MaxPINBytes:
		return &cliError{code: cli.ExitFailure, msg: fmt.Sprintf("the PIN is too long: at most %d bytes", ctap2.MaxPINBytes)}
	case !utf8.ValidString(pin) || strings.ContainsRune(pin, 0):
		return &cliError{code: cli.ExitFailure, msg: "the PIN must be text (UTF-8, no NUL)"}
	}
	return nil
}

// confirm asks a yes/no question when stdin is a terminal; without one it
// answers yes (scripts run unattended).
func (m *manager) confirm(question string) (bool, error) {
	f, ok := m.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return true, nil
	}
	fmt.Fprintf(m.Stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// errNoProtection means the key has neither a PIN nor built-in UV, so an
// operation that may be unauthenticated (authenticatorConfig) goes without
// a token.
var errNoProtection = errors.New("the key has no PIN and no built-in user verification")

// token gets a pinUvAuthToken with perms: with the PIN when one is set and
// $VIRTKEY_PIN gives it, else with the key's built-in user verification
// when it has one, else with the PIN asked on the terminal.
func (m *manager) token(ctx context.Context, dev *client.Device, perms client.Permission) (*client.PINToken, error) {
	info, err := dev.CachedInfo(ctx)
	if err != nil {
		return nil, err
	}
	pinSet, _ := client.Option(info, "clientPin")
	uv, _ := client.Option(info, "uv")
	puat, _ := client.Option(info, "pinUvAuthToken")
	switch {
	case pinSet && m.Getenv(envPIN) != "":
	case uv && puat:
		tok, err := dev.GetUVToken(ctx, perms, "")
		if err == nil || !pinSet {
			return tok, err
		}
		// Fall back to the PIN when built-in UV fails.
	case pinSet:
	default:
		return nil, errNoProtection
	}
	pin, err := m.readPIN(envPIN, "PIN", false)
	if err != nil {
		return nil, err
	}
	tok, err := dev.GetPINToken(ctx, pin, perms, "")
	if errors.Is(err, ctap2.ErrPINPolicyViolation) && info.ForcePINChange != nil && *info.ForcePINChange {
		return nil, &cliError{code: cli.ExitFailure, status: ctap2.ErrPINPolicyViolation,
			msg: "the key requires a new PIN before anything else: run \"virtkey pin change\""}
	}
	return tok, err
}
