package hid

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeHandler answers CBOR with 0x00 ‖ request unless cbor is set, and
// counts power cycles and winks.
type fakeHandler struct {
	cbor        func(ctx context.Context, cid uint32, msg []byte, keepalive func(byte)) []byte
	powerCycles atomic.Int32
	winks       atomic.Int32
}

func (f *fakeHandler) HandleCBOR(ctx context.Context, cid uint32, msg []byte, keepalive func(byte)) []byte {
	if f.cbor != nil {
		return f.cbor(ctx, cid, msg, keepalive)
	}
	return append([]byte{0x00}, msg...)
}

func (f *fakeHandler) PowerCycle() { f.powerCycles.Add(1) }
func (f *fakeHandler) Wink()       { f.winks.Add(1) }

// u2fHandler also speaks CTAPHID_MSG: it answers 0x90 0x00 ‖ request.
type u2fHandler struct{ fakeHandler }

func (u *u2fHandler) HandleMSG(ctx context.Context, cid uint32, apdu []byte, keepalive func(byte)) []byte {
	return append(append([]byte{}, apdu...), 0x90, 0x00)
}

// blocking returns a CBOR func that reports UPNEEDED if up is set, then
// waits for release (answering 0x00) or for its context (answering 0x2D,
// KEEPALIVE_CANCEL). started receives the context once it runs.
func blocking(up bool, started chan<- context.Context, release <-chan struct{}) func(context.Context, uint32, []byte, func(byte)) []byte {
	return func(ctx context.Context, _ uint32, _ []byte, keepalive func(byte)) []byte {
		if up {
			keepalive(StatusUPNeeded)
		}
		if started != nil {
			started <- ctx
		}
		select {
		case <-release:
			return []byte{0x00}
		case <-ctx.Done():
			return []byte{0x2D}
		}
	}
}

// harness is a Server on one end of a Pipe and a Client on the other.
type harness struct {
	t    *testing.T
	srv  *Server
	host *PipeEnd
	c    *Client
	ctx  context.Context
}

// serve starts a Server for h; Run must have returned nil by cleanup.
// Call it inside a synctest bubble.
func serve(t *testing.T, h Handler, opts *Options) *harness {
	t.Helper()
	dev, host := Pipe()
	t.Cleanup(func() { host.Close() }) // after Run has returned
	srv := runServer(t, NewServer(dev, h, opts))
	return &harness{t: t, srv: srv, host: host, c: NewClient(host), ctx: t.Context()}
}

// runServer runs srv until the test ends; Run must then return nil.
func runServer(t *testing.T, srv *Server) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv
}

// write sends raw reports.
func (h *harness) write(reports ...[]byte) {
	h.t.Helper()
	for _, r := range reports {
		if err := h.host.WriteReport(r); err != nil {
			h.t.Fatal(err)
		}
	}
}

// send writes a whole message.
func (h *harness) send(cid uint32, cmd byte, payload []byte) {
	h.t.Helper()
	if err := h.c.Send(cid, cmd, payload); err != nil {
		h.t.Fatal(err)
	}
}

