package ctap2

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// pinHex is a hex string in a vector file.
type pinHex []byte

func (h *pinHex) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

func pinMustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// pinLoadVectors decodes a vector file strictly: an unknown field fails the
// test (as in age's test vectors).
func pinLoadVectors(t *testing.T, name string, v any) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "pinprotocol", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func pinProto(t testing.TB, v uint) PINProtocol {
	t.Helper()
	p, ok := PINProtocolByVersion(v)
	if !ok {
		t.Fatalf("PINProtocolByVersion(%d) not ok", v)
	}
	return p
}

func pinPrivKey(t testing.TB, b []byte) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().NewPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pinShared(t testing.TB, v uint, raw []byte) *SharedSecret {
	t.Helper()
	s, err := newSharedSecret(v, raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pinToken(t testing.TB, p PINProtocol, b []byte) *PINUVAuthToken {
	t.Helper()
	tok, err := ParsePINUVAuthToken(p, b)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func pinCheckBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

func TestPINProtocolByVersion(t *testing.T) {
	t.Parallel()
	for _, v := range []uint{1, 2} {
		p, ok := PINProtocolByVersion(v)
		if !ok || p.Version() != v {
			t.Errorf("PINProtocolByVersion(%d) = %v, %v", v, p, ok)
		}
	}
	for _, v := range []uint{0, 3, 255, ^uint(0)} {
		if p, ok := PINProtocolByVersion(v); ok || p != nil {
			t.Errorf("PINProtocolByVersion(%d) = %v, %v; want nil, false", v, p, ok)
		}
	}
}

// webauthnWorksVectors mirrors testdata/pinprotocol/webauthnworks_pinuvauthprotocol2.json.
type webauthnWorksVectors struct {
	Source                  string
	Notes                   []string
	AuthenticatorPrivateKey pinHex
	AuthenticatorPublicKey  pinHex
	PlatformPrivateKey      pinHex
	PlatformPublicKey       pinHex
	ECDHZ                   pinHex `json:"ecdhZ"`
	P1                      struct {
		SharedSecret, Message, Ciphertext, RawMac, Mac pinHex
	}
	P2 struct {
		AESKey, HMACKey, Message, IV, RawCiphertext, Ciphertext, Mac pinHex
	}
	SetPIN struct {
		PIN                                                      string
		PaddedPIN, NewPinEnc, NewPinEncPlaintext, PinUvAuthParam pinHex
	}
	ChangePIN struct {
		CurrentPIN, NewPIN                             string
		CurrentPinHash, LeftCurrentPinHash, PinHashEnc pinHex
		NewPinPadded, NewPinEnc, PinUvAuthParam        pinHex
	}
	GetPinToken struct {
		SessionPuat, EncryptedPuat pinHex
	}
}

// TestPINProtocolWebauthnWorksVectors checks both protocols against the
// CTAP2.1-Migration-Guide vectors, from both sides of the key agreement.
func TestPINProtocolWebauthnWorksVectors(t *testing.T) {
	t.Parallel()
	var v webauthnWorksVectors
	pinLoadVectors(t, "webauthnworks_pinuvauthprotocol2.json", &v)
	if !strings.Contains(v.Source, "CTAP2.1-Migration-Guide") {
		t.Fatalf("unexpected source %q", v.Source)
	}

	authPriv := pinPrivKey(t, v.AuthenticatorPrivateKey)
	platPriv := pinPrivKey(t, v.PlatformPrivateKey)
	pinCheckBytes(t, "authenticator public key", authPriv.PublicKey().Bytes(), v.AuthenticatorPublicKey)
	pinCheckBytes(t, "platform public key", platPriv.PublicKey().Bytes(), v.PlatformPublicKey)

	// The platform key's x starts with 0x00: COSE must keep all 32 bytes.
	cose := PublicKeyCOSE(platPriv.PublicKey())
	pinCheckBytes(t, "platform COSE x", cose[-2].([]byte), v.PlatformPublicKey[1:33])
	pinCheckBytes(t, "platform COSE y", cose[-3].([]byte), v.PlatformPublicKey[33:])
	platPub, err := ParsePlatformKey(cose[-2].([]byte), cose[-3].([]byte))
	if err != nil {
		t.Fatal(err)
	}
	ka := &KeyAgreement{priv: authPriv}

	p1, p2 := pinProto(t, 1), pinProto(t, 2)
	z, err := pinECDHZ(authPriv, platPriv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	pinCheckBytes(t, "Z", z, v.ECDHZ)

	t.Run("protocol1", func(t *testing.T) {
		// Authenticator side (decapsulate) and platform side agree.
		s, err := ka.SharedSecret(p1, platPub)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := p1.SharedSecret(platPriv, authPriv.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "shared secret", s.raw, v.P1.SharedSecret)
		pinCheckBytes(t, "platform shared secret", ps.raw, v.P1.SharedSecret)

		ct, err := s.Encrypt(v.P1.Message)
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "encrypt", ct, v.P1.Ciphertext)
		pt, err := s.Decrypt(v.P1.Ciphertext)
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "decrypt", pt, v.P1.Message)
		pinCheckBytes(t, "authenticate", s.Authenticate(v.P1.Ciphertext), v.P1.Mac)
		if !s.Verify(v.P1.Ciphertext, v.P1.Mac) {
			t.Error("Verify rejected the vector MAC")
		}
		if s.Verify(v.P1.Ciphertext, v.P1.RawMac) {
			t.Error("protocol 1 Verify accepted the untruncated 32-byte HMAC")
		}
	})

	t.Run("protocol2", func(t *testing.T) {
		s, err := ka.SharedSecret(p2, platPub)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := p2.SharedSecret(platPriv, authPriv.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		want := append(append([]byte(nil), v.P2.HMACKey...), v.P2.AESKey...)
		pinCheckBytes(t, "shared secret", s.raw, want)
		pinCheckBytes(t, "platform shared secret", ps.raw, want)
		pinCheckBytes(t, "HMAC key", s.hmacKey, v.P2.HMACKey)
		pinCheckBytes(t, "AES key", s.aesKey, v.P2.AESKey)

		ct, err := s.encryptWithIV(v.P2.IV, v.P2.Message)
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "encrypt", ct, v.P2.Ciphertext)
		pinCheckBytes(t, "raw ciphertext", ct[16:], v.P2.RawCiphertext)
		pt, err := s.Decrypt(v.P2.Ciphertext)
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "decrypt", pt, v.P2.Message)
		pinCheckBytes(t, "authenticate", s.Authenticate(v.P2.Ciphertext), v.P2.Mac)
		if !s.Verify(v.P2.Ciphertext, v.P2.Mac) {
			t.Error("Verify rejected the vector MAC")
		}
		if s.Verify(v.P2.Ciphertext, v.P2.Mac[:16]) {
			t.Error("protocol 2 Verify accepted a 16-byte MAC")
		}

		// setPIN, as the authenticator sees it.
		padded, err := PadPIN(v.SetPIN.PIN)
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "padded PIN", padded, v.SetPIN.PaddedPIN)
		if !s.Verify(v.SetPIN.NewPinEnc, v.SetPIN.PinUvAuthParam) {
			t.Error("setPIN pinUvAuthParam rejected")
		}
		pt, err = s.Decrypt(v.SetPIN.NewPinEnc)
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "setPIN newPinEnc plaintext (source erratum)", pt, v.SetPIN.NewPinEncPlaintext)

		// changePIN.
		pinCheckBytes(t, "PINHash", PINHash(v.ChangePIN.CurrentPIN), v.ChangePIN.LeftCurrentPinHash)
		pinCheckBytes(t, "PINHash prefix", v.ChangePIN.CurrentPinHash[:16], v.ChangePIN.LeftCurrentPinHash)
		gotHash, err := s.Decrypt(v.ChangePIN.PinHashEnc)
		if err != nil {
			t.Fatal(err)
		}
		if !hmac.Equal(gotHash, PINHash(v.ChangePIN.CurrentPIN)) {
			t.Errorf("pinHashEnc decrypts to %x", gotHash)
		}
		padded, err = PadPIN(v.ChangePIN.NewPIN)
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "padded new PIN", padded, v.ChangePIN.NewPinPadded)
		pt, err = s.Decrypt(v.ChangePIN.NewPinEnc)
		if err != nil {
			t.Fatal(err)
		}
		if pin, err := UnpadPIN(pt); err != nil || pin != v.ChangePIN.NewPIN {
			t.Errorf("UnpadPIN(newPinEnc) = %q, %v; want %q", pin, err, v.ChangePIN.NewPIN)
		}
		authInput := append(append([]byte(nil), v.ChangePIN.NewPinEnc...), v.ChangePIN.PinHashEnc...)
		if !s.Verify(authInput, v.ChangePIN.PinUvAuthParam) {
			t.Error("changePIN pinUvAuthParam rejected")
		}
		pinCheckBytes(t, "changePIN pinUvAuthParam", s.Authenticate(authInput), v.ChangePIN.PinUvAuthParam)

		// getPinToken: the platform decrypts the token.
		ct, err = s.encryptWithIV(v.GetPinToken.EncryptedPuat[:16], v.GetPinToken.SessionPuat)
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "encrypted token", ct, v.GetPinToken.EncryptedPuat)
		pt, err = ps.Decrypt(v.GetPinToken.EncryptedPuat)
		if err != nil {
			t.Fatal(err)
		}
		pinCheckBytes(t, "decrypted token", pt, v.GetPinToken.SessionPuat)
	})
}

