package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap2"
)

// subcommandRequest is the input of a command with subcommands
// (authenticatorCredentialManagement 0x0A, authenticatorConfig 0x0D).
// SubCommandParams is pre-encoded so that exactly the bytes authenticated
// are the bytes sent.
type subcommandRequest struct {
	SubCommand        uint       `cbor:"1,keyasint"`
	SubCommandParams  RawMessage `cbor:"2,keyasint,omitempty"`
	PinUvAuthProtocol uint       `cbor:"3,keyasint,omitempty"`
	PinUvAuthParam    []byte     `cbor:"4,keyasint,omitempty"`
}

// newSubcommandRequest encodes params (none when nil) and, with a token,
// authenticates prefix ‖ subCommand ‖ subCommandParams.
func newSubcommandRequest(sub uint, params any, token *PINToken, prefix []byte) (*subcommandRequest, error) {
	req := &subcommandRequest{SubCommand: sub}
	if params != nil {
		p, err := encode(params)
		if err != nil {
			return nil, fmt.Errorf("encoding: %w", err)
		}
		req.SubCommandParams = p
	}
	if token != nil {
		msg := append(append(prefix, byte(sub)), req.SubCommandParams...)
		req.PinUvAuthProtocol = token.Protocol()
		req.PinUvAuthParam = token.Authenticate(msg)
	}
	return req, nil
}

type credMgmtParams struct {
	RPIDHash     []byte                `cbor:"1,keyasint,omitempty"`
	CredentialID *ctap2.CredDescriptor `cbor:"2,keyasint,omitempty"`
	User         *ctap2.UserEntity     `cbor:"3,keyasint,omitempty"`
}

// credMgmtResponse is the authenticatorCredentialManagement output.
type credMgmtResponse struct {
	ExistingCount    *uint                 `cbor:"1,keyasint"`
	RemainingCount   *uint                 `cbor:"2,keyasint"`
	RP               *ctap2.RPEntity       `cbor:"3,keyasint"`
	RPIDHash         []byte                `cbor:"4,keyasint"`
	TotalRPs         *uint                 `cbor:"5,keyasint"`
	User             *ctap2.UserEntity     `cbor:"6,keyasint"`
	CredentialID     *ctap2.CredDescriptor `cbor:"7,keyasint"`
	PublicKey        RawMessage            `cbor:"8,keyasint"`
	TotalCredentials *uint                 `cbor:"9,keyasint"`
	CredProtect      *uint                 `cbor:"10,keyasint"`
	LargeBlobKey     []byte                `cbor:"11,keyasint"`
}

// CredentialManagement manages the discoverable credentials of a device
// (authenticatorCredentialManagement, CTAP 2.1 §6.8) with a token that has
// the cm permission. Get one from [Device.CredentialManagement].
type CredentialManagement struct {
	d     *Device
	token *PINToken
	cmd   byte
}

// Metadata is the getCredsMetadata answer.
type Metadata struct {
	Existing  int // existingResidentCredentialsCount
	Remaining int // maxPossibleRemainingResidentCredentialsCount
}

// RP is a relying party that has discoverable credentials on the device.
type RP struct {
	ID     string // may be empty if the authenticator returns only the hash
	Name   string
	IDHash []byte // SHA-256(ID)
}

// Credential is a discoverable credential as enumerated.
type Credential struct {
	ID           []byte           // credential ID
	User         ctap2.UserEntity // user id, name, displayName
	PublicKey    RawMessage       // COSE_Key
	CredProtect  uint             // 1, 2, 3; 0 if not reported
	LargeBlobKey []byte           // if the credential has one
}

// Algorithm is the COSE algorithm of the credential's public key, 0 if the
// key does not say.
func (c *Credential) Algorithm() cose.Algorithm {
	var k struct {
		Alg int `cbor:"3,keyasint"`
	}
	if decode(c.PublicKey, &k) != nil {
		return 0
	}
	return cose.Algorithm(k.Alg)
}

// ErrNotSupported is returned when the authenticator does not advertise a
// feature in getInfo.
var ErrNotSupported = errors.New("not supported by this authenticator")

