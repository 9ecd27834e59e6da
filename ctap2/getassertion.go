package ctap2

import (
	"context"
	"crypto/sha256"
	"time"
)

// GetAssertionRequest is the authenticatorGetAssertion (0x02) input. See CTAP 2.1 §6.2.
type GetAssertionRequest struct {
	RPID              string                `cbor:"1,keyasint"`
	ClientDataHash    Bytes                 `cbor:"2,keyasint"`
	AllowList         []CredDescriptor      `cbor:"3,keyasint,omitempty"`
	Extensions        map[string]RawMessage `cbor:"4,keyasint,omitempty"`
	Options           *RequestOptions       `cbor:"5,keyasint,omitempty"`
	PinUvAuthParam    Bytes                 `cbor:"6,keyasint,omitempty"`
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
	LargeBlobKey        []byte         `cbor:"7,keyasint,omitempty"`
}

// assertionContext is what every assertion of one getAssertion (and its
// getNextAssertion continuations) shares.
type assertionContext struct {
	rpIDHash       [32]byte
	rpID           string
	clientDataHash []byte
	flags          byte
	ext            *gaExtensions
	hmacSecret     *hmacSecretRequest
}

// nextAssertionState is what authenticatorGetNextAssertion continues: the
// RP's list from cursor on, remaining more credentials.
type nextAssertionState struct {
	assertionContext
	cid       uint32
	cursor    []byte
	verified  bool
	remaining int
	expires   time.Time
}

// getNextAssertionTimeout is how long after a getAssertion the platform
// may ask for the next credential.
const getNextAssertionTimeout = 30 * time.Second

