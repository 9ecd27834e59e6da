package ctap2

import (
	"bytes"
	"context"

	"github.com/virtkey/virtkey/cose"
)

// attest fills in the attestation statement (CTAP 2.1 §6.1.2 step 17).
func (a *Authenticator) attest(ctx context.Context, resp *MakeCredentialResponse, req *MakeCredentialRequest, id []byte, alg cose.Algorithm, rpIDHash []byte) error {
	switch a.attestationFormat(req.AttestationFormatsPreference) {
	case AttestationNone:
		resp.Fmt, resp.AttStmt = "none", map[string]any{}
		return nil
	}
	signer, _, err := a.cfg.KeyStore.Signer(ctx, id, rpIDHash)
	if err != nil {
		return err
	}
	msg := append(bytes.Clone(resp.AuthData), req.ClientDataHash...)
	sig, err := sign(signer, alg, msg)
	if err != nil {
		return err
	}
	resp.Fmt, resp.AttStmt = "packed", map[string]any{"alg": int64(alg), "sig": sig}
	return nil
}

// attestationFormat honours the CTAP 2.2 attestationFormatsPreference: the
// first format we can produce wins; otherwise the configured default.
func (a *Authenticator) attestationFormat(pref []string) Attestation {
	for _, f := range pref {
		switch f {
		case "packed":
			return AttestationSelf
		case "none":
			return AttestationNone
		}
	}
	return a.cfg.Attestation
}
