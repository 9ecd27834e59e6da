package ctap2

import "context"

// credentialManagement is authenticatorCredentialManagement (0x0A, preview 0x41).
func (a *Authenticator) credentialManagement(ctx context.Context, r request) (any, error) {
	return nil, ErrInvalidCommand
}
