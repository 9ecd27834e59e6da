package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m, nil)) }

// newTestLogger logs everything to w.
func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// gate is a handler whose CBOR requests wait for release (answering
// 0x00) or their context (answering 0x2D); started gets each context.
type gate struct {
	started chan context.Context
	release chan struct{}
	cycles  chan struct{}
}

func newGate() *gate {
	return &gate{started: make(chan context.Context, 4), release: make(chan struct{}), cycles: make(chan struct{}, 4)}
}

func (g *gate) HandleCBOR(ctx context.Context, _ uint32, msg []byte, _ func(byte)) []byte {
	g.started <- ctx
	select {
	case <-g.release:
		return []byte{0x00, msg[0]}
	case <-ctx.Done():
		return []byte{0x2D}
	}
}

func (g *gate) PowerCycle() { g.cycles <- struct{}{} }

// serveWith runs a device with lc and h on an ephemeral loopback port.
func serveWith(t *testing.T, lc *ListenConfig, h hid.Handler) *Conn {
	t.Helper()
	conn, err := lc.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- conn.Serve(ctx, h, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		conn.Close()
	})
	return conn
}

// cidOf returns the CID of a report.
func cidOf(r []byte) uint32 { return binary.BigEndian.Uint32(r) }

// expectReport waits for the probe's next datagram and checks its CID
// and command.
func expectReport(t *testing.T, p *testkit.Probe, cid uint32, cmd byte) []byte {
	t.Helper()
	r, ok := p.Recv(limit)
	if !ok {
		t.Fatalf("the probe got nothing; want %02X on %08X", cmd, cid)
	}
	if cidOf(r) != cid || r[4] != cmd {
		t.Fatalf("the probe got % X; want %02X on %08X", r[:8], cmd, cid)
	}
	return r
}

// quietProbe checks that the probe gets nothing for a while.
func quietProbe(t *testing.T, p *testkit.Probe) {
	t.Helper()
	if r, ok := p.Recv(300 * time.Millisecond); ok {
		t.Fatalf("the probe got % X", r[:min(len(r), 8)])
	}
}

