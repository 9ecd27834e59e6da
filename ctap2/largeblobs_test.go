package ctap2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
)

// serializeLargeBlobs builds a serialized large-blob array: CBOR(entries) ‖
// LEFT(SHA-256(CBOR(entries)), 16) (CTAP 2.1 §6.10.1).
func serializeLargeBlobs(t testing.TB, entries []any) []byte {
	t.Helper()
	if entries == nil {
		entries = []any{}
	}
	data := mustEncode(t, entries)
	h := sha256.Sum256(data)
	return append(data, h[:16]...)
}

// blobEntry is a large-blob map entry of about n bytes of ciphertext.
func blobEntry(n int, fill byte) map[int]any {
	return map[int]any{1: bytes.Repeat([]byte{fill}, n), 2: bytes.Repeat([]byte{0x0B}, 12), 3: uint(n)}
}

// readLargeBlobs reads the whole stored array with gets of n bytes.
func (tk *testKey) readLargeBlobs(t testing.TB, n int) []byte {
	t.Helper()
	var out []byte
	for {
		st, resp := tk.call(t, CmdLargeBlobs, map[int]any{1: n, 3: len(out)})
		if st != StatusOK {
			t.Fatalf("get at %d: %v", len(out), st)
		}
		var r LargeBlobsResponse
		if err := decode(resp, &r); err != nil {
			t.Fatal(err)
		}
		if r.Config == nil {
			t.Fatal("get returned no config")
		}
		out = append(out, r.Config...)
		if len(r.Config) < n {
			return out
		}
	}
}

// lbWriter writes a serialized array in fragments, optionally with a PIN token.
type lbWriter struct {
	tk    *testKey
	pp    *pinPlatform
	token *PINUVAuthToken
}

func (w lbWriter) fragment(t testing.TB, offset int, frag []byte, length int) StatusCode {
	t.Helper()
	req := map[int]any{2: frag, 3: offset}
	if length >= 0 {
		req[4] = length
	}
	if w.token != nil {
		req[5] = w.pp.proto.Authenticate(w.token, largeBlobAuthMessage(uint32(offset), frag))
		req[6] = w.pp.proto.Version()
	}
	st, out := w.tk.call(t, CmdLargeBlobs, req)
	if st == StatusOK && len(out) != 0 {
		t.Fatalf("set returned a body: %x", out)
	}
	return st
}

// write sends array in fragments of at most n bytes; it returns the status
// of the first failing fragment (or of the last one).
func (w lbWriter) write(t testing.TB, array []byte, n int) StatusCode {
	t.Helper()
	for off := 0; off < len(array); off += n {
		length := -1
		if off == 0 {
			length = len(array)
		}
		if st := w.fragment(t, off, array[off:min(off+n, len(array))], length); st != StatusOK {
			return st
		}
	}
	return StatusOK
}

func TestLargeBlobsInitialArrayAndInfo(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	want := []byte{0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d, 0x3c}
	if got := serializeLargeBlobs(t, nil); !bytes.Equal(got, want) {
		t.Fatalf("test helper: empty array %x", got)
	}
	if got := tk.readLargeBlobs(t, maxLargeBlobFragment); !bytes.Equal(got, want) {
		t.Fatalf("initial array %x, want %x", got, want)
	}
	info := tk.info(t)
	if !info.Options["largeBlobs"] || info.MaxSerializedLargeBlobArray < 4096 {
		t.Fatalf("getInfo: largeBlobs=%v maxSerializedLargeBlobArray=%d", info.Options["largeBlobs"], info.MaxSerializedLargeBlobArray)
	}
}

