package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/internal/vktest"
)

// The PIN state and the credential store across process restarts: SIGTERM
// (a clean stop) and SIGKILL (a crash). The same lockout sequence across
// magic-reboot power cycles is testdata/python/test_pin_credmgmt.py.

const (
	prPIN   = "1234"
	prWrong = "0000"
	prRP    = "example.com"
)

func prContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// prRetries requires getPINRetries to say want, and powerCycleState (absent
// = false) to be blocked.
func prRetries(t *testing.T, ctx context.Context, d *client.Device, want int, blocked bool) {
	t.Helper()
	n, pcs, err := d.GetPINRetries(ctx)
	if err != nil {
		t.Fatalf("getPINRetries: %v", err)
	}
	if n != want {
		t.Errorf("pinRetries = %d, want %d", n, want)
	}
	if got := pcs != nil && *pcs; got != blocked {
		t.Errorf("powerCycleState = %v, want %v", got, blocked)
	}
}

// prAttempt asks for a token with pin and requires the PIN error want and
// then retries pinRetries left (want 0: the token must be issued).
func prAttempt(t *testing.T, ctx context.Context, d *client.Device, pin string, want ctap2.StatusCode, retries int) {
	t.Helper()
	tok, err := d.GetPINToken(ctx, pin, client.PermGetAssertion, prRP)
	if want == ctap2.StatusOK {
		if err != nil {
			t.Fatalf("PIN %q: %v, want a token", pin, err)
		}
		if tok == nil {
			t.Fatal("no token")
		}
		prRetries(t, ctx, d, retries, false)
		return
	}
	var pe *client.PINError
	if !errors.As(err, &pe) {
		t.Fatalf("PIN %q: got %v, want %v", pin, err, want)
	}
	if pe.Status != want {
		t.Fatalf("PIN %q: got %v, want %v", pin, pe.Status, want)
	}
	if pe.Retries != retries {
		t.Errorf("PIN %q (%v): %d retries left, want %d", pin, want, pe.Retries, retries)
	}
}

// TestPINLockoutAcrossRestart runs the ClientPIN retry sequence across
// process restarts. A restart is a power cycle: the consecutive-failure
// counter starts again, pinRetries is what was persisted — also after
// SIGKILL, since a wrong PIN's decrement is written before the reply.
func TestPINLockoutAcrossRestart(t *testing.T) {
	state := t.TempDir()
	ctx := prContext(t)

	k := vktest.Start(t, state)
	d := k.Client(t)
	if err := d.SetPIN(ctx, prPIN); err != nil {
		t.Fatalf("setPIN: %v", err)
	}
	// restart restarts virtkey, after a SIGKILL if kill, and requires
	// pinRetries to say want, with no power cycle asked for.
	restart := func(kill bool, want int) {
		t.Helper()
		if kill {
			k.Kill(t)
		}
		k = k.Restart(t)
		d = k.Client(t)
		prRetries(t, ctx, d, want, false)
	}
	// wrong makes a wrong-PIN attempt per status in want, from retries
	// left: each is answered with its status and leaves one retry fewer.
	wrong := func(retries int, want ...ctap2.StatusCode) {
		t.Helper()
		for i, st := range want {
			prAttempt(t, ctx, d, prWrong, st, retries-1-i)
		}
	}
	prRetries(t, ctx, d, 8, false)
	wrong(8, ctap2.ErrPINInvalid, ctap2.ErrPINInvalid)

	// SIGTERM, restart: 6 retries left, and the third wrong PIN in a row is
	// the first of this power cycle (PIN_INVALID, not PIN_AUTH_BLOCKED).
	restart(false, 6)
	wrong(6, ctap2.ErrPINInvalid, ctap2.ErrPINInvalid, ctap2.ErrPINAuthBlocked)
	prRetries(t, ctx, d, 3, true)
	prAttempt(t, ctx, d, prPIN, ctap2.ErrPINAuthBlocked, 3)

	// A restart lifts PIN_AUTH_BLOCKED; the right PIN restores 8.
	restart(false, 3)
	prAttempt(t, ctx, d, prPIN, ctap2.StatusOK, 8)

	// SIGKILL right after a wrong PIN's reply: the decrement is on disk.
	wrong(8, ctap2.ErrPINInvalid)
	restart(true, 7)
	wrong(7, ctap2.ErrPINInvalid)
	restart(true, 6)
	wrong(6, ctap2.ErrPINInvalid, ctap2.ErrPINInvalid, ctap2.ErrPINAuthBlocked)

	// Down to 0 across restarts: PIN_BLOCKED, which no restart lifts.
	restart(true, 3)
	wrong(3, ctap2.ErrPINInvalid, ctap2.ErrPINInvalid, ctap2.ErrPINBlocked)
	prAttempt(t, ctx, d, prPIN, ctap2.ErrPINBlocked, 0)
	restart(false, 0)
	prAttempt(t, ctx, d, prPIN, ctap2.ErrPINBlocked, 0)
	if err := d.ChangePIN(ctx, prPIN, "5678"); !errors.Is(err, ctap2.ErrPINBlocked) {
		t.Errorf("changePIN with a blocked PIN: %v, want PIN_BLOCKED", err)
	}

	// Only a reset recovers.
	if err := d.Reset(ctx); err != nil {
		t.Fatalf("reset: %v", err)
	}
	info, err := d.GetInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := client.Option(info, "clientPin"); v {
		t.Error("getInfo clientPin still true after reset")
	}
	// No PIN: getPINRetries answers PIN_NOT_SET (README "Conformance").
	if _, _, err := d.GetPINRetries(ctx); !errors.Is(err, ctap2.ErrPINNotSet) {
		t.Errorf("getPINRetries after reset: %v, want PIN_NOT_SET", err)
	}
	if err := d.SetPIN(ctx, "5678"); err != nil {
		t.Fatalf("setPIN after reset: %v", err)
	}
	prRetries(t, ctx, d, 8, false)
	restart(false, 8)
	prAttempt(t, ctx, d, "5678", ctap2.StatusOK, 8)
}

