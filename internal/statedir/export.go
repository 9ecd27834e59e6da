package statedir

import (
	"context"
	"crypto"

	"github.com/virtkey/virtkey/ctap2"
)

// ExportPrivateKey hands out a credential's private key when the key store
// can (tpmkeys.Software), for the control plane's export (see
// ctap2.PrivateKeyExporter); a TPM's keys never leave it.
func (b *boundKeys) ExportPrivateKey(ctx context.Context, credID, rpIDHash []byte) (crypto.Signer, error) {
	if ex, ok := b.KeyStore.(ctap2.PrivateKeyExporter); ok {
		return ex.ExportPrivateKey(ctx, credID, rpIDHash)
	}
	return nil, ctap2.ErrNotExportable
}

var _ ctap2.PrivateKeyExporter = (*boundKeys)(nil)
