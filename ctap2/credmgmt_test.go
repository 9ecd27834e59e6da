package ctap2

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

const testPIN = "123456"

// setPINAndGetToken sets pin (unless a PIN is already set) and returns the
// platform side of the PIN protocol together with a token that has perms,
// bound to rpID when rpID is not empty.
func setPINAndGetToken(t testing.TB, tk *testKey, pin string, perms Permission, rpID string, protocol uint) (*pinPlatform, *PINUVAuthToken) {
	t.Helper()
	pp := newPINPlatform(t, tk, protocol)
	if st := pp.setPIN(pin); st != StatusOK && st != ErrNotAllowed {
		t.Fatalf("setPIN: %v", st)
	}
	tok, st := pp.token(pin, perms, rpID)
	if st != StatusOK {
		t.Fatalf("token (perms %#x, rp %q): %v", perms, rpID, st)
	}
	return pp, tok
}

// cmRequest builds a credentialManagement request. params (a value to
// encode, or a RawMessage sent as is) is authenticated together with sub
// when pp is not nil.
func cmRequest(t testing.TB, pp *pinPlatform, tok *PINUVAuthToken, sub byte, params any) map[int]any {
	t.Helper()
	return subcommandRequest(t, pp, tok, nil, sub, params)
}

// subcommandRequest builds the request of a command with subcommands
// (credentialManagement, authenticatorConfig): {1: sub, 2: params,
// 3: protocol, 4: pinUvAuthParam}. params (a value to encode, or a
// RawMessage sent as is) is authenticated, as prefix ‖ sub ‖ params, when
// pp is not nil.
func subcommandRequest(t testing.TB, pp *pinPlatform, tok *PINUVAuthToken, prefix []byte, sub byte, params any) map[int]any {
	t.Helper()
	req := map[int]any{1: sub}
	var raw []byte
	if params != nil {
		raw = mustEncode(t, params)
		req[2] = RawMessage(raw)
	}
	if pp != nil {
		msg := append(append(prefix, sub), raw...)
		req[3] = pp.proto.Version()
		req[4] = pp.proto.Authenticate(tok, msg)
	}
	return req
}

// addSignedSeed adds req, a signed request of a command with subcommands,
// to the corpus of a fuzz target that takes (request, subcommand,
// subCommandParams, signed).
func addSignedSeed(f *testing.F, req map[int]any) {
	raw, _ := req[2].(RawMessage)
	f.Add(mustEncode(f, req), req[1].(byte), []byte(raw), true)
}

// cm sends a credentialManagement request with command byte cmd.
func (tk *testKey) cm(t testing.TB, cmd byte, req map[int]any) (StatusCode, *CredentialManagementResponse) {
	t.Helper()
	st, out := tk.call(t, cmd, req)
	if st != StatusOK {
		if len(out) != 0 {
			t.Fatalf("status %v with a body", st)
		}
		return st, nil
	}
	var resp CredentialManagementResponse
	if len(out) > 0 {
		if err := decode(out, &resp); err != nil {
			t.Fatalf("decode response: %v", err)
		}
	}
	return st, &resp
}

// residentFixture is a discoverable credential made for a test.
type residentFixture struct {
	rp     string
	userID []byte
	name   string
	id     []byte
	pub    []byte
}

// makeResidents makes one discoverable credential per user of each RP,
// one second apart, before any PIN is set.
func makeResidents(t testing.TB, tk *testKey, users map[string][]string) []residentFixture {
	t.Helper()
	var out []residentFixture
	for _, rp := range slices.Sorted(maps.Keys(users)) {
		for _, name := range users[rp] {
			tk.now = tk.now.Add(time.Second)
			uid := []byte("id-" + rp + "-" + name)
			_, ad := tk.makeCred(t, mcParams(rp, uid, name, true))
			out = append(out, residentFixture{rp: rp, userID: uid, name: name, id: ad.CredentialID, pub: ad.PublicKey})
		}
	}
	return out
}

var cmCommands = []byte{CmdCredentialManagement, CmdCredMgmtPreview}

