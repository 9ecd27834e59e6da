package tpmkeys

import "errors"

// Errors returned by this package. Test with errors.Is.
var (
	// ErrUnknownCredential is the only error Software.Signer returns for an
	// ID it cannot open, whatever the reason, so that a forged ID, one for
	// another RP and one from another authenticator are indistinguishable.
	ErrUnknownCredential = errors.New("tpmkeys: unknown credential")
	// ErrUnsupportedAlgorithm reports an algorithm NewCredential does not
	// implement.
	ErrUnsupportedAlgorithm = errors.New("tpmkeys: unsupported algorithm")
	// ErrWrongPassphrase reports a passphrase that does not match the one
	// the state directory was created with.
	ErrWrongPassphrase = errors.New("tpmkeys: wrong passphrase")
	// ErrSealedData reports sealed data that does not open (corrupted, other
	// additional data, or another master key).
	ErrSealedData = errors.New("tpmkeys: sealed data does not open")
)