// recv reads the next message on cid.
func (h *harness) recv(cid uint32) *Message {
	h.t.Helper()
	m, err := h.c.Receive(h.ctx, cid)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

// expect reads the next message on cid and checks its command and payload.
func (h *harness) expect(cid uint32, cmd byte, payload []byte) {
	h.t.Helper()
	m := h.recv(cid)
	if m.Cmd != cmd || !bytes.Equal(m.Payload, payload) {
		h.t.Fatalf("got %s % X on %08X, want %s % X", cmdName(m.Cmd), trim(m.Payload), cid, cmdName(cmd), trim(payload))
	}
}

// expectError reads the next message on cid and checks it is ERROR code.
func (h *harness) expectError(cid uint32, code ErrorCode) {
	h.t.Helper()
	h.expect(cid, CmdError, []byte{byte(code)})
}

// handOver lets a handler that blocks hand reading over to another
// goroutine (after readerHold): reports sent meanwhile are read.
func (h *harness) handOver() {
	time.Sleep(readerHold)
	synctest.Wait()
}

// quiet checks that the server has nothing more to say right now.
func (h *harness) quiet() {
	h.t.Helper()
	synctest.Wait()
	select {
	case r := <-h.host.in:
		h.t.Fatalf("unexpected report % X", trim(r))
	default:
	}
}

func trim(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

// initCID allocates a channel through the client.
func (h *harness) initCID() uint32 {
	h.t.Helper()
	c := NewClient(h.host)
	if err := c.Init(h.ctx); err != nil {
		h.t.Fatal(err)
	}
	return c.CID()
}

const (
	cidA uint32 = 0x0A0A0A0A
	cidB uint32 = 0x0B0B0B0B
)

func TestServerInit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		h    Handler
		caps byte
	}{
		{"CBOR only", &fakeHandler{}, CapWink | CapLock | CapCBOR | CapNMSG},
		{"with MSG", &u2fHandler{}, CapWink | CapLock | CapCBOR},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				h := serve(t, tt.h, &Options{Version: [3]byte{1, 2, 3}})
				nonce := pattern(8)
				seen := map[uint32]bool{}
				for range 3 {
					h.send(BroadcastCID, CmdInit, nonce)
					m := h.recv(BroadcastCID)
					if m.Cmd != CmdInit || len(m.Payload) != 17 {
						t.Fatalf("got %s with %d bytes", cmdName(m.Cmd), len(m.Payload))
					}
					p := m.Payload
					cid := binary.BigEndian.Uint32(p[8:])
					if !bytes.Equal(p[:8], nonce) || p[12] != 2 || !bytes.Equal(p[13:16], []byte{1, 2, 3}) || p[16] != tt.caps {
						t.Fatalf("INIT response % X", p)
					}
					if cid == 0 || cid == BroadcastCID || seen[cid] {
						t.Fatalf("bad or repeated CID %08X", cid)
					}
					seen[cid] = true
				}
				if h.srv.Capabilities() != tt.caps {
					t.Fatalf("Capabilities() = %02X", h.srv.Capabilities())
				}
			})
		})
	}
}

func TestServerInitOnChannelEchoesCID(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{}, nil)
		h.send(cidA, CmdInit, pattern(8))
		m := h.recv(cidA)
		if m.Cmd != CmdInit || binary.BigEndian.Uint32(m.Payload[8:]) != cidA {
			t.Fatalf("got %s % X", cmdName(m.Cmd), m.Payload)
		}
	})
}

func TestServerMadeUpCID(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{}, nil)
		h.send(0x01020304, CmdPing, []byte("hi"))
		h.expect(0x01020304, CmdPing, []byte("hi"))
		h.send(0x01020304, CmdCBOR, []byte{0x04})
		h.expect(0x01020304, CmdCBOR, []byte{0x00, 0x04})
	})
}

func TestServerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		h       Handler
		reports [][]byte
		cid     uint32
		want    ErrorCode
	}{
		{"CID 0", nil, Fragment(0, CmdPing, []byte{1}), 0, ErrInvalidChannel},
		{"CID 0 INIT", nil, Fragment(0, CmdInit, pattern(8)), 0, ErrInvalidChannel},
		{"PING on broadcast", nil, Fragment(BroadcastCID, CmdPing, []byte{1}), BroadcastCID, ErrInvalidChannel},
		{"CBOR on broadcast", nil, Fragment(BroadcastCID, CmdCBOR, []byte{4}), BroadcastCID, ErrInvalidChannel},
		{"INIT short nonce", nil, Fragment(BroadcastCID, CmdInit, pattern(7)), BroadcastCID, ErrInvalidLen},
		{"INIT long nonce", nil, Fragment(cidA, CmdInit, pattern(9)), cidA, ErrInvalidLen},
		{"unknown command", nil, Fragment(cidA, 0xC0, nil), cidA, ErrInvalidCmd},
		{"KEEPALIVE from host", nil, Fragment(cidA, CmdKeepalive, []byte{1}), cidA, ErrInvalidCmd},
		{"ERROR from host", nil, Fragment(cidA, CmdError, []byte{1}), cidA, ErrInvalidCmd},
		{"empty CBOR", nil, Fragment(cidA, CmdCBOR, nil), cidA, ErrInvalidLen},
		{"MSG without MsgHandler", nil, Fragment(cidA, CmdMsg, []byte{0, 3, 0, 0}), cidA, ErrInvalidCmd},
		{"empty MSG", &u2fHandler{}, Fragment(cidA, CmdMsg, nil), cidA, ErrInvalidLen},
		{"BCNT over 7609", nil, [][]byte{initPkt(cidA, CmdCBOR, MaxMessageSize+1, nil)}, cidA, ErrInvalidLen},
		{"BCNT 0xFFFF", nil, [][]byte{initPkt(cidA, CmdPing, 0xFFFF, nil)}, cidA, ErrInvalidLen},
		{"LOCK without seconds", nil, Fragment(cidA, CmdLock, nil), cidA, ErrInvalidLen},
		{"LOCK too long", nil, Fragment(cidA, CmdLock, []byte{11}), cidA, ErrInvalidPar},
		{"skipped SEQ", nil, [][]byte{initPkt(cidA, CmdPing, 200, nil), contPkt(cidA, 1, nil)}, cidA, ErrInvalidSeq},
		{"new init packet mid-message", nil, [][]byte{initPkt(cidA, CmdPing, 200, nil), initPkt(cidA, CmdPing, 1, nil)}, cidA, ErrInvalidSeq},
		{"CANCEL mid-message", nil, [][]byte{initPkt(cidA, CmdPing, 200, nil), initPkt(cidA, CmdCancel, 0, nil)}, cidA, ErrInvalidSeq},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				hd := tt.h
				if hd == nil {
					hd = &fakeHandler{}
				}
				h := serve(t, hd, nil)
				start := time.Now()
				h.write(tt.reports...)
				h.expectError(tt.cid, tt.want)
				if d := time.Since(start); d != 0 {
					t.Errorf("error after %v, want at once", d)
				}
				h.quiet()
				// The device still works, on the same channel if it is valid.
				cid := tt.cid
				if cid == 0 || cid == BroadcastCID {
					cid = cidB
				}
				h.send(cid, CmdPing, []byte("ok"))
				h.expect(cid, CmdPing, []byte("ok"))
			})
		})
	}
}