func TestCredMgmtMetadata(t *testing.T) {
	t.Parallel()
	for _, cmd := range cmCommands {
		forEachPINProtocol(t, fmt.Sprintf("cmd%#x", cmd), func(t *testing.T, v uint) {
			tk := newTestKey(t, func(c *Config) { c.MaxResidentCredentials = 10 })
			makeResidents(t, tk, map[string][]string{"a.example": {"alice", "bob"}, "b.example": {"carol"}})
			tk.makeCred(t, mcParams("a.example", []byte("nr"), "nonresident", false))
			pp, tok := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", v)
			st, resp := tk.cm(t, cmd, cmRequest(t, pp, tok, CredMgmtGetCredsMetadata, nil))
			if st != StatusOK {
				t.Fatalf("getCredsMetadata: %v", st)
			}
			if *resp.ExistingResidentCredentialsCount != 3 || *resp.MaxPossibleRemainingResidentCredentialsCount != 7 {
				t.Fatalf("metadata %d, %d; want 3, 7", *resp.ExistingResidentCredentialsCount, *resp.MaxPossibleRemainingResidentCredentialsCount)
			}
		})
	}
}

func TestCredMgmtMetadataEmpty(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	pp, tok := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", 2)
	st, out := tk.call(t, CmdCredentialManagement, cmRequest(t, pp, tok, CredMgmtGetCredsMetadata, nil))
	if st != StatusOK {
		t.Fatal(st)
	}
	// Zero counts are present, not omitted.
	var m map[int]uint
	if err := decode(out, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m[1] != 0 || m[2] != 256 {
		t.Fatalf("metadata %v", m)
	}
}

// enumerateAll lists every RP and every credential through the GetNext
// subcommands, checking totals and order.
func enumerateAll(t *testing.T, tk *testKey, cmd byte, pp *pinPlatform, tok *PINUVAuthToken) (rps []RPEntity, creds map[string][]*CredentialManagementResponse) {
	t.Helper()
	st, resp := tk.cm(t, cmd, cmRequest(t, pp, tok, CredMgmtEnumerateRPsBegin, nil))
	if st != StatusOK {
		t.Fatalf("enumerateRPsBegin: %v", st)
	}
	if resp.TotalRPs == nil {
		t.Fatal("enumerateRPsBegin: no totalRPs")
	}
	total := int(*resp.TotalRPs)
	var hashes [][]byte
	for i := 0; ; i++ {
		if resp.RP == nil || !bytes.Equal(resp.RPIDHash, rpHash(resp.RP.ID)) {
			t.Fatalf("RP %d: %+v hash %x", i, resp.RP, resp.RPIDHash)
		}
		if i > 0 && resp.TotalRPs != nil {
			t.Fatal("GetNextRP repeats totalRPs")
		}
		rps = append(rps, *resp.RP)
		hashes = append(hashes, resp.RPIDHash)
		if i+1 == total {
			break
		}
		st, resp = tk.cm(t, cmd, map[int]any{1: CredMgmtEnumerateRPsGetNextRP})
		if st != StatusOK {
			t.Fatalf("enumerateRPsGetNextRP %d: %v", i+1, st)
		}
	}
	if st, _ := tk.cm(t, cmd, map[int]any{1: CredMgmtEnumerateRPsGetNextRP}); st != ErrNotAllowed {
		t.Fatalf("GetNextRP past the end: %v", st)
	}
	for i := 1; i < len(hashes); i++ {
		if bytes.Compare(hashes[i-1], hashes[i]) >= 0 {
			t.Fatal("RPs not in rpIDHash order")
		}
	}
	creds = map[string][]*CredentialManagementResponse{}
	for _, rp := range rps {
		st, resp := tk.cm(t, cmd, cmRequest(t, pp, tok, CredMgmtEnumerateCredentialsBegin, map[int]any{1: rpHash(rp.ID)}))
		if st != StatusOK {
			t.Fatalf("enumerateCredentialsBegin %s: %v", rp.ID, st)
		}
		total := int(*resp.TotalCredentials)
		for i := 0; ; i++ {
			if i > 0 && resp.TotalCredentials != nil {
				t.Fatal("GetNextCredential repeats totalCredentials")
			}
			creds[rp.ID] = append(creds[rp.ID], resp)
			if i+1 == total {
				break
			}
			st, resp = tk.cm(t, cmd, map[int]any{1: CredMgmtEnumerateCredentialsNext})
			if st != StatusOK {
				t.Fatalf("GetNextCredential %s %d: %v", rp.ID, i+1, st)
			}
		}
		if st, _ := tk.cm(t, cmd, map[int]any{1: CredMgmtEnumerateCredentialsNext}); st != ErrNotAllowed {
			t.Fatalf("GetNextCredential past the end: %v", st)
		}
	}
	return rps, creds
}

func TestCredMgmtEnumerate(t *testing.T) {
	t.Parallel()
	users := map[string][]string{
		"a.example": {"alice"},
		"b.example": {"bob", "bea", "bill"},
		"c.example": {"carol", "chris"},
		"d.example": {"dave", "dora"},
	}
	for _, cmd := range cmCommands {
		forEachPINProtocol(t, fmt.Sprintf("cmd%#x", cmd), func(t *testing.T, v uint) {
			tk := newTestKey(t)
			fx := makeResidents(t, tk, users)
			pp, tok := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", v)
			rps, creds := enumerateAll(t, tk, cmd, pp, tok)
			if len(rps) != len(users) {
				t.Fatalf("%d RPs, want %d", len(rps), len(users))
			}
			seen := map[string]bool{}
			for _, rp := range rps {
				if seen[rp.ID] || users[rp.ID] == nil || rp.Name != rp.ID {
					t.Fatalf("RP %+v", rp)
				}
				seen[rp.ID] = true
				// Newest first: the fixtures were made in users[rp] order.
				got := creds[rp.ID]
				if len(got) != len(users[rp.ID]) {
					t.Fatalf("%s: %d credentials, want %d", rp.ID, len(got), len(users[rp.ID]))
				}
				for i, c := range got {
					name := users[rp.ID][len(got)-1-i]
					if c.User.Name != name || c.User.DisplayName != "Display "+name {
						t.Fatalf("%s credential %d: user %+v, want %s", rp.ID, i, c.User, name)
					}
				}
			}
			ids := map[string]bool{}
			for _, f := range fx {
				for _, c := range creds[f.rp] {
					if !bytes.Equal(c.CredentialID.ID, f.id) {
						continue
					}
					if ids[string(f.id)] {
						t.Fatal("credential listed twice")
					}
					ids[string(f.id)] = true
					if c.CredentialID.Type != "public-key" || !bytes.Equal(c.User.ID, f.userID) ||
						!bytes.Equal(c.PublicKey, f.pub) || c.CredProtect != 1 || c.LargeBlobKey != nil {
						t.Fatalf("credential %x: %+v", f.id, c)
					}
				}
			}
			if len(ids) != len(fx) {
				t.Fatalf("%d of %d credentials listed", len(ids), len(fx))
			}
		})
	}
}

func TestCredMgmtCredProtectListed(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	fx := makeResidents(t, tk, map[string][]string{"a.example": {"alice", "bob"}})
	// Raise alice's credProtect level in the stored record.
	raw, _, _ := tk.store.Credential(fx[0].id)
	rec, err := parseCredentialRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	rec.CredProtect = 2
	if err := tk.store.PutCredential(rec.ID, rpHash("a.example"), mustEncode(t, rec)); err != nil {
		t.Fatal(err)
	}
	pp, tok := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", 2)
	_, creds := enumerateAll(t, tk, CmdCredentialManagement, pp, tok)
	for _, c := range creds["a.example"] {
		want := uint(1) // made without credProtect: userVerificationOptional
		if bytes.Equal(c.CredentialID.ID, fx[0].id) {
			want = 2
		}
		if c.CredProtect != want {
			t.Fatalf("credProtect %d, want %d", c.CredProtect, want)
		}
	}
}

func TestCredMgmtEnumerationState(t *testing.T) {
	t.Parallel()
	users := map[string][]string{"a.example": {"alice", "bob"}, "b.example": {"carol", "chris"}}
	rpsBegin := func(t *testing.T, tk *testKey, pp *pinPlatform, tok *PINUVAuthToken) {
		if st, _ := tk.cm(t, CmdCredentialManagement, cmRequest(t, pp, tok, CredMgmtEnumerateRPsBegin, nil)); st != StatusOK {
			t.Fatalf("enumerateRPsBegin: %v", st)
		}
	}
	credsBegin := func(t *testing.T, tk *testKey, pp *pinPlatform, tok *PINUVAuthToken) {
		if st, _ := tk.cm(t, CmdCredentialManagement, cmRequest(t, pp, tok, CredMgmtEnumerateCredentialsBegin, map[int]any{1: rpHash("a.example")})); st != StatusOK {
			t.Fatalf("enumerateCredentialsBegin: %v", st)
		}
	}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, tk *testKey, pp *pinPlatform, tok *PINUVAuthToken)
		cid     uint32
		cmd     byte
		sub     byte
		want    StatusCode
	}{
		{"GetNextRP without Begin", nil, 0, CmdCredentialManagement, CredMgmtEnumerateRPsGetNextRP, ErrNotAllowed},
		{"GetNextCredential without Begin", nil, 0, CmdCredentialManagement, CredMgmtEnumerateCredentialsNext, ErrNotAllowed},
		{"GetNextRP after RPsBegin", rpsBegin, 0, CmdCredentialManagement, CredMgmtEnumerateRPsGetNextRP, StatusOK},
		{"GetNextRP on the preview alias", rpsBegin, 0, CmdCredMgmtPreview, CredMgmtEnumerateRPsGetNextRP, StatusOK},
		{"GetNextCredential after CredentialsBegin", credsBegin, 0, CmdCredentialManagement, CredMgmtEnumerateCredentialsNext, StatusOK},
		{"GetNextCredential after RPsBegin", rpsBegin, 0, CmdCredentialManagement, CredMgmtEnumerateCredentialsNext, ErrNotAllowed},
		{"GetNextRP after CredentialsBegin", credsBegin, 0, CmdCredentialManagement, CredMgmtEnumerateRPsGetNextRP, ErrNotAllowed},
		{"GetNextRP from another channel", rpsBegin, 7, CmdCredentialManagement, CredMgmtEnumerateRPsGetNextRP, ErrNotAllowed},
		{"getInfo between RPsBegin and GetNextRP", func(t *testing.T, tk *testKey, pp *pinPlatform, tok *PINUVAuthToken) {
			rpsBegin(t, tk, pp, tok)
			if st, _ := tk.call(t, CmdGetInfo, nil); st != StatusOK {
				t.Fatal(st)
			}
		}, 0, CmdCredentialManagement, CredMgmtEnumerateRPsGetNextRP, ErrNotAllowed},
		{"clientPIN between CredentialsBegin and GetNextCredential", func(t *testing.T, tk *testKey, pp *pinPlatform, tok *PINUVAuthToken) {
			credsBegin(t, tk, pp, tok)
			pp.retries()
		}, 0, CmdCredentialManagement, CredMgmtEnumerateCredentialsNext, ErrNotAllowed},
		{"getCredsMetadata between CredentialsBegin and GetNextCredential", func(t *testing.T, tk *testKey, pp *pinPlatform, tok *PINUVAuthToken) {
			credsBegin(t, tk, pp, tok)
			if st, _ := tk.cm(t, CmdCredentialManagement, cmRequest(t, pp, tok, CredMgmtGetCredsMetadata, nil)); st != StatusOK {
				t.Fatal(st)
			}
		}, 0, CmdCredentialManagement, CredMgmtEnumerateCredentialsNext, ErrNotAllowed},
		{"failed command between RPsBegin and GetNextRP", func(t *testing.T, tk *testKey, pp *pinPlatform, tok *PINUVAuthToken) {
			rpsBegin(t, tk, pp, tok)
			if st, _ := tk.cm(t, CmdCredentialManagement, map[int]any{1: 0x42}); st != ErrInvalidSubcommand {
				t.Fatal(st)
			}
		}, 0, CmdCredentialManagement, CredMgmtEnumerateRPsGetNextRP, ErrNotAllowed},
		{"power cycle between RPsBegin and GetNextRP", func(t *testing.T, tk *testKey, pp *pinPlatform, tok *PINUVAuthToken) {
			rpsBegin(t, tk, pp, tok)
			tk.PowerCycle()
		}, 0, CmdCredentialManagement, CredMgmtEnumerateRPsGetNextRP, ErrNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tk := newTestKey(t)
			makeResidents(t, tk, users)
			pp, tok := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", 2)
			if tc.prepare != nil {
				tc.prepare(t, tk, pp, tok)
			}
			msg := append([]byte{tc.cmd}, mustEncode(t, map[int]any{1: tc.sub})...)
			out := tk.HandleCBOR(context.Background(), tc.cid, msg, nil)
			if st := StatusCode(out[0]); st != tc.want {
				t.Fatalf("status %v, want %v", st, tc.want)
			}
		})
	}
}

