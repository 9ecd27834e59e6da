// Command virtkey is a virtual FIDO2 security key and a CTAP client that
// manages any FIDO2 key.
//
//	virtkey run [flags]           serve a virtual key (see "virtkey run -h")
//	virtkey info|pin|creds|reset|config …   manage a key (see "virtkey help")
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/virtkey/virtkey/control/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "virtkey:", err)
		}
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errUsage means the usage text was already printed.
var errUsage = errors.New("usage")

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

const usage = `virtkey — a virtual FIDO2 security key for Linux, and a FIDO2 key manager

Serve a virtual key:
  virtkey run [flags]                 (virtkey run -h lists the flags)

Manage a key (the virtual one or a hardware key):
  virtkey info                        show what the key supports
  virtkey pin set|change              set or change the PIN
  virtkey creds list [--rp ID]        list passkeys
  virtkey creds rename CRED-ID --name N [--display-name D]
  virtkey creds delete CRED-ID
  virtkey reset                       erase every credential and the PIN
  virtkey config always-uv on|off
  virtkey config min-pin-length N [--rp ID...]
  Common flags: --device udp:HOST:PORT | /dev/hidrawN, --json

Drive a running key from tests (virtkey run --control ...):
  virtkey ctl --control unix:PATH ... (virtkey ctl help lists the commands)

Check this machine:
  virtkey doctor                      can this user use /dev/uhid and a TPM?
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "run":
		return runKey(ctx, args[1:], stderr)
	case "doctor":
		return doctor(ctx, args[1:], stdout, stderr)
	case "ctl":
		if code := ctl.Main(ctx, args[1:], stdout, stderr); code != 0 {
			return &exitError{code: code, err: errUsage}
		}
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	if isManageCommand(args[0]) {
		return manage(ctx, args[0], args[1:], stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "virtkey: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}
