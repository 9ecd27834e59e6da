package ctap2

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"slices"
)

// Extension identifiers (CTAP 2.1 §12, CTAP 2.2).
const (
	extHMACSecret        = "hmac-secret"
	extHMACSecretMC      = "hmac-secret-mc"
	extCredProtect       = "credProtect"
	extCredBlob          = "credBlob"
	extLargeBlobKey      = "largeBlobKey"
	extMinPINLength      = "minPinLength"
	extThirdPartyPayment = "thirdPartyPayment"
)

// supportedExtensions is getInfo's extensions list.
var supportedExtensions = []string{extCredBlob, extCredProtect, extHMACSecret, extHMACSecretMC, extLargeBlobKey, extMinPINLength, extThirdPartyPayment}

// maxCredBlobLength is getInfo's maxCredBlobLength.
const maxCredBlobLength = 32

// credProtect levels.
const (
	credProtectUVOptional       = 1 // userVerificationOptional
	credProtectUVOptionalWithID = 2 // userVerificationOptionalWithCredentialIDList
	credProtectUVRequired       = 3 // userVerificationRequired
)

// Secret labels for [SecretDeriver].
const (
	labelCredRandomUV   = "hmac-secret CredRandomWithUV"
	labelCredRandomNoUV = "hmac-secret CredRandomWithoutUV"
	labelLargeBlobKey   = "largeBlobKey"
)

// hmacSecretInput is the hmac-secret getAssertion input (and the
// hmac-secret-mc makeCredential input). See CTAP 2.1 §12.5.
type hmacSecretInput struct {
	KeyAgreement      *KeyAgreementCOSE `cbor:"1,keyasint"`
	SaltEnc           Bytes             `cbor:"2,keyasint"`
	SaltAuth          Bytes             `cbor:"3,keyasint"`
	PinUvAuthProtocol *uint             `cbor:"4,keyasint,omitempty"`
}

// hmacSecretRequest is a validated hmac-secret input: the shared secret and
// the decrypted salts.
type hmacSecretRequest struct {
	shared *SharedSecret
	salts  []byte // 32 or 64 bytes
}

// mcExtensions are the validated makeCredential extension inputs.
type mcExtensions struct {
	hmacSecret        bool
	hmacSecretMC      *hmacSecretInput
	credProtect       byte
	credBlob          []byte
	credBlobSet       bool
	largeBlobKey      bool
	minPINLength      bool
	thirdPartyPayment bool
}

// gaExtensions are the validated getAssertion extension inputs.
type gaExtensions struct {
	hmacSecret        *hmacSecretInput
	credBlob          bool
	largeBlobKey      bool
	thirdPartyPayment bool
}

// decodeExt decodes one extension input; a wrong type is CBOR_UNEXPECTED_TYPE.
func decodeExt(m map[string]RawMessage, name string, v any) (bool, error) {
	raw, ok := m[name]
	if !ok {
		return false, nil
	}
	return true, decode(raw, v)
}

func parseMCExtensions(m map[string]RawMessage) (*mcExtensions, error) {
	var e mcExtensions
	if _, err := decodeExt(m, extHMACSecret, &e.hmacSecret); err != nil {
		return nil, err
	}
	var level uint
	if ok, err := decodeExt(m, extCredProtect, &level); err != nil {
		return nil, err
	} else if ok {
		if level < credProtectUVOptional || level > credProtectUVRequired {
			return nil, ErrInvalidParameter
		}
		e.credProtect = byte(level)
	}
	if ok, err := decodeExt(m, extCredBlob, (*Bytes)(&e.credBlob)); err != nil {
		return nil, err
	} else if ok {
		e.credBlobSet = true
	}
	if ok, err := decodeExt(m, extLargeBlobKey, &e.largeBlobKey); err != nil {
		return nil, err
	} else if ok && !e.largeBlobKey {
		return nil, ErrInvalidOption // largeBlobKey must be true when present
	}
	if _, err := decodeExt(m, extMinPINLength, &e.minPINLength); err != nil {
		return nil, err
	}
	if _, err := decodeExt(m, extThirdPartyPayment, &e.thirdPartyPayment); err != nil {
		return nil, err
	}
	var in hmacSecretInput
	if ok, err := decodeExt(m, extHMACSecretMC, &in); err != nil {
		return nil, err
	} else if ok {
		e.hmacSecretMC = &in
	}
	return &e, nil
}

