package hid

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// PendingReader is implemented by devices that can return a report that
// has already arrived without waiting for one (hid/udp's Conn, hid/uhid's
// Device, [Pipe]).
// Before it sends a handler's answer, the [Server] reads with it what
// arrived while the handler ran on the reading goroutine, and acts on it
// as it would have on arrival: another channel's request gets
// ERR_CHANNEL_BUSY, and a power cycle or a resync of the channel drops the
// answer.
type PendingReader interface {
	// ReadPending returns the next report that has arrived, and its sender
	// (the zero address unless the device is a [SourceDevice]); ok is
	// false when none is waiting. It must not be called concurrently with
	// the device's ReadReport or ReadReportFrom.
	ReadPending() (report []byte, from netip.AddrPort, ok bool, err error)
}

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

// readerHold is how long a handler may keep the reading goroutine (see
// [Server]) before another one takes over reading: the longest a CANCEL,
// an INIT or another channel's request waits to be read. It is cut to the
// keepalive interval when that is shorter.
const readerHold = 10 * time.Millisecond

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

	// MaxChannels bounds the channel table; when it is full a new channel
	// evicts the one idle longest (never a busy one). Zero means
	// [DefaultMaxChannels].
	MaxChannels int
}

// Server is the device side of CTAPHID: it reads reports from a
// [ReportDevice], reassembles messages, enforces the channel rules, answers
// PING, INIT, WINK, LOCK and errors itself, and passes CBOR (and MSG) to a
// [Handler], sending KEEPALIVE packets while the handler runs. See the
// package documentation for the rules.
//
// # Who reads
//
// The goroutine that reads the last report of a request runs the handler
// itself: a request answered in well under a keepalive interval (an
// assertion, a registration) then costs no hand-off to another goroutine,
// whose wake-up on another CPU costs more than the CTAPHID work itself on
// an idle machine. When the handler is still running [readerHold] after
// the request arrived (waiting for the user, a slow TPM or disk), a new
// goroutine takes over reading, so that CANCEL, INIT and the other
// channels' requests (answered ERR_CHANNEL_BUSY) are read again; the
// goroutine that ran the handler sends the answer and ends.
//
// Run serves the device; PowerCycle may be called from any goroutine,
// including from inside the device's ReadReport.
type Server struct {
	dev       ReportDevice
	srcDev    SourceDevice  // dev, when its reports carry their sender
	pending   PendingReader // dev, when it can read without waiting
	h         Handler
	msgH      MsgHandler // nil: MSG unsupported, NMSG advertised
	log       *slog.Logger
	version   [3]byte
	caps      byte
	msgTO     time.Duration
	keepEvery time.Duration
	txTO      time.Duration

	running atomic.Bool
	wg      sync.WaitGroup // readers that took over, and wink goroutines

	// readDone gets the result of the last reader of a run when that
	// reader is not Run's own goroutine (made by Run).
	readDone chan error

	// mu guards everything below and serialises every write to dev, so
	// the reports of one message never interleave with another's.
	mu      sync.Mutex
	base    context.Context // parent of handler contexts (Run's ctx)
	asm     Assembler
	tx      *txn // the transaction being answered, if any
	live    map[*txn]struct{}
	asmSrc  netip.AddrPort // sender of the message asm is receiving
	lockCID uint32         // channel holding CTAPHID_LOCK (0: none)
	lockEnd time.Time
	chans   *channelTable
	busyFn  func(uint32) bool // s.busyChannel, made once

	// next is the request the reading goroutine is to run once it has
	// released s.mu (set by start).
	next *txn

	// The partial message gets ERR_MSG_TIMEOUT at msgDeadline (zero: no
	// deadline), and the request being answered its next KEEPALIVE at
	// tx.nextKeepalive. Each deadline has one timer that is armed only
	// when it is not pending already: a pending timer that fires before
	// the deadline arms itself again for the rest. A stream of requests
	// so arms a timer about once per interval rather than once or twice
	// per request, each arming of which may wake an idle thread.
	msgTimer, kaTimer     *time.Timer // nil until first needed
	msgPending, kaPending bool        // the timer is armed
	msgDeadline           time.Time

	// relTimer has another goroutine take over reading when the request
	// being answered still holds the reading one at tx.releaseAt; armed
	// like the two above.
	relTimer   *time.Timer
	relPending bool
}

