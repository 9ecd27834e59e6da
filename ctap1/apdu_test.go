package ctap1

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func TestParseCommand(t *testing.T) {
	t.Parallel()
	data := func(n int) []byte { return bytes.Repeat([]byte{0xDA}, n) }
	for _, tc := range []struct {
		name string
		apdu []byte
		data []byte
		ne   int
		err  error
	}{
		{"case 1", []byte{0, 3, 0, 0}, nil, 0, nil},
		{"case 2S", []byte{0, 3, 0, 0, 0x10}, nil, 16, nil},
		{"case 2S Le 0", []byte{0, 3, 0, 0, 0}, nil, 256, nil},
		{"case 3S", append([]byte{0, 1, 0, 0, 3}, data(3)...), data(3), 0, nil},
		{"case 4S", append(append([]byte{0, 1, 0, 0, 3}, data(3)...), 0), data(3), 256, nil},
		{"case 2E", []byte{0, 3, 0, 0, 0, 0x01, 0x00}, nil, 256, nil},
		{"case 2E Le 0", []byte{0, 3, 0, 0, 0, 0, 0}, nil, 65536, nil},
		{"case 3E", append([]byte{0, 1, 0, 0, 0, 0, 64}, data(64)...), data(64), 0, nil},
		{"case 4E", append(append([]byte{0, 1, 0, 0, 0, 0, 64}, data(64)...), 0, 0), data(64), 65536, nil},
		{"case 3E 300 bytes", append([]byte{0, 2, 0, 0, 0, 0x01, 0x2C}, data(300)...), data(300), 0, nil},
		{"Lc 0 then Le (python-fido2)", []byte{0, 3, 0, 0, 0, 0, 0, 0, 0}, nil, 65536, nil},
		{"short Lc 0 then Le", []byte{0, 3, 0, 0, 0, 0xAA}, nil, 0xAA, nil},
		{"too short", []byte{0, 3, 0}, nil, 0, SWWrongLength},
		{"nil", nil, nil, 0, SWWrongLength},
		{"short Lc too big", []byte{0, 1, 0, 0, 3, 1, 2}, nil, 0, SWWrongLength},
		{"short Lc too small", []byte{0, 1, 0, 0, 1, 1, 2, 3}, nil, 0, SWWrongLength},
		{"extended Lc too big", append([]byte{0, 1, 0, 0, 0, 0, 65}, data(64)...), nil, 0, SWWrongLength},
		{"extended Lc too small", append([]byte{0, 1, 0, 0, 0, 0, 63}, data(64)...), nil, 0, SWWrongLength},
		{"extended partial Le", append(append([]byte{0, 1, 0, 0, 0, 0, 64}, data(64)...), 0), nil, 0, SWWrongLength},
		{"extended Lc 0 with data", []byte{0, 1, 0, 0, 0, 0, 0, 1, 2, 3}, nil, 0, SWWrongLength},
		{"extended Lc 0 with one byte", []byte{0, 1, 0, 0, 0, 0, 0, 1}, nil, 0, SWWrongLength},
	} {
		c, err := ParseCommand(tc.apdu)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if !bytes.Equal(c.Data, tc.data) || c.Ne != tc.ne || c.INS != tc.apdu[1] {
			t.Errorf("%s: data %d bytes, Ne %d, INS %#x", tc.name, len(c.Data), c.Ne, c.INS)
		}
	}
}

// FuzzParseCommand: a parsed command re-encodes (extended form) to bytes
// that parse to the same command.
func FuzzParseCommand(f *testing.F) {
	for _, s := range [][]byte{
		{0, 3, 0, 0}, {0, 3, 0, 0, 0}, {0, 3, 0, 0, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 2, 1, 2, 0},
		append([]byte{0, 2, 3, 0, 0, 0, 65}, make([]byte, 65)...), {0, 3, 0, 0, 0, 0xAA},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, apdu []byte) {
		c, err := ParseCommand(apdu)
		if err != nil {
			if err != SWWrongLength {
				t.Fatalf("error %v", err)
			}
			return
		}
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseCommand(b)
		if err != nil {
			t.Fatalf("re-encoded % x does not parse: %v", b, err)
		}
		if c2.CLA != c.CLA || c2.INS != c.INS || c2.P1 != c.P1 || c2.P2 != c.P2 || !bytes.Equal(c2.Data, c.Data) || c2.Ne != c.Ne {
			t.Fatalf("round trip: %+v → % x → %+v", c, b, c2)
		}
	})
}

// brokenToken fails in the ways a Token can.
type brokenToken struct {
	kh      []byte
	failNew bool
}

func (b brokenToken) NewCredential(context.Context, []byte) ([]byte, crypto.Signer, error) {
	if b.failNew {
		return nil, nil, errors.New("key store down")
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return b.kh, k, nil
}
func (brokenToken) Credential(context.Context, []byte, []byte) (crypto.Signer, error) {
	return nil, ErrUnknownKeyHandle
}
func (brokenToken) NextCounter([]byte) (uint32, error)            { return 0, errors.New("no counter") }
func (brokenToken) Confirm(context.Context, string, []byte) error { return nil }
func (brokenToken) Attestation(_ context.Context, k crypto.Signer) (crypto.Signer, []byte, error) {
	cert, err := SelfAttestationCertificate(k, time.Now())
	return k, cert, err
}

// Internal failures answer 6F00 and nothing else.
func TestHandleInternalErrors(t *testing.T) {
	t.Parallel()
	reg, _ := (&Command{INS: InsRegister, Data: make([]byte, 64)}).Encode()
	for _, tc := range []struct {
		name string
		tok  brokenToken
		want StatusWord
	}{
		{"key store down", brokenToken{failNew: true}, SWUnknown},
		{"key handle too long", brokenToken{kh: make([]byte, 256)}, SWUnknown},
		{"empty key handle", brokenToken{kh: []byte{}}, SWUnknown},
		{"255-byte key handle", brokenToken{kh: make([]byte, 255)}, SWNoError},
	} {
		resp := Handle(context.Background(), tc.tok, reg)
		data, sw, _ := SplitResponse(resp)
		if sw != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, sw, tc.want)
		}
		if sw == SWNoError {
			r, err := ParseRegisterResponse(data)
			if err != nil || len(r.KeyHandle) != 255 {
				t.Errorf("%s: %v", tc.name, err)
			}
		} else if len(data) != 0 {
			t.Errorf("%s: data with an error status", tc.name)
		}
	}
}

func TestParseResponses(t *testing.T) {
	t.Parallel()
	if _, err := ParseRegisterResponse([]byte{5}); err == nil {
		t.Error("truncated register response accepted")
	}
	if _, err := ParseAuthenticateResponse([]byte{1, 0, 0, 0, 1}); err == nil {
		t.Error("authenticate response without signature accepted")
	}
	if _, _, err := SplitResponse([]byte{0x90}); err == nil {
		t.Error("one-byte response accepted")
	}
	if got := SWWrongData.Bytes(); !bytes.Equal(got, []byte{0x6A, 0x80}) {
		t.Errorf("SWWrongData.Bytes() = % x", got)
	}
}
