//go:build linux && !(hidraw && cgo)

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// fakeHidrawKernel is the kernel's side of a hidraw node, played over a
// SOCK_SEQPACKET socket pair (which keeps report boundaries as hidraw
// does): the host writes report ID 0 ‖ 64 bytes, and reads 64-byte input
// reports.
type fakeHidrawKernel struct{ f *os.File }

func (k *fakeHidrawKernel) ReadReport(ctx context.Context) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { k.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 2*hid.ReportSize)
	n, err := k.f.Read(buf)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if n != 1+hid.ReportSize || buf[0] != 0 {
		return nil, errors.New("host wrote something other than report ID 0 and 64 bytes")
	}
	return buf[1:n], nil
}

func (k *fakeHidrawKernel) WriteReport(r []byte) error {
	buf := make([]byte, hid.ReportSize)
	copy(buf, r)
	_, err := k.f.Write(buf)
	return err
}

func socketFiles(t *testing.T) (host, kernel *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Skipf("socketpair: %v", err)
	}
	host, kernel = os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "kernel")
	t.Cleanup(func() { host.Close(); kernel.Close() })
	return host, kernel
}

// TestHidrawFile runs the CTAP2 client over the direct hidraw backend.
func TestHidrawFile(t *testing.T) {
	t.Parallel()
	host, kernel := socketFiles(t)
	dir := t.TempDir()
	keys, err := tpmkeys.OpenSoftware(dir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	auth, err := ctap2.New(ctap2.Config{KeyStore: keys, Store: db})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srvCtx, stopSrv := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { hid.NewServer(&fakeHidrawKernel{kernel}, auth, nil).Run(srvCtx); close(done) }()
	defer func() { stopSrv(); <-done }()

	rd := &hidrawFile{f: host}
	dev, err := client.Open(ctx, rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.SetPIN(ctx, "1234"); err != nil { // a multi-packet exchange
		t.Fatal(err)
	}
	if n, _, err := dev.GetPINRetries(ctx); err != nil || n != 8 {
		t.Fatalf("retries %d, %v", n, err)
	}

	// A blocked read returns when its context ends, and the device stays usable.
	rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer rcancel()
	if _, err := rd.ReadReport(rctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with an expired context: %v", err)
	}
	if _, err := dev.GetInfo(ctx); err != nil {
		t.Fatalf("after a cancelled read: %v", err)
	}
	if err := rd.WriteReport(make([]byte, hid.ReportSize+1)); err == nil {
		t.Error("a 65-byte report was accepted")
	}
}
