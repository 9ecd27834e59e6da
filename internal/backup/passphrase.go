package backup

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

// Environment variables of the passphrases.
const (
	// EnvPassphrase holds the backup passphrase, for scripts.
	EnvPassphrase = "VIRTKEY_BACKUP_PASSPHRASE"
	// EnvKeystorePassphrase holds the passphrase of a passphrase-protected
	// key store (as for virtkey run).
	EnvKeystorePassphrase = "VIRTKEY_PASSPHRASE"
)

// Secret says where a passphrase comes from: the file File, else the
// environment variable Env, else a prompt on the terminal. It is never
// logged or printed.
type Secret struct {
	What     string // what it is, for prompts and messages: "backup passphrase"
	File     string // a file holding it; a trailing newline is not part of it
	FileFlag string // the flag that names File, for messages: "--passphrase-file"
	Env      string // the environment variable
	Getenv   func(string) string
	// OpenTTY opens the terminal to ask on.
	OpenTTY func() (*os.File, error)

	// ask, when set, replaces the terminal (tests).
	ask func(prompt string) ([]byte, error)
}

// Read returns the passphrase; with confirm, one typed on the terminal is
// asked twice and must match.
func (s Secret) Read(confirm bool) ([]byte, error) {
	if s.File != "" {
		b, err := os.ReadFile(s.File)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.FileFlag, err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("%s: %s holds an empty %s", s.FileFlag, s.File, s.What)
		}
		return b, nil
	}
	if s.Getenv != nil {
		if v := s.Getenv(s.Env); v != "" {
			return []byte(v), nil
		}
	}
	ask := s.ask
	if ask == nil {
		var tty *os.File
		if s.OpenTTY != nil {
			var err error
			tty, err = s.OpenTTY()
			if err != nil {
				tty = nil
			}
		}
		if tty == nil {
			return nil, refuse(ErrPassphraseNeeded, "the %s is needed: give %s FILE, set %s, or run virtkey in a terminal", s.What, s.FileFlag, s.Env)
		}
		defer tty.Close()
		ask = func(prompt string) ([]byte, error) {
			fmt.Fprint(tty, prompt)
			b, err := term.ReadPassword(int(tty.Fd()))
			fmt.Fprintln(tty)
			if err != nil {
				return nil, fmt.Errorf("reading the %s from the terminal: %w (or set %s)", s.What, err, s.Env)
			}
			return b, nil
		}
	}
	first, err := ask(upperFirst(s.What) + ": ")
	if err != nil {
		return nil, err
	}
	if len(first) == 0 {
		return nil, fmt.Errorf("no %s entered", s.What)
	}
	if confirm {
		again, err := ask("Repeat the " + s.What + ": ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(first, again) {
			return nil, fmt.Errorf("the two %ss differ", s.What)
		}
	}
	return first, nil
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
