package control

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Bytes is binary data on the wire: base64url without padding when
// encoded; standard or URL base64, padded or not, when decoded.
type Bytes []byte

// MarshalJSON encodes b as unpadded base64url.
func (b Bytes) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawURLEncoding.EncodeToString(b))
}

// UnmarshalJSON decodes a JSON string in any base64 alphabet.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("want a base64 string")
	}
	v, err := DecodeBase64(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// String is the unpadded base64url form.
func (b Bytes) String() string { return base64.RawURLEncoding.EncodeToString(b) }

// DecodeBase64 accepts standard or URL base64, with or without padding.
func DecodeBase64(s string) ([]byte, error) {
	t := strings.TrimRight(s, "=")
	if len(s)-len(t) > 2 {
		return nil, errors.New("bad base64: too much padding")
	}
	std := strings.ContainsAny(t, "+/")
	url := strings.ContainsAny(t, "-_")
	var enc *base64.Encoding
	switch {
	case std && url:
		return nil, errors.New("bad base64: mixes the standard and URL alphabets")
	case std:
		enc = base64.RawStdEncoding
	default:
		enc = base64.RawURLEncoding
	}
	v, err := enc.Strict().DecodeString(t)
	if err != nil {
		return nil, errors.New("bad base64")
	}
	return v, nil
}

// Protocols of the WebDriver Authenticator Configuration.
const (
	ProtocolCTAP21 = "ctap2_1"
	ProtocolCTAP2  = "ctap2"
	ProtocolU2F    = "ctap1/u2f"
)

// Ways a key is attached.
const (
	AttachUDP  = "udp"
	AttachUHID = "uhid"
)

// PresenceMode says how a key answers user-presence requests.
type PresenceMode string

// Presence modes.
const (
	// PresenceAuto approves at once.
	PresenceAuto PresenceMode = "auto"
	// PresenceDeny refuses (CTAP2_ERR_OPERATION_DENIED).
	PresenceDeny PresenceMode = "deny"
	// PresenceManual queues the request for the test to answer.
	PresenceManual PresenceMode = "manual"
	// PresenceTimeout never answers: the client gets KEEPALIVE(UPNEEDED)
	// until it cancels or the key's presence timeout ends.
	PresenceTimeout PresenceMode = "timeout"
)

func (m PresenceMode) valid() bool {
	switch m {
	case PresenceAuto, PresenceDeny, PresenceManual, PresenceTimeout:
		return true
	}
	return false
}

// KeyConfig is the body of POST /v1/keys: a WebDriver Authenticator
// Configuration plus how to attach the key. Pointer fields are optional.
type KeyConfig struct {
	Protocol                 string   `json:"protocol,omitempty"`
	Transport                string   `json:"transport,omitempty"`
	HasResidentKey           *bool    `json:"hasResidentKey,omitempty"`
	HasUserVerification      *bool    `json:"hasUserVerification,omitempty"`
	IsUserConsenting         *bool    `json:"isUserConsenting,omitempty"`
	IsUserVerified           *bool    `json:"isUserVerified,omitempty"`
	Extensions               []string `json:"extensions,omitempty"`
	DefaultBackupEligibility bool     `json:"defaultBackupEligibility,omitempty"`
	DefaultBackupState       bool     `json:"defaultBackupState,omitempty"`

	// Attach is "udp" or "uhid".
	Attach string `json:"attach"`
	// UDPListen is the UDP address of an "udp" key (default 127.0.0.1:0).
	UDPListen string `json:"udpListen,omitempty"`
	// StateDir is the key's state directory; empty makes an ephemeral one,
	// removed with the key.
	StateDir string `json:"stateDir,omitempty"`
	// AcceptRollback opens a StateDir whose state.db its rollback reference
	// says is older than the last one written (a restored copy), as
	// `virtkey run --accept-rollback` does.
	AcceptRollback bool `json:"acceptRollback,omitempty"`
	// Presence is the initial presence mode (additive; default from
	// isUserConsenting: auto, or deny when false).
	Presence PresenceMode `json:"presence,omitempty"`

	// Chromium DevTools' VirtualAuthenticatorOptions, accepted so that CDP
	// code ports unchanged. virtkey keys always have large blobs, credBlob,
	// minPinLength and hmac-secret (PRF): true is checked, false ignored.
	// automaticPresenceSimulation false is presence "manual".
	CTAP2Version                *string `json:"ctap2Version,omitempty"`
	HasLargeBlob                *bool   `json:"hasLargeBlob,omitempty"`
	HasCredBlob                 *bool   `json:"hasCredBlob,omitempty"`
	HasMinPINLength             *bool   `json:"hasMinPinLength,omitempty"`
	HasPRF                      *bool   `json:"hasPrf,omitempty"`
	AutomaticPresenceSimulation *bool   `json:"automaticPresenceSimulation,omitempty"`
}

// Normalize fills defaults and checks the values the control plane knows.
func (c *KeyConfig) Normalize() error {
	switch c.Protocol {
	case "":
		c.Protocol = ProtocolCTAP21
	case ProtocolCTAP21, ProtocolCTAP2, ProtocolU2F:
	default:
		return badRequest("protocol %q: want ctap2_1, ctap2 or ctap1/u2f", c.Protocol)
	}
	switch c.Transport {
	case "":
		c.Transport = "usb"
	case "usb":
	default:
		return badRequest("transport %q: virtkey keys are usb (HID) keys", c.Transport)
	}
	switch c.Attach {
	case AttachUDP:
		if c.UDPListen == "" {
			c.UDPListen = "127.0.0.1:0"
		}
	case AttachUHID:
		if c.UDPListen != "" {
			return badRequest("udpListen is for attach \"udp\"")
		}
	case "":
		return badRequest("attach: want \"udp\" or \"uhid\"")
	default:
		return badRequest("attach %q: want \"udp\" or \"uhid\"", c.Attach)
	}
	if c.CTAP2Version != nil && *c.CTAP2Version != "ctap2_0" && *c.CTAP2Version != "ctap2_1" {
		return badRequest("ctap2Version %q: want ctap2_0 or ctap2_1", *c.CTAP2Version)
	}
	for name, on := range map[string]*bool{"largeBlob": c.HasLargeBlob, "credBlob": c.HasCredBlob, "minPinLength": c.HasMinPINLength, "prf": c.HasPRF} {
		if on != nil && *on {
			c.Extensions = append(c.Extensions, name)
		}
	}
	if c.Presence == "" {
		c.Presence = PresenceAuto
		switch {
		case c.IsUserConsenting != nil && !*c.IsUserConsenting:
			c.Presence = PresenceDeny
		case c.AutomaticPresenceSimulation != nil && !*c.AutomaticPresenceSimulation:
			c.Presence = PresenceManual
		}
	} else if !c.Presence.valid() {
		return badRequest("presence %q: want auto, deny, manual or timeout", c.Presence)
	}
	if c.IsUserVerified != nil && *c.IsUserVerified && c.HasUserVerification != nil && !*c.HasUserVerification {
		return badRequest("isUserVerified needs hasUserVerification")
	}
	return nil
}

// KeyInfo describes a key (GET /v1/keys and the answers of the key-level
// setters).
type KeyInfo struct {
	ID                       string   `json:"id"`
	Attach                   string   `json:"attach"`
	UDPAddr                  string   `json:"udpAddr,omitempty"`
	HIDRaw                   string   `json:"hidraw,omitempty"`
	Protocol                 string   `json:"protocol"`
	Transport                string   `json:"transport"`
	HasResidentKey           bool     `json:"hasResidentKey"`
	HasUserVerification      bool     `json:"hasUserVerification"`
	IsUserVerified           bool     `json:"isUserVerified"`
	IsUserConsenting         bool     `json:"isUserConsenting"`
	Extensions               []string `json:"extensions"`
	DefaultBackupEligibility bool     `json:"defaultBackupEligibility"`
	DefaultBackupState       bool     `json:"defaultBackupState"`
	PINSet                   bool     `json:"pinSet"`

	// Additive fields.
	Presence      PresenceMode `json:"presence"`
	Overrides     Overrides    `json:"overrides"`
	StateDir      string       `json:"stateDir,omitempty"`
	Ephemeral     bool         `json:"ephemeral"`
	KeyStore      string       `json:"keystore"`      // "software" or "tpm"
	ExportAllowed bool         `json:"exportAllowed"` // private keys may leave and enter
}

// CredentialParams is the body of POST /v1/keys/{id}/credentials: the
// WebDriver Credential Parameters, or Playwright's credential shape
// ({id, rpId, userHandle, privateKey, publicKey}).
type CredentialParams struct {
	CredentialID         Bytes  `json:"credentialId,omitempty"`
	IsResidentCredential *bool  `json:"isResidentCredential,omitempty"`
	RPID                 string `json:"rpId"`
	// PrivateKey is PKCS#8 DER (ES256, EdDSA, ES384 or RS256). Absent,
	// the key makes a new key pair of Algorithm (default ES256).
	PrivateKey        Bytes  `json:"privateKey,omitempty"`
	UserHandle        Bytes  `json:"userHandle,omitempty"`
	SignCount         uint32 `json:"signCount,omitempty"`
	LargeBlob         Bytes  `json:"largeBlob,omitempty"`
	BackupEligibility *bool  `json:"backupEligibility,omitempty"`
	BackupState       *bool  `json:"backupState,omitempty"`
	UserName          string `json:"userName,omitempty"`
	UserDisplayName   string `json:"userDisplayName,omitempty"`
	CredProtect       *int   `json:"credProtect,omitempty"`
	HMACSecret        *bool  `json:"hmacSecret,omitempty"`
	Algorithm         *int   `json:"algorithm,omitempty"` // COSE algorithm when generating
	ID                Bytes  `json:"id,omitempty"`        // Playwright: credentialId
	PublicKey         Bytes  `json:"publicKey,omitempty"` // Playwright: SPKI DER, checked against privateKey
}

// Normalize maps Playwright's shape onto the WebDriver one and checks the
// fields the control plane can check without the key.
func (p *CredentialParams) Normalize() error {
	if p.ID != nil {
		if p.CredentialID != nil && string(p.CredentialID) != string(p.ID) {
			return badRequest("id and credentialId differ")
		}
		p.CredentialID = p.ID
		if p.IsResidentCredential == nil {
			t := true // Playwright's credentials are passkeys
			p.IsResidentCredential = &t
		}
	}
	p.ID = nil
	if p.RPID == "" {
		return badRequest("rpId is required")
	}
	if len(p.CredentialID) > 1023 {
		return badRequest("credentialId: at most 1023 bytes")
	}
	if p.CredentialID != nil && len(p.CredentialID) < 16 {
		return badRequest("credentialId: at least 16 bytes")
	}
	if len(p.UserHandle) > 64 {
		return badRequest("userHandle: at most 64 bytes")
	}
	if p.IsResidentCredential != nil && *p.IsResidentCredential && len(p.UserHandle) == 0 {
		return badRequest("userHandle is required for a resident credential")
	}
	if p.CredProtect != nil && (*p.CredProtect < 1 || *p.CredProtect > 3) {
		return badRequest("credProtect: want 1, 2 or 3")
	}
	if p.PrivateKey != nil && p.Algorithm != nil {
		return badRequest("algorithm is for generated keys; privateKey already names one")
	}
	if p.BackupState != nil && *p.BackupState && p.BackupEligibility != nil && !*p.BackupEligibility {
		return badRequest("backupState needs backupEligibility")
	}
	return nil
}

// Credential is a stored credential as the API reports it: the WebDriver
// Credential Parameters plus the public key and algorithm.
type Credential struct {
	CredentialID         Bytes  `json:"credentialId"`
	IsResidentCredential bool   `json:"isResidentCredential"`
	RPID                 string `json:"rpId"`
	// PrivateKey is PKCS#8 DER; absent when it may not leave the key
	// (TPM custody, or export not allowed).
	PrivateKey        Bytes  `json:"privateKey,omitempty"`
	UserHandle        Bytes  `json:"userHandle,omitempty"`
	SignCount         uint32 `json:"signCount"`
	LargeBlob         Bytes  `json:"largeBlob,omitempty"`
	BackupEligibility bool   `json:"backupEligibility"`
	BackupState       bool   `json:"backupState"`
	UserName          string `json:"userName,omitempty"`
	UserDisplayName   string `json:"userDisplayName,omitempty"`
	CredProtect       int    `json:"credProtect,omitempty"`
	HMACSecret        bool   `json:"hmacSecret"`
	// PublicKey is SPKI DER.
	PublicKey Bytes `json:"publicKey"`
	// Algorithm is the COSE algorithm (-7 ES256, -8 EdDSA, -35 ES384, -257 RS256).
	Algorithm int `json:"algorithm"`
}

// PlaywrightCredential is Playwright's context.credentials shape.
type PlaywrightCredential struct {
	ID         Bytes  `json:"id"`
	RPID       string `json:"rpId"`
	UserHandle Bytes  `json:"userHandle"`
	PrivateKey Bytes  `json:"privateKey"`
	PublicKey  Bytes  `json:"publicKey"`
}

// CredentialProps is the body of POST …/credentials/{credentialId}/props
// (WebDriver "Set Credential Properties" plus signCount and user names).
// Absent fields are left as they are.
type CredentialProps struct {
	BackupEligibility *bool   `json:"backupEligibility,omitempty"`
	BackupState       *bool   `json:"backupState,omitempty"`
	SignCount         *uint32 `json:"signCount,omitempty"`
	UserName          *string `json:"userName,omitempty"`
	UserDisplayName   *string `json:"userDisplayName,omitempty"`
}

// PendingPresence is a presence request waiting for the test's answer.
type PendingPresence struct {
	RequestID string    `json:"requestId"`
	Op        string    `json:"op"`
	RPID      string    `json:"rpId"`
	UserName  string    `json:"userName,omitempty"`
	Since     time.Time `json:"since"`
}

// Overrides are the response override bits of Chromium's DevTools
// WebAuthn domain: a bogus signature, a cleared UV flag, a cleared UP flag.
type Overrides struct {
	IsBogusSignature bool `json:"isBogusSignature"`
	IsBadUV          bool `json:"isBadUV"`
	IsBadUP          bool `json:"isBadUP"`
}

// Event types.
const (
	EventCredentialAdded    = "credentialAdded"
	EventCredentialAsserted = "credentialAsserted"
	EventCredentialUpdated  = "credentialUpdated"
	EventCredentialDeleted  = "credentialDeleted"
	EventPresenceRequested  = "presenceRequested"
	EventPresenceAnswered   = "presenceAnswered"
	EventPINSet             = "pinSet"
	EventPINFailed          = "pinFailed"
	EventReset              = "reset"
	EventReplug             = "replug"
	// EventsDropped tells a subscriber that fell behind how many events it lost.
	EventsDropped = "eventsDropped"
)

// Event is one line of the event stream.
type Event struct {
	Type         string    `json:"type"`
	Time         time.Time `json:"time"`
	CredentialID Bytes     `json:"credentialId,omitempty"`
	RPID         string    `json:"rpId,omitempty"`
	UserHandle   Bytes     `json:"userHandle,omitempty"`
	SignCount    *uint32   `json:"signCount,omitempty"`
	// Flags is the authenticator-data flags byte of the response (UP 0x01,
	// UV 0x04, BE 0x08, BS 0x10, AT 0x40, ED 0x80).
	Flags *uint8 `json:"flags,omitempty"`
	// Op is the CTAP operation ("makeCredential", "getAssertion", …).
	Op string `json:"op,omitempty"`
	// Status is the outcome: "approved", "denied", "timeout", "cancelled"
	// for presence; the CTAP status name for pinFailed.
	Status string `json:"status,omitempty"`
	// Additive fields.
	RequestID string `json:"requestId,omitempty"`
	Dropped   uint64 `json:"dropped,omitempty"`
}

// UVRequest is the body of POST /v1/keys/{id}/uv.
type UVRequest struct {
	IsUserVerified *bool `json:"isUserVerified"`
}

// PresenceRequest is the body of POST /v1/keys/{id}/presence.
type PresenceRequest struct {
	Mode PresenceMode `json:"mode"`
}

// PresenceAnswer is the body of POST /v1/keys/{id}/presence/pending/{requestId}.
type PresenceAnswer struct {
	Approve *bool `json:"approve"`
}

// PINRequest is the body of POST /v1/keys/{id}/pin.
type PINRequest struct {
	PIN string `json:"pin"`
}

// ErrorResponse is every error's body.
type ErrorResponse struct {
	Error string `json:"error"`
}
