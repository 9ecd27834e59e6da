package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/store"
	"github.com/virtkey/virtkey/tpmkeys"
)

// testKey is an in-process virtkey (the real key store and database)
// served over CTAPHID on an in-memory pipe, and a Device talking to it.
type testKey struct {
	auth   *ctap2.Authenticator
	server *hid.Server
	dev    *Device
}

func newTestKey(t *testing.T, mod ...func(*ctap2.Config)) *testKey {
	t.Helper()
	dir := t.TempDir()
	keys, err := tpmkeys.OpenSoftware(dir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := ctap2.Config{KeyStore: keys, Store: db}
	for _, m := range mod {
		m(&cfg)
	}
	auth, err := ctap2.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	devEnd, hostEnd := hid.Pipe()
	srv := hid.NewServer(devEnd, auth, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); hostEnd.Close(); <-done })

	ictx, icancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer icancel()
	dev, err := Open(ictx, hostEnd, &Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{auth: auth, server: srv, dev: dev}
}

// option reads option name of the key's cached getInfo.
func (k *testKey) option(t *testing.T, ctx context.Context, name string) bool {
	t.Helper()
	info, err := k.dev.CachedInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := Option(info, name)
	return v
}

// newPINKey is a new test key with the PIN 1234 set.
func newPINKey(t *testing.T) *testKey {
	t.Helper()
	k := newTestKey(t)
	if err := k.dev.SetPIN(testCtx(t), "1234"); err != nil {
		t.Fatalf("SetPIN: %v", err)
	}
	return k
}

// token is a token with perms (bound to rpID unless empty) from the PIN
// 1234.
func (k *testKey) token(t *testing.T, perms Permission, rpID string) *PINToken {
	t.Helper()
	tok, err := k.dev.GetPINToken(testCtx(t), "1234", perms, rpID)
	if err != nil {
		t.Fatalf("GetPINToken: %v", err)
	}
	return tok
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGetInfo(t *testing.T) {
	t.Parallel()
	k := newTestKey(t)
	ctx := testCtx(t)
	info, err := k.dev.GetInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains([]byte(join(info.Versions)), []byte("FIDO_2_0")) {
		t.Errorf("versions %v lack FIDO_2_0", info.Versions)
	}
	if !bytes.Equal(info.AAGUID, ctap2.DefaultAAGUID[:]) {
		t.Errorf("aaguid %x", info.AAGUID)
	}
	hi, ok := k.dev.HIDInfo()
	if !ok || hi.Capabilities&hid.CapCBOR == 0 {
		t.Errorf("HIDInfo = %+v, %v", hi, ok)
	}
	// The remembered answer is reused.
	again, err := k.dev.CachedInfo(ctx)
	if err != nil || again != info {
		t.Errorf("Info() = %p, %v; want the remembered %p", again, err, info)
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for _, x := range s {
		b.WriteString(x + ",")
	}
	return b.String()
}

func TestTransactStatus(t *testing.T) {
	t.Parallel()
	k := newTestKey(t)
	st, resp, err := k.dev.Transact(testCtx(t), 0x55, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st != ctap2.ErrInvalidCommand || len(resp) != 0 {
		t.Errorf("unknown command: status %v, %d bytes", st, len(resp))
	}
	// A raw CBOR parameter map passes through untouched.
	st, _, err = k.dev.Transact(testCtx(t), ctap2.CmdGetInfo, RawMessage{0xA0})
	if err != nil || st != ctap2.ErrInvalidLength {
		t.Errorf("getInfo with parameters: %v, %v; want INVALID_LENGTH", st, err)
	}
}

var testCDH = bytes.Repeat([]byte{0xCD}, 32)

func mcRequest(rpID string, userID []byte, name string, rk bool) *ctap2.MakeCredentialRequest {
	alg := int64(cose.AlgES256)
	req := &ctap2.MakeCredentialRequest{
		ClientDataHash:   testCDH,
		RP:               &ctap2.RPEntity{ID: rpID, Name: rpID},
		User:             &ctap2.UserEntity{ID: userID, Name: name, DisplayName: "Display " + name},
		PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
	}
	if rk {
		req.Options = &ctap2.RequestOptions{RK: &rk}
	}
	return req
}

func TestMakeCredentialGetAssertion(t *testing.T) {
	t.Parallel()
	k := newTestKey(t)
	ctx := testCtx(t)
	att, err := k.dev.MakeCredential(ctx, mcRequest("example.com", []byte("u1"), "alice", true), nil)
	if err != nil {
		t.Fatal(err)
	}
	if att.AuthData.RPIDHash != sha256.Sum256([]byte("example.com")) || len(att.AuthData.CredentialID) == 0 {
		t.Fatalf("authData %+v", att.AuthData)
	}
	as, err := k.dev.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: testCDH}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(as.CredentialID, att.AuthData.CredentialID) || as.User == nil || !bytes.Equal(as.User.ID, []byte("u1")) {
		t.Errorf("assertion for %x user %+v", as.CredentialID, as.User)
	}
	pub, _, err := cose.DecodePublicKey(att.AuthData.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	signed := append(bytes.Clone(as.RawAuthData), testCDH...)
	if err := cose.Verify(pub, cose.AlgES256, signed, as.Signature); err != nil {
		t.Errorf("assertion signature: %v", err)
	}
	_, err = k.dev.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "other.example", ClientDataHash: testCDH}, nil)
	if !errors.Is(err, ctap2.ErrNoCredentials) {
		t.Errorf("assertion for an unknown RP: %v, want NO_CREDENTIALS", err)
	}
}