func TestServerPing(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 57, 58, 1000, MaxMessageSize} {
		synctest.Test(t, func(t *testing.T) {
			h := serve(t, &fakeHandler{}, nil)
			h.c.SetCID(cidA)
			data := pattern(n)
			start := time.Now()
			got, err := h.c.Ping(h.ctx, data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%d-byte PING: echo differs", n)
			}
			if d := time.Since(start); d != 0 {
				t.Fatalf("%d-byte PING took %v", n, d)
			}
		})
	}
}

func TestServerChannelBusyWhileReceiving(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{}, nil)
		msg := pattern(200)
		reps := Fragment(cidA, CmdPing, msg)
		h.write(reps[0])

		start := time.Now()
		h.send(cidB, CmdPing, []byte{1})
		h.expectError(cidB, ErrChannelBusy)
		if d := time.Since(start); d >= 100*time.Millisecond {
			t.Fatalf("CHANNEL_BUSY after %v", d)
		}
		h.send(cidB, CmdInit, pattern(8)) // INIT on another channel is answered
		if m := h.recv(cidB); m.Cmd != CmdInit {
			t.Fatalf("got %s, want INIT", cmdName(m.Cmd))
		}
		h.write(contPkt(cidB, 0, pattern(59))) // ignored
		h.quiet()

		h.write(reps[1:]...)
		h.expect(cidA, CmdPing, msg)
	})
}

func TestServerChannelBusyWhileProcessing(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := serve(t, &fakeHandler{cbor: blocking(false, nil, release)}, nil)
		h.send(cidA, CmdCBOR, []byte{0x01})
		synctest.Wait()

		start := time.Now()
		h.send(cidB, CmdCBOR, []byte{0x01})
		h.expectError(cidB, ErrChannelBusy) // read once another goroutine took over from the handler
		h.send(cidB, CmdPing, []byte{1})
		h.expectError(cidB, ErrChannelBusy)
		h.send(cidA, CmdPing, []byte{1}) // the busy channel itself
		h.expectError(cidA, ErrChannelBusy)
		if cid := h.initCID(); cid == cidA { // broadcast INIT is answered
			t.Fatalf("INIT allocated the busy CID")
		}
		h.send(cidB, CmdCancel, nil) // another channel's CANCEL: ignored
		h.write(contPkt(cidB, 0, nil))
		if d := time.Since(start); d != readerHold {
			t.Fatalf("answers took %v, want %v (until a reader takes over from the handler)", d, readerHold)
		}
		h.quiet()

		close(release)
		h.expect(cidA, CmdCBOR, []byte{0x00})
	})
}

func TestServerMsgTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{}, nil)
		reps := Fragment(cidA, CmdPing, pattern(200))
		start := time.Now()
		h.write(reps[0])
		time.Sleep(300 * time.Millisecond) // fake time: the clock restarts with each packet
		h.write(reps[1])
		h.expectError(cidA, ErrMsgTimeout)
		if d := time.Since(start); d != 800*time.Millisecond {
			t.Fatalf("MSG_TIMEOUT after %v, want 500ms after the last packet", d)
		}
		h.write(reps[2:]...) // late continuation packets are ignored
		h.quiet()
		h.send(cidB, CmdPing, []byte("ok")) // and the device is free again
		h.expect(cidB, CmdPing, []byte("ok"))
	})
}

