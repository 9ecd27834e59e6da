package bench_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/udp"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/bench"
)

// BenchmarkRawSignES256 is the yardstick for BenchmarkGetAssertionUDP, in
// the same binary so that both come from one run: one P-256 ECDSA
// signature over a SHA-256 digest computed beforehand.
func BenchmarkRawSignES256(b *testing.B) { bench.Loop(b, bench.RawSignOp(b)) }

// residentCredential makes a resident ES256 credential on example.com
// through c and returns the getAssertion request (command byte included)
// that uses it in an allowList.
func residentCredential(b *testing.B, ctx context.Context, c *hid.Client) []byte {
	b.Helper()
	mc := append([]byte{ctap2.CmdMakeCredential}, bench.MustCBOR(b, bench.MakeCredentialParams(true))...)
	out, err := c.CBOR(ctx, mc)
	if err != nil {
		b.Fatal(err)
	}
	if len(out) == 0 || ctap2.StatusCode(out[0]) != ctap2.StatusOK {
		b.Fatalf("makeCredential: % x", out[:min(len(out), 1)])
	}
	return append([]byte{ctap2.CmdGetAssertion}, bench.MustCBOR(b, bench.GetAssertionParams(bench.CredentialID(b, out[1:])))...)
}

func getAssertionOp(b *testing.B, ctx context.Context, c *hid.Client, req []byte) func() {
	return func() {
		out, err := c.CBOR(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if len(out) == 0 || ctap2.StatusCode(out[0]) != ctap2.StatusOK {
			b.Fatalf("getAssertion: % x", out[:min(len(out), 1)])
		}
	}
}

func newKey(b *testing.B) *inproc.Key {
	b.Helper()
	k, err := inproc.New(inproc.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close() })
	return k
}

// udpGetAssertion serves a fresh key with udp.Listen("127.0.0.1:0") +
// Serve, connects a CTAPHID client with udp.Dial, makes a resident ES256
// credential and returns one getAssertion round trip with it.
func udpGetAssertion(b *testing.B) func() {
	k := newKey(b)
	conn, err := udp.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- conn.Serve(ctx, k.Authenticator, nil) }()
	b.Cleanup(func() {
		cancel()
		conn.Close()
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, context.Canceled) {
				b.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			b.Error("Serve did not return")
		}
	})
	cc, err := udp.Dial(conn.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	c := hid.NewClient(cc)
	if err := c.Init(ctx); err != nil {
		b.Fatal(err)
	}
	return getAssertionOp(b, ctx, c, residentCredential(b, ctx, c))
}

// pipeGetAssertion is the same through CTAPHID reports on the key's
// in-memory pipe (no sockets).
func pipeGetAssertion(b *testing.B) func() {
	k := newKey(b)
	ctx := context.Background()
	c, err := k.Client(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return getAssertionOp(b, ctx, c, residentCredential(b, ctx, c))
}

// BenchmarkGetAssertionUDP is a getAssertion round trip over the UDP
// transport on loopback: the request (allowList of one resident ES256
// credential) goes out in two 64-byte datagrams and the answer comes back
// in five.
func BenchmarkGetAssertionUDP(b *testing.B) { bench.Loop(b, udpGetAssertion(b)) }

// BenchmarkGetAssertionHIDPipe is the same round trip on the in-memory
// pipe: the cost of the CTAPHID layer without sockets.
func BenchmarkGetAssertionHIDPipe(b *testing.B) { bench.Loop(b, pipeGetAssertion(b)) }

// BenchmarkPairedGetAssertionUDP times the UDP round trip against a raw
// signature call by call (bench.Paired); x-base is the target ratio (≤ 1.6).
func BenchmarkPairedGetAssertionUDP(b *testing.B) {
	bench.Paired(b, bench.RawSignOp(b), udpGetAssertion(b))
}

// BenchmarkPairedGetAssertionHIDPipe is the same for the in-memory pipe.
func BenchmarkPairedGetAssertionHIDPipe(b *testing.B) {
	bench.Paired(b, bench.RawSignOp(b), pipeGetAssertion(b))
}
