package ctap2

import "testing"

// TestStoredPINRetries: the offline reader sees what the authenticator
// stored, and the offline lowering only ever lowers, keeps the PIN, and is
// what a new authenticator on the store then reports.
func TestStoredPINRetries(t *testing.T) {
	t.Parallel()
	tk := newTestKey(t)
	if n, set, err := StoredPINRetries(tk.store); err != nil || set || n != maxPINRetries {
		t.Fatalf("fresh store: %d, %v, %v; want %d, no PIN", n, set, err, maxPINRetries)
	}
	pp, _ := setPINAndGetToken(t, tk, testPIN, PermCredentialMgmt, "", 2)
	if _, st := pp.token("999999", PermCredentialMgmt, ""); st != ErrPINInvalid {
		t.Fatalf("wrong PIN: %v", st)
	}
	if n, set, err := StoredPINRetries(tk.store); err != nil || !set || n != maxPINRetries-1 {
		t.Fatalf("after a wrong PIN: %d, %v, %v; want %d with a PIN", n, set, err, maxPINRetries-1)
	}
	if changed, err := LowerStoredPINRetries(tk.store, maxPINRetries); err != nil || changed {
		t.Fatalf("raising: changed %v, %v", changed, err)
	}
	if changed, err := LowerStoredPINRetries(tk.store, 3); err != nil || !changed {
		t.Fatalf("lowering: changed %v, %v", changed, err)
	}
	if n, set, err := StoredPINRetries(tk.store); err != nil || !set || n != 3 {
		t.Fatalf("after lowering: %d, %v, %v; want 3 with a PIN", n, set, err)
	}
	// A new authenticator on the store: 3 retries, and the PIN still works.
	tk2 := newTestKey(t, func(c *Config) { c.Store, c.KeyStore = tk.store, tk.keys })
	pp2 := newPINPlatform(t, tk2, 2)
	if _, st := pp2.token(testPIN, PermCredentialMgmt, ""); st != StatusOK {
		t.Fatalf("PIN after lowering: %v", st)
	}
	// The right PIN resets the counter as usual.
	if n, _, _ := StoredPINRetries(tk.store); n != maxPINRetries {
		t.Fatalf("after the right PIN: %d, want %d", n, maxPINRetries)
	}

	// A damaged state is an error, never a count.
	if err := tk.store.PutSetting(settingState, []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := StoredPINRetries(tk.store); err == nil {
		t.Fatal("damaged state read without an error")
	}
	if _, err := LowerStoredPINRetries(tk.store, 1); err == nil {
		t.Fatal("damaged state lowered without an error")
	}
}