func TestCredMgmtDelete(t *testing.T) {
	t.Parallel()
	for _, cmd := range cmCommands {
		forEachPINProtocol(t, fmt.Sprintf("cmd%#x", cmd), func(t *testing.T, v uint) {
			tk := newTestKey(t)
			fx := makeResidents(t, tk, map[string][]string{"a.example": {"alice", "bob"}, "b.example": {"carol"}})
			pp, tok := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", v)
			del := func(id []byte) StatusCode {
				st, _ := tk.cm(t, cmd, cmRequest(t, pp, tok, CredMgmtDeleteCredential, map[int]any{2: map[string]any{"type": "public-key", "id": id}}))
				return st
			}
			bob, carol := fx[1], fx[2]
			if st := del(bob.id); st != StatusOK {
				t.Fatalf("delete: %v", st)
			}
			if st := del(bob.id); st != ErrNoCredentials {
				t.Fatalf("delete twice: %v", st)
			}
			if st := del(bytes.Repeat([]byte{7}, 48)); st != ErrNoCredentials {
				t.Fatalf("delete unknown: %v", st)
			}
			// The deleted credential cannot sign any more, even by ID.
			st, _ := tk.call(t, CmdGetAssertion, map[int]any{1: "a.example", 2: cdh,
				3: []map[string]any{{"type": "public-key", "id": bob.id}}})
			if st != ErrNoCredentials {
				t.Fatalf("getAssertion with the deleted ID: %v", st)
			}
			// Deleting an RP's last credential removes the RP.
			if st := del(carol.id); st != StatusOK {
				t.Fatalf("delete: %v", st)
			}
			rps, creds := enumerateAll(t, tk, cmd, pp, tok)
			if len(rps) != 1 || rps[0].ID != "a.example" || len(creds["a.example"]) != 1 ||
				!bytes.Equal(creds["a.example"][0].CredentialID.ID, fx[0].id) {
				t.Fatalf("after delete: %+v %+v", rps, creds)
			}
			_, resp := tk.cm(t, cmd, cmRequest(t, pp, tok, CredMgmtGetCredsMetadata, nil))
			if *resp.ExistingResidentCredentialsCount != 1 {
				t.Fatalf("count after delete: %d", *resp.ExistingResidentCredentialsCount)
			}
			if st, _ := tk.cm(t, cmd, cmRequest(t, pp, tok, CredMgmtEnumerateCredentialsBegin, map[int]any{1: rpHash("b.example")})); st != ErrNoCredentials {
				t.Fatalf("enumerate a deleted RP: %v", st)
			}
			if st := del(fx[0].id); st != StatusOK {
				t.Fatal(st)
			}
			if st, _ := tk.cm(t, cmd, cmRequest(t, pp, tok, CredMgmtEnumerateRPsBegin, nil)); st != ErrNoCredentials {
				t.Fatalf("enumerate with no credentials: %v", st)
			}
		})
	}
}

