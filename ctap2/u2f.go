package ctap2

import (
	"context"
	"crypto"
	"fmt"
	"slices"

	"github.com/virtkey/virtkey/cose"
	"github.com/virtkey/virtkey/ctap1"
)

// CTAP1/U2F (CTAP 2.1 §10 "Interoperating with CTAP1/U2F authenticators").
//
// [Authenticator.HandleMSG] runs U2F command APDUs through package ctap1
// against the same key store, counters and presence provider as CTAP2:
//
//   - U2F_REGISTER makes an ordinary non-resident ES256 credential whose
//     rpIdHash is the application parameter; its key handle is the
//     credential ID. So a U2F registration works for a CTAP2 getAssertion
//     whose rpId hashes to the application parameter, and a CTAP2 ES256
//     credential works for U2F_AUTHENTICATE, except one with credProtect
//     userVerificationRequired (U2F cannot verify the user).
//   - The registration is signed by the batch key with the batch
//     certificate when batch attestation is the configured default (so a
//     platform builds a verifiable fido-u2f attestation from it);
//     otherwise by the credential key over a self-signed certificate of
//     its own, revealing nothing.
//   - User presence: virtkey asks while the request waits, reporting
//     KEEPALIVE UPNEEDED like CTAP2, rather than answering 6985 at once and
//     latching a touch for the client's retry. Every CTAPHID client
//     accepts keepalives during MSG, the user sees one prompt per
//     operation, and automatic presence needs no retry. A declined,
//     timed-out or cancelled prompt answers 6985 CONDITIONS_NOT_SATISFIED,
//     which U2F clients treat as "touch not yet given" and retry.
//   - U2F is off, every instruction answered 6D00 and "U2F_V2" left out of
//     getInfo, while alwaysUv is on (CTAP 2.1 §7.2: U2F cannot verify the
//     user) or when the key store cannot make ES256 credentials whose IDs
//     fit a U2F key handle (255 bytes; the TPM key store's 380-byte IDs
//     do not).

// HandleMSG handles one CTAPHID_MSG message (a U2F command APDU) from
// channel cid and returns the response APDU. It implements the hid
// package's MsgHandler, so the CTAPHID server routes MSG here and does not
// advertise NMSG. keepalive works as for [Authenticator.HandleCBOR].
func (a *Authenticator) HandleMSG(ctx context.Context, cid uint32, apdu []byte, keepalive func(status byte)) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx = withKeepalive(ctx, keepalive)
	// Another command ran: getNextAssertion and enumerations end.
	a.vol.takeFollowUps()
	var resp []byte
	if a.u2fEnabled() {
		resp = ctap1.Handle(ctx, u2fToken{a}, apdu)
	} else {
		resp = ctap1.SWInsNotSupported.Bytes()
	}
	ins := "none"
	if len(apdu) > 1 {
		ins = fmt.Sprintf("0x%02X", apdu[1])
	}
	a.log.Info("u2f", "ins", ins, "status", fmt.Sprintf("%X", resp[len(resp)-2:]))
	return resp
}

// u2fEnabled reports whether U2F commands run (see the package comment above).
func (a *Authenticator) u2fEnabled() bool {
	return !a.state.AlwaysUV &&
		slices.Contains(a.cfg.KeyStore.Algorithms(), cose.AlgES256) &&
		a.cfg.KeyStore.MaxCredentialIDLength() <= ctap1.MaxKeyHandleLength
}

// u2fVersions is what U2F adds to getInfo's versions.
func (a *Authenticator) u2fVersions() []string {
	if a.u2fEnabled() {
		return []string{ctap1.Version}
	}
	return nil
}

// u2fToken is the ctap1.Token of an Authenticator whose mutex is held.
type u2fToken struct{ a *Authenticator }

func (t u2fToken) NewCredential(ctx context.Context, app []byte) ([]byte, crypto.Signer, error) {
	id, _, err := t.a.cfg.KeyStore.NewCredential(ctx, cose.AlgES256, app, credMeta{}.marshal())
	if err != nil {
		return nil, nil, err
	}
	if len(id) > ctap1.MaxKeyHandleLength {
		return nil, nil, fmt.Errorf("ctap2: credential ID of %d bytes does not fit a U2F key handle", len(id))
	}
	signer, _, err := t.a.cfg.KeyStore.Signer(ctx, id, app)
	if err != nil {
		return nil, nil, err
	}
	t.a.log.Info("u2f credential created")
	return id, signer, nil
}

func (t u2fToken) Credential(ctx context.Context, kh, app []byte) (crypto.Signer, error) {
	if len(app) != 32 {
		return nil, ctap1.ErrUnknownKeyHandle
	}
	f, ok, err := t.a.lookupCredential(ctx, kh, app)
	if err != nil {
		return nil, err
	}
	if !ok || f.meta.CredProtect == credProtectUVRequired || algOf(f.signer) != cose.AlgES256 {
		return nil, ctap1.ErrUnknownKeyHandle
	}
	return f.signer, nil
}

func (t u2fToken) NextCounter(kh []byte) (uint32, error) { return t.a.cfg.Store.NextCounter(kh) }

func (t u2fToken) Confirm(ctx context.Context, op string, _ []byte) error {
	return t.a.confirm(ctx, PresenceRequest{Op: op})
}

func (t u2fToken) Attestation(_ context.Context, key crypto.Signer) (crypto.Signer, []byte, error) {
	// U2F signs with ECDSA P-256 only: another batch key (possible with
	// --attestation-key) leaves U2F with self-signed certificates.
	if b := t.a.cfg.Batch; t.a.cfg.Attestation == AttestationBatch && b != nil && isP256(b.Signer) && len(b.Chain) > 0 {
		return b.Signer, b.Chain[0], nil
	}
	cert, err := ctap1.SelfAttestationCertificate(key, t.a.cfg.Now())
	if err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}
