package ctap2

import (
	"cmp"
	"context"
	"slices"
	"strings"
)

// Limits advertised by getInfo.
const (
	// MaxMsgSize is the largest CTAP message accepted (the CTAPHID maximum).
	MaxMsgSize = 7609
	// maxCredentialCountInList bounds allowList and excludeList.
	maxCredentialCountInList = 32
)

// GetInfoResponse is the authenticatorGetInfo (0x04) output. See CTAP 2.1 §6.4.
type GetInfoResponse struct {
	Versions                         []string         `cbor:"1,keyasint"`
	Extensions                       []string         `cbor:"2,keyasint,omitempty"`
	AAGUID                           []byte           `cbor:"3,keyasint"`
	Options                          map[string]bool  `cbor:"4,keyasint,omitempty"`
	MaxMsgSize                       uint             `cbor:"5,keyasint,omitempty"`
	PinUvAuthProtocols               []uint           `cbor:"6,keyasint,omitempty"`
	MaxCredentialCountInList         uint             `cbor:"7,keyasint,omitempty"`
	MaxCredentialIDLength            uint             `cbor:"8,keyasint,omitempty"`
	Transports                       []string         `cbor:"9,keyasint,omitempty"`
	Algorithms                       []AlgorithmParam `cbor:"10,keyasint,omitempty"`
	MaxSerializedLargeBlobArray      uint             `cbor:"11,keyasint,omitempty"`
	ForcePINChange                   *bool            `cbor:"12,keyasint,omitempty"`
	MinPINLength                     uint             `cbor:"13,keyasint,omitempty"`
	FirmwareVersion                  *uint32          `cbor:"14,keyasint,omitempty"`
	MaxCredBlobLength                uint             `cbor:"15,keyasint,omitempty"`
	MaxRPIDsForSetMinPINLength       uint             `cbor:"16,keyasint,omitempty"`
	PreferredPlatformUvAttempts      uint             `cbor:"17,keyasint,omitempty"`
	UVModality                       uint             `cbor:"18,keyasint,omitempty"`
	RemainingDiscoverableCredentials *uint            `cbor:"20,keyasint,omitempty"`
	AttestationFormats               []string         `cbor:"22,keyasint,omitempty"`
}

// AlgorithmParam is an entry of getInfo's algorithms list.
type AlgorithmParam struct {
	Alg  int64  `cbor:"alg"`
	Type string `cbor:"type"`
}

// getInfo reports what this authenticator supports; it advertises only
// what works.
func (a *Authenticator) getInfo(ctx context.Context, r request) (any, error) {
	if len(r.params) != 0 {
		return nil, ErrInvalidLength
	}
	return a.info()
}

// Info returns the authenticatorGetInfo response.
func (a *Authenticator) Info() (*GetInfoResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.info()
}

func (a *Authenticator) info() (*GetInfoResponse, error) {
	remaining, known, err := a.remainingResident()
	if err != nil {
		return nil, err
	}
	fw := a.cfg.FirmwareVersion
	info := &GetInfoResponse{
		Versions: append(a.u2fVersions(), "FIDO_2_0", "FIDO_2_1"),
		AAGUID:   a.cfg.AAGUID[:],
		Options: map[string]bool{
			"rk":   true,
			"plat": false,
			// "up" is omitted: its default is true (avoids the CTAP 2.0/2.1
			// disagreement about makeCredential up:true).
			"clientPin":             a.state.pinSet(),
			"pinUvAuthToken":        true,
			"makeCredUvNotRqd":      !a.state.AlwaysUV, // alwaysUv requires UV for every credential
			"credMgmt":              true,
			"credentialMgmtPreview": true,
			"authnrCfg":             true,
			"setMinPINLength":       true,
			"largeBlobs":            true,
			"alwaysUv":              a.state.AlwaysUV,
			// pcmr tokens are issued (CTAP 2.2): clients look for this
			// option before they ask for one.
			"perCredMgmtRO": true,
		},
		PinUvAuthProtocols:          []uint{2, 1},
		MinPINLength:                a.state.MinPINLength,
		MaxRPIDsForSetMinPINLength:  maxRPIDsForMinPIN,
		MaxMsgSize:                  MaxMsgSize,
		MaxSerializedLargeBlobArray: MaxSerializedLargeBlobArray,
		MaxCredentialCountInList:    maxCredentialCountInList,
		MaxCredentialIDLength:       uint(a.cfg.KeyStore.MaxCredentialIDLength()),
		Transports:                  []string{"usb"},
		FirmwareVersion:             &fw,
		AttestationFormats:          []string{"packed", "none"},
	}
	if known { // else absent: "unknown" (CTAP 2.1 §6.4)
		n := uint(remaining)
		info.RemainingDiscoverableCredentials = &n
	}
	if _, ok := a.cfg.KeyStore.(SecretDeriver); ok {
		info.Extensions = supportedExtensions
	} else {
		for _, e := range supportedExtensions {
			switch e {
			case extHMACSecret, extHMACSecretMC, extLargeBlobKey:
				continue // need per-credential secrets
			}
			info.Extensions = append(info.Extensions, e)
		}
	}
	info.MaxCredBlobLength = maxCredBlobLength
	if a.state.ForcePINChange {
		t := true
		info.ForcePINChange = &t
	}
	if a.enterpriseCapable() {
		info.Options["ep"] = a.state.EnterpriseAtt
	}
	if a.cfg.UV != UVNone {
		info.Options["uv"] = true
		info.Options["uvAcfg"] = true
		info.PreferredPlatformUvAttempts = 3
		info.UVModality = 0x02 // USER_VERIFY_FINGERPRINT_INTERNAL, as browsers expect of built-in UV
	}
	for _, alg := range a.cfg.KeyStore.Algorithms() {
		info.Algorithms = append(info.Algorithms, AlgorithmParam{Alg: int64(alg), Type: credTypePublicKey})
	}
	// Compatibility choice: lists whose order means nothing go out in the
	// order canonical CBOR gives map keys, which some conformance tools
	// check on every container. pinUvAuthProtocols and algorithms are
	// preference orders and attestationFormats names the default format
	// first: they keep their order.
	info.Versions = canonicalStrings(info.Versions)
	info.Extensions = canonicalStrings(info.Extensions)
	info.Transports = canonicalStrings(info.Transports)
	return info, nil
}

// canonicalStrings returns a sorted copy of s in CTAP2 canonical CBOR key
// order: shorter strings first, then bytewise (CTAP 2.1 §8 "CTAP2 canonical
// CBOR encoding form").
func canonicalStrings(s []string) []string {
	if s == nil {
		return nil
	}
	out := slices.Clone(s)
	slices.SortFunc(out, func(x, y string) int {
		if c := cmp.Compare(len(x), len(y)); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	return out
}
