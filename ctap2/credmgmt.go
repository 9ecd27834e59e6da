package ctap2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math"
)

// Credential-management subcommands (CTAP 2.1 §6.8), for the authenticator
// and its clients (ctap2/client).
const (
	CredMgmtGetCredsMetadata          = 0x01
	CredMgmtEnumerateRPsBegin         = 0x02
	CredMgmtEnumerateRPsGetNextRP     = 0x03
	CredMgmtEnumerateCredentialsBegin = 0x04
	CredMgmtEnumerateCredentialsNext  = 0x05 // enumerateCredentialsGetNextCredential
	CredMgmtDeleteCredential          = 0x06
	CredMgmtUpdateUserInformation     = 0x07
)

// CredentialManagementRequest is the authenticatorCredentialManagement
// (0x0A, preview 0x41) input. See CTAP 2.1 §6.8.
//
// SubCommandParams stays raw: pinUvAuthParam authenticates the parameter
// bytes exactly as the platform sent them, not a re-encoding.
type CredentialManagementRequest struct {
	SubCommand        *uint      `cbor:"1,keyasint,omitempty"`
	SubCommandParams  RawMessage `cbor:"2,keyasint,omitempty"`
	PinUvAuthProtocol *uint      `cbor:"3,keyasint,omitempty"`
	PinUvAuthParam    Bytes      `cbor:"4,keyasint,omitempty"`

	params credMgmtParams // decoded SubCommandParams
}

// credMgmtParams is the subCommandParams map (CTAP 2.1 §6.8).
type credMgmtParams struct {
	RPIDHash     Bytes           `cbor:"1,keyasint,omitempty"`
	CredentialID *CredDescriptor `cbor:"2,keyasint,omitempty"`
	User         *UserEntity     `cbor:"3,keyasint,omitempty"`
}

// CredentialManagementResponse is the authenticatorCredentialManagement
// output; each subcommand fills in its own fields.
type CredentialManagementResponse struct {
	ExistingResidentCredentialsCount             *uint           `cbor:"1,keyasint,omitempty"`
	MaxPossibleRemainingResidentCredentialsCount *uint           `cbor:"2,keyasint,omitempty"`
	RP                                           *RPEntity       `cbor:"3,keyasint,omitempty"`
	RPIDHash                                     []byte          `cbor:"4,keyasint,omitempty"`
	TotalRPs                                     *uint           `cbor:"5,keyasint,omitempty"`
	User                                         *UserEntity     `cbor:"6,keyasint,omitempty"`
	CredentialID                                 *CredDescriptor `cbor:"7,keyasint,omitempty"`
	PublicKey                                    RawMessage      `cbor:"8,keyasint,omitempty"` // COSE_Key as stored
	TotalCredentials                             *uint           `cbor:"9,keyasint,omitempty"`
	CredProtect                                  uint            `cbor:"10,keyasint,omitempty"`
	// LargeBlobKey is the credential's largeBlobKey, for credentials made
	// with the largeBlobKey extension.
	LargeBlobKey []byte `cbor:"11,keyasint,omitempty"`
	// ThirdPartyPayment says whether the credential was made with the
	// thirdPartyPayment extension (CTAP 2.2; enumerateCredentials only).
	ThirdPartyPayment *bool `cbor:"12,keyasint,omitempty"`
}

// credMgmtEnumState is an enumeration in progress: where the matching
// GetNext subcommand goes on in the store's list, and how many remain.
// dispatch drops it before every command, so it survives only from one
// Begin/GetNext to the directly following one.
type credMgmtEnumState struct {
	cid       uint32
	next      uint   // the GetNext subcommand that may follow
	rpIDHash  []byte // enumerateCredentials: the RP
	cursor    []byte // the store's cursor after the last one returned
	remaining int
}