// CredentialManagement returns the credential management interface of the
// device, authenticated by token (which needs the cm permission; a legacy
// getPinToken token works on keys without permissions). It uses command
// 0x0A when getInfo has the option credMgmt, 0x41 when it has
// credentialMgmtPreview, and fails with [ErrNotSupported] otherwise.
func (d *Device) CredentialManagement(ctx context.Context, token *PINToken) (*CredentialManagement, error) {
	info, err := d.CachedInfo(ctx)
	if err != nil {
		return nil, err
	}
	cm := &CredentialManagement{d: d, token: token}
	if v, _ := Option(info, "credMgmt"); v {
		cm.cmd = ctap2.CmdCredentialManagement
	} else if v, _ := Option(info, "credentialMgmtPreview"); v {
		cm.cmd = ctap2.CmdCredMgmtPreview
	} else {
		return nil, fmt.Errorf("credential management: %w", ErrNotSupported)
	}
	if token == nil {
		return nil, errors.New("credential management: a token is required")
	}
	return cm, nil
}

var cmNames = map[uint]string{
	ctap2.CredMgmtGetCredsMetadata: "getCredsMetadata", ctap2.CredMgmtEnumerateRPsBegin: "enumerateRPsBegin",
	ctap2.CredMgmtEnumerateRPsGetNextRP: "enumerateRPsGetNextRP", ctap2.CredMgmtEnumerateCredentialsBegin: "enumerateCredentialsBegin",
	ctap2.CredMgmtEnumerateCredentialsNext: "enumerateCredentialsGetNextCredential", ctap2.CredMgmtDeleteCredential: "deleteCredential",
	ctap2.CredMgmtUpdateUserInformation: "updateUserInformation",
}

