package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// This file finds who owns a UDP socket from the kernel's socket table,
// read with NETLINK_SOCK_DIAG (inet_diag, linux/inet_diag.h). Encoding,
// decoding and the choice of the owner are plain code, the same on every
// system, so they are tested and fuzzed everywhere; sockdiag_linux.go
// does the system calls.

// Netlink and inet_diag constants (linux/netlink.h, linux/sock_diag.h,
// linux/inet_diag.h). They are part of the kernel ABI.
const (
	nlmsgHdrLen      = 16 // struct nlmsghdr
	nlmsgDone        = 3  // NLMSG_DONE
	nlmsgError       = 2  // NLMSG_ERROR
	nlmFRequest      = 0x1
	nlmFDump         = 0x300 // NLM_F_ROOT | NLM_F_MATCH
	sockDiagByFam    = 20    // SOCK_DIAG_BY_FAMILY
	inetDiagReqLen   = 56    // struct inet_diag_req_v2
	inetDiagMsgLen   = 72    // struct inet_diag_msg
	afInet           = 2
	afInet6          = 10
	ipprotoUDP       = 17
	inetDiagNoCookie = 0xFFFFFFFF // INET_DIAG_NOCOOKIE, both halves
)

// sockRow is one UDP socket of the kernel's table.
type sockRow struct {
	family uint8
	local  netip.AddrPort // address and port it is bound to (inet_rcv_saddr)
	remote netip.AddrPort // its peer when connected, else unspecified:0
	uid    uint32
	inode  uint32 // the socket's inode: its identity while it lives
}

// diagRequest encodes one SOCK_DIAG_BY_FAMILY request for UDP sockets of
// family (afInet or afInet6), with netlink sequence number seq.
//
// A dump (exact false) lists every socket of the family whose local port is
// port. An exact request asks the kernel which socket would receive a
// datagram sent from from to to — the socket bound to to, connected to from
// or not — exactly as it delivers datagrams (for historical reasons the
// kernel reads the request's "source" as the sender and its "destination"
// as the socket sought).
func diagRequest(seq uint32, family uint8, exact bool, port uint16, from, to netip.AddrPort) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFam)
	flags := uint16(nlmFRequest)
	if !exact {
		flags |= nlmFDump
	}
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	r := b[nlmsgHdrLen:]
	r[0] = family
	r[1] = ipprotoUDP
	ne.PutUint32(r[4:], 0xFFFFFFFF) // every state
	id := r[8:]                     // struct inet_diag_sockid
	if exact {
		binary.BigEndian.PutUint16(id[0:], from.Port())
		binary.BigEndian.PutUint16(id[2:], to.Port())
		putDiagAddr(id[4:20], family, from.Addr())
		putDiagAddr(id[20:36], family, to.Addr())
	} else {
		binary.BigEndian.PutUint16(id[0:], port) // the kernel filters on it
	}
	ne.PutUint32(id[40:], inetDiagNoCookie)
	ne.PutUint32(id[44:], inetDiagNoCookie)
	return b
}

// putDiagAddr writes a in the 16-byte address field of inet_diag_sockid:
// IPv4 in the first 4 bytes, IPv6 (v4-mapped for an IPv4 address) in all
// 16.
func putDiagAddr(dst []byte, family uint8, a netip.Addr) {
	if family == afInet {
		v4 := a.Unmap().As4()
		copy(dst, v4[:])
		return
	}
	v6 := a.As16()
	copy(dst, v6[:])
}

// errNoSuchSocket is an exact request's "no socket would receive it".
var errNoSuchSocket = errors.New("no such socket")

// parseDiagReply decodes one buffer of netlink messages answering the
// request with sequence number seq, appending the sockets it lists to
// rows; messages of other sequence numbers (what is left of an earlier
// request's reply) are skipped. done is true once the reply is complete
// (NLMSG_DONE, an error, or the one answer to an exact request). An
// NLMSG_ERROR of ENOENT is errNoSuchSocket; any other error or a malformed
// buffer is an error.
func parseDiagReply(b []byte, seq uint32, exact bool, rows []sockRow) (_ []sockRow, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return rows, false, errors.New("sock_diag: truncated netlink header")
		}
		n := int(ne.Uint32(b[0:]))
		if n < nlmsgHdrLen || n > len(b) {
			return rows, false, fmt.Errorf("sock_diag: netlink message of %d bytes in %d", n, len(b))
		}
		typ, mseq := ne.Uint16(b[4:]), ne.Uint32(b[8:])
		body := b[nlmsgHdrLen:n]
		if a := (n + 3) &^ 3; a < len(b) { // NLMSG_ALIGN
			b = b[a:]
		} else {
			b = nil
		}
		if mseq != seq {
			continue // the rest of an earlier request's reply
		}
		switch typ {
		case nlmsgDone:
			return rows, true, nil
		case nlmsgError:
			if len(body) < 4 {
				return rows, true, errors.New("sock_diag: truncated error")
			}
			errno := -int32(ne.Uint32(body))
			if errno == 0 { // an acknowledgement
				continue
			}
			if errno == 2 { // ENOENT
				return rows, true, errNoSuchSocket
			}
			return rows, true, fmt.Errorf("sock_diag: errno %d", errno)
		case sockDiagByFam:
			row, err := parseDiagMsg(body)
			if err != nil {
				return rows, false, err
			}
			rows = append(rows, row)
			if exact {
				return rows, true, nil
			}
		default:
			return rows, false, fmt.Errorf("sock_diag: unexpected message type %d", typ)
		}
	}
	return rows, false, nil
}

