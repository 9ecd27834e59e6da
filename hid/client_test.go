package hid

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestClientRoundTrip(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{cbor: func(ctx context.Context, _ uint32, msg []byte, keepalive func(byte)) []byte {
			keepalive(StatusUPNeeded)
			time.Sleep(250 * time.Millisecond)
			return append([]byte{0x00}, msg...)
		}}, &Options{Version: [3]byte{4, 5, 6}})
		var statuses []byte
		h.c.OnKeepalive = func(s byte) { statuses = append(statuses, s) }
		if err := h.c.Init(h.ctx); err != nil {
			t.Fatal(err)
		}
		if info := h.c.Info(); info.Protocol != 2 || info.Version != [3]byte{4, 5, 6} || info.Capabilities != CapWink|CapLock|CapCBOR|CapNMSG {
			t.Fatalf("Info() = %+v", info)
		}
		req := pattern(3000)
		resp, err := h.c.CBOR(h.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp, append([]byte{0x00}, req...)) {
			t.Fatal("CBOR answer differs")
		}
		if !bytes.Equal(statuses, []byte{StatusUPNeeded, StatusUPNeeded}) {
			t.Fatalf("keepalives % X", statuses)
		}
	})
}

func TestClientTypedErrors(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{}, nil)
		if err := h.c.Init(h.ctx); err != nil {
			t.Fatal(err)
		}
		_, err := h.c.CBOR(h.ctx, nil)
		var code ErrorCode
		if !errors.As(err, &code) || code != ErrInvalidLen || !errors.Is(err, ErrInvalidLen) {
			t.Fatalf("empty CBOR: %v", err)
		}
		if _, err := h.c.MSG(h.ctx, []byte{0, 1, 0, 0}); !errors.Is(err, ErrInvalidCmd) {
			t.Fatalf("MSG: %v", err)
		}
		if _, err := h.c.Ping(h.ctx, make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrInvalidLen) {
			t.Fatalf("oversized PING: %v", err)
		}
	})
}

func TestClientCancelOnContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		started := make(chan context.Context, 1)
		h := serve(t, &fakeHandler{cbor: blocking(true, started, nil)}, nil)
		if err := h.c.Init(h.ctx); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(h.ctx, 350*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := h.c.CBOR(ctx, []byte{0x02})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("CBOR = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d != 350*time.Millisecond {
			t.Fatalf("returned after %v", d)
		}
		if hctx := <-started; hctx.Err() == nil {
			t.Fatal("the device never saw CANCEL")
		}
		// The 0x2D answer was consumed: the channel is in step.
		if got, err := h.c.Ping(h.ctx, []byte("next")); err != nil || string(got) != "next" {
			t.Fatalf("Ping after cancel = %q, %v", got, err)
		}
	})
}

func TestClientCancelMethod(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		started := make(chan context.Context, 1)
		h := serve(t, &fakeHandler{cbor: blocking(true, started, nil)}, nil)
		h.c.SetCID(cidA)
		go func() {
			<-started
			h.c.Cancel()
		}()
		resp, err := h.c.CBOR(h.ctx, []byte{0x02})
		if err != nil || !bytes.Equal(resp, []byte{0x2D}) {
			t.Fatalf("CBOR = % X, %v; want 2D", resp, err)
		}
	})
}

// fakeDevice answers from a script run on the device end of a pipe.
func fakeDevice(t *testing.T, script func(dev *PipeEnd)) *Client {
	dev, host := Pipe()
	t.Cleanup(func() { host.Close() })
	go script(dev)
	return NewClient(host)
}

func TestClientSkipsForeignTraffic(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const newCID = 0x12345678
		c := fakeDevice(t, func(dev *PipeEnd) {
			r, err := dev.ReadReport(t.Context())
			if err != nil {
				return
			}
			p := parsePacket(r)
			nonce := p.data[:8]
			answer := func(n []byte) []byte {
				resp := make([]byte, 17)
				copy(resp, n)
				binary.BigEndian.PutUint32(resp[8:], newCID)
				resp[12] = 2
				resp[16] = CapCBOR
				return resp
			}
			// Another host's INIT answer, a stray continuation, then ours.
			for _, rr := range [][]byte{
				Fragment(BroadcastCID, CmdInit, answer(pattern(8)))[0],
				contPkt(BroadcastCID, 0, nil),
				Fragment(BroadcastCID, CmdInit, answer(nonce))[0],
			} {
				dev.WriteReport(rr)
			}
			// The CBOR request.
			dev.ReadReport(t.Context())
			big := pattern(100)
			reps := Fragment(newCID, CmdCBOR, big)
			dev.WriteReport(Fragment(0x0BADC1D0, CmdCBOR, []byte{0x01})[0]) // other channel
			dev.WriteReport(reps[0])
			dev.WriteReport(Fragment(0x0BADC1D0, CmdKeepalive, []byte{1})[0])
			dev.WriteReport(reps[1])
		})
		ctx := t.Context()
		if err := c.Init(ctx); err != nil {
			t.Fatal(err)
		}
		if c.CID() != newCID {
			t.Fatalf("CID %08X", c.CID())
		}
		resp, err := c.CBOR(ctx, []byte{0x04})
		if err != nil || !bytes.Equal(resp, pattern(100)) {
			t.Fatalf("CBOR = %d bytes, %v", len(resp), err)
		}
	})
}

func TestClientRestartsOnNewInitPacket(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := fakeDevice(t, func(dev *PipeEnd) {
			dev.ReadReport(t.Context())
			dev.WriteReport(initPkt(cidA, CmdCBOR, 100, nil)) // abandoned
			for _, r := range Fragment(cidA, CmdCBOR, pattern(70)) {
				dev.WriteReport(r)
			}
		})
		c.SetCID(cidA)
		resp, err := c.CBOR(t.Context(), []byte{0x04})
		if err != nil || !bytes.Equal(resp, pattern(70)) {
			t.Fatalf("CBOR = %d bytes, %v", len(resp), err)
		}
	})
}

func TestClientInitError(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := serve(t, &fakeHandler{}, nil)
		h.c.SetCID(cidA)
		if err := h.c.Lock(h.ctx, 2); err != nil {
			t.Fatal(err)
		}
		if err := NewClient(h.host).Init(h.ctx); !errors.Is(err, ErrLockRequired) {
			t.Fatalf("Init while locked = %v", err)
		}
	})
}

func TestClientCancelGrace(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// A device that never answers: CBOR returns cancelGrace after ctx.
		c := fakeDevice(t, func(dev *PipeEnd) {
			for {
				if _, err := dev.ReadReport(context.Background()); err != nil {
					return
				}
			}
		})
		c.SetCID(cidA)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		if _, err := c.CBOR(ctx, []byte{0x04}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("CBOR = %v", err)
		}
		if d := time.Since(start); d != time.Second+cancelGrace {
			t.Fatalf("returned after %v", d)
		}
	})
}

func TestPipe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a, b := Pipe()
		if err := a.WriteReport([]byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		r, err := b.ReadReport(t.Context())
		if err != nil || len(r) != ReportSize || !bytes.Equal(r[:4], []byte{1, 2, 3, 0}) {
			t.Fatalf("read % X, %v", r, err)
		}
		if err := a.WriteReport(make([]byte, ReportSize+1)); err == nil {
			t.Fatal("over-long report accepted")
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := a.ReadReport(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ReadReport = %v", err)
		}
		done := make(chan error)
		go func() {
			_, err := a.ReadReport(t.Context())
			done <- err
		}()
		synctest.Wait()
		b.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked read after Close = %v", err)
		}
		if err := a.WriteReport(nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("write after Close = %v", err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
