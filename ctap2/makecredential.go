package ctap2

import (
	"bytes"
	"context"
	"crypto/sha256"

	"github.com/virtkey/virtkey/cose"
)

// MakeCredentialRequest is the authenticatorMakeCredential (0x01) input. See CTAP 2.1 §6.1.
type MakeCredentialRequest struct {
	ClientDataHash               Bytes                 `cbor:"1,keyasint"`
	RP                           *RPEntity             `cbor:"2,keyasint"`
	User                         *UserEntity           `cbor:"3,keyasint"`
	PubKeyCredParams             []CredParam           `cbor:"4,keyasint"`
	ExcludeList                  []CredDescriptor      `cbor:"5,keyasint,omitempty"`
	Extensions                   map[string]RawMessage `cbor:"6,keyasint,omitempty"`
	Options                      *RequestOptions       `cbor:"7,keyasint,omitempty"`
	PinUvAuthParam               Bytes                 `cbor:"8,keyasint,omitempty"`
	PinUvAuthProtocol            *uint                 `cbor:"9,keyasint,omitempty"`
	EnterpriseAttestation        *uint                 `cbor:"10,keyasint,omitempty"`
	AttestationFormatsPreference []string              `cbor:"11,keyasint,omitempty"` // CTAP 2.2
}

// MakeCredentialResponse is the authenticatorMakeCredential output.
type MakeCredentialResponse struct {
	Fmt          string         `cbor:"1,keyasint"`
	AuthData     []byte         `cbor:"2,keyasint"`
	AttStmt      map[string]any `cbor:"3,keyasint"`
	EPAtt        *bool          `cbor:"4,keyasint,omitempty"`
	LargeBlobKey []byte         `cbor:"5,keyasint,omitempty"`
}

func (req *MakeCredentialRequest) validate() error {
	if req.ClientDataHash == nil || req.RP == nil || req.User == nil || req.PubKeyCredParams == nil {
		return ErrMissingParameter
	}
	if err := checkClientDataHash(req.ClientDataHash); err != nil {
		return err
	}
	if req.RP.ID == "" {
		return ErrMissingParameter
	}
	if len(req.RP.ID) > maxRPIDLength {
		return ErrInvalidParameter
	}
	req.RP.Name = truncateUTF8(req.RP.Name, maxRPNameLength)
	req.RP.Icon = ""
	if err := req.User.validate(); err != nil {
		return err
	}
	for _, p := range req.PubKeyCredParams {
		if p.Type == "" || p.Alg == nil {
			return ErrMissingParameter
		}
	}
	if len(req.ExcludeList) > maxCredentialCountInList {
		return ErrLimitExceeded
	}
	for i := range req.ExcludeList {
		if err := req.ExcludeList[i].validate(); err != nil {
			return err
		}
	}
	if req.PinUvAuthParam != nil && req.PinUvAuthProtocol == nil && len(req.PinUvAuthParam) > 0 {
		return ErrMissingParameter
	}
	return nil
}