func TestCredMgmtUpdateUser(t *testing.T) {
	t.Parallel()
	forEachPINProtocol(t, "", func(t *testing.T, v uint) {
		tk := newTestKey(t)
		fx := makeResidents(t, tk, map[string][]string{"a.example": {"alice", "bob"}})
		alice := fx[0]
		pp, tok := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", v)
		update := func(id []byte, user map[string]any) StatusCode {
			st, _ := tk.cm(t, CmdCredentialManagement, cmRequest(t, pp, tok, CredMgmtUpdateUserInformation,
				map[int]any{2: map[string]any{"type": "public-key", "id": id}, 3: user}))
			return st
		}
		listed := func() UserEntity {
			_, creds := enumerateAll(t, tk, CmdCredentialManagement, pp, tok)
			for _, c := range creds["a.example"] {
				if bytes.Equal(c.CredentialID.ID, alice.id) {
					return *c.User
				}
			}
			t.Fatal("alice not listed")
			return UserEntity{}
		}
		if st := update(alice.id, map[string]any{"id": alice.userID, "name": "alice@new", "displayName": "Alice New"}); st != StatusOK {
			t.Fatalf("rename: %v", st)
		}
		if u := listed(); u.Name != "alice@new" || u.DisplayName != "Alice New" || !bytes.Equal(u.ID, alice.userID) {
			t.Fatalf("after rename: %+v", u)
		}
		// An absent displayName and an empty name remove them.
		if st := update(alice.id, map[string]any{"id": alice.userID, "name": ""}); st != StatusOK {
			t.Fatalf("clear: %v", st)
		}
		if u := listed(); u.Name != "" || u.DisplayName != "" {
			t.Fatalf("after clearing: %+v", u)
		}
		for _, tc := range []struct {
			name string
			id   []byte
			user map[string]any
			want StatusCode
		}{
			{"another user.id", alice.id, map[string]any{"id": []byte("mallory"), "name": "m"}, ErrInvalidParameter},
			{"bob's user.id", alice.id, map[string]any{"id": fx[1].userID, "name": "m"}, ErrInvalidParameter},
			{"no user.id", alice.id, map[string]any{"name": "m"}, ErrMissingParameter},
			{"unknown credential", bytes.Repeat([]byte{9}, 48), map[string]any{"id": alice.userID, "name": "m"}, ErrNoCredentials},
		} {
			if st := update(tc.id, tc.user); st != tc.want {
				t.Errorf("%s: %v, want %v", tc.name, st, tc.want)
			}
		}
		if st, _ := tk.cm(t, CmdCredentialManagement, cmRequest(t, pp, tok, CredMgmtUpdateUserInformation,
			map[int]any{2: map[string]any{"type": "public-key", "id": alice.id}})); st != ErrMissingParameter {
			t.Errorf("no user: %v", st)
		}
		// The rename survives in the store, and the other credential is untouched.
		raw, _, _ := tk.store.Credential(fx[1].id)
		rec, _ := parseCredentialRecord(raw)
		if rec.User.Name != "bob" || rec.User.DisplayName != "Display bob" {
			t.Fatalf("bob changed: %+v", rec.User)
		}
	})
}

