package hid

import (
	"encoding/binary"
	"fmt"
)

// Sizes of the CTAPHID USB HID binding (CTAP 2.1 §11.2.4 "Message and
// packet structure").
const (
	ReportSize     = 64                                     // bytes per HID report, no report ID
	InitDataSize   = ReportSize - 7                         // 57 payload bytes in an init packet
	ContDataSize   = ReportSize - 5                         // 59 payload bytes in a continuation packet
	MaxSeq         = 0x7F                                   // highest continuation sequence number
	MaxMessageSize = InitDataSize + (MaxSeq+1)*ContDataSize // 7609 bytes
)

// BroadcastCID is the broadcast channel (CTAPHID_BROADCAST_CID). Only
// CTAPHID_INIT may be sent on it.
const BroadcastCID uint32 = 0xFFFFFFFF

// CTAPHID command bytes as they appear on the wire (bit 7 set).
// See CTAP 2.1 §11.2.9 "CTAPHID commands".
const (
	CmdPing      byte = 0x81 // CTAPHID_PING
	CmdMsg       byte = 0x83 // CTAPHID_MSG (CTAP1/U2F APDU)
	CmdLock      byte = 0x84 // CTAPHID_LOCK
	CmdInit      byte = 0x86 // CTAPHID_INIT
	CmdWink      byte = 0x88 // CTAPHID_WINK
	CmdCBOR      byte = 0x90 // CTAPHID_CBOR
	CmdCancel    byte = 0x91 // CTAPHID_CANCEL
	CmdKeepalive byte = 0xBB // CTAPHID_KEEPALIVE
	CmdError     byte = 0xBF // CTAPHID_ERROR
)

// Capability flags in the CTAPHID_INIT response.
const (
	CapWink byte = 0x01 // CAPABILITY_WINK
	CapLock byte = 0x02 // CAPABILITY_LOCK (not in CTAP 2.1; kept from U2FHID)
	CapCBOR byte = 0x04 // CAPABILITY_CBOR
	CapNMSG byte = 0x08 // CAPABILITY_NMSG: CTAPHID_MSG is not implemented
)

// ProtocolVersion is the CTAPHID protocol version in the INIT response.
const ProtocolVersion byte = 2

// initNonceSize and initRespSize are the CTAPHID_INIT request and response
// payload lengths.
const (
	initNonceSize = 8
	initRespSize  = 17
)

// ErrorCode is a CTAPHID_ERROR code (CTAP 2.1 §11.2.9.1.6). It implements
// error and is comparable, so errors.Is(err, hid.ErrChannelBusy) works
// through wrapping.
type ErrorCode byte

// CTAPHID error codes.
const (
	ErrInvalidCmd     ErrorCode = 0x01 // ERR_INVALID_CMD
	ErrInvalidPar     ErrorCode = 0x02 // ERR_INVALID_PAR
	ErrInvalidLen     ErrorCode = 0x03 // ERR_INVALID_LEN
	ErrInvalidSeq     ErrorCode = 0x04 // ERR_INVALID_SEQ
	ErrMsgTimeout     ErrorCode = 0x05 // ERR_MSG_TIMEOUT
	ErrChannelBusy    ErrorCode = 0x06 // ERR_CHANNEL_BUSY
	ErrLockRequired   ErrorCode = 0x0A // ERR_LOCK_REQUIRED
	ErrInvalidChannel ErrorCode = 0x0B // ERR_INVALID_CHANNEL
	ErrOther          ErrorCode = 0x7F // ERR_OTHER
)

var errorNames = map[ErrorCode]string{
	ErrInvalidCmd:     "INVALID_CMD",
	ErrInvalidPar:     "INVALID_PAR",
	ErrInvalidLen:     "INVALID_LEN",
	ErrInvalidSeq:     "INVALID_SEQ",
	ErrMsgTimeout:     "MSG_TIMEOUT",
	ErrChannelBusy:    "CHANNEL_BUSY",
	ErrLockRequired:   "LOCK_REQUIRED",
	ErrInvalidChannel: "INVALID_CHANNEL",
	ErrOther:          "OTHER",
}

// Error returns the spec name and the code, for example
// "ctaphid error CHANNEL_BUSY (0x06)".
func (e ErrorCode) Error() string {
	if n, ok := errorNames[e]; ok {
		return fmt.Sprintf("ctaphid error %s (0x%02X)", n, byte(e))
	}
	return fmt.Sprintf("ctaphid error 0x%02X", byte(e))
}

// Message is one complete CTAPHID message: a command on a channel.
type Message struct {
	CID     uint32 // channel identifier
	Cmd     byte   // wire command byte, bit 7 set (for example [CmdCBOR])
	Payload []byte // reassembled data, exactly BCNT bytes
}

// Fragment splits a message into zero-padded [ReportSize]-byte reports: one
// init packet (CID | CMD | BCNTH | BCNTL | data) followed by continuation
// packets (CID | SEQ | data) numbered from 0. Bit 7 of cmd is set if the
// caller left it clear. An empty payload yields one init packet with
// BCNT 0. A payload longer than [MaxMessageSize] cannot be framed; Fragment
// returns nil for it.
func Fragment(cid uint32, cmd byte, payload []byte) [][]byte {
	if len(payload) > MaxMessageSize {
		return nil
	}
	n := 1
	if len(payload) > InitDataSize {
		n += (len(payload) - InitDataSize + ContDataSize - 1) / ContDataSize
	}
	buf := make([]byte, n*ReportSize) // one allocation; reports alias it
	out := make([][]byte, 0, n)

	r := buf[:ReportSize:ReportSize]
	binary.BigEndian.PutUint32(r[0:4], cid)
	r[4] = cmd | 0x80
	binary.BigEndian.PutUint16(r[5:7], uint16(len(payload)))
	rest := payload[copy(r[7:], payload):]
	out = append(out, r)

	for seq := 0; len(rest) > 0; seq++ {
		off := (seq + 1) * ReportSize
		r := buf[off : off+ReportSize : off+ReportSize]
		binary.BigEndian.PutUint32(r[0:4], cid)
		r[4] = byte(seq)
		rest = rest[copy(r[5:], rest):]
		out = append(out, r)
	}
	return out
}

// packet is a parsed report. A report shorter than ReportSize is read as
// if zero-padded, and bytes beyond ReportSize are ignored, so parsing never
// fails.
type packet struct {
	cid  uint32
	init bool   // init packet (bit 7 of byte 4 set)
	cmd  byte   // init: command byte (bit 7 set)
	seq  byte   // continuation: sequence number
	bcnt int    // init: total payload length
	data []byte // init: 57 bytes; continuation: 59 bytes
}

func parsePacket(report []byte) packet {
	var r [ReportSize]byte
	copy(r[:], report)
	p := packet{cid: binary.BigEndian.Uint32(r[0:4])}
	if r[4]&0x80 != 0 {
		p.init = true
		p.cmd = r[4]
		p.bcnt = int(binary.BigEndian.Uint16(r[5:7]))
		p.data = r[7:]
	} else {
		p.seq = r[4]
		p.data = r[5:]
	}
	return p
}
