package ctap2

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"

	"github.com/virtkey/virtkey/cose"
)

// AttestationBatch is packed attestation signed by the batch key
// (Config.Batch), with its certificate chain in x5c ("basic" attestation).
const AttestationBatch Attestation = "packed-batch"

// attestationFIDOU2F is the fido-u2f format (WebAuthn §8.6), produced only
// when the platform prefers it (CTAP 2.2 attestationFormatsPreference).
const attestationFIDOU2F Attestation = "fido-u2f"

// AttestationIdentity is an attestation key with its certificate chain.
type AttestationIdentity struct {
	// Signer is the attestation key: ECDSA P-256 (required for fido-u2f
	// and U2F) or P-384, Ed25519 or RSA (packed only).
	Signer crypto.Signer
	// Chain holds DER certificates, the attestation certificate first,
	// as they go into x5c.
	Chain [][]byte
}

// enterpriseAttestation values of makeCredential's enterpriseAttestation
// parameter (CTAP 2.1 §6.1, §7.1 "Enterprise Attestation").
const (
	enterpriseVendorFacilitated = 1
	enterprisePlatformManaged   = 2
)

// attest fills in the attestation statement (CTAP 2.1 §6.1.2 step 17).
func (a *Authenticator) attest(ctx context.Context, resp *MakeCredentialResponse, req *MakeCredentialRequest, id []byte, alg cose.Algorithm, rpIDHash []byte) error {
	ep, err := a.enterpriseAttestation(req)
	if err != nil {
		return err
	}
	preferred, ok := a.preferredFormat(req.AttestationFormatsPreference, alg)
	format := a.cfg.Attestation
	if ok {
		format = preferred
	}
	switch {
	case ep && !(ok && preferred == AttestationNone):
		// Enterprise attestation was enabled and asked for: it overrides
		// the configured default, though not a platform that prefers
		// none (the identifying statement is never volunteered).
		if err := a.attestPacked(resp, req, a.cfg.Enterprise); err != nil {
			return err
		}
		t := true
		resp.EPAtt = &t
		return nil
	case format == AttestationNone:
		resp.Fmt, resp.AttStmt = "none", map[string]any{}
		return nil
	case format == AttestationBatch:
		return a.attestPacked(resp, req, a.cfg.Batch)
	case format == attestationFIDOU2F:
		return a.attestFIDOU2F(ctx, resp, req, id, rpIDHash)
	}
	// Self attestation: signed by the credential key itself.
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

// attestPacked makes a packed statement with x5c ("basic" attestation,
// WebAuthn §8.2): alg of the attestation key, sig over authData ‖
// clientDataHash, x5c the chain.
func (a *Authenticator) attestPacked(resp *MakeCredentialResponse, req *MakeCredentialRequest, id *AttestationIdentity) error {
	if id == nil || id.Signer == nil || len(id.Chain) == 0 {
		return errors.New("ctap2: attestation identity without a key or certificate (Config.Batch, Config.Enterprise)")
	}
	alg, err := identityAlgorithm(id.Signer)
	if err != nil {
		return err
	}
	msg := append(bytes.Clone(resp.AuthData), req.ClientDataHash...)
	sig, err := sign(id.Signer, alg, msg)
	if err != nil {
		return err
	}
	resp.Fmt, resp.AttStmt = "packed", map[string]any{"alg": int64(alg), "sig": sig, "x5c": id.Chain}
	return nil
}

// attestFIDOU2F makes a fido-u2f statement (WebAuthn §8.6): sig is the
// batch key's ECDSA signature over 0x00 ‖ rpIdHash ‖ clientDataHash ‖
// credentialId ‖ the credential's uncompressed P-256 point, x5c the batch
// certificate alone.
func (a *Authenticator) attestFIDOU2F(ctx context.Context, resp *MakeCredentialResponse, req *MakeCredentialRequest, id, rpIDHash []byte) error {
	signer, _, err := a.cfg.KeyStore.Signer(ctx, id, rpIDHash)
	if err != nil {
		return err
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return errors.New("ctap2: fido-u2f attestation of a non-ECDSA credential")
	}
	point, err := pub.Bytes()
	if err != nil {
		return err
	}
	msg := make([]byte, 0, 1+32+len(req.ClientDataHash)+len(id)+len(point))
	msg = append(msg, 0x00)
	msg = append(msg, rpIDHash...)
	msg = append(msg, req.ClientDataHash...)
	msg = append(msg, id...)
	msg = append(msg, point...)
	sig, err := sign(a.cfg.Batch.Signer, cose.AlgES256, msg)
	if err != nil {
		return err
	}
	resp.Fmt, resp.AttStmt = "fido-u2f", map[string]any{"sig": sig, "x5c": a.cfg.Batch.Chain[:1]}
	return nil
}

// preferredFormat honours a CTAP 2.2 attestationFormatsPreference: the
// first entry we can produce wins, and ok is false when there is none.
// "packed" is batch attestation when that is the configured default and
// self attestation otherwise (a key configured for self or none never
// reveals its batch certificate), "none" is none, and "fido-u2f" is
// honoured for ES256 credentials when batch attestation is the default and
// the batch key is P-256.
func (a *Authenticator) preferredFormat(pref []string, alg cose.Algorithm) (Attestation, bool) {
	batch := a.cfg.Attestation == AttestationBatch
	for _, f := range pref {
		switch f {
		case "packed":
			if batch {
				return AttestationBatch, true
			}
			return AttestationSelf, true
		case "none":
			return AttestationNone, true
		case "fido-u2f":
			if batch && alg == cose.AlgES256 && a.cfg.Batch != nil && isP256(a.cfg.Batch.Signer) && len(a.cfg.Batch.Chain) > 0 {
				return attestationFIDOU2F, true
			}
		}
	}
	return "", false
}

// enterpriseAttestation decides whether makeCredential returns an
// enterprise attestation (CTAP 2.1 §6.1.2 step 9, §7.1). The parameter
// absent: no. Present while the authenticator is not enterprise-attestation
// capable or enterprise attestation is not enabled (authenticatorConfig
// enableEnterpriseAttestation): CTAP1_ERR_INVALID_PARAMETER. A value other
// than 1 or 2: CTAP2_ERR_INVALID_OPTION. 1 (vendor-facilitated): yes for
// the RP IDs in Config.EnterpriseRPIDs, otherwise ordinary attestation. 2
// (platform-managed): yes; the platform vouches for the RP. Yubico's
// documentation of the same parameter
// (docs.yubico.com/yesdk, MakeCredentialParameters.EnterpriseAttestation)
// agrees: an authenticator without "ep" answers any value with an error,
// and OpenSK implements the same checks in the same order.
func (a *Authenticator) enterpriseAttestation(req *MakeCredentialRequest) (bool, error) {
	if req.EnterpriseAttestation == nil {
		return false, nil
	}
	if a.cfg.Enterprise == nil || !a.state.EnterpriseAtt {
		return false, ErrInvalidParameter
	}
	switch *req.EnterpriseAttestation {
	case enterpriseVendorFacilitated:
		return slices.Contains(a.cfg.EnterpriseRPIDs, req.RP.ID), nil
	case enterprisePlatformManaged:
		return true, nil
	}
	return false, ErrInvalidOption
}

// enterpriseCapable reports whether the authenticator can make enterprise
// attestations (getInfo lists "ep" only then).
func (a *Authenticator) enterpriseCapable() bool { return a.cfg.Enterprise != nil }

// identityAlgorithm is the COSE algorithm an attestation key signs with.
func identityAlgorithm(s crypto.Signer) (cose.Algorithm, error) {
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return cose.AlgES256, nil
		case elliptic.P384():
			return cose.AlgES384, nil
		}
	case ed25519.PublicKey:
		return cose.AlgEdDSA, nil
	case *rsa.PublicKey:
		return cose.AlgRS256, nil
	}
	return 0, fmt.Errorf("ctap2: unsupported attestation key %T", s.Public())
}

func isP256(s crypto.Signer) bool {
	if s == nil {
		return false
	}
	pub, ok := s.Public().(*ecdsa.PublicKey)
	return ok && pub.Curve == elliptic.P256()
}
