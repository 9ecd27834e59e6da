package uhid

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The golden events below are written out byte by byte from linux/uhid.h
// for a little-endian host; header_linux_test.go checks the offsets
// against the C header itself where one is installed.

func skipBigEndian(t testing.TB) {
	t.Helper()
	if ne.Uint16([]byte{1, 0}) != 1 {
		t.Skip("golden events are little-endian; uhid uses host byte order")
	}
}

// segment is a run of bytes at an offset in an otherwise zero event.
type segment struct {
	off int
	hex string // spaces allowed
}

func golden(t *testing.T, segs ...segment) []byte {
	t.Helper()
	ev := make([]byte, eventSize)
	for _, s := range segs {
		b, err := hex.DecodeString(strings.ReplaceAll(s.hex, " ", ""))
		if err != nil {
			t.Fatalf("bad golden hex %q: %v", s.hex, err)
		}
		copy(ev[s.off:], b)
	}
	return ev
}

// diff reports the first differing byte.
func diff(t *testing.T, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("len = %d, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("byte %d = %#02x, want %#02x", i, got[i], want[i])
		}
	}
}

func TestEventSize(t *testing.T) {
	t.Parallel()
	// sizeof(struct uhid_event) = 4 + the union (4372 bytes of create2,
	// rounded up to the 8-byte alignment of uhid_start_req's __u64).
	if eventSize != 4380 {
		t.Fatalf("eventSize = %d, want 4380", eventSize)
	}
	if offCreateRDData+maxDescriptorSize != 4+create2Size || create2Size != 4372 {
		t.Fatalf("create2 ends at %d, want %d", offCreateRDData+maxDescriptorSize, 4+4372)
	}
}

func TestEncodeCreate2(t *testing.T) {
	t.Parallel()
	skipBigEndian(t)
	o := Options{Serial: "0123456789abcdef", Version: 0x0100}.withDefaults()
	got, err := o.createEvent()
	if err != nil {
		t.Fatal(err)
	}
	want := golden(t,
		segment{0, "0b000000"}, // type = UHID_CREATE2 (11)
		// name[128] at 4: "virtkey FIDO2 security key", NUL-padded
		segment{4, hex.EncodeToString([]byte("virtkey FIDO2 security key"))},
		segment{132, hex.EncodeToString([]byte("virtkey"))},          // phys[64]
		segment{196, hex.EncodeToString([]byte("0123456789abcdef"))}, // uniq[64]
		segment{260, "2200"},     // rd_size = 34
		segment{262, "0300"},     // bus = BUS_USB
		segment{264, "09120000"}, // vendor = 0x1209
		segment{268, "64760000"}, // product = 0x7664
		segment{272, "00010000"}, // version = 0x0100
		segment{276, "00000000"}, // country = 0
		// rd_data[4096] at 280: the FIDO report descriptor (docs/testing.md, uhid facts)
		segment{280, "06 D0 F1 09 01 A1 01 09 20 15 00 26 FF 00 75 08 95 40 81 02" +
			" 09 21 15 00 26 FF 00 75 08 95 40 91 02 C0"},
	)
	diff(t, got, want)
}

