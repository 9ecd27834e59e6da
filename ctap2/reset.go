package ctap2

import (
	"context"
	"fmt"
)

// KeyResetter is implemented by key stores that can forget every key they
// ever wrapped (a new master key), so that authenticatorReset also
// invalidates non-resident credential IDs.
type KeyResetter interface {
	ResetKeys(ctx context.Context) error
}

// reset erases all credentials and settings (CTAP 2.1 §6.6). It needs user
// presence and, when a reset window is configured, must come within that
// time of power-up.
func (a *Authenticator) reset(ctx context.Context, r request) (any, error) {
	if len(r.params) != 0 {
		return nil, ErrInvalidLength
	}
	if w := a.cfg.ResetWindow; w > 0 && a.cfg.Now().Sub(a.powerUp) > w {
		return nil, ErrNotAllowed
	}
	if err := a.confirm(ctx, PresenceRequest{Op: "reset"}); err != nil {
		return nil, err
	}
	// The store goes first: if new keys then fail, the store is already
	// consistent (empty) and a second reset finishes the job; the other way
	// round a failed wipe would leave a PIN hash no key can open.
	a.forgetRecords()
	if err := a.cfg.Store.Wipe(); err != nil {
		return nil, fmt.Errorf("wipe store: %w", err)
	}
	a.state = defaultState()
	a.vol.reset()
	if kr, ok := a.cfg.KeyStore.(KeyResetter); ok {
		if err := kr.ResetKeys(ctx); err != nil {
			return nil, fmt.Errorf("reset keys: %w", err)
		}
	}
	a.log.Warn("authenticator reset: all credentials erased")
	a.observe(Event{Type: EventReset, Op: "reset"})
	return nil, nil
}
