package ctap2

// PIN/UV auth protocols One and Two (CTAP 2.1 §6.5.6 "PIN/UV Auth Protocol
// One", §6.5.7 "PIN/UV Auth Protocol Two"): key agreement, the shared secret,
// encrypt/decrypt/authenticate/verify, and the PIN padding and hashing used by
// authenticatorClientPIN (§6.5.5).
//
// The spec's functions take an untyped "key" that is sometimes the shared
// secret and sometimes the pinUvAuthToken, and Protocol Two treats the two
// differently (a 64-byte shared secret is split into an HMAC half and an AES
// half; a 32-byte token is an HMAC key as a whole). Here the two keys have
// their own types so the choice is made by the compiler:
//
//   - [SharedSecret] (from [PINProtocol.SharedSecret] or [PlatformEncapsulate])
//     is bound to its protocol and has Encrypt, Decrypt, Authenticate, Verify.
//   - [PINUVAuthToken] is used only through [PINProtocol.Authenticate] and
//     [PINProtocol.Verify] (pinUvAuthParam for makeCredential, getAssertion,
//     credMgmt, …) and is never used to encrypt.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/virtkey/virtkey/cose"
)

// PINProtocol is one PIN/UV auth protocol (1 or 2). Obtain one with
// [PINProtocolByVersion]; the interface is sealed.
type PINProtocol interface {
	// Version is the pinUvAuthProtocol number: 1 or 2.
	Version() uint

	// SharedSecret is the spec's decapsulate/ecdh: it derives the shared
	// secret from one side's key-agreement private key and the other side's
	// public key. The authenticator passes its [KeyAgreement] key and the
	// platform's key (see [KeyAgreement.SharedSecret]); the platform uses
	// [PlatformEncapsulate]. An error wraps [ErrInvalidParameter].
	//
	// Protocol One: SHA-256(Z). Protocol Two: HKDF-SHA-256(salt = 32×0x00,
	// IKM = Z, info "CTAP2 HMAC key") ‖ HKDF(… "CTAP2 AES key"). Z is the
	// 32-byte x-coordinate of the ECDH point.
	SharedSecret(priv *ecdh.PrivateKey, peer *ecdh.PublicKey) (*SharedSecret, error)

	// Authenticate is authenticate(pinUvAuthToken, msg): Protocol One
	// LEFT(HMAC-SHA-256(token, msg), 16), Protocol Two HMAC-SHA-256(token,
	// msg). It returns nil for a nil token.
	Authenticate(token *PINUVAuthToken, msg []byte) []byte

	// Verify is verify(pinUvAuthToken, msg, sig) in constant time: sig must
	// be exactly 16 (One) or 32 (Two) bytes. Protocol Two also requires a
	// 32-byte token. Checking that the token is "in use" is the caller's job.
	Verify(token *PINUVAuthToken, msg, sig []byte) bool

	isPINProtocol()
}

// PINProtocolByVersion returns protocol v (1 or 2). ok is false for any other
// value; the caller answers INVALID_PARAMETER.
func PINProtocolByVersion(v uint) (p PINProtocol, ok bool) {
	switch v {
	case 1:
		return pinProtocolOne{}, true
	case 2:
		return pinProtocolTwo{}, true
	}
	return nil, false
}

const (
	pinKeyLen   = 32 // each of P1's single key, P2's HMAC key and P2's AES key
	pinP1MACLen = 16
	pinP2MACLen = 32
	pinTokenLen = 32 // the token this authenticator issues (P1 allows 16 too)
	pinCoordLen = 32
)

// pinProtocolOne is PIN/UV Auth Protocol One (CTAP 2.1 §6.5.6).
type pinProtocolOne struct{}

func (pinProtocolOne) Version() uint  { return 1 }
func (pinProtocolOne) isPINProtocol() {}

func (pinProtocolOne) SharedSecret(priv *ecdh.PrivateKey, peer *ecdh.PublicKey) (*SharedSecret, error) {
	z, err := pinECDHZ(priv, peer)
	if err != nil {
		return nil, err
	}
	k := sha256.Sum256(z)
	return newSharedSecret(1, k[:])
}

func (p pinProtocolOne) Authenticate(token *PINUVAuthToken, msg []byte) []byte {
	if token == nil {
		return nil
	}
	return pinHMAC(token.b, msg)[:pinP1MACLen]
}

func (p pinProtocolOne) Verify(token *PINUVAuthToken, msg, sig []byte) bool {
	if token == nil || len(sig) != pinP1MACLen {
		return false
	}
	return hmac.Equal(p.Authenticate(token, msg), sig)
}

