package ctap2

import (
	"reflect"
	"testing"
	"time"
)

// TestVolatileResetClearsEverything holds reset to its promise field by
// field: a field added to volatileState must be set here and cleared by
// reset, or this test fails.
func TestVolatileResetClearsEverything(t *testing.T) {
	t.Parallel()
	var v volatileState
	v.next = &nextAssertionState{cid: 1}
	v.enum = &credMgmtEnumState{cid: 1}
	v.largeBlobWrite = &largeBlobWriteState{expectedLength: 17}
	v.token = tokenState{token: NewPINUVAuthToken(), protocol: 2, perms: PermMakeCredential, rpID: "example.com", issued: time.Unix(1, 0), inUse: true}
	v.pinFails = 2
	before := v.keyAgreement.key().PublicKey()

	rv := reflect.ValueOf(&v).Elem()
	for i := range rv.NumField() {
		if name := rv.Type().Field(i).Name; name != "keyAgreement" && rv.Field(i).IsZero() {
			t.Fatalf("test does not set volatileState.%s: set it so reset is checked to clear it", name)
		}
	}
	v.reset()
	for i := range rv.NumField() {
		if name := rv.Type().Field(i).Name; name != "keyAgreement" && !rv.Field(i).IsZero() {
			t.Errorf("reset left volatileState.%s set", name)
		}
	}
	if after := v.keyAgreement.key().PublicKey(); after.Equal(before) {
		t.Error("reset kept the key-agreement key")
	}
}

// TestTakeFollowUps: the follow-up states are handed over once and then
// gone; the rest of the volatile state stays.
func TestTakeFollowUps(t *testing.T) {
	t.Parallel()
	var v volatileState
	n, e := &nextAssertionState{cid: 7}, &credMgmtEnumState{cid: 7}
	v.next, v.enum, v.pinFails = n, e, 1
	gotN, gotE := v.takeFollowUps()
	if gotN != n || gotE != e {
		t.Fatal("takeFollowUps did not return the pending states")
	}
	if gotN, gotE = v.takeFollowUps(); gotN != nil || gotE != nil {
		t.Fatal("the follow-up states survived a second command")
	}
	if v.pinFails != 1 {
		t.Fatal("takeFollowUps touched other volatile state")
	}
}