// pythonGolden mirrors testdata/pinprotocol/python_fido2_golden.json.
type pythonGolden struct {
	Source string
	Cases  []struct {
		Name                                        string
		Protocol                                    uint
		AuthenticatorPrivateKey, PlatformPrivateKey pinHex
		AuthenticatorX, AuthenticatorY              pinHex
		PlatformX, PlatformY                        pinHex
		SharedSecret                                pinHex
		PIN                                         string `json:"pin"`
		PaddedPIN, NewPinEnc, SetPinAuth            pinHex
		PINHash                                     pinHex `json:"pinHash"`
		PinHashEnc                                  pinHex
		NewPin                                      string
		ChangeNewPinEnc, ChangePinAuth              pinHex
		PinUvAuthToken, PinUvAuthTokenEnc           pinHex
		ClientDataHash, McPinUvAuthParam            pinHex
		Salts, SaltEnc, SaltAuth                    pinHex
	}
}

// TestPINProtocolPythonFIDO2Golden plays the authenticator against requests
// built by python-fido2 0.9.1 (see python_fido2_golden.py), and checks that
// our platform side produces the same bytes.
func TestPINProtocolPythonFIDO2Golden(t *testing.T) {
	t.Parallel()
	var g pythonGolden
	pinLoadVectors(t, "python_fido2_golden.json", &g)
	if !strings.HasPrefix(g.Source, "python-fido2 0.9.1") || len(g.Cases) != 4 {
		t.Fatalf("unexpected golden file: %q, %d cases", g.Source, len(g.Cases))
	}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			p := pinProto(t, c.Protocol)
			ka := &KeyAgreement{priv: pinPrivKey(t, c.AuthenticatorPrivateKey)}
			cose := ka.PublicCOSE()
			pinCheckBytes(t, "authenticator x", cose[-2].([]byte), c.AuthenticatorX)
			pinCheckBytes(t, "authenticator y", cose[-3].([]byte), c.AuthenticatorY)
			platPriv := pinPrivKey(t, c.PlatformPrivateKey)
			pc := PublicKeyCOSE(platPriv.PublicKey())
			pinCheckBytes(t, "platform x", pc[-2].([]byte), c.PlatformX)
			pinCheckBytes(t, "platform y", pc[-3].([]byte), c.PlatformY)

			// Authenticator side.
			platPub, err := ParsePlatformKey(c.PlatformX, c.PlatformY)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ka.SharedSecret(p, platPub)
			if err != nil {
				t.Fatal(err)
			}
			pinCheckBytes(t, "shared secret", s.raw, c.SharedSecret)

			// setPIN.
			if !s.Verify(c.NewPinEnc, c.SetPinAuth) {
				t.Error("setPIN pinUvAuthParam rejected")
			}
			pt, err := s.Decrypt(c.NewPinEnc)
			if err != nil {
				t.Fatal(err)
			}
			pinCheckBytes(t, "padded PIN", pt, c.PaddedPIN)
			if pin, err := UnpadPIN(pt); err != nil || pin != c.PIN {
				t.Errorf("UnpadPIN = %q, %v; want %q", pin, err, c.PIN)
			}
			// changePIN.
			pinCheckBytes(t, "PINHash", PINHash(c.PIN), c.PINHash)
			h, err := s.Decrypt(c.PinHashEnc)
			if err != nil || !hmac.Equal(h, PINHash(c.PIN)) {
				t.Errorf("pinHashEnc decrypts to %x, %v", h, err)
			}
			authInput := append(append([]byte(nil), c.ChangeNewPinEnc...), c.PinHashEnc...)
			if !s.Verify(authInput, c.ChangePinAuth) {
				t.Error("changePIN pinUvAuthParam rejected")
			}
			pt, err = s.Decrypt(c.ChangeNewPinEnc)
			if err != nil {
				t.Fatal(err)
			}
			if pin, err := UnpadPIN(pt); err != nil || pin != c.NewPin {
				t.Errorf("UnpadPIN(change) = %q, %v; want %q", pin, err, c.NewPin)
			}
			// The token, as the makeCredential pinUvAuthParam key.
			tok := pinToken(t, p, c.PinUvAuthToken)
			if !p.Verify(tok, c.ClientDataHash, c.McPinUvAuthParam) {
				t.Error("makeCredential pinUvAuthParam rejected")
			}
			pinCheckBytes(t, "token authenticate", p.Authenticate(tok, c.ClientDataHash), c.McPinUvAuthParam)
			// hmac-secret salts.
			if !s.Verify(c.SaltEnc, c.SaltAuth) {
				t.Error("hmac-secret saltAuth rejected")
			}
			pt, err = s.Decrypt(c.SaltEnc)
			if err != nil {
				t.Fatal(err)
			}
			pinCheckBytes(t, "salts", pt, c.Salts)

			// Platform side: the same bytes as python-fido2 (P2 IVs are the
			// first 16 ciphertext bytes).
			ps, err := p.SharedSecret(platPriv, ka.key().PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			pinCheckBytes(t, "platform shared secret", ps.raw, c.SharedSecret)
			padded, err := PadPIN(c.PIN)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range []struct {
				name    string
				pt, enc []byte
			}{
				{"newPinEnc", padded, c.NewPinEnc},
				{"pinHashEnc", PINHash(c.PIN), c.PinHashEnc},
				{"pinUvAuthTokenEnc", c.PinUvAuthToken, c.PinUvAuthTokenEnc},
				{"saltEnc", c.Salts, c.SaltEnc},
			} {
				iv := make([]byte, 16)
				if p.Version() == 2 {
					iv = e.enc[:16]
				}
				got, err := ps.encryptWithIV(iv, e.pt)
				if err != nil {
					t.Fatal(err)
				}
				pinCheckBytes(t, e.name, got, e.enc)
			}
			pinCheckBytes(t, "setPIN pinUvAuthParam", ps.Authenticate(c.NewPinEnc), c.SetPinAuth)
			pinCheckBytes(t, "saltAuth", ps.Authenticate(c.SaltEnc), c.SaltAuth)
			tokPT, err := ps.Decrypt(c.PinUvAuthTokenEnc)
			if err != nil {
				t.Fatal(err)
			}
			pinCheckBytes(t, "decrypted token", tokPT, c.PinUvAuthToken)
		})
	}
}