func TestLargeBlobsWriteAndRead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		entries int
		frag    int
	}{
		{"one fragment", 2, maxLargeBlobFragment},
		{"three fragments", 3, 1000},
		{"tiny fragments", 1, 7},
		{"maximum size", 0, 4000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tk := newTestKey(t)
			var entries []any
			for i := range tc.entries {
				entries = append(entries, blobEntry(600, byte(i)))
			}
			array := serializeLargeBlobs(t, entries)
			if tc.entries == 0 { // fill to exactly the maximum
				n := MaxSerializedLargeBlobArray
				for len(array) != MaxSerializedLargeBlobArray && n > 0 {
					array = serializeLargeBlobs(t, []any{blobEntry(n, 0xAA)})
					n -= len(array) - MaxSerializedLargeBlobArray
				}
				if len(array) != MaxSerializedLargeBlobArray {
					t.Fatalf("test setup: %d bytes", len(array))
				}
			}
			if st := (lbWriter{tk: tk}).write(t, array, tc.frag); st != StatusOK {
				t.Fatalf("write: %v", st)
			}
			for _, n := range []int{maxLargeBlobFragment, 1000, 64} {
				if got := tk.readLargeBlobs(t, n); !bytes.Equal(got, array) {
					t.Fatalf("read back with gets of %d: %d bytes, want %d", n, len(got), len(array))
				}
			}
			// Reads at offsets return the matching slice; offset == length is empty.
			for _, c := range []struct{ off, n, want int }{
				{0, 10, 10}, {5, 20, 20}, {len(array) - 3, 10, 3}, {len(array), 10, 0}, {len(array) - 1, 0, 0},
			} {
				st, out := tk.call(t, CmdLargeBlobs, map[int]any{1: c.n, 3: c.off})
				var r LargeBlobsResponse
				if st != StatusOK || decode(out, &r) != nil {
					t.Fatalf("get %d at %d: %v", c.n, c.off, st)
				}
				if !bytes.Equal(r.Config, array[c.off:c.off+c.want]) {
					t.Fatalf("get %d at %d: %x", c.n, c.off, r.Config)
				}
			}
			if st, _ := tk.call(t, CmdLargeBlobs, map[int]any{1: 1, 3: len(array) + 1}); st != ErrInvalidParameter {
				t.Fatalf("get past the end: %v", st)
			}
			// The array survives a power cycle and a restart over the same store.
			tk.PowerCycle()
			a2, err := New(Config{KeyStore: tk.keys, Store: tk.store})
			if err != nil {
				t.Fatal(err)
			}
			tk2 := &testKey{Authenticator: a2, store: tk.store, keys: tk.keys}
			if got := tk2.readLargeBlobs(t, maxLargeBlobFragment); !bytes.Equal(got, array) {
				t.Fatal("array lost across a restart")
			}
		})
	}
}

func TestLargeBlobsIntegrityFailureKeepsOldArray(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	w := lbWriter{tk: tk}
	old := serializeLargeBlobs(t, []any{blobEntry(100, 1)})
	if st := w.write(t, old, maxLargeBlobFragment); st != StatusOK {
		t.Fatal(st)
	}
	bad := serializeLargeBlobs(t, []any{blobEntry(1500, 2)})
	bad[len(bad)-1] ^= 1
	if st := w.fragment(t, 0, bad[:1000], len(bad)); st != StatusOK {
		t.Fatalf("first fragment: %v", st)
	}
	if st := w.fragment(t, 1000, bad[1000:], -1); st != ErrIntegrityFailure {
		t.Fatalf("bad checksum: %v, want INTEGRITY_FAILURE", st)
	}
	if got := tk.readLargeBlobs(t, maxLargeBlobFragment); !bytes.Equal(got, old) {
		t.Fatal("a failed write replaced the array")
	}
	// The failed write is over: continuing it is out of sequence.
	if st := w.fragment(t, 1000, bad[1000:], -1); st != ErrInvalidSeq {
		t.Fatalf("continue after failure: %v", st)
	}
	// A single-fragment write that is not a CBOR array at all but has a
	// valid checksum is stored: the authenticator checks only the checksum.
	junk := []byte("seventeen bytes!!")
	h := sha256.Sum256(junk)
	junk = append(junk, h[:16]...)
	if st := w.write(t, junk, maxLargeBlobFragment); st != StatusOK {
		t.Fatalf("opaque array: %v", st)
	}
}

