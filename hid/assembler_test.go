package hid

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// initPkt builds an init packet with an explicit BCNT.
func initPkt(cid uint32, cmd byte, bcnt int, data []byte) []byte {
	r := make([]byte, ReportSize)
	binary.BigEndian.PutUint32(r, cid)
	r[4] = cmd
	binary.BigEndian.PutUint16(r[5:], uint16(bcnt))
	copy(r[7:], data)
	return r
}

// contPkt builds a continuation packet.
func contPkt(cid uint32, seq byte, data []byte) []byte {
	r := make([]byte, ReportSize)
	binary.BigEndian.PutUint32(r, cid)
	r[4] = seq
	copy(r[5:], data)
	return r
}

// pattern returns n bytes that differ from their neighbours and from zero
// padding.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

func TestFragment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size    int
		reports int
	}{
		{0, 1},
		{1, 1},
		{InitDataSize, 1},
		{InitDataSize + 1, 2},
		{InitDataSize + ContDataSize, 2},
		{InitDataSize + ContDataSize + 1, 3},
		{1000, 17},
		{MaxMessageSize - 1, 129},
		{MaxMessageSize, 129},
		{MaxMessageSize + 1, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			t.Parallel()
			const cid = 0xA1B2C3D4
			payload := pattern(tt.size)
			reps := Fragment(cid, CmdCBOR, payload)
			if len(reps) != tt.reports {
				t.Fatalf("Fragment gave %d reports, want %d", len(reps), tt.reports)
			}
			if tt.reports == 0 {
				return
			}
			var got []byte
			for i, r := range reps {
				if len(r) != ReportSize {
					t.Fatalf("report %d has %d bytes", i, len(r))
				}
				if c := binary.BigEndian.Uint32(r); c != cid {
					t.Fatalf("report %d CID %08X", i, c)
				}
				if i == 0 {
					if r[4] != CmdCBOR {
						t.Fatalf("init CMD %02X", r[4])
					}
					if n := binary.BigEndian.Uint16(r[5:]); int(n) != tt.size {
						t.Fatalf("BCNT %d, want %d", n, tt.size)
					}
					got = append(got, r[7:]...)
				} else {
					if r[4] != byte(i-1) {
						t.Fatalf("report %d SEQ %d", i, r[4])
					}
					got = append(got, r[5:]...)
				}
			}
			if !bytes.Equal(got[:tt.size], payload) {
				t.Fatal("payload bytes differ")
			}
			if !bytes.Equal(got[tt.size:], make([]byte, len(got)-tt.size)) {
				t.Fatal("padding is not zero")
			}
		})
	}
}

func TestFragmentSetsCommandBit(t *testing.T) {
	t.Parallel()
	if r := Fragment(1, 0x10, nil)[0]; r[4] != CmdCBOR {
		t.Fatalf("CMD %02X, want %02X", r[4], CmdCBOR)
	}
}