// cmCred is a resident credential of TestCredMgmtKillDuringWrite and what
// the test knows about its state.
type cmCred struct {
	n   int // index: the names are cmName(n, gen)
	id  []byte
	rp  string
	uid []byte
	key []byte // COSE public key from makeCredential
	pub crypto.PublicKey
	alg cose.Algorithm

	gen        int  // the name generation last acknowledged
	deleted    bool // a delete was acknowledged
	pendingGen int  // a rename to this generation was sent, outcome unknown (0: none)
	pendingDel bool // a delete was sent, outcome unknown
}

func cmName(n, gen int) string    { return fmt.Sprintf("user%02d-gen%05d", n, gen) }
func cmDisplay(n, gen int) string { return fmt.Sprintf("User %02d, generation %05d", n, gen) }

// cmGen parses a user entity written by the test: it returns the
// generation, or an error when name and displayName do not belong together
// (a torn record) or are not the test's.
func cmGen(n int, u ctap2.UserEntity) (int, error) {
	var gn, gen int
	if _, err := fmt.Sscanf(u.Name, "user%02d-gen%05d", &gn, &gen); err != nil || gn != n {
		return 0, fmt.Errorf("name %q is not one the test wrote for credential %d", u.Name, n)
	}
	if u.Name != cmName(n, gen) || u.DisplayName != cmDisplay(n, gen) {
		return 0, fmt.Errorf("torn user entity: name %q with displayName %q", u.Name, u.DisplayName)
	}
	return gen, nil
}

