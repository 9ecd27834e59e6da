package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/tpmkeys"
)

// keyStore is what ctap2 needs from key custody.
type keyStore interface {
	ctap2.KeyStore
	ctap2.Sealer
}

// openKeyStore opens the key custody chosen by --keystore. The returned
// function releases it.
func openKeyStore(ctx context.Context, f *runFlags, log *slog.Logger) (keyStore, func(), error) {
	switch f.keystore {
	case "software":
		passphrase, err := readPassphrase(f.passphraseFile)
		if err != nil {
			return nil, nil, err
		}
		var ks *tpmkeys.Software
		if passphrase != nil {
			ks, err = tpmkeys.OpenSoftwarePassphrase(f.stateDir, passphrase)
		} else {
			ks, err = tpmkeys.OpenSoftware(f.stateDir)
		}
		if err != nil {
			return nil, nil, err
		}
		return ks, func() {}, nil
	case "tpm":
		return nil, nil, fmt.Errorf("--keystore tpm is not available in this version yet; use --keystore software")
	}
	return nil, nil, fmt.Errorf("--keystore %q: want software or tpm", f.keystore)
}