// makeCredential creates a credential (CTAP 2.1 §6.1.2).
func (a *Authenticator) makeCredential(ctx context.Context, r request, req *MakeCredentialRequest) (any, error) {
	rpIDHash := sha256.Sum256([]byte(req.RP.ID))

	// Step 3: choose the algorithm.
	alg, ok := chooseAlgorithm(req.PubKeyCredParams, a.cfg.KeyStore.Algorithms())
	if !ok {
		return nil, ErrUnsupportedAlgorithm
	}
	// Step 5: options.
	rk, _ := req.Options.rk()
	if up, set := req.Options.up(); set && !up {
		return nil, ErrInvalidOption
	}
	uvOpt, _ := req.Options.uv()
	pres := PresenceRequest{Op: "makeCredential", RPID: req.RP.ID, UserName: req.User.Name}
	// Step 9: enterpriseAttestation is checked before the user is asked
	// (attest applies it).
	if _, err := a.enterpriseAttestation(req); err != nil {
		return nil, err
	}
	ext, err := parseMCExtensions(req.Extensions)
	if err != nil {
		return nil, err
	}
	if ext.largeBlobKey && !rk {
		// Large blobs belong to discoverable credentials (CTAP 2.1 §12.3).
		return nil, ErrInvalidOption
	}
	var hmacMC *hmacSecretRequest
	if ext.hmacSecretMC != nil && ext.hmacSecret {
		if hmacMC, err = a.prepareHMACSecret(ext.hmacSecretMC); err != nil {
			return nil, err
		}
	}
	// Steps 1, 2, 6–11: PIN/UV.
	uv, err := a.userVerification(ctx, uvRequest{
		presence: pres, param: req.PinUvAuthParam, protocol: req.PinUvAuthProtocol, uvOption: uvOpt,
		clientDataHash: req.ClientDataHash, perm: PermMakeCredential, needsUVIfProtected: rk,
	})
	if err != nil {
		return nil, err
	}
	// Step 8: excludeList, answered only after user presence.
	if err := a.checkExcludeList(ctx, req.ExcludeList, rpIDHash[:], uv, pres); err != nil {
		return nil, err
	}
	var replaced [][]byte
	if rk {
		if replaced, err = a.residentSlot(rpIDHash[:], req.User.ID); err != nil {
			return nil, err
		}
	}
	// Step 11: user presence.
	if !uv.present {
		if err := a.confirm(ctx, pres); err != nil {
			return nil, err
		}
	}
	flags := FlagUP
	if uv.verified {
		flags |= FlagUV
	}
	flags = a.applyFlagOverrides(flags | a.defaultBackupFlags())
	// Step 13+: create the key and, for rk, the record.
	meta := credMeta{
		Resident: rk, HMACSecret: ext.hmacSecret, LargeBlobKey: ext.largeBlobKey,
		ThirdPartyPayment: ext.thirdPartyPayment, CredProtect: ext.credProtect,
	}
	id, pub, err := a.cfg.KeyStore.NewCredential(ctx, alg, rpIDHash[:], meta.marshal())
	if err != nil {
		return nil, err
	}
	coseKey, err := cose.EncodePublicKey(pub, alg)
	if err != nil {
		return nil, err
	}
	// Everything that can fail runs before the record is written, so a
	// failure leaves no credential behind.
	extData, largeBlobKey, err := a.mcExtensionOutputs(ctx, req.RP.ID, ext, hmacMC, id, rk, uv.verified)
	if err != nil {
		return nil, err
	}
	var rec *credentialRecord
	if rk {
		if rec, err = a.newCredentialRecord(ctx, req, ext, id, alg, coseKey); err != nil {
			return nil, err
		}
	}
	// A new credential's signature counter starts at 0; its first assertion
	// reserves counter values, so registration costs no counter write.
	ad := AuthData{
		RPIDHash: rpIDHash, Flags: flags, SignCount: 0,
		AAGUID: a.cfg.AAGUID, CredentialID: id, PublicKey: coseKey, Extensions: extData,
	}
	resp := &MakeCredentialResponse{AuthData: ad.Marshal(), LargeBlobKey: largeBlobKey}
	if err := a.attest(ctx, resp, req, id, alg, rpIDHash[:]); err != nil {
		return nil, err
	}
	if rec != nil {
		raw, err := encode(rec)
		if err != nil {
			return nil, err
		}
		a.forgetRecords()
		if err := a.cfg.Store.PutCredential(id, rpIDHash[:], raw, replaced...); err != nil {
			return nil, err
		}
	}
	if uv.usedToken {
		a.vol.token.clearAfterUse(true)
	}
	a.log.Info("credential created", "rp", req.RP.ID, "alg", alg.String(), "resident", rk)
	a.observe(Event{Type: EventCredentialAdded, CredentialID: id, RPID: req.RP.ID, UserHandle: req.User.ID, Flags: flags, Op: "makeCredential"})
	return resp, nil
}

// checkExcludeList answers CREDENTIAL_EXCLUDED, after user presence, when
// the excludeList names a credential of this RP that the request may see
// (CTAP 2.1 §6.1.2 step 8): a credProtect=3 credential only with user
// verification.
func (a *Authenticator) checkExcludeList(ctx context.Context, list []CredDescriptor, rpIDHash []byte, uv uvResult, pres PresenceRequest) error {
	for _, d := range list {
		if d.Type != credTypePublicKey {
			continue
		}
		c, found, err := a.lookupCredential(ctx, d.ID, rpIDHash)
		if err != nil {
			return err
		}
		if found && (uv.verified || c.meta.CredProtect != credProtectUVRequired) {
			if !uv.present {
				if err := a.confirm(ctx, pres); err != nil {
					return err
				}
			}
			return ErrCredentialExcluded
		}
	}
	return nil
}

