package ctap2

import (
	"encoding/binary"
	"errors"
)

// Authenticator data flags (WebAuthn §6.1 "Authenticator Data").
const (
	FlagUP byte = 0x01 // user present
	FlagUV byte = 0x04 // user verified
	FlagBE byte = 0x08 // backup eligible
	FlagBS byte = 0x10 // backed up
	FlagAT byte = 0x40 // attested credential data included
	FlagED byte = 0x80 // extension data included
)

// AuthData is authenticator data (WebAuthn §6.1):
//
//	rpIdHash(32) ‖ flags(1) ‖ signCount(4, big-endian)
//	‖ [aaguid(16) ‖ credIdLen(2) ‖ credId ‖ credentialPublicKey (COSE)]  if AT
//	‖ [extensions (CBOR map)]                                            if ED
type AuthData struct {
	RPIDHash  [32]byte
	Flags     byte
	SignCount uint32
	// Attested credential data, present when Flags&FlagAT.
	AAGUID       [16]byte
	CredentialID []byte
	PublicKey    []byte // COSE_Key, CTAP2-canonical CBOR
	// Extensions is the encoded extension outputs map, present when Flags&FlagED.
	Extensions []byte
}

// Marshal encodes the authenticator data. The AT and ED flags are derived
// from the presence of a credential and of extensions.
func (a *AuthData) Marshal() []byte {
	n := 37
	flags := a.Flags &^ (FlagAT | FlagED)
	if a.CredentialID != nil {
		flags |= FlagAT
		n += 18 + len(a.CredentialID) + len(a.PublicKey)
	}
	if len(a.Extensions) > 0 {
		flags |= FlagED
		n += len(a.Extensions)
	}
	b := make([]byte, 0, n)
	b = append(b, a.RPIDHash[:]...)
	b = append(b, flags)
	b = binary.BigEndian.AppendUint32(b, a.SignCount)
	if flags&FlagAT != 0 {
		b = append(b, a.AAGUID[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.CredentialID)))
		b = append(b, a.CredentialID...)
		b = append(b, a.PublicKey...)
	}
	if flags&FlagED != 0 {
		b = append(b, a.Extensions...)
	}
	return b
}

var errAuthData = errors.New("ctap2: malformed authenticator data")

// ParseAuthData decodes authenticator data. It checks the structure (lengths,
// one CBOR item for the public key and one map for the extensions, nothing
// trailing) but not the COSE key's contents.
func ParseAuthData(b []byte) (*AuthData, error) {
	if len(b) < 37 {
		return nil, errAuthData
	}
	a := &AuthData{Flags: b[32], SignCount: binary.BigEndian.Uint32(b[33:37])}
	copy(a.RPIDHash[:], b[:32])
	rest := b[37:]
	if a.Flags&FlagAT != 0 {
		if len(rest) < 18 {
			return nil, errAuthData
		}
		copy(a.AAGUID[:], rest[:16])
		l := int(binary.BigEndian.Uint16(rest[16:18]))
		rest = rest[18:]
		if len(rest) < l {
			return nil, errAuthData
		}
		a.CredentialID = append([]byte{}, rest[:l]...)
		var ok bool
		if a.PublicKey, rest, ok = cutMap(rest[l:]); !ok {
			return nil, errAuthData
		}
	}
	if a.Flags&FlagED != 0 {
		var ok bool
		if a.Extensions, rest, ok = cutMap(rest); !ok {
			return nil, errAuthData
		}
	}
	if len(rest) != 0 {
		return nil, errAuthData
	}
	return a, nil
}

// cutMap splits b into its first CBOR item, which must be a map (returned
// as a copy), and the bytes after it.
func cutMap(b []byte) (m, rest []byte, ok bool) {
	var raw RawMessage
	rest, err := decodeFirst(b, &raw)
	if err != nil || !isCBORMap(raw) {
		return nil, nil, false
	}
	return append([]byte{}, raw...), rest, true
}
