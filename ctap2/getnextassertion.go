package ctap2

import "context"

// getNextAssertion returns the next credential of the preceding
// discoverable getAssertion (CTAP 2.1 §6.3). It is allowed only directly
// after getAssertion or getNextAssertion, on the same channel, within 30 s.
func (a *Authenticator) getNextAssertion(ctx context.Context, r request, st *nextAssertionState) (any, error) {
	if st == nil || st.cid != r.cid || a.cfg.Now().After(st.expires) {
		return nil, ErrNotAllowed
	}
	for len(st.remaining) > 0 {
		rec := st.remaining[0]
		st.remaining = st.remaining[1:]
		f, ok := a.openResident(ctx, rec, st.rpIDHash[:])
		if !ok {
			continue
		}
		resp, err := a.assert(ctx, f, &st.assertionContext)
		if err != nil {
			return nil, err
		}
		if len(st.remaining) > 0 {
			st.expires = a.cfg.Now().Add(getNextAssertionTimeout)
			a.vol.next = st
		}
		return resp, nil
	}
	return nil, ErrNotAllowed
}
