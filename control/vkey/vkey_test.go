package vkey_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/client"
	"github.com/virtkey/virtkey/control/factory"
	"github.com/virtkey/virtkey/control/internal/apitest"
	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	ctapclient "github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/vktest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start serves a control server with the real key factory on a Unix
// socket or token-guarded TCP.
func start(t testing.TB, network string, fo factory.Options) *apitest.Env {
	t.Helper()
	return apitest.Serve(t, control.NewServer(control.Options{Factory: factory.New(fo)}), network)
}

// newKey adds a key of cfg to e's server and returns it with its client;
// the test stops if it cannot.
func newKey(ctx context.Context, t testing.TB, e *apitest.Env, cfg control.KeyConfig) (control.KeyInfo, *client.Key) {
	t.Helper()
	ki, err := e.Client.AddKey(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ki, e.Client.Key(ki.ID)
}

// ctap is a CTAP client of a UDP key.
type ctap struct {
	*ctapclient.Device
	close func() error // closes its socket
}

// dial opens a CTAP client on the UDP key at addr until cleanup.
func dial(t *testing.T, addr string) *ctap {
	t.Helper()
	d := benchDial(t, addr)
	t.Cleanup(func() { d.close() })
	return d
}

// benchDial opens a CTAP client on the UDP key at addr; closing it is the
// caller's.
func benchDial(t testing.TB, addr string) *ctap {
	t.Helper()
	d, closeConn, err := vktest.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	return &ctap{Device: d, close: closeConn}
}

var cdh = sha256.Sum256([]byte("client data"))

func makeCred(ctx context.Context, d *ctap, rp string, user string, rk bool) (*ctapclient.Attestation, error) {
	alg := int64(cose.AlgES256)
	t := true
	return d.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
		ClientDataHash: cdh[:], RP: &ctap2.RPEntity{ID: rp}, User: &ctap2.UserEntity{ID: []byte(user), Name: user},
		PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}}, Options: &ctap2.RequestOptions{RK: &rk, UV: &t},
	}, nil)
}

func assert(ctx context.Context, d *ctap, rp string, allow []byte, uv bool) (*ctapclient.Assertion, error) {
	req := &ctap2.GetAssertionRequest{RPID: rp, ClientDataHash: cdh[:], Options: &ctap2.RequestOptions{UV: &uv}}
	if allow != nil {
		req.AllowList = []ctap2.CredDescriptor{{Type: "public-key", ID: allow}}
	}
	return d.GetAssertion(ctx, req, nil)
}

func wantStatus(t *testing.T, err error, want ctap2.StatusCode) {
	t.Helper()
	var got ctap2.StatusCode
	if !errors.As(err, &got) || got != want {
		t.Fatalf("CTAP error %v, want %v", err, want)
	}
}

// next reads events until one of type typ arrives.
func next(t *testing.T, es *client.EventStream, typ string) control.Event {
	t.Helper()
	return vktest.NextEvent(t, es, func(ev control.Event) bool { return ev.Type == typ })
}

func verify(t *testing.T, pub crypto.PublicKey, alg cose.Algorithm, a *ctapclient.Assertion) {
	t.Helper()
	msg := append(append([]byte{}, a.RawAuthData...), cdh[:]...)
	if err := cose.Verify(pub, alg, msg, a.Signature); err != nil {
		t.Errorf("assertion signature does not verify under the credential's key: %v", err)
	}
}