// TestPINProtocolHandVectors checks CBC against NIST SP 800-38A F.2.5
// (CBC-AES256.Encrypt) and HMAC against values computed with
// `openssl dgst -sha256 -mac HMAC -macopt hexkey:…`, independently of the
// FIDO vectors.
func TestPINProtocolHandVectors(t *testing.T) {
	t.Parallel()
	const (
		nistKey = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
		nistIV  = "000102030405060708090a0b0c0d0e0f"
		nistPT  = "6bc1bee22e409f96e93d7e117393172a" + "ae2d8a571e03ac9c9eb76fac45af8e51" +
			"30c81c46a35ce411e5fbc1191a0a52ef" + "f69f2445df4f9b17ad2b417be66c3710"
		nistCT = "f58c4c04d6e5f1ba779eabfb5f7bfbd6" + "9cfc4e967edb808d679f777bc6702c7d" +
			"39f23369a9d9bacfa530e26304231461" + "b2eb05e2c39be9fcda6c19078c6a9d1b"
		// Protocol One has a zero IV, so fold the NIST IV into block 1:
		// P1 ⊕ IV = 6bc0bce1… and the ciphertext is unchanged.
		p1PT = "6bc0bce12a459991e134741a7f9e1925" + "ae2d8a571e03ac9c9eb76fac45af8e51" +
			"30c81c46a35ce411e5fbc1191a0a52ef" + "f69f2445df4f9b17ad2b417be66c3710"
		key32   = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		key16   = "000102030405060708090a0b0c0d0e0f"
		msg     = "what do ya want for nothing?"
		hmac32k = "099805f4ac310786968565c098db515cc50862b420ae31e20238312344bed36a" // HMAC-SHA-256(key32, msg)
		hmac16k = "d1bcfcaaf1aef8add294bca7adb4ae2fb4abdcada6c1295b422f7b9afee374dc" // HMAC-SHA-256(key16, msg)
	)
	p1, p2 := pinProto(t, 1), pinProto(t, 2)

	// Protocol One: one 32-byte key for both CBC and HMAC.
	s1 := pinShared(t, 1, pinMustHex(t, nistKey))
	ct, err := s1.Encrypt(pinMustHex(t, p1PT))
	if err != nil {
		t.Fatal(err)
	}
	pinCheckBytes(t, "P1 encrypt", ct, pinMustHex(t, nistCT))
	pt, err := s1.Decrypt(pinMustHex(t, nistCT))
	if err != nil {
		t.Fatal(err)
	}
	pinCheckBytes(t, "P1 decrypt", pt, pinMustHex(t, p1PT))
	s1h := pinShared(t, 1, pinMustHex(t, key32))
	pinCheckBytes(t, "P1 shared authenticate", s1h.Authenticate([]byte(msg)), pinMustHex(t, hmac32k)[:16])

	// Protocol Two: HMAC half ‖ AES half.
	s2 := pinShared(t, 2, pinMustHex(t, key32+nistKey))
	ct, err = s2.encryptWithIV(pinMustHex(t, nistIV), pinMustHex(t, nistPT))
	if err != nil {
		t.Fatal(err)
	}
	pinCheckBytes(t, "P2 encrypt", ct, pinMustHex(t, nistIV+nistCT))
	pt, err = s2.Decrypt(pinMustHex(t, nistIV+nistCT))
	if err != nil {
		t.Fatal(err)
	}
	pinCheckBytes(t, "P2 decrypt", pt, pinMustHex(t, nistPT))
	pinCheckBytes(t, "P2 shared authenticate uses the HMAC half", s2.Authenticate([]byte(msg)), pinMustHex(t, hmac32k))

	// Tokens are HMAC keys as a whole, in both protocols.
	tok32 := pinToken(t, p2, pinMustHex(t, key32))
	pinCheckBytes(t, "P2 token authenticate", p2.Authenticate(tok32, []byte(msg)), pinMustHex(t, hmac32k))
	pinCheckBytes(t, "P1 token authenticate", p1.Authenticate(tok32, []byte(msg)), pinMustHex(t, hmac32k)[:16])
	tok16 := pinToken(t, p1, pinMustHex(t, key16))
	pinCheckBytes(t, "P1 16-byte token authenticate", p1.Authenticate(tok16, []byte(msg)), pinMustHex(t, hmac16k)[:16])
	if !p1.Verify(tok16, []byte(msg), pinMustHex(t, hmac16k)[:16]) {
		t.Error("P1 Verify with a 16-byte token failed")
	}
	if p2.Verify(tok16, []byte(msg), pinMustHex(t, hmac16k)) {
		t.Error("P2 Verify accepted a 16-byte token")
	}
}