func TestErrorCode(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("wrapped: %w", ErrChannelBusy)
	if !errors.Is(err, ErrChannelBusy) || errors.Is(err, ErrInvalidSeq) {
		t.Fatal("errors.Is does not see through wrapping")
	}
	if got, want := ErrChannelBusy.Error(), "ctaphid error CHANNEL_BUSY (0x06)"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got, want := ErrorCode(0x42).Error(), "ctaphid error 0x42"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestAssembler(t *testing.T) {
	t.Parallel()
	const a, b = 0x11223344, 0x55667788
	long := pattern(100) // init + one continuation
	type step struct {
		report []byte
		want   *Message // nil: no message
		err    error
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"single packet", []step{
			{initPkt(a, CmdPing, 5, pattern(5)), &Message{a, CmdPing, pattern(5)}, nil},
		}},
		{"empty payload", []step{
			{initPkt(a, CmdCBOR, 0, nil), &Message{a, CmdCBOR, []byte{}}, nil},
		}},
		{"two packets", []step{
			{initPkt(a, CmdCBOR, 100, long), nil, nil},
			{contPkt(a, 0, long[57:]), &Message{a, CmdCBOR, long}, nil},
		}},
		{"max size", func() []step {
			p := pattern(MaxMessageSize)
			var s []step
			reps := Fragment(a, CmdCBOR, p)
			for i, r := range reps {
				var m *Message
				if i == len(reps)-1 {
					m = &Message{a, CmdCBOR, p}
				}
				s = append(s, step{r, m, nil})
			}
			return s
		}()},
		{"BCNT too large", []step{
			{initPkt(a, CmdCBOR, MaxMessageSize+1, nil), nil, ErrInvalidLen},
			{contPkt(a, 0, nil), nil, ErrInvalidSeq}, // nothing was started
		}},
		{"continuation while idle", []step{
			{contPkt(a, 0, long), nil, ErrInvalidSeq},
		}},
		{"skipped SEQ", []step{
			{initPkt(a, CmdCBOR, 200, long), nil, nil},
			{contPkt(a, 1, long), nil, ErrInvalidSeq},
			{contPkt(a, 0, long), nil, ErrInvalidSeq}, // the message was dropped
		}},
		{"repeated SEQ", []step{
			{initPkt(a, CmdCBOR, 200, long), nil, nil},
			{contPkt(a, 0, long), nil, nil},
			{contPkt(a, 0, long), nil, ErrInvalidSeq},
		}},
		{"other CID init is busy, continuation ignored", []step{
			{initPkt(a, CmdCBOR, 100, long), nil, nil},
			{initPkt(b, CmdPing, 1, []byte{9}), nil, ErrChannelBusy},
			{contPkt(b, 0, long), nil, nil},
			{contPkt(a, 0, long[57:]), &Message{a, CmdCBOR, long}, nil},
		}},
		{"same CID new init packet mid-message", []step{
			{initPkt(a, CmdCBOR, 100, long), nil, nil},
			{initPkt(a, CmdPing, 1, []byte{9}), nil, ErrInvalidSeq},
			{initPkt(a, CmdPing, 1, []byte{9}), &Message{a, CmdPing, []byte{9}}, nil},
		}},
		{"same CID INIT resyncs", []step{
			{initPkt(a, CmdCBOR, 100, long), nil, nil},
			{initPkt(a, CmdInit, 8, pattern(8)), &Message{a, CmdInit, pattern(8)}, nil},
			{contPkt(a, 0, long), nil, ErrInvalidSeq},
		}},
		{"short reports read as zero-padded", []step{
			{[]byte{}, nil, ErrInvalidSeq},
			{[]byte{0, 0, 0, 1, CmdPing}, &Message{1, CmdPing, []byte{}}, nil},
			{[]byte{0, 0, 0, 1, CmdPing, 0, 3, 7}, &Message{1, CmdPing, []byte{7, 0, 0}}, nil},
		}},
		{"bytes beyond the report are ignored", []step{
			{append(initPkt(a, CmdPing, InitDataSize+1, pattern(InitDataSize)), 0xEE), nil, nil},
			{append(contPkt(a, 0, []byte{0xDD}), 0xEE), &Message{a, CmdPing, append(pattern(InitDataSize), 0xDD)}, nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var asm Assembler
			for i, s := range tt.steps {
				m, err := asm.Feed(s.report)
				if !errors.Is(err, s.err) || (err == nil) != (s.err == nil) {
					t.Fatalf("step %d: err = %v, want %v", i, err, s.err)
				}
				switch {
				case s.want == nil && m != nil:
					t.Fatalf("step %d: unexpected message %+v", i, m)
				case s.want != nil && m == nil:
					t.Fatalf("step %d: no message, want %d bytes", i, len(s.want.Payload))
				case s.want != nil:
					if m.CID != s.want.CID || m.Cmd != s.want.Cmd || !bytes.Equal(m.Payload, s.want.Payload) {
						t.Fatalf("step %d: got CID %08X cmd %02X %d bytes, want CID %08X cmd %02X %d bytes",
							i, m.CID, m.Cmd, len(m.Payload), s.want.CID, s.want.Cmd, len(s.want.Payload))
					}
					if asm.Busy() {
						t.Fatalf("step %d: assembler still busy after a message", i)
					}
				}
			}
		})
	}
}

func TestAssemblerBusyCID(t *testing.T) {
	t.Parallel()
	var asm Assembler
	if asm.Busy() || asm.CID() != 0 {
		t.Fatal("zero Assembler is not idle")
	}
	asm.Feed(initPkt(7, CmdCBOR, 100, nil))
	if !asm.Busy() || asm.CID() != 7 {
		t.Fatalf("Busy %v CID %d", asm.Busy(), asm.CID())
	}
	asm.Reset()
	if asm.Busy() {
		t.Fatal("Reset left it busy")
	}
}

// FuzzAssembler feeds arbitrary report sequences (never panics, never
// yields an over-long message), then checks that a fragmented message
// reassembles byte-identically.
func FuzzAssembler(f *testing.F) {
	f.Add([]byte{}, uint32(1), CmdCBOR, []byte{0x04})
	f.Add(bytes.Join(Fragment(5, CmdPing, pattern(300)), nil), uint32(0xFFFFFFFF), CmdInit, pattern(8))
	f.Add(append(initPkt(5, CmdCBOR, 200, nil), contPkt(5, 1, nil)...), uint32(0), CmdMsg, pattern(MaxMessageSize))
	f.Add(append(initPkt(5, CmdCBOR, 200, nil), initPkt(6, CmdPing, 1, nil)...), uint32(9), byte(0x01), []byte(nil))
	f.Fuzz(func(t *testing.T, reports []byte, cid uint32, cmd byte, payload []byte) {
		var asm Assembler
		// Vary report lengths a little: every 7th report is short.
		for i := 0; len(reports) > 0; i++ {
			n := min(ReportSize, len(reports))
			if i%7 == 6 {
				n = min(int(reports[0])%ReportSize, len(reports))
			}
			m, err := asm.Feed(reports[:n])
			reports = reports[n:]
			if m != nil && (err != nil || len(m.Payload) > MaxMessageSize || m.Cmd&0x80 == 0) {
				t.Fatalf("bad result: %d bytes, cmd %02X, err %v", len(m.Payload), m.Cmd, err)
			}
			if _, ok := err.(ErrorCode); err != nil && !ok {
				t.Fatalf("error %v is not an ErrorCode", err)
			}
		}

		if len(payload) > MaxMessageSize {
			payload = payload[:MaxMessageSize]
		}
		asm.Reset()
		reps := Fragment(cid, cmd, payload)
		for i, r := range reps {
			m, err := asm.Feed(r)
			if err != nil {
				t.Fatalf("report %d: %v", i, err)
			}
			if (m != nil) != (i == len(reps)-1) {
				t.Fatalf("report %d of %d: message %v", i, len(reps), m != nil)
			}
			if m != nil && (m.CID != cid || m.Cmd != cmd|0x80 || !bytes.Equal(m.Payload, payload)) {
				t.Fatal("round trip changed the message")
			}
		}
	})
}