// TestCredentialsOverCTAP: what the API does, CTAP sees, and the other way.
func TestCredentialsOverCTAP(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			e := start(t, network, factory.Options{SelectNewestAccount: true})
			ctx := testCtx(t)
			ki, k := newKey(ctx, t, e, control.KeyConfig{Attach: "udp"})
			if ki.UDPAddr == "" || !ki.ExportAllowed || !ki.Ephemeral || !ki.IsUserVerified || !ki.HasResidentKey {
				t.Fatalf("new key: %+v", ki)
			}
			events, err := k.Events(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer events.Close()
			d := dial(t, ki.UDPAddr)

			// A passkey made over CTAP is listed, with its private key.
			att, err := makeCred(ctx, d, "example.com", "alice", true)
			if err != nil {
				t.Fatal(err)
			}
			ev := next(t, events, control.EventCredentialAdded)
			if string(ev.CredentialID) != string(att.AuthData.CredentialID) || ev.RPID != "example.com" || string(ev.UserHandle) != "alice" {
				t.Errorf("credentialAdded = %+v", ev)
			}
			c, err := k.Credential(ctx, att.AuthData.CredentialID)
			if err != nil {
				t.Fatal(err)
			}
			priv, err := x509.ParsePKCS8PrivateKey(c.PrivateKey)
			if err != nil {
				t.Fatalf("exported private key: %v", err)
			}
			pub, _, _ := cose.DecodePublicKey(att.AuthData.PublicKey)
			if !priv.(*ecdsa.PrivateKey).PublicKey.Equal(pub) || !c.IsResidentCredential || c.SignCount != 0 || c.UserName != "alice" {
				t.Errorf("listed credential %+v does not match the CTAP one", c)
			}
			a, err := assert(ctx, d, "example.com", nil, true)
			if err != nil {
				t.Fatal(err)
			}
			ev = next(t, events, control.EventCredentialAsserted)
			if ev.SignCount == nil || *ev.SignCount != a.AuthData.SignCount || ev.Flags == nil || *ev.Flags != a.AuthData.Flags {
				t.Errorf("credentialAsserted = %+v, assertion count %d flags %#x", ev, a.AuthData.SignCount, a.AuthData.Flags)
			}
			if c, _ := k.Credential(ctx, att.AuthData.CredentialID); c.SignCount != a.AuthData.SignCount {
				t.Errorf("listed signCount %d, assertion had %d", c.SignCount, a.AuthData.SignCount)
			}

			// Imported keys of every algorithm sign assertions.
			for _, kc := range []struct {
				alg cose.Algorithm
				gen func() crypto.Signer
			}{
				{cose.AlgES256, func() crypto.Signer { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }},
				{cose.AlgEdDSA, func() crypto.Signer { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }},
				{cose.AlgES384, func() crypto.Signer { k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader); return k }},
				{cose.AlgRS256, func() crypto.Signer { k, _ := rsa.GenerateKey(rand.Reader, 2048); return k }},
			} {
				key := kc.gen()
				der, _ := x509.MarshalPKCS8PrivateKey(key)
				id := []byte("imported-" + kc.alg.String() + "-0123456789")
				tr := true
				got, err := k.AddCredential(ctx, control.CredentialParams{
					CredentialID: id, RPID: "import.example", PrivateKey: der, IsResidentCredential: &tr,
					UserHandle: []byte("u-" + kc.alg.String()), SignCount: 41, UserName: "imp",
				})
				if err != nil {
					t.Fatalf("%v: %v", kc.alg, err)
				}
				if got.Algorithm != int(kc.alg) || got.SignCount != 41 || string(got.PrivateKey) != string(der) {
					t.Errorf("%v: added %+v", kc.alg, got)
				}
				a, err := assert(ctx, d, "import.example", id, true)
				if err != nil {
					t.Fatalf("%v: %v", kc.alg, err)
				}
				verify(t, key.Public(), kc.alg, a)
				if a.AuthData.SignCount != 42 {
					t.Errorf("%v: signCount %d after import at 41, want 42", kc.alg, a.AuthData.SignCount)
				}
			}
			// The newest imported passkey is what a discoverable request finds.
			if a, err := assert(ctx, d, "import.example", nil, true); err != nil || a.User == nil || string(a.User.ID) != "u-RS256" {
				t.Errorf("discoverable assertion of imported passkeys: %+v, %v", a, err)
			}

			// A non-resident credential from the API: allowList only.
			nrKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			nrDER, _ := x509.MarshalPKCS8PrivateKey(nrKey)
			nrID := []byte("non-resident-credential-01")
			if _, err := k.AddCredential(ctx, control.CredentialParams{CredentialID: nrID, RPID: "nr.example", PrivateKey: nrDER}); err != nil {
				t.Fatal(err)
			}
			if _, err := assert(ctx, d, "nr.example", nil, true); err == nil {
				t.Error("a non-resident API credential was discoverable")
			}
			a, err = assert(ctx, d, "nr.example", nrID, true)
			if err != nil {
				t.Fatal(err)
			}
			verify(t, nrKey.Public(), cose.AlgES256, a)

			// signCount re-base, lower values included.
			n := uint32(5)
			if _, err := k.SetCredentialProps(ctx, nrID, control.CredentialProps{SignCount: &n}); err != nil {
				t.Fatal(err)
			}
			if a, _ := assert(ctx, d, "nr.example", nrID, true); a == nil || a.AuthData.SignCount != 6 {
				t.Errorf("after re-base to 5: %+v", a)
			}
			// Backup flags show in the assertion.
			tr := true
			if _, err := k.SetCredentialProps(ctx, nrID, control.CredentialProps{BackupEligibility: &tr, BackupState: &tr}); err != nil {
				t.Fatal(err)
			}
			if a, _ := assert(ctx, d, "nr.example", nrID, true); a == nil || a.AuthData.Flags&(ctap2.FlagBE|ctap2.FlagBS) != ctap2.FlagBE|ctap2.FlagBS {
				t.Errorf("BE/BS not in the flags: %+v", a)
			}
			// Deleting revokes it for CTAP.
			if err := k.DeleteCredential(ctx, nrID); err != nil {
				t.Fatal(err)
			}
			if ev := next(t, events, control.EventCredentialDeleted); string(ev.CredentialID) != string(nrID) {
				t.Errorf("credentialDeleted = %+v", ev)
			}
			_, err = assert(ctx, d, "nr.example", nrID, true)
			wantStatus(t, err, ctap2.ErrNoCredentials)

			// A generated credential (the key store makes the key).
			gen, err := k.AddCredential(ctx, control.CredentialParams{RPID: "gen.example", IsResidentCredential: &tr, UserHandle: []byte("g")})
			if err != nil {
				t.Fatal(err)
			}
			if a, err := assert(ctx, d, "gen.example", gen.CredentialID, true); err != nil {
				t.Fatal(err)
			} else {
				pk, _ := x509.ParsePKIXPublicKey(gen.PublicKey)
				verify(t, pk, cose.AlgES256, a)
			}

			// Delete all.
			if err := k.DeleteCredentials(ctx); err != nil {
				t.Fatal(err)
			}
			if cs, _ := k.Credentials(ctx); len(cs) != 0 {
				t.Errorf("%d credentials after delete all", len(cs))
			}
			_, err = assert(ctx, d, "example.com", nil, true)
			wantStatus(t, err, ctap2.ErrNoCredentials)
		})
	}
}