// TestPINProtocolRoundTrip runs the platform and authenticator sides against
// each other, as the CLI client and clientPIN will.
func TestPINProtocolRoundTrip(t *testing.T) {
	t.Parallel()
	forEachPINProtocol(t, "protocol", func(t *testing.T, v uint) {
		p := pinProto(t, v)
		var ka KeyAgreement // zero value is usable

		// getKeyAgreement → platform.
		m := ka.PublicCOSE()
		authPub, err := ParsePlatformKey(m[-2].([]byte), m[-3].([]byte))
		if err != nil {
			t.Fatal(err)
		}
		platPub, ps, err := PlatformEncapsulate(p, authPub)
		if err != nil {
			t.Fatal(err)
		}
		if ps.Version() != v {
			t.Errorf("platform secret version %d", ps.Version())
		}
		// platform → authenticator.
		pm := PublicKeyCOSE(platPub)
		gotPlat, err := ParsePlatformKey(pm[-2].([]byte), pm[-3].([]byte))
		if err != nil {
			t.Fatal(err)
		}
		as, err := ka.SharedSecret(p, gotPlat)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(as.raw, ps.raw) || len(as.raw) != 32*int(v) {
			t.Fatalf("shared secrets differ or have the wrong length (%d)", len(as.raw))
		}

		// setPIN.
		padded, err := PadPIN("1234ünï🔑")
		if err != nil {
			t.Fatal(err)
		}
		newPinEnc, err := ps.Encrypt(padded)
		if err != nil {
			t.Fatal(err)
		}
		if want := 64 + 16*int(v-1); len(newPinEnc) != want {
			t.Errorf("newPinEnc length %d, want %d", len(newPinEnc), want)
		}
		if !as.Verify(newPinEnc, ps.Authenticate(newPinEnc)) {
			t.Fatal("setPIN pinUvAuthParam rejected")
		}
		dec, err := as.Decrypt(newPinEnc)
		if err != nil {
			t.Fatal(err)
		}
		if pin, err := UnpadPIN(dec); err != nil || pin != "1234ünï🔑" {
			t.Fatalf("UnpadPIN = %q, %v", pin, err)
		}
		// Protocol Two uses a fresh IV each time; One is deterministic.
		again, _ := ps.Encrypt(padded)
		if (v == 2) == bytes.Equal(again, newPinEnc) {
			t.Errorf("protocol %d: repeated encryption equal = %v", v, bytes.Equal(again, newPinEnc))
		}

		// getPinToken: authenticator encrypts, platform decrypts and
		// authenticates a clientDataHash.
		tok := NewPINUVAuthToken()
		enc, err := as.Encrypt(tok.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		plain, err := ps.Decrypt(enc)
		if err != nil {
			t.Fatal(err)
		}
		ptok := pinToken(t, p, plain)
		cdh := sha256.Sum256([]byte("clientDataJSON"))
		param := p.Authenticate(ptok, cdh[:])
		if len(param) != 16*int(v) {
			t.Errorf("pinUvAuthParam length %d", len(param))
		}
		if !p.Verify(tok, cdh[:], param) {
			t.Error("authenticator rejected the platform's pinUvAuthParam")
		}
		if p.Verify(NewPINUVAuthToken(), cdh[:], param) {
			t.Error("another token verified")
		}

		// A regenerated key agreement no longer yields the same secret.
		ka.Regenerate()
		as2, err := ka.SharedSecret(p, gotPlat)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(as2.raw, ps.raw) || as2.Verify(newPinEnc, ps.Authenticate(newPinEnc)) {
			t.Error("shared secret survived Regenerate")
		}
	})
}

// TestPINProtocolSecretSeparation shows the key confusion the types prevent:
// in Protocol Two the shared secret authenticates with its first half only,
// while a token is used whole.
func TestPINProtocolSecretSeparation(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 64)
	for i := range raw {
		raw[i] = byte(i)
	}
	s := pinShared(t, 2, raw)
	msg := []byte("msg")
	m := hmac.New(sha256.New, raw[:32])
	m.Write(msg)
	pinCheckBytes(t, "P2 shared authenticate", s.Authenticate(msg), m.Sum(nil))
	m = hmac.New(sha256.New, raw)
	m.Write(msg)
	if bytes.Equal(s.Authenticate(msg), m.Sum(nil)) {
		t.Error("P2 authenticated with the whole 64-byte secret")
	}
	if s1, err := newSharedSecret(1, raw); err == nil || s1 != nil {
		t.Error("a 64-byte protocol 1 secret was accepted")
	}
	if s2, err := newSharedSecret(2, raw[:32]); err == nil || s2 != nil {
		t.Error("a 32-byte protocol 2 secret was accepted")
	}
}

