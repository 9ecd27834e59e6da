package hid

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
)

// SourceDevice is a [ReportDevice] whose reports come from several hosts,
// each known by an address (hid/udp: the sender's IP address and port).
// A [Server] on a SourceDevice reads with ReadReportFrom and answers every
// request, INIT included, with WriteReportTo at the address the request
// came from; it keeps each channel to the address that allocated it (or,
// for a CID used without allocation, that used it first) and answers any
// other address on that channel with ERR_INVALID_CHANNEL. On a plain
// ReportDevice every report comes from the one host, the zero address.
type SourceDevice interface {
	ReportDevice
	// ReadReportFrom is ReadReport that also says who sent the report.
	ReadReportFrom(ctx context.Context) (report []byte, from netip.AddrPort, err error)
	// WriteReportTo sends one report to one host.
	WriteReportTo(report []byte, to netip.AddrPort) error
}

// DefaultMaxChannels is how many channels a [Server] keeps by default.
const DefaultMaxChannels = 4096

// channelTable maps each channel in use to the address that owns it, in
// the order the channels were last used. When it is full, a new channel
// evicts the one idle longest — never one that is busy, receiving a
// message or holding the lock — so a host that makes up many CIDs cannot
// take over or drop another host's active channel. An evicted channel
// that is used again is claimed anew by whoever uses it first; CIDs are
// random, so only its owner knows it.
type channelTable struct {
	max   int
	byCID map[uint32]*list.Element // of *channelEntry
	lru   list.List                // front: used most recently
}

type channelEntry struct {
	cid   uint32
	owner netip.AddrPort
}

func newChannelTable(max int) *channelTable {
	if max <= 0 {
		max = DefaultMaxChannels
	}
	t := &channelTable{max: max, byCID: make(map[uint32]*list.Element)}
	t.lru.Init()
	return t
}

// use records a report from src on cid: it reports false when another
// address owns cid; otherwise cid is src's (claimed now if it was free)
// and becomes the most recently used channel. busy says which channels
// eviction must keep.
func (t *channelTable) use(cid uint32, src netip.AddrPort, busy func(uint32) bool) bool {
	if e, ok := t.byCID[cid]; ok {
		if e.Value.(*channelEntry).owner != src {
			return false
		}
		t.lru.MoveToFront(e)
		return true
	}
	t.add(cid, src, busy)
	return true
}

// alloc returns a fresh random CID, never 0, broadcast or in use, owned
// by src.
func (t *channelTable) alloc(src netip.AddrPort, busy func(uint32) bool) uint32 {
	for {
		var b [4]byte
		rand.Read(b[:])
		cid := binary.BigEndian.Uint32(b[:])
		if _, taken := t.byCID[cid]; cid == 0 || cid == BroadcastCID || taken {
			continue
		}
		t.add(cid, src, busy)
		return cid
	}
}

// add inserts a channel, first evicting the idle-longest one that is not
// busy if the table is full.
func (t *channelTable) add(cid uint32, src netip.AddrPort, busy func(uint32) bool) {
	if len(t.byCID) >= t.max {
		for e := t.lru.Back(); e != nil; e = e.Prev() {
			if old := e.Value.(*channelEntry).cid; !busy(old) {
				t.lru.Remove(e)
				delete(t.byCID, old)
				break
			}
		}
	}
	t.byCID[cid] = t.lru.PushFront(&channelEntry{cid: cid, owner: src})
}

// len returns the number of channels.
func (t *channelTable) len() int { return len(t.byCID) }

// reset forgets every channel.
func (t *channelTable) reset() {
	clear(t.byCID)
	t.lru.Init()
}