// TestUVPresenceOverridesPIN drives the key-level switches and watches a
// CTAP client see them.
func TestUVPresenceOverridesPIN(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			uvPresenceOverridesPIN(t, start(t, network, factory.Options{}))
		})
	}
}

func uvPresenceOverridesPIN(t *testing.T, e *apitest.Env) {
	ctx := testCtx(t)
	ki, k := newKey(ctx, t, e, control.KeyConfig{Attach: "udp"})
	events, _ := k.Events(ctx)
	defer events.Close()
	d := dial(t, ki.UDPAddr)
	att, err := makeCred(ctx, d, "example.com", "bob", true)
	if err != nil {
		t.Fatal(err)
	}
	id := att.AuthData.CredentialID

	// UV off: built-in UV fails; on: it works again.
	if ki, err := k.SetUserVerified(ctx, false); err != nil || ki.IsUserVerified {
		t.Fatalf("uv off: %+v %v", ki, err)
	}
	_, err = assert(ctx, d, "example.com", id, true)
	wantStatus(t, err, ctap2.ErrUVInvalid)
	if _, err := k.SetUserVerified(ctx, true); err != nil {
		t.Fatal(err)
	}
	if a, err := assert(ctx, d, "example.com", id, true); err != nil || a.AuthData.Flags&ctap2.FlagUV == 0 {
		t.Fatalf("uv on: %+v %v", a, err)
	}

	// Presence deny.
	if ki, err := k.SetPresence(ctx, control.PresenceDeny); err != nil || ki.IsUserConsenting {
		t.Fatalf("presence deny: %+v %v", ki, err)
	}
	_, err = assert(ctx, d, "example.com", id, false)
	wantStatus(t, err, ctap2.ErrOperationDenied)

	// Presence manual: the request waits for the test.
	k.SetPresence(ctx, control.PresenceManual)
	for _, approve := range []bool{true, false} {
		res := make(chan error, 1)
		go func() { _, err := assert(ctx, d, "example.com", id, false); res <- err }()
		var ps []control.PendingPresence
		for len(ps) == 0 {
			ps, err = k.PendingPresence(ctx)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(ps) != 1 || ps[0].Op != "getAssertion" || ps[0].RPID != "example.com" {
			t.Fatalf("pending = %+v", ps)
		}
		if ev := vktest.NextEvent(t, events, func(ev control.Event) bool { return ev.RequestID == ps[0].RequestID }); ev.Type != control.EventPresenceRequested {
			t.Errorf("first event of request %s: %+v", ps[0].RequestID, ev)
		}
		if err := k.AnswerPresence(ctx, ps[0].RequestID, approve); err != nil {
			t.Fatal(err)
		}
		err = <-res
		if approve && err != nil {
			t.Errorf("approved request: %v", err)
		}
		if !approve {
			wantStatus(t, err, ctap2.ErrOperationDenied)
		}
		if ev := vktest.NextEvent(t, events, func(ev control.Event) bool { return ev.RequestID == ps[0].RequestID }); ev.Type != control.EventPresenceAnswered || ev.Status != map[bool]string{true: "approved", false: "denied"}[approve] {
			t.Errorf("presenceAnswered = %+v", ev)
		}
	}
	// Presence timeout: no answer until the client gives up.
	k.SetPresence(ctx, control.PresenceTimeout)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = assert(short, d, "example.com", id, false)
	cancel()
	if err == nil {
		t.Error("timeout mode answered")
	}
	if ev := next(t, events, control.EventPresenceAnswered); ev.Status != "cancelled" && ev.Status != "timeout" {
		t.Errorf("presenceAnswered after a cancel = %+v", ev)
	}
	k.SetPresence(ctx, control.PresenceAuto)
	d = dial(t, ki.UDPAddr) // the cancelled command left the channel; start afresh

	// Overrides.
	k.SetOverrides(ctx, control.Overrides{IsBogusSignature: true, IsBadUV: true, IsBadUP: true})
	a, err := assert(ctx, d, "example.com", id, true)
	if err != nil {
		t.Fatal(err)
	}
	if a.AuthData.Flags&(ctap2.FlagUV|ctap2.FlagUP) != 0 || string(a.Signature) != string(make([]byte, len(a.Signature))) {
		t.Errorf("overrides not applied: flags %#x sig %x", a.AuthData.Flags, a.Signature)
	}
	k.SetOverrides(ctx, control.Overrides{})
	if a, _ := assert(ctx, d, "example.com", id, true); a == nil || a.AuthData.Flags&ctap2.FlagUP == 0 {
		t.Error("overrides still applied after clearing them")
	}

	// PIN set through the API works over CTAP; a wrong PIN is an event.
	if ki, err := k.SetPIN(ctx, "4321"); err != nil || !ki.PINSet {
		t.Fatalf("SetPIN: %+v %v", ki, err)
	}
	next(t, events, control.EventPINSet)
	if n, _, err := d.GetPINRetries(ctx); err != nil || n != 8 {
		t.Errorf("retries %d, %v", n, err)
	}
	if _, err := d.GetPINToken(ctx, "4321", ctap2.PermGetAssertion, "example.com"); err != nil {
		t.Errorf("PIN from the API does not work over CTAP: %v", err)
	}
	if _, err := d.GetPINToken(ctx, "0000", ctap2.PermGetAssertion, "example.com"); err == nil {
		t.Error("a wrong PIN was accepted")
	}
	if ev := next(t, events, control.EventPINFailed); ev.Status == "" {
		t.Errorf("pinFailed = %+v", ev)
	}
	if _, err := k.SetPIN(ctx, "12"); !errors.Is(err, &control.BadRequestError{}) && !client.IsStatus(err, 400) {
		t.Errorf("a 2-digit PIN: %v", err)
	}
	if ki, err := k.RemovePIN(ctx); err != nil || ki.PINSet {
		t.Fatalf("RemovePIN: %+v %v", ki, err)
	}
	if info, err := d.GetInfo(ctx); err != nil || info.Options["clientPin"] {
		t.Errorf("clientPin after RemovePIN: %v %v", info.Options, err)
	}

	// Replug: an event, and the key answers a fresh client.
	if _, err := k.Replug(ctx); err != nil {
		t.Fatal(err)
	}
	next(t, events, control.EventReplug)
	d = dial(t, ki.UDPAddr)
	if _, err := assert(ctx, d, "example.com", id, true); err != nil {
		t.Errorf("after replug: %v", err)
	}

	// A reset over CTAP is an event, and the API sees the empty key.
	if err := d.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	next(t, events, control.EventReset)
	if cs, err := k.Credentials(ctx); err != nil || len(cs) != 0 {
		t.Errorf("after reset: %d credentials, %v", len(cs), err)
	}
	if ki, _ := k.Info(ctx); ki.PINSet {
		t.Error("pinSet after reset")
	}
}

// TestExportPolicy: persistent keys keep private keys in unless allowed.
func TestExportPolicyAndRestart(t *testing.T) {
	t.Parallel()
	e := start(t, "unix", factory.Options{})
	ctx := testCtx(t)
	dir := t.TempDir()
	ki, k := newKey(ctx, t, e, control.KeyConfig{Attach: "udp", StateDir: dir})
	if ki.Ephemeral || ki.ExportAllowed {
		t.Errorf("persistent key: %+v", ki)
	}
	priv, _ := apitest.ES256Key(t)
	tr := true
	_, err := k.AddCredential(ctx, control.CredentialParams{RPID: "a.example", PrivateKey: priv, IsResidentCredential: &tr, UserHandle: []byte("u")})
	if !errors.Is(err, control.ErrForbidden) {
		t.Errorf("import into a persistent key: %v, want 403", err)
	}
	gen, err := k.AddCredential(ctx, control.CredentialParams{RPID: "a.example", IsResidentCredential: &tr, UserHandle: []byte("u"), SignCount: 9})
	if err != nil {
		t.Fatal(err)
	}
	if gen.PrivateKey != nil {
		t.Error("a persistent key exported a private key")
	}
	if _, err := k.PlaywrightCredentials(ctx); !errors.Is(err, control.ErrForbidden) {
		t.Errorf("Playwright export: %v, want 403", err)
	}
	// The same state directory again: the API-made credential is there.
	if err := e.Client.DeleteKey(ctx, ki.ID); err != nil {
		t.Fatal(err)
	}
	ki2, err := e.Client.AddKey(ctx, control.KeyConfig{Attach: "udp", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := e.Client.Key(ki2.ID).Credentials(ctx)
	if err != nil || len(cs) != 1 || string(cs[0].CredentialID) != string(gen.CredentialID) || cs[0].SignCount != 9 {
		t.Fatalf("after restart: %+v, %v", cs, err)
	}
	d := dial(t, ki2.UDPAddr)
	if a, err := assert(ctx, d, "a.example", nil, true); err != nil || a.AuthData.SignCount != 10 {
		t.Errorf("after restart: %+v, %v", a, err)
	}
	// Two keys cannot share a state directory.
	if _, err := e.Client.AddKey(ctx, control.KeyConfig{Attach: "udp", StateDir: dir}); !errors.Is(err, control.ErrConflict) {
		t.Errorf("second key on one state dir: %v", err)
	}
}

// TestLargeBlob: an API large blob is in the key's large-blob array under
// the credential's largeBlobKey.
func TestLargeBlob(t *testing.T) {
	t.Parallel()
	e := start(t, "unix", factory.Options{})
	ctx := testCtx(t)
	ki, k := newKey(ctx, t, e, control.KeyConfig{Attach: "udp"})
	tr := true
	blob := []byte("a large blob, stored for the credential")
	c, err := k.AddCredential(ctx, control.CredentialParams{RPID: "blob.example", IsResidentCredential: &tr, UserHandle: []byte("u"), LargeBlob: blob})
	if err != nil {
		t.Fatal(err)
	}
	if string(c.LargeBlob) != string(blob) {
		t.Errorf("largeBlob round trip: %q", c.LargeBlob)
	}
	d := dial(t, ki.UDPAddr)
	st, raw, err := d.Transact(ctx, ctap2.CmdLargeBlobs, map[int]any{1: 1024, 3: 0})
	if err != nil || st != ctap2.StatusOK || len(raw) < 20 {
		t.Fatalf("largeBlobs get: %v %v", st, err)
	}
}

// TestDeleteKeyInFlight: a key removed while a CTAP request waits for
// presence answers the client and leaves no goroutine behind.
func TestDeleteKeyInFlight(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		e := start(t, "unix", factory.Options{})
		ctx := testCtx(t)
		ki, k := newKey(ctx, t, e, control.KeyConfig{Attach: "udp", Presence: control.PresenceManual})
		events, _ := k.Events(ctx)
		d := dial(t, ki.UDPAddr)
		res := make(chan error, 1)
		go func() { _, err := makeCred(ctx, d, "example.com", "carol", true); res <- err }()
		next(t, events, control.EventPresenceRequested)
		if err := e.Client.DeleteKey(ctx, ki.ID); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-res:
			wantStatus(t, err, ctap2.ErrOperationDenied)
		case <-time.After(10 * time.Second):
			t.Fatal("the client got no answer")
		}
		// The stream ends (after what was already queued for it).
		for i := 0; ; i++ {
			_, err := events.Next()
			if err == io.EOF {
				break
			}
			if err != nil || i > 10 {
				t.Fatalf("event stream after delete: %v (after %d events)", err, i)
			}
		}
		events.Close()
		d.close()
		e.Client.Close()
		e.HC.CloseIdleConnections()
		e.Stop()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOpenAPIRealKey: every documented route answers as documented with a
// real key, over the Unix socket and token-guarded TCP.
func TestOpenAPIRealKey(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			e := start(t, network, factory.Options{})
			a := &apitest.API{T: t, HC: e.HC, Base: e.Base, Token: e.Token, Doc: apitest.Parse(t)}
			a.Exercise(apitest.Options{})
		})
	}
}