// TestCredMgmtKillDuringWrite renames and deletes resident credentials
// through authenticatorCredentialManagement in a loop, SIGKILLs virtkey at
// a random moment, restarts it and checks every credential: one whose
// rename or delete was in flight is either the old or the new version (or,
// for a delete, intact or gone); acknowledged changes are durable; no
// record is torn or unreadable, and every remaining credential still signs.
func TestCredMgmtKillDuringWrite(t *testing.T) {
	const (
		rounds     = 8
		nCreds     = 18
		maxDeletes = 2 // per round
	)
	state := t.TempDir()
	ctx := prContext(t)
	rps := []string{"example.com", "example.org", "login.example.net"}

	k := vktest.Start(t, state)
	d := k.Client(t)
	if err := d.SetPIN(ctx, prPIN); err != nil {
		t.Fatalf("setPIN: %v", err)
	}
	var creds []*cmCred
	for n := 0; n < nCreds; n++ {
		rp := rps[n%len(rps)]
		tok, err := d.GetPINToken(ctx, prPIN, client.PermMakeCredential, rp)
		if err != nil {
			t.Fatal(err)
		}
		uid := []byte(fmt.Sprintf("uid-%02d", n))
		cdh := make([]byte, 32)
		rand.Read(cdh)
		alg := int64(cose.AlgES256)
		rk := true
		att, err := d.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
			ClientDataHash:   cdh,
			RP:               &ctap2.RPEntity{ID: rp, Name: rp},
			User:             &ctap2.UserEntity{ID: uid, Name: cmName(n, 0), DisplayName: cmDisplay(n, 0)},
			PubKeyCredParams: []ctap2.CredParam{{Type: "public-key", Alg: &alg}},
			Options:          &ctap2.RequestOptions{RK: &rk},
		}, tok)
		if err != nil {
			t.Fatalf("makeCredential %d: %v", n, err)
		}
		pub, keyAlg, err := cose.DecodePublicKey(att.AuthData.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		creds = append(creds, &cmCred{n: n, id: att.AuthData.CredentialID, rp: rp, uid: uid,
			key: att.AuthData.PublicKey, pub: pub, alg: keyAlg})
	}
	k.Stop(t)

	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	totalOps := 0
	for round := 0; round <= rounds; round++ {
		k = vktest.Start(t, state)
		d = k.Client(t)
		cmCheck(t, ctx, k, d, creds, rps)
		if t.Failed() {
			return
		}
		if round == rounds {
			k.Stop(t)
			break
		}

		cm := vktest.CredMgmt(t, ctx, d, prPIN)
		var (
			mu      sync.Mutex
			acked   int
			loopErr error
		)
		firstAck := make(chan struct{})
		loopCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		loopRng := mrand.New(mrand.NewPCG(rng.Uint64(), rng.Uint64()))
		go func() {
			defer close(done)
			deletes := 0
			for i := 0; ; i++ {
				mu.Lock()
				var live []*cmCred
				for _, c := range creds {
					if !c.deleted {
						live = append(live, c)
					}
				}
				c := live[loopRng.IntN(len(live))]
				del := loopRng.IntN(12) == 0 && deletes < maxDeletes && len(live) > 5
				gen := c.gen + 1
				if del {
					c.pendingDel = true
					deletes++
				} else {
					c.pendingGen = gen
				}
				mu.Unlock()

				var err error
				if del {
					err = cm.DeleteCredential(loopCtx, c.id)
				} else {
					err = cm.UpdateUserInformation(loopCtx, c.id, ctap2.UserEntity{
						ID: c.uid, Name: cmName(c.n, gen), DisplayName: cmDisplay(c.n, gen)})
				}

				mu.Lock()
				if err != nil {
					// The key is gone (or misbehaved): the outcome stays unknown.
					loopErr = err
					mu.Unlock()
					return
				}
				if del {
					c.deleted, c.pendingDel = true, false
				} else {
					c.gen, c.pendingGen = gen, 0
				}
				acked++
				if acked == 1 {
					close(firstAck)
				}
				mu.Unlock()
			}
		}()
		select {
		case <-firstAck:
		case <-done:
			t.Fatalf("round %d: the first credMgmt write failed: %v\nvirtkey output:\n%s", round, loopErr, k.Output())
		}
		time.Sleep(time.Duration(5+rng.IntN(150)) * time.Millisecond)
		k.Kill(t)
		stop()
		<-done
		mu.Lock()
		t.Logf("round %d: %d writes acknowledged before SIGKILL; then: %v", round, acked, loopErr)
		totalOps += acked
		if loopErr != nil && !errors.Is(loopErr, context.Canceled) && !errors.Is(loopErr, context.DeadlineExceeded) {
			var st ctap2.StatusCode
			if errors.As(loopErr, &st) {
				t.Errorf("round %d: the key answered a credMgmt write with %v", round, st)
			}
		}
		mu.Unlock()
	}
	t.Logf("%d acknowledged writes over %d SIGKILLs", totalOps, rounds)
}

