package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"time"

	"github.com/virtkey/virtkey/ctap2"
	"github.com/virtkey/virtkey/internal/attca"
)

// attestationConfig is what --attestation, --attestation-key,
// --attestation-cert and --enterprise-rp put into ctap2.Config.
type attestationConfig struct {
	mode            ctap2.Attestation
	batch           *ctap2.AttestationIdentity
	enterprise      *ctap2.AttestationIdentity
	enterpriseRPIDs []string
}

// attestationModes maps --attestation to ctap2's formats.
var attestationModes = map[string]ctap2.Attestation{
	"batch": ctap2.AttestationBatch,
	"self":  ctap2.AttestationSelf,
	"none":  ctap2.AttestationNone,
}

// loadAttestation opens (creating on first start) the attestation CA in
// the state directory, which always issues the enterprise certificate and,
// unless --attestation-key and --attestation-cert give another, the batch
// certificate. aaguid is the effective AAGUID (zero: ctap2's default). c
// has been validated. sealer (the key store's device sealer) seals the CA's
// private keys.
func loadAttestation(c *Config, aaguid [16]byte, sealer attca.Sealer, log *slog.Logger) (*attestationConfig, error) {
	mode, ok := attestationModes[c.Attestation]
	if !ok {
		return nil, fmt.Errorf("--attestation %q: want batch, self or none", c.Attestation)
	}
	ac := &attestationConfig{mode: mode, enterpriseRPIDs: c.EnterpriseRPs}
	if aaguid == ([16]byte{}) {
		aaguid = ctap2.DefaultAAGUID
	}
	ca, err := attca.Open(c.StateDir, aaguid, time.Now(), sealer)
	if err != nil {
		return nil, fmt.Errorf("attestation CA: %w", err)
	}
	for _, what := range ca.Changed {
		log.Info("attestation: " + what)
	}
	ac.batch = &ctap2.AttestationIdentity{Signer: ca.Batch.Signer, Chain: ca.Batch.Chain}
	ac.enterprise = &ctap2.AttestationIdentity{Signer: ca.Enterprise.Signer, Chain: ca.Enterprise.Chain}
	if c.AttestationKey != "" {
		id, err := attca.LoadFiles(c.AttestationKey, c.AttestationCert)
		if err != nil {
			return nil, fmt.Errorf("--attestation-key/--attestation-cert: %w", err)
		}
		if err := signableKey(id.Signer); err != nil {
			return nil, fmt.Errorf("--attestation-key: %w", err)
		}
		// A vendor may know better; say what a relying party will object to.
		if err := attca.Check(id.Leaf, aaguid, id.Signer); err != nil {
			log.Warn("the attestation certificate does not meet the FIDO packed attestation requirements", "cert", c.AttestationCert, "problems", err.Error())
		}
		ac.batch = &ctap2.AttestationIdentity{Signer: id.Signer, Chain: id.Chain}
		if c.Attestation != "batch" {
			log.Warn("--attestation-key is used only with --attestation batch", "attestation", c.Attestation)
		}
	}
	if ac.mode == ctap2.AttestationBatch {
		log.Info("attestation", "mode", c.Attestation, "root", ca.RootFile)
	} else {
		log.Info("attestation", "mode", c.Attestation)
	}
	return ac, nil
}

// signableKey accepts the attestation keys ctap2 signs packed statements
// with: ECDSA P-256 (ES256, also U2F) or P-384 (ES384), Ed25519, RSA.
func signableKey(k crypto.Signer) error {
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() || pub.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("ECDSA key on %s: want P-256 or P-384", pub.Curve.Params().Name)
	case ed25519.PublicKey, *rsa.PublicKey:
		return nil
	}
	return fmt.Errorf("unsupported key %T", k.Public())
}
