package hid

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ReportDevice reads and writes 64-byte HID reports without a report ID.
// It is the one seam between CTAPHID and a transport (uhid, UDP, [Pipe]).
//
// ReadReport blocks until a report arrives, the device fails or ctx ends;
// it returns ctx's error in the last case. WriteReport sends one report; it
// must be safe to call concurrently with ReadReport.
type ReportDevice interface {
	ReadReport(ctx context.Context) ([]byte, error)
	WriteReport(report []byte) error
}

// Default timings; see [Options].
const (
	DefaultMsgTimeout        = 500 * time.Millisecond
	DefaultKeepaliveInterval = 100 * time.Millisecond
)

// maxLockSeconds is the longest CTAPHID_LOCK a channel may take.
const maxLockSeconds = 10

// Options configure a [Server]. The zero value (or nil) gives the defaults.
type Options struct {
	// Logger receives debug records (CIDs, commands, lengths; never
	// payloads) and the occasional warning. Nil discards.
	Logger *slog.Logger

	// Version is the device version (major, minor, build) reported by
	// CTAPHID_INIT.
	Version [3]byte

	// MsgTimeout is how long a partly received message may wait for its
	// next packet before the channel gets ERR_MSG_TIMEOUT. Zero means
	// [DefaultMsgTimeout].
	MsgTimeout time.Duration

	// KeepaliveInterval is the period of the CTAPHID_KEEPALIVE packets sent
	// while a CBOR or MSG request runs. Zero means
	// [DefaultKeepaliveInterval].
	KeepaliveInterval time.Duration

	// TransactionTimeout, if positive, bounds how long a handler may run:
	// its context gets this deadline. Zero means no bound beyond the
	// handler's own (ctap2 times out waiting for the user by itself).
	TransactionTimeout time.Duration
}

// Server is the device side of CTAPHID: it reads reports from a
// [ReportDevice], reassembles messages, enforces the channel rules, answers
// PING, INIT, WINK, LOCK and errors itself, and hands CBOR (and MSG) to a
// [Handler] in a goroutine of its own while it keeps reading and sends
// KEEPALIVE packets. See the package documentation for the rules.
//
// Run serves the device; PowerCycle may be called from any goroutine,
// including from inside the device's ReadReport.
type Server struct {
	dev       ReportDevice
	h         Handler
	msgH      MsgHandler // nil: MSG unsupported, NMSG advertised
	log       *slog.Logger
	version   [3]byte
	caps      byte
	msgTO     time.Duration
	keepEvery time.Duration
	txTO      time.Duration

	running atomic.Bool
	wg      sync.WaitGroup // handler, keepalive and wink goroutines

	// mu guards everything below and serialises every write to dev, so
	// the reports of one message never interleave with another's.
	mu      sync.Mutex
	base    context.Context // parent of handler contexts (Run's ctx)
	asm     Assembler
	asmGen  uint64      // bumped whenever the partial message changes
	timer   *time.Timer // MSG_TIMEOUT for the partial message
	tx      *txn        // the transaction being answered, if any
	live    map[*txn]struct{}
	lockCID uint32 // channel holding CTAPHID_LOCK (0: none)
	lockEnd time.Time
	nextCID uint32
}

// txn is one CBOR or MSG request being handled.
type txn struct {
	cid     uint32
	cmd     byte
	ctx     context.Context
	cancel  context.CancelFunc
	status  atomic.Uint32 // keepalive status byte
	stop    chan struct{} // closed when answered or aborted: ends keepalives
	once    sync.Once
	handled chan struct{} // closed when the handler has returned
}

// end cancels the request's context and stops its keepalives.
func (t *txn) end() {
	t.once.Do(func() {
		t.cancel()
		close(t.stop)
	})
}