func TestServerMsgTimeoutAfterEarlierMessages(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// Whole messages before the partial one must not shorten or
		// lengthen its timeout.
		h := serve(t, &fakeHandler{}, nil)
		start := time.Now()
		for i := range 3 {
			msg := pattern(100 + i)
			h.send(cidA, CmdPing, msg)
			h.expect(cidA, CmdPing, msg)
			time.Sleep(150 * time.Millisecond)
		}
		reps := Fragment(cidB, CmdPing, pattern(200))
		h.write(reps[0])
		h.expectError(cidB, ErrMsgTimeout)
		if d := time.Since(start); d != 950*time.Millisecond {
			t.Fatalf("MSG_TIMEOUT after %v, want 500ms after the packet at 450ms", d)
		}
		h.quiet()
	})
}

func TestServerMsgTimeoutOption(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{}, &Options{MsgTimeout: time.Second})
		start := time.Now()
		h.write(initPkt(cidA, CmdCBOR, 100, nil))
		h.expectError(cidA, ErrMsgTimeout)
		if d := time.Since(start); d != time.Second {
			t.Fatalf("MSG_TIMEOUT after %v", d)
		}
	})
}

func TestServerKeepalive(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		up     bool
		status byte
	}{
		{"processing", false, StatusProcessing},
		{"upneeded", true, StatusUPNeeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				h := serve(t, &fakeHandler{cbor: blocking(tt.up, nil, release)}, nil)
				start := time.Now()
				h.send(cidA, CmdCBOR, []byte{0x01})
				for i := 1; i <= 5; i++ {
					h.expect(cidA, CmdKeepalive, []byte{tt.status})
					if d := time.Since(start); d != time.Duration(i)*100*time.Millisecond {
						t.Fatalf("keepalive %d after %v", i, d)
					}
				}
				// Other channels are still served while the request runs.
				h.send(cidB, CmdInit, pattern(8))
				if m := h.recv(cidB); m.Cmd != CmdInit {
					t.Fatalf("got %s", cmdName(m.Cmd))
				}
				close(release)
				h.expect(cidA, CmdCBOR, []byte{0x00})
				time.Sleep(time.Second)
				h.quiet() // no keepalive after the answer
			})
		})
	}
}

func TestServerKeepaliveAfterEarlierRequests(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// Quick requests before a slow one must not shift its keepalives
		// off its own 100 ms grid.
		release := make(chan struct{})
		var calls atomic.Int32
		slow := blocking(false, nil, release)
		h := serve(t, &fakeHandler{cbor: func(ctx context.Context, cid uint32, msg []byte, keepalive func(byte)) []byte {
			if calls.Add(1) <= 3 {
				return []byte{0x00}
			}
			return slow(ctx, cid, msg, keepalive)
		}}, nil)
		for range 3 {
			h.send(cidA, CmdCBOR, []byte{0x04})
			h.expect(cidA, CmdCBOR, []byte{0x00})
			time.Sleep(70 * time.Millisecond)
		}
		start := time.Now()
		h.send(cidB, CmdCBOR, []byte{0x01})
		for i := 1; i <= 3; i++ {
			h.expect(cidB, CmdKeepalive, []byte{StatusProcessing})
			if d := time.Since(start); d != time.Duration(i)*100*time.Millisecond {
				t.Fatalf("keepalive %d after %v", i, d)
			}
		}
		close(release)
		h.expect(cidB, CmdCBOR, []byte{0x00})
		time.Sleep(time.Second)
		h.quiet()
	})
}

func TestServerKeepaliveStatusChanges(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{cbor: func(ctx context.Context, _ uint32, _ []byte, keepalive func(byte)) []byte {
			time.Sleep(250 * time.Millisecond)
			keepalive(StatusUPNeeded)
			time.Sleep(200 * time.Millisecond)
			keepalive(StatusProcessing)
			time.Sleep(200 * time.Millisecond)
			return []byte{0x00}
		}}, nil)
		h.send(cidA, CmdCBOR, []byte{0x01})
		want := []byte{1, 1, 2, 2, 1, 1}
		for _, st := range want {
			h.expect(cidA, CmdKeepalive, []byte{st})
		}
		h.expect(cidA, CmdCBOR, []byte{0x00})
	})
}