// pinProtocolTwo is PIN/UV Auth Protocol Two (CTAP 2.1 §6.5.7).
type pinProtocolTwo struct{}

func (pinProtocolTwo) Version() uint  { return 2 }
func (pinProtocolTwo) isPINProtocol() {}

const (
	pinP2HMACInfo = "CTAP2 HMAC key"
	pinP2AESInfo  = "CTAP2 AES key"
)

func (pinProtocolTwo) SharedSecret(priv *ecdh.PrivateKey, peer *ecdh.PublicKey) (*SharedSecret, error) {
	z, err := pinECDHZ(priv, peer)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, 32)
	hmacKey, err := hkdf.Key(sha256.New, z, salt, pinP2HMACInfo, pinKeyLen)
	if err != nil {
		return nil, fmt.Errorf("ctap2: pin protocol 2 kdf: %w", err)
	}
	aesKey, err := hkdf.Key(sha256.New, z, salt, pinP2AESInfo, pinKeyLen)
	if err != nil {
		return nil, fmt.Errorf("ctap2: pin protocol 2 kdf: %w", err)
	}
	return newSharedSecret(2, append(hmacKey, aesKey...))
}

func (pinProtocolTwo) Authenticate(token *PINUVAuthToken, msg []byte) []byte {
	if token == nil {
		return nil
	}
	return pinHMAC(token.b, msg)
}

func (p pinProtocolTwo) Verify(token *PINUVAuthToken, msg, sig []byte) bool {
	if token == nil || len(token.b) != pinTokenLen || len(sig) != pinP2MACLen {
		return false
	}
	return hmac.Equal(p.Authenticate(token, msg), sig)
}

// pinECDHZ returns Z, the x-coordinate of priv·peer on P-256.
func pinECDHZ(priv *ecdh.PrivateKey, peer *ecdh.PublicKey) ([]byte, error) {
	if priv == nil || peer == nil {
		return nil, fmt.Errorf("ctap2: key agreement: missing key: %w", ErrInvalidParameter)
	}
	if priv.Curve() != ecdh.P256() || peer.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("ctap2: key agreement: not a P-256 key: %w", ErrInvalidParameter)
	}
	z, err := priv.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("ctap2: key agreement: %v: %w", err, ErrInvalidParameter)
	}
	return z, nil
}

func pinHMAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// SharedSecret is a PIN/UV auth protocol shared secret, bound to the protocol
// that derived it: 32 bytes for Protocol One (used both to encrypt and to
// authenticate), 64 bytes for Protocol Two (HMAC key ‖ AES key). It never
// appears in logs or JSON. Methods on a nil *SharedSecret fail safely.
type SharedSecret struct {
	version uint
	raw     []byte // the spec's sharedSecret, for golden tests only
	hmacKey []byte
	aesKey  []byte
}

// newSharedSecret wraps raw spec bytes: 32 (v1) or 64 (v2).
func newSharedSecret(version uint, raw []byte) (*SharedSecret, error) {
	switch {
	case version == 1 && len(raw) == pinKeyLen:
		return &SharedSecret{version: 1, raw: raw, hmacKey: raw, aesKey: raw}, nil
	case version == 2 && len(raw) == 2*pinKeyLen:
		return &SharedSecret{version: 2, raw: raw, hmacKey: raw[:pinKeyLen], aesKey: raw[pinKeyLen:]}, nil
	}
	return nil, fmt.Errorf("ctap2: pin protocol %d: bad shared secret length %d", version, len(raw))
}

// Version is the pinUvAuthProtocol that derived s.
func (s *SharedSecret) Version() uint {
	if s == nil {
		return 0
	}
	return s.version
}

var errNilSharedSecret = errors.New("ctap2: nil shared secret")

// Encrypt is encrypt(sharedSecret, plaintext): AES-256-CBC without padding,
// with an all-zero IV (One) or a random IV prepended to the ciphertext (Two).
// plaintext must be a non-empty multiple of 16 bytes; anything else is a
// caller bug and returns an error that is not a [StatusCode].
func (s *SharedSecret) Encrypt(plaintext []byte) ([]byte, error) {
	if s == nil {
		return nil, errNilSharedSecret
	}
	var iv [aes.BlockSize]byte
	if s.version == 2 {
		rand.Read(iv[:])
	}
	return s.encryptWithIV(iv[:], plaintext)
}