func TestLargeBlobsSequence(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	w := lbWriter{tk: tk}
	array := serializeLargeBlobs(t, []any{blobEntry(300, 3)})
	// No write in progress.
	if st := w.fragment(t, 10, array[10:20], -1); st != ErrInvalidSeq {
		t.Fatalf("continuation without a start: %v", st)
	}
	if st := w.fragment(t, 0, array[:100], len(array)); st != StatusOK {
		t.Fatal(st)
	}
	for _, off := range []int{99, 101, 200} { // rewind, skip
		if st := w.fragment(t, off, array[off:off+10], -1); st != ErrInvalidSeq {
			t.Fatalf("offset %d: %v, want INVALID_SEQ", off, st)
		}
	}
	// A length with a non-zero offset.
	if st := w.fragment(t, 100, array[100:200], len(array)); st != ErrInvalidParameter {
		t.Fatalf("length with offset 100: %v", st)
	}
	// Overshooting the announced length.
	if st := w.fragment(t, 100, append(bytes.Clone(array[100:]), 0), -1); st != ErrInvalidParameter {
		t.Fatalf("overshoot: %v", st)
	}
	// The rejected fragments did not disturb the write in progress.
	if st := w.fragment(t, 100, array[100:200], -1); st != StatusOK {
		t.Fatal(st)
	}
	// A power cycle drops the write in progress.
	tk.PowerCycle()
	if st := w.fragment(t, 200, array[200:], -1); st != ErrInvalidSeq {
		t.Fatalf("after power cycle: %v", st)
	}
	// Offset 0 restarts a write at any time.
	if st := w.fragment(t, 0, array[:50], len(array)); st != StatusOK {
		t.Fatal(st)
	}
	if st := w.fragment(t, 0, array[:100], len(array)); st != StatusOK {
		t.Fatal(st)
	}
	if st := w.fragment(t, 100, array[100:], -1); st != StatusOK {
		t.Fatal(st)
	}
	if got := tk.readLargeBlobs(t, maxLargeBlobFragment); !bytes.Equal(got, array) {
		t.Fatal("restarted write not stored")
	}
	// Any other command in between does not end a large-blob write.
	if st := w.fragment(t, 0, array[:100], len(array)); st != StatusOK {
		t.Fatal(st)
	}
	tk.call(t, CmdGetInfo, nil)
	tk.call(t, CmdLargeBlobs, map[int]any{1: 10, 3: 0})
	if st := w.fragment(t, 100, array[100:], -1); st != StatusOK {
		t.Fatalf("write interleaved with other commands: %v", st)
	}
}