// NewServer returns a Server that serves h on dev. h must not be nil; if it
// also implements [MsgHandler], [PowerCycler] or [Winker] those are used.
// opts may be nil.
func NewServer(dev ReportDevice, h Handler, opts *Options) *Server {
	if opts == nil {
		opts = &Options{}
	}
	s := &Server{
		dev:       dev,
		h:         h,
		log:       opts.Logger,
		version:   opts.Version,
		msgTO:     opts.MsgTimeout,
		keepEvery: opts.KeepaliveInterval,
		txTO:      opts.TransactionTimeout,
		base:      context.Background(),
		live:      make(map[*txn]struct{}),
		// A random start makes a CID handed out before a restart unlikely
		// to be handed out again soon after it.
		nextCID: rand.Uint32(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.msgTO <= 0 {
		s.msgTO = DefaultMsgTimeout
	}
	if s.keepEvery <= 0 {
		s.keepEvery = DefaultKeepaliveInterval
	}
	s.caps = CapWink | CapLock | CapCBOR
	if mh, ok := h.(MsgHandler); ok {
		s.msgH = mh
	} else {
		s.caps |= CapNMSG
	}
	return s
}

// Capabilities returns the capability flags the server reports in
// CTAPHID_INIT.
func (s *Server) Capabilities() byte { return s.caps }

// Run reads and answers reports until ctx ends (it then returns nil) or the
// device fails (it returns the wrapped error). Before returning it cancels
// the request in flight and waits for every goroutine it started, handlers
// included, so handlers must honour their context. Run must not be called
// concurrently with itself.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("hid: Server.Run is already running")
	}
	defer s.running.Store(false)
	s.mu.Lock()
	s.base = ctx
	s.mu.Unlock()
	defer s.shutdown()

	for ctx.Err() == nil {
		r, err := s.dev.ReadReport(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("hid: reading report: %w", err)
		}
		s.mu.Lock()
		s.handleReport(r)
		s.mu.Unlock()
	}
	return nil
}

// shutdown drops all state and waits for the goroutines Run started.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.abortAll()
	s.asm.Reset()
	s.stopTimer()
	s.base = context.Background()
	s.mu.Unlock()
	s.wg.Wait()
}

// PowerCycle simulates pulling the device and plugging it back in: it
// cancels every request in flight and waits for their handlers to return,
// drops the partial message, the lock and all channel state, and then
// calls the handler's PowerCycle if it implements [PowerCycler]. No report
// is processed in between. Allocated CIDs stay unique across power
// cycles.
func (s *Server) PowerCycle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Info("ctaphid power cycle")
	for _, done := range s.abortAll() {
		<-done
	}
	s.asm.Reset()
	s.stopTimer()
	s.lockCID, s.lockEnd = 0, time.Time{}
	if pc, ok := s.h.(PowerCycler); ok {
		pc.PowerCycle()
	}
}

// abortAll ends every live transaction and returns channels that close
// when their handlers have returned. s.mu must be held.
func (s *Server) abortAll() []<-chan struct{} {
	var waits []<-chan struct{}
	for t := range s.live {
		t.end()
		waits = append(waits, t.handled)
	}
	s.tx = nil
	return waits
}

// handleReport applies the channel rules to one report. s.mu must be held.
func (s *Server) handleReport(report []byte) {
	p := parsePacket(report)
	switch {
	case p.cid == 0:
		s.sendError(0, ErrInvalidChannel)
		return
	case p.init && s.lockedOut(p.cid):
		if p.cmd != CmdCancel { // CANCEL never gets an answer
			s.sendError(p.cid, ErrLockRequired)
		}
		return
	case p.init && p.cmd == CmdInit:
		s.handleInit(p)
		return
	case p.cid == BroadcastCID:
		if p.init {
			s.sendError(p.cid, ErrInvalidChannel)
		}
		return // a continuation on broadcast belongs to nothing
	}

	if t := s.tx; t != nil {
		switch {
		case !p.init:
			// Continuation packets belong to no message now: ignore.
		case p.cmd == CmdCancel:
			if p.cid == t.cid {
				s.log.Debug("ctaphid cancel", "cid", hexCID(p.cid))
				t.cancel()
			}
		default:
			s.sendError(p.cid, ErrChannelBusy)
		}
		return
	}

	mine := s.asm.Busy() && s.asm.CID() == p.cid
	if !p.init && !mine {
		return // spurious continuation packet
	}
	if p.init && p.cmd == CmdCancel && !mine {
		return // nothing of this channel's to cancel, and no answer
	}
	msg, err := s.asm.Feed(report)
	if err != nil {
		if !s.asm.Busy() {
			s.stopTimer()
		}
		var code ErrorCode
		if !errors.As(err, &code) {
			code = ErrOther
		}
		s.sendError(p.cid, code)
		return
	}
	if msg == nil {
		s.armTimer()
		return
	}
	s.stopTimer()
	s.dispatch(msg)
}