// encryptWithIV is Encrypt with a chosen IV (golden tests; Protocol One
// always passes zeros). Protocol Two output is iv ‖ ciphertext.
func (s *SharedSecret) encryptWithIV(iv, plaintext []byte) ([]byte, error) {
	if s == nil {
		return nil, errNilSharedSecret
	}
	if len(iv) != aes.BlockSize {
		return nil, fmt.Errorf("ctap2: pin protocol %d encrypt: IV length %d", s.version, len(iv))
	}
	if len(plaintext) == 0 || len(plaintext)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("ctap2: pin protocol %d encrypt: plaintext length %d is not a positive multiple of %d",
			s.version, len(plaintext), aes.BlockSize)
	}
	block, err := aes.NewCipher(s.aesKey)
	if err != nil {
		return nil, fmt.Errorf("ctap2: pin protocol %d encrypt: %w", s.version, err)
	}
	var out []byte
	if s.version == 2 {
		out = make([]byte, aes.BlockSize+len(plaintext))
		copy(out, iv)
	} else {
		out = make([]byte, len(plaintext))
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out[len(out)-len(plaintext):], plaintext)
	return out, nil
}

// Decrypt is decrypt(sharedSecret, ciphertext). The ciphertext must be a
// non-empty multiple of 16 bytes (One) or a 16-byte IV followed by a non-empty
// multiple of 16 bytes (Two); otherwise the error wraps [ErrInvalidParameter].
// On error the plaintext is nil.
func (s *SharedSecret) Decrypt(ciphertext []byte) ([]byte, error) {
	if s == nil {
		return nil, errNilSharedSecret
	}
	iv := make([]byte, aes.BlockSize)
	ct := ciphertext
	if s.version == 2 {
		if len(ct) < aes.BlockSize {
			return nil, fmt.Errorf("ctap2: pin protocol 2 decrypt: ciphertext length %d: %w", len(ciphertext), ErrInvalidParameter)
		}
		iv, ct = ct[:aes.BlockSize], ct[aes.BlockSize:]
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("ctap2: pin protocol %d decrypt: ciphertext length %d: %w", s.version, len(ciphertext), ErrInvalidParameter)
	}
	block, err := aes.NewCipher(s.aesKey)
	if err != nil {
		return nil, fmt.Errorf("ctap2: pin protocol %d decrypt: %w", s.version, err)
	}
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ct)
	return out, nil
}

// Authenticate is authenticate(sharedSecret, msg) with the HMAC half of the
// secret: LEFT(HMAC-SHA-256, 16) for One, the full 32 bytes for Two. It
// returns nil for a nil secret.
func (s *SharedSecret) Authenticate(msg []byte) []byte {
	if s == nil {
		return nil
	}
	mac := pinHMAC(s.hmacKey, msg)
	if s.version == 1 {
		return mac[:pinP1MACLen]
	}
	return mac
}

// Verify is verify(sharedSecret, msg, sig) in constant time; sig must be
// exactly 16 (One) or 32 (Two) bytes.
func (s *SharedSecret) Verify(msg, sig []byte) bool {
	if s == nil {
		return false
	}
	want := s.Authenticate(msg)
	return len(sig) == len(want) && hmac.Equal(want, sig)
}

// LogValue implements [slog.LogValuer]: the secret is never logged.
func (*SharedSecret) LogValue() slog.Value { return pinRedacted }

// String and GoString keep the secret out of fmt output.
func (*SharedSecret) String() string   { return "REDACTED" }
func (*SharedSecret) GoString() string { return "REDACTED" }

// MarshalJSON always fails: a shared secret is never serialized.
func (*SharedSecret) MarshalJSON() ([]byte, error) {
	return nil, errors.New("ctap2: refusing to marshal a shared secret")
}

var pinRedacted = slog.StringValue("REDACTED")

// PINUVAuthToken is a pinUvAuthToken (CTAP 2.1 §6.5.2.1): a random key that
// authenticates requests through [PINProtocol.Authenticate]/[PINProtocol.Verify].
// Its state (permissions, rpId, timers) belongs to the caller. It never
// appears in logs or JSON.
type PINUVAuthToken struct {
	b []byte
}

// NewPINUVAuthToken returns a fresh random 32-byte token, valid for both
// protocols.
func NewPINUVAuthToken() *PINUVAuthToken {
	b := make([]byte, pinTokenLen)
	rand.Read(b)
	return &PINUVAuthToken{b: b}
}