func TestLargeBlobsBadInput(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	frag := bytes.Repeat([]byte{1}, 20)
	raw := func(b ...byte) []byte { return b }
	tests := []struct {
		name   string
		params []byte
		want   StatusCode
	}{
		{"empty", nil, ErrInvalidCBOR},
		{"not a map", raw(0x80), ErrCBORUnexpectedType},
		{"empty map", raw(0xA0), ErrInvalidParameter},
		{"missing offset (get)", mustEncode(t, map[int]any{1: 10}), ErrInvalidParameter},
		{"missing offset (set)", mustEncode(t, map[int]any{2: frag, 4: 20}), ErrInvalidParameter},
		{"neither get nor set", mustEncode(t, map[int]any{3: 0}), ErrInvalidParameter},
		{"get and set", mustEncode(t, map[int]any{1: 10, 2: frag, 3: 0, 4: 20}), ErrInvalidParameter},
		{"get with length", mustEncode(t, map[int]any{1: 10, 3: 0, 4: 20}), ErrInvalidParameter},
		{"get with pinUvAuthParam", mustEncode(t, map[int]any{1: 10, 3: 0, 5: make([]byte, 32), 6: 2}), ErrInvalidParameter},
		{"get with pinUvAuthProtocol", mustEncode(t, map[int]any{1: 10, 3: 0, 6: 2}), ErrInvalidParameter},
		{"get too long", mustEncode(t, map[int]any{1: maxLargeBlobFragment + 1, 3: 0}), ErrInvalidLength},
		{"get huge", mustEncode(t, map[int]any{1: uint64(1) << 63, 3: 0}), ErrInvalidLength},
		{"get past the end", mustEncode(t, map[int]any{1: 1, 3: 18}), ErrInvalidParameter},
		{"get huge offset", mustEncode(t, map[int]any{1: 1, 3: uint64(1) << 63}), ErrInvalidParameter},
		{"set fragment too long", mustEncode(t, map[int]any{2: make([]byte, maxLargeBlobFragment+1), 3: 0, 4: 8000}), ErrInvalidLength},
		{"set without length", mustEncode(t, map[int]any{2: frag, 3: 0}), ErrInvalidParameter},
		{"set length too small", mustEncode(t, map[int]any{2: frag[:16], 3: 0, 4: 16}), ErrInvalidParameter},
		{"set storage full", mustEncode(t, map[int]any{2: frag, 3: 0, 4: MaxSerializedLargeBlobArray + 1}), ErrLargeBlobStorageFull},
		{"set storage full huge", mustEncode(t, map[int]any{2: frag, 3: 0, 4: uint64(1) << 63}), ErrLargeBlobStorageFull},
		{"set length with offset", mustEncode(t, map[int]any{2: frag, 3: 5, 4: 20}), ErrInvalidParameter},
		{"set overshoots length", mustEncode(t, map[int]any{2: frag, 3: 0, 4: 19}), ErrInvalidParameter},
		{"set huge offset", mustEncode(t, map[int]any{2: frag, 3: uint64(1) << 40}), ErrInvalidSeq},
		{"get is text", mustEncode(t, map[int]any{1: "10", 3: 0}), ErrCBORUnexpectedType},
		{"get is negative", mustEncode(t, map[int]any{1: -1, 3: 0}), ErrCBORUnexpectedType},
		{"set is text", mustEncode(t, map[int]any{2: "abc", 3: 0, 4: 20}), ErrCBORUnexpectedType},
		{"offset is negative", mustEncode(t, map[int]any{1: 1, 3: -1}), ErrCBORUnexpectedType},
		{"length is bytes", mustEncode(t, map[int]any{2: frag, 3: 0, 4: []byte{20}}), ErrCBORUnexpectedType},
		{"pinUvAuthParam is text", mustEncode(t, map[int]any{2: frag, 3: 0, 4: 20, 5: "x"}), ErrCBORUnexpectedType},
		{"duplicate key", raw(0xA2, 0x03, 0x00, 0x03, 0x00), ErrInvalidCBOR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if st, out := tk.Transact(context.Background(), CmdLargeBlobs, tc.params); st != tc.want || len(out) != 0 {
				t.Fatalf("got %v (%d body bytes), want %v", st, len(out), tc.want)
			}
		})
	}
	// None of that changed the array.
	if got := tk.readLargeBlobs(t, 100); !bytes.Equal(got, initialLargeBlobArray) {
		t.Fatalf("array changed: %x", got)
	}
	// Unknown keys are ignored.
	if st, _ := tk.call(t, CmdLargeBlobs, map[int]any{1: 17, 3: 0, 99: "x"}); st != StatusOK {
		t.Fatalf("unknown key: %v", st)
	}
}

