package client

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/virtkey/virtkey/ctap2"
)

// fakeConn is a scripted authenticator: it records each request and lets
// answer produce the reply (status ‖ CBOR).
type fakeConn struct {
	reqs   [][]byte
	answer func(req []byte) []byte
}

func (f *fakeConn) CBOR(_ context.Context, req []byte) ([]byte, error) {
	f.reqs = append(f.reqs, bytes.Clone(req))
	return f.answer(req), nil
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// infoAnswer answers getInfo with the given options and protocols, and
// everything else with status.
func infoAnswer(t *testing.T, opts map[string]bool, protocols []uint, status ctap2.StatusCode) func([]byte) []byte {
	info := mustEncode(t, &ctap2.GetInfoResponse{
		Versions: []string{"FIDO_2_0", "FIDO_2_1"}, AAGUID: make([]byte, 16),
		Options: opts, PinUvAuthProtocols: protocols,
	})
	return func(req []byte) []byte {
		if req[0] == ctap2.CmdGetInfo {
			return append([]byte{0}, info...)
		}
		return []byte{byte(status)}
	}
}

// requestMap decodes a recorded request's parameters, keeping values raw.
func requestMap(t *testing.T, req []byte) map[int]RawMessage {
	t.Helper()
	var m map[int]RawMessage
	if err := decode(req[1:], &m); err != nil {
		t.Fatalf("request %x: %v", req, err)
	}
	return m
}

func testToken(t *testing.T, version uint) (*PINToken, []byte) {
	p, _ := ctap2.PINProtocolByVersion(version)
	tok := ctap2.NewPINUVAuthToken()
	return &PINToken{protocol: p, token: tok}, tok.Bytes()
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCredMgmtWire checks the command byte, the canonical subCommandParams
// and pinUvAuthParam = authenticate(token, subCommand ‖ subCommandParams).
func TestCredMgmtWire(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    map[string]bool
		cmd     byte
		version uint
		macLen  int
	}{
		{"credMgmt/protocol2", map[string]bool{"credMgmt": true}, 0x0A, 2, 32},
		{"preview/protocol1", map[string]bool{"credentialMgmtPreview": true}, 0x41, 1, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fc := &fakeConn{answer: infoAnswer(t, tc.opts, []uint{tc.version}, ctap2.ErrNoCredentials)}
			d := New(fc, nil)
			ctx := context.Background()
			tok, key := testToken(t, tc.version)
			cm, err := d.CredentialManagement(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			h := RPIDHash("example.com")
			creds, err := cm.EnumerateCredentials(ctx, h)
			if err != nil || creds != nil {
				t.Fatalf("NO_CREDENTIALS: %v, %v; want an empty list", creds, err)
			}
			req := fc.reqs[len(fc.reqs)-1]
			if req[0] != tc.cmd {
				t.Fatalf("command byte %#x, want %#x", req[0], tc.cmd)
			}
			m := requestMap(t, req)
			// {1: h} is A1 01 58 20 ‖ h.
			wantParams := append(unhex(t, "a1015820"), h...)
			if !bytes.Equal(m[2], wantParams) {
				t.Errorf("subCommandParams %x, want %x", []byte(m[2]), wantParams)
			}
			if !bytes.Equal(m[1], []byte{0x04}) || !bytes.Equal(m[3], []byte{byte(tc.version)}) {
				t.Errorf("subCommand %x protocol %x", []byte(m[1]), []byte(m[3]))
			}
			var param []byte
			if err := decode(m[4], &param); err != nil {
				t.Fatal(err)
			}
			want := hmacSHA256(key, append([]byte{0x04}, wantParams...))[:tc.macLen]
			if !bytes.Equal(param, want) {
				t.Errorf("pinUvAuthParam %x, want %x", param, want)
			}

			// Metadata authenticates the subcommand byte alone.
			if _, err := cm.Metadata(ctx); !errors.Is(err, ctap2.ErrNoCredentials) {
				t.Errorf("metadata: %v", err)
			}
			m = requestMap(t, fc.reqs[len(fc.reqs)-1])
			if _, ok := m[2]; ok {
				t.Errorf("metadata sent subCommandParams")
			}
			decode(m[4], &param)
			if want := hmacSHA256(key, []byte{0x01})[:tc.macLen]; !bytes.Equal(param, want) {
				t.Errorf("metadata pinUvAuthParam %x, want %x", param, want)
			}

			// Update: the user entity goes into the authenticated parameters.
			cm.UpdateUserInformation(ctx, []byte{1, 2}, ctap2.UserEntity{ID: []byte{9}, Name: "n"})
			m = requestMap(t, fc.reqs[len(fc.reqs)-1])
			// {2: {"id": h'0102', "type": "public-key"}, 3: {"id": h'09', "name": "n"}}
			wantParams = unhex(t, "a2"+
				"02"+"a2"+"626964"+"420102"+"6474797065"+"6a7075626c69632d6b6579"+
				"03"+"a2"+"626964"+"4109"+"646e616d65"+"616e")
			if !bytes.Equal(m[2], wantParams) {
				t.Errorf("update params %x, want %x", []byte(m[2]), wantParams)
			}
		})
	}
}

func TestCredMgmtUnsupported(t *testing.T) {
	t.Parallel()
	d := New(&fakeConn{answer: infoAnswer(t, map[string]bool{"clientPin": true}, nil, 0)}, nil)
	tok, _ := testToken(t, 1)
	if _, err := d.CredentialManagement(context.Background(), tok); !errors.Is(err, ErrNotSupported) {
		t.Errorf("no credMgmt option: %v, want ErrNotSupported", err)
	}
	if _, err := d.AuthenticatorConfig(context.Background(), tok); !errors.Is(err, ErrNotSupported) {
		t.Errorf("no authnrCfg option: %v, want ErrNotSupported", err)
	}
}

// TestConfigWire checks pinUvAuthParam =
// authenticate(token, 32×0xFF ‖ 0x0D ‖ subCommand ‖ subCommandParams).
func TestConfigWire(t *testing.T) {
	t.Parallel()
	fc := &fakeConn{answer: infoAnswer(t, map[string]bool{"authnrCfg": true}, []uint{2, 1}, 0)}
	d := New(fc, nil)
	ctx := context.Background()
	tok, key := testToken(t, 2)
	cfg, err := d.AuthenticatorConfig(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	prefix := append(bytes.Repeat([]byte{0xFF}, 32), 0x0D)

	if err := cfg.ToggleAlwaysUV(ctx); err != nil {
		t.Fatal(err)
	}
	req := fc.reqs[len(fc.reqs)-1]
	m := requestMap(t, req)
	var param []byte
	decode(m[4], &param)
	if req[0] != 0x0D || !bytes.Equal(m[1], []byte{0x02}) || m[2] != nil {
		t.Errorf("toggleAlwaysUv request %x", req)
	}
	if want := hmacSHA256(key, append(bytes.Clone(prefix), 0x02)); !bytes.Equal(param, want) {
		t.Errorf("toggleAlwaysUv pinUvAuthParam %x, want %x", param, want)
	}

	if err := cfg.SetMinPINLength(ctx, 6, []string{"example.com"}, true); err != nil {
		t.Fatal(err)
	}
	m = requestMap(t, fc.reqs[len(fc.reqs)-1])
	// {1: 6, 2: ["example.com"], 3: true}
	wantParams := unhex(t, "a30106"+"02816b6578616d706c652e636f6d"+"03f5")
	if !bytes.Equal(m[2], wantParams) {
		t.Errorf("setMinPINLength params %x, want %x", []byte(m[2]), wantParams)
	}
	decode(m[4], &param)
	if want := hmacSHA256(key, append(append(bytes.Clone(prefix), 0x03), wantParams...)); !bytes.Equal(param, want) {
		t.Errorf("setMinPINLength pinUvAuthParam %x, want %x", param, want)
	}

	// Without a token (a key with no PIN and no UV) nothing is authenticated.
	cfg, _ = d.AuthenticatorConfig(ctx, nil)
	cfg.ToggleAlwaysUV(ctx)
	m = requestMap(t, fc.reqs[len(fc.reqs)-1])
	if m[3] != nil || m[4] != nil {
		t.Errorf("unauthenticated config sent protocol/param: %v", m)
	}
}

// TestPINTokenSubcommand checks the choice between getPinToken (0x05) and
// getPinUvAuthTokenUsingPinWithPermissions (0x09), and of the protocol.
func TestPINTokenSubcommand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		opts      map[string]bool
		protocols []uint
		sub       byte
		proto     byte
	}{
		{"ctap2.0", map[string]bool{"clientPin": true}, nil, 0x05, 1},
		{"ctap2.1", map[string]bool{"clientPin": true, "pinUvAuthToken": true}, []uint{1, 2}, 0x09, 2},
		{"ctap2.1-p1", map[string]bool{"clientPin": true, "pinUvAuthToken": true}, []uint{1}, 0x09, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A real key-agreement key, then PIN_INVALID, then 5 retries.
			var ka ctap2.KeyAgreement
			kaResp := mustEncode(t, map[int]any{1: ka.PublicCOSE()})
			retries := mustEncode(t, map[int]any{3: 5})
			info := infoAnswer(t, tc.opts, tc.protocols, 0)
			fc := &fakeConn{}
			fc.answer = func(req []byte) []byte {
				if req[0] != ctap2.CmdClientPIN {
					return info(req)
				}
				switch sub := requestMap(t, req)[2][0]; sub {
				case 0x02:
					return append([]byte{0}, kaResp...)
				case 0x01:
					return append([]byte{0}, retries...)
				default:
					return []byte{byte(ctap2.ErrPINInvalid)}
				}
			}
			d := New(fc, nil)
			_, err := d.GetPINToken(context.Background(), "1234", PermCredentialMgmt, "example.com")
			var pe *PINError
			if !errors.As(err, &pe) || pe.Retries != 5 {
				t.Fatalf("GetPINToken: %v, want a PINError with 5 retries", err)
			}
			var tokenReq map[int]RawMessage
			for _, r := range fc.reqs {
				if r[0] == ctap2.CmdClientPIN {
					if m := requestMap(t, r); m[2][0] == 0x05 || m[2][0] == 0x09 {
						tokenReq = m
					}
				}
			}
			if tokenReq == nil || tokenReq[2][0] != tc.sub || tokenReq[1][0] != tc.proto {
				t.Fatalf("token request %v; want subcommand %#x protocol %d", tokenReq, tc.sub, tc.proto)
			}
			_, hasPerm := tokenReq[9]
			_, hasRP := tokenReq[10]
			if want := tc.sub == 0x09; hasPerm != want || hasRP != want {
				t.Errorf("permissions sent %v, rpId sent %v; want %v", hasPerm, hasRP, want)
			}
			if tc.sub == 0x09 && !bytes.Equal(tokenReq[9], []byte{0x04}) {
				t.Errorf("permissions %x, want cm (04)", []byte(tokenReq[9]))
			}
		})
	}
}
