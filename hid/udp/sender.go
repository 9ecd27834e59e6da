package udp

import (
	"log/slog"
	"net/netip"
	"time"
)

// How the sender check caches what it learnt (see senderFilter).
const (
	// recheckIdle: a sender idle this long is looked up afresh.
	recheckIdle = 5 * time.Second
	// refusedHold: a refused sender that no single socket vouched for
	// (none, or an ambiguous port) is looked up again at most this often,
	// so a flood of its datagrams costs no table walk each.
	refusedHold = 100 * time.Millisecond
	// maxSenders bounds the cache; past it, senders idle for recheckIdle
	// are forgotten, and if that is not enough, all are.
	maxSenders = 1024
	// dropLogEvery: at most one log line per interval about dropped
	// datagrams, counting the ones it did not log.
	dropLogEvery = time.Second
)

// socketTable is what senderFilter needs from the kernel (sockTable; a
// fake in tests).
type socketTable interface {
	// bound lists the sockets that could have sent from addr.
	bound(addr netip.AddrPort) ([]sockRow, error)
	// receiver returns the socket that a datagram from local to peer
	// would reach: the one bound to peer.
	receiver(local, peer netip.AddrPort) (sockRow, error)
}

// senderFilter decides, datagram by datagram, whether its sender's user
// may use the device: the user that owns the sending socket, found in the
// kernel's socket table, must be allowed.
//
// # Caching, and why it is safe
//
// Reading the table costs a walk of the kernel's UDP hash table (tens of
// µs); asking which socket holds one address and port costs a few µs.
// Ports are reused: once a client closes its socket, anyone can bind the
// same address and port and send from it, and another user can watch the
// table (/proc/net/udp is world-readable) to do so within a millisecond.
// A verdict cached per address and port for any length of time would be
// inherited by that user. So the verdict is bound to the socket itself:
//
//   - a sender's first datagram, every CTAPHID_INIT (the start of a
//     session) and the first datagram after recheckIdle of silence get the
//     full lookup: every socket holding the port, so a port shared by two
//     users (SO_REUSEADDR) is seen and refused;
//   - every other datagram that starts something — a message's init
//     packet, CANCEL, the magic reboot — asks the kernel which socket now
//     holds the sender's address and port, and keeps the cached verdict
//     only if it is the same socket (same inode, same owner); anything
//     else gets the full lookup;
//   - continuation packets carry on the message whose init packet was just
//     checked, and are taken on that verdict.
//
// A port taken over between two messages is so caught at the next init
// packet. What is left is a socket that shares its port with SO_REUSEADDR
// after the full lookup saw it alone (the kernel may then report either
// socket); a client that sets SO_REUSEADDR on a fixed port invites that.
type senderFilter struct {
	table socketTable
	local netip.AddrPort // the device's own address, for receiver lookups
	allow map[uint32]bool
	log   *slog.Logger
	now   func() time.Time

	senders map[netip.AddrPort]*sender
	logged  time.Time // when the last drop line was logged
	unlog   int       // datagrams dropped since then
}

// sender is what the filter knows about one source address and port.
type sender struct {
	ok      bool
	uid     int64  // -1: no single user
	inode   uint32 // the socket the verdict is about (0: none)
	why     string // for the log, when !ok
	checked time.Time
	seen    time.Time
}

func newSenderFilter(table socketTable, local netip.AddrPort, allow map[uint32]bool, log *slog.Logger) *senderFilter {
	return &senderFilter{table: table, local: local, allow: allow, log: log, now: time.Now, senders: make(map[netip.AddrPort]*sender)}
}

// allowed reports whether the datagram r from from may be served; a
// refused datagram is logged (rate-limited). r is one 64-byte report or
// the magic reboot.
func (f *senderFilter) allowed(r []byte, from netip.AddrPort, reboot bool) bool {
	now := f.now()
	starts := reboot || r[4]&0x80 != 0 // an init packet
	isInit := !reboot && r[4] == 0x86  // CTAPHID_INIT
	s := f.senders[from]
	switch {
	case s == nil || isInit || now.Sub(s.seen) >= recheckIdle:
		s = f.lookup(from, now)
	case !starts:
		// A continuation packet: the message's init packet was checked.
	case s.inode != 0:
		row, err := f.table.receiver(f.local, from)
		if err != nil || row.inode != s.inode || int64(row.uid) != s.uid {
			s = f.lookup(from, now)
		}
	case !s.ok && now.Sub(s.checked) >= refusedHold:
		s = f.lookup(from, now)
	case s.ok:
		// Allowed, yet no single socket to recognise (several sockets of
		// one user share the port): look again.
		s = f.lookup(from, now)
	}
	s.seen = now
	if !s.ok {
		f.dropped(from, s, now)
	}
	return s.ok
}

// lookup reads the socket table for from and caches the verdict.
func (f *senderFilter) lookup(from netip.AddrPort, now time.Time) *sender {
	s := &sender{uid: -1, checked: now}
	rows, err := f.table.bound(from)
	var uid, inode uint32
	if err == nil {
		uid, inode, err = ownerOf(rows, from)
	}
	switch {
	case err != nil:
		s.why = err.Error()
	case !f.allow[uid]:
		s.uid, s.inode = int64(uid), inode
		s.why = "its user is not allowed"
	default:
		s.ok, s.uid, s.inode = true, int64(uid), inode
	}
	if len(f.senders) >= maxSenders {
		for a, old := range f.senders {
			if now.Sub(old.seen) >= recheckIdle {
				delete(f.senders, a)
			}
		}
		if len(f.senders) >= maxSenders {
			clear(f.senders)
		}
	}
	f.senders[from] = s
	return s
}

// dropped logs a refused datagram: at most one line per dropLogEvery,
// counting the others.
func (f *senderFilter) dropped(from netip.AddrPort, s *sender, now time.Time) {
	if !f.logged.IsZero() && now.Sub(f.logged) < dropLogEvery {
		f.unlog++
		return
	}
	attrs := []any{"from", from.String(), "reason", s.why}
	if s.uid >= 0 {
		attrs = append(attrs, "uid", s.uid)
	}
	if f.unlog > 0 {
		attrs = append(attrs, "also_dropped", f.unlog)
	}
	f.log.Warn("udp: dropped a datagram from a sender that may not use the key (see --udp-allow-uid)", attrs...)
	f.logged, f.unlog = now, 0
}