func TestLargeBlobsPermissions(t *testing.T) {
	t.Parallel()
	forEachPINProtocol(t, "", func(t *testing.T, v uint) {
		tk, pp := pinKey(t, v)
		array := serializeLargeBlobs(t, []any{blobEntry(900, 7)})

		// Reading needs nothing.
		if got := tk.readLargeBlobs(t, 100); !bytes.Equal(got, initialLargeBlobArray) {
			t.Fatal("read with a PIN set")
		}
		// Writing needs a pinUvAuthParam once a PIN is set.
		if st := (lbWriter{tk: tk}).write(t, array, 500); st != ErrPUATRequired {
			t.Fatalf("v%d: no token: %v, want PUAT_REQUIRED", v, st)
		}
		// A token without lbw.
		tok, st := pp.token("1234", PermMakeCredential|PermGetAssertion, "example.com")
		if st != StatusOK {
			t.Fatal(st)
		}
		if st := (lbWriter{tk: tk, pp: pp, token: tok}).write(t, array, 500); st != ErrPINAuthInvalid {
			t.Fatalf("v%d: token without lbw: %v, want PIN_AUTH_INVALID", v, st)
		}
		// A token with lbw.
		tok, st = pp.token("1234", PermLargeBlobWrite, "")
		if st != StatusOK {
			t.Fatalf("v%d: lbw token: %v", v, st)
		}
		w := lbWriter{tk: tk, pp: pp, token: tok}
		// The parameter must cover this offset and this fragment.
		for _, tc := range []struct {
			name  string
			param []byte
			proto any
			want  StatusCode
		}{
			{"other offset", pp.proto.Authenticate(tok, largeBlobAuthMessage(1, array[:500])), v, ErrPINAuthInvalid},
			{"other fragment", pp.proto.Authenticate(tok, largeBlobAuthMessage(0, array[:499])), v, ErrPINAuthInvalid},
			{"missing protocol", pp.proto.Authenticate(tok, largeBlobAuthMessage(0, array[:500])), nil, ErrMissingParameter},
			{"unknown protocol", pp.proto.Authenticate(tok, largeBlobAuthMessage(0, array[:500])), 3, ErrInvalidParameter},
			{"empty param", []byte{}, v, ErrPINAuthInvalid},
		} {
			req := map[int]any{2: array[:500], 3: 0, 4: len(array), 5: tc.param}
			if tc.proto != nil {
				req[6] = tc.proto
			}
			if st, _ := tk.call(t, CmdLargeBlobs, req); st != tc.want {
				t.Errorf("v%d %s: %v, want %v", v, tc.name, st, tc.want)
			}
		}
		if st := w.write(t, array, 500); st != StatusOK {
			t.Fatalf("v%d: write with lbw token: %v", v, st)
		}
		if got := tk.readLargeBlobs(t, maxLargeBlobFragment); !bytes.Equal(got, array) {
			t.Fatal("array not written")
		}
		// A continuation fragment also needs the token.
		if st := w.fragment(t, 0, array[:500], len(array)); st != StatusOK {
			t.Fatal(st)
		}
		if st := (lbWriter{tk: tk}).fragment(t, 500, array[500:], -1); st != ErrPUATRequired {
			t.Fatalf("v%d: continuation without token: %v", v, st)
		}
		// lbw survives a makeCredential that used the same token (CTAP 2.1
		// §6.1.2 step 19 clears every other permission).
		tok, _ = pp.token("1234", PermMakeCredential|PermLargeBlobWrite, "example.com")
		mc := pp.withToken(mcParams("example.com", []byte("u"), "n", true), tok, 8)
		if st, _ := tk.call(t, CmdMakeCredential, mc); st != StatusOK {
			t.Fatalf("makeCredential: %v", st)
		}
		if st, _ := tk.call(t, CmdMakeCredential, mc); st != ErrPINAuthInvalid {
			t.Fatalf("mc permission kept after use: %v", st)
		}
		if st := (lbWriter{tk: tk, pp: pp, token: tok}).write(t, initialLargeBlobArray, 500); st != StatusOK {
			t.Fatalf("v%d: lbw after makeCredential: %v", v, st)
		}
		// A power cycle revokes the token.
		tk.PowerCycle()
		if st := (lbWriter{tk: tk, pp: pp, token: tok}).write(t, array, 500); st != ErrPINAuthInvalid {
			t.Fatalf("v%d: token after power cycle: %v", v, st)
		}
	})
}