// ParsePINUVAuthToken wraps a token received (and decrypted) by a platform.
// Protocol One tokens are 16 or 32 bytes, Protocol Two tokens 32 bytes. b is
// copied.
func ParsePINUVAuthToken(p PINProtocol, b []byte) (*PINUVAuthToken, error) {
	if p == nil {
		return nil, errors.New("ctap2: nil PIN protocol")
	}
	ok := len(b) == pinTokenLen || (p.Version() == 1 && len(b) == 16)
	if !ok {
		return nil, fmt.Errorf("ctap2: pin protocol %d: token length %d: %w", p.Version(), len(b), ErrInvalidParameter)
	}
	return &PINUVAuthToken{b: append([]byte(nil), b...)}, nil
}

// Bytes returns a copy of the token, to be passed to
// [SharedSecret.Encrypt] for the getPinToken response and nowhere else.
func (t *PINUVAuthToken) Bytes() []byte {
	if t == nil {
		return nil
	}
	return append([]byte(nil), t.b...)
}

// LogValue implements [slog.LogValuer]: the token is never logged.
func (*PINUVAuthToken) LogValue() slog.Value { return pinRedacted }

// String and GoString keep the token out of fmt output.
func (*PINUVAuthToken) String() string   { return "REDACTED" }
func (*PINUVAuthToken) GoString() string { return "REDACTED" }

// MarshalJSON always fails: a token is never serialized.
func (*PINUVAuthToken) MarshalJSON() ([]byte, error) {
	return nil, errors.New("ctap2: refusing to marshal a pinUvAuthToken")
}

// KeyAgreement is the authenticator's ephemeral P-256 key-agreement key
// (CTAP 2.1 §6.5.6 initialize/regenerate). The zero value is ready to use: a
// key is generated on first use. Call Regenerate at power-up, on
// authenticatorReset and after a pinHashEnc mismatch. It is safe for
// concurrent use and never appears in logs or JSON.
type KeyAgreement struct {
	mu   sync.Mutex
	priv *ecdh.PrivateKey
}

// Regenerate replaces the key with a fresh one.
func (k *KeyAgreement) Regenerate() {
	priv := pinGenerateKey()
	k.mu.Lock()
	k.priv = priv
	k.mu.Unlock()
}

func (k *KeyAgreement) key() *ecdh.PrivateKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.priv == nil {
		k.priv = pinGenerateKey()
	}
	return k.priv
}

func pinGenerateKey() *ecdh.PrivateKey {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		// Unreachable: crypto/rand.Reader never fails (it aborts the
		// program instead), and that is the only error source.
		panic("ctap2: P-256 key generation failed: " + err.Error())
	}
	return priv
}

// PublicCOSE returns the getKeyAgreement response key (keyAgreement, 0x01)
// as a COSE_Key map ready for the CTAP2 encoder; see [PublicKeyCOSE].
func (k *KeyAgreement) PublicCOSE() map[int]any {
	return PublicKeyCOSE(k.key().PublicKey())
}

// SharedSecret derives the shared secret with the platform's key under
// protocol p (the authenticator side of decapsulate). An error wraps
// [ErrInvalidParameter].
func (k *KeyAgreement) SharedSecret(p PINProtocol, platformKey *ecdh.PublicKey) (*SharedSecret, error) {
	if p == nil {
		return nil, fmt.Errorf("ctap2: nil PIN protocol: %w", ErrInvalidParameter)
	}
	return p.SharedSecret(k.key(), platformKey)
}

// LogValue implements [slog.LogValuer]: the key is never logged.
func (*KeyAgreement) LogValue() slog.Value { return pinRedacted }

// String and GoString keep the key out of fmt output.
func (*KeyAgreement) String() string   { return "REDACTED" }
func (*KeyAgreement) GoString() string { return "REDACTED" }

// MarshalJSON always fails: the key is never serialized.
func (*KeyAgreement) MarshalJSON() ([]byte, error) {
	return nil, errors.New("ctap2: refusing to marshal a key-agreement key")
}

// PublicKeyCOSE returns a P-256 key-agreement public key as the COSE_Key map
// {1: 2 (EC2), 3: -25 (ECDH-ES+HKDF-256, nominal), -1: 1 (P-256), -2: x,
// -3: y}, with x and y fixed 32-byte slices. It returns nil for a nil or
// non-P-256 key. The platform uses it for its keyAgreement parameter (0x03).
func PublicKeyCOSE(pub *ecdh.PublicKey) map[int]any {
	if pub == nil || pub.Curve() != ecdh.P256() {
		return nil
	}
	b := pub.Bytes() // 0x04 ‖ x ‖ y
	x := append([]byte(nil), b[1:1+pinCoordLen]...)
	y := append([]byte(nil), b[1+pinCoordLen:]...)
	return map[int]any{
		1:  2, // kty: EC2
		3:  int(cose.AlgECDHESHKDF256),
		-1: 1, // crv: P-256
		-2: x,
		-3: y,
	}
}

