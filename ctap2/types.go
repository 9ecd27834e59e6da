package ctap2

import "unicode/utf8"

// Limits on entity fields. User names and display names up to 64 bytes and
// icons up to 128 bytes are kept whole (CTAP 2.1 §6.1.2 allows truncation;
// we never truncate below these). Longer values are truncated at a UTF-8
// boundary, as the spec permits.
const (
	maxUserIDLength   = 64
	maxUserNameLength = 64
	maxIconLength     = 128
	maxRPIDLength     = 255 // DNS name length
	maxRPNameLength   = 64
)

// RPEntity is a PublicKeyCredentialRpEntity (WebAuthn §5.4.2).
type RPEntity struct {
	ID   string `cbor:"id,omitempty"`
	Name string `cbor:"name,omitempty"`
	Icon string `cbor:"icon,omitempty"`
}

// UserEntity is a PublicKeyCredentialUserEntity (WebAuthn §5.4.3).
type UserEntity struct {
	ID          Bytes  `cbor:"id"`
	Name        string `cbor:"name,omitempty"`
	DisplayName string `cbor:"displayName,omitempty"`
	Icon        string `cbor:"icon,omitempty"`
}

// CredParam is a PublicKeyCredentialParameters entry.
type CredParam struct {
	Type string `cbor:"type"`
	Alg  *int64 `cbor:"alg"`
}

// CredDescriptor is a PublicKeyCredentialDescriptor.
type CredDescriptor struct {
	Type       string   `cbor:"type"`
	ID         Bytes    `cbor:"id"`
	Transports []string `cbor:"transports,omitempty"`
}

// RequestOptions holds the "options" map of makeCredential and
// getAssertion. The fields are tri-state: absent is not the same as false.
type RequestOptions struct {
	RK *bool `cbor:"rk,omitempty"`
	UP *bool `cbor:"up,omitempty"`
	UV *bool `cbor:"uv,omitempty"`
}

func (o *RequestOptions) rk() (v, set bool) {
	return boolOpt(o, func(o *RequestOptions) *bool { return o.RK })
}
func (o *RequestOptions) up() (v, set bool) {
	return boolOpt(o, func(o *RequestOptions) *bool { return o.UP })
}
func (o *RequestOptions) uv() (v, set bool) {
	return boolOpt(o, func(o *RequestOptions) *bool { return o.UV })
}

func boolOpt(o *RequestOptions, f func(*RequestOptions) *bool) (v, set bool) {
	if o == nil || f(o) == nil {
		return false, false
	}
	return *f(o), true
}

const credTypePublicKey = "public-key"

// validate checks a user entity: the id is required and at most 64 bytes.
func (u *UserEntity) validate() error {
	if u.ID == nil {
		return ErrMissingParameter
	}
	if len(u.ID) > maxUserIDLength {
		return ErrInvalidParameter
	}
	u.Name = truncateUTF8(u.Name, maxUserNameLength)
	u.DisplayName = truncateUTF8(u.DisplayName, maxUserNameLength)
	u.Icon = truncateUTF8(u.Icon, maxIconLength)
	return nil
}

// validate checks a credential descriptor: type and id are required.
func (d *CredDescriptor) validate() error {
	if d.Type == "" || d.ID == nil {
		return ErrMissingParameter
	}
	return nil
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// clientDataHashSize is the length of clientDataHash: a SHA-256 digest.
const clientDataHashSize = 32

// checkClientDataHash refuses a clientDataHash that is not exactly 32
// bytes, in every command that takes one (makeCredential, getAssertion).
//
// The code is CTAP1_ERR_INVALID_LENGTH (0x03, "invalid message or item
// length"): the item is of the right type, only its length is wrong. It is
// also what the SoloKeys firmware answers (its fixed-length byte-string
// parser), against which the python-fido2-based fido2-tests suite was
// written; OpenSK's parser does not check the length at all, and no client
// (python-fido2, libfido2) looks for a particular code.
func checkClientDataHash(h []byte) error {
	if len(h) != clientDataHashSize {
		return ErrInvalidLength
	}
	return nil
}
