package ctap2

// volatileState is everything the authenticator keeps only from one
// power-up to the next: a power cycle ([Authenticator.PowerCycle]) and
// authenticatorReset drop all of it with [volatileState.reset], while
// credentials, counters, the PIN and settings live in the [Store].
type volatileState struct {
	next *nextAssertionState // authenticatorGetNextAssertion state
	enum *credMgmtEnumState  // credential-management enumeration state
	// largeBlobWrite is a serialized large-blob array being written in fragments.
	largeBlobWrite *largeBlobWriteState
	// keyAgreement is the clientPIN key-agreement key (CTAP 2.1 §6.5.6).
	keyAgreement KeyAgreement
	token        tokenState // the pinUvAuthToken
	pinFails     int        // consecutive wrong PINs since power-up
}

// reset drops every piece of volatile state, as power-up finds it: no
// follow-up command may continue, a new key-agreement key, no token and
// no wrong PINs counted.
func (v *volatileState) reset() {
	v.next, v.enum, v.largeBlobWrite = nil, nil, nil
	v.keyAgreement.Regenerate()
	v.token = tokenState{}
	v.pinFails = 0
}

// takeFollowUps ends the stateful follow-up commands before another
// command runs: it returns the getNextAssertion and enumeration states
// for that command to continue (or not) and forgets them, so they survive
// only from one command to the directly following one.
func (v *volatileState) takeFollowUps() (*nextAssertionState, *credMgmtEnumState) {
	next, enum := v.next, v.enum
	v.next, v.enum = nil, nil
	return next, enum
}