// txn is one CBOR or MSG request being handled.
type txn struct {
	cid     uint32
	src     netip.AddrPort // where its keepalives and answer go
	cmd     byte
	payload []byte
	ctx     context.Context
	cancel  context.CancelFunc
	status  atomic.Uint32 // keepalive status byte
	handled chan struct{} // closed when the handler has returned

	// role says who reads the device while the handler runs on the
	// goroutine that read the request: it (roleReading), a goroutine
	// that took over (roleReleased), or no one: the handler has returned
	// (roleDone). It changes from roleReading only, once.
	role    atomic.Uint32
	readCtx context.Context // the run's context, for a reader taking over

	nextKeepalive time.Time // guarded by Server.mu
	releaseAt     time.Time // guarded by Server.mu
}

// Values of txn.role.
const (
	roleReading uint32 = iota
	roleReleased
	roleDone
)

// end cancels the request's context; its keepalives stop as it is no
// longer Server.tx. end may be called more than once.
func (t *txn) end() { t.cancel() }

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
		chans:     newChannelTable(opts.MaxChannels),
	}
	s.busyFn = s.busyChannel
	s.srcDev, _ = dev.(SourceDevice)
	s.pending, _ = dev.(PendingReader)
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
	s.readDone = make(chan error, 1)
	done := s.readDone
	s.mu.Unlock()
	defer s.shutdown()

	released, err := s.serve(ctx)
	if released {
		err = <-done // from the goroutine reading last
	}
	return err
}

// serve reads and answers reports until ctx ends (nil), the device fails
// (the wrapped error), or another goroutine took over reading while this
// one ran a handler (released).
func (s *Server) serve(ctx context.Context) (released bool, err error) {
	for ctx.Err() == nil {
		r, from, err := s.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return false, fmt.Errorf("hid: reading report: %w", err)
		}
		s.mu.Lock()
		s.handleReport(r, from)
		t := s.takeNext()
		s.mu.Unlock()
		for t != nil {
			if s.handle(t) {
				return true, nil
			}
			// A report read before the answer may have started another.
			s.mu.Lock()
			t = s.takeNext()
			s.mu.Unlock()
		}
	}
	return false, nil
}

// takeNext returns and clears s.next. s.mu must be held.
func (s *Server) takeNext() *txn {
	t := s.next
	s.next = nil
	return t
}

// takeOver reads in place of a goroutine busy with a handler (see
// [Server.release]) and, unless it is released in turn, reports the end
// of the run to Run.
func (s *Server) takeOver(ctx context.Context, done chan<- error) {
	defer s.wg.Done()
	released, err := s.serve(ctx)
	if released {
		return
	}
	// The run ends (the device failed, or ctx). The goroutine that read
	// before this one — Run's own, perhaps — may still be in a handler:
	// end it, as Run's shutdown would.
	s.mu.Lock()
	s.abortAll()
	s.mu.Unlock()
	done <- err // the only reader left: the buffer is free
}

// release starts a goroutine that reads in place of the one running t's
// handler, unless t's handler has returned or released its reader
// already. s.mu must be held.
func (s *Server) release(t *txn) {
	if s.readDone == nil || !t.role.CompareAndSwap(roleReading, roleReleased) {
		return
	}
	s.log.Debug("ctaphid handler still running: another goroutine reads", "cid", hexCID(t.cid))
	s.wg.Add(1)
	go s.takeOver(t.readCtx, s.readDone)
}

// read reads the next report and its sender (the zero address unless the
// device is a [SourceDevice]).
func (s *Server) read(ctx context.Context) ([]byte, netip.AddrPort, error) {
	if s.srcDev != nil {
		return s.srcDev.ReadReportFrom(ctx)
	}
	r, err := s.dev.ReadReport(ctx)
	return r, netip.AddrPort{}, err
}

// shutdown drops all state and waits for the goroutines Run started.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.abortAll()
	s.asm.Reset()
	s.clearMsgTimeout()
	s.chans.reset()
	s.base = context.Background()
	for _, t := range []*time.Timer{s.msgTimer, s.kaTimer, s.relTimer} {
		if t != nil {
			t.Stop()
		}
	}
	s.msgTimer, s.kaTimer, s.relTimer = nil, nil, nil
	s.msgPending, s.kaPending, s.relPending = false, false, false
	s.next = nil
	s.readDone = nil // no reader takes over any more
	s.mu.Unlock()
	s.wg.Wait()
}

