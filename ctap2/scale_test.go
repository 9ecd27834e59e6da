package ctap2

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// countingStore counts the credential records the authenticator reads.
type countingStore struct {
	*memStore
	mu    sync.Mutex
	reads int
}

func (c *countingStore) count(n int) {
	c.mu.Lock()
	c.reads += n
	c.mu.Unlock()
}

func (c *countingStore) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.reads
	c.reads = 0
	return n
}

func (c *countingStore) Credential(id []byte) ([]byte, bool, error) {
	r, ok, err := c.memStore.Credential(id)
	if ok {
		c.count(1)
	}
	return r, ok, err
}

func (c *countingStore) CredentialsOfUser(rpIDHash, userID []byte) ([][]byte, error) {
	r, err := c.memStore.CredentialsOfUser(rpIDHash, userID)
	c.count(len(r))
	return r, err
}

func (c *countingStore) NextCredentialOfRP(rpIDHash, cursor []byte, withHidden bool) ([]byte, []byte, error) {
	r, next, err := c.memStore.NextCredentialOfRP(rpIDHash, cursor, withHidden)
	if r != nil {
		c.count(1)
	}
	return r, next, err
}

func (c *countingStore) NextRP(cursor []byte) ([]byte, []byte, error) {
	r, next, err := c.memStore.NextRP(cursor)
	if r != nil {
		c.count(1)
	}
	return r, next, err
}

func (c *countingStore) Credentials() ([][]byte, error) {
	r, err := c.memStore.Credentials()
	c.count(len(r))
	return r, err
}

// TestOneRecordPerCall: with many accounts at one RP, the authenticator
// reads one credential record per answer — a discoverable getAssertion,
// each getNextAssertion, each credential-management Begin and Next — and
// a resident makeCredential reads only the same user's records, not the
// RP's others (it used to read and decode all of the RP's records for each
// of these). numberOfCredentials and the totals come from the store's
// counts.
func TestOneRecordPerCall(t *testing.T) {
	t.Parallel()
	const accounts = 120
	cs := &countingStore{}
	tk := newTestKey(t, func(c *Config) {
		cs.memStore = c.Store.(*memStore)
		c.Store = cs
		c.MaxResidentCredentials = NoResidentLimit
	})
	var users []string
	for i := range accounts {
		users = append(users, fmt.Sprintf("user%03d", i))
	}
	makeResidents(t, tk, map[string][]string{"big.example": users, "one.example": {"solo"}})
	cs.take()

	st, out := tk.call(t, CmdGetAssertion, map[int]any{1: "big.example", 2: cdh})
	if st != StatusOK {
		t.Fatalf("getAssertion: %v", st)
	}
	var ga GetAssertionResponse
	if err := decode(out, &ga); err != nil {
		t.Fatal(err)
	}
	if ga.NumberOfCredentials != accounts || string(ga.User.ID) != "id-big.example-user119" {
		t.Fatalf("numberOfCredentials %d, user %q; want %d, the newest", ga.NumberOfCredentials, ga.User.ID, accounts)
	}
	if n := cs.take(); n != 1 {
		t.Errorf("the first getAssertion read %d records, want 1", n)
	}
	for i := range 5 {
		if st, _ := tk.call(t, CmdGetNextAssertion, nil); st != StatusOK {
			t.Fatalf("getNextAssertion %d: %v", i, st)
		}
		if n := cs.take(); n != 1 {
			t.Errorf("getNextAssertion %d read %d records, want 1", i, n)
		}
	}

	tk.now = tk.now.Add(time.Hour)
	tk.makeCred(t, mcParams("big.example", []byte("id-big.example-user007"), "user007", true))
	if n := cs.take(); n != 1 {
		t.Errorf("makeCredential for an existing user read %d records, want 1 (that user's)", n)
	}
	tk.makeCred(t, mcParams("big.example", []byte("someone-new"), "new", true))
	if n := cs.take(); n != 0 {
		t.Errorf("makeCredential for a new user read %d records, want 0", n)
	}

	pp, tok := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", 2)
	cs.take()
	for _, c := range []struct {
		name     string
		sub      byte
		params   any
		maxReads int
	}{
		{"enumerateRPsBegin", CredMgmtEnumerateRPsBegin, nil, 1},
		{"enumerateRPsGetNextRP", CredMgmtEnumerateRPsGetNextRP, nil, 1},
		{"enumerateCredentialsBegin", CredMgmtEnumerateCredentialsBegin, map[int]any{1: rpHash("big.example")}, 1},
		{"enumerateCredentialsGetNextCredential", CredMgmtEnumerateCredentialsNext, nil, 1},
		{"enumerateCredentialsGetNextCredential", CredMgmtEnumerateCredentialsNext, nil, 1},
		{"getCredsMetadata", CredMgmtGetCredsMetadata, nil, 0},
	} {
		p, tk2 := pp, tok
		if !credMgmtAuthenticated(uint(c.sub)) {
			p, tk2 = nil, nil
		}
		st, resp := tk.cm(t, CmdCredentialManagement, cmRequest(t, p, tk2, c.sub, c.params))
		if st != StatusOK {
			t.Fatalf("%s: %v", c.name, st)
		}
		if c.sub == CredMgmtEnumerateCredentialsBegin && (resp.TotalCredentials == nil || *resp.TotalCredentials != accounts+1) {
			t.Errorf("totalCredentials %v, want %d", resp.TotalCredentials, accounts+1)
		}
		if n := cs.take(); n > c.maxReads {
			t.Errorf("%s read %d records, want at most %d", c.name, n, c.maxReads)
		}
	}
}

// spaceStore is a memStore that reports how many more credentials fit.
type spaceStore struct {
	*memStore
	free int
}

func (s *spaceStore) RemainingCredentials() (int, error) { return s.free, nil }

// TestNoResidentLimit: with MaxResidentCredentials = NoResidentLimit the
// store's free space is the only limit: getInfo's
// remainingDiscoverableCredentials and getCredsMetadata report it,
// registrations go past the default 256, and KEY_STORE_FULL comes when no
// space is left. A store that cannot tell leaves remainingDiscoverable-
// Credentials out (unknown).
func TestNoResidentLimit(t *testing.T) {
	t.Parallel()
	ss := &spaceStore{free: 1000}
	tk := newTestKey(t, func(c *Config) {
		ss.memStore = c.Store.(*memStore)
		c.Store = ss
		c.MaxResidentCredentials = NoResidentLimit
	})
	for i := range DefaultMaxResident + 5 {
		tk.makeCred(t, mcParams("a.example", fmt.Appendf(nil, "user-%d", i), "u", true))
	}
	info, err := tk.Info()
	if err != nil || info.RemainingDiscoverableCredentials == nil || *info.RemainingDiscoverableCredentials != 1000 {
		t.Fatalf("getInfo remaining %v, %v; want 1000 (the store's estimate)", info.RemainingDiscoverableCredentials, err)
	}
	ss.free = 0
	if st, _ := tk.call(t, CmdMakeCredential, mcParams("a.example", []byte("one-more"), "u", true)); st != ErrKeyStoreFull {
		t.Errorf("makeCredential with no space left: %v, want KEY_STORE_FULL", st)
	}
	// The same user's replacement needs no new room.
	tk.makeCred(t, mcParams("a.example", []byte("user-3"), "u", true))

	plain := newTestKey(t, func(c *Config) { c.MaxResidentCredentials = NoResidentLimit })
	if info, _ := plain.Info(); info.RemainingDiscoverableCredentials != nil {
		t.Errorf("remaining %d from a store that cannot tell, want it left out", *info.RemainingDiscoverableCredentials)
	}
}