// parseDiagMsg decodes a struct inet_diag_msg (attributes after it are
// ignored).
func parseDiagMsg(m []byte) (sockRow, error) {
	if len(m) < inetDiagMsgLen {
		return sockRow{}, fmt.Errorf("sock_diag: inet_diag_msg of %d bytes", len(m))
	}
	r := sockRow{family: m[0]}
	id := m[4:52]
	sport, dport := binary.BigEndian.Uint16(id[0:]), binary.BigEndian.Uint16(id[2:])
	var src, dst netip.Addr
	switch r.family {
	case afInet:
		src = netip.AddrFrom4([4]byte(id[4:8]))
		dst = netip.AddrFrom4([4]byte(id[20:24]))
	case afInet6:
		src = netip.AddrFrom16([16]byte(id[4:20]))
		dst = netip.AddrFrom16([16]byte(id[20:36]))
	default:
		return sockRow{}, fmt.Errorf("sock_diag: address family %d", r.family)
	}
	r.local = netip.AddrPortFrom(src, sport)
	r.remote = netip.AddrPortFrom(dst, dport)
	r.uid = binary.NativeEndian.Uint32(m[64:])
	r.inode = binary.NativeEndian.Uint32(m[68:])
	return r, nil
}

// errNoSocket: no socket of this host holds the address (it closed, or
// the sender is another host).
var errNoSocket = errors.New("no socket on this host")

// errAmbiguous: the socket table cannot say which user sent a datagram.
var errAmbiguous = errors.New("ambiguous")

// ownerOf returns the user who owns the UDP socket bound to addr, among
// rows: the sockets whose local port is addr's and whose local address is
// addr's (an IPv4 address also as a v4-mapped IPv6 one) or a wildcard of a
// family that can carry it (0.0.0.0, or :: for a dual-stack socket).
// inode is that socket's, or 0 when several sockets of the one user
// qualify.
//
// It fails when no socket qualifies, and with errAmbiguous when sockets
// of different users qualify (two users can share a port with
// SO_REUSEADDR, a wildcard socket beside an exact one) or when the only
// ones are wildcard sockets and addr is not a loopback address: a wildcard
// socket says nothing about where a datagram came from, while a loopback
// source address can only be this host's (the kernel drops a packet from
// 127/8 or ::1 arriving on any other interface), and every other socket
// holding the port on this host would be in the table too.
func ownerOf(rows []sockRow, addr netip.AddrPort) (uid, inode uint32, err error) {
	want := addr.Addr().Unmap()
	var (
		found    []sockRow
		wildcard bool
		seen     = map[uint32]bool{}
	)
	for _, r := range rows {
		if r.local.Port() != addr.Port() || (r.inode != 0 && seen[r.inode]) {
			continue
		}
		a := r.local.Addr()
		switch {
		case a.Unmap() == want:
		case a.IsUnspecified() && (a.Is6() || want.Is4()):
			wildcard = true
		default:
			continue
		}
		seen[r.inode] = true
		found = append(found, r)
	}
	if len(found) == 0 {
		return 0, 0, fmt.Errorf("%w is bound to %v", errNoSocket, addr)
	}
	for _, r := range found[1:] {
		if r.uid != found[0].uid {
			uids := make([]string, len(found))
			for i, r := range found {
				uids[i] = fmt.Sprint(r.uid)
			}
			return 0, 0, fmt.Errorf("%w: sockets of several users hold %v (uids %s)", errAmbiguous, addr, strings.Join(uids, ", "))
		}
	}
	if wildcard && !want.IsLoopback() {
		return 0, 0, fmt.Errorf("%w: a socket bound to a wildcard address holds port %d, and %v is not a loopback address", errAmbiguous, addr.Port(), want)
	}
	if len(found) > 1 {
		return found[0].uid, 0, nil
	}
	return found[0].uid, found[0].inode, nil
}