// TestConcurrentAPIAndCTAP runs API calls and CTAP traffic at once (for
// the race detector).
func TestConcurrentAPIAndCTAP(t *testing.T) {
	t.Parallel()
	e := start(t, "unix", factory.Options{})
	ctx := testCtx(t)
	ki, k := newKey(ctx, t, e, control.KeyConfig{Attach: "udp"})
	events, _ := k.Events(ctx)
	defer events.Close()
	d := dial(t, ki.UDPAddr)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 10 {
			if _, err := makeCred(ctx, d, "example.com", string(rune('a'+i)), true); err != nil {
				t.Error(err)
				return
			}
			assert(ctx, d, "example.com", nil, true)
		}
	})
	wg.Go(func() {
		tr := true
		for range 10 {
			k.AddCredential(ctx, control.CredentialParams{RPID: "other.example", IsResidentCredential: &tr, UserHandle: []byte("x")})
			k.Credentials(ctx)
			k.SetOverrides(ctx, control.Overrides{})
			k.SetUserVerified(ctx, true)
			e.Client.Keys(ctx)
		}
	})
	wg.Wait()
}

// Chromium DevTools' authenticator options are accepted as they are.
func TestCDPOptions(t *testing.T) {
	t.Parallel()
	e := start(t, "unix", factory.Options{})
	ctx := testCtx(t)
	tr, f := true, false
	v := "ctap2_1"
	ki, err := e.Client.AddKey(ctx, control.KeyConfig{Attach: "udp", Protocol: "ctap2", CTAP2Version: &v, HasLargeBlob: &tr,
		HasCredBlob: &tr, HasMinPINLength: &tr, HasPRF: &tr, AutomaticPresenceSimulation: &f})
	if err != nil {
		t.Fatal(err)
	}
	if ki.Presence != control.PresenceManual || ki.Protocol != "ctap2" {
		t.Errorf("CDP options: %+v", ki)
	}
	bad := "ctap3"
	if _, err := e.Client.AddKey(ctx, control.KeyConfig{Attach: "udp", CTAP2Version: &bad}); !client.IsStatus(err, 400) {
		t.Errorf("ctap2Version ctap3: %v", err)
	}
}
