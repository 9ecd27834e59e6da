//go:build linux

package uhid

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtkey/virtkey/hid"
)

// These tests run the Linux Device code against a fake kernel: one end of
// a SOCK_SEQPACKET socket pair stands in for /dev/uhid (each write is one
// event, each read returns one event, and the descriptor is pollable as
// /dev/uhid is). The real kernel is exercised by the VM harness.

// kernel is the fake kernel's end.
type kernel struct {
	t *testing.T
	f *os.File
}

// newFakeDevice creates a Device on a socket pair and returns it with the
// kernel end, after the kernel has read CREATE2 and answered START (as
// the real kernel does before any client can open the hidraw node).
func newFakeDevice(t *testing.T, opts Options) (*Device, *kernel) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	o := opts.withDefaults()
	create, err := o.createEvent()
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDevice(os.NewFile(uintptr(fds[0]), "fake-uhid"), o, create)
	if err != nil {
		syscall.Close(fds[1])
		t.Fatal(err)
	}
	k := &kernel{t: t, f: os.NewFile(uintptr(fds[1]), "fake-kernel")}
	t.Cleanup(func() { d.Close(); k.f.Close() })
	if got := k.recv(); !bytes.Equal(got, create) {
		t.Fatalf("first event is not the CREATE2 for the options: type %s", eventType(ne.Uint32(got)))
	}
	k.send(kernelEvent(evStart))
	return d, k
}

// recv reads the next event the device wrote, failing after 5 s.
func (k *kernel) recv() []byte {
	k.t.Helper()
	ev, err := k.read(5 * time.Second)
	if err != nil {
		k.t.Fatal(err)
	}
	return ev
}

func (k *kernel) read(timeout time.Duration) ([]byte, error) {
	buf := make([]byte, eventSize+1)
	k.f.SetReadDeadline(time.Now().Add(timeout))
	n, err := k.f.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("fake kernel: %w", err)
	}
	if n != eventSize {
		return nil, fmt.Errorf("fake kernel: event of %d bytes, want %d", n, eventSize)
	}
	return buf[:n], nil
}

func (k *kernel) send(ev []byte) {
	k.t.Helper()
	if _, err := k.f.Write(ev); err != nil {
		k.t.Fatal(err)
	}
}

// kernelEvent returns a full-size event of type t (kernel to device).
func kernelEvent(t eventType) []byte { return newEvent(t) }

// outputEvent is UHID_OUTPUT as the kernel writes it for a hidraw write.
func outputEvent(rtype reportType, data []byte) []byte {
	ev := newEvent(evOutput)
	copy(ev[offOutputData:], data)
	ne.PutUint16(ev[offOutputSize:], uint16(len(data)))
	ev[offOutputRType] = byte(rtype)
	return ev
}

// hidrawWrite is what a client's 65-byte write to hidraw becomes.
func hidrawWrite(report []byte) []byte {
	return outputEvent(outputReport, append([]byte{0}, padTo(report, 64)...))
}

func reportReq(t eventType, id uint32, rtype reportType, data []byte) []byte {
	ev := newEvent(t)
	ne.PutUint32(ev[offReqID:], id)
	ev[offReqRNum] = 0
	ev[offReqRType] = byte(rtype)
	if t == evSetReport {
		ne.PutUint16(ev[offSetSize:], uint16(len(data)))
		copy(ev[offSetData:], data)
	}
	return ev
}

func testReport(b byte) []byte {
	r := make([]byte, 64)
	for i := range r {
		r[i] = b + byte(i)
	}
	return r
}

