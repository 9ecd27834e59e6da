//go:build cgo

package tpmkeys

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestTPMDeviceSealer: the TPM store's device key is sealed to the TPM
// (tpm-device.json holds no plaintext of it) and survives ResetKeys and a
// restart.
func TestTPMDeviceSealer(t *testing.T) {
	sim := newSim(t)
	dir := t.TempDir()
	k := openTestTPM(t, sim, dir)
	d, err := k.DeviceSealer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := d.Seal(ctx, []byte("enterprise key"), []byte("enterprise.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open(ctx, sealed, []byte("enterprise.key")); err == nil {
		t.Fatal("the master key opens what the device key sealed")
	}
	if err := k.ResetKeys(ctx); err != nil {
		t.Fatal(err)
	}
	k.Close()
	k = openTestTPM(t, sim, dir)
	d, err = k.DeviceSealer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Open(ctx, sealed, []byte("enterprise.key"))
	if err != nil || string(got) != "enterprise key" {
		t.Fatalf("after reset and restart: Open = %q, %v", got, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, TPMDeviceFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, TPMDeviceFileName)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s mode %v", TPMDeviceFileName, fi.Mode())
	}
	if bytes.Contains(b, []byte("PRIVATE KEY")) {
		t.Fatal("tpm-device.json holds a PEM key")
	}
}
