//go:build linux

package hidraw

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/hid"
)

// fakeKernel is the kernel's side of a hidraw node, played over a
// SOCK_SEQPACKET socket pair (which keeps report boundaries as hidraw
// does): the host writes report ID 0 ‖ 64 bytes, and reads 64-byte input
// reports.
type fakeKernel struct{ f *os.File }

func (k *fakeKernel) ReadReport(ctx context.Context) ([]byte, error) {
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

func (k *fakeKernel) WriteReport(r []byte) error {
	buf := make([]byte, hid.ReportSize)
	copy(buf, r)
	_, err := k.f.Write(buf)
	return err
}

// echo answers every CBOR message with its own bytes.
type echo struct{}

func (echo) HandleCBOR(_ context.Context, _ uint32, msg []byte, _ func(byte)) []byte { return msg }

func socketFiles(t *testing.T) (host, kernel *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	host, kernel = os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "kernel")
	t.Cleanup(func() { host.Close(); kernel.Close() })
	return host, kernel
}

// TestFile runs a CTAPHID client over the direct hidraw backend.
func TestFile(t *testing.T) {
	t.Parallel()
	host, kernel := socketFiles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srvCtx, stopSrv := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { hid.NewServer(&fakeKernel{kernel}, echo{}, nil).Run(srvCtx); close(done) }()
	defer func() { stopSrv(); <-done }()

	rd := &File{f: host}
	c := hid.NewClient(rd)
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte{0x04, 0xA5}, 300) // several packets each way
	if got, err := c.CBOR(ctx, msg); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("CBOR echo: %d bytes, %v", len(got), err)
	}

	// A blocked read returns when its context ends, and the device stays usable.
	rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer rcancel()
	if _, err := rd.ReadReport(rctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with an expired context: %v", err)
	}
	if got, err := c.CBOR(ctx, msg[:10]); err != nil || !bytes.Equal(got, msg[:10]) {
		t.Fatalf("after a cancelled read: %x, %v", got, err)
	}
	if err := rd.WriteReport(make([]byte, hid.ReportSize+1)); err == nil {
		t.Error("a 65-byte report was accepted")
	}
}

// A read whose context ends as a report arrives leaves no deadline behind
// to fail the next read: every failure is the context's own.
func TestFileShortReads(t *testing.T) {
	t.Parallel()
	host, kernel := socketFiles(t)
	rd := &File{f: host}
	const n = 300
	go func() {
		for range n {
			kernel.Write(make([]byte, hid.ReportSize))
			time.Sleep(100 * time.Microsecond)
		}
	}()
	got := 0
	for got < n {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(got%3)*100*time.Microsecond)
		_, err := rd.ReadReport(ctx)
		cancel()
		switch {
		case err == nil:
			got++
		case !errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("after %d reports: %v", got, err)
		}
	}
}
