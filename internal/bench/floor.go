package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/hid/udp"
)

// The physical floor of a CTAP command over UDP: the same transport — a
// hid/udp listener, hid.Server's CTAPHID framing and channels, one 64-byte
// report per datagram — and the same client code, with a handler that does
// nothing but answer each CTAP2 command with a canned response of the
// length the real key's answer has (so the same number of reports travels
// both ways). What a key does beyond the floor is its own work: crypto,
// CBOR, the store.

// Floor is a do-nothing CTAP2 handler: it answers command byte c with
// Canned[c] (status OK, then zeros), and anything else with
// CTAP1_ERR_INVALID_COMMAND.
type Floor struct {
	Canned map[byte][]byte
}

// HandleCBOR implements hid.Handler.
func (f *Floor) HandleCBOR(_ context.Context, _ uint32, msg []byte, _ func(byte)) []byte {
	if len(msg) > 0 {
		if r, ok := f.Canned[msg[0]]; ok {
			return r
		}
	}
	return []byte{0x01}
}

// NewFloor is a Floor whose answer to command byte c has lengths[c] bytes.
func NewFloor(lengths map[byte]int) *Floor {
	f := &Floor{Canned: map[byte][]byte{}}
	for c, n := range lengths {
		f.Canned[c] = make([]byte, max(n, 1)) // 0x00: CTAP2_OK
	}
	return f
}

// FloorLengths formats lengths for [ServeFloor]'s environment ("c=n,…",
// command bytes in decimal).
func FloorLengths(lengths map[byte]int) string {
	var parts []string
	for c, n := range lengths {
		parts = append(parts, fmt.Sprintf("%d=%d", c, n))
	}
	return strings.Join(parts, ",")
}

func parseFloorLengths(s string) (map[byte]int, error) {
	out := map[byte]int{}
	for _, p := range strings.Split(s, ",") {
		c, n, ok := strings.Cut(p, "=")
		cv, err1 := strconv.ParseUint(c, 10, 8)
		nv, err2 := strconv.Atoi(n)
		if !ok || err1 != nil || err2 != nil || nv < 1 || nv > hid.MaxMessageSize {
			return nil, fmt.Errorf("bench: floor length %q", p)
		}
		out[byte(cv)] = nv
	}
	return out, nil
}

// ServeFloor serves a [Floor] over hid/udp on 127.0.0.1 (a free port), in
// the process that calls it, until ctx ends. It prints "listening ADDR" on
// stdout once the socket is open. lengths is [FloorLengths]'s format.
func ServeFloor(ctx context.Context, lengths string) error {
	l, err := parseFloorLengths(lengths)
	if err != nil {
		return err
	}
	conn, err := udp.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Printf("listening %s\n", conn.Addr())
	return conn.Serve(ctx, NewFloor(l), nil)
}

// RawKeygenSignSyncOp is the durable-registration yardstick: a P-256 key
// generation, one signature, and one 512-byte append to a file in dir made
// durable with fdatasync — the least a durable registration costs on dir's
// file system.
func RawKeygenSignSyncOp(b *testing.B, dir string) func() {
	keygenSign := RawKeygenSignOp(b)
	f, err := os.OpenFile(filepath.Join(dir, "append.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	rec := make([]byte, 512)
	return func() {
		keygenSign()
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
}
