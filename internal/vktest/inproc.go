package vktest

import (
	"context"
	"testing"

	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/tpmkeys"
)

// InProc starts an in-process key (package inproc) with opts until
// cleanup.
func InProc(t testing.TB, opts inproc.Options) *inproc.Key {
	t.Helper()
	k, err := inproc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// DeviceSealer is the device sealer of the software key store in dir (a
// new store where dir holds none), which seals the attestation keys.
func DeviceSealer(t testing.TB, dir string) *tpmkeys.DeviceSealer {
	t.Helper()
	ks, err := tpmkeys.OpenSoftware(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ks.DeviceSealer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
