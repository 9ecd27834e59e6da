package udp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/virtkey/virtkey/hid"
)

// handler echoes CBOR requests and reports power cycles on a channel.
type handler struct {
	cycles chan struct{}
}

func (h *handler) HandleCBOR(ctx context.Context, cid uint32, msg []byte, keepalive func(byte)) []byte {
	if msg[0] == 0xFF { // wait to be cancelled
		<-ctx.Done()
		return []byte{0x2D}
	}
	if msg[0] == 0xFE { // a quick answer, but not instant
		time.Sleep(5 * time.Millisecond)
	}
	return append([]byte{0x00}, msg...)
}

func (h *handler) PowerCycle() { h.cycles <- struct{}{} }

// limit bounds every wait, so a broken test fails instead of hanging; the
// tests do not assert timings.
const limit = 10 * time.Second

// serve runs a device on an ephemeral loopback port.
func serve(t *testing.T) (*Conn, *handler) {
	t.Helper()
	h := &handler{cycles: make(chan struct{}, 4)}
	return serveWith(t, &ListenConfig{}, h), h
}

// client dials the device and allocates a channel.
func client(t *testing.T, conn *Conn) (*hid.Client, *ClientConn) {
	t.Helper()
	cc, err := Dial(conn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c := hid.NewClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return c, cc
}

func TestMagicReboot(t *testing.T) {
	want, _ := hex.DecodeString("ac1052ca95e569de69e02ebff333485f13f9b2da34c5a8a340526697a9ab2e0b394d8d04973c134005be1a0140bff6045bb26eb77a73eaa47813f6b49a7250dc")
	if !bytes.Equal(MagicReboot(), want) {
		t.Fatal("magic reboot differs from the SoloKeys constant")
	}
}

func TestUDP(t *testing.T) {
	conn, h := serve(t)
	c1, cc1 := client(t, conn)
	c2, _ := client(t, conn)
	if c1.CID() == c2.CID() {
		t.Fatal("two clients got the same CID")
	}
	if c1.Info().Capabilities&hid.CapCBOR == 0 {
		t.Fatalf("capabilities %02X", c1.Info().Capabilities)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()

	// Each client gets its own answers at its own address.
	for i, c := range []*hid.Client{c1, c2, c1} {
		data := bytes.Repeat([]byte{byte(i + 1)}, 1000)
		got, err := c.Ping(ctx, data)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("client %d: Ping = %d bytes, %v", i, len(got), err)
		}
	}
	resp, err := c2.CBOR(ctx, []byte{0x04})
	if err != nil || !bytes.Equal(resp, []byte{0x00, 0x04}) {
		t.Fatalf("CBOR = % X, %v", resp, err)
	}

	// Datagrams that are not one report are ignored.
	raw, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, conn.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, n := range []int{0, 10, 63, 65, 200} {
		b := make([]byte, n)
		if n > 5 {
			copy(b, hid.Fragment(c1.CID(), hid.CmdPing, []byte{0xEE})[0])
		}
		if _, err := raw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c1.Ping(ctx, []byte("after junk")); err != nil || string(got) != "after junk" {
		t.Fatalf("Ping after junk = %q, %v", got, err)
	}

	// The magic reboot power-cycles the server and the handler.
	if err := cc1.Reboot(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.cycles:
	case <-time.After(limit):
		t.Fatal("no power cycle after the magic reboot")
	}
	if got, err := c1.Ping(ctx, []byte("alive")); err != nil || string(got) != "alive" {
		t.Fatalf("Ping after reboot = %q, %v", got, err)
	}
}

func TestUDPRebootCancelsRequest(t *testing.T) {
	conn, h := serve(t)
	c, cc := client(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()

	// Wait for the request to be running: its first keepalive.
	running := make(chan struct{}, 1)
	c.OnKeepalive = func(byte) {
		select {
		case running <- struct{}{}:
		default:
		}
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.CBOR(ctx, []byte{0xFF})
		errc <- err
	}()
	select {
	case <-running:
	case <-time.After(limit):
		t.Fatal("no keepalive")
	}
	if err := cc.Reboot(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.cycles:
	case <-time.After(limit):
		t.Fatal("no power cycle")
	}
	// The request's answer was dropped with the power cycle, so the client
	// waits until its context ends.
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("CBOR = %v", err)
	}
}

func TestUDPRebootWhileHandlerAnswers(t *testing.T) {
	// A power cycle that arrives while a quick request is being answered on
	// the reading goroutine drops the answer, and the request sent after
	// it is answered.
	conn, h := serve(t)
	c, cc := client(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := c.Send(c.CID(), hid.CmdCBOR, []byte{0xFE}); err != nil {
		t.Fatal(err)
	}
	if err := cc.Reboot(); err != nil {
		t.Fatal(err)
	}
	got, err := c.CBOR(ctx, []byte{0x01})
	if err != nil {
		t.Fatalf("the request after the power cycle: %v", err)
	}
	if !bytes.Equal(got, []byte{0x00, 0x01}) {
		t.Fatalf("answer % X, want 00 01 (the answer of the request before the power cycle is dropped)", got)
	}
	select {
	case <-h.cycles:
	case <-time.After(limit):
		t.Fatal("no power cycle")
	}
}

// TestReadReportContexts switches contexts between reads: a read after its
// context ended fails at once, and a read with another context is not hurt
// by the deadline the ended one left.
func TestReadReportContexts(t *testing.T) {
	conn, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cc, err := Dial(conn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ping := func(i byte) {
		t.Helper()
		if err := cc.WriteReport([]byte{1, 2, 3, 4, hid.CmdPing, 0, 1, i}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(ctx context.Context, i byte) {
		t.Helper()
		r, err := conn.ReadReport(ctx)
		if err != nil || r[7] != i {
			t.Fatalf("ReadReport = % X, %v; want report %d", r, err, i)
		}
	}
	limited := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		t.Cleanup(cancel)
		return ctx
	}

	ctx1, cancel1 := context.WithCancel(limited())
	ping(1)
	read(ctx1, 1)
	ping(2)
	read(ctx1, 2) // the same context again
	cancel1()
	ping(3)
	if _, err := conn.ReadReport(ctx1); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadReport after cancel = %v", err)
	}
	read(context.Background(), 3) // no Done channel at all
	ctx4, cancel4 := context.WithCancel(limited())
	ping(4)
	read(ctx4, 4)
	type key struct{}
	ping(5)
	read(context.WithValue(ctx4, key{}, 5), 5) // shares ctx4's Done
	cancel4()
	if _, err := conn.ReadReport(context.WithValue(ctx4, key{}, 6)); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadReport after cancel = %v", err)
	}
}

func TestUDPWriteWithoutPeer(t *testing.T) {
	conn, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteReport(make([]byte, hid.ReportSize)); err == nil {
		t.Fatal("write with no known client succeeded")
	}
	if err := conn.WriteReport(make([]byte, hid.ReportSize+1)); err == nil {
		t.Fatal("over-long report accepted")
	}
}

func TestReadReportHonoursContext(t *testing.T) {
	conn, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := conn.ReadReport(ctx)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ReadReport = %v", err)
		}
	case <-time.After(limit):
		t.Fatal("ReadReport ignored its context")
	}

	// A later read with a live context is not hurt by the old deadline.
	cc, err := Dial(conn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.WriteReport([]byte{1, 2, 3, 4, hid.CmdPing}); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), limit)
	defer cancel2()
	r, err := conn.ReadReport(ctx2)
	if err != nil || len(r) != hid.ReportSize || r[4] != hid.CmdPing {
		t.Fatalf("ReadReport = % X, %v", r, err)
	}
}