// do sends one subcommand; authenticated subcommands carry
// pinUvAuthParam = authenticate(token, subCommand ‖ subCommandParams).
// The caller holds c.d.mu.
func (c *CredentialManagement) do(ctx context.Context, sub uint, params *credMgmtParams, auth bool) (*credMgmtResponse, error) {
	var p any // a nil *credMgmtParams is no params
	if params != nil {
		p = params
	}
	var token *PINToken
	if auth {
		token = c.token
	}
	req, err := newSubcommandRequest(sub, p, token, nil)
	if err != nil {
		return nil, fmt.Errorf("credMgmt %s: %w", cmNames[sub], err)
	}
	var resp credMgmtResponse
	err = c.d.call(ctx, "credMgmt "+cmNames[sub], c.cmd, req, &resp)
	if errors.Is(err, errEmptyResponse) {
		return &credMgmtResponse{}, nil // delete and update answer nothing
	}
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// Metadata returns the number of discoverable credentials and the room
// left (getCredsMetadata).
func (c *CredentialManagement) Metadata(ctx context.Context) (*Metadata, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	resp, err := c.do(ctx, ctap2.CredMgmtGetCredsMetadata, nil, true)
	if err != nil {
		return nil, err
	}
	if resp.ExistingCount == nil || resp.RemainingCount == nil {
		return nil, errors.New("credMgmt getCredsMetadata: incomplete response")
	}
	return &Metadata{Existing: int(*resp.ExistingCount), Remaining: int(*resp.RemainingCount)}, nil
}

// EnumerateRPs lists the relying parties with discoverable credentials
// (enumerateRPsBegin, then enumerateRPsGetNextRP for the rest). No
// credentials at all (NO_CREDENTIALS) is an empty list.
func (c *CredentialManagement) EnumerateRPs(ctx context.Context) ([]RP, error) {
	return enumerate(ctx, c, ctap2.CredMgmtEnumerateRPsBegin, ctap2.CredMgmtEnumerateRPsGetNextRP, nil,
		func(r *credMgmtResponse) (*uint, string) { return r.TotalRPs, "totalRPs" }, rpOf)
}

// enumerate lists what an enumeration returns: the authenticated begin
// subcommand (with params), then next for the rest of the total that
// totalOf (which also names it) reads from the first response; item
// converts each response. None at all (NO_CREDENTIALS) is an empty list.
func enumerate[T any](ctx context.Context, c *CredentialManagement, begin, next uint, params *credMgmtParams,
	totalOf func(*credMgmtResponse) (*uint, string), item func(*credMgmtResponse) (T, error)) ([]T, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	resp, err := c.do(ctx, begin, params, true)
	if errors.Is(err, ctap2.ErrNoCredentials) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	n, name := totalOf(resp)
	if n == nil {
		return nil, fmt.Errorf("credMgmt %s: response without %s", cmNames[begin], name)
	}
	total, err := enumTotal(*n)
	if err != nil {
		return nil, err
	}
	items := make([]T, 0, min(total, 64))
	for i := 0; ; i++ {
		it, err := item(resp)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
		if i+1 >= total {
			return items, nil
		}
		if resp, err = c.do(ctx, next, nil, false); err != nil {
			return nil, err
		}
	}
}

// maxEnumerate bounds the totals an authenticator may announce: far more
// than any key holds, few enough that a broken or hostile device cannot
// keep the client enumerating for ever.
const maxEnumerate = 10000

func enumTotal(n uint) (int, error) {
	if n == 0 || n > maxEnumerate {
		return 0, fmt.Errorf("credMgmt: implausible total of %d", n)
	}
	return int(n), nil
}

func rpOf(r *credMgmtResponse) (RP, error) {
	if len(r.RPIDHash) != sha256.Size {
		return RP{}, errors.New("credMgmt: RP without a 32-byte rpIDHash")
	}
	rp := RP{IDHash: r.RPIDHash}
	if r.RP != nil {
		rp.ID, rp.Name = r.RP.ID, r.RP.Name
	}
	return rp, nil
}

// EnumerateCredentials lists the discoverable credentials of the RP whose
// SHA-256(rpId) is rpIDHash (enumerateCredentialsBegin, then
// enumerateCredentialsGetNextCredential). None (NO_CREDENTIALS) is an empty
// list.
func (c *CredentialManagement) EnumerateCredentials(ctx context.Context, rpIDHash []byte) ([]Credential, error) {
	return enumerate(ctx, c, ctap2.CredMgmtEnumerateCredentialsBegin, ctap2.CredMgmtEnumerateCredentialsNext, &credMgmtParams{RPIDHash: rpIDHash},
		func(r *credMgmtResponse) (*uint, string) { return r.TotalCredentials, "totalCredentials" }, credentialOf)
}

func credentialOf(r *credMgmtResponse) (Credential, error) {
	if r.User == nil || r.CredentialID == nil {
		return Credential{}, errors.New("credMgmt: credential without user or credentialID")
	}
	cr := Credential{
		ID:           r.CredentialID.ID,
		User:         *r.User,
		PublicKey:    r.PublicKey,
		LargeBlobKey: r.LargeBlobKey,
	}
	if r.CredProtect != nil {
		cr.CredProtect = *r.CredProtect
	}
	return cr, nil
}

// RPIDHash is SHA-256(rpID), the key credentials are enumerated under.
func RPIDHash(rpID string) []byte {
	h := sha256.Sum256([]byte(rpID))
	return h[:]
}

// DeleteCredential removes a discoverable credential (deleteCredential). An
// unknown ID is an error wrapping ctap2.ErrNoCredentials.
func (c *CredentialManagement) DeleteCredential(ctx context.Context, credID []byte) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	_, err := c.do(ctx, ctap2.CredMgmtDeleteCredential, &credMgmtParams{
		CredentialID: &ctap2.CredDescriptor{Type: "public-key", ID: credID},
	}, true)
	return err
}

// UpdateUserInformation replaces the user entity stored with a credential
// (updateUserInformation): user.ID must be the credential's user id (else
// INVALID_PARAMETER); name and displayName are replaced, empty ones removed.
func (c *CredentialManagement) UpdateUserInformation(ctx context.Context, credID []byte, user ctap2.UserEntity) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	_, err := c.do(ctx, ctap2.CredMgmtUpdateUserInformation, &credMgmtParams{
		CredentialID: &ctap2.CredDescriptor{Type: "public-key", ID: credID},
		User:         &user,
	}, true)
	return err
}
