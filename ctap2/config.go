package ctap2

import "context"

// authenticatorConfig is authenticatorConfig (0x0D).
func (a *Authenticator) authenticatorConfig(ctx context.Context, r request) (any, error) {
	return nil, ErrInvalidCommand
}
