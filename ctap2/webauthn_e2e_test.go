package ctap2_test

// End-to-end WebAuthn ceremonies through CTAPHID reports: an in-process key
// (inproc) driven by a hid.Client, with github.com/go-webauthn/webauthn as
// the relying party verifying every attestation and assertion.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/rptest"
	"github.com/virtkey/virtkey/internal/vktest"
)

// device sends CTAP2 commands as CTAPHID_CBOR messages.
type device struct {
	c *hid.Client
}

// webauthnKey starts an in-process key with opts and returns a client of
// it and the tests' relying party.
func webauthnKey(t testing.TB, opts inproc.Options) (*device, *rptest.RP) {
	t.Helper()
	return openDevice(t, vktest.InProc(t, opts)), rptest.New(t, rpID, rpOrigin)
}

func openDevice(t testing.TB, k *inproc.Key) *device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := k.Client(ctx)
	if err != nil {
		t.Fatalf("CTAPHID INIT: %v", err)
	}
	return &device{c: c}
}

// Transact sends cmd with params (CTAP2-canonical CBOR; nil: none) and
// returns the status and the response CBOR (an rptest.Device).
func (d *device) Transact(ctx context.Context, cmd byte, params any) (ctap2.StatusCode, []byte, error) {
	req := []byte{cmd}
	if params != nil {
		p, err := encMode.Marshal(params)
		if err != nil {
			return 0, nil, err
		}
		req = append(req, p...)
	}
	resp, err := d.c.CBOR(ctx, req)
	if err != nil {
		return 0, nil, fmt.Errorf("CTAPHID_CBOR %#x: %w", cmd, err)
	}
	if len(resp) == 0 {
		return 0, nil, fmt.Errorf("CTAPHID_CBOR %#x: empty response", cmd)
	}
	return ctap2.StatusCode(resp[0]), resp[1:], nil
}

func TestWebAuthnRegisterAndLogin(t *testing.T) {
	t.Parallel()
	algs := []struct {
		name string
		alg  int
	}{{"ES256", -7}, {"EdDSA", -8}}
	atts := []struct {
		name      string
		pref      []string
		configure func(*ctap2.Config)
		fmt       string
	}{
		{"packed-self", nil, nil, "packed"},
		{"packed-preferred", []string{"packed", "none"}, func(c *ctap2.Config) { c.Attestation = ctap2.AttestationNone }, "packed"},
		{"none-preferred", []string{"none"}, nil, "none"},
		{"none-configured", nil, func(c *ctap2.Config) { c.Attestation = ctap2.AttestationNone }, "none"},
	}
	for _, a := range algs {
		for _, at := range atts {
			for _, rk := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/rk=%v", a.name, at.name, rk)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					d, rp := webauthnKey(t, inproc.Options{Configure: at.configure})
					u := &rptest.User{ID: []byte("user-" + name), Name: "alice"}
					cred := rp.Register(t, d, u, rptest.RegisterOptions{Alg: a.alg, Resident: rk, AttestationFormats: at.pref, WantFmt: at.fmt})
					// Self attestation is "basic_surrogate" in FIDO metadata terms.
					if want := map[string]string{"packed": "basic_surrogate", "none": "none"}[at.fmt]; cred.AttestationType != want {
						t.Errorf("attestation type %q, want %q", cred.AttestationType, want)
					}
					for i := 0; i < 4; i++ {
						rp.Login(t, d, u)
					}
					if rk {
						if got := rp.DiscoverableLogin(t, d, u); len(got) != 1 || got[0].User != u {
							t.Fatalf("discoverable login returned %v", names(got))
						}
					}
				})
			}
		}
	}
}

// Two accounts on one RP, both discoverable: the key offers both (newest
// first) through getAssertion + getNextAssertion, and the RP accepts each.
func TestWebAuthnDiscoverableTwoAccounts(t *testing.T) {
	t.Parallel()
	d, rp := webauthnKey(t, inproc.Options{})
	alice := &rptest.User{ID: []byte("alice-handle-0001"), Name: "alice"}
	bob := &rptest.User{ID: []byte("bob-handle-0002"), Name: "bob"}
	rp.Register(t, d, alice, rptest.RegisterOptions{Alg: -7, Resident: true, WantFmt: "packed"})
	time.Sleep(2 * time.Millisecond) // distinct creation times for the newest-first order
	rp.Register(t, d, bob, rptest.RegisterOptions{Alg: -8, Resident: true, WantFmt: "packed"})

	// A credential on another RP must not be offered.
	registerOn(t, "other.example", d, &rptest.User{ID: []byte("carol"), Name: "carol"})

	for round := 0; round < 3; round++ {
		got := rp.DiscoverableLogin(t, d, alice, bob)
		if len(got) != 2 || got[0].User != bob || got[1].User != alice {
			t.Fatalf("round %d: order %v, want bob then alice", round, names(got))
		}
	}
	// Each account still logs in username-first.
	rp.Login(t, d, alice)
	rp.Login(t, d, bob)
}

func names(as []rptest.Assertion) []string {
	var s []string
	for _, a := range as {
		s = append(s, a.User.Name)
	}
	return s
}

