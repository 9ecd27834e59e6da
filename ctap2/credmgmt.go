package ctap2

import "context"

// credentialManagement is authenticatorCredentialManagement (0x0A, preview 0x41).
func (a *Authenticator) credentialManagement(ctx context.Context, r request, enum *credMgmtEnumState) (any, error) {
	return nil, ErrInvalidCommand
}

// credMgmtEnumState is the enumeration in progress.
type credMgmtEnumState struct{}