func TestServerCancel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		started := make(chan context.Context, 1)
		h := serve(t, &fakeHandler{cbor: blocking(true, started, nil)}, nil)
		h.send(cidA, CmdCBOR, []byte{0x02})
		ctx := <-started

		h.send(cidB, CmdCancel, nil) // not the busy channel: no effect
		h.handOver()
		if ctx.Err() != nil {
			t.Fatal("CANCEL on another channel cancelled the request")
		}
		h.send(cidA, CmdCancel, nil)
		synctest.Wait()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatal("CANCEL did not cancel the handler's context")
		}
		h.expect(cidA, CmdCBOR, []byte{0x2D}) // the handler's answer, nothing else
		h.quiet()

		h.send(cidA, CmdCancel, nil) // CANCEL with nothing in flight: ignored
		h.quiet()
	})
}

func TestServerInitResyncMidTransaction(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		started := make(chan context.Context, 1)
		release := make(chan struct{})
		h := serve(t, &fakeHandler{cbor: blocking(false, started, release)}, nil)
		h.send(cidA, CmdCBOR, []byte{0x02})
		ctx := <-started

		h.send(cidA, CmdInit, pattern(8))
		m := h.recv(cidA)
		if m.Cmd != CmdInit || binary.BigEndian.Uint32(m.Payload[8:]) != cidA {
			t.Fatalf("got %s % X", cmdName(m.Cmd), m.Payload)
		}
		synctest.Wait()
		if ctx.Err() == nil {
			t.Fatal("INIT did not cancel the request in flight")
		}
		h.quiet() // the aborted request's answer is dropped

		close(release)
		h.send(cidA, CmdCBOR, []byte{0x02})
		h.expect(cidA, CmdCBOR, []byte{0x00})
	})
}

func TestServerRequestWhileAbortedHandlerReturns(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// The first request's handler is slow to return once cancelled;
		// the requests after the resync must not wait for it, and each
		// gets its own keepalives and answer.
		started := make(chan context.Context, 1)
		unstick := make(chan struct{})
		var calls atomic.Int32
		h := serve(t, &fakeHandler{cbor: func(ctx context.Context, _ uint32, msg []byte, keepalive func(byte)) []byte {
			switch calls.Add(1) {
			case 1:
				started <- ctx
				<-ctx.Done()
				<-unstick
				return []byte{0x2D}
			case 2:
				time.Sleep(250 * time.Millisecond)
			}
			return append([]byte{0x00}, msg...)
		}}, nil)
		h.send(cidA, CmdCBOR, []byte{0x01})
		ctx := <-started
		h.send(cidA, CmdInit, pattern(8))
		if m := h.recv(cidA); m.Cmd != CmdInit {
			t.Fatalf("got %s", cmdName(m.Cmd))
		}
		synctest.Wait()
		if ctx.Err() == nil {
			t.Fatal("INIT did not cancel the request in flight")
		}

		start := time.Now()
		h.send(cidB, CmdCBOR, []byte{0x02})
		h.expect(cidB, CmdKeepalive, []byte{StatusProcessing})
		h.expect(cidB, CmdKeepalive, []byte{StatusProcessing})
		h.expect(cidB, CmdCBOR, []byte{0x00, 0x02})
		if d := time.Since(start); d != 250*time.Millisecond {
			t.Fatalf("answer after %v", d)
		}
		close(unstick)
		h.quiet() // the aborted request's answer is dropped
		for i := byte(3); i <= 5; i++ {
			h.send(cidA, CmdCBOR, []byte{i})
			h.expect(cidA, CmdCBOR, []byte{0x00, i})
		}
		time.Sleep(time.Second)
		h.quiet() // no keepalive outlives its request
	})
}

func TestServerInitResyncMidMessage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{}, nil)
		reps := Fragment(cidA, CmdPing, pattern(200))
		h.write(reps[0])
		h.send(cidA, CmdInit, pattern(8))
		if m := h.recv(cidA); m.Cmd != CmdInit {
			t.Fatalf("got %s", cmdName(m.Cmd))
		}
		h.write(reps[1:]...) // the partial message was dropped
		time.Sleep(time.Second)
		h.quiet() // ... and so was its timeout
		h.send(cidB, CmdPing, []byte("ok"))
		h.expect(cidB, CmdPing, []byte("ok"))
	})
}

func TestServerWink(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		fh := &fakeHandler{}
		h := serve(t, fh, nil)
		h.c.SetCID(cidA)
		if err := h.c.Wink(h.ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if fh.winks.Load() != 1 {
			t.Fatalf("Wink called %d times", fh.winks.Load())
		}
	})
}

