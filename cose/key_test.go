package cose

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// vector is one entry of testdata/vectors.json. Unknown fields fail the test.
type vector struct {
	Name      string `json:"name"`
	Source    string `json:"source"`
	CBOR      string `json:"cbor"`      // input
	Canonical string `json:"canonical"` // expected Marshal output
	Error     string `json:"error"`     // "", "invalid" or "unsupported"
	Private   string `json:"private"`   // EC scalar or Ed25519 seed, checked against the public key
	Message   string `json:"message"`
	Signature string `json:"signature"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	f, err := os.Open("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	var vs []vector
	if err := dec.Decode(&vs); err != nil {
		t.Fatalf("testdata/vectors.json: %v", err)
	}
	return vs
}

// unhex decodes hex written with spaces, newlines and # comments.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "#")
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			if v.Source == "" {
				t.Fatal("vector without a source")
			}
			k, err := ParseKey(unhex(t, v.CBOR))
			switch v.Error {
			case "unsupported":
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("ParseKey error = %v, want ErrUnsupported", err)
				}
				return
			case "invalid":
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("ParseKey error = %v, want ErrInvalidKey", err)
				}
				return
			case "":
			default:
				t.Fatalf("unknown error kind %q", v.Error)
			}
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			got, err := k.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, v.Canonical); !bytes.Equal(got, want) {
				t.Fatalf("Marshal =\n%x\nwant\n%x", got, want)
			}
			pub, err := k.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			if v.Private != "" {
				checkPrivate(t, k, pub, unhex(t, v.Private))
			}
			if v.Signature != "" {
				if err := Verify(pub, k.Alg, unhex(t, v.Message), unhex(t, v.Signature)); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				sig := unhex(t, v.Signature)
				sig[0] ^= 1
				if err := Verify(pub, k.Alg, unhex(t, v.Message), sig); !errors.Is(err, ErrInvalidSignature) {
					t.Fatalf("Verify(tampered) = %v", err)
				}
			}
		})
	}
}

// checkPrivate proves the vector's public key is the one its private key
// yields, so a typo in either fails loudly.
func checkPrivate(t *testing.T, k *Key, pub any, priv []byte) {
	t.Helper()
	switch k.Kty {
	case KeyTypeEC2:
		curve := elliptic.P256()
		if k.Crv == CurveP384 {
			curve = elliptic.P384()
		}
		sk, err := ecdsa.ParseRawPrivateKey(curve, priv)
		if err != nil {
			t.Fatal(err)
		}
		if !sk.PublicKey.Equal(pub) {
			t.Fatal("public key does not match the private scalar")
		}
	case KeyTypeOKP:
		sk := ed25519.NewKeyFromSeed(priv)
		if !sk.Public().(ed25519.PublicKey).Equal(pub) {
			t.Fatal("public key does not match the seed")
		}
	}
}

// The PIN/UV auth protocol key-agreement form, annotated byte by byte.
func TestKeyAgreementGolden(t *testing.T) {
	t.Parallel()
	want := unhex(t, `
		a5                                   # map(5)
		  01 02                              # 1 kty: 2 (EC2)
		  03 38 18                           # 3 alg: -25 (ECDH-ES+HKDF-256)
		  20 01                              # -1 crv: 1 (P-256)
		  21 58 20                           # -2 x: bytes(32)
		    65eda5a12577c2bae829437fe338701a10aaa375e1bb5b5de108de439c08551d
		  22 58 20                           # -3 y: bytes(32)
		    1e52ed75701163f7f9e40ddf9f341b3dc9ba860af7e0ca7ca7e9eecd0084d19c`)
	ec, err := ecdh.P256().NewPublicKey(append([]byte{4}, unhex(t, `
		65eda5a12577c2bae829437fe338701a10aaa375e1bb5b5de108de439c08551d
		1e52ed75701163f7f9e40ddf9f341b3dc9ba860af7e0ca7ca7e9eecd0084d19c`)...))
	if err != nil {
		t.Fatal(err)
	}
	got, err := EncodePublicKey(ec, AlgECDHESHKDF256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	k, err := ParseKey(got)
	if err != nil {
		t.Fatal(err)
	}
	back, err := k.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(ec) {
		t.Fatal("ECDH() does not return the encoded key")
	}
	// The same bytes work as a field of a CTAP message struct.
	var msg struct {
		KeyAgreement *Key `cbor:"1,keyasint"`
	}
	if err := cbor.Unmarshal(append([]byte{0xa1, 0x01}, want...), &msg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(msg.KeyAgreement, k) {
		t.Fatalf("UnmarshalCBOR = %+v, want %+v", msg.KeyAgreement, k)
	}
	enc, err := cbor.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc[2:], want) {
		t.Fatalf("MarshalCBOR = %x", enc)
	}
}

// exampleHex is the WebAuthn ES256 example key.
func exampleHex() string {
	return "a5010203262001215820" +
		"65eda5a12577c2bae829437fe338701a10aaa375e1bb5b5de108de439c08551d" + "225820" +
		"1e52ed75701163f7f9e40ddf9f341b3dc9ba860af7e0ca7ca7e9eecd0084d19c"
}

const (
	exX = "65eda5a12577c2bae829437fe338701a10aaa375e1bb5b5de108de439c08551d"
	exY = "1e52ed75701163f7f9e40ddf9f341b3dc9ba860af7e0ca7ca7e9eecd0084d19c"
)

func TestParseKeyRejects(t *testing.T) {
	t.Parallel()
	offY := exY[:62] + "9d" // last byte changed: off the curve
	tests := []struct {
		name string
		hex  string
		want error
	}{
		{"empty", "", ErrInvalidKey},
		{"null", "f6", ErrInvalidKey},
		{"array", "80", ErrInvalidKey},
		{"empty map", "a0", ErrInvalidKey},
		{"trailing byte", exampleHex() + "00", ErrInvalidKey},
		{"truncated", exampleHex()[:40], ErrInvalidKey},
		{"duplicate kty", "a6010203262001215820" + exX + "225820" + exY + "0102", ErrInvalidKey},
		{"duplicate x", "a6010203262001215820" + exX + "215820" + exX + "225820" + exY, ErrInvalidKey},
		{"duplicate ignored label", "a7010203262001215820" + exX + "225820" + exY + "0200" + "0200", ErrInvalidKey},
		{"indefinite map", "bf010203262001215820" + exX + "225820" + exY + "ff", ErrInvalidKey},
		{"indefinite bytes", "a5010203262001215f5820" + exX + "ff225820" + exY, ErrInvalidKey},
		{"tagged map", "d818" + exampleHex(), ErrInvalidKey},
		{"tagged x", "a501020326200121c25820" + exX + "225820" + exY, ErrInvalidKey},
		{"deep nesting", "a6010203262001215820" + exX + "225820" + exY + "04818181818101", ErrInvalidKey},
		{"text label", "a6010203262001215820" + exX + "225820" + exY + "616101", ErrInvalidKey},
		{"kty text", "a5016145" + "03262001215820" + exX + "225820" + exY, ErrInvalidKey},
		{"kty missing", "a403262001215820" + exX + "225820" + exY, ErrInvalidKey},
		{"kty symmetric", "a20104" + "2040", ErrUnsupported},
		{"alg text", "a50102036145" + "2001215820" + exX + "225820" + exY, ErrInvalidKey},
		{"crv missing", "a40102032621582000" + "", ErrInvalidKey},
		{"x short", "a5010203262001215819" + exX[:62] + "225820" + exY, ErrInvalidKey},
		{"x long", "a5010203262001215821" + exX + "00" + "225820" + exY, ErrInvalidKey},
		{"x text", "a5010203262001217820" + exX[:64] + "225820" + exY, ErrInvalidKey},
		{"y missing", "a4010203262001215820" + exX, ErrInvalidKey},
		{"compressed y", "a5010203262001215820" + exX + "22f5", ErrUnsupported},
		{"off curve", "a5010203262001215820" + exX + "225820" + offY, ErrInvalidKey},
		{"private d", "a6010203262001215820" + exX + "225820" + exY + "235820" + exX, ErrInvalidKey},
		{"unknown EC2 param", "a6010203262001215820" + exX + "225820" + exY + "3863" + "00", ErrInvalidKey},
		{"ES384 on P-256", "a5010203382220" + "01215820" + exX + "225820" + exY, ErrInvalidKey},
		{"EdDSA on EC2", "a5010203272001215820" + exX + "225820" + exY, ErrInvalidKey},
		{"ES512 on EC2", "a5010203382320" + "01215820" + exX + "225820" + exY, ErrUnsupported},
		{"P-521 x too short", "a50102033823200321" + "5820" + exX + "225820" + exY, ErrUnsupported},
		{"X25519", "a3010120042158200000000000000000000000000000000000000000000000000000000000000000", ErrUnsupported},
		{"Ed25519 short", "a4010103272006215819" + exX[:62], ErrInvalidKey},
		{"Ed25519 ES256", "a4010103262006215820" + exX, ErrInvalidKey},
		{"Ed25519 with d", "a5010103272006215820" + exX + "235820" + exX, ErrInvalidKey},
		{"RSA short modulus", "a4010303390100" + "2043" + "c00001" + "2143010001", ErrInvalidKey},
		{"RSA missing e", "a3010303390100" + "2043" + "c00001", ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := ParseKey(unhex(t, tt.hex))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseKey = %v, %v; want %v", k, err, tt.want)
			}
			if k != nil {
				t.Fatal("non-nil key with an error")
			}
			if pub, alg, err := DecodePublicKey(unhex(t, tt.hex)); !errors.Is(err, tt.want) || pub != nil || alg != 0 {
				t.Fatalf("DecodePublicKey = %v, %v, %v; want %v", pub, alg, err, tt.want)
			}
		})
	}
}

// Keys whose coordinates have leading zero bytes keep their fixed size.
func TestFixedSizeCoordinates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		curve elliptic.Curve
		alg   Algorithm
		size  int
	}{{elliptic.P256(), AlgES256, 32}, {elliptic.P384(), AlgES384, 48}} {
		var sk *ecdsa.PrivateKey
		for i := 0; ; i++ {
			if i == 5000 {
				t.Fatal("no key with a short x in 5000 tries")
			}
			var err error
			if sk, err = ecdsa.GenerateKey(tc.curve, rand.Reader); err != nil {
				t.Fatal(err)
			}
			if len(sk.X.Bytes()) < tc.size { // the anti-pattern would break here
				break
			}
		}
		k, err := FromPublicKey(&sk.PublicKey, tc.alg)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.X) != tc.size || len(k.Y) != tc.size || k.X[0] != 0 {
			t.Fatalf("coordinates %x / %x not fixed-size", k.X, k.Y)
		}
		roundTrip(t, k, &sk.PublicKey)
	}
}

// reencodes checks that k encodes, decodes to an equal Key and encodes to
// the same bytes again, and returns its encoding.
func reencodes(t testing.TB, k *Key) []byte {
	t.Helper()
	b1, err := k.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	k2, err := ParseKey(b1)
	if err != nil {
		t.Fatalf("ParseKey(Marshal()): %v", err)
	}
	if !reflect.DeepEqual(k, k2) {
		t.Fatalf("decoded %+v, want %+v", k2, k)
	}
	b2, err := k2.Marshal()
	if err != nil || !bytes.Equal(b1, b2) {
		t.Fatalf("re-encoding differs:\n%x\n%x (%v)", b1, b2, err)
	}
	return b1
}

// roundTrip checks encode → decode → encode is byte-identical and the
// crypto key survives.
func roundTrip(t *testing.T, k *Key, pub any) {
	t.Helper()
	reencodes(t, k)
	back, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if !back.(equaler).Equal(pub) {
		t.Fatalf("PublicKey() = %v, want %v", back, pub)
	}
}

func TestRoundTripAndSign(t *testing.T) {
	t.Parallel()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg  Algorithm
		s    crypto.Signer
		size int
	}{
		{AlgES256, p256, 77},
		{AlgES384, p384, 110},
		{AlgEdDSA, ed, 42},
		{AlgRS256, rsaKey, 272},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			t.Parallel()
			k, err := FromPublicKey(tc.s.Public(), tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := k.Marshal()
			if len(b) != tc.size {
				t.Errorf("encoded length %d, want %d", len(b), tc.size)
			}
			roundTrip(t, k, tc.s.Public())
			type equaler interface{ Equal(crypto.PublicKey) bool }
			if pub, alg, err := DecodePublicKey(b); err != nil || alg != tc.alg || !tc.s.Public().(equaler).Equal(pub) {
				t.Errorf("DecodePublicKey(EncodePublicKey) = %v, %v, %v", pub, alg, err)
			}
			msg := []byte("authenticatorData || clientDataHash")
			sig, err := Sign(tc.s, tc.alg, msg)
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := k.PublicKey()
			if err := Verify(pub, tc.alg, msg, sig); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if err := Verify(pub, tc.alg, append(msg, 0), sig); !errors.Is(err, ErrInvalidSignature) {
				t.Fatalf("Verify(other message) = %v", err)
			}
			if err := Verify(pub, tc.alg, msg, nil); !errors.Is(err, ErrInvalidSignature) {
				t.Fatalf("Verify(nil sig) = %v", err)
			}
		})
	}
}

func TestFromPublicKeyRejects(t *testing.T) {
	t.Parallel()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	tests := []struct {
		name string
		pub  any
		alg  Algorithm
		want error
	}{
		{"nil", nil, AlgES256, ErrUnsupported},
		{"nil ecdsa", (*ecdsa.PublicKey)(nil), AlgES256, ErrInvalidKey},
		{"empty ecdsa", &ecdsa.PublicKey{Curve: elliptic.P256()}, AlgES256, ErrInvalidKey},
		{"ecdsa P-521", &p521.PublicKey, AlgES256, ErrUnsupported},
		{"ES384 on P-256", &p256.PublicKey, AlgES384, ErrInvalidKey},
		{"EdDSA on P-256", &p256.PublicKey, AlgEdDSA, ErrInvalidKey},
		{"unknown alg", &p256.PublicKey, Algorithm(-36), ErrUnsupported},
		{"X25519", x25519.PublicKey(), AlgECDHESHKDF256, ErrUnsupported},
		{"short ed25519", ed25519.PublicKey{1, 2, 3}, AlgEdDSA, ErrInvalidKey},
		{"RSA 1024", &rsa1024.PublicKey, AlgRS256, ErrInvalidKey},
		{"nil rsa", (*rsa.PublicKey)(nil), AlgRS256, ErrInvalidKey},
		{"private key", p256, AlgES256, ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := FromPublicKey(tt.pub, tt.alg); !errors.Is(err, tt.want) {
				t.Fatalf("FromPublicKey = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMarshalRejects(t *testing.T) {
	t.Parallel()
	x := unhex(t, exX)
	for _, k := range []*Key{
		nil,
		{},
		{Kty: KeyTypeEC2, Crv: CurveP256, X: x},
		{Kty: KeyTypeEC2, Crv: CurveP384, X: x, Y: x},
		{Kty: KeyTypeEC2, Crv: CurveP256, X: x, Y: x, N: x},
		{Kty: KeyTypeOKP, Crv: CurveEd25519, X: x, Y: x},
		{Kty: KeyTypeRSA, N: x, E: []byte{1, 0, 1}},
		{Kty: KeyTypeRSA, N: append([]byte{0}, bytes.Repeat([]byte{0xff}, 255)...), E: []byte{1, 0, 1}},
		{Kty: KeyTypeRSA, N: bytes.Repeat([]byte{0xff}, 256), E: []byte{0, 1, 0, 1}},
		{Kty: KeyTypeRSA, N: bytes.Repeat([]byte{0xff}, 256), E: []byte{2}},
	} {
		if b, err := k.Marshal(); err == nil {
			t.Errorf("Marshal(%+v) = %x, want an error", k, b)
		}
	}
	if _, err := (&Key{Kty: KeyTypeEC2, Crv: CurveP256, X: x, Y: x}).PublicKey(); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("PublicKey(off-curve) = %v", err)
	}
	if _, err := (&Key{Kty: KeyTypeEC2, Crv: CurveP256, X: x, Y: x}).ECDH(); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("ECDH(off-curve) = %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	msg := []byte("m")
	sig, err := Sign(p256, AlgES256, msg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pub  any
		alg  Algorithm
		want error
	}{
		{"wrong alg", &p256.PublicKey, AlgES384, ErrInvalidKey},
		{"unknown alg", &p256.PublicKey, AlgECDHESHKDF256, ErrUnsupported},
		{"nil key", nil, AlgES256, ErrInvalidKey},
		{"incomplete key", &ecdsa.PublicKey{Curve: elliptic.P256()}, AlgES256, ErrInvalidKey},
		{"short ed25519", ed25519.PublicKey{1}, AlgEdDSA, ErrInvalidKey},
		{"nil rsa", (*rsa.PublicKey)(nil), AlgRS256, ErrInvalidKey},
	} {
		if err := Verify(tc.pub, tc.alg, msg, sig); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := Sign(p256, AlgEdDSA, msg); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Sign(P-256, EdDSA) = %v", err)
	}
}

func FuzzCOSEKey(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(unhex(f, v.CBOR))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKey(b)
		if err != nil {
			if k != nil {
				t.Fatal("key and error")
			}
			if !errors.Is(err, ErrInvalidKey) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		m1 := reencodes(t, k)
		pub, err := k.PublicKey()
		if err != nil {
			t.Fatalf("PublicKey of a parsed key: %v", err)
		}
		m3, err := EncodePublicKey(pub, k.Alg)
		if err != nil || !bytes.Equal(m1, m3) {
			t.Fatalf("EncodePublicKey(PublicKey()) = %x (%v), want %x", m3, err, m1)
		}
	})
}