func TestEncodeCreate2Limits(t *testing.T) {
	t.Parallel()
	ok := create2{name: strings.Repeat("n", 127), phys: strings.Repeat("p", 63), uniq: strings.Repeat("u", 63), descriptor: make([]byte, 4096)}
	if _, err := encodeCreate2(ok); err != nil {
		t.Fatalf("longest fields: %v", err)
	}
	for name, c := range map[string]create2{
		"name":            {name: strings.Repeat("n", 128), descriptor: fidoDescriptor},
		"phys":            {phys: strings.Repeat("p", 64), descriptor: fidoDescriptor},
		"uniq":            {uniq: strings.Repeat("u", 64), descriptor: fidoDescriptor},
		"nul":             {name: "a\x00b", descriptor: fidoDescriptor},
		"no descriptor":   {},
		"long descriptor": {descriptor: make([]byte, 4097)},
	} {
		if _, err := encodeCreate2(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := (Options{Name: strings.Repeat("x", 200)}).withDefaults().createEvent(); !errors.Is(err, errField) {
		t.Errorf("long --name: err = %v, want errField", err)
	}
}

func TestEncodeInput2(t *testing.T) {
	t.Parallel()
	skipBigEndian(t)
	report := make([]byte, 64)
	for i := range report {
		report[i] = byte(i + 1)
	}
	want := golden(t,
		segment{0, "0c000000"}, // type = UHID_INPUT2 (12)
		segment{4, "4000"},     // size = 64
		segment{6, hex.EncodeToString(report)},
	)
	diff(t, encodeInput2(report), want)
}

func TestEncodeReplies(t *testing.T) {
	t.Parallel()
	skipBigEndian(t)
	diff(t, encodeDestroy(), golden(t, segment{0, "01000000"})) // UHID_DESTROY
	diff(t, encodeGetReportReply(0x11223344, errnoEIO), golden(t,
		segment{0, "0a000000"}, // type = UHID_GET_REPORT_REPLY (10)
		segment{4, "44332211"}, // id
		segment{8, "0500"},     // err = EIO
		segment{10, "0000"},    // size = 0
	))
	diff(t, encodeSetReportReply(0xdeadbeef, errnoEIO), golden(t,
		segment{0, "0e000000"}, // type = UHID_SET_REPORT_REPLY (14)
		segment{4, "efbeadde"}, // id
		segment{8, "0500"},     // err = EIO
	))
}

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	skipBigEndian(t)
	ctaphidInit := "ffffffff86000811223344556677 88"
	output := golden(t,
		segment{0, "06000000"}, // type = UHID_OUTPUT (6)
		segment{4, "00" + ctaphidInit},
		segment{4100, "4100"}, // size = 65
		segment{4102, "01"},   // rtype = UHID_OUTPUT_REPORT
	)
	tests := []struct {
		name string
		in   []byte
		want event
	}{
		{"start", golden(t, segment{0, "02000000"}, segment{4, "0400000000000000"}),
			event{typ: evStart, devFlags: 4}},
		{"stop", golden(t, segment{0, "03000000"}), event{typ: evStop}},
		{"open", golden(t, segment{0, "04000000"}), event{typ: evOpen}},
		{"close", golden(t, segment{0, "05000000"}), event{typ: evClose}},
		{"output", output, event{typ: evOutput, rtype: outputReport,
			data: append([]byte{0}, padTo(mustHex(t, ctaphidInit), 64)...)}},
		{"get report", golden(t, segment{0, "09000000"}, segment{4, "07000000 03 00"}),
			event{typ: evGetReport, id: 7, rnum: 3, rtype: featureReport}},
		{"set report", golden(t, segment{0, "0d000000"}, segment{4, "08000000 00 00 0300 aabbcc"}),
			event{typ: evSetReport, id: 8, rtype: featureReport, data: []byte{0xaa, 0xbb, 0xcc}}},
		// linux/uhid.h: "If the kernel writes short events, user-space
		// shall extend them with 0s."
		{"short close", []byte{5, 0, 0, 0}, event{typ: evClose}},
		{"short start", []byte{2, 0, 0, 0, 1}, event{typ: evStart, devFlags: 1}},
		{"unknown", golden(t, segment{0, "63000000"}), event{typ: 99}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeEvent(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.typ != tt.want.typ || got.devFlags != tt.want.devFlags || got.id != tt.want.id ||
				got.rnum != tt.want.rnum || got.rtype != tt.want.rtype || !bytes.Equal(got.data, tt.want.data) {
				t.Fatalf("decodeEvent = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeEventErrors(t *testing.T) {
	t.Parallel()
	skipBigEndian(t)
	for name, in := range map[string][]byte{
		"empty":         nil,
		"three bytes":   {6, 0, 0},
		"output size":   golden(t, segment{0, "06000000"}, segment{4100, "0110"}), // 4097
		"set_rep size":  golden(t, segment{0, "0d000000"}, segment{10, "0110"}),
		"output size 2": golden(t, segment{0, "06000000"}, segment{4100, "ffff"}),
	} {
		if ev, err := decodeEvent(in); err == nil {
			t.Errorf("%s: decodeEvent = %+v, want an error", name, ev)
		}
	}
}

func TestOutputToReport(t *testing.T) {
	t.Parallel()
	full := make([]byte, 65)
	for i := 1; i < 65; i++ {
		full[i] = byte(i)
	}
	r, err := outputToReport(outputReport, full)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r, full[1:]) {
		t.Fatalf("report = %x, want %x", r, full[1:])
	}
	r, err = outputToReport(outputReport, []byte{0, 0xff, 0xff, 0xff, 0xff, 0x86})
	if err != nil {
		t.Fatal(err)
	}
	if want := padTo([]byte{0xff, 0xff, 0xff, 0xff, 0x86}, 64); !bytes.Equal(r, want) {
		t.Fatalf("short output: report = %x, want %x", r, want)
	}
	for name, tc := range map[string]struct {
		rtype reportType
		data  []byte
	}{
		"feature":       {featureReport, full},
		"input":         {inputReport, full},
		"empty":         {outputReport, nil},
		"number only":   {outputReport, []byte{0}},
		"too long":      {outputReport, make([]byte, 66)},
		"report number": {outputReport, append([]byte{1}, full[1:]...)},
	} {
		if _, err := outputToReport(tc.rtype, tc.data); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	a, b := Options{}.withDefaults(), Options{}.withDefaults()
	if a.Path != "/dev/uhid" || a.VendorID != 0x1209 || a.ProductID != 0x7664 || a.Name != DefaultName || a.Phys != DefaultPhys {
		t.Fatalf("defaults = %+v", a)
	}
	if len(a.Serial) != 16 || a.Serial == b.Serial {
		t.Fatalf("serials %q and %q: want 16 random hex digits each", a.Serial, b.Serial)
	}
	c := Options{Serial: "s", VendorID: 1, ProductID: 2, Name: "n", Phys: "p", Path: "/x"}.withDefaults()
	if c.Serial != "s" || c.VendorID != 1 || c.ProductID != 2 || c.Name != "n" || c.Phys != "p" || c.Path != "/x" {
		t.Fatalf("explicit options changed: %+v", c)
	}
	if d := ReportDescriptor(); !bytes.Equal(d, fidoDescriptor) || &d[0] == &fidoDescriptor[0] {
		t.Fatal("ReportDescriptor must return a copy of the descriptor")
	}
}

// FuzzDecodeEvent: decoding never panics, and an OUTPUT that converts to
// a report yields exactly the 64 bytes after the report number, padded.
func FuzzDecodeEvent(f *testing.F) {
	le := binary.LittleEndian
	out := make([]byte, eventSize)
	le.PutUint32(out, uint32(evOutput))
	out[4] = 0
	copy(out[5:], []byte{0xff, 0xff, 0xff, 0xff, 0x86, 0, 8})
	le.PutUint16(out[offOutputSize:], 65)
	out[offOutputRType] = byte(outputReport)
	f.Add(out)
	f.Add([]byte{2, 0, 0, 0})
	f.Add(encodeGetReportReply(1, 5))
	f.Add([]byte{13, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeEvent(b)
		if err != nil {
			return
		}
		if len(ev.data) > dataMax {
			t.Fatalf("data of %d bytes", len(ev.data))
		}
		if ev.typ != evOutput {
			return
		}
		r, err := outputToReport(ev.rtype, ev.data)
		if err != nil {
			return
		}
		if len(r) != 64 || !bytes.Equal(r, padTo(ev.data[1:], 64)) {
			t.Fatalf("report %x from output %x", r, ev.data)
		}
	})
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func padTo(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}