// nonCanonicalDescriptorParams encodes {2: {"type": "public-key", "id": id}}
// with the descriptor's keys out of CTAP2 canonical order, as a sloppy
// platform might; the MAC covers these bytes, not a re-encoding.
func nonCanonicalDescriptorParams(id []byte) RawMessage {
	b := []byte{0xA1, 0x02, 0xA2, 0x64}
	b = append(b, "type"...)
	b = append(b, 0x6A)
	b = append(b, "public-key"...)
	b = append(b, 0x62, 'i', 'd', 0x58, byte(len(id)))
	return append(b, id...)
}

func TestCredMgmtAuth(t *testing.T) {
	t.Parallel()
	users := map[string][]string{"a.example": {"alice"}, "b.example": {"bob"}}
	desc := func(id []byte) map[string]any { return map[string]any{"type": "public-key", "id": id} }
	type build func(fx []residentFixture, pp *pinPlatform, tok *PINUVAuthToken) map[int]any
	sign := func(sub byte, params any) build {
		return func(_ []residentFixture, pp *pinPlatform, tok *PINUVAuthToken) map[int]any {
			return cmRequest(t, pp, tok, sub, params)
		}
	}
	deleteOf := func(i int) build {
		return func(fx []residentFixture, pp *pinPlatform, tok *PINUVAuthToken) map[int]any {
			return cmRequest(t, pp, tok, CredMgmtDeleteCredential, map[int]any{2: desc(fx[i].id)})
		}
	}
	updateOf := func(i int) build {
		return func(fx []residentFixture, pp *pinPlatform, tok *PINUVAuthToken) map[int]any {
			return cmRequest(t, pp, tok, CredMgmtUpdateUserInformation, map[int]any{2: desc(fx[i].id), 3: map[string]any{"id": fx[i].userID, "name": "x"}})
		}
	}
	unsigned := func(f build) build {
		return func(fx []residentFixture, pp *pinPlatform, tok *PINUVAuthToken) map[int]any {
			r := f(fx, pp, tok)
			delete(r, 4)
			return r
		}
	}
	edit := func(f build, e func(r map[int]any)) build {
		return func(fx []residentFixture, pp *pinPlatform, tok *PINUVAuthToken) map[int]any {
			r := f(fx, pp, tok)
			e(r)
			return r
		}
	}
	metadata := sign(CredMgmtGetCredsMetadata, nil)
	rpsBegin := sign(CredMgmtEnumerateRPsBegin, nil)
	credsBeginA := sign(CredMgmtEnumerateCredentialsBegin, map[int]any{1: rpHash("a.example")})
	credsBeginB := sign(CredMgmtEnumerateCredentialsBegin, map[int]any{1: rpHash("b.example")})
	const cm, pcmr = PermCredentialMgmt, PermPersistentCredMgmt
	for _, tc := range []struct {
		name  string
		perms Permission // of the token the request is signed with
		rpID  string     // the token's permissions RP ID
		req   build
		want  StatusCode
	}{
		// pinUvAuthParam and pinUvAuthProtocol.
		{"metadata without pinUvAuthParam", cm, "", unsigned(metadata), ErrPUATRequired},
		{"enumerateRPsBegin without pinUvAuthParam", cm, "", unsigned(rpsBegin), ErrPUATRequired},
		{"enumerateCredentialsBegin without pinUvAuthParam", cm, "", unsigned(credsBeginA), ErrPUATRequired},
		{"delete without pinUvAuthParam", cm, "", unsigned(deleteOf(0)), ErrPUATRequired},
		{"update without pinUvAuthParam", cm, "", unsigned(updateOf(0)), ErrPUATRequired},
		{"no protocol", cm, "", edit(metadata, func(r map[int]any) { delete(r, 3) }), ErrMissingParameter},
		{"unknown protocol", cm, "", edit(metadata, func(r map[int]any) { r[3] = uint(3) }), ErrInvalidParameter},
		{"wrong pinUvAuthParam", cm, "", edit(metadata, func(r map[int]any) { r[4].([]byte)[0] ^= 1 }), ErrPINAuthInvalid},
		{"empty pinUvAuthParam", cm, "", edit(metadata, func(r map[int]any) { r[4] = []byte{} }), ErrPINAuthInvalid},
		{"pinUvAuthParam of another subcommand", cm, "", edit(metadata, func(r map[int]any) { r[1] = CredMgmtEnumerateRPsBegin }), ErrPINAuthInvalid},
		{"pinUvAuthParam not covering subCommandParams", cm, "", edit(credsBeginA, func(r map[int]any) {
			r[2] = RawMessage(mustEncode(t, map[int]any{1: rpHash("b.example")}))
		}), ErrPINAuthInvalid},
		{"non-canonical subCommandParams authenticated as sent", cm, "", func(fx []residentFixture, pp *pinPlatform, tok *PINUVAuthToken) map[int]any {
			return cmRequest(t, pp, tok, CredMgmtDeleteCredential, nonCanonicalDescriptorParams(fx[0].id))
		}, StatusOK},
		// Permissions.
		{"token without cm: metadata", PermMakeCredential | PermGetAssertion, "a.example", metadata, ErrPINAuthInvalid},
		{"token without cm: enumerate", PermAuthenticatorCfg, "", credsBeginA, ErrPINAuthInvalid},
		{"token without cm: delete", PermAuthenticatorCfg, "", deleteOf(0), ErrPINAuthInvalid},
		{"token without cm: update", PermGetAssertion, "a.example", updateOf(0), ErrPINAuthInvalid},
		{"getPinToken token (mc, ga)", 0, "", metadata, ErrPINAuthInvalid},
		// A token bound to an RP ID manages only that RP's credentials.
		{"bound token: metadata", cm, "a.example", metadata, ErrPINAuthInvalid},
		{"bound token: enumerateRPsBegin", cm, "a.example", rpsBegin, ErrPINAuthInvalid},
		{"bound token: its RP's credentials", cm, "a.example", credsBeginA, StatusOK},
		{"bound token: another RP's credentials", cm, "a.example", credsBeginB, ErrPINAuthInvalid},
		{"bound token: delete its RP's credential", cm, "a.example", deleteOf(0), StatusOK},
		{"bound token: delete another RP's credential", cm, "a.example", deleteOf(1), ErrPINAuthInvalid},
		{"bound token: update its RP's credential", cm, "a.example", updateOf(0), StatusOK},
		{"bound token: update another RP's credential", cm, "a.example", updateOf(1), ErrPINAuthInvalid},
		// The CTAP 2.2 persistent token reads but does not write.
		{"pcmr token: metadata", pcmr, "", metadata, StatusOK},
		{"pcmr token: enumerateRPsBegin", pcmr, "", rpsBegin, StatusOK},
		{"pcmr token: enumerateCredentialsBegin", pcmr, "", credsBeginB, StatusOK},
		{"pcmr token: delete", pcmr, "", deleteOf(0), ErrPINAuthInvalid},
		{"pcmr token: update", pcmr, "", updateOf(0), ErrPINAuthInvalid},
		// Request shape.
		{"no subCommand", cm, "", edit(metadata, func(r map[int]any) { delete(r, 1) }), ErrMissingParameter},
		{"unknown subCommand", cm, "", sign(0x08, nil), ErrInvalidSubcommand},
		{"subCommand 0xFF", cm, "", sign(0xFF, nil), ErrInvalidSubcommand},
		{"subCommand of the wrong type", cm, "", edit(metadata, func(r map[int]any) { r[1] = "1" }), ErrCBORUnexpectedType},
		{"subCommandParams not a map", cm, "", sign(CredMgmtEnumerateCredentialsBegin, []int{1}), ErrCBORUnexpectedType},
		{"enumerateCredentialsBegin without rpIDHash", cm, "", sign(CredMgmtEnumerateCredentialsBegin, map[int]any{9: 1}), ErrMissingParameter},
		{"enumerateCredentialsBegin without params", cm, "", sign(CredMgmtEnumerateCredentialsBegin, nil), ErrMissingParameter},
		{"enumerateCredentialsBegin with a short rpIDHash", cm, "", sign(CredMgmtEnumerateCredentialsBegin, map[int]any{1: []byte{1, 2}}), ErrInvalidParameter},
		{"enumerateCredentialsBegin for an unknown RP", cm, "", sign(CredMgmtEnumerateCredentialsBegin, map[int]any{1: rpHash("c.example")}), ErrNoCredentials},
		{"delete without credentialID", cm, "", sign(CredMgmtDeleteCredential, map[int]any{}), ErrMissingParameter},
		{"delete with an untyped descriptor", cm, "", sign(CredMgmtDeleteCredential, map[int]any{2: map[string]any{"id": []byte{1}}}), ErrMissingParameter},
		{"update without credentialID", cm, "", sign(CredMgmtUpdateUserInformation, map[int]any{3: map[string]any{"id": []byte{1}}}), ErrMissingParameter},
	} {
		forEachPINProtocol(t, tc.name, func(t *testing.T, v uint) {
			tk := newTestKey(t)
			fx := makeResidents(t, tk, users)
			pp, tok := setPINAndGetToken(t, tk, testPIN, tc.perms, tc.rpID, v)
			if st, _ := tk.cm(t, CmdCredentialManagement, tc.req(fx, pp, tok)); st != tc.want {
				t.Fatalf("status %v, want %v", st, tc.want)
			}
		})
	}
}