// cmCheck enumerates the credentials of the restarted key and compares
// them with what the test knows; then it adopts what it found as the
// known state (in-flight outcomes resolved).
func cmCheck(t *testing.T, ctx context.Context, k *vktest.Key, d *client.Device, creds []*cmCred, rps []string) {
	t.Helper()
	tok, err := d.GetPINToken(ctx, prPIN, client.PermCredentialMgmt, "")
	if err != nil {
		t.Fatalf("token after restart: %v\nvirtkey output:\n%s", err, k.Output())
	}
	cm, err := d.CredentialManagement(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := cm.Metadata(ctx)
	if err != nil {
		t.Fatalf("getCredsMetadata: %v", err)
	}
	found := map[string]client.Credential{}
	listedRPs, err := cm.EnumerateRPs(ctx)
	if err != nil {
		t.Fatalf("enumerateRPs: %v", err)
	}
	for _, rp := range listedRPs {
		if !bytes.Equal(rp.IDHash, client.RPIDHash(rp.ID)) {
			t.Errorf("RP %q listed with rpIDHash %x", rp.ID, rp.IDHash)
		}
	}
	for _, rp := range rps {
		list, err := cm.EnumerateCredentials(ctx, client.RPIDHash(rp))
		if err != nil {
			t.Fatalf("enumerateCredentials %s: %v", rp, err)
		}
		for _, c := range list {
			id := hex.EncodeToString(c.ID)
			if _, dup := found[id]; dup {
				t.Errorf("credential %s enumerated twice", id)
			}
			found[id] = c
		}
	}
	if meta.Existing != len(found) {
		t.Errorf("getCredsMetadata counts %d credentials, enumeration found %d (unreadable records?)", meta.Existing, len(found))
	}

	live := 0
	for _, c := range creds {
		id := hex.EncodeToString(c.id)
		got, ok := found[id]
		delete(found, id)
		switch {
		case !ok && c.deleted:
			continue // deleted and acknowledged
		case !ok && c.pendingDel:
			t.Logf("credential %d: the delete in flight at SIGKILL took effect", c.n)
			c.deleted, c.pendingDel = true, false
			continue
		case !ok:
			t.Errorf("credential %d (%s) is gone; it was never deleted (name gen %d, pending rename %d)", c.n, c.rp, c.gen, c.pendingGen)
			continue
		case c.deleted:
			t.Errorf("credential %d (%s) is back after an acknowledged delete", c.n, c.rp)
			continue
		}
		live++
		if c.pendingDel {
			t.Logf("credential %d: the delete in flight at SIGKILL did not happen", c.n)
			c.pendingDel = false
		}
		if !bytes.Equal(got.User.ID, c.uid) {
			t.Errorf("credential %d: user.id %q, want %q", c.n, got.User.ID, c.uid)
		}
		if !bytes.Equal(got.PublicKey, c.key) {
			t.Errorf("credential %d: public key %x, want %x", c.n, []byte(got.PublicKey), c.key)
		}
		gen, err := cmGen(c.n, got.User)
		switch {
		case err != nil:
			t.Errorf("credential %d: %v", c.n, err)
		case gen == c.gen:
			if c.pendingGen != 0 {
				t.Logf("credential %d: the rename in flight at SIGKILL did not happen (generation %d)", c.n, gen)
			}
		case c.pendingGen != 0 && gen == c.pendingGen:
			t.Logf("credential %d: the rename in flight at SIGKILL took effect (generation %d)", c.n, gen)
		default:
			t.Errorf("credential %d: name generation %d, want %d (acknowledged) or the one in flight (%d)", c.n, gen, c.gen, c.pendingGen)
		}
		if err == nil {
			c.gen = gen
		}
		c.pendingGen = 0

		// The record still makes a verifiable assertion.
		cdh := sha256.Sum256([]byte(fmt.Sprintf("check %d %d", c.n, time.Now().UnixNano())))
		a, err := d.GetAssertion(ctx, &ctap2.GetAssertionRequest{
			RPID:           c.rp,
			ClientDataHash: cdh[:],
			AllowList:      []ctap2.CredDescriptor{{Type: "public-key", ID: c.id}},
		}, nil)
		if err != nil {
			t.Errorf("credential %d: getAssertion: %v", c.n, err)
			continue
		}
		msg := append(bytes.Clone(a.RawAuthData), cdh[:]...)
		if err := cose.Verify(c.pub, c.alg, msg, a.Signature); err != nil {
			t.Errorf("credential %d: assertion signature: %v", c.n, err)
		}
	}
	for id, c := range found {
		t.Errorf("unknown credential %s enumerated (user %+v)", id, c.User)
	}
	if live < 5 {
		t.Errorf("only %d credentials left", live)
	}
	out := k.Output()
	for _, bad := range []string{"unreadable", "corrupt"} {
		if strings.Contains(strings.ToLower(out), bad) {
			t.Errorf("virtkey logged %q after the restart:\n%s", bad, out)
		}
	}
}