// lockedOut reports whether another channel holds the lock, expiring an
// old lock on the way. s.mu must be held.
func (s *Server) lockedOut(cid uint32) bool {
	if s.lockCID == 0 {
		return false
	}
	if !time.Now().Before(s.lockEnd) {
		s.lockCID, s.lockEnd = 0, time.Time{}
		return false
	}
	return cid != s.lockCID
}

// handleInit answers CTAPHID_INIT: on the broadcast CID it allocates a
// channel; on any other CID it resynchronises that channel. Either way it
// is answered whatever other channels are doing. s.mu must be held.
func (s *Server) handleInit(p packet) {
	if p.bcnt != initNonceSize {
		s.sendError(p.cid, ErrInvalidLen)
		return
	}
	cid := p.cid
	if cid == BroadcastCID {
		cid = s.allocCID()
	} else {
		s.resync(cid)
	}
	resp := make([]byte, initRespSize)
	copy(resp[0:8], p.data[:initNonceSize])
	binary.BigEndian.PutUint32(resp[8:12], cid)
	resp[12] = ProtocolVersion
	copy(resp[13:16], s.version[:])
	resp[16] = s.caps
	s.log.Debug("ctaphid init", "cid", hexCID(p.cid), "channel", hexCID(cid))
	s.send(p.cid, CmdInit, resp)
}

// allocCID returns a fresh channel identifier, never 0 or broadcast.
func (s *Server) allocCID() uint32 {
	for {
		s.nextCID++
		if s.nextCID != 0 && s.nextCID != BroadcastCID {
			return s.nextCID
		}
	}
}

// resync aborts whatever cid was doing: its running request (whose answer
// is then dropped) or its partial message. s.mu must be held.
func (s *Server) resync(cid uint32) {
	if s.tx != nil && s.tx.cid == cid {
		s.log.Debug("ctaphid resync aborts request", "cid", hexCID(cid))
		s.tx.end()
		s.tx = nil
	}
	if s.asm.Busy() && s.asm.CID() == cid {
		s.asm.Reset()
		s.stopTimer()
	}
}

// dispatch acts on a complete message while no request runs. s.mu must be
// held.
func (s *Server) dispatch(m *Message) {
	s.log.Debug("ctaphid request", "cid", hexCID(m.CID), "cmd", hexCmd(m.Cmd), "len", len(m.Payload))
	switch m.Cmd {
	case CmdPing:
		s.send(m.CID, CmdPing, m.Payload)
	case CmdCBOR:
		if len(m.Payload) == 0 {
			s.sendError(m.CID, ErrInvalidLen)
			return
		}
		s.start(m)
	case CmdMsg:
		if s.msgH == nil {
			s.sendError(m.CID, ErrInvalidCmd)
			return
		}
		if len(m.Payload) == 0 {
			s.sendError(m.CID, ErrInvalidLen)
			return
		}
		s.start(m)
	case CmdWink:
		if w, ok := s.h.(Winker); ok {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				w.Wink()
			}()
		}
		s.send(m.CID, CmdWink, nil)
	case CmdLock:
		s.handleLock(m)
	case CmdCancel:
		// Nothing in flight: CANCEL is ignored and never answered.
	default:
		s.sendError(m.CID, ErrInvalidCmd)
	}
}

// handleLock answers CTAPHID_LOCK: one byte of seconds (0 releases the
// lock, at most 10). s.mu must be held.
func (s *Server) handleLock(m *Message) {
	if len(m.Payload) != 1 {
		s.sendError(m.CID, ErrInvalidLen)
		return
	}
	secs := m.Payload[0]
	if secs > maxLockSeconds {
		s.sendError(m.CID, ErrInvalidPar)
		return
	}
	if secs == 0 {
		if s.lockCID == m.CID {
			s.lockCID, s.lockEnd = 0, time.Time{}
		}
	} else {
		s.lockCID = m.CID
		s.lockEnd = time.Now().Add(time.Duration(secs) * time.Second)
	}
	s.send(m.CID, CmdLock, nil)
}

