package hid

// Assembler reassembles one CTAPHID message from HID reports. It is a pure
// state machine (no I/O, no clocks): the message timeout is the caller's
// job. The zero value is ready to use and idle.
//
// CTAPHID allows one message in flight per device, so an Assembler holds
// at most one partial message. Feed applies these rules (CTAP 2.1 §11.2.4
// "Message and packet structure", §11.2.5 "Concurrency and channels"):
//
//   - Idle, init packet: BCNT > [MaxMessageSize] → [ErrInvalidLen];
//     otherwise the message starts and, if it fits in the init packet,
//     completes at once.
//   - Idle, continuation packet: nothing to continue → [ErrInvalidSeq].
//   - Busy, report from another CID: an init packet → [ErrChannelBusy],
//     a continuation packet is ignored; the partial message is kept.
//   - Busy, init packet on the same CID: CTAPHID_INIT resynchronises (the
//     partial message is dropped and the INIT starts afresh); any other
//     command → [ErrInvalidSeq] and the partial message is dropped.
//   - Busy, continuation on the same CID with an unexpected SEQ →
//     [ErrInvalidSeq] and the partial message is dropped.
//
// An error always concerns the CID of the report just fed. Reports shorter
// than [ReportSize] read as zero-padded; Feed never panics.
type Assembler struct {
	busy bool
	cid  uint32
	cmd  byte
	bcnt int
	seq  byte // next expected SEQ
	buf  []byte
}

// Feed processes one report. It returns the completed message, nil and a
// nil error when more packets are needed or the report was ignored, or a
// CTAPHID error for the report's CID.
func (a *Assembler) Feed(report []byte) (*Message, error) {
	p := parsePacket(report)
	if a.busy && p.cid != a.cid {
		if p.init {
			return nil, ErrChannelBusy
		}
		return nil, nil
	}
	if !p.init {
		if !a.busy {
			return nil, ErrInvalidSeq
		}
		if p.seq != a.seq {
			a.Reset()
			return nil, ErrInvalidSeq
		}
		a.seq++
		n := min(len(p.data), a.bcnt-len(a.buf))
		a.buf = append(a.buf, p.data[:n]...)
		return a.complete(), nil
	}
	if a.busy && p.cmd != CmdInit {
		a.Reset()
		return nil, ErrInvalidSeq
	}
	a.Reset()
	if p.bcnt > MaxMessageSize {
		return nil, ErrInvalidLen
	}
	a.busy = true
	a.cid, a.cmd, a.bcnt = p.cid, p.cmd, p.bcnt
	a.buf = make([]byte, 0, p.bcnt)
	n := min(len(p.data), p.bcnt)
	a.buf = append(a.buf, p.data[:n]...)
	return a.complete(), nil
}

// complete returns the message and resets the assembler once every byte
// has arrived.
func (a *Assembler) complete() *Message {
	if len(a.buf) < a.bcnt {
		return nil
	}
	m := &Message{CID: a.cid, Cmd: a.cmd, Payload: a.buf}
	a.buf = nil
	a.Reset()
	return m
}

// Busy reports whether a message is partly assembled.
func (a *Assembler) Busy() bool { return a.busy }

// CID returns the channel of the partly assembled message (0 when idle).
func (a *Assembler) CID() uint32 {
	if !a.busy {
		return 0
	}
	return a.cid
}

// Reset drops any partly assembled message.
func (a *Assembler) Reset() { *a = Assembler{} }
