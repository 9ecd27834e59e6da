package ctap2

import (
	"context"
	"testing"
	"time"
)

// TestTokenStateVerify checks the pinUvAuthToken rules one at a time on the
// token type alone: protocol, MAC, permission, RP binding and expiry.
func TestTokenStateVerify(t *testing.T) {
	t.Parallel()
	p1, _ := PINProtocolByVersion(1)
	p2, _ := PINProtocolByVersion(2)
	t0 := time.Unix(1_000_000, 0)
	msg := []byte("client data hash")
	cases := []struct {
		name  string
		p     PINProtocol
		perm  Permission
		rpID  string
		now   time.Time
		wrong bool // MAC made with another token
		want  error
	}{
		{name: "ok", p: p2, perm: PermMakeCredential, rpID: "example.com", now: t0},
		{name: "unbound rp", p: p2, perm: PermMakeCredential, now: t0},
		{name: "other protocol", p: p1, perm: PermMakeCredential, now: t0, want: ErrPINAuthInvalid},
		{name: "wrong token", p: p2, perm: PermMakeCredential, now: t0, wrong: true, want: ErrPINAuthInvalid},
		{name: "missing permission", p: p2, perm: PermCredentialMgmt, now: t0, want: ErrPINAuthInvalid},
		{name: "other rp", p: p2, perm: PermMakeCredential, rpID: "other.com", now: t0, want: ErrPINAuthInvalid},
		{name: "at max usage", p: p2, perm: PermMakeCredential, now: t0.Add(tokenMaxUsage)},
		{name: "expired", p: p2, perm: PermMakeCredential, now: t0.Add(tokenMaxUsage + time.Second), want: ErrPINAuthInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ts tokenState
			tok := ts.issue(2, PermMakeCredential|PermLargeBlobWrite, "example.com", t0)
			if tc.wrong {
				tok = NewPINUVAuthToken()
			}
			err := ts.verify(tc.p, msg, tc.p.Authenticate(tok, msg), tc.perm, tc.rpID, tc.now)
			if err != tc.want {
				t.Fatalf("verify = %v, want %v", err, tc.want)
			}
			if tc.name == "expired" && ts.inUse {
				t.Fatal("an expired token stays in use")
			}
		})
	}
}

// TestTokenStateBindsRPID: an unbound token becomes bound by its first use
// with an RP ID and then refuses every other RP.
func TestTokenStateBindsRPID(t *testing.T) {
	t.Parallel()
	p, _ := PINProtocolByVersion(2)
	var ts tokenState
	now := time.Unix(1, 0)
	tok := ts.issue(2, PermGetAssertion, "", now)
	msg := []byte("m")
	if err := ts.verify(p, msg, p.Authenticate(tok, msg), PermGetAssertion, "a.example", now); err != nil {
		t.Fatal(err)
	}
	if ts.rpID != "a.example" {
		t.Fatalf("bound to %q", ts.rpID)
	}
	if err := ts.verify(p, msg, p.Authenticate(tok, msg), PermGetAssertion, "b.example", now); err != ErrPINAuthInvalid {
		t.Fatalf("other RP after binding: %v", err)
	}
}

// TestTokenStateClearAfterUse: only a use with user presence clears the
// permissions, and lbw always survives.
func TestTokenStateClearAfterUse(t *testing.T) {
	t.Parallel()
	var ts tokenState
	ts.issue(2, PermGetAssertion|PermLargeBlobWrite, "example.com", time.Unix(1, 0))
	ts.clearAfterUse(false)
	if ts.perms != PermGetAssertion|PermLargeBlobWrite {
		t.Fatalf("up=false use changed the permissions to %#x", ts.perms)
	}
	ts.clearAfterUse(true)
	if ts.perms != PermLargeBlobWrite {
		t.Fatalf("permissions after a use with presence: %#x, want lbw only", ts.perms)
	}
	ts.revoke()
	if ts.inUse || ts.token != nil || ts.perms != 0 {
		t.Fatal("revoke kept the token")
	}
}

// TestPersistentToken: the sealed pcmr token verifies a MAC made with it,
// and nothing else.
func TestPersistentToken(t *testing.T) {
	t.Parallel()
	keys := newMemKeys()
	p, _ := PINProtocolByVersion(2)
	tok, sealed, err := issuePersistentToken(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte{CredMgmtGetCredsMetadata}
	pt := persistentToken{sealer: keys, sealed: sealed}
	if !pt.verify(p, msg, p.Authenticate(tok, msg)) {
		t.Fatal("the persistent token does not verify its own MAC")
	}
	if pt.verify(p, msg, p.Authenticate(NewPINUVAuthToken(), msg)) {
		t.Fatal("another token verified")
	}
	if (persistentToken{sealer: keys}).verify(p, msg, p.Authenticate(tok, msg)) {
		t.Fatal("verified with no persistent token issued")
	}
}
