package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/tpmkeys"
)

// keyStore is what ctap2 needs from key custody.
type keyStore interface {
	ctap2.KeyStore
	ctap2.Sealer
	// DeviceSealer seals the attestation keys (it outlives reset).
	DeviceSealer(context.Context) (*tpmkeys.DeviceSealer, error)
}

// Values of --keystore.
const (
	keystoreSoftware = "software"
	// keystoreTPM keeps every credential key in the TPM: ES256 only.
	keystoreTPM = "tpm"
	// keystoreTPMEdDSA also offers EdDSA, as Ed25519 keys wrapped under the
	// TPM-sealed master key (TPMs cannot hold Ed25519 keys).
	keystoreTPMEdDSA = "tpm+eddsa"
)

// openKeyStore opens the key custody chosen by --keystore. The returned
// function releases it.
func openKeyStore(ctx context.Context, f *runFlags, log *slog.Logger) (keyStore, func(), error) {
	switch f.keystore {
	case keystoreSoftware:
		if _, err := os.Lstat(filepath.Join(f.stateDir, tpmkeys.TPMStateFileName)); err == nil {
			return nil, nil, fmt.Errorf("state directory %s belongs to the TPM key store (it has %s); use --keystore tpm or another --state-dir",
				f.stateDir, tpmkeys.TPMStateFileName)
		}
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
	case keystoreTPM, keystoreTPMEdDSA:
		if f.passphraseFile != "" {
			return nil, nil, errors.New("--passphrase-file works with --keystore software only; with --keystore tpm the master key is sealed by the TPM")
		}
		open, err := tpmkeys.OpenerFor(f.tpm)
		if err != nil {
			return nil, nil, err
		}
		eddsa := tpmkeys.EdDSARefuse
		if f.keystore == keystoreTPMEdDSA {
			eddsa = tpmkeys.EdDSAWrapped
		}
		ks, err := tpmkeys.OpenTPM(ctx, f.stateDir, open, tpmkeys.WithEdDSA(eddsa), tpmkeys.WithTPMLogger(log))
		if errors.Is(err, tpmkeys.ErrTPMUnavailable) {
			return nil, nil, fmt.Errorf("%w (there is no fallback to software keys; run \"virtkey doctor\" to see what to fix)", err)
		}
		if err != nil {
			return nil, nil, err
		}
		log.Info("key store", "keystore", f.keystore, "tpm", tpmName(f.tpm), "algorithms", ks.Algorithms())
		return ks, func() { ks.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--keystore %q: want software, tpm or tpm+eddsa", f.keystore)
}

func tpmName(spec string) string {
	if spec == "" {
		return "default (/dev/tpmrm0, then /dev/tpm0)"
	}
	return spec
}