// TestUDPOtherUserDropped: by default the key serves only its own user
// and root. Datagrams of nobody are dropped with a log line: INIT gets no
// answer and the magic reboot no power cycle, while the owner is served.
func TestUDPOtherUserDropped(t *testing.T) {
	var logs testkit.SyncBuffer
	g := newGate()
	conn := serveWith(t, &ListenConfig{Logger: newTestLogger(&logs)}, g)
	probe := testkit.SendProbe(t, conn.Addr().String())

	probe.Send(hid.Fragment(hid.BroadcastCID, hid.CmdInit, []byte("nobody!!"))[0])
	probe.Send(hid.Fragment(0x01020304, hid.CmdPing, []byte("hello"))[0])
	probe.Send(MagicReboot())
	quietProbe(t, probe)
	select {
	case <-g.cycles:
		t.Fatal("nobody's magic reboot power-cycled the key")
	default:
	}

	// The owner is served, and its own reboot works.
	c, cc := client(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if got, err := c.Ping(ctx, []byte("owner")); err != nil || string(got) != "owner" {
		t.Fatalf("owner's Ping = %q, %v", got, err)
	}
	if err := cc.Reboot(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.cycles:
	case <-time.After(limit):
		t.Fatal("the owner's magic reboot was ignored")
	}

	lw := logs.String()
	if n := strings.Count(lw, "dropped a datagram"); n != 1 || !strings.Contains(lw, "uid=65534") {
		t.Fatalf("want one (rate-limited) log line naming uid 65534; log:\n%s", lw)
	}
}

// TestUDPAllowUIDAndChannelOwnership: --udp-allow-uid serves nobody too;
// nobody's INIT is answered at nobody's socket and its magic reboot
// honoured, but a CANCEL (or anything) on the owner's channel gets
// ERR_INVALID_CHANNEL and the owner's request runs on to its answer.
func TestUDPAllowUIDAndChannelOwnership(t *testing.T) {
	uid, _ := testkit.Nobody(t)
	g := newGate()
	conn := serveWith(t, &ListenConfig{AllowUIDs: []uint32{uid}}, g)
	probe := testkit.SendProbe(t, conn.Addr().String())

	probe.Send(hid.Fragment(hid.BroadcastCID, hid.CmdInit, []byte("nobody!!"))[0])
	r := expectReport(t, probe, hid.BroadcastCID, hid.CmdInit)
	if string(r[7:15]) != "nobody!!" {
		t.Fatalf("INIT answer % X", r[:24])
	}

	victim, _ := client(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	type result struct {
		resp []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := victim.CBOR(ctx, []byte{0x42})
		done <- result{resp, err}
	}()
	var reqCtx context.Context
	select {
	case reqCtx = <-g.started:
	case <-time.After(limit):
		t.Fatal("the victim's request did not start")
	}
	for _, cmd := range []byte{hid.CmdCancel, hid.CmdInit, hid.CmdCBOR} {
		probe.Send(hid.Fragment(victim.CID(), cmd, []byte("spoofed!"))[0])
		r := expectReport(t, probe, victim.CID(), hid.CmdError)
		if r[7] != byte(hid.ErrInvalidChannel) {
			t.Fatalf("spoofed %02X answered with error %02X", cmd, r[7])
		}
	}
	if reqCtx.Err() != nil {
		t.Fatal("nobody's spoofed report cancelled the victim's request")
	}
	close(g.release)
	res := <-done
	if res.err != nil || !bytes.Equal(res.resp, []byte{0x00, 0x42}) {
		t.Fatalf("victim's answer = % X, %v", res.resp, res.err)
	}
	quietProbe(t, probe) // no keepalive or answer of the victim's reached nobody

	probe.Send(MagicReboot())
	select {
	case <-g.cycles:
	case <-time.After(limit):
		t.Fatal("an allowed user's magic reboot was ignored")
	}
}

// TestUDPSpoofedCancel is the same attack from a second socket of the same
// user (which the uid check lets through): the old transport routed the
// victim's answers to whoever last sent on its channel, so the spoofer's
// CANCEL aborted the request and took the answer.
func TestUDPSpoofedCancel(t *testing.T) {
	g := newGate()
	conn := serveWith(t, &ListenConfig{}, g)
	victim, _ := client(t, conn)
	spoofer, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, conn.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer spoofer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	done := make(chan []byte, 1)
	go func() {
		resp, _ := victim.CBOR(ctx, []byte{0x42})
		done <- resp
	}()
	reqCtx := <-g.started
	if _, err := spoofer.Write(hid.Fragment(victim.CID(), hid.CmdCancel, nil)[0]); err != nil {
		t.Fatal(err)
	}
	spoofer.SetReadDeadline(time.Now().Add(limit))
	buf := make([]byte, 64)
	if n, err := spoofer.Read(buf); err != nil || n != 64 || cidOf(buf) != victim.CID() || buf[4] != hid.CmdError || buf[7] != byte(hid.ErrInvalidChannel) {
		t.Fatalf("spoofer got % X, %v; want ERR_INVALID_CHANNEL", buf[:8], err)
	}
	time.Sleep(50 * time.Millisecond) // give a wrongly honoured CANCEL time to land
	if reqCtx.Err() != nil {
		t.Fatal("the spoofed CANCEL cancelled the victim's request")
	}
	close(g.release)
	if resp := <-done; !bytes.Equal(resp, []byte{0x00, 0x42}) {
		t.Fatalf("victim's answer = % X", resp)
	}
}

// TestDialOwnedRefusesAnotherUsersSocket: while the key is down, nobody
// holds its port; the CLI's dial refuses to talk to it. The real key's
// socket is accepted.
func TestDialOwnedRefusesAnotherUsersSocket(t *testing.T) {
	addr := testkit.FreeUDPAddr(t)
	probe := testkit.ListenProbe(t, addr)
	_, err := DialOwned(addr, uint32(os.Getuid()))
	if !errors.Is(err, ErrForeignListener) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("DialOwned to nobody's socket = %v", err)
	}
	quietProbe(t, probe)

	conn := serveWith(t, &ListenConfig{}, newGate())
	cc, err := DialOwned(conn.Addr().String(), uint32(os.Getuid()))
	if err != nil {
		t.Fatalf("DialOwned to our own key = %v", err)
	}
	cc.Close()
}

func TestDialOwnedNoListener(t *testing.T) {
	if _, err := DialOwned(testkit.FreeUDPAddr(t), uint32(os.Getuid())); err == nil {
		t.Fatal("DialOwned to a port nobody holds succeeded")
	}
}

// TestListenRemote: a non-loopback address needs AllowRemote, which logs
// a warning.
func TestListenRemote(t *testing.T) {
	if _, err := Listen("0.0.0.0:0"); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("Listen(0.0.0.0:0) = %v, want ErrNotLoopback", err)
	}
	var logs testkit.SyncBuffer
	conn, err := (&ListenConfig{AllowRemote: true, Logger: newTestLogger(&logs)}).Listen("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !strings.Contains(logs.String(), "non-loopback") {
		t.Fatalf("no warning; log:\n%s", logs.String())
	}
	// A loopback client of the user is still served.
	h := &handler{cycles: make(chan struct{}, 4)}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- conn.Serve(ctx, h, nil) }()
	defer func() { cancel(); <-served }()
	port := conn.Addr().(*net.UDPAddr).Port
	cc, err := Dial(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := hid.NewClient(cc)
	ictx, icancel := context.WithTimeout(ctx, limit)
	defer icancel()
	if err := c.Init(ictx); err != nil {
		t.Fatalf("INIT over a wildcard listener: %v", err)
	}
}
