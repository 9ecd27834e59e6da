package tpmkeys

import (
	"context"
	"crypto"
)

// ExportPrivateKey returns the private key wrapped in credential ID credID
// (made by NewCredential for rpIDHash): an *ecdsa.PrivateKey,
// ed25519.PrivateKey or *rsa.PrivateKey. It exists for the test-automation
// control plane, which hands private keys out only where the operator
// allowed it; a [TPM] key store has no such method, its keys never leave
// the TPM. Any failure is [ErrUnknownCredential].
func (s *Software) ExportPrivateKey(ctx context.Context, credID, rpIDHash []byte) (crypto.Signer, error) {
	signer, _, err := s.Signer(ctx, credID, rpIDHash)
	if err != nil {
		return nil, ErrUnknownCredential
	}
	k, ok := signer.(*credentialKey)
	if !ok {
		return nil, ErrUnknownCredential
	}
	return k.priv, nil
}
