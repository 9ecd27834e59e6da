package backup

import (
	"errors"
	"fmt"

	"github.com/virtkey/virtkey/internal/cli"
)

// Errors of Create and Restore. Test with errors.Is; each comes as an
// error whose message says what to do, and whose ExitCode is the command's
// exit status (internal/cli).
var (
	// ErrTPMKeystore: the TPM key store's passkeys cannot leave the TPM.
	ErrTPMKeystore = errors.New("TPM-bound passkeys cannot leave the TPM")
	// ErrRunning: a virtkey run holds the state directory.
	ErrRunning = errors.New("the state directory is in use by a running virtkey")
	// ErrNotEmpty: restore would replace a non-empty state directory.
	ErrNotEmpty = errors.New("the state directory is not empty")
	// ErrNoState: backup found nothing to back up.
	ErrNoState = errors.New("nothing to back up")
	// ErrWrongPassphrase: the archive does not open with the passphrase.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrDamaged: the archive is damaged, truncated or not a backup.
	ErrDamaged = errors.New("damaged or not a virtkey backup")
	// ErrPassphraseNeeded: no passphrase was given and there is no
	// terminal to ask on.
	ErrPassphraseNeeded = errors.New("a passphrase is needed")
)

// refusal is one of the errors above with its message and exit status.
type refusal struct {
	kind error
	msg  string
	code int
}

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == r.kind }
func (r *refusal) ExitCode() int        { return r.code }

func refuse(kind error, format string, a ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, a...), code: cli.ExitFailure}
}

// tpmRefusal is ErrTPMKeystore, exit status 8 (not supported).
func tpmRefusal(why string) error {
	return &refusal{kind: ErrTPMKeystore, code: cli.ExitUnsupported, msg: why +
		": TPM-bound passkeys cannot leave the TPM (by design: their private keys were made inside it and it never exports them), " +
		"so there is nothing to back up and nothing was written. " +
		"Keep a second security key registered with each site in case this machine is lost"}
}

// running is ErrRunning for command cmd ("backup", "restore").
func running(dir, cmd string) error {
	return refuse(ErrRunning, "state directory %s is in use by a running virtkey (state.db is locked): "+
		"stop the key first (systemctl --user stop virtkey, or end the \"virtkey run\" process), then run virtkey %s again", dir, cmd)
}