// PowerCycle simulates pulling the device and plugging it back in: it
// cancels every request in flight and waits for their handlers to return,
// drops the partial message, the lock and all channels (a CID used again
// afterwards is claimed anew by whoever uses it first), and then calls the
// handler's PowerCycle if it implements [PowerCycler]. No report is
// processed in between.
func (s *Server) PowerCycle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Info("ctaphid power cycle")
	for _, done := range s.abortAll() {
		<-done
	}
	s.asm.Reset()
	s.clearMsgTimeout()
	s.lockCID, s.lockEnd = 0, time.Time{}
	s.chans.reset()
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

// handleReport applies the channel rules to one report from from. s.mu
// must be held.
func (s *Server) handleReport(report []byte, from netip.AddrPort) {
	p := parsePacket(report)
	switch {
	case p.cid == 0:
		s.sendError(from, 0, ErrInvalidChannel)
		return
	case p.cid != BroadcastCID && !s.chans.use(p.cid, from, s.busyFn):
		// Another host's channel: whatever this is (CANCEL and INIT
		// included), it must not touch that host's request or reach its
		// answers.
		s.log.Debug("ctaphid report on another host's channel", "cid", hexCID(p.cid), "from", from)
		s.sendError(from, p.cid, ErrInvalidChannel)
		return
	case p.init && s.lockedOut(p.cid):
		if p.cmd != CmdCancel { // CANCEL never gets an answer
			s.sendError(from, p.cid, ErrLockRequired)
		}
		return
	case p.init && p.cmd == CmdInit:
		s.handleInit(p, from)
		return
	case p.cid == BroadcastCID:
		if p.init {
			s.sendError(from, p.cid, ErrInvalidChannel)
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
			s.sendError(from, p.cid, ErrChannelBusy)
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
			s.clearMsgTimeout()
		}
		var code ErrorCode
		if !errors.As(err, &code) {
			code = ErrOther
		}
		s.sendError(from, p.cid, code)
		return
	}
	if msg == nil {
		s.asmSrc = from // only the channel's owner gets this far
		s.armMsgTimeout()
		return
	}
	s.clearMsgTimeout()
	s.dispatch(msg, from)
}

// busyChannel reports whether cid is receiving a message, answering a
// request or holding the lock: the channel table never evicts it. s.mu
// must be held.
func (s *Server) busyChannel(cid uint32) bool {
	return (s.tx != nil && s.tx.cid == cid) ||
		(s.asm.Busy() && s.asm.CID() == cid) ||
		(s.lockCID == cid && time.Now().Before(s.lockEnd))
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
// channel, owned by from; on any other CID (which from owns) it
// resynchronises that channel. Either way it is answered, at from, whatever
// other channels are doing. s.mu must be held.
func (s *Server) handleInit(p packet, from netip.AddrPort) {
	if p.bcnt != initNonceSize {
		s.sendError(from, p.cid, ErrInvalidLen)
		return
	}
	cid := p.cid
	if cid == BroadcastCID {
		cid = s.chans.alloc(from, s.busyFn)
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
	s.send(from, p.cid, CmdInit, resp)
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
		s.clearMsgTimeout()
	}
}

// dispatch acts on a complete message from from while no request runs.
// s.mu must be held.
func (s *Server) dispatch(m *Message, from netip.AddrPort) {
	s.log.Debug("ctaphid request", "cid", hexCID(m.CID), "cmd", hexCmd(m.Cmd), "len", len(m.Payload))
	switch m.Cmd {
	case CmdPing:
		s.send(from, m.CID, CmdPing, m.Payload)
	case CmdCBOR:
		if len(m.Payload) == 0 {
			s.sendError(from, m.CID, ErrInvalidLen)
			return
		}
		s.start(m, from)
	case CmdMsg:
		if s.msgH == nil {
			s.sendError(from, m.CID, ErrInvalidCmd)
			return
		}
		if len(m.Payload) == 0 {
			s.sendError(from, m.CID, ErrInvalidLen)
			return
		}
		s.start(m, from)
	case CmdWink:
		if w, ok := s.h.(Winker); ok {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				w.Wink()
			}()
		}
		s.send(from, m.CID, CmdWink, nil)
	case CmdLock:
		s.handleLock(m, from)
	case CmdCancel:
		// Nothing in flight: CANCEL is ignored and never answered.
	default:
		s.sendError(from, m.CID, ErrInvalidCmd)
	}
}