func TestServerLock(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{}, nil)
		h.c.SetCID(cidA)
		if err := h.c.Lock(h.ctx, 5); err != nil {
			t.Fatal(err)
		}
		h.send(cidB, CmdPing, []byte{1})
		h.expectError(cidB, ErrLockRequired)
		h.send(BroadcastCID, CmdInit, pattern(8))
		h.expectError(BroadcastCID, ErrLockRequired)
		h.send(cidB, CmdCancel, nil) // never answered
		h.quiet()
		if _, err := h.c.Ping(h.ctx, []byte{1}); err != nil {
			t.Fatalf("lock holder: %v", err)
		}

		time.Sleep(5 * time.Second) // the lock expires
		h.send(cidB, CmdPing, []byte{2})
		h.expect(cidB, CmdPing, []byte{2})

		if err := h.c.Lock(h.ctx, 10); err != nil {
			t.Fatal(err)
		}
		if err := h.c.Lock(h.ctx, 0); err != nil { // explicit release
			t.Fatal(err)
		}
		h.send(cidB, CmdPing, []byte{3})
		h.expect(cidB, CmdPing, []byte{3})
	})
}

func TestServerMSG(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &u2fHandler{}, nil)
		if err := h.c.Init(h.ctx); err != nil {
			t.Fatal(err)
		}
		if h.c.Info().Capabilities&CapNMSG != 0 {
			t.Fatal("NMSG set with a MsgHandler")
		}
		resp, err := h.c.MSG(h.ctx, []byte{0x00, 0x03, 0x00, 0x00})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp, []byte{0x00, 0x03, 0x00, 0x00, 0x90, 0x00}) {
			t.Fatalf("MSG answer % X", resp)
		}
	})
}

func TestServerBadHandlerAnswer(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, MaxMessageSize + 1} {
		synctest.Test(t, func(t *testing.T) {
			h := serve(t, &fakeHandler{cbor: func(context.Context, uint32, []byte, func(byte)) []byte {
				return make([]byte, n)
			}}, nil)
			h.send(cidA, CmdCBOR, []byte{0x04})
			h.expectError(cidA, ErrOther)
		})
	}
}

func TestServerTransactionTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{cbor: blocking(false, nil, nil)}, &Options{TransactionTimeout: 3 * time.Second, KeepaliveInterval: time.Second})
		start := time.Now()
		h.send(cidA, CmdCBOR, []byte{0x01})
		for range 2 {
			h.expect(cidA, CmdKeepalive, []byte{StatusProcessing})
		}
		// The handler sees its deadline; the third keepalive and the
		// answer race at 3s, so accept either order.
		for {
			m := h.recv(cidA)
			if m.Cmd == CmdCBOR {
				break
			}
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("answer after %v", d)
		}
	})
}

func TestServerPowerCycle(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		started := make(chan context.Context, 1)
		fh := &fakeHandler{cbor: blocking(true, started, nil)}
		h := serve(t, fh, nil)

		// A lock and a request in flight.
		h.c.SetCID(cidA)
		if err := h.c.Lock(h.ctx, 10); err != nil {
			t.Fatal(err)
		}
		h.send(cidA, CmdCBOR, []byte{0x07})
		ctx := <-started

		h.srv.PowerCycle()
		if ctx.Err() == nil {
			t.Fatal("power cycle did not cancel the request")
		}
		if fh.powerCycles.Load() != 1 {
			t.Fatalf("handler PowerCycle called %d times", fh.powerCycles.Load())
		}
		h.quiet() // the cancelled request's answer is dropped

		// The lock is gone: another channel is served.
		h.send(cidB, CmdPing, []byte{1})
		h.expect(cidB, CmdPing, []byte{1})

		// A partial message is dropped too.
		reps := Fragment(cidB, CmdPing, pattern(100))
		h.write(reps[0])
		synctest.Wait()
		h.srv.PowerCycle()
		h.write(reps[1])
		time.Sleep(time.Second)
		h.quiet()
		if fh.powerCycles.Load() != 2 {
			t.Fatalf("handler PowerCycle called %d times", fh.powerCycles.Load())
		}
	})
}

func TestServerPowerCycleWithoutRun(t *testing.T) {
	t.Parallel()
	fh := &fakeHandler{}
	dev, _ := Pipe()
	NewServer(dev, fh, nil).PowerCycle()
	if fh.powerCycles.Load() != 1 {
		t.Fatal("PowerCycle not forwarded")
	}
}

