package server

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/virtkey/virtkey/tpmkeys"
)

// CredentialName is the systemd credential a software key store's
// passphrase is read from: $CREDENTIALS_DIRECTORY/virtkey-passphrase, set
// up with LoadCredential= (or LoadCredentialEncrypted=) in the unit.
const CredentialName = "virtkey-passphrase"

// passphraseSource is where a passphrase may come from: the process's
// environment and its standard input and error.
type passphraseSource struct {
	file     string // --passphrase-file
	stateDir string
	getenv   func(string) string
	stdin    *os.File  // asked on when it is a terminal
	prompt   io.Writer // where the question goes
}

// passphrase is the passphrase of the software key store, or nil for a key
// file. The first source that has one wins:
//
//  1. --passphrase-file FILE;
//  2. the systemd credential $CREDENTIALS_DIRECTORY/virtkey-passphrase;
//  3. $VIRTKEY_PASSPHRASE;
//  4. the terminal on stdin, asked without echo — only for a state
//     directory that already holds a passphrase store (passphrase.json),
//     so that a new store never gets a passphrase by accident.
//
// A passphrase store with none of them is an error that names them all.
func (c *Config) passphrase() ([]byte, error) {
	return passphraseSource{file: c.PassphraseFile, stateDir: c.StateDir,
		getenv: os.Getenv, stdin: os.Stdin, prompt: os.Stderr}.read()
}

func (s passphraseSource) read() ([]byte, error) {
	if s.file != "" {
		return readPassphraseFile(s.file, "--passphrase-file")
	}
	if dir := s.getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		p, err := readPassphraseFile(filepath.Join(dir, CredentialName), "systemd credential "+CredentialName)
		if !errors.Is(err, os.ErrNotExist) {
			return p, err
		}
	}
	if p := s.getenv("VIRTKEY_PASSPHRASE"); p != "" {
		return []byte(p), nil
	}
	if _, err := os.Lstat(filepath.Join(s.stateDir, tpmkeys.PassphraseFileName)); err != nil {
		return nil, nil // a key-file store (new or not)
	}
	if s.stdin == nil || !term.IsTerminal(int(s.stdin.Fd())) {
		return nil, fmt.Errorf("state directory %s is protected by a passphrase (%s): give it with --passphrase-file FILE, the systemd credential %s (LoadCredential=), $VIRTKEY_PASSPHRASE, or start virtkey on a terminal to be asked",
			s.stateDir, tpmkeys.PassphraseFileName, CredentialName)
	}
	fmt.Fprintf(s.prompt, "Passphrase of the virtkey key store in %s: ", s.stateDir)
	p, err := term.ReadPassword(int(s.stdin.Fd()))
	fmt.Fprintln(s.prompt)
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase from the terminal: %w", err)
	}
	if len(p) == 0 {
		return nil, errors.New("no passphrase entered")
	}
	return p, nil
}

// readPassphraseFile reads a passphrase from a file, without the line end
// an editor or echo leaves.
func readPassphraseFile(path, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}