// handleLock answers CTAPHID_LOCK: one byte of seconds (0 releases the
// lock, at most 10). s.mu must be held.
func (s *Server) handleLock(m *Message, from netip.AddrPort) {
	if len(m.Payload) != 1 {
		s.sendError(from, m.CID, ErrInvalidLen)
		return
	}
	secs := m.Payload[0]
	if secs > maxLockSeconds {
		s.sendError(from, m.CID, ErrInvalidPar)
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
	s.send(from, m.CID, CmdLock, nil)
}

// start makes a CBOR or MSG request from from the one being answered, arms
// its keepalives and leaves it in s.next for the reading goroutine to run
// (see [Server.handle]). s.mu must be held.
func (s *Server) start(m *Message, from netip.AddrPort) {
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
		src:     from,
		cmd:     m.Cmd,
		payload: m.Payload,
		ctx:     ctx,
		cancel:  cancel,
		handled: make(chan struct{}),
		readCtx: s.base,
	}
	t.status.Store(uint32(StatusProcessing))
	now := time.Now()
	t.nextKeepalive = now.Add(s.keepEvery)
	if !s.kaPending {
		s.kaPending = true
		s.kaTimer = startTimer(s.kaTimer, s.keepEvery, s.keepaliveDue)
	}
	hold := min(readerHold, s.keepEvery)
	t.releaseAt = now.Add(hold)
	if !s.relPending {
		s.relPending = true
		s.relTimer = startTimer(s.relTimer, hold, s.releaseDue)
	}
	s.tx = t
	s.live[t] = struct{}{}
	s.next = t
}

// handle runs t's handler on the reading goroutine and sends its answer
// unless the request was aborted meanwhile. It reports whether another
// goroutine took over reading meanwhile ([Server.release]): the caller
// then reads no more.
func (s *Server) handle(t *txn) (released bool) {
	keepalive := func(status byte) { t.status.Store(uint32(status)) }
	var resp []byte
	if t.cmd == CmdMsg {
		resp = s.msgH.HandleMSG(t.ctx, t.cid, t.payload, keepalive)
	} else {
		resp = s.h.HandleCBOR(t.ctx, t.cid, t.payload, keepalive)
	}
	// Close handled before taking s.mu: PowerCycle waits for it with s.mu
	// held.
	close(t.handled)
	// No reader takes over from here on; unless one already has, what
	// arrived while the handler ran is acted on before the answer goes.
	released = !t.role.CompareAndSwap(roleReading, roleDone)
	if !released {
		s.readArrived(t)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, t)
	t.end()
	if s.tx != t {
		s.log.Debug("ctaphid answer dropped after abort", "cid", hexCID(t.cid), "cmd", hexCmd(t.cmd))
		return released
	}
	s.tx = nil
	if len(resp) == 0 || len(resp) > MaxMessageSize {
		s.log.Warn("ctaphid handler returned an unsendable answer", "cid", hexCID(t.cid), "cmd", hexCmd(t.cmd), "len", len(resp))
		s.sendError(t.src, t.cid, ErrOther)
		return released
	}
	s.log.Debug("ctaphid response", "cid", hexCID(t.cid), "cmd", hexCmd(t.cmd), "len", len(resp))
	s.send(t.src, t.cid, t.cmd, resp)
	return released
}

// readArrived handles the reports that arrived while t's handler ran on
// the reading goroutine, as they would have been on arrival (they find t
// running), until none is waiting or one ends t (a power cycle, a
// resync; a request read after the power cycle may then start, and waits
// in s.next). Without a [PendingReader] they are read after the answer.
func (s *Server) readArrived(t *txn) {
	if s.pending == nil {
		return
	}
	for {
		r, from, ok, err := s.pending.ReadPending()
		if !ok || err != nil {
			return // a failing device fails the next read too
		}
		s.mu.Lock()
		s.handleReport(r, from)
		ended := s.tx != t
		s.mu.Unlock()
		if ended {
			return
		}
	}
}

