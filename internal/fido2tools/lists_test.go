package fido2tools

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// listCred is a credential the list driver made.
type listCred struct {
	ID, PubKey string // hex
}

// driverOut is one list-driver run: the status byte and the key=value
// fields of every other line, in order.
type driverOut struct {
	Status byte
	Lines  []map[string]string
}

var statusRE = regexp.MustCompile(`(?m)^status=0x([0-9a-f]{2}) `)

// driver runs the list driver with the shim against k and parses its
// output; a run that did not reach the device fails the test.
func (k *keyProc) driver(t *testing.T, bin, dir string, args ...string) driverOut {
	t.Helper()
	r := k.must(t, k.run(t, dir, append([]string{bin, k.Device}, args...)...))
	m := statusRE.FindStringSubmatch(r.Out)
	if m == nil {
		t.Fatalf("no status line:\n%s", r)
	}
	st, _ := strconv.ParseUint(m[1], 16, 8)
	out := driverOut{Status: byte(st)}
	for _, l := range outLines(r.Out[strings.Index(r.Out, m[0]):])[1:] {
		fields := map[string]string{}
		for _, f := range strings.Fields(l) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = v
			}
		}
		out.Lines = append(out.Lines, fields)
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestLibfido2ExcludeAndAllowLists: libfido2 1.12's fido_dev_make_cred and
// fido_dev_get_assert (testdata/libfido2-driver) with excludeList and
// allowList of several credentials, PIN-protected, over the UDP shim.
// libfido2 sends the whole list in one request (no silent probe): the key
// must find the credential wherever it sits in the list, answer
// CREDENTIAL_EXCLUDED / NO_CREDENTIALS exactly, and sign with the
// credential it names.
func TestLibfido2ExcludeAndAllowLists(t *testing.T) {
	bin := needDriver(t)
	k, dir := pinKey(t, "fido2-token")
	const rp = "lists.example.org"

	mc := func(user string, rk bool, exclude ...string) (byte, *listCred) {
		t.Helper()
		args := []string{"mc", rp, hex.EncodeToString([]byte(user)), map[bool]string{true: "1", false: "0"}[rk], testPIN}
		out := k.driver(t, bin, dir, append(args, exclude...)...)
		if out.Status != 0 {
			return out.Status, nil
		}
		if len(out.Lines) != 1 {
			t.Fatalf("mc %s: %d result lines", user, len(out.Lines))
		}
		l := out.Lines[0]
		if l["verified"] != "1" || l["fmt"] != "packed" {
			t.Errorf("mc %s: attestation fmt %q verified %q, want packed and 1", user, l["fmt"], l["verified"])
		}
		// UP, UV (the PIN token) and AT.
		if f, _ := strconv.ParseUint(strings.TrimPrefix(l["flags"], "0x"), 16, 8); f&0x45 != 0x45 {
			t.Errorf("mc %s: flags %s, want UP|UV|AT", user, l["flags"])
		}
		if len(l["pubkey"]) != 128 || l["id"] == "" {
			t.Fatalf("mc %s: id %q pubkey %q", user, l["id"], l["pubkey"])
		}
		return 0, &listCred{ID: l["id"], PubKey: l["pubkey"]}
	}
	type want struct {
		id, user string
	}
	ga := func(name string, allow []string, wantStatus byte, wants ...want) {
		t.Helper()
		out := k.driver(t, bin, dir, append([]string{"ga", rp, testPIN}, allow...)...)
		if out.Status != wantStatus {
			t.Fatalf("%s: status %#02x, want %#02x", name, out.Status, wantStatus)
		}
		if wantStatus != 0 {
			return
		}
		if len(out.Lines) != 1+len(wants) || out.Lines[0]["count"] != strconv.Itoa(len(wants)) {
			t.Fatalf("%s: %v, want %d assertions", name, out.Lines, len(wants))
		}
		for i, w := range wants {
			l := out.Lines[1+i]
			if w.id != "" && l["id"] != w.id {
				t.Errorf("%s: assertion %d for %s, want %s", name, i, l["id"], w.id)
			}
			if w.user != "" && l["user"] != hex.EncodeToString([]byte(w.user)) {
				t.Errorf("%s: assertion %d user %s, want %x", name, i, l["user"], w.user)
			}
			if l["verified"] != "1" {
				t.Errorf("%s: assertion %d signature verified=%s", name, i, l["verified"])
			}
			if f, _ := strconv.ParseUint(strings.TrimPrefix(l["flags"], "0x"), 16, 8); f&0x05 != 0x05 {
				t.Errorf("%s: assertion %d flags %s, want UP|UV", name, i, l["flags"])
			}
		}
	}
	with := func(c *listCred) string { return c.ID + "=" + c.PubKey }

	_, alice := mc("alice", true)
	_, bob := mc("bob", false)
	_, dave := mc("dave", true)
	unknown := []string{randHex(16), randHex(64), randHex(48)}

	// excludeList of several: the excluded credential anywhere in the list.
	for i, list := range [][]string{
		{unknown[0], unknown[1], bob.ID, unknown[2]},
		{alice.ID, unknown[0]},
		{unknown[0], unknown[1], unknown[2], dave.ID},
	} {
		if st, _ := mc("carol", false, list...); st != 0x19 {
			t.Errorf("excludeList %d: status %#02x, want 0x19 CREDENTIAL_EXCLUDED", i, st)
		}
	}
	// Only unknown ids (and one too long to be ours): the credential is made.
	_, carol := mc("carol", false, append(append([]string(nil), unknown...), randHex(600))...)
	if carol == nil {
		t.Fatal("makeCredential with an excludeList of unknown ids failed")
	}

	// allowList of several: the key signs with a listed credential of ours,
	// the first in list order, and says which.
	ga("allowList unknown, bob, unknown", []string{unknown[0], with(bob), unknown[1]}, 0, want{id: bob.ID})
	ga("allowList carol, alice, bob", []string{with(carol), with(alice), with(bob)}, 0, want{id: carol.ID})
	ga("allowList alice (resident) first", []string{unknown[2], with(alice), with(carol)}, 0, want{id: alice.ID, user: "alice"})
	ga("allowList unknown only", unknown, 0x2e)
	// No allowList: the two discoverable credentials, newest first, through
	// getNextAssertion.
	// ("+" entries are only keys to verify with, not sent.)
	ga("discoverable", []string{"+" + with(alice), "+" + with(dave)}, 0, want{id: dave.ID, user: "dave"}, want{id: alice.ID, user: "alice"})
}