func TestPINProtocolDecryptLengths(t *testing.T) {
	t.Parallel()
	s1 := pinShared(t, 1, make([]byte, 32))
	s2 := pinShared(t, 2, make([]byte, 64))
	for _, tc := range []struct {
		s  *SharedSecret
		n  int
		ok bool
	}{
		{s1, 0, false}, {s1, 1, false}, {s1, 15, false}, {s1, 16, true}, {s1, 17, false},
		{s1, 31, false}, {s1, 32, true}, {s1, 64, true}, {s1, 65, false},
		{s2, 0, false}, {s2, 15, false}, {s2, 16, false}, {s2, 17, false}, {s2, 31, false},
		{s2, 32, true}, {s2, 33, false}, {s2, 47, false}, {s2, 48, true}, {s2, 80, true}, {s2, 81, false},
	} {
		got, err := tc.s.Decrypt(make([]byte, tc.n))
		switch {
		case tc.ok && (err != nil || len(got) != tc.n-16*int(tc.s.version-1)):
			t.Errorf("P%d Decrypt(%d bytes) = %d bytes, %v", tc.s.version, tc.n, len(got), err)
		case !tc.ok && (err == nil || got != nil):
			t.Errorf("P%d Decrypt(%d bytes) = %d bytes, %v; want an error", tc.s.version, tc.n, len(got), err)
		case !tc.ok && !errors.Is(err, ErrInvalidParameter):
			t.Errorf("P%d Decrypt(%d bytes) error %v does not wrap ErrInvalidParameter", tc.s.version, tc.n, err)
		}
	}
	var nilSecret *SharedSecret
	if got, err := nilSecret.Decrypt(make([]byte, 32)); err == nil || got != nil {
		t.Error("nil secret decrypted")
	}
}