func parseGAExtensions(m map[string]RawMessage) (*gaExtensions, error) {
	var e gaExtensions
	var in hmacSecretInput
	if ok, err := decodeExt(m, extHMACSecret, &in); err != nil {
		return nil, err
	} else if ok {
		e.hmacSecret = &in
	}
	if _, err := decodeExt(m, extCredBlob, &e.credBlob); err != nil {
		return nil, err
	}
	if ok, err := decodeExt(m, extLargeBlobKey, &e.largeBlobKey); err != nil {
		return nil, err
	} else if ok && !e.largeBlobKey {
		return nil, ErrInvalidOption
	}
	if _, err := decodeExt(m, extThirdPartyPayment, &e.thirdPartyPayment); err != nil {
		return nil, err
	}
	return &e, nil
}

// prepareHMACSecret checks an hmac-secret input and decrypts its salts
// (CTAP 2.1 §12.5, authenticator processing steps 1–5).
func (a *Authenticator) prepareHMACSecret(in *hmacSecretInput) (*hmacSecretRequest, error) {
	if in.KeyAgreement == nil || in.SaltEnc == nil || in.SaltAuth == nil {
		return nil, ErrMissingParameter
	}
	version := uint(1)
	if in.PinUvAuthProtocol != nil {
		version = *in.PinUvAuthProtocol
	}
	p, ok := PINProtocolByVersion(version)
	if !ok {
		return nil, ErrInvalidParameter
	}
	shared, err := a.sharedSecret(p, in.KeyAgreement)
	if err != nil {
		return nil, err
	}
	if !shared.Verify(in.SaltEnc, in.SaltAuth) {
		return nil, ErrPINAuthInvalid
	}
	salts, err := shared.Decrypt(in.SaltEnc)
	if err != nil || (len(salts) != 32 && len(salts) != 64) {
		return nil, ErrInvalidLength
	}
	return &hmacSecretRequest{shared: shared, salts: salts}, nil
}

// hmacSecretOutput computes encrypt(shared, HMAC(CredRandom, salt1) [‖ HMAC(CredRandom, salt2)]).
func (a *Authenticator) hmacSecretOutput(ctx context.Context, req *hmacSecretRequest, credID []byte, uv bool) ([]byte, error) {
	label := labelCredRandomNoUV
	if uv {
		label = labelCredRandomUV
	}
	credRandom, err := a.credentialSecret(ctx, credID, label)
	if err != nil {
		return nil, err
	}
	var out []byte
	for salt := range slices.Chunk(req.salts, 32) {
		m := hmac.New(sha256.New, credRandom)
		m.Write(salt)
		out = m.Sum(out)
	}
	return req.shared.Encrypt(out)
}

// credentialSecret derives a per-credential secret from the key store.
func (a *Authenticator) credentialSecret(ctx context.Context, credID []byte, label string) ([]byte, error) {
	d, ok := a.cfg.KeyStore.(SecretDeriver)
	if !ok {
		return nil, ErrUnsupportedOption
	}
	return d.CredentialSecret(ctx, credID, label)
}

// minPINLengthAllowed reports whether rpID may learn the minimum PIN length.
func (a *Authenticator) minPINLengthAllowed(rpID string) bool {
	return slices.Contains(a.state.MinPINRPIDs, rpID)
}

// credBlobAAD binds a sealed credBlob to its credential.
func credBlobAAD(credID []byte) []byte {
	return append([]byte("virtkey credBlob v1 "), credID...)
}

// visibleWithoutUV applies credProtect (CTAP 2.1 §12.1): level 3 needs UV
// always, level 2 needs UV unless the credential was named in an allowList.
func visibleWithoutUV(level byte, inAllowList bool) bool {
	switch level {
	case credProtectUVRequired:
		return false
	case credProtectUVOptionalWithID:
		return inAllowList
	}
	return true
}

// extensionMap encodes authenticator-data extension outputs (nil if none).
func extensionMap(m map[string]any) ([]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	return encode(m)
}
