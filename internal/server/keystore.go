package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"

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

// openKeyStore opens the key custody chosen by --keystore. The returned
// function releases it.
func openKeyStore(ctx context.Context, c *Config, log *slog.Logger) (keyStore, func(), error) {
	switch c.Keystore {
	case KeystoreSoftware:
		if _, err := os.Lstat(filepath.Join(c.StateDir, tpmkeys.TPMStateFileName)); err == nil {
			return nil, nil, fmt.Errorf("state directory %s belongs to the TPM key store (it has %s); use --keystore tpm or another --state-dir",
				c.StateDir, tpmkeys.TPMStateFileName)
		}
		passphrase, err := c.passphrase()
		if err != nil {
			return nil, nil, err
		}
		var ks *tpmkeys.Software
		if passphrase != nil {
			ks, err = tpmkeys.OpenSoftwarePassphrase(c.StateDir, passphrase)
		} else {
			ks, err = tpmkeys.OpenSoftware(c.StateDir)
		}
		if err != nil {
			return nil, nil, err
		}
		return ks, func() {}, nil
	case KeystoreTPM, KeystoreTPMEdDSA:
		open, err := c.tpmOpener()
		if err != nil {
			return nil, nil, err
		}
		eddsa := tpmkeys.EdDSARefuse
		if c.Keystore == KeystoreTPMEdDSA {
			eddsa = tpmkeys.EdDSAWrapped
		}
		ks, err := tpmkeys.OpenTPM(ctx, c.StateDir, open, tpmkeys.WithEdDSA(eddsa), tpmkeys.WithTPMLogger(log))
		if errors.Is(err, tpmkeys.ErrTPMUnavailable) {
			return nil, nil, c.tpmUnavailable(err)
		}
		if err != nil {
			return nil, nil, err
		}
		log.Info("key store", "keystore", c.Keystore, "tpm", c.tpmName(), "algorithms", ks.Algorithms())
		return ks, func() { ks.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--keystore %q: want software, tpm or tpm+eddsa", c.Keystore)
}

// tpmReachable opens the TPM and closes it again, so that run fails before
// it creates any state when there is no TPM.
func (c *Config) tpmReachable() error {
	open, err := c.tpmOpener()
	if err != nil {
		return err
	}
	t, err := open()
	if err != nil {
		return c.tpmUnavailable(fmt.Errorf("%w: %v", tpmkeys.ErrTPMUnavailable, err))
	}
	return t.Close()
}

func (c *Config) tpmUnavailable(err error) error {
	return fmt.Errorf("%w (there is no fallback to software keys; run \"virtkey doctor --keystore %s\" to see what to fix)", err, c.Keystore)
}

// tpmOpener opens --tpm, or the first of Host.TPMDevices that opens.
func (c *Config) tpmOpener() (tpmkeys.Opener, error) {
	if c.TPM != "" || c.Host.TPMDevices == nil {
		return tpmkeys.OpenerFor(c.TPM)
	}
	devices := c.Host.TPMDevices
	return func() (transport.TPMCloser, error) {
		var errs []string
		for _, dev := range devices {
			open, err := tpmkeys.OpenerFor(dev)
			if err == nil {
				var t transport.TPMCloser
				if t, err = open(); err == nil {
					return t, nil
				}
			}
			errs = append(errs, err.Error())
		}
		return nil, errors.New(strings.Join(errs, "; "))
	}, nil
}

func (c *Config) tpmName() string {
	if c.TPM == "" {
		return "default (/dev/tpmrm0, then /dev/tpm0)"
	}
	return c.TPM
}