func TestPINProtocolEncryptLengths(t *testing.T) {
	t.Parallel()
	for _, v := range []uint{1, 2} {
		s := pinShared(t, v, make([]byte, 32*v))
		for _, n := range []int{0, 1, 15, 17, 63, 65} {
			if ct, err := s.Encrypt(make([]byte, n)); err == nil || ct != nil {
				t.Errorf("P%d Encrypt(%d bytes) = %d bytes, %v; want an error", v, n, len(ct), err)
			}
		}
		for _, n := range []int{16, 32, 64} {
			ct, err := s.Encrypt(make([]byte, n))
			if err != nil || len(ct) != n+16*int(v-1) {
				t.Errorf("P%d Encrypt(%d bytes) = %d bytes, %v", v, n, len(ct), err)
			}
		}
		if ct, err := s.encryptWithIV(make([]byte, 15), make([]byte, 16)); err == nil || ct != nil {
			t.Errorf("P%d accepted a 15-byte IV", v)
		}
	}
	var nilSecret *SharedSecret
	if _, err := nilSecret.Encrypt(make([]byte, 16)); err == nil {
		t.Error("nil secret encrypted")
	}
}

// TestPINProtocolVerifyRejects checks that truncated, extended and altered
// MACs fail, for shared secrets and tokens.
func TestPINProtocolVerifyRejects(t *testing.T) {
	t.Parallel()
	msg := []byte("pinUvAuthParam input")
	for _, v := range []uint{1, 2} {
		p := pinProto(t, v)
		raw := bytes.Repeat([]byte{0x5a}, 32*int(v))
		s := pinShared(t, v, raw)
		tok := pinToken(t, p, bytes.Repeat([]byte{0xa5}, 32))
		for _, k := range []struct {
			name   string
			mac    []byte
			verify func(msg, sig []byte) bool
		}{
			{"shared", s.Authenticate(msg), s.Verify},
			{"token", p.Authenticate(tok, msg), func(m, sig []byte) bool { return p.Verify(tok, m, sig) }},
		} {
			if len(k.mac) != 16*int(v) {
				t.Fatalf("P%d %s MAC length %d", v, k.name, len(k.mac))
			}
			if !k.verify(msg, k.mac) {
				t.Errorf("P%d %s: valid MAC rejected", v, k.name)
			}
			full := hmac.New(sha256.New, raw[:32])
			if k.name == "token" {
				full = hmac.New(sha256.New, tok.b)
			}
			full.Write(msg)
			flipped := bytes.Clone(k.mac)
			flipped[len(flipped)-1] ^= 1
			for _, bad := range []struct {
				name string
				sig  []byte
			}{
				{"nil", nil},
				{"empty", []byte{}},
				{"truncated by 1", k.mac[:len(k.mac)-1]},
				{"first 16 of 32", k.mac[:min(16, len(k.mac)-1)]},
				{"extended by 1", append(bytes.Clone(k.mac), 0)},
				{"full HMAC when truncated", append(bytes.Clone(k.mac), full.Sum(nil)[len(k.mac):]...)},
				{"last bit flipped", flipped},
			} {
				if bytes.Equal(bad.sig, k.mac) {
					continue // "full HMAC" is the MAC itself for Protocol Two
				}
				if k.verify(msg, bad.sig) {
					t.Errorf("P%d %s: Verify accepted %s", v, k.name, bad.name)
				}
			}
			if k.verify([]byte("other message"), k.mac) {
				t.Errorf("P%d %s: Verify accepted another message", v, k.name)
			}
		}
		if p.Verify(nil, msg, make([]byte, 16*v)) || p.Authenticate(nil, msg) != nil {
			t.Errorf("P%d: nil token verified or authenticated", v)
		}
	}
	var nilSecret *SharedSecret
	if nilSecret.Verify(msg, make([]byte, 16)) || nilSecret.Authenticate(msg) != nil {
		t.Error("nil secret verified or authenticated")
	}
}

func TestPINProtocolSharedSecretErrors(t *testing.T) {
	t.Parallel()
	good := pinGenerateKey()
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint{1, 2} {
		p := pinProto(t, v)
		for _, tc := range []struct {
			name string
			priv *ecdh.PrivateKey
			pub  *ecdh.PublicKey
		}{
			{"nil private", nil, good.PublicKey()},
			{"nil public", good, nil},
			{"X25519 public", good, x.PublicKey()},
			{"X25519 private", x, good.PublicKey()},
		} {
			s, err := p.SharedSecret(tc.priv, tc.pub)
			if s != nil || !errors.Is(err, ErrInvalidParameter) {
				t.Errorf("P%d %s: %v, %v; want ErrInvalidParameter", v, tc.name, s, err)
			}
		}
		if _, _, err := PlatformEncapsulate(p, nil); !errors.Is(err, ErrInvalidParameter) {
			t.Errorf("P%d PlatformEncapsulate(nil) = %v", v, err)
		}
	}
	var ka KeyAgreement
	if _, err := ka.SharedSecret(nil, good.PublicKey()); !errors.Is(err, ErrInvalidParameter) {
		t.Errorf("KeyAgreement.SharedSecret(nil protocol) = %v", err)
	}
	if _, _, err := PlatformEncapsulate(nil, good.PublicKey()); err == nil {
		t.Error("PlatformEncapsulate(nil protocol) succeeded")
	}
	if _, err := ParsePINUVAuthToken(nil, make([]byte, 32)); err == nil {
		t.Error("ParsePINUVAuthToken(nil protocol) succeeded")
	}
}

