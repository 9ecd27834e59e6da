package ctap2

import (
	"context"
	"crypto/sha256"
	"time"
)

// GetAssertionRequest is the authenticatorGetAssertion (0x02) input. See CTAP 2.1 §6.2.
type GetAssertionRequest struct {
	RPID              string                `cbor:"1,keyasint"`
	ClientDataHash    []byte                `cbor:"2,keyasint"`
	AllowList         []CredDescriptor      `cbor:"3,keyasint,omitempty"`
	Extensions        map[string]RawMessage `cbor:"4,keyasint,omitempty"`
	Options           *Options              `cbor:"5,keyasint,omitempty"`
	PinUvAuthParam    []byte                `cbor:"6,keyasint,omitempty"`
	PinUvAuthProtocol *uint                 `cbor:"7,keyasint,omitempty"`
}

// GetAssertionResponse is the authenticatorGetAssertion and
// authenticatorGetNextAssertion output.
type GetAssertionResponse struct {
	Credential          CredDescriptor `cbor:"1,keyasint"`
	AuthData            []byte         `cbor:"2,keyasint"`
	Signature           []byte         `cbor:"3,keyasint"`
	User                *UserEntity    `cbor:"4,keyasint,omitempty"`
	NumberOfCredentials uint           `cbor:"5,keyasint,omitempty"`
	UserSelected        *bool          `cbor:"6,keyasint,omitempty"`
}

// nextAssertionState is what authenticatorGetNextAssertion continues.
type nextAssertionState struct {
	cid            uint32
	rpIDHash       [32]byte
	clientDataHash []byte
	flags          byte
	remaining      []*credentialRecord
	expires        time.Time
}

// getNextAssertionTimeout is how long after a getAssertion the platform
// may ask for the next credential.
const getNextAssertionTimeout = 30 * time.Second

func parseGetAssertion(params []byte) (*GetAssertionRequest, error) {
	var req GetAssertionRequest
	if err := decode(params, &req); err != nil {
		return nil, err
	}
	return &req, req.validate()
}

func (req *GetAssertionRequest) validate() error {
	if req.RPID == "" || req.ClientDataHash == nil {
		return ErrMissingParameter
	}
	if len(req.AllowList) > maxCredentialCountInList {
		return ErrLimitExceeded
	}
	for i := range req.AllowList {
		if err := req.AllowList[i].validate(); err != nil {
			return err
		}
	}
	if len(req.PinUvAuthParam) > 0 && req.PinUvAuthProtocol == nil {
		return ErrMissingParameter
	}
	return nil
}

// getAssertion signs a challenge with a credential of the RP (CTAP 2.1 §6.2.2).
func (a *Authenticator) getAssertion(ctx context.Context, r request) (any, error) {
	req, err := parseGetAssertion(r.params)
	if err != nil {
		return nil, err
	}
	rpIDHash := sha256.Sum256([]byte(req.RPID))

	// Step 5: options.
	if _, set := req.Options.rk(); set {
		return nil, ErrUnsupportedOption
	}
	up := true
	if v, set := req.Options.up(); set {
		up = v
	}
	uvOpt, _ := req.Options.uv()
	pres := PresenceRequest{Op: "getAssertion", RPID: req.RPID}
	// Steps 1, 2, 6: PIN/UV.
	uv, err := a.userVerification(ctx, uvRequest{
		presence: pres, param: req.PinUvAuthParam, protocol: req.PinUvAuthProtocol, uvOption: uvOpt,
		clientDataHash: req.ClientDataHash, perm: PermGetAssertion,
	})
	if err != nil {
		return nil, err
	}

	// Step 7: locate credentials.
	var first *foundCredential
	var rest []*credentialRecord
	total := 0
	if len(req.AllowList) > 0 {
		for _, d := range req.AllowList {
			if d.Type != credTypePublicKey {
				continue
			}
			f, ok, err := a.lookupCredential(ctx, d.ID, rpIDHash[:])
			if err != nil {
				return nil, err
			}
			if ok {
				first, total = f, 1
				break
			}
		}
	} else {
		recs, err := a.residentCredentials(rpIDHash[:])
		if err != nil {
			return nil, err
		}
		var usable []*credentialRecord
		for _, rec := range recs {
			f, ok := a.openResident(ctx, rec, rpIDHash[:])
			if !ok {
				continue
			}
			if first == nil {
				first = f
			} else {
				usable = append(usable, rec)
			}
		}
		rest, total = usable, len(usable)
		if first != nil {
			total++
		}
	}

	// Step 9: user presence, before revealing whether credentials exist.
	var flags byte
	if up && !uv.present {
		if err := a.confirm(ctx, pres); err != nil {
			return nil, err
		}
	}
	if up || uv.present {
		flags |= FlagUP
	}
	if uv.verified {
		flags |= FlagUV
	}
	if first == nil {
		return nil, ErrNoCredentials
	}
	resp, err := a.assert(first, rpIDHash, req.ClientDataHash, flags)
	if err != nil {
		return nil, err
	}
	if uv.usedToken {
		a.clearTokenAfterUse()
	}
	if total > 1 {
		resp.NumberOfCredentials = uint(total)
		a.next = &nextAssertionState{
			cid: r.cid, rpIDHash: rpIDHash, clientDataHash: req.ClientDataHash, flags: flags,
			remaining: rest, expires: a.cfg.Now().Add(getNextAssertionTimeout),
		}
	}
	return resp, nil
}

// assert builds and signs one assertion.
func (a *Authenticator) assert(c *foundCredential, rpIDHash [32]byte, clientDataHash []byte, flags byte) (*GetAssertionResponse, error) {
	count, err := a.cfg.Store.NextCounter(c.id)
	if err != nil {
		return nil, err
	}
	ad := AuthData{RPIDHash: rpIDHash, Flags: flags, SignCount: count}
	authData := ad.Marshal()
	msg := make([]byte, 0, len(authData)+len(clientDataHash))
	msg = append(append(msg, authData...), clientDataHash...)
	sig, err := sign(c.signer, algOf(c.signer), msg)
	if err != nil {
		return nil, err
	}
	resp := &GetAssertionResponse{
		Credential: CredDescriptor{Type: credTypePublicKey, ID: c.id},
		AuthData:   authData,
		Signature:  sig,
	}
	if c.meta.Resident {
		// Without user verification, an authenticator with no display
		// returns only the user id (CTAP 2.1 §6.2.2 step 12).
		u := UserEntity{ID: c.record.User.ID}
		if flags&FlagUV != 0 {
			u = c.record.User
		}
		resp.User = &u
	}
	return resp, nil
}