func readReport(t *testing.T, d *Device) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	r, err := d.ReadReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDeviceReadsOutputAndHandlesEvents(t *testing.T) {
	t.Parallel()
	d, k := newFakeDevice(t, Options{})
	k.send(kernelEvent(evOpen))
	// Garbage the device must drop without answering or failing.
	k.send([]byte{6, 0, 0})                                                    // short event
	k.send(outputEvent(featureReport, append([]byte{0}, testReport(1)...)))    // not an output report
	k.send(outputEvent(outputReport, append([]byte{0}, make([]byte, 65)...)))  // 66 bytes
	k.send(outputEvent(outputReport, append([]byte{3}, testReport(1)...)))     // report number 3
	k.send(outputEvent(outputReport, nil))                                     // empty
	k.send(append(outputEvent(outputReport, nil)[:offOutputSize], 0xff, 0xff)) // size 65535
	k.send(kernelEvent(99))                                                    // unknown type
	k.send(reportReq(evGetReport, 41, featureReport, nil))
	k.send(reportReq(evSetReport, 42, featureReport, []byte{1, 2, 3}))
	k.send(hidrawWrite(testReport(10)))
	if got := readReport(t, d); !bytes.Equal(got, testReport(10)) {
		t.Fatalf("report = %x, want %x", got, testReport(10))
	}
	// The feature-report requests were answered with EIO, in order.
	want := newEvent(evGetReportReply)
	ne.PutUint32(want[offReplyID:], 41)
	ne.PutUint16(want[offReplyErr:], errnoEIO)
	if got := k.recv(); !bytes.Equal(got, want) {
		t.Fatalf("GET_REPORT answer: got type %s id %d err %d", eventType(ne.Uint32(got)), ne.Uint32(got[4:]), ne.Uint16(got[8:]))
	}
	want = newEvent(evSetReportReply)
	ne.PutUint32(want[offReplyID:], 42)
	ne.PutUint16(want[offReplyErr:], errnoEIO)
	if got := k.recv(); !bytes.Equal(got, want) {
		t.Fatalf("SET_REPORT answer: got type %s id %d err %d", eventType(ne.Uint32(got)), ne.Uint32(got[4:]), ne.Uint16(got[8:]))
	}
	// A short hidraw write is zero-padded; CLOSE and STOP change nothing.
	k.send(kernelEvent(evClose))
	k.send(outputEvent(outputReport, []byte{0, 0xff, 0xff, 0xff, 0xff, 0x86}))
	if got, want := readReport(t, d), padTo([]byte{0xff, 0xff, 0xff, 0xff, 0x86}, 64); !bytes.Equal(got, want) {
		t.Fatalf("short write: report = %x, want %x", got, want)
	}
}