// start runs a CBOR or MSG request in a goroutine, with a second goroutine
// sending keepalives while it runs. s.mu must be held.
func (s *Server) start(m *Message) {
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if s.txTO > 0 {
		ctx, cancel = context.WithTimeout(s.base, s.txTO)
	} else {
		ctx, cancel = context.WithCancel(s.base)
	}
	t := &txn{
		cid:     m.CID,
		cmd:     m.Cmd,
		ctx:     ctx,
		cancel:  cancel,
		stop:    make(chan struct{}),
		handled: make(chan struct{}),
	}
	t.status.Store(uint32(StatusProcessing))
	s.tx = t
	s.live[t] = struct{}{}
	s.wg.Add(2)
	go s.keepalives(t)
	go s.handle(t, m.Payload)
}

// handle runs the handler and sends its answer unless the request was
// aborted meanwhile.
func (s *Server) handle(t *txn, payload []byte) {
	defer s.wg.Done()
	keepalive := func(status byte) { t.status.Store(uint32(status)) }
	var resp []byte
	if t.cmd == CmdMsg {
		resp = s.msgH.HandleMSG(t.ctx, t.cid, payload, keepalive)
	} else {
		resp = s.h.HandleCBOR(t.ctx, t.cid, payload, keepalive)
	}
	// Close handled before taking s.mu: PowerCycle waits for it with s.mu
	// held.
	close(t.handled)

	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, t)
	t.end()
	if s.tx != t {
		s.log.Debug("ctaphid answer dropped after abort", "cid", hexCID(t.cid), "cmd", hexCmd(t.cmd))
		return
	}
	s.tx = nil
	if len(resp) == 0 || len(resp) > MaxMessageSize {
		s.log.Warn("ctaphid handler returned an unsendable answer", "cid", hexCID(t.cid), "cmd", hexCmd(t.cmd), "len", len(resp))
		s.sendError(t.cid, ErrOther)
		return
	}
	s.log.Debug("ctaphid response", "cid", hexCID(t.cid), "cmd", hexCmd(t.cmd), "len", len(resp))
	s.send(t.cid, t.cmd, resp)
}

// keepalives sends KEEPALIVE with the current status every interval until
// the request is answered or aborted.
func (s *Server) keepalives(t *txn) {
	defer s.wg.Done()
	tick := time.NewTicker(s.keepEvery)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			s.mu.Lock()
			if s.tx == t {
				s.send(t.cid, CmdKeepalive, []byte{byte(t.status.Load())})
			}
			s.mu.Unlock()
		}
	}
}

// armTimer (re)starts the MSG_TIMEOUT clock for the partial message.
// s.mu must be held.
func (s *Server) armTimer() {
	s.stopTimer()
	gen := s.asmGen
	s.timer = time.AfterFunc(s.msgTO, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.asmGen != gen || !s.asm.Busy() {
			return // stale: the message moved on meanwhile
		}
		cid := s.asm.CID()
		s.asm.Reset()
		s.timer = nil
		s.sendError(cid, ErrMsgTimeout)
	})
}

// stopTimer cancels the MSG_TIMEOUT clock. s.mu must be held.
func (s *Server) stopTimer() {
	s.asmGen++
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// send writes one message. s.mu must be held.
func (s *Server) send(cid uint32, cmd byte, payload []byte) {
	for _, r := range Fragment(cid, cmd, payload) {
		if err := s.dev.WriteReport(r); err != nil {
			s.log.Warn("ctaphid write failed", "cid", hexCID(cid), "cmd", hexCmd(cmd), "err", err)
			return
		}
	}
}

// sendError answers cid with CTAPHID_ERROR. s.mu must be held.
func (s *Server) sendError(cid uint32, code ErrorCode) {
	s.log.Debug("ctaphid error", "cid", hexCID(cid), "code", code)
	s.send(cid, CmdError, []byte{byte(code)})
}

// hexCID and hexCmd format lazily in log records.
type (
	hexCID uint32
	hexCmd byte
)

func (c hexCID) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%08X", uint32(c))) }
func (c hexCmd) LogValue() slog.Value { return slog.StringValue(cmdName(byte(c))) }
