package main

// The management commands: a CTAP2 client (package ctap2/client) that
// manages any FIDO2 key, virtual or hardware, like fido2-token or
// ykman fido.
//
//	virtkey [--device D] [--json] info
//	virtkey pin set|change
//	virtkey creds list [--rp ID]
//	virtkey creds rename CRED-ID --name N [--display-name D]
//	virtkey creds delete CRED-ID
//	virtkey reset
//	virtkey config always-uv on|off
//	virtkey config min-pin-length N [--rp ID]... [--force-change]
//
// --device and --json may come before or after the subcommand. The PIN is
// read from $VIRTKEY_PIN (the new PIN of "pin change" from
// $VIRTKEY_NEW_PIN), else from the terminal without echo. With --json the
// result — or, on failure, {"error": …} — is one JSON object on stdout.
//
// # Exit codes
//
//	0  success
//	1  failure: the key refused or failed the operation, or the link to it broke
//	2  usage: a bad command line
//	3  wrong PIN (the message says how many retries are left), or failed built-in user verification
//	4  PIN blocked: too many wrong PINs in a row (remove and reinsert the key),
//	   no retries left (only "virtkey reset" helps), or built-in UV blocked
//	5  not found: no such credential
//	6  PIN needed: no PIN is set on the key, or there is no way to ask for one
//	   (no $VIRTKEY_PIN and no terminal)
//	7  no device: none found, several found, or it does not answer
//	8  not supported by this key

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid"
)

// Exit codes of the management commands (see the file comment).
const (
	exitFailure     = 1
	exitUsage       = 2
	exitWrongPIN    = 3
	exitPINBlocked  = 4
	exitNotFound    = 5
	exitPINNeeded   = 6
	exitNoDevice    = 7
	exitUnsupported = 8
)

// Environment variables read by the management commands.
const (
	envDevice = "VIRTKEY_DEVICE"  // default for --device
	envPIN    = "VIRTKEY_PIN"     // the PIN
	envNewPIN = "VIRTKEY_NEW_PIN" // the new PIN of "pin change"
)

const manageUsage = `Manage a FIDO2 key (the virtual one or a hardware key):
  virtkey info                        show what the key supports
  virtkey pin set                     set the first PIN
  virtkey pin change                  change the PIN
  virtkey creds list [--rp ID]        list passkeys (discoverable credentials)
  virtkey creds rename CRED-ID --name N [--display-name D]
  virtkey creds delete CRED-ID
  virtkey reset                       erase every passkey and the PIN
  virtkey config always-uv on|off     require user verification for everything
  virtkey config min-pin-length N [--rp ID]... [--force-change]

Common flags (before or after the subcommand):
  --device udp:HOST:PORT | /dev/hidrawN   the key (default: $VIRTKEY_DEVICE, else the only key present)
  --json                                  machine-readable output

The PIN comes from $VIRTKEY_PIN (the new one of "pin change" from $VIRTKEY_NEW_PIN),
else from the terminal. CRED-ID is base64url as printed by "creds list" (standard
base64 and hex work too).
Exit codes: 1 failure, 2 usage, 3 wrong PIN, 4 PIN blocked, 5 no such credential,
6 PIN needed, 7 no device, 8 not supported.
`

// manageCommands are the management subcommands.
var manageCommands = map[string]func(*manager, context.Context, []string) error{
	"info":   (*manager).info,
	"pin":    (*manager).pin,
	"creds":  (*manager).creds,
	"reset":  (*manager).reset,
	"config": (*manager).config,
}

// isManageCommand reports whether name starts a management command: a
// subcommand, or one of the common flags given before it.
func isManageCommand(name string) bool {
	if _, ok := manageCommands[name]; ok {
		return true
	}
	flagName, _, _ := strings.Cut(strings.TrimLeft(name, "-"), "=")
	return strings.HasPrefix(name, "-") && (flagName == "device" || flagName == "json")
}

// manage runs a management subcommand against a FIDO2 device.
func manage(ctx context.Context, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	m := &manager{
		stdin: stdin, stdout: stdout, stderr: stderr,
		getenv:  os.Getenv,
		openTTY: func() (*os.File, error) { return os.OpenFile("/dev/tty", os.O_RDWR, 0) },
	}
	return m.run(ctx, append([]string{name}, args...))
}

// manager runs one management command. Its fields are the process's
// environment, injectable for tests.
type manager struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	openTTY        func() (*os.File, error)

	// Common flags.
	device string
	json   bool

	dev      *openedDevice
	touching atomic.Bool // a "touch the key" prompt is showing
}

// run parses the common flags before the subcommand, runs it, and turns
// its error into words and an exit code.
func (m *manager) run(ctx context.Context, args []string) error {
	fs := m.flagSet("virtkey", "")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprint(m.stderr, manageUsage)
		return errUsage
	}
	cmd, ok := manageCommands[args[0]]
	if !ok {
		fmt.Fprintf(m.stderr, "virtkey: unknown command %q\n\n%s", args[0], manageUsage)
		return errUsage
	}
	err := cmd(m, ctx, args[1:])
	if m.dev != nil {
		m.dev.close()
	}
	if err == nil || errors.Is(err, errUsage) {
		return err
	}
	ce := explain(err)
	if m.json {
		m.printJSON(ce.jsonError())
	}
	return &exitError{code: ce.code, err: errors.New(ce.msg)}
}