// ParsePlatformKey validates the x and y coordinates of a COSE key-agreement
// key (each exactly 32 bytes, a point on P-256 other than infinity) and
// returns the key. The caller checks kty, crv and alg. It also parses the
// authenticator's key on the platform side. An error wraps
// [ErrInvalidParameter].
func ParsePlatformKey(x, y []byte) (*ecdh.PublicKey, error) {
	if len(x) != pinCoordLen || len(y) != pinCoordLen {
		return nil, fmt.Errorf("ctap2: key agreement: coordinate lengths %d, %d: %w", len(x), len(y), ErrInvalidParameter)
	}
	b := make([]byte, 0, 1+2*pinCoordLen)
	b = append(b, 0x04)
	b = append(b, x...)
	b = append(b, y...)
	pub, err := ecdh.P256().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("ctap2: key agreement: %v: %w", err, ErrInvalidParameter)
	}
	return pub, nil
}

// PlatformEncapsulate is the platform side of the key agreement (the spec's
// encapsulate): it makes an ephemeral P-256 key, derives the shared secret
// with the authenticator's key under protocol p, and returns the public half
// to send as keyAgreement (see [PublicKeyCOSE]).
func PlatformEncapsulate(p PINProtocol, authenticatorKey *ecdh.PublicKey) (platformKey *ecdh.PublicKey, shared *SharedSecret, err error) {
	if p == nil {
		return nil, nil, errors.New("ctap2: nil PIN protocol")
	}
	priv := pinGenerateKey()
	shared, err = p.SharedSecret(priv, authenticatorKey)
	if err != nil {
		return nil, nil, err
	}
	return priv.PublicKey(), shared, nil
}

// PIN encoding (CTAP 2.1 §6.5.5.5 setPIN, §6.5.5.6 changePIN).
const (
	pinPaddedLen = 64
	pinMaxBytes  = pinPaddedLen - 1
	pinHashLen   = 16
)

// PadPIN encodes pin as the setPIN/changePIN plaintext: its UTF-8 bytes
// padded with 0x00 to 64 bytes. The PIN must be 1–63 bytes of valid UTF-8
// without NUL; otherwise the error wraps [ErrPINPolicyViolation]. The
// minimum length in code points (minPINLength) is the caller's check.
func PadPIN(pin string) ([]byte, error) {
	if err := pinCheck(pin); err != nil {
		return nil, err
	}
	b := make([]byte, pinPaddedLen)
	copy(b, pin)
	return b, nil
}

// UnpadPIN decodes a decrypted newPin block: it must be 64 bytes (else the
// error wraps [ErrInvalidParameter]); trailing 0x00 bytes are dropped and
// the rest must be a 1–63-byte valid UTF-8 PIN without NUL (else the error
// wraps [ErrPINPolicyViolation]).
func UnpadPIN(b []byte) (string, error) {
	if len(b) != pinPaddedLen {
		return "", fmt.Errorf("ctap2: padded PIN length %d: %w", len(b), ErrInvalidParameter)
	}
	pin := strings.TrimRight(string(b), "\x00")
	if err := pinCheck(pin); err != nil {
		return "", err
	}
	return pin, nil
}

func pinCheck(pin string) error {
	switch {
	case len(pin) == 0:
		return fmt.Errorf("ctap2: empty PIN: %w", ErrPINPolicyViolation)
	case len(pin) > pinMaxBytes:
		return fmt.Errorf("ctap2: PIN longer than %d bytes: %w", pinMaxBytes, ErrPINPolicyViolation)
	case !utf8.ValidString(pin):
		return fmt.Errorf("ctap2: PIN is not valid UTF-8: %w", ErrPINPolicyViolation)
	case strings.IndexByte(pin, 0) >= 0:
		return fmt.Errorf("ctap2: PIN contains NUL: %w", ErrPINPolicyViolation)
	}
	return nil
}

// PINHash is LEFT(SHA-256(pin), 16), the value stored by the authenticator
// and sent encrypted as pinHashEnc. Compare it with [hmac.Equal] and never
// log it.
func PINHash(pin string) []byte {
	h := sha256.Sum256([]byte(pin))
	return h[:pinHashLen]
}

// PINCodePoints is the PIN length in Unicode code points, the unit of
// minPINLength. Invalid UTF-8 bytes count one each.
func PINCodePoints(pin string) int {
	return utf8.RuneCountInString(pin)
}
