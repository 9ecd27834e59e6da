package ctap2

// The PIN retry counter of a store no authenticator is using: virtkey
// restore (internal/backup) keeps the lower of the current and the
// restored counts, so that restoring a backup never gives back PIN
// attempts the key had already used up. The counter is part of the
// persistent state (pinstate.go), one setting of the Store.

// StoredPINRetries returns the pinRetries counter kept in s, and whether a
// PIN is set (a key without one has no meaningful count: setting a PIN
// starts it at the maximum). No [Authenticator] may be using s.
func StoredPINRetries(s Settings) (retries uint, pinSet bool, err error) {
	st, _, err := readState(s)
	if err != nil {
		return 0, false, err
	}
	return st.PINRetries, st.pinSet(), nil
}

// LowerStoredPINRetries lowers the pinRetries counter kept in s to limit if
// it is higher, keeping the rest of the persistent state, and reports
// whether it wrote anything. It never raises the counter. No
// [Authenticator] may be using s.
func LowerStoredPINRetries(s Settings, limit uint) (bool, error) {
	st, _, err := readState(s)
	if err != nil || st.PINRetries <= limit {
		return false, err
	}
	st.PINRetries = limit
	raw, err := encode(&st)
	if err != nil {
		return false, err
	}
	if err := s.PutSetting(settingState, raw); err != nil {
		return false, err
	}
	return true, nil
}
