package ctap2

import (
	"bytes"
	"context"
	"testing"
)

// FuzzHandleCBOR feeds arbitrary messages for every command to a live
// authenticator (in-memory store): it must never panic and must answer with
// a status byte, followed by CBOR only on success.
func FuzzHandleCBOR(f *testing.F) {
	seed := func(cmd byte, v any) {
		b, err := encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{cmd}, b...))
	}
	seed(CmdMakeCredential, mcParams("example.com", []byte("u1"), "alice", true))
	seed(CmdMakeCredential, mcParams("example.com", []byte("u2"), "bob", false, -8))
	seed(CmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
	seed(CmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 3: []map[string]any{{"type": "public-key", "id": []byte{1, 2}}}, 5: map[string]bool{"up": false}})
	for _, c := range []byte{CmdGetInfo, CmdGetNextAssertion, CmdReset, CmdSelection, CmdClientPIN, CmdCredentialManagement, CmdCredMgmtPreview, CmdConfig, CmdLargeBlobs} {
		f.Add([]byte{c})
		f.Add([]byte{c, 0xA1, 0x01, 0x01})
	}
	tk := newTestKey(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		out := tk.HandleCBOR(context.Background(), 1, msg, nil)
		if body, ok := fuzzedAnswer(t, out); ok && len(body) > 0 {
			var v any
			if err := decode(body, &v); err != nil {
				t.Fatalf("response is not valid CBOR: %v", err)
			}
			if re, _ := encode(v); !bytes.Equal(re, body) && len(out) < 2048 {
				// Responses must be CTAP2 canonical; re-encoding a generic
				// value must give the same bytes.
				t.Fatalf("response not canonical:\n%x\n%x", body, re)
			}
		}
	})
}

// fuzzedAnswer checks the framing of HandleCBOR's answer to fuzzed input
// (never empty; an error status stands alone) and returns the response
// CBOR and whether the status was OK.
func fuzzedAnswer(t *testing.T, out []byte) (body []byte, ok bool) {
	t.Helper()
	if len(out) == 0 {
		t.Fatal("empty response")
	}
	if out[0] != 0 {
		if len(out) != 1 {
			t.Fatalf("error status %x with a body", out[0])
		}
		return nil, false
	}
	return out[1:], true
}

// FuzzAuthData: parse arbitrary authenticator data; whatever parses must
// re-encode byte-identically.
func FuzzAuthData(f *testing.F) {
	tk := newTestKey(f)
	resp, _ := tk.makeCred(f, mcParams("example.com", []byte("u1"), "alice", true))
	f.Add(resp.AuthData)
	f.Add(bytes.Repeat([]byte{0}, 37))
	f.Add(append(bytes.Repeat([]byte{1}, 32), 0x81, 0, 0, 0, 1, 0xA1, 0x01, 0x02))
	f.Fuzz(func(t *testing.T, b []byte) {
		ad, err := ParseAuthData(b)
		if err != nil {
			if ad != nil {
				t.Fatal("non-nil result with error")
			}
			return
		}
		if got := ad.Marshal(); !bytes.Equal(got, b) {
			t.Fatalf("round trip:\n%x\n%x", b, got)
		}
	})
}
