package manage

import (
	"context"
	"errors"
	"fmt"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/internal/cli"
)

// cliError is a failure explained in words, with its exit code.
type cliError struct {
	code    int
	msg     string
	status  ctap2.StatusCode // the CTAP status behind it, if any
	retries *int             // PIN retries left, if known
}

func (e *cliError) Error() string { return e.msg }

// ExitCode is the process's exit code for e (internal/cli's table).
func (e *cliError) ExitCode() int { return e.code }

// unsupported is the failure of a key without feature.
func unsupported(feature string) *cliError {
	return &cliError{code: cli.ExitUnsupported, msg: "this key does not support " + feature}
}

// jsonError is the --json output of a failure.
type jsonError struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exitCode"`
	Status   string `json:"status,omitempty"`
	Retries  *int   `json:"pinRetries,omitempty"`
}

func (e *cliError) jsonError() jsonError {
	j := jsonError{Error: e.msg, ExitCode: e.code, Retries: e.retries}
	if e.status != 0 {
		j.Status = e.status.Name()
		if j.Status == "" {
			j.Status = fmt.Sprintf("0x%02X", byte(e.status))
		}
	}
	return j
}

// explain turns any error of a management command into words and an exit
// code. Commands return a *cliError where the context matters (which
// credential, which setting); everything else is explained by its CTAP
// status.
func (m *manager) explain(err error) *cliError {
	return explain(err, m.powerCycleAdvice())
}

// explain is [manager.explain] with the advice for a power cycle given.
func explain(err error, powerCycle string) *cliError {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce
	}
	tooMany := "too many wrong PINs; " + powerCycle
	var pe *client.PINError
	if errors.As(err, &pe) {
		e := &cliError{status: pe.Status}
		if pe.Retries >= 0 {
			e.retries = &pe.Retries
		}
		switch pe.Status {
		case ctap2.ErrPINInvalid:
			e.code, e.msg = cli.ExitWrongPIN, "wrong PIN"
			if pe.Retries >= 0 {
				e.msg = fmt.Sprintf("wrong PIN, %s left", plural(pe.Retries, "retry", "retries"))
			}
		case ctap2.ErrPINAuthBlocked:
			e.code, e.msg = cli.ExitPINBlocked, tooMany
			if pe.Retries >= 0 {
				e.msg += fmt.Sprintf(" (%s left)", plural(pe.Retries, "retry", "retries"))
			}
		default:
			e.code, e.msg = cli.ExitPINBlocked, pinBlockedMsg
		}
		return e
	}
	if errors.Is(err, client.ErrNotSupported) {
		return &cliError{code: cli.ExitUnsupported, msg: "the key does not support this: " + err.Error()}
	}
	if errors.Is(err, context.Canceled) {
		return &cliError{code: cli.ExitFailure, msg: "cancelled"}
	}
	var st ctap2.StatusCode
	if !errors.As(err, &st) {
		var he hid.ErrorCode
		if errors.As(err, &he) || errors.Is(err, context.DeadlineExceeded) {
			return &cliError{code: cli.ExitFailure, msg: "talking to the key failed: " + err.Error()}
		}
		return &cliError{code: cli.ExitFailure, msg: err.Error()}
	}
	e := &cliError{code: cli.ExitFailure, status: st}
	switch st {
	case ctap2.ErrPINInvalid:
		e.code, e.msg = cli.ExitWrongPIN, "wrong PIN"
	case ctap2.ErrPINAuthBlocked:
		e.code, e.msg = cli.ExitPINBlocked, tooMany
	case ctap2.ErrPINBlocked:
		e.code, e.msg = cli.ExitPINBlocked, pinBlockedMsg
	case ctap2.ErrPINNotSet:
		e.code, e.msg = cli.ExitPINNeeded, "no PIN is set on the key; set one with \"virtkey pin set\""
	case ctap2.ErrPUATRequired:
		e.code, e.msg = cli.ExitPINNeeded, "the key requires its PIN (or built-in user verification) for this"
	case ctap2.ErrPINPolicyViolation:
		e.msg = "the key refused the PIN: it breaks the key's PIN policy (too short, too long, or the same as the current one)"
	case ctap2.ErrUVInvalid:
		e.code, e.msg = cli.ExitWrongPIN, "user verification failed on the key"
	case ctap2.ErrUVBlocked:
		e.code, e.msg = cli.ExitPINBlocked, "built-in user verification is blocked; use the PIN (set VIRTKEY_PIN)"
	case ctap2.ErrNoCredentials:
		e.code, e.msg = cli.ExitNotFound, "no such credential"
	case ctap2.ErrInvalidCommand, ctap2.ErrInvalidSubcommand, ctap2.ErrUnsupportedOption:
		e.code, e.msg = cli.ExitUnsupported, fmt.Sprintf("this key does not support the operation (%v)", err)
	case ctap2.ErrUnauthorizedPermission:
		e.code, e.msg = cli.ExitUnsupported, "the key cannot grant the permission this needs (UNAUTHORIZED_PERMISSION)"
	case ctap2.ErrOperationDenied:
		e.msg = "the operation was declined on the key"
	case ctap2.ErrUserActionTimeout, ctap2.ErrActionTimeout:
		e.msg = "the key was not touched in time"
	case ctap2.ErrKeepaliveCancel:
		e.msg = "cancelled"
	case ctap2.ErrPINAuthInvalid:
		e.msg = "the key rejected the request's PIN authentication (PIN_AUTH_INVALID); try again"
	default:
		e.msg = fmt.Sprintf("the key refused: %v", err)
	}
	return e
}

const pinBlockedMsg = "the PIN is blocked (no retries left): only \"virtkey reset\", which erases every passkey on the key, makes it usable again"
