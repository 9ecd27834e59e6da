package scale

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/virtkey/virtkey/ctap2/client"
	"github.com/virtkey/virtkey/inproc"
	"github.com/virtkey/virtkey/internal/rptest"
)

func users(accounts ...Account) []*rptest.User {
	var out []*rptest.User
	for _, a := range accounts {
		out = append(out, &rptest.User{ID: a.UserID, Name: a.UserName, Creds: []webauthn.Credential{{ID: a.ID, PublicKey: a.PublicKey}}})
	}
	return out
}

// TestGeneratedCredentialsVerify: a generated store is one a key serves
// and an RP accepts: go-webauthn verifies a login with OneRP's credential
// (allowList) and a username-less login through every BigRP account
// (getAssertion, then getNextAssertion for each other, newest first), with
// the public keys the generator reported.
func TestGeneratedCredentialsVerify(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	spec := Spec{N: 400, RPs: 40, Big: 60, Batch: 150}
	res, err := Generate(context.Background(), dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	k, err := inproc.New(inproc.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	d, err := client.Open(context.Background(), k.Device(), nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := d.GetInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := *info.RemainingDiscoverableCredentials; n != 0 {
		t.Errorf("remainingDiscoverableCredentials %d with %d stored and the default limit 256, want 0", n, spec.N)
	}

	one := rptest.New(t, OneRP, "https://"+OneRP)
	one.Login(t, d, users(res.One)[0])

	big := rptest.New(t, BigRP, "https://"+BigRP)
	got := big.DiscoverableLogin(t, d, users(res.Big...)...)
	for i, a := range got {
		if string(a.User.ID) != string(res.Big[i].UserID) {
			t.Fatalf("assertion %d is %q's, want %q's (newest first)", i, a.User.ID, res.Big[i].UserID)
		}
	}
}
