package ctap1

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Version is the U2F_VERSION answer.
const Version = "U2F_V2"

// MaxKeyHandleLength is the longest key handle U2F can carry (its length
// is one byte).
const MaxKeyHandleLength = 255

// Sizes of U2F message fields.
const (
	paramSize = 32 // challenge and application parameters (SHA-256)
	pointSize = 65 // uncompressed P-256 point
)

// Presence operations a [Token] is asked to confirm.
const (
	OpRegister     = "u2fRegister"
	OpAuthenticate = "u2fAuthenticate"
)

// ErrUnknownKeyHandle is what [Token.Credential] returns for a key handle
// that is not the token's or not for the application.
var ErrUnknownKeyHandle = errors.New("ctap1: unknown key handle")

// Token is the authenticator behind the U2F commands.
type Token interface {
	// NewCredential creates an ECDSA P-256 credential bound to the
	// application parameter and returns its key handle (at most
	// [MaxKeyHandleLength] bytes) and key.
	NewCredential(ctx context.Context, application []byte) (keyHandle []byte, key crypto.Signer, err error)
	// Credential opens keyHandle for application. Any failure means the
	// handle is not valid there (answered 6A80).
	Credential(ctx context.Context, keyHandle, application []byte) (crypto.Signer, error)
	// NextCounter returns the credential's next signature counter.
	NextCounter(keyHandle []byte) (uint32, error)
	// Confirm asks the user to confirm op, blocking until they do or ctx
	// ends. Any error is answered 6985, which makes a U2F client retry.
	Confirm(ctx context.Context, op string, application []byte) error
	// Attestation returns the key and DER certificate that sign the
	// registration of the credential whose key is key.
	Attestation(ctx context.Context, key crypto.Signer) (attKey crypto.Signer, cert []byte, err error)
}

// Handle runs one command APDU against t and returns the response APDU:
// response data ‖ status word. It never panics on any input.
func Handle(ctx context.Context, t Token, apdu []byte) []byte {
	data, err := handle(ctx, t, apdu)
	var sw StatusWord
	if err != nil {
		if !errors.As(err, &sw) {
			sw = SWUnknown
		}
		return sw.Bytes()
	}
	return append(data, SWNoError.Bytes()...)
}

func handle(ctx context.Context, t Token, apdu []byte) ([]byte, error) {
	if len(apdu) >= 4 {
		// Class and instruction are judged before the length encoding.
		if apdu[0] != 0 {
			return nil, SWClaNotSupported
		}
		switch apdu[1] {
		case InsRegister, InsAuthenticate, InsVersion:
		default:
			return nil, SWInsNotSupported
		}
	}
	c, err := ParseCommand(apdu)
	if err != nil {
		return nil, err
	}
	switch c.INS {
	case InsRegister:
		return register(ctx, t, c)
	case InsAuthenticate:
		return authenticate(ctx, t, c)
	}
	if len(c.Data) != 0 {
		return nil, SWWrongLength
	}
	return []byte(Version), nil
}

// register is U2F_REGISTER (§4). Request data: challenge (32) ‖
// application (32). Response: 0x05 ‖ public key (65) ‖ L ‖ key handle (L)
// ‖ attestation certificate (DER) ‖ signature, the signature being the
// attestation key's ECDSA over SHA-256(0x00 ‖ application ‖ challenge ‖
// key handle ‖ public key). P1 is ignored: some clients send 0x03.
func register(ctx context.Context, t Token, c *Command) ([]byte, error) {
	if len(c.Data) != 2*paramSize {
		return nil, SWWrongLength
	}
	challenge, app := c.Data[:paramSize], c.Data[paramSize:]
	if err := t.Confirm(ctx, OpRegister, app); err != nil {
		return nil, SWConditionsNotSatisfied
	}
	kh, key, err := t.NewCredential(ctx, app)
	if err != nil {
		return nil, fmt.Errorf("ctap1: new credential: %w", err)
	}
	if len(kh) == 0 || len(kh) > MaxKeyHandleLength {
		return nil, fmt.Errorf("ctap1: key handle of %d bytes", len(kh))
	}
	point, err := publicPoint(key)
	if err != nil {
		return nil, err
	}
	attKey, cert, err := t.Attestation(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("ctap1: attestation: %w", err)
	}
	signed := make([]byte, 0, 1+2*paramSize+len(kh)+pointSize)
	signed = append(signed, 0x00)
	signed = append(signed, app...)
	signed = append(signed, challenge...)
	signed = append(signed, kh...)
	signed = append(signed, point...)
	sig, err := signES256(attKey, signed)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+pointSize+1+len(kh)+len(cert)+len(sig)+2)
	out = append(out, 0x05)
	out = append(out, point...)
	out = append(out, byte(len(kh)))
	out = append(out, kh...)
	out = append(out, cert...)
	return append(out, sig...), nil
}