// checkResponseShape checks what every command must answer: a status byte,
// then (only on success) nothing or one canonical CBOR item.
func checkResponseShape(t *testing.T, st StatusCode, out []byte) {
	t.Helper()
	if st != StatusOK {
		if len(out) != 0 {
			t.Fatalf("error status %v with a body", st)
		}
		return
	}
	if len(out) == 0 {
		return
	}
	var v any
	if err := decode(out, &v); err != nil {
		t.Fatalf("response is not valid CBOR: %v", err)
	}
	if re, _ := encode(v); !bytes.Equal(re, out) {
		t.Fatalf("response not canonical:\n%x\n%x", out, re)
	}
}

// FuzzCredMgmtRequest sends arbitrary credentialManagement parameters,
// first as they are and then as the subCommandParams of a request signed
// with a valid cm token, so that the fuzzer reaches the subcommands behind
// the MAC check.
func FuzzCredMgmtRequest(f *testing.F) {
	tk := newTestKey(f)
	fx := makeResidents(f, tk, map[string][]string{"a.example": {"alice", "bob"}, "b.example": {"carol"}})
	pp, tok := setPINAndGetToken(f, tk, testPIN, PermCredentialMgmt, "", 2)
	type record struct {
		id, raw []byte
		rp      string
	}
	var records []record
	for _, c := range fx {
		raw, _, _ := tk.store.Credential(c.id)
		records = append(records, record{c.id, raw, c.rp})
	}
	seed := func(sub byte, params any) { addSignedSeed(f, cmRequest(f, pp, tok, sub, params)) }
	seed(CredMgmtGetCredsMetadata, nil)
	seed(CredMgmtEnumerateRPsBegin, nil)
	seed(CredMgmtEnumerateCredentialsBegin, map[int]any{1: rpHash("a.example")})
	seed(CredMgmtDeleteCredential, map[int]any{2: map[string]any{"type": "public-key", "id": fx[0].id}})
	seed(CredMgmtUpdateUserInformation, map[int]any{2: map[string]any{"type": "public-key", "id": fx[1].id}, 3: map[string]any{"id": fx[1].userID, "name": "b"}})
	f.Add(mustEncode(f, map[int]any{1: CredMgmtEnumerateRPsGetNextRP}), byte(CredMgmtEnumerateCredentialsNext), []byte(nil), false)
	f.Add([]byte{}, byte(0), []byte{0xA0}, true)
	f.Add([]byte{0xA1, 0x01, 0x18, 0xFF}, byte(0x41), []byte{0xFF}, true)
	f.Fuzz(func(t *testing.T, raw []byte, sub byte, params []byte, signed bool) {
		for _, cmd := range cmCommands {
			st, out := tk.Transact(context.Background(), cmd, raw)
			checkResponseShape(t, st, out)
		}
		if !signed {
			return
		}
		req := map[int]any{1: sub, 3: pp.proto.Version(), 4: pp.proto.Authenticate(tok, append([]byte{sub}, params...))}
		if len(params) > 0 {
			req[2] = RawMessage(params)
		}
		msg, err := encode(req)
		if err != nil {
			return // params is not one well-formed CBOR item
		}
		st, out := tk.Transact(context.Background(), CmdCredentialManagement, msg)
		checkResponseShape(t, st, out)
		// Undo deletes and renames so that later inputs find credentials.
		for _, r := range records {
			tk.store.PutCredential(r.id, rpHash(r.rp), r.raw)
		}
	})
}