func TestKeyAgreementPublicCOSE(t *testing.T) {
	t.Parallel()
	var ka KeyAgreement
	m := ka.PublicCOSE()
	if len(m) != 5 || m[1] != 2 || m[3] != -25 || m[-1] != 1 {
		t.Fatalf("PublicCOSE = %v", m)
	}
	x, y := m[-2].([]byte), m[-3].([]byte)
	if len(x) != 32 || len(y) != 32 {
		t.Fatalf("coordinate lengths %d, %d", len(x), len(y))
	}
	pinCheckBytes(t, "0x04‖x‖y", append(append([]byte{4}, x...), y...), ka.key().PublicKey().Bytes())
	// Stable until Regenerate; the returned slices are copies.
	x[0] ^= 0xff
	m2 := ka.PublicCOSE()
	if bytes.Equal(m2[-2].([]byte), x) {
		t.Error("PublicCOSE returned the key's own memory")
	}
	ka.Regenerate()
	if bytes.Equal(ka.PublicCOSE()[-2].([]byte), m2[-2].([]byte)) {
		t.Error("Regenerate kept the key")
	}
	if PublicKeyCOSE(nil) != nil {
		t.Error("PublicKeyCOSE(nil) != nil")
	}
	xk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	if PublicKeyCOSE(xk.PublicKey()) != nil {
		t.Error("PublicKeyCOSE(X25519) != nil")
	}
}