// registerOn makes a resident credential on another RP (checked only by the key).
func registerOn(t testing.TB, id string, d *device, u *rptest.User) {
	t.Helper()
	st, _ := rptest.Call(t, d, ctap2.CmdMakeCredential, map[int]any{
		1: sha([]byte("other")),
		2: map[string]any{"id": id, "name": id},
		3: map[string]any{"id": u.ID, "name": u.Name},
		4: []map[string]any{{"type": "public-key", "alg": -7}},
		7: map[string]bool{"rk": true},
	})
	if st != ctap2.StatusOK {
		t.Fatalf("makeCredential on %s: %v", id, st)
	}
}

// Power cycles and reopening the state directory keep credentials and
// counters: every login after either is accepted without a clone warning.
func TestWebAuthnPowerCycleAndReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, err := inproc.New(inproc.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d := openDevice(t, k)
	rp := rptest.New(t, rpID, rpOrigin)
	alice := &rptest.User{ID: []byte("alice-handle-0001"), Name: "alice"}
	bob := &rptest.User{ID: []byte("bob-handle-0002"), Name: "bob"}
	rp.Register(t, d, alice, rptest.RegisterOptions{Alg: -7, Resident: true, WantFmt: "packed"})
	time.Sleep(2 * time.Millisecond)
	rp.Register(t, d, bob, rptest.RegisterOptions{Alg: -7, Resident: true, WantFmt: "packed"})
	rp.Login(t, d, alice)
	rp.Login(t, d, bob)

	for i := 0; i < 2; i++ {
		k.PowerCycle()
		d = openDevice(t, k)
		rp.Login(t, d, alice)
		rp.DiscoverableLogin(t, d, alice, bob)
	}

	// getNextAssertion state does not survive a power cycle.
	assertion, _, err := rp.BeginDiscoverableLogin()
	if err != nil {
		t.Fatal(err)
	}
	cdj := rp.ClientData("webauthn.get", assertion.Response.Challenge)
	if st, _ := rptest.Call(t, d, ctap2.CmdGetAssertion, map[int]any{1: rpID, 2: sha(cdj)}); st != ctap2.StatusOK {
		t.Fatalf("getAssertion: %v", st)
	}
	k.PowerCycle()
	d = openDevice(t, k)
	if st, _ := rptest.Call(t, d, ctap2.CmdGetNextAssertion, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("getNextAssertion after power cycle: %v, want NOT_ALLOWED", st)
	}

	for i := 0; i < 2; i++ {
		if err := k.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		k, err = inproc.New(inproc.Options{Dir: dir})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		d = openDevice(t, k)
		rp.Login(t, d, alice)
		rp.Login(t, d, bob)
		got := rp.DiscoverableLogin(t, d, alice, bob)
		if len(got) != 2 || got[0].User != bob {
			t.Fatalf("after reopen: order %v, want bob first", names(got))
		}
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// The oracle is live: a tampered signature, a replayed challenge and
// another origin are refused.
func TestWebAuthnRejectsTampering(t *testing.T) {
	t.Parallel()
	d, rp := webauthnKey(t, inproc.Options{})
	u := &rptest.User{ID: []byte("alice-handle-0001"), Name: "alice"}
	cred := rp.Register(t, d, u, rptest.RegisterOptions{Alg: -7, WantFmt: "packed"})

	getAssertion := func(cdj []byte) *ctap2.GetAssertionResponse {
		st, out := rptest.Call(t, d, ctap2.CmdGetAssertion, map[int]any{1: rpID, 2: sha(cdj),
			3: []map[string]any{{"type": "public-key", "id": cred.ID}}})
		if st != ctap2.StatusOK {
			t.Fatalf("getAssertion: %v", st)
		}
		return rptest.DecodeAssertion(t, out)
	}
	for _, tc := range []struct {
		name   string
		mutate func(ga *ctap2.GetAssertionResponse, cdj *[]byte, challenge protocol.URLEncodedBase64)
	}{
		{"signature", func(ga *ctap2.GetAssertionResponse, _ *[]byte, _ protocol.URLEncodedBase64) {
			ga.Signature[len(ga.Signature)-1] ^= 1
		}},
		{"authData", func(ga *ctap2.GetAssertionResponse, _ *[]byte, _ protocol.URLEncodedBase64) {
			ga.AuthData[33] ^= 0xff // sign count
		}},
		{"challenge", func(ga *ctap2.GetAssertionResponse, cdj *[]byte, _ protocol.URLEncodedBase64) {
			*cdj = rp.ClientData("webauthn.get", protocol.URLEncodedBase64(bytes.Repeat([]byte{1}, 32)))
			*ga = *getAssertion(*cdj)
		}},
		{"origin", func(ga *ctap2.GetAssertionResponse, cdj *[]byte, challenge protocol.URLEncodedBase64) {
			*cdj, _ = json.Marshal(map[string]any{"type": "webauthn.get", "challenge": challenge.String(), "origin": "https://evil.example"})
			*ga = *getAssertion(*cdj)
		}},
	} {
		assertion, session, err := rp.BeginLogin(u)
		if err != nil {
			t.Fatal(err)
		}
		cdj := rp.ClientData("webauthn.get", assertion.Response.Challenge)
		ga := getAssertion(cdj)
		tc.mutate(ga, &cdj, assertion.Response.Challenge)
		if _, err := rp.ValidateLogin(u, *session, rptest.AssertionResponse(t, ga, cdj)); err == nil {
			t.Errorf("%s: tampered assertion accepted", tc.name)
		}
	}
	// The untampered path still works afterwards.
	rp.Login(t, d, u)
}