func TestDeviceWriteReport(t *testing.T) {
	t.Parallel()
	d, k := newFakeDevice(t, Options{})
	if err := d.WriteReport(testReport(7)); err != nil {
		t.Fatal(err)
	}
	if got := k.recv(); !bytes.Equal(got, encodeInput2(testReport(7))) {
		t.Fatalf("INPUT2 = %x…", got[:80])
	}
	if err := d.WriteReport([]byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if got := k.recv(); !bytes.Equal(got, encodeInput2(padTo([]byte{1, 2, 3}, 64))) {
		t.Fatal("a short report must be zero-padded to 64 bytes")
	}
	if err := d.WriteReport(make([]byte, 65)); err == nil {
		t.Fatal("a 65-byte report must be refused")
	}
}

func TestDeviceReadHonoursContext(t *testing.T) {
	t.Parallel()
	d, k := newFakeDevice(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := d.ReadReport(ctx)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the read block (not needed for correctness)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadReport ignored a cancelled context")
	}
	tctx, tcancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer tcancel()
	if _, err := d.ReadReport(tctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	// A deadline left over from the cancelled calls must not break the
	// next read.
	k.send(hidrawWrite(testReport(3)))
	if got := readReport(t, d); !bytes.Equal(got, testReport(3)) {
		t.Fatalf("report = %x", got)
	}
	if _, err := d.ReadReport(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("already cancelled: err = %v", err)
	}
}

func TestDeviceClose(t *testing.T) {
	t.Parallel()
	d, k := newFakeDevice(t, Options{})
	// Let the device consume START: a socket closed with unread data
	// resets the connection, which the real uhid does not do.
	k.send(hidrawWrite(testReport(0)))
	readReport(t, d)
	errc := make(chan error, 1)
	go func() {
		_, err := d.ReadReport(context.Background())
		errc <- err
	}()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := k.recv(); !bytes.Equal(got, encodeDestroy()) {
		t.Fatalf("Close wrote %s, want DESTROY", eventType(ne.Uint32(got)))
	}
	if _, err := k.read(5 * time.Second); err == nil {
		t.Fatal("the device file is still open after Close")
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("ReadReport returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a blocked ReadReport")
	}
	if err := d.WriteReport(testReport(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteReport after Close: %v", err)
	}
	if err := d.Recreate(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Recreate after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestDeviceRecreate(t *testing.T) {
	t.Parallel()
	d, k := newFakeDevice(t, Options{Serial: "keep-me"})
	var inUnplugged error
	done := make(chan error, 1)
	go func() {
		done <- d.Recreate(func() { inUnplugged = d.WriteReport(testReport(0)) })
	}()
	if got := k.recv(); !bytes.Equal(got, encodeDestroy()) {
		t.Fatalf("Recreate wrote %s first, want DESTROY", eventType(ne.Uint32(got)))
	}
	got := k.recv()
	want, _ := Options{Serial: "keep-me"}.withDefaults().createEvent()
	if !bytes.Equal(got, want) {
		t.Fatalf("Recreate wrote %s second, want the same CREATE2", eventType(ne.Uint32(got)))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !errors.Is(inUnplugged, errUnplugged) {
		t.Fatalf("WriteReport while unplugged: %v, want errUnplugged", inUnplugged)
	}
	// Output of the old device, still queued, is dropped; so is anything
	// before the new device's START.
	k.send(hidrawWrite(testReport(1)))
	k.send(kernelEvent(evStop))
	k.send(kernelEvent(evClose))
	k.send(hidrawWrite(testReport(2)))
	k.send(kernelEvent(evStart))
	k.send(hidrawWrite(testReport(3)))
	if got := readReport(t, d); !bytes.Equal(got, testReport(3)) {
		t.Fatalf("first report after Recreate = %x, want the one after START", got[:8])
	}
	if err := d.WriteReport(testReport(4)); err != nil {
		t.Fatal(err)
	}
	if got := k.recv(); !bytes.Equal(got, encodeInput2(testReport(4))) {
		t.Fatal("WriteReport after Recreate")
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Open(Options{Path: filepath.Join(dir, "uhid")}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing device: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := Open(Options{Path: filepath.Join(dir, "uhid"), Name: string(make([]byte, 300))}); !errors.Is(err, errField) {
		t.Fatalf("long name: err = %v, want errField", err)
	}
	// A regular file is not pollable: Open must say so rather than hang
	// later in ReadReport.
	p := filepath.Join(dir, "regular")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: p}); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
}

// hidrawHost is the client side of the fake kernel as an hid.ReportDevice:
// WriteReport is a 65-byte hidraw write, ReadReport returns INPUT2 data.
// Like the kernel, it answers CREATE2 with START.
type hidrawHost struct {
	k       *kernel
	mu      sync.Mutex    // serialises kernel writes
	created chan struct{} // gets a value for each CREATE2 answered
}

func (h *hidrawHost) WriteReport(r []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.k.f.Write(hidrawWrite(r))
	return err
}

func (h *hidrawHost) ReadReport(ctx context.Context) ([]byte, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ev, err := h.k.read(50 * time.Millisecond)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return nil, err
		}
		switch eventType(ne.Uint32(ev)) {
		case evInput2:
			n := ne.Uint16(ev[offInputSize:])
			return append([]byte(nil), ev[offInputData:offInputData+int(n)]...), nil
		case evCreate2:
			h.mu.Lock()
			_, err := h.k.f.Write(kernelEvent(evStart))
			h.mu.Unlock()
			if err != nil {
				return nil, err
			}
			select {
			case h.created <- struct{}{}:
			default:
			}
		}
	}
}

// echo answers CBOR with status 0 and the request, and blocks on the
// request byte 0xFF until cancelled.
type echo struct{ blocked chan struct{} }

func (e echo) HandleCBOR(ctx context.Context, _ uint32, msg []byte, keepalive func(byte)) []byte {
	if len(msg) > 0 && msg[0] == 0xFF {
		keepalive(hid.StatusUPNeeded)
		close(e.blocked)
		<-ctx.Done()
		return []byte{0x2D} // KEEPALIVE_CANCEL
	}
	return append([]byte{0}, msg...)
}

// TestServerOverDevice runs hid.Server on the Device and hid.Client on the
// fake hidraw side: INIT, a multi-packet PING, CBOR, then a re-creation
// (a power cycle) while a request waits for the user.
func TestServerOverDevice(t *testing.T) {
	t.Parallel()
	d, k := newFakeDevice(t, Options{})
	h := echo{blocked: make(chan struct{})}
	srv := hid.NewServer(d, h, &hid.Options{Version: [3]byte{1, 2, 3}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()

	host := &hidrawHost{k: k, created: make(chan struct{}, 1)}
	c := hid.NewClient(host)
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if v := c.Info().Version; v != [3]byte{1, 2, 3} {
		t.Fatalf("version = %v", v)
	}
	long := bytes.Repeat([]byte("virtkey "), 100)
	if got, err := c.Ping(ctx, long); err != nil || !bytes.Equal(got, long) {
		t.Fatalf("ping: %v (echo ok: %v)", err, bytes.Equal(got, long))
	}
	if got, err := c.CBOR(ctx, []byte{0x04}); err != nil || !bytes.Equal(got, []byte{0, 4}) {
		t.Fatalf("cbor: %x, %v", got, err)
	}

	// A request waits for the user; the device is re-created meanwhile.
	reqCtx, reqCancel := context.WithTimeout(ctx, 10*time.Second)
	defer reqCancel()
	reqDone := make(chan struct{})
	go func() {
		c.CBOR(reqCtx, []byte{0xFF})
		close(reqDone)
	}()
	<-h.blocked
	if err := d.Recreate(srv.PowerCycle); err != nil {
		t.Fatal(err)
	}
	// The waiting client's reader sees the new device and "the kernel"
	// starts it.
	select {
	case <-host.created:
	case <-reqCtx.Done():
		t.Fatal("the re-created device was not seen")
	}
	reqCancel()
	<-reqDone

	// A new client on the new device works.
	c2 := hid.NewClient(host)
	if err := c2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := c2.Ping(ctx, []byte("after")); err != nil || string(got) != "after" {
		t.Fatalf("ping after re-creation: %q, %v", got, err)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestDeviceReadPending(t *testing.T) {
	t.Parallel()
	// What the kernel has queued is read without waiting, events before a
	// report handled on the way; nothing queued is no report, at once.
	d, k := newFakeDevice(t, Options{})
	if r, _, ok, err := d.ReadPending(); ok || err != nil {
		t.Fatalf("ReadPending with nothing queued = %x, %v, %v", r, ok, err)
	}
	k.send(kernelEvent(evOpen))
	k.send(hidrawWrite(testReport(7)))
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, _, ok, err := d.ReadPending()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if !bytes.Equal(r, testReport(7)) {
				t.Fatalf("report = %x, want %x", r, testReport(7))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the queued report was never read")
		}
		time.Sleep(time.Millisecond)
	}
	if r, _, ok, err := d.ReadPending(); ok || err != nil {
		t.Fatalf("ReadPending after the queue was read = %x, %v, %v", r, ok, err)
	}
}
