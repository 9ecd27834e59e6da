package client

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
)

func TestCredentialManagement(t *testing.T) {
	t.Parallel()
	k := newPINKey(t)
	ctx := testCtx(t)
	// Two users at example.com, one at other.example, one non-resident.
	ids := map[string][]byte{}
	for _, c := range []struct {
		rp, user string
		rk       bool
	}{{"example.com", "alice", true}, {"example.com", "bob", true}, {"other.example", "carol", true}, {"example.com", "dave", false}} {
		tok := k.token(t, PermMakeCredential, c.rp)
		att, err := k.dev.MakeCredential(ctx, mcRequest(c.rp, []byte("id-"+c.user), c.user, c.rk), tok)
		if err != nil {
			t.Fatal(err)
		}
		ids[c.user] = att.AuthData.CredentialID
	}

	tok := k.token(t, PermCredentialMgmt, "")
	cm, err := k.dev.CredentialManagement(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	md, err := cm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md.Existing != 3 || md.Remaining <= 0 {
		t.Errorf("metadata %+v, want 3 existing", md)
	}
	rps, err := cm.EnumerateRPs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rpIDs []string
	for _, rp := range rps {
		rpIDs = append(rpIDs, rp.ID)
		if !bytes.Equal(rp.IDHash, RPIDHash(rp.ID)) {
			t.Errorf("rp %q hash %x", rp.ID, rp.IDHash)
		}
	}
	slices.Sort(rpIDs)
	if !slices.Equal(rpIDs, []string{"example.com", "other.example"}) {
		t.Errorf("RPs %v", rpIDs)
	}
	creds, err := cm.EnumerateCredentials(ctx, RPIDHash("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range creds {
		names = append(names, c.User.Name)
		if !bytes.Equal(c.ID, ids[c.User.Name]) || !bytes.Equal(c.User.ID, []byte("id-"+c.User.Name)) {
			t.Errorf("credential %x of %+v", c.ID, c.User)
		}
		if c.Algorithm() != cose.AlgES256 {
			t.Errorf("algorithm %v", c.Algorithm())
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"alice", "bob"}) {
		t.Errorf("example.com users %v", names)
	}
	if none, err := cm.EnumerateCredentials(ctx, RPIDHash("nobody.example")); err != nil || len(none) != 0 {
		t.Errorf("unknown RP: %v, %v", none, err)
	}

	// Rename keeps the user id and replaces name and displayName.
	if err := cm.UpdateUserInformation(ctx, ids["alice"], ctap2.UserEntity{ID: []byte("id-alice"), Name: "alice2", DisplayName: "Alice Two"}); err != nil {
		t.Fatal(err)
	}
	if err := cm.UpdateUserInformation(ctx, ids["alice"], ctap2.UserEntity{ID: []byte("someone else"), Name: "x"}); !errors.Is(err, ctap2.ErrInvalidParameter) {
		t.Errorf("update with another user id: %v, want INVALID_PARAMETER", err)
	}
	creds, _ = cm.EnumerateCredentials(ctx, RPIDHash("example.com"))
	found := false
	for _, c := range creds {
		if bytes.Equal(c.ID, ids["alice"]) {
			found = true
			if c.User.Name != "alice2" || c.User.DisplayName != "Alice Two" {
				t.Errorf("after rename: %+v", c.User)
			}
		}
	}
	if !found {
		t.Error("renamed credential vanished")
	}

	if err := cm.DeleteCredential(ctx, ids["bob"]); err != nil {
		t.Fatal(err)
	}
	if err := cm.DeleteCredential(ctx, ids["bob"]); !errors.Is(err, ctap2.ErrNoCredentials) {
		t.Errorf("deleting twice: %v, want NO_CREDENTIALS", err)
	}
	if md, _ := cm.Metadata(ctx); md == nil || md.Existing != 2 {
		t.Errorf("metadata after delete: %+v", md)
	}

	// A token without the cm permission is refused.
	mcTok := k.token(t, PermMakeCredential, "example.com")
	cm2, _ := k.dev.CredentialManagement(ctx, mcTok)
	if _, err := cm2.Metadata(ctx); !errors.Is(err, ctap2.ErrPINAuthInvalid) {
		t.Errorf("metadata with an mc token: %v, want PIN_AUTH_INVALID", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	k := newPINKey(t)
	ctx := testCtx(t)
	tok := k.token(t, PermAuthenticatorCfg, "")
	cfg, err := k.dev.AuthenticatorConfig(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.ToggleAlwaysUV(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !k.option(t, ctx, "alwaysUv") {
		t.Error("alwaysUv not set after toggle")
	}
	if err := cfg.SetMinPINLength(ctx, 6, []string{"example.com"}, true); err != nil {
		t.Fatal(err)
	}
	info, _ := k.dev.CachedInfo(ctx)
	if info.MinPINLength != 6 || info.ForcePINChange == nil || !*info.ForcePINChange {
		t.Errorf("after setMinPINLength: minPINLength %d forcePINChange %v", info.MinPINLength, info.ForcePINChange)
	}
	if err := cfg.SetMinPINLength(ctx, 4, nil, false); !errors.Is(err, ctap2.ErrPINPolicyViolation) {
		t.Errorf("lowering the minimum: %v, want PIN_POLICY_VIOLATION", err)
	}
	if _, err := k.dev.GetPINToken(ctx, "1234", PermAuthenticatorCfg, ""); !errors.Is(err, ctap2.ErrPINPolicyViolation) {
		t.Errorf("token while a change is forced: %v, want PIN_POLICY_VIOLATION", err)
	}
	if err := k.dev.ChangePIN(ctx, "1234", "12345"); !errors.Is(err, ctap2.ErrPINPolicyViolation) {
		t.Errorf("new PIN shorter than 6: %v, want PIN_POLICY_VIOLATION", err)
	}
	if err := k.dev.ChangePIN(ctx, "1234", "123456"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.dev.GetPINToken(ctx, "123456", PermAuthenticatorCfg, ""); err != nil {
		t.Errorf("token after the forced change: %v", err)
	}
}

func TestUVToken(t *testing.T) {
	t.Parallel()
	k := newTestKey(t, func(c *ctap2.Config) { c.UV = ctap2.UVAuto })
	ctx := testCtx(t)
	tok, err := k.dev.GetUVToken(ctx, PermMakeCredential, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	att, err := k.dev.MakeCredential(ctx, mcRequest("example.com", []byte("u"), "eve", true), tok)
	if err != nil {
		t.Fatal(err)
	}
	if att.AuthData.Flags&ctap2.FlagUV == 0 {
		t.Errorf("flags %#x lack UV", att.AuthData.Flags)
	}
	if n, err := k.dev.GetUVRetries(ctx); err != nil || n <= 0 {
		t.Errorf("uv retries %d, %v", n, err)
	}
}

func TestUVDenied(t *testing.T) {
	t.Parallel()
	k := newTestKey(t, func(c *ctap2.Config) { c.UV = ctap2.UVDeny })
	ctx := testCtx(t)
	if _, err := k.dev.GetUVToken(ctx, PermMakeCredential, "example.com"); !errors.Is(err, ctap2.ErrUVInvalid) {
		t.Errorf("denied UV: %v, want UV_INVALID", err)
	}
}