func (req *CredentialManagementRequest) validate() error {
	if req.SubCommandParams != nil {
		if err := decode(req.SubCommandParams, &req.params); err != nil {
			return err
		}
	}
	if req.SubCommand == nil {
		return ErrMissingParameter
	}
	p := &req.params
	switch *req.SubCommand {
	case CredMgmtGetCredsMetadata, CredMgmtEnumerateRPsBegin, CredMgmtEnumerateRPsGetNextRP, CredMgmtEnumerateCredentialsNext:
		return nil
	case CredMgmtEnumerateCredentialsBegin:
		if p.RPIDHash == nil {
			return ErrMissingParameter
		}
		if len(p.RPIDHash) != sha256.Size {
			return ErrInvalidParameter
		}
		return nil
	case CredMgmtDeleteCredential:
		if p.CredentialID == nil {
			return ErrMissingParameter
		}
		return p.CredentialID.validate()
	case CredMgmtUpdateUserInformation:
		if p.CredentialID == nil || p.User == nil {
			return ErrMissingParameter
		}
		if err := p.CredentialID.validate(); err != nil {
			return err
		}
		return p.User.validate()
	}
	return ErrInvalidSubcommand
}

// authenticated reports whether subcommand sub needs a pinUvAuthParam; the
// GetNext subcommands do not (§6.8.3, §6.8.5).
func credMgmtAuthenticated(sub uint) bool {
	return sub != CredMgmtEnumerateRPsGetNextRP && sub != CredMgmtEnumerateCredentialsNext
}

// credMgmtReadOnly reports whether sub only reads, so that a CTAP 2.2
// persistent (pcmr) token may authorise it.
func credMgmtReadOnly(sub uint) bool {
	switch sub {
	case CredMgmtGetCredsMetadata, CredMgmtEnumerateRPsBegin, CredMgmtEnumerateCredentialsBegin:
		return true
	}
	return false
}

// credentialManagement runs authenticatorCredentialManagement (0x0A, preview 0x41).
func (a *Authenticator) credentialManagement(ctx context.Context, r request, req *CredentialManagementRequest, enum *credMgmtEnumState) (any, error) {
	sub := *req.SubCommand
	var tokenRPID string
	if credMgmtAuthenticated(sub) {
		var err error
		if tokenRPID, err = a.credMgmtAuth(req); err != nil {
			return nil, err
		}
	}
	switch sub {
	case CredMgmtGetCredsMetadata:
		if tokenRPID != "" {
			return nil, ErrPINAuthInvalid
		}
		return a.credsMetadata()
	case CredMgmtEnumerateRPsBegin:
		if tokenRPID != "" {
			return nil, ErrPINAuthInvalid
		}
		return a.enumerateRPsBegin(r.cid)
	case CredMgmtEnumerateCredentialsBegin:
		if tokenRPID != "" && !bytes.Equal(rpIDHashOf(tokenRPID), req.params.RPIDHash) {
			return nil, ErrPINAuthInvalid
		}
		return a.enumerateCredentialsBegin(ctx, r.cid, req.params.RPIDHash)
	case CredMgmtEnumerateRPsGetNextRP, CredMgmtEnumerateCredentialsNext:
		if enum == nil || enum.next != sub || enum.cid != r.cid {
			return nil, ErrNotAllowed
		}
		if sub == CredMgmtEnumerateRPsGetNextRP {
			return a.nextRP(enum)
		}
		return a.nextCredential(ctx, enum)
	case CredMgmtDeleteCredential:
		return nil, a.deleteCredential(req.params.CredentialID.ID, tokenRPID)
	case CredMgmtUpdateUserInformation:
		return nil, a.updateUserInformation(req.params.CredentialID.ID, req.params.User, tokenRPID)
	}
	return nil, ErrInvalidSubcommand
}

// credMgmtAuth verifies pinUvAuthParam = authenticate(token, subCommand ‖
// subCommandParams as sent) and the cm permission (pcmr suffices for the
// read-only subcommands). It returns the token's permissions RP ID, "" if
// the token is not bound to one.
func (a *Authenticator) credMgmtAuth(req *CredentialManagementRequest) (string, error) {
	if req.PinUvAuthParam == nil {
		return "", ErrPUATRequired
	}
	sub := *req.SubCommand
	msg := append([]byte{byte(sub)}, req.SubCommandParams...)
	err := a.verifyPinUvAuth(req.PinUvAuthProtocol, req.PinUvAuthParam, msg, PermCredentialMgmt, "")
	if err == nil {
		// Only the volatile token carries cm; see verifyPinUvAuth.
		return a.vol.token.rpID, nil
	}
	if !errors.Is(err, ErrPINAuthInvalid) || !credMgmtReadOnly(sub) {
		return "", err
	}
	// The persistent read-only token is never bound to an RP ID.
	return "", a.verifyPinUvAuth(req.PinUvAuthProtocol, req.PinUvAuthParam, msg, PermPersistentCredMgmt, "")
}

