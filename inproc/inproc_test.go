package inproc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/hid"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/vktest"
)

var encMode = func() cbor.EncMode {
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// do sends a CTAP2 command straight to the authenticator.
func do(t *testing.T, k *inproc.Key, cmd byte, params any) (ctap2.StatusCode, []byte) {
	t.Helper()
	var p []byte
	if params != nil {
		var err error
		if p, err = encMode.Marshal(params); err != nil {
			t.Fatal(err)
		}
	}
	return k.Authenticator.Transact(ctx(t), cmd, p)
}

var cdh = sha256.Sum256([]byte("client data"))

// doOK sends a command that must succeed (what names it in a failure) and
// returns the authenticator data of its response, decoded into resp.
func doOK(t *testing.T, k *inproc.Key, what string, cmd byte, params, resp any, authData *[]byte) *ctap2.AuthData {
	t.Helper()
	st, out := do(t, k, cmd, params)
	if st != ctap2.StatusOK {
		t.Fatalf("%s: %v", what, st)
	}
	if err := cbor.Unmarshal(out, resp); err != nil {
		t.Fatal(err)
	}
	ad, err := ctap2.ParseAuthData(*authData)
	if err != nil {
		t.Fatal(err)
	}
	return ad
}

func makeResident(t *testing.T, k *inproc.Key, userID string) []byte {
	t.Helper()
	var resp ctap2.MakeCredentialResponse
	return doOK(t, k, "makeCredential", ctap2.CmdMakeCredential, map[int]any{
		1: cdh[:],
		2: map[string]any{"id": "example.com", "name": "Example"},
		3: map[string]any{"id": []byte(userID), "name": userID},
		4: []map[string]any{{"type": "public-key", "alg": -7}},
		7: map[string]bool{"rk": true},
	}, &resp, &resp.AuthData).CredentialID
}

// discover runs a getAssertion without allowList on example.com and returns
// the response and its sign count.
func discover(t *testing.T, k *inproc.Key) (*ctap2.GetAssertionResponse, uint32) {
	t.Helper()
	var ga ctap2.GetAssertionResponse
	ad := doOK(t, k, "getAssertion", ctap2.CmdGetAssertion, map[int]any{1: "example.com", 2: cdh[:]}, &ga, &ga.AuthData)
	return &ga, ad.SignCount
}

// getInfo is authenticatorGetInfo's response, the fields checked here.
type getInfo struct {
	Versions []string `cbor:"1,keyasint"`
	AAGUID   []byte   `cbor:"3,keyasint"`
}

// cborGetInfo sends authenticatorGetInfo in a CTAPHID_CBOR message.
func cborGetInfo(t *testing.T, c *hid.Client) getInfo {
	t.Helper()
	resp, err := c.CBOR(ctx(t), []byte{ctap2.CmdGetInfo})
	if err != nil {
		t.Fatalf("CTAPHID_CBOR getInfo: %v", err)
	}
	if len(resp) < 2 || resp[0] != byte(ctap2.StatusOK) {
		t.Fatalf("getInfo answer % x", resp[:min(len(resp), 8)])
	}
	var info getInfo
	if err := cbor.Unmarshal(resp[1:], &info); err != nil {
		t.Fatalf("decode getInfo: %v", err)
	}
	return info
}

func TestTempDirKeyOverCTAPHID(t *testing.T) {
	t.Parallel()
	k, err := inproc.New(inproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := k.Dir()
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("state dir %q: %v", dir, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("state dir mode %v: readable by others", perm)
	}

	c, err := k.Client(ctx(t))
	if err != nil {
		t.Fatalf("Client (CTAPHID_INIT): %v", err)
	}
	if cid := c.CID(); cid == 0 || cid == hid.BroadcastCID {
		t.Fatalf("allocated channel %08x", cid)
	}
	info := cborGetInfo(t, c)
	for _, v := range []string{"FIDO_2_0", "FIDO_2_1"} {
		if !slices.Contains(info.Versions, v) {
			t.Errorf("versions %q lack %s", info.Versions, v)
		}
	}
	if !bytes.Equal(info.AAGUID, ctap2.DefaultAAGUID[:]) {
		t.Errorf("aaguid % x", info.AAGUID)
	}
	if echo, err := c.Ping(ctx(t), []byte("hello")); err != nil || string(echo) != "hello" {
		t.Errorf("PING: %q, %v", echo, err)
	}

	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary state dir survives Close: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Device is a plain report device: a client made on it works like Client.
func TestDeviceReports(t *testing.T) {
	t.Parallel()
	k := vktest.InProc(t, inproc.Options{})
	c := hid.NewClient(k.Device())
	if err := c.Init(ctx(t)); err != nil {
		t.Fatalf("CTAPHID_INIT: %v", err)
	}
	if c.Info().Capabilities&hid.CapCBOR == 0 {
		t.Errorf("capabilities %#x lack CBOR", c.Info().Capabilities)
	}
	cborGetInfo(t, c)
}

// A given Dir is kept by Close, and a key reopened on it has the same
// credentials, with counters that keep growing.
func TestGivenDirKeepsCredentials(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	k, err := inproc.New(inproc.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if k.Dir() != dir {
		t.Fatalf("Dir() = %q, want %q", k.Dir(), dir)
	}
	id := makeResident(t, k, "alice")
	ga, before := discover(t, k)
	if !bytes.Equal(ga.Credential.ID, id) || string(ga.User.ID) != "alice" {
		t.Fatalf("discovered %x user %q", ga.Credential.ID, ga.User.ID)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("given state dir removed by Close: %v", err)
	}

	for i := 0; i < 2; i++ {
		k, err = inproc.New(inproc.Options{Dir: dir})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		ga, n := discover(t, k)
		if !bytes.Equal(ga.Credential.ID, id) || string(ga.User.ID) != "alice" {
			t.Fatalf("after reopen: %x user %q", ga.Credential.ID, ga.User.ID)
		}
		if n <= before {
			t.Fatalf("after reopen: sign count %d, not above %d", n, before)
		}
		before = n
		c, err := k.Client(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		cborGetInfo(t, c)
		if err := k.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

// Only one key may hold a state directory; a refused New leaves it intact.
func TestDirInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := vktest.InProc(t, inproc.Options{Dir: dir})
	id := makeResident(t, k, "alice")
	if k2, err := inproc.New(inproc.Options{Dir: dir}); err == nil {
		k2.Close()
		t.Fatal("a second key opened a state dir in use")
	}
	if ga, _ := discover(t, k); !bytes.Equal(ga.Credential.ID, id) {
		t.Fatal("credential lost after the refused New")
	}
}

// PowerCycle drops per-boot state (getNextAssertion, channels) and keeps
// credentials and counters.
func TestPowerCycle(t *testing.T) {
	t.Parallel()
	k := vktest.InProc(t, inproc.Options{})
	makeResident(t, k, "alice")
	time.Sleep(time.Millisecond)
	makeResident(t, k, "bob")
	ga, before := discover(t, k)
	if ga.NumberOfCredentials != 2 {
		t.Fatalf("numberOfCredentials %d", ga.NumberOfCredentials)
	}
	k.PowerCycle()
	if st, _ := do(t, k, ctap2.CmdGetNextAssertion, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("getNextAssertion after power cycle: %v, want NOT_ALLOWED", st)
	}
	ga2, after := discover(t, k)
	if ga2.NumberOfCredentials != 2 || !bytes.Equal(ga2.Credential.ID, ga.Credential.ID) {
		t.Fatalf("after power cycle: n=%d", ga2.NumberOfCredentials)
	}
	if after <= before {
		t.Fatalf("sign count %d after power cycle, not above %d", after, before)
	}
	if st, _ := do(t, k, ctap2.CmdGetNextAssertion, nil); st != ctap2.StatusOK {
		t.Fatalf("getNextAssertion: %v", st)
	}
	// The HID side comes back too: a new client gets a channel.
	c, err := k.Client(ctx(t))
	if err != nil {
		t.Fatalf("CTAPHID_INIT after power cycle: %v", err)
	}
	cborGetInfo(t, c)
}

func TestOptions(t *testing.T) {
	t.Parallel()
	aaguid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	var asked []ctap2.PresenceRequest
	k := vktest.InProc(t, inproc.Options{
		Presence: ctap2.PresenceFunc(func(_ context.Context, req ctap2.PresenceRequest) error {
			asked = append(asked, req)
			return ctap2.ErrDeclined
		}),
		Configure: func(c *ctap2.Config) { c.AAGUID = aaguid },
	})
	c, err := k.Client(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info := cborGetInfo(t, c); !bytes.Equal(info.AAGUID, aaguid[:]) {
		t.Errorf("Configure ignored: aaguid % x", info.AAGUID)
	}
	st, _ := do(t, k, ctap2.CmdMakeCredential, map[int]any{
		1: cdh[:],
		2: map[string]any{"id": "example.com"},
		3: map[string]any{"id": []byte("u")},
		4: []map[string]any{{"type": "public-key", "alg": -7}},
	})
	if st != ctap2.ErrOperationDenied {
		t.Fatalf("makeCredential with presence declined: %v", st)
	}
	if len(asked) != 1 || asked[0].Op != "makeCredential" || asked[0].RPID != "example.com" {
		t.Fatalf("presence requests %+v", asked)
	}
}
