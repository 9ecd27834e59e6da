package tpmkeys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/google/go-tpm/tpm2/transport"
)

// The device key seals what belongs to the device rather than to its
// user — the attestation CA, batch and enterprise keys — so that it
// survives authenticatorReset, which replaces the master key (ResetKeys)
// and so everything sealed under it. Where it comes from depends on how
// the store was opened:
//
//   - a key file (OpenSoftware): 32 random bytes in dir/device.key (0600),
//     made on first use; like master.key, whoever can read it can open
//     what it seals;
//   - a passphrase (OpenSoftwarePassphrase): derived from the Argon2id
//     output, so the passphrase is needed, and no file is written;
//   - the TPM (OpenTPM): 32 random bytes sealed to the TPM under the SRK,
//     as the master key is, in dir/tpm-device.json, unsealed over an
//     encrypted session; useless without this TPM;
//   - NewSoftware: derived from the master key it was given (in memory
//     only, like the store).
const (
	DeviceKeyFileName = "device.key"
	TPMDeviceFileName = "tpm-device.json"

	infoDevice = "virtkey device key v1"
)

// DeviceSealer seals and opens secrets under a key store's device key,
// which ResetKeys does not change (see [Software.DeviceSealer],
// [TPM.DeviceSealer]). Its format is [Software.Seal]'s. It is safe for
// concurrent use.
type DeviceSealer struct {
	redacted
	s *Software // keyed by the device key: only its Seal and Open are used
}

// Seal encrypts and authenticates plaintext, bound to aad.
func (d *DeviceSealer) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	return d.s.Seal(ctx, plaintext, aad)
}

// Open reverses Seal with the same aad. Any failure is [ErrSealedData].
func (d *DeviceSealer) Open(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	return d.s.Open(ctx, sealed, aad)
}

// String keeps key material out of fmt output.
func (d *DeviceSealer) String() string { return "tpmkeys.DeviceSealer(REDACTED)" }

// GoString keeps key material out of %#v output.
func (d *DeviceSealer) GoString() string { return d.String() }

// newDeviceSealer keys a DeviceSealer with HKDF(secret, infoDevice).
func newDeviceSealer(secret []byte) (*DeviceSealer, error) {
	if len(secret) != MasterKeySize {
		return nil, fmt.Errorf("tpmkeys: device key of %d bytes, want %d", len(secret), MasterKeySize)
	}
	k, err := deriveKey(secret, infoDevice)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	s, err := newSoftware(k, options{})
	if err != nil {
		return nil, err
	}
	return &DeviceSealer{s: s}, nil
}

// DeviceSealer returns the sealer of the store's device key, making the
// key on first use (see the list at [DeviceKeyFileName]). ctx is not used.
func (s *Software) DeviceSealer(ctx context.Context) (*DeviceSealer, error) {
	if s.device == nil {
		return nil, errors.New("tpmkeys: this store has no device key")
	}
	secret, err := s.device()
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	return newDeviceSealer(secret)
}

// fixedDevice returns a device-key source that always gives a copy of
// secret.
func fixedDevice(secret []byte) func() ([]byte, error) {
	return func() ([]byte, error) { return bytes.Clone(secret), nil }
}

// deviceKeyFile reads dir/device.key, making it on first use.
func deviceKeyFile(dir string) func() ([]byte, error) {
	return func() ([]byte, error) { return randomKeyFile(dir, DeviceKeyFileName) }
}

// tpmDevice is the JSON form of dir/tpm-device.json: the device key sealed
// to the TPM under the SRK (TPM2B_PUBLIC and TPM2B_PRIVATE contents).
type tpmDevice struct {
	Version int    `json:"version"`
	Public  []byte `json:"public"`
	Private []byte `json:"private"`
}

// DeviceSealer returns the sealer of the store's device key: 32 random
// bytes sealed to the TPM in dir/tpm-device.json (made on first use) and
// unsealed over a session salted with the SRK.
func (t *TPM) DeviceSealer(ctx context.Context) (*DeviceSealer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := filepath.Join(t.dir, TPMDeviceFileName)
	for range 2 {
		b, err := readSecretFile(path)
		if err == nil {
			var st tpmDevice
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&st); err != nil || st.Version != 1 || len(st.Public) == 0 || len(st.Private) == 0 {
				return nil, fmt.Errorf("tpmkeys: %s is damaged (%v)", path, err)
			}
			var secret []byte
			err = t.do(func(tpm transport.TPM, parent *srk) (err error) {
				secret, err = unseal(tpm, parent, &keyBlobs{public: st.Public, private: st.Private})
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("tpmkeys: unsealing the device key from %s: %w", path, err)
			}
			defer clear(secret)
			return newDeviceSealer(secret)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		secret := make([]byte, MasterKeySize)
		rand.Read(secret)
		defer clear(secret)
		var blobs *keyBlobs
		err = t.do(func(tpm transport.TPM, parent *srk) (err error) {
			blobs, err = createSealed(tpm, parent, secret)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("tpmkeys: sealing a device key: %w", err)
		}
		data, err := json.MarshalIndent(&tpmDevice{Version: 1, Public: blobs.public, Private: blobs.private}, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("tpmkeys: %w", err)
		}
		if err = writeFileAtomic(t.dir, TPMDeviceFileName, append(data, '\n'), false); err == nil {
			return newDeviceSealer(secret)
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("tpmkeys: %s appears and disappears", path)
}
