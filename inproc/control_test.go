package inproc_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"sync"
	"testing"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/vktest"
)

// The in-process key offers the control API's operations as Go calls,
// and CTAP sees their effect.
func TestControl(t *testing.T) {
	t.Parallel()
	k := vktest.InProc(t, inproc.Options{})
	c := k.Control()
	var mu sync.Mutex
	var events []control.Event
	cancel := c.Subscribe(func(ev control.Event) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	})
	defer cancel()

	id := makeResident(t, k, "alice")
	cs, err := c.Credentials(ctx(t))
	if err != nil || len(cs) != 1 || string(cs[0].CredentialID) != string(id) || cs[0].PrivateKey == nil {
		t.Fatalf("Credentials = %+v, %v", cs, err)
	}
	// Seed one, re-base its counter, see it in a discoverable assertion.
	pk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(pk)
	tr := true
	seeded, err := c.AddCredential(ctx(t), control.CredentialParams{RPID: "example.com", PrivateKey: der, IsResidentCredential: &tr, UserHandle: []byte("bob"), SignCount: 10})
	if err != nil {
		t.Fatal(err)
	}
	ga, count := discover(t, k)
	if string(ga.Credential.ID) != string(seeded.CredentialID) || count != 11 {
		t.Errorf("discoverable assertion: %x count %d; want the seeded credential at 11", ga.Credential.ID, count)
	}
	// Presence deny is what CTAP gets.
	c.SetPresence(ctx(t), control.PresenceDeny)
	if st, _ := do(t, k, ctap2.CmdGetAssertion, map[int]any{1: "example.com", 2: cdh[:]}); st != ctap2.ErrOperationDenied {
		t.Errorf("presence deny: %v", st)
	}
	c.SetPresence(ctx(t), control.PresenceAuto)
	if err := c.DeleteCredential(ctx(t), seeded.CredentialID); err != nil {
		t.Fatal(err)
	}
	if err := c.Replug(ctx(t)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var types []string
	for _, ev := range events {
		types = append(types, ev.Type)
	}
	want := []string{control.EventCredentialAdded, control.EventCredentialAdded, control.EventCredentialAsserted, control.EventCredentialDeleted, control.EventReplug}
	for _, w := range want {
		found := false
		for i, ty := range types {
			if ty == w {
				types = append(types[:i], types[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no %s event (got %v)", w, events)
		}
	}
}
