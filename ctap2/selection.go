package ctap2

import "context"

// selection waits for user presence so the user can pick this
// authenticator among several (CTAP 2.1 §6.9).
func (a *Authenticator) selection(ctx context.Context, r request) (any, error) {
	if len(r.params) != 0 {
		return nil, ErrInvalidLength
	}
	return nil, a.confirm(ctx, PresenceRequest{Op: "selection"})
}
