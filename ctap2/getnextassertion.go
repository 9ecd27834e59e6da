package ctap2

import "context"

// getNextAssertion returns the next credential of the preceding
// discoverable getAssertion (CTAP 2.1 §6.3). It is allowed only directly
// after getAssertion or getNextAssertion, on the same channel, within 30 s.
func (a *Authenticator) getNextAssertion(ctx context.Context, r request, st *nextAssertionState) (any, error) {
	if st == nil || st.cid != r.cid || a.cfg.Now().After(st.expires) {
		return nil, ErrNotAllowed
	}
	if st.remaining <= 0 {
		return nil, ErrNotAllowed
	}
	f, cursor, err := a.nextResident(ctx, st.rpIDHash[:], st.cursor, st.verified)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, ErrNotAllowed
	}
	resp, err := a.assert(ctx, f, &st.assertionContext)
	if err != nil {
		return nil, err
	}
	st.cursor = cursor
	if st.remaining--; st.remaining > 0 {
		st.expires = a.cfg.Now().Add(getNextAssertionTimeout)
		a.vol.next = st
	}
	return resp, nil
}