func rpIDHashOf(rpID string) []byte {
	h := sha256.Sum256([]byte(rpID))
	return h[:]
}

// credsMetadata is getCredsMetadata (§6.8.2).
func (a *Authenticator) credsMetadata() (any, error) {
	n, err := a.cfg.Store.CountCredentials()
	if err != nil {
		return nil, err
	}
	remaining, known, err := a.remainingResident()
	if err != nil {
		return nil, err
	}
	if !known {
		remaining = math.MaxInt32
	}
	existing, left := uint(n), uint(remaining)
	return &CredentialManagementResponse{
		ExistingResidentCredentialsCount:             &existing,
		MaxPossibleRemainingResidentCredentialsCount: &left,
	}, nil
}

// enumerateRPsBegin is enumerateRPsBegin (§6.8.3): the first RP in the
// store's order and the total; the rest wait for GetNextRP, read one at a
// time.
func (a *Authenticator) enumerateRPsBegin(cid uint32) (any, error) {
	total, err := a.cfg.Store.CountRPs()
	if err != nil {
		return nil, err
	}
	if total == 0 {
		return nil, ErrNoCredentials
	}
	st := &credMgmtEnumState{cid: cid, next: CredMgmtEnumerateRPsGetNextRP, remaining: total}
	resp, err := a.nextRP(st)
	if err != nil {
		return nil, err
	}
	n := uint(total)
	resp.TotalRPs = &n
	return resp, nil
}

// maxNameLookups bounds how many of an RP's credentials enumerateRPs reads
// for its name when the newest recorded none.
const maxNameLookups = 8

// nextRP returns the next RP of st and keeps st for the following command
// while RPs remain. The RP's name is the one the newest of its credentials
// recorded (looking at most maxNameLookups deep).
func (a *Authenticator) nextRP(st *credMgmtEnumState) (*CredentialManagementResponse, error) {
	for {
		raw, cursor, err := a.cfg.Store.NextRP(st.cursor)
		if err != nil {
			return nil, err
		}
		if raw == nil {
			return nil, ErrNoCredentials // fewer than counted: unreadable records
		}
		st.cursor = cursor
		rec, err := parseCredentialRecord(raw)
		if err != nil {
			a.log.Error("skipping an RP whose newest credential record is unreadable", "err", err)
			continue
		}
		rp := RPEntity{ID: rec.RPID, Name: rec.RPName}
		hash := rec.rpIDHash()
		var c []byte
		for i := 0; rp.Name == "" && i < maxNameLookups; i++ {
			if rec, c, err = a.nextRecord(hash, c, true); err != nil {
				return nil, err
			}
			if rec == nil {
				break
			}
			rp.Name = rec.RPName
		}
		if st.remaining--; st.remaining > 0 {
			a.vol.enum = st
		}
		return &CredentialManagementResponse{RP: &rp, RPIDHash: hash}, nil
	}
}

// enumerateCredentialsBegin is enumerateCredentialsBegin (§6.8.4): the
// RP's newest credential and the total; the rest wait for
// GetNextCredential, read one at a time.
func (a *Authenticator) enumerateCredentialsBegin(ctx context.Context, cid uint32, rpIDHash []byte) (any, error) {
	total, _, err := a.cfg.Store.CountOfRP(rpIDHash)
	if err != nil {
		return nil, err
	}
	if total == 0 {
		return nil, ErrNoCredentials
	}
	st := &credMgmtEnumState{cid: cid, next: CredMgmtEnumerateCredentialsNext, rpIDHash: rpIDHash, remaining: total}
	resp, err := a.nextCredential(ctx, st)
	if err != nil {
		return nil, err
	}
	n := uint(total)
	resp.TotalCredentials = &n
	return resp, nil
}