// authenticate is U2F_AUTHENTICATE (§5). Request data: challenge (32) ‖
// application (32) ‖ L ‖ key handle (L); P1 is the control byte.
// Response: user presence (1) ‖ counter (4, big-endian) ‖ signature, the
// credential key's ECDSA over SHA-256(application ‖ user presence ‖
// counter ‖ challenge).
func authenticate(ctx context.Context, t Token, c *Command) ([]byte, error) {
	d := c.Data
	if len(d) < 2*paramSize+1 || len(d) != 2*paramSize+1+int(d[2*paramSize]) {
		return nil, SWWrongLength
	}
	challenge, app, kh := d[:paramSize], d[paramSize:2*paramSize], d[2*paramSize+1:]
	switch c.P1 {
	case ControlCheckOnly, ControlEnforceUserPresence, ControlDontEnforceUserPresence:
	default:
		return nil, SWWrongData
	}
	key, err := t.Credential(ctx, kh, app)
	if err != nil {
		return nil, SWWrongData
	}
	var up byte
	switch c.P1 {
	case ControlCheckOnly:
		// "If the key handle was created by this U2F token for this
		// application parameter", answer test-of-user-presence-required.
		return nil, SWConditionsNotSatisfied
	case ControlEnforceUserPresence:
		if err := t.Confirm(ctx, OpAuthenticate, app); err != nil {
			return nil, SWConditionsNotSatisfied
		}
		up = 0x01
	}
	counter, err := t.NextCounter(kh)
	if err != nil {
		return nil, fmt.Errorf("ctap1: counter: %w", err)
	}
	out := make([]byte, 0, 1+4+72+2)
	out = append(out, up)
	out = binary.BigEndian.AppendUint32(out, counter)
	signed := make([]byte, 0, 2*paramSize+5)
	signed = append(signed, app...)
	signed = append(signed, out...)
	signed = append(signed, challenge...)
	sig, err := signES256(key, signed)
	if err != nil {
		return nil, err
	}
	return append(out, sig...), nil
}

func publicPoint(key crypto.Signer) ([]byte, error) {
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("ctap1: credential key is %T, not ECDSA P-256", key.Public())
	}
	return pub.Bytes()
}

// signES256 is ECDSA P-256 with SHA-256, ASN.1 DER.
func signES256(s crypto.Signer, msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	return s.Sign(rand.Reader, d[:], crypto.SHA256)
}

// RegisterResponse is a parsed U2F_REGISTER response (without its status
// word), for clients and tests.
type RegisterResponse struct {
	PublicKey   []byte // uncompressed P-256 point, 65 bytes
	KeyHandle   []byte
	Certificate []byte // DER
	Signature   []byte // ASN.1 DER ECDSA
}

// ParseRegisterResponse splits a U2F_REGISTER response's data.
func ParseRegisterResponse(b []byte) (*RegisterResponse, error) {
	s := cryptobyte.String(b)
	var reserved, khLen uint8
	var r RegisterResponse
	var cert cryptobyte.String
	if !s.ReadUint8(&reserved) || reserved != 0x05 ||
		!s.ReadBytes(&r.PublicKey, pointSize) || r.PublicKey[0] != 0x04 ||
		!s.ReadUint8(&khLen) || !s.ReadBytes(&r.KeyHandle, int(khLen)) ||
		!s.ReadASN1Element(&cert, asn1.SEQUENCE) || len(s) == 0 {
		return nil, errors.New("ctap1: malformed register response")
	}
	r.Certificate = bytes.Clone(cert)
	r.Signature = bytes.Clone(s)
	return &r, nil
}

// AuthenticateResponse is a parsed U2F_AUTHENTICATE response.
type AuthenticateResponse struct {
	UserPresence byte
	Counter      uint32
	Signature    []byte // ASN.1 DER ECDSA
}

// ParseAuthenticateResponse splits a U2F_AUTHENTICATE response's data.
func ParseAuthenticateResponse(b []byte) (*AuthenticateResponse, error) {
	if len(b) < 6 {
		return nil, errors.New("ctap1: malformed authenticate response")
	}
	return &AuthenticateResponse{UserPresence: b[0], Counter: binary.BigEndian.Uint32(b[1:5]), Signature: bytes.Clone(b[5:])}, nil
}
