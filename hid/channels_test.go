package hid

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
)

// Two hosts of a multi-host transport.
var (
	hostA = netip.MustParseAddrPort("127.0.0.1:1111")
	hostB = netip.MustParseAddrPort("127.0.0.1:2222")
)

// hub is a SourceDevice joining several hosts to one Server, as UDP does:
// each host has an end (a ReportDevice for a Client) and gets only the
// reports the server sends to its address.
type hub struct {
	in chan sourced

	mu   sync.Mutex
	ends map[netip.AddrPort]*hubEnd
}

type sourced struct {
	r    []byte
	from netip.AddrPort
}

func newHub() *hub { return &hub{in: make(chan sourced, 1024), ends: map[netip.AddrPort]*hubEnd{}} }

func (h *hub) ReadReportFrom(ctx context.Context) ([]byte, netip.AddrPort, error) {
	select {
	case s := <-h.in:
		return s.r, s.from, nil
	case <-ctx.Done():
		return nil, netip.AddrPort{}, ctx.Err()
	}
}

func (h *hub) ReadReport(ctx context.Context) ([]byte, error) {
	r, _, err := h.ReadReportFrom(ctx)
	return r, err
}

func (h *hub) WriteReport([]byte) error { return errors.New("hub: a report without a destination") }

func (h *hub) WriteReportTo(r []byte, to netip.AddrPort) error {
	h.end(to).out <- append([]byte(nil), r...)
	return nil
}

// end returns host addr's end of the hub.
func (h *hub) end(addr netip.AddrPort) *hubEnd {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.ends[addr]
	if !ok {
		e = &hubEnd{h: h, addr: addr, out: make(chan []byte, 1024)}
		h.ends[addr] = e
	}
	return e
}

// hubEnd is one host's end: a ReportDevice.
type hubEnd struct {
	h    *hub
	addr netip.AddrPort
	out  chan []byte
}

func (e *hubEnd) WriteReport(r []byte) error {
	p := make([]byte, ReportSize)
	copy(p, r)
	e.h.in <- sourced{p, e.addr}
	return nil
}

func (e *hubEnd) ReadReport(ctx context.Context) ([]byte, error) {
	select {
	case r := <-e.out:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// hubHarness is a Server on a hub with a Client per host.
type hubHarness struct {
	t   *testing.T
	srv *Server
	hub *hub
	ctx context.Context
}

func serveHub(t *testing.T, h Handler, opts *Options) *hubHarness {
	t.Helper()
	hb := newHub()
	srv := runServer(t, NewServer(hb, h, opts))
	return &hubHarness{t: t, srv: srv, hub: hb, ctx: t.Context()}
}

// client returns a Client speaking from addr.
func (h *hubHarness) client(addr netip.AddrPort) *Client { return NewClient(h.hub.end(addr)) }

// expect reads host addr's next message on cid and checks it.
func (h *hubHarness) expect(addr netip.AddrPort, cid uint32, cmd byte, payload []byte) {
	h.t.Helper()
	m, err := h.client(addr).Receive(h.ctx, cid)
	if err != nil {
		h.t.Fatal(err)
	}
	if m.Cmd != cmd || string(m.Payload) != string(payload) {
		h.t.Fatalf("%v got %s % X on %08X, want %s % X", addr, cmdName(m.Cmd), trim(m.Payload), cid, cmdName(cmd), trim(payload))
	}
}

// quiet checks that host addr has been sent nothing more.
func (h *hubHarness) quiet(addr netip.AddrPort) {
	h.t.Helper()
	synctest.Wait()
	select {
	case r := <-h.hub.end(addr).out:
		h.t.Fatalf("%v got unexpected report % X", addr, trim(r))
	default:
	}
}

// send writes a whole message from addr.
func (h *hubHarness) send(addr netip.AddrPort, cid uint32, cmd byte, payload []byte) {
	h.t.Helper()
	if err := h.client(addr).Send(cid, cmd, payload); err != nil {
		h.t.Fatal(err)
	}
}

// TestServerInitAnswersTheRequester: two hosts allocate channels at once;
// each INIT answer goes to the host that asked, and the CIDs are random.
func TestServerInitAnswersTheRequester(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serveHub(t, &fakeHandler{}, nil)
		nonceA, nonceB := []byte("AAAAAAAA"), []byte("BBBBBBBB")
		h.send(hostA, BroadcastCID, CmdInit, nonceA)
		h.send(hostB, BroadcastCID, CmdInit, nonceB)
		var cids []uint32
		for _, c := range []struct {
			addr  netip.AddrPort
			nonce []byte
		}{{hostA, nonceA}, {hostB, nonceB}} {
			m, err := h.client(c.addr).Receive(h.ctx, BroadcastCID)
			if err != nil {
				t.Fatal(err)
			}
			if m.Cmd != CmdInit || string(m.Payload[:8]) != string(c.nonce) {
				t.Fatalf("%v got %s % X, want the answer to its own INIT", c.addr, cmdName(m.Cmd), m.Payload)
			}
			cids = append(cids, binary.BigEndian.Uint32(m.Payload[8:]))
			h.quiet(c.addr)
		}
		for range 3 {
			c := h.client(hostA)
			if err := c.Init(h.ctx); err != nil {
				t.Fatal(err)
			}
			cids = append(cids, c.CID())
		}
		for i := 1; i < len(cids); i++ {
			if d := cids[i] - cids[i-1]; d < 16 || d > 0xFFFFFFFF-16 {
				t.Fatalf("CIDs %08X look sequential: a neighbour's CID must not be guessable", cids)
			}
		}
	})
}

