package tpmkeys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// deviceRoundTrip seals with open()'s store, resets its keys, opens a
// fresh store with open() again and checks the sealed blob still opens
// with the device key — and not with the master key.
func deviceRoundTrip(t *testing.T, open func() *Software) {
	t.Helper()
	s := open()
	d, err := s.DeviceSealer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("attestation private key")
	aad := []byte("ca.key")
	sealed, err := d.Seal(ctx, secret, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed blob holds the plaintext")
	}
	if _, err := s.Open(ctx, sealed, aad); err == nil {
		t.Fatal("the master key opens what the device key sealed")
	}
	if err := s.ResetKeys(ctx); err != nil {
		t.Fatal(err)
	}
	for _, store := range []*Software{s, open()} {
		d, err := store.DeviceSealer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Open(ctx, sealed, aad)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("after a reset: Open = %q, %v", got, err)
		}
		if _, err := d.Open(ctx, sealed, []byte("batch.key")); !errors.Is(err, ErrSealedData) {
			t.Fatalf("Open with another aad = %v", err)
		}
	}
}

func TestSoftwareDeviceSealer(t *testing.T) {
	t.Parallel()
	t.Run("key file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		deviceRoundTrip(t, func() *Software {
			s, err := OpenSoftware(dir)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
		fi, err := os.Stat(filepath.Join(dir, DeviceKeyFileName))
		if err != nil || fi.Size() != MasterKeySize || fi.Mode().Perm() != 0o600 {
			t.Fatalf("device.key: %v, %v", fi, err)
		}
		// Another key file opens nothing sealed before.
		if err := os.Remove(filepath.Join(dir, DeviceKeyFileName)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("passphrase", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		deviceRoundTrip(t, func() *Software {
			s, err := OpenSoftwarePassphrase(dir, []byte("correct horse"), WithArgon2Params(Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}))
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
		if _, err := os.Stat(filepath.Join(dir, DeviceKeyFileName)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a passphrase store wrote %s: %v", DeviceKeyFileName, err)
		}
		// Another passphrase's device key opens nothing.
		other, err := OpenSoftwarePassphrase(t.TempDir(), []byte("wrong"), WithArgon2Params(Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}))
		if err != nil {
			t.Fatal(err)
		}
		od, _ := other.DeviceSealer(context.Background())
		mine, _ := OpenSoftwarePassphrase(dir, []byte("correct horse"))
		md, _ := mine.DeviceSealer(context.Background())
		sealed, _ := md.Seal(context.Background(), []byte("x"), nil)
		if _, err := od.Open(context.Background(), sealed, nil); err == nil {
			t.Fatal("another passphrase opened the device key's blob")
		}
	})
	t.Run("in memory", func(t *testing.T) {
		t.Parallel()
		master := bytes.Repeat([]byte{7}, MasterKeySize)
		deviceRoundTrip(t, func() *Software {
			s, err := NewSoftware(master)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}

func TestDeviceKeyFileRefusesOpenMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := OpenSoftware(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, DeviceKeyFileName), make([]byte, MasterKeySize), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeviceSealer(context.Background()); err == nil {
		t.Fatal("a group-readable device.key was accepted")
	}
}