// nextCredential returns the next credential of st and keeps st for the
// following command while credentials remain.
func (a *Authenticator) nextCredential(ctx context.Context, st *credMgmtEnumState) (*CredentialManagementResponse, error) {
	rec, cursor, err := a.nextRecord(st.rpIDHash, st.cursor, true)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, ErrNoCredentials // fewer than counted: unreadable records
	}
	st.cursor = cursor
	if st.remaining--; st.remaining > 0 {
		a.vol.enum = st
	}
	user := rec.User
	tpp := rec.ThirdPartyPayment
	resp := &CredentialManagementResponse{
		User:         &user,
		CredentialID: &CredDescriptor{Type: credTypePublicKey, ID: rec.ID},
		PublicKey:    RawMessage(rec.PublicKey),
		CredProtect:  uint(max(rec.CredProtect, credProtectUVOptional)), // a credential made without credProtect has level 1
		// What the record says: a record written before the flag was kept
		// answers false.
		ThirdPartyPayment: &tpp,
	}
	if rec.LargeBlobKey {
		key, err := a.credentialSecret(ctx, rec.ID, labelLargeBlobKey)
		if err != nil {
			return nil, err
		}
		resp.LargeBlobKey = key
	}
	return resp, nil
}

// residentRecord reads the resident credential id from the store; ok is
// false when there is none (or it is unreadable).
func (a *Authenticator) residentRecord(id []byte) (*credentialRecord, bool, error) {
	raw, ok, err := a.cfg.Store.Credential(id)
	if err != nil || !ok {
		return nil, false, err
	}
	rec, err := parseCredentialRecord(raw)
	if err != nil {
		a.log.Error("unreadable credential record", "err", err)
		return nil, false, nil
	}
	return rec, true, nil
}

// managedRecord reads resident credential id for deleteCredential and
// updateUserInformation: NO_CREDENTIALS when there is none, and
// PIN_AUTH_INVALID when the token is bound to another RP ID (tokenRPID ""
// is an unbound token).
func (a *Authenticator) managedRecord(id []byte, tokenRPID string) (*credentialRecord, error) {
	rec, ok, err := a.residentRecord(id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNoCredentials
	}
	if tokenRPID != "" && tokenRPID != rec.RPID {
		return nil, ErrPINAuthInvalid
	}
	return rec, nil
}

// deleteCredential is deleteCredential (§6.8.5). A token bound to an RP ID
// may delete only that RP's credentials.
func (a *Authenticator) deleteCredential(id []byte, tokenRPID string) error {
	rec, err := a.managedRecord(id, tokenRPID)
	if err != nil {
		return err
	}
	a.forgetRecords()
	if err := a.cfg.Store.DeleteCredential(id); err != nil {
		return err
	}
	a.log.Info("credential deleted", "rp", rec.RPID)
	a.observe(Event{Type: EventCredentialDeleted, CredentialID: id, RPID: rec.RPID, UserHandle: rec.User.ID, Op: "credentialManagement"})
	return nil
}

// updateUserInformation is updateUserInformation (§6.8.6): user.id must be
// the stored one; name and displayName are replaced, and an absent or empty
// one is removed. The record is rewritten in one atomic PutCredential.
func (a *Authenticator) updateUserInformation(id []byte, user *UserEntity, tokenRPID string) error {
	rec, err := a.managedRecord(id, tokenRPID)
	if err != nil {
		return err
	}
	if !bytes.Equal(user.ID, rec.User.ID) {
		return ErrInvalidParameter
	}
	rec.User.Name = user.Name
	rec.User.DisplayName = user.DisplayName
	raw, err := encode(rec)
	if err != nil {
		return err
	}
	a.forgetRecords()
	if err := a.cfg.Store.PutCredential(rec.ID, rec.rpIDHash(), raw); err != nil {
		return err
	}
	a.log.Info("credential user information updated", "rp", rec.RPID)
	a.observe(Event{Type: EventCredentialUpdated, CredentialID: id, RPID: rec.RPID, UserHandle: rec.User.ID, Op: "credentialManagement"})
	return nil
}
