package client

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/virtkey/virtkey/ctap2"
)

func TestPINLifecycle(t *testing.T) {
	t.Parallel()
	for _, proto := range []uint{1, 2} {
		t.Run(fmt.Sprintf("protocol%d", proto), func(t *testing.T) {
			t.Parallel()
			k := newTestKey(t)
			ctx := testCtx(t)
			if err := k.dev.SetPINProtocol(proto); err != nil {
				t.Fatal(err)
			}
			if v, err := k.dev.PINProtocol(ctx); err != nil || v != proto {
				t.Fatalf("PINProtocol = %d, %v", v, err)
			}
			if _, err := k.dev.GetPINToken(ctx, "1234", PermMakeCredential, "example.com"); !errors.Is(err, ctap2.ErrPINNotSet) {
				t.Fatalf("token before setPIN: %v, want PIN_NOT_SET", err)
			}
			if err := k.dev.SetPIN(ctx, "1234"); err != nil {
				t.Fatal(err)
			}
			if !k.option(t, ctx, "clientPin") {
				t.Error("no clientPin option after setPIN")
			}
			if err := k.dev.SetPIN(ctx, "5678"); !errors.Is(err, ctap2.ErrNotAllowed) {
				t.Errorf("second setPIN: %v, want NOT_ALLOWED", err)
			}
			if err := k.dev.ChangePIN(ctx, "1234", "abcdef"); err != nil {
				t.Fatal(err)
			}
			tok, err := k.dev.GetPINToken(ctx, "abcdef", PermMakeCredential|PermGetAssertion, "example.com")
			if err != nil {
				t.Fatal(err)
			}
			if tok.Protocol() != proto {
				t.Errorf("token protocol %d", tok.Protocol())
			}
			// The token makes a user-verified credential.
			att, err := k.dev.MakeCredential(ctx, mcRequest("example.com", []byte("u"), "bob", true), tok)
			if err != nil {
				t.Fatal(err)
			}
			if att.AuthData.Flags&ctap2.FlagUV == 0 {
				t.Errorf("makeCredential with a PIN token: flags %#x lack UV", att.AuthData.Flags)
			}
			// A token bound to another RP is refused.
			if _, err := k.dev.MakeCredential(ctx, mcRequest("other.example", []byte("u"), "bob", true), tok); !errors.Is(err, ctap2.ErrPINAuthInvalid) {
				t.Errorf("token for another RP: %v, want PIN_AUTH_INVALID", err)
			}
			if n, _, err := k.dev.GetPINRetries(ctx); err != nil || n != 8 {
				t.Errorf("retries = %d, %v; want 8", n, err)
			}
		})
	}
}

func TestPINPolicy(t *testing.T) {
	t.Parallel()
	k := newTestKey(t)
	ctx := testCtx(t)
	if err := k.dev.SetPIN(ctx, "123"); !errors.Is(err, ctap2.ErrPINPolicyViolation) {
		t.Errorf("3-digit PIN: %v, want PIN_POLICY_VIOLATION", err)
	}
	if err := k.dev.SetPIN(ctx, string(bytes.Repeat([]byte{'x'}, 64))); !errors.Is(err, ctap2.ErrPINPolicyViolation) {
		t.Errorf("64-byte PIN: %v, want PIN_POLICY_VIOLATION", err)
	}
}

// TestWrongPIN walks the lockout sequence: each wrong PIN is a *PINError
// with the retries left; the third in one power cycle is PIN_AUTH_BLOCKED;
// at zero the PIN is blocked until reset.
func TestWrongPIN(t *testing.T) {
	t.Parallel()
	k := newPINKey(t)
	ctx := testCtx(t)
	wrong := func(want ctap2.StatusCode, retries int) {
		t.Helper()
		_, err := k.dev.GetPINToken(ctx, "0000", PermCredentialMgmt, "")
		var pe *PINError
		if !errors.As(err, &pe) || pe.Status != want || pe.Retries != retries || !errors.Is(err, want) {
			t.Fatalf("wrong PIN: %v (%#v); want %v with %d retries", err, pe, want, retries)
		}
	}
	wrong(ctap2.ErrPINInvalid, 7)
	wrong(ctap2.ErrPINInvalid, 6)
	wrong(ctap2.ErrPINAuthBlocked, 5)
	// Blocked until a power cycle, even with the right PIN.
	if _, err := k.dev.GetPINToken(ctx, "1234", PermCredentialMgmt, ""); !errors.Is(err, ctap2.ErrPINAuthBlocked) {
		t.Fatalf("right PIN while auth-blocked: %v", err)
	}
	k.server.PowerCycle()
	wrong(ctap2.ErrPINInvalid, 4)
	// A wrong current PIN in changePIN counts the same.
	err := k.dev.ChangePIN(ctx, "9999", "56789")
	var pe *PINError
	if !errors.As(err, &pe) || pe.Status != ctap2.ErrPINInvalid || pe.Retries != 3 {
		t.Fatalf("changePIN with a wrong PIN: %v", err)
	}
	// The right PIN restores the retries.
	k.token(t, PermCredentialMgmt, "")
	if n, _, _ := k.dev.GetPINRetries(ctx); n != 8 {
		t.Fatalf("retries after the right PIN: %d", n)
	}
	// Down to zero, power-cycling after every third try: the last wrong PIN
	// blocks the PIN for good.
	for retries := 7; retries >= 0; retries-- {
		want := ctap2.ErrPINInvalid
		switch {
		case retries == 0:
			want = ctap2.ErrPINBlocked
		case (8-retries)%3 == 0:
			want = ctap2.ErrPINAuthBlocked
		}
		wrong(want, retries)
		if want == ctap2.ErrPINAuthBlocked {
			k.server.PowerCycle()
		}
	}
	k.server.PowerCycle()
	if _, err := k.dev.GetPINToken(ctx, "1234", PermCredentialMgmt, ""); !errors.Is(err, ctap2.ErrPINBlocked) {
		t.Fatalf("right PIN once blocked: %v, want PIN_BLOCKED", err)
	}
	// Only a reset recovers.
	if err := k.dev.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	// The reset removed the PIN: getPINRetries answers PIN_NOT_SET until a
	// new one is set, and then 8.
	if _, _, err := k.dev.GetPINRetries(ctx); !errors.Is(err, ctap2.ErrPINNotSet) {
		t.Errorf("retries after reset: %v, want PIN_NOT_SET", err)
	}
	if err := k.dev.SetPIN(ctx, "4321"); err != nil {
		t.Errorf("setPIN after reset: %v", err)
	}
	if n, _, err := k.dev.GetPINRetries(ctx); err != nil || n != 8 {
		t.Errorf("retries after setPIN: %d, %v", n, err)
	}
}