func TestLargeBlobsBuiltInUVNeedsToken(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t, func(c *Config) { c.UV = UVAuto })
	if st := (lbWriter{tk: tk}).write(t, initialLargeBlobArray, 100); st != ErrPUATRequired {
		t.Fatalf("UV-protected key without token: %v", st)
	}
	// A token from built-in UV (getPinUvAuthTokenUsingUvWithPermissions).
	pp := newPINPlatform(t, tk, 2)
	ka, shared := pp.encapsulate()
	var resp ClientPINResponse
	tk.callOK(t, CmdClientPIN, map[int]any{1: 2, 2: ClientPINGetTokenUsingUV, 3: ka, 9: uint(PermLargeBlobWrite)}, &resp)
	raw, err := shared.Decrypt(resp.PinUvAuthToken)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParsePINUVAuthToken(pp.proto, raw)
	if err != nil {
		t.Fatal(err)
	}
	array := serializeLargeBlobs(t, []any{blobEntry(10, 1)})
	if st := (lbWriter{tk: tk, pp: pp, token: tok}).write(t, array, 20); st != StatusOK {
		t.Fatalf("write with UV token: %v", st)
	}
}

func TestLargeBlobsReset(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	array := serializeLargeBlobs(t, []any{blobEntry(50, 5)})
	if st := (lbWriter{tk: tk}).write(t, array, 1000); st != StatusOK {
		t.Fatal(st)
	}
	// Leave a write in progress too.
	if st := (lbWriter{tk: tk}).fragment(t, 0, array[:10], len(array)); st != StatusOK {
		t.Fatal(st)
	}
	if st, _ := tk.call(t, CmdReset, nil); st != StatusOK {
		t.Fatal(st)
	}
	if got := tk.readLargeBlobs(t, 1000); !bytes.Equal(got, initialLargeBlobArray) {
		t.Fatalf("after reset: %x", got)
	}
	if st := (lbWriter{tk: tk}).fragment(t, 10, array[10:], -1); st != ErrInvalidSeq {
		t.Fatalf("write in progress survived reset: %v", st)
	}
}

// FuzzLargeBlobs sends two arbitrary largeBlobs requests (so that fragment
// sequences are reached) to one authenticator: it must never panic, answer
// a status byte alone on error, return at most maxFragmentLength bytes, and
// the stored array must always end in a valid checksum.
func FuzzLargeBlobs(f *testing.F) {
	enc := func(v any) []byte {
		b, err := encode(v)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	array := serializeLargeBlobs(f, []any{blobEntry(100, 9)})
	f.Add(enc(map[int]any{2: array[:50], 3: 0, 4: len(array)}), enc(map[int]any{2: array[50:], 3: 50}))
	f.Add(enc(map[int]any{2: array, 3: 0, 4: len(array)}), enc(map[int]any{1: 64, 3: 10}))
	f.Add(enc(map[int]any{1: 17, 3: 0}), enc(map[int]any{1: maxLargeBlobFragment, 3: 17}))
	f.Add(enc(map[int]any{2: initialLargeBlobArray, 3: 0, 4: 17, 5: []byte{1, 2}, 6: 1}), []byte{})
	f.Add([]byte{0xA1, 0x03, 0x00}, []byte{0xA2, 0x01, 0x1B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, 0x00})
	tk := newTestKey(f)
	f.Fuzz(func(t *testing.T, first, second []byte) {
		for _, params := range [][]byte{first, second} {
			body, ok := fuzzedAnswer(t, tk.HandleCBOR(context.Background(), 1, append([]byte{CmdLargeBlobs}, params...), nil))
			if ok && len(body) > 0 {
				var r LargeBlobsResponse
				if err := decode(body, &r); err != nil || r.Config == nil || len(r.Config) > maxLargeBlobFragment {
					t.Fatalf("get response %x: %v", body, err)
				}
			}
		}
		stored, err := tk.largeBlobArray()
		if err != nil || !largeBlobChecksumOK(stored) || len(stored) > MaxSerializedLargeBlobArray {
			t.Fatalf("stored array %x fails its checksum", stored)
		}
	})
}