// residentSlot makes room for one more discoverable credential of user
// userID at the RP: it returns the IDs of that user's credentials there,
// which the new one replaces (found through the store's user index, not by
// reading the RP's others), or KEY_STORE_FULL when no more fit.
func (a *Authenticator) residentSlot(rpIDHash, userID []byte) ([][]byte, error) {
	raws, err := a.cfg.Store.CredentialsOfUser(rpIDHash, userID)
	if err != nil {
		return nil, err
	}
	var replaced [][]byte
	for _, raw := range raws {
		if c, err := parseCredentialRecord(raw); err == nil && bytes.Equal(c.User.ID, userID) {
			replaced = append(replaced, c.ID)
		}
	}
	remaining, known, err := a.remainingResident()
	if err != nil {
		return nil, err
	}
	if known && remaining+len(replaced) <= 0 {
		return nil, ErrKeyStoreFull
	}
	return replaced, nil
}

// mcExtensionOutputs computes the new credential id's extension outputs:
// the authenticator data's extensions map and the response's
// largeBlobKey. rk says whether the credential is discoverable, verified
// whether the user was verified.
func (a *Authenticator) mcExtensionOutputs(ctx context.Context, rpID string, ext *mcExtensions, hmacMC *hmacSecretRequest, id []byte, rk, verified bool) (extData, largeBlobKey []byte, err error) {
	outputs := map[string]any{}
	if ext.credProtect != 0 {
		outputs[extCredProtect] = ext.credProtect
	}
	if ext.hmacSecret {
		outputs[extHMACSecret] = true
	}
	if ext.credBlobSet {
		outputs[extCredBlob] = rk && len(ext.credBlob) <= maxCredBlobLength
	}
	if ext.minPINLength && a.minPINLengthAllowed(rpID) {
		outputs[extMinPINLength] = a.state.MinPINLength
	}
	if hmacMC != nil {
		out, err := a.hmacSecretOutput(ctx, hmacMC, id, verified)
		if err != nil {
			return nil, nil, err
		}
		outputs[extHMACSecretMC] = out
	}
	if extData, err = extensionMap(outputs); err != nil {
		return nil, nil, err
	}
	if ext.largeBlobKey {
		if largeBlobKey, err = a.credentialSecret(ctx, id, labelLargeBlobKey); err != nil {
			return nil, nil, err
		}
	}
	return extData, largeBlobKey, nil
}

// newCredentialRecord builds the stored record of a new discoverable
// credential, its credBlob sealed.
func (a *Authenticator) newCredentialRecord(ctx context.Context, req *MakeCredentialRequest, ext *mcExtensions, id []byte, alg cose.Algorithm, coseKey []byte) (*credentialRecord, error) {
	rec := &credentialRecord{
		ID: id, RPID: req.RP.ID, RPName: req.RP.Name, User: *req.User, Alg: int64(alg),
		PublicKey: coseKey, Created: a.cfg.Now().UnixNano(),
		CredProtect: ext.credProtect, LargeBlobKey: ext.largeBlobKey,
		ThirdPartyPayment: ext.thirdPartyPayment,
		BackupEligible:    a.cfg.BackupEligible, BackupState: a.cfg.BackupState,
	}
	if ext.credBlobSet && len(ext.credBlob) <= maxCredBlobLength {
		var err error
		if rec.CredBlobSealed, err = a.sealer.Seal(ctx, ext.credBlob, credBlobAAD(id)); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// chooseAlgorithm picks the first requested public-key algorithm among
// the supported ones (the key store's).
func chooseAlgorithm(params []CredParam, supported []cose.Algorithm) (cose.Algorithm, bool) {
	for _, p := range params {
		if p.Type != credTypePublicKey {
			continue
		}
		for _, alg := range supported {
			if int64(alg) == *p.Alg {
				return alg, true
			}
		}
	}
	return 0, false
}