func TestServerRunStops(t *testing.T) {
	t.Parallel()
	t.Run("context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			started := make(chan context.Context, 1)
			dev, host := Pipe()
			srv := NewServer(dev, &fakeHandler{cbor: blocking(false, started, nil)}, nil)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			host.WriteReport(Fragment(cidA, CmdCBOR, []byte{1})[0])
			hctx := <-started
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			if hctx.Err() == nil {
				t.Fatal("handler context still live after Run returned")
			}
			// synctest.Test fails if any goroutine outlives the bubble.
		})
	})
	t.Run("device error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			dev, host := Pipe()
			srv := NewServer(dev, &fakeHandler{}, nil)
			done := make(chan error, 1)
			go func() { done <- srv.Run(t.Context()) }()
			host.Close()
			if err := <-done; !errors.Is(err, ErrClosed) {
				t.Fatalf("Run = %v, want ErrClosed", err)
			}
		})
	})
	t.Run("twice", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			dev, _ := Pipe()
			srv := NewServer(dev, &fakeHandler{}, nil)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			synctest.Wait()
			if err := srv.Run(ctx); err == nil {
				t.Fatal("second concurrent Run succeeded")
			}
			cancel()
			<-done
		})
	})
}

// recorder is a ReportDevice that records writes and reads nothing.
type recorder struct {
	mu     sync.Mutex
	writes [][]byte
}

func (r *recorder) ReadReport(ctx context.Context) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (r *recorder) WriteReport(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, append([]byte(nil), b...))
	return nil
}

// sourceRecorder is a SourceDevice that records writes and their
// addresses and reads nothing.
type sourceRecorder struct {
	recorder
	to []netip.AddrPort
}

func (r *sourceRecorder) ReadReportFrom(ctx context.Context) ([]byte, netip.AddrPort, error) {
	<-ctx.Done()
	return nil, netip.AddrPort{}, ctx.Err()
}

func (r *sourceRecorder) WriteReportTo(b []byte, to netip.AddrPort) error {
	r.recorder.WriteReport(b)
	r.mu.Lock()
	r.to = append(r.to, to)
	r.mu.Unlock()
	return nil
}

// FuzzServer drives the server's report handling with arbitrary reports:
// it must never panic, must write only whole reports, and must answer
// CID 0 only with INVALID_CHANNEL.
func FuzzServer(f *testing.F) {
	f.Add(bytes.Join(Fragment(BroadcastCID, CmdInit, pattern(8)), nil))
	f.Add(bytes.Join(Fragment(cidA, CmdCBOR, pattern(100)), nil))
	f.Add(append(initPkt(cidA, CmdCBOR, 200, nil), initPkt(cidB, CmdPing, 1, nil)...))
	f.Add(append(initPkt(cidA, CmdLock, 1, []byte{3}), initPkt(cidB, CmdPing, 1, nil)...))
	f.Add(append(initPkt(cidA, CmdCBOR, 1, []byte{1}), initPkt(cidA, CmdCancel, 0, nil)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Reports come from two hosts in turn, so channel ownership is
		// exercised too.
		rec := &sourceRecorder{}
		srv := NewServer(rec, &u2fHandler{}, &Options{MaxChannels: 4})
		hosts := []netip.AddrPort{hostA, hostB}
		for i := 0; len(data) > 0; i++ {
			n := min(ReportSize, len(data))
			srv.mu.Lock()
			srv.handleReport(data[:n], hosts[i%2])
			srv.mu.Unlock()
			data = data[n:]
		}
		srv.shutdown()
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for i, w := range rec.writes {
			if len(w) != ReportSize {
				t.Fatalf("wrote %d bytes", len(w))
			}
			if binary.BigEndian.Uint32(w) == 0 && !bytes.Equal(w[4:8], []byte{CmdError, 0, 1, byte(ErrInvalidChannel)}) {
				t.Fatalf("wrote % X on CID 0", w[:8])
			}
			if to := rec.to[i]; to != hostA && to != hostB {
				t.Fatalf("wrote to %v, which sent nothing", to)
			}
		}
	})
}

// readWatch is a device that counts the ReadReport calls in flight.
type readWatch struct {
	ReportDevice
	reading atomic.Int32
}

func (d *readWatch) ReadReport(ctx context.Context) ([]byte, error) {
	d.reading.Add(1)
	defer d.reading.Add(-1)
	return d.ReportDevice.ReadReport(ctx)
}