// flagSet returns a flag set with the common flags; usage is printed by -h
// and on errors.
func (m *manager) flagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&m.device, "device", m.device, "the key: udp:HOST:PORT or /dev/hidrawN (default $VIRTKEY_DEVICE, else the only key present)")
	fs.BoolVar(&m.json, "json", m.json, "machine-readable JSON output")
	fs.Usage = func() {
		if usage == "" {
			fmt.Fprint(m.stderr, manageUsage)
			return
		}
		fmt.Fprintf(m.stderr, "usage: %s\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags mixed with positional arguments ("creds rename ID
// --name N" as well as "creds rename --name N ID"); "--" ends the flags.
// With dashIDs, an argument that starts with "-" but names no flag is
// positional (a base64url credential ID may start with "-").
func parseArgs(fs *flag.FlagSet, args []string, dashIDs bool) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		switch {
		case f == nil && dashIDs && name != "h" && name != "help":
			pos = append(pos, a)
		case f == nil || hasValue || isBoolFlag(f):
			flags = append(flags, a) // an unknown flag fails in Parse
		case i+1 < len(args):
			flags = append(flags, a, args[i+1])
			i++
		default:
			flags = append(flags, a) // missing value: Parse says so
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, errUsage
	}
	return pos, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// usageError prints msg and the usage of fs and returns errUsage.
func (m *manager) usageError(fs *flag.FlagSet, format string, a ...any) error {
	fmt.Fprintf(m.stderr, "virtkey: "+format+"\n", a...)
	fs.Usage()
	return errUsage
}

// open opens the device named by --device, $VIRTKEY_DEVICE, or the only
// one present.
func (m *manager) open(ctx context.Context) (*client.Device, error) {
	spec := m.device
	if spec == "" {
		spec = m.getenv(envDevice)
	}
	d, err := openDevice(ctx, spec, m.keepalive)
	if err != nil {
		return nil, err
	}
	m.dev = d
	return d.dev, nil
}

// keepalive tells the user to touch the key while the key waits for it.
func (m *manager) keepalive(status byte) {
	if status == hid.StatusUPNeeded {
		if !m.touching.Swap(true) {
			fmt.Fprintln(m.stderr, "Touch your security key to confirm…")
		}
	} else {
		m.touching.Store(false)
	}
}

// printJSON writes v as indented JSON on stdout.
func (m *manager) printJSON(v any) error {
	enc := json.NewEncoder(m.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// cliError is a failure explained in words, with its exit code.
type cliError struct {
	code    int
	msg     string
	status  ctap2.StatusCode // the CTAP status behind it, if any
	retries *int             // PIN retries left, if known
}

func (e *cliError) Error() string { return e.msg }

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
func explain(err error) *cliError {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce
	}
	var pe *client.PINError
	if errors.As(err, &pe) {
		e := &cliError{status: pe.Status}
		if pe.Retries >= 0 {
			e.retries = &pe.Retries
		}
		switch pe.Status {
		case ctap2.ErrPINInvalid:
			e.code, e.msg = exitWrongPIN, "wrong PIN"
			if pe.Retries >= 0 {
				e.msg = fmt.Sprintf("wrong PIN, %s left", plural(pe.Retries, "retry", "retries"))
			}
		case ctap2.ErrPINAuthBlocked:
			e.code, e.msg = exitPINBlocked, "too many wrong PINs; remove and reinsert the key"
			if pe.Retries >= 0 {
				e.msg += fmt.Sprintf(" (%s left)", plural(pe.Retries, "retry", "retries"))
			}
		default:
			e.code, e.msg = exitPINBlocked, pinBlockedMsg
		}
		return e
	}
	if errors.Is(err, client.ErrNotSupported) {
		return &cliError{code: exitUnsupported, msg: "this key does not support " + strings.TrimSuffix(err.Error(), ": "+client.ErrNotSupported.Error())}
	}
	if errors.Is(err, context.Canceled) {
		return &cliError{code: exitFailure, msg: "cancelled"}
	}
	var st ctap2.StatusCode
	if !errors.As(err, &st) {
		var he hid.ErrorCode
		if errors.As(err, &he) || errors.Is(err, context.DeadlineExceeded) {
			return &cliError{code: exitFailure, msg: "talking to the key failed: " + err.Error()}
		}
		return &cliError{code: exitFailure, msg: err.Error()}
	}
	e := &cliError{code: exitFailure, status: st}
	switch st {
	case ctap2.ErrPINInvalid:
		e.code, e.msg = exitWrongPIN, "wrong PIN"
	case ctap2.ErrPINAuthBlocked:
		e.code, e.msg = exitPINBlocked, "too many wrong PINs; remove and reinsert the key"
	case ctap2.ErrPINBlocked:
		e.code, e.msg = exitPINBlocked, pinBlockedMsg
	case ctap2.ErrPINNotSet:
		e.code, e.msg = exitPINNeeded, "no PIN is set on the key; set one with \"virtkey pin set\""
	case ctap2.ErrPUATRequired:
		e.code, e.msg = exitPINNeeded, "the key requires its PIN (or built-in user verification) for this"
	case ctap2.ErrPINPolicyViolation:
		e.msg = "the key refused the PIN: it breaks the key's PIN policy (too short, too long, or the same as the current one)"
	case ctap2.ErrUVInvalid:
		e.code, e.msg = exitWrongPIN, "user verification failed on the key"
	case ctap2.ErrUVBlocked:
		e.code, e.msg = exitPINBlocked, "built-in user verification is blocked; use the PIN (set VIRTKEY_PIN)"
	case ctap2.ErrNoCredentials:
		e.code, e.msg = exitNotFound, "no such credential"
	case ctap2.ErrInvalidCommand, ctap2.ErrInvalidSubcommand, ctap2.ErrUnsupportedOption:
		e.code, e.msg = exitUnsupported, fmt.Sprintf("this key does not support the operation (%v)", err)
	case ctap2.ErrUnauthorizedPermission:
		e.code, e.msg = exitUnsupported, "the key cannot grant the permission this needs (UNAUTHORIZED_PERMISSION)"
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

// plural formats n with the singular or plural noun.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