func TestKeyAgreementConcurrent(t *testing.T) {
	t.Parallel()
	var ka KeyAgreement
	p := pinProto(t, 2)
	plat := pinGenerateKey()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 20 {
				if i%2 == 0 {
					ka.Regenerate()
				}
				_ = ka.PublicCOSE()
				if _, err := ka.SharedSecret(p, plat.PublicKey()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func TestKeyAgreementParsePlatformKey(t *testing.T) {
	t.Parallel()
	k := pinGenerateKey()
	b := k.PublicKey().Bytes()
	x, y := b[1:33], b[33:]
	// P-256 field prime p.
	prime := pinMustHex(t, "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff")
	one := make([]byte, 32)
	one[31] = 1
	yFlipped := bytes.Clone(y)
	yFlipped[31] ^= 1
	for _, tc := range []struct {
		name string
		x, y []byte
	}{
		{"nil", nil, nil},
		{"short x", x[1:], y},
		{"short y", x, y[1:]},
		{"long x", append([]byte{0}, x...), y},
		{"long y", x, append([]byte{0}, y...)},
		{"point at infinity (0,0)", make([]byte, 32), make([]byte, 32)},
		{"off curve (1,1)", one, one},
		{"off curve (x, y^1)", x, yFlipped},
		{"x = p", prime, y},
		{"y = p", x, prime},
	} {
		pub, err := ParsePlatformKey(tc.x, tc.y)
		if pub != nil || !errors.Is(err, ErrInvalidParameter) {
			t.Errorf("%s: %v, %v; want ErrInvalidParameter", tc.name, pub, err)
		}
	}
	pub, err := ParsePlatformKey(x, y)
	if err != nil || !pub.Equal(k.PublicKey()) {
		t.Errorf("valid point: %v, %v", pub, err)
	}
}

func TestPINPadUnpad(t *testing.T) {
	t.Parallel()
	maxPIN := strings.Repeat("7", 63)
	for _, tc := range []struct {
		pin     string
		wantErr error
	}{
		{"1234", nil},
		{"1", nil}, // minPINLength is the caller's check
		{"пароль🔑", nil},
		{maxPIN, nil},
		{maxPIN + "7", ErrPINPolicyViolation},
		{strings.Repeat("é", 32), ErrPINPolicyViolation}, // 64 bytes
		{"", ErrPINPolicyViolation},
		{"12\x0034", ErrPINPolicyViolation},
		{"1234\xff", ErrPINPolicyViolation},
	} {
		b, err := PadPIN(tc.pin)
		if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
			t.Errorf("PadPIN(%q) error %v, want %v", tc.pin, err, tc.wantErr)
			continue
		}
		if err != nil {
			if b != nil {
				t.Errorf("PadPIN(%q) returned bytes with an error", tc.pin)
			}
			continue
		}
		if len(b) != 64 || !bytes.HasPrefix(b, []byte(tc.pin)) || bytes.ContainsFunc(b[len(tc.pin):], func(r rune) bool { return r != 0 }) {
			t.Errorf("PadPIN(%q) = %x", tc.pin, b)
		}
		if got, err := UnpadPIN(b); err != nil || got != tc.pin {
			t.Errorf("UnpadPIN(PadPIN(%q)) = %q, %v", tc.pin, got, err)
		}
	}

	pad := func(s string) []byte { b := make([]byte, 64); copy(b, s); return b }
	for _, tc := range []struct {
		name    string
		b       []byte
		wantErr error
	}{
		{"63 bytes of padding", pad("1"), nil},
		{"nil", nil, ErrInvalidParameter},
		{"63 bytes", pad("1234")[:63], ErrInvalidParameter},
		{"65 bytes", append(pad("1234"), 0), ErrInvalidParameter},
		{"all zero", make([]byte, 64), ErrPINPolicyViolation},
		{"no padding (64-byte PIN)", bytes.Repeat([]byte("1"), 64), ErrPINPolicyViolation},
		{"interior NUL", pad("12\x0034"), ErrPINPolicyViolation},
		{"invalid UTF-8", pad("1234\xc3"), ErrPINPolicyViolation},
	} {
		got, err := UnpadPIN(tc.b)
		if tc.wantErr == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if got != "" || !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: UnpadPIN = %q, %v; want %v", tc.name, got, err, tc.wantErr)
		}
	}
}

func TestPINHashAndCodePoints(t *testing.T) {
	t.Parallel()
	// LEFT(SHA-256("1234"), 16), by `printf 1234 | sha256sum`.
	pinCheckBytes(t, "PINHash(1234)", PINHash("1234"), pinMustHex(t, "03ac674216f3e15c761ee1a5e255f067"))
	for pin, want := range map[string]int{"": 0, "1234": 4, "пароль🔑": 7, "é\u0301": 2, "\xff\xfe": 2} {
		if got := PINCodePoints(pin); got != want {
			t.Errorf("PINCodePoints(%q) = %d, want %d", pin, got, want)
		}
	}
}

// TestPINSecretsRedacted checks that secrets stay out of slog, fmt and JSON.
func TestPINSecretsRedacted(t *testing.T) {
	t.Parallel()
	var ka KeyAgreement
	p := pinProto(t, 2)
	_, s, err := PlatformEncapsulate(p, ka.key().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	tok := NewPINUVAuthToken()
	secrets := map[string][]byte{
		"shared": s.raw, "token": tok.b, "key agreement": ka.key().Bytes(),
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "shared", s, "token", tok, "ka", &ka)
	log.Info("y", slog.Any("shared", s), slog.Any("token", tok), slog.Any("ka", &ka))
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		fmt.Fprintf(&buf, f+" "+f+" "+f+"\n", s, tok, &ka)
	}
	out := buf.String()
	if strings.Count(out, "REDACTED") < 6*3 {
		t.Errorf("missing REDACTED in:\n%s", out)
	}
	for name, sec := range secrets {
		for _, enc := range []string{hex.EncodeToString(sec), fmt.Sprint(sec), fmt.Sprintf("%X", sec)} {
			if strings.Contains(out, enc) {
				t.Errorf("%s leaked", name)
			}
		}
	}
	for name, v := range map[string]any{"shared": s, "token": tok, "key agreement": &ka} {
		if b, err := json.Marshal(v); err == nil {
			t.Errorf("json.Marshal(%s) = %s, want an error", name, b)
		}
	}
}

// FuzzPINDecrypt feeds arbitrary keys and ciphertexts to Decrypt: it never
// panics, an error means a nil plaintext, and a success round-trips through
// encryption with the same IV and verifies its own MAC.
func FuzzPINDecrypt(f *testing.F) {
	f.Add(uint8(1), make([]byte, 32), make([]byte, 64))
	f.Add(uint8(2), make([]byte, 64), make([]byte, 80))
	f.Add(uint8(2), make([]byte, 64), make([]byte, 16))
	f.Add(uint8(1), make([]byte, 31), make([]byte, 17))
	f.Add(uint8(3), make([]byte, 32), []byte{})
	if b, err := os.ReadFile(filepath.Join("testdata", "pinprotocol", "webauthnworks_pinuvauthprotocol2.json")); err == nil {
		var v webauthnWorksVectors
		if json.Unmarshal(b, &v) == nil {
			f.Add(uint8(1), []byte(v.P1.SharedSecret), []byte(v.P1.Ciphertext))
			f.Add(uint8(2), append(bytes.Clone(v.P2.HMACKey), v.P2.AESKey...), []byte(v.P2.Ciphertext))
			f.Add(uint8(2), append(bytes.Clone(v.P2.HMACKey), v.P2.AESKey...), []byte(v.GetPinToken.EncryptedPuat))
		}
	}
	f.Fuzz(func(t *testing.T, version uint8, key, ciphertext []byte) {
		s, err := newSharedSecret(uint(version), key)
		if err != nil {
			if s != nil {
				t.Fatal("secret with an error")
			}
			// A nil secret must fail safely too.
			if pt, err := s.Decrypt(ciphertext); err == nil || pt != nil {
				t.Fatal("nil secret decrypted")
			}
			return
		}
		pt, err := s.Decrypt(ciphertext)
		if err != nil {
			if pt != nil {
				t.Fatal("plaintext with an error")
			}
			return
		}
		iv := make([]byte, 16)
		if s.version == 2 {
			iv = ciphertext[:16]
		}
		ct, err := s.encryptWithIV(iv, pt)
		if err != nil {
			t.Fatalf("re-encrypt: %v", err)
		}
		if !bytes.Equal(ct, ciphertext) {
			t.Fatalf("round trip: got %x, want %x", ct, ciphertext)
		}
		mac := s.Authenticate(ciphertext)
		if !s.Verify(ciphertext, mac) || s.Verify(ciphertext, mac[1:]) {
			t.Fatal("MAC self-check failed")
		}
	})
}