func (req *GetAssertionRequest) validate() error {
	if req.RPID == "" || req.ClientDataHash == nil {
		return ErrMissingParameter
	}
	if err := checkClientDataHash(req.ClientDataHash); err != nil {
		return err
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
func (a *Authenticator) getAssertion(ctx context.Context, r request, req *GetAssertionRequest) (any, error) {
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
	ext, err := parseGAExtensions(req.Extensions)
	if err != nil {
		return nil, err
	}
	var hmacReq *hmacSecretRequest
	if ext.hmacSecret != nil {
		if hmacReq, err = a.prepareHMACSecret(ext.hmacSecret); err != nil {
			return nil, err
		}
	}
	// Steps 1, 2, 6: PIN/UV.
	uv, err := a.userVerification(ctx, uvRequest{
		presence: pres, param: req.PinUvAuthParam, protocol: req.PinUvAuthProtocol, uvOption: uvOpt,
		clientDataHash: req.ClientDataHash, perm: PermGetAssertion,
	})
	if err != nil {
		return nil, err
	}

	// Step 7: locate credentials.
	first, more, err := a.locateCredentials(ctx, req.AllowList, rpIDHash[:], uv.verified)
	if err != nil {
		return nil, err
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
	actx := assertionContext{rpIDHash: rpIDHash, rpID: req.RPID, clientDataHash: req.ClientDataHash, flags: flags, ext: ext, hmacSecret: hmacReq}
	resp, err := a.assert(ctx, first, &actx)
	if err != nil {
		return nil, err
	}
	// Only a use with user presence consumes the token (CTAP 2.1 §6.2.2):
	// a silent up=false probe, as clients send to filter an allowList or
	// excludeList, leaves it for the call that follows.
	if uv.usedToken {
		a.vol.token.clearAfterUse(up)
	}
	if len(req.AllowList) == 0 && a.cfg.SelectNewestAccount {
		selected := true
		resp.UserSelected = &selected
	} else if more.remaining > 0 {
		resp.NumberOfCredentials = uint(1 + more.remaining)
		more.assertionContext, more.cid = actx, r.cid
		more.expires = a.cfg.Now().Add(getNextAssertionTimeout)
		a.vol.next = more
	}
	return resp, nil
}

// locateCredentials finds the credentials of the RP a getAssertion may use
// (CTAP 2.1 §6.2.2 step 7); verified says whether the user was verified,
// which credProtect asks for. With an allowList, first is the first listed
// credential found; without, first is the newest discoverable credential,
// and more says where the others are (newest first, for getNextAssertion)
// and how many: the store's count, so that nothing past the first is read.
// first is nil when there is none.
func (a *Authenticator) locateCredentials(ctx context.Context, allowList []CredDescriptor, rpIDHash []byte, verified bool) (first *foundCredential, more *nextAssertionState, err error) {
	more = &nextAssertionState{verified: verified}
	if len(allowList) > 0 {
		for _, d := range allowList {
			if d.Type != credTypePublicKey {
				continue
			}
			f, ok, err := a.lookupCredential(ctx, d.ID, rpIDHash)
			if err != nil {
				return nil, nil, err
			}
			if ok && (verified || visibleWithoutUV(f.meta.CredProtect, true)) {
				return f, more, nil
			}
		}
		return nil, more, nil
	}
	all, visible, err := a.cfg.Store.CountOfRP(rpIDHash)
	if err != nil {
		return nil, nil, err
	}
	n := visible
	if verified {
		n = all
	}
	if n == 0 {
		return nil, more, nil
	}
	first, more.cursor, err = a.nextResident(ctx, rpIDHash, nil, verified)
	if err != nil || first == nil {
		return nil, more, err
	}
	more.remaining = n - 1
	return first, more, nil
}

// assert builds and signs one assertion, with its extension outputs.
func (a *Authenticator) assert(ctx context.Context, c *foundCredential, actx *assertionContext) (*GetAssertionResponse, error) {
	resp := &GetAssertionResponse{Credential: CredDescriptor{Type: credTypePublicKey, ID: c.id}}
	outputs := map[string]any{}
	if actx.hmacSecret != nil && c.meta.HMACSecret {
		out, err := a.hmacSecretOutput(ctx, actx.hmacSecret, c.id, actx.flags&FlagUV != 0)
		if err != nil {
			return nil, err
		}
		outputs[extHMACSecret] = out
	}
	if actx.ext.credBlob {
		blob := []byte{}
		if c.record != nil && c.record.CredBlobSealed != nil {
			b, err := a.sealer.Open(ctx, c.record.CredBlobSealed, credBlobAAD(c.id))
			if err != nil {
				return nil, err
			}
			blob = b
		}
		outputs[extCredBlob] = blob
	}
	if actx.ext.thirdPartyPayment {
		outputs[extThirdPartyPayment] = c.meta.ThirdPartyPayment
	}
	if actx.ext.largeBlobKey && c.meta.LargeBlobKey {
		key, err := a.credentialSecret(ctx, c.id, labelLargeBlobKey)
		if err != nil {
			return nil, err
		}
		resp.LargeBlobKey = key
	}
	extData, err := extensionMap(outputs)
	if err != nil {
		return nil, err
	}
	count, err := a.cfg.Store.NextCounter(c.id)
	if err != nil {
		return nil, err
	}
	flags := a.applyFlagOverrides(actx.flags | a.backupFlagsOf(c))
	ad := AuthData{RPIDHash: actx.rpIDHash, Flags: flags, SignCount: count, Extensions: extData}
	resp.AuthData = ad.Marshal()
	msg := make([]byte, 0, len(resp.AuthData)+len(actx.clientDataHash))
	msg = append(append(msg, resp.AuthData...), actx.clientDataHash...)
	if resp.Signature, err = sign(c.signer, algOf(c.signer), msg); err != nil {
		return nil, err
	}
	resp.Signature = a.applySignatureOverride(resp.Signature)
	if c.meta.Resident {
		// Without user verification, an authenticator with no display
		// returns only the user id (CTAP 2.1 §6.2.2 step 12).
		u := UserEntity{ID: c.record.User.ID}
		if actx.flags&FlagUV != 0 {
			u = c.record.User
		}
		resp.User = &u
	}
	a.observe(Event{Type: EventCredentialAsserted, CredentialID: c.id, RPID: actx.rpID, UserHandle: userHandleOf(c), SignCount: count, Flags: flags, Op: "getAssertion"})
	return resp, nil
}
