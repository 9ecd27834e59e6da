// Package ctap1 speaks CTAP1/U2F (FIDO U2F Raw Message Formats v1.2):
// command APDUs as carried by CTAPHID_MSG, and the U2F_REGISTER,
// U2F_AUTHENTICATE and U2F_VERSION commands run against a [Token].
//
// The package knows nothing of CTAP2 or transports: ctap2 implements
// [Token] over its key store, counters, presence provider and attestation
// key, and hands every CTAPHID_MSG payload to [Handle].
//
// # Status words
//
// Every answer ends in a two-byte ISO 7816-4 status word: 9000 success,
// 6985 test of user presence required (also the "valid key handle" answer
// of check-only), 6A80 bad key handle or data, 6700 wrong length, 6D00
// unknown instruction, 6E00 class not supported, 6F00 internal error.
// Nothing a client sends makes Handle panic.
package ctap1

import (
	"encoding/binary"
	"fmt"
)

// StatusWord is an ISO 7816-4 status word (SW1 SW2). It implements error.
type StatusWord uint16

// Status words used by U2F (U2F Raw Message Formats §3.3).
const (
	SWNoError                StatusWord = 0x9000 // SW_NO_ERROR
	SWConditionsNotSatisfied StatusWord = 0x6985 // SW_CONDITIONS_NOT_SATISFIED: test of user presence required
	SWWrongData              StatusWord = 0x6A80 // SW_WRONG_DATA: invalid key handle
	SWWrongLength            StatusWord = 0x6700 // SW_WRONG_LENGTH
	SWClaNotSupported        StatusWord = 0x6E00 // SW_CLA_NOT_SUPPORTED
	SWInsNotSupported        StatusWord = 0x6D00 // SW_INS_NOT_SUPPORTED
	SWUnknown                StatusWord = 0x6F00 // no precise diagnosis (an internal error)
)

func (s StatusWord) Error() string {
	switch s {
	case SWNoError:
		return "u2f: no error (9000)"
	case SWConditionsNotSatisfied:
		return "u2f: conditions not satisfied (6985)"
	case SWWrongData:
		return "u2f: wrong data (6A80)"
	case SWWrongLength:
		return "u2f: wrong length (6700)"
	case SWClaNotSupported:
		return "u2f: class not supported (6E00)"
	case SWInsNotSupported:
		return "u2f: instruction not supported (6D00)"
	}
	return fmt.Sprintf("u2f: status %04X", uint16(s))
}

// Bytes is the status word as it ends a response APDU.
func (s StatusWord) Bytes() []byte { return []byte{byte(s >> 8), byte(s)} }

// Instructions (U2F Raw Message Formats §4–6).
const (
	InsRegister     byte = 0x01 // U2F_REGISTER
	InsAuthenticate byte = 0x02 // U2F_AUTHENTICATE
	InsVersion      byte = 0x03 // U2F_VERSION
)

// Control bytes of U2F_AUTHENTICATE (P1, §5.1).
const (
	ControlEnforceUserPresence     byte = 0x03 // enforce-user-presence-and-sign
	ControlCheckOnly               byte = 0x07 // check-only
	ControlDontEnforceUserPresence byte = 0x08 // dont-enforce-user-presence-and-sign
)

// Command is a command APDU.
type Command struct {
	CLA, INS, P1, P2 byte
	// Data is the command data (Nc = len(Data)); nil when there is none.
	Data []byte
	// Ne is the expected response length: 0 when absent, 256 or 65536
	// for an Le of zero. The HID transport carries whole responses, so
	// it is parsed and otherwise ignored.
	Ne int
}

// ParseCommand decodes a command APDU in the short or extended encoding
// of ISO 7816-4 §5.1:
//
//	case 1   CLA INS P1 P2
//	case 2S  … Le(1)                 case 2E  … 00 Le(2)
//	case 3S  … Lc(1) data            case 3E  … 00 Lc(2) data
//	case 4S  … Lc(1) data Le(1)      case 4E  … 00 Lc(2) data Le(2)
//
// It also accepts what deployed U2F clients send that ISO does not allow:
// an extended Lc of zero followed by Le (python-fido2 sends
// 00 00 00 00 00 for U2F_VERSION) and a short "Lc" of zero followed by
// one Le byte. Any other length mismatch is [SWWrongLength].
func ParseCommand(apdu []byte) (*Command, error) {
	if len(apdu) < 4 {
		return nil, SWWrongLength
	}
	c := &Command{CLA: apdu[0], INS: apdu[1], P1: apdu[2], P2: apdu[3]}
	body := apdu[4:]
	switch {
	case len(body) == 0: // case 1
	case len(body) == 1: // case 2S
		c.Ne = shortNe(body[0])
	case body[0] != 0: // case 3S or 4S
		n := int(body[0])
		switch len(body) {
		case 1 + n:
		case 1 + n + 1:
			c.Ne = shortNe(body[1+n])
		default:
			return nil, SWWrongLength
		}
		c.Data = body[1 : 1+n]
	case len(body) == 2: // 00 Le: a short Lc of zero, then Le
		c.Ne = shortNe(body[1])
	case len(body) == 3: // case 2E
		c.Ne = extendedNe(body[1:])
	default: // case 3E or 4E
		n := int(binary.BigEndian.Uint16(body[1:3]))
		rest := body[3:]
		switch {
		case n == 0 && len(rest) == 2: // Lc of zero, then Le
			c.Ne = extendedNe(rest)
		case n > 0 && len(rest) == n:
			c.Data = rest
		case n > 0 && len(rest) == n+2:
			c.Data = rest[:n]
			c.Ne = extendedNe(rest[n:])
		default:
			return nil, SWWrongLength
		}
	}
	return c, nil
}

func shortNe(b byte) int {
	if b == 0 {
		return 256
	}
	return int(b)
}

func extendedNe(b []byte) int {
	if n := int(binary.BigEndian.Uint16(b)); n != 0 {
		return n
	}
	return 65536
}

// Encode encodes the command in the extended encoding U2F over HID uses
// (U2F Raw Message Formats §3.2): header ‖ 00 ‖ Lc(2) ‖ data, then Le(2)
// when Ne is set; header ‖ 00 ‖ Le(2) without data.
func (c *Command) Encode() ([]byte, error) {
	if len(c.Data) > 0xFFFF || c.Ne < 0 || c.Ne > 65536 {
		return nil, fmt.Errorf("ctap1: cannot encode %d bytes of data with Ne %d", len(c.Data), c.Ne)
	}
	b := []byte{c.CLA, c.INS, c.P1, c.P2}
	if len(c.Data) > 0 {
		b = append(b, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Data)))
		b = append(b, c.Data...)
	}
	if c.Ne > 0 {
		if len(c.Data) == 0 {
			b = append(b, 0)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(c.Ne%65536)) // 65536 is 0000
	}
	return b, nil
}

// SplitResponse separates a response APDU into its data and status word.
func SplitResponse(resp []byte) ([]byte, StatusWord, error) {
	if len(resp) < 2 {
		return nil, 0, fmt.Errorf("ctap1: response of %d bytes has no status word", len(resp))
	}
	n := len(resp) - 2
	return resp[:n], StatusWord(binary.BigEndian.Uint16(resp[n:])), nil
}