func TestServerHandlerRunsOnReader(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// A quick answer costs no hand-off: the handler runs on the
		// goroutine that read the request, so nothing reads the device
		// meanwhile. One that still runs readerHold later has another
		// goroutine read, which sees the CANCEL sent meanwhile.
		pipe, host := Pipe()
		t.Cleanup(func() { host.Close() })
		dev := &readWatch{ReportDevice: pipe}
		var readingInHandler []int32
		srv := NewServer(dev, &fakeHandler{cbor: func(ctx context.Context, _ uint32, msg []byte, _ func(byte)) []byte {
			time.Sleep(readerHold / 2)
			synctest.Wait()
			readingInHandler = append(readingInHandler, dev.reading.Load())
			if msg[0] == 0x02 {
				<-ctx.Done()
				return []byte{0x2D}
			}
			return []byte{0x00}
		}}, nil)
		runServer(t, srv)
		h := &harness{t: t, srv: srv, host: host, c: NewClient(host), ctx: t.Context()}

		h.send(cidA, CmdCBOR, []byte{0x01})
		h.expect(cidA, CmdCBOR, []byte{0x00})
		if readingInHandler[0] != 0 {
			t.Fatalf("%d reads in flight while a quick handler ran, want 0 (it runs on the reader)", readingInHandler[0])
		}

		h.send(cidA, CmdCBOR, []byte{0x02}) // waits for CANCEL
		synctest.Wait()
		start := time.Now()
		h.send(cidA, CmdCancel, nil)
		h.expect(cidA, CmdCBOR, []byte{0x2D})
		if d := time.Since(start); d != readerHold {
			t.Fatalf("CANCEL took %v, want %v (until a reader takes over)", d, readerHold)
		}
		h.send(cidB, CmdCBOR, []byte{0x01}) // the reader that took over serves on
		h.expect(cidB, CmdCBOR, []byte{0x00})
		h.quiet()
	})
}

func TestServerReadsArrivedBeforeAnswering(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// What arrives while a quick handler runs on the reader is acted on
		// before its answer goes, as if it had been read on arrival: another
		// channel's request gets CHANNEL_BUSY first, and a resync of the
		// channel drops the answer.
		h := serve(t, &fakeHandler{cbor: func(_ context.Context, _ uint32, msg []byte, _ func(byte)) []byte {
			time.Sleep(readerHold / 2)
			return append([]byte{0x00}, msg...)
		}}, nil)
		h.send(cidA, CmdCBOR, []byte{0x01})
		synctest.Wait()
		h.send(cidB, CmdCBOR, []byte{0x02})
		if p := parsePacket(<-h.host.in); p.cid != cidB || p.cmd != CmdError || p.data[0] != byte(ErrChannelBusy) {
			t.Fatalf("first report on %08X cmd %s, want CHANNEL_BUSY on %08X before the answer", p.cid, cmdName(p.cmd), cidB)
		}
		h.expect(cidA, CmdCBOR, []byte{0x00, 0x01})
		h.quiet()

		h.send(cidA, CmdCBOR, []byte{0x03})
		synctest.Wait()
		h.send(cidA, CmdInit, pattern(8))
		if m := h.recv(cidA); m.Cmd != CmdInit {
			t.Fatalf("got %s, want the INIT answer and no CBOR answer", cmdName(m.Cmd))
		}
		h.quiet()
	})
}

func TestServerDeviceFailsWhileHandlerWaits(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// The device fails while a handler waits for the user and another
		// goroutine reads: Run ends the handler and returns the error at
		// once, as when the handler ran on a worker.
		dev, host := Pipe()
		started := make(chan context.Context, 1)
		srv := NewServer(dev, &fakeHandler{cbor: blocking(true, started, nil)}, nil)
		done := make(chan error, 1)
		go func() { done <- srv.Run(t.Context()) }()
		c := NewClient(host)
		if err := c.Send(cidA, CmdCBOR, []byte{0x01}); err != nil {
			t.Fatal(err)
		}
		ctx := <-started
		time.Sleep(readerHold) // another goroutine reads now
		synctest.Wait()
		start := time.Now()
		host.Close()
		var err error
		select {
		case err = <-done:
		case <-time.After(time.Second):
			t.Fatal("Run did not return after the device failed (the handler is still waiting)")
		}
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Run = %v, want the device's ErrClosed", err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("Run returned %v after the device failed, want at once", d)
		}
		if ctx.Err() == nil {
			t.Fatal("the handler's context was not cancelled")
		}
	})
}