// keepaliveDue runs from s.kaTimer: when the request being answered is
// due its KEEPALIVE, it sends it with the current status and arms the
// timer for the next one, every interval after the request started (on
// that grid, dropping ticks missed while the server was held up, as a
// time.Ticker does).
func (s *Server) keepaliveDue() {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tx
	if t == nil || s.kaTimer == nil {
		s.kaPending = false // nothing to keep alive (or shut down)
		return
	}
	now := time.Now()
	if now.Before(t.nextKeepalive) {
		s.kaTimer.Reset(t.nextKeepalive.Sub(now)) // armed for an earlier request
		return
	}
	s.send(t.src, t.cid, CmdKeepalive, []byte{byte(t.status.Load())})
	next := t.nextKeepalive.Add(s.keepEvery)
	if late := now.Sub(next); late >= 0 {
		next = next.Add(late - late%s.keepEvery + s.keepEvery)
	}
	t.nextKeepalive = next
	s.kaTimer.Reset(next.Sub(now))
}

// releaseDue runs from s.relTimer: when the request being answered still
// holds the reading goroutine at its releaseAt, another one takes over
// reading.
func (s *Server) releaseDue() {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tx
	if t == nil || s.relTimer == nil || t.role.Load() != roleReading {
		s.relPending = false // nothing holds the reader (or shut down)
		return
	}
	if d := time.Until(t.releaseAt); d > 0 {
		s.relTimer.Reset(d) // armed for an earlier request
		return
	}
	s.relPending = false
	s.release(t)
}

// armMsgTimeout (re)starts the MSG_TIMEOUT clock for the partial message.
// s.mu must be held.
func (s *Server) armMsgTimeout() {
	s.msgDeadline = time.Now().Add(s.msgTO)
	if !s.msgPending {
		s.msgPending = true
		s.msgTimer = startTimer(s.msgTimer, s.msgTO, s.msgTimeout)
	}
}

// clearMsgTimeout cancels the MSG_TIMEOUT clock. s.mu must be held.
func (s *Server) clearMsgTimeout() {
	s.msgDeadline = time.Time{} // a pending s.msgTimer lapses
}

// msgTimeout runs from s.msgTimer: at the partial message's deadline it
// drops the message and answers ERR_MSG_TIMEOUT.
func (s *Server) msgTimeout() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.msgDeadline.IsZero() || !s.asm.Busy() || s.msgTimer == nil {
		s.msgPending = false // the message moved on meanwhile
		return
	}
	if d := time.Until(s.msgDeadline); d > 0 {
		s.msgTimer.Reset(d) // armed for an earlier packet
		return
	}
	cid := s.asm.CID()
	s.asm.Reset()
	s.msgDeadline, s.msgPending = time.Time{}, false
	s.sendError(s.asmSrc, cid, ErrMsgTimeout)
}

// startTimer arms t to call f after d, making it if t is nil.
func startTimer(t *time.Timer, d time.Duration, f func()) *time.Timer {
	if t == nil {
		return time.AfterFunc(d, f)
	}
	t.Reset(d)
	return t
}

// send writes one message to the host at to (ignored unless the device is
// a [SourceDevice]). s.mu must be held.
func (s *Server) send(to netip.AddrPort, cid uint32, cmd byte, payload []byte) {
	for _, r := range Fragment(cid, cmd, payload) {
		var err error
		if s.srcDev != nil {
			err = s.srcDev.WriteReportTo(r, to)
		} else {
			err = s.dev.WriteReport(r)
		}
		if err != nil {
			s.log.Warn("ctaphid write failed", "cid", hexCID(cid), "cmd", hexCmd(cmd), "err", err)
			return
		}
	}
}

// sendError answers cid with CTAPHID_ERROR at to. s.mu must be held.
func (s *Server) sendError(to netip.AddrPort, cid uint32, code ErrorCode) {
	s.log.Debug("ctaphid error", "cid", hexCID(cid), "code", code)
	s.send(to, cid, CmdError, []byte{byte(code)})
}

// hexCID and hexCmd format lazily in log records.
type (
	hexCID uint32
	hexCmd byte
)

func (c hexCID) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%08X", uint32(c))) }
func (c hexCmd) LogValue() slog.Value { return slog.StringValue(cmdName(byte(c))) }