// TestServerChannelOwnership: a host cannot touch another host's channel —
// neither with CANCEL nor INIT nor any other report — and gets
// ERR_INVALID_CHANNEL; the owner's request runs on and its keepalives and
// answer reach the owner only. A CID used without allocation belongs to
// the first host that used it.
func TestServerChannelOwnership(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		started := make(chan context.Context, 1)
		release := make(chan struct{})
		h := serveHub(t, &fakeHandler{cbor: blocking(true, started, release)}, nil)
		victim := h.client(hostA)
		if err := victim.Init(h.ctx); err != nil {
			t.Fatal(err)
		}
		cid := victim.CID()
		h.send(hostA, cid, CmdCBOR, []byte{0x01})
		ctx := <-started

		for _, r := range [][]byte{
			Fragment(cid, CmdCancel, nil)[0],
			Fragment(cid, CmdInit, pattern(8))[0],
			Fragment(cid, CmdPing, []byte("x"))[0],
			Fragment(cid, CmdCBOR, []byte{0x04})[0],
			{byte(cid >> 24), byte(cid >> 16), byte(cid >> 8), byte(cid), 0x00}, // a continuation
		} {
			if err := h.hub.end(hostB).WriteReport(r); err != nil {
				t.Fatal(err)
			}
			h.expect(hostB, cid, CmdError, []byte{byte(ErrInvalidChannel)})
		}
		synctest.Wait()
		if ctx.Err() != nil {
			t.Fatal("another host's CANCEL or INIT aborted the request")
		}
		close(release)
		for {
			m, err := victim.Receive(h.ctx, cid)
			if err != nil {
				t.Fatal(err)
			}
			if m.Cmd == CmdKeepalive {
				continue
			}
			if m.Cmd != CmdCBOR || string(m.Payload) != "\x00" {
				t.Fatalf("victim got %s % X", cmdName(m.Cmd), m.Payload)
			}
			break
		}
		h.quiet(hostB)

		// A made-up CID is the first user's.
		h.send(hostB, cidB, CmdPing, []byte("b"))
		h.expect(hostB, cidB, CmdPing, []byte("b"))
		h.send(hostA, cidB, CmdPing, []byte("a"))
		h.expect(hostA, cidB, CmdError, []byte{byte(ErrInvalidChannel)})
		h.quiet(hostB)

		// A power cycle drops every channel: the CID is free again.
		h.srv.PowerCycle()
		h.send(hostA, cidB, CmdPing, []byte("a"))
		h.expect(hostA, cidB, CmdPing, []byte("a"))
	})
}

// TestServerChannelEviction: a host that makes up many CIDs fills the
// table; the channels idle longest go, one at a time, while a busy
// channel stays its owner's and the table never grows past its bound.
func TestServerChannelEviction(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const max = 8
		started := make(chan context.Context, 1)
		release := make(chan struct{})
		h := serveHub(t, &fakeHandler{cbor: blocking(false, started, release)}, &Options{MaxChannels: max})

		// A's idle channel, then A's busy one.
		const idle uint32 = 0x1D1E0000
		h.send(hostA, idle, CmdPing, []byte("i"))
		h.expect(hostA, idle, CmdPing, []byte("i"))
		busy := h.client(hostA)
		if err := busy.Init(h.ctx); err != nil {
			t.Fatal(err)
		}
		h.send(hostA, busy.CID(), CmdCBOR, []byte{0x01})
		ctx := <-started

		// B uses 100 made-up channels.
		var last uint32
		for i := range uint32(100) {
			last = 0xB0000000 + i
			h.send(hostB, last, CmdPing, []byte{byte(i)})
			h.expect(hostB, last, CmdError, []byte{byte(ErrChannelBusy)}) // A's request runs
		}
		if n := h.srv.chans.len(); n > max {
			t.Fatalf("%d channels, bound %d", n, max)
		}

		// A's busy channel is still A's: B cannot cancel it.
		h.send(hostB, busy.CID(), CmdCancel, nil)
		h.expect(hostB, busy.CID(), CmdError, []byte{byte(ErrInvalidChannel)})
		// B's newest channel is still B's.
		h.send(hostA, last, CmdCancel, nil)
		h.expect(hostA, last, CmdError, []byte{byte(ErrInvalidChannel)})
		synctest.Wait()
		if ctx.Err() != nil {
			t.Fatal("the flood aborted A's request")
		}
		close(release)
		h.expect(hostA, busy.CID(), CmdCBOR, []byte{0x00})

		// A's idle channel was evicted: the next user claims it.
		h.send(hostB, idle, CmdPing, []byte("b"))
		h.expect(hostB, idle, CmdPing, []byte("b"))
		h.quiet(hostA)
	})
}

// TestServerMsgTimeoutGoesToTheSender: the MSG_TIMEOUT of a partial
// message goes to the host that sent it.
func TestServerMsgTimeoutGoesToTheSender(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serveHub(t, &fakeHandler{}, nil)
		if err := h.hub.end(hostA).WriteReport(Fragment(cidA, CmdPing, pattern(100))[0]); err != nil {
			t.Fatal(err)
		}
		h.expect(hostA, cidA, CmdError, []byte{byte(ErrMsgTimeout)})
		h.quiet(hostB)
	})
}
