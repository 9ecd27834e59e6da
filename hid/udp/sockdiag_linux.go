package udp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// sockTable queries the kernel's UDP socket table over a NETLINK_SOCK_DIAG
// socket. It is safe for concurrent use (one query at a time).
type sockTable struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

func openSockTable() (*sockTable, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", os.NewSyscallError("socket", err))
	}
	// The kernel answers at once; a bound wait turns a lost answer into
	// an error rather than a hang of the reader.
	tv := unix.NsecToTimeval(int64(time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sock_diag: %w", os.NewSyscallError("setsockopt", err))
	}
	return &sockTable{fd: fd, buf: make([]byte, 64<<10)}, nil
}

func (t *sockTable) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	return err
}

// bound lists the UDP sockets that could have sent from addr: those of
// addr's port, of both families for an IPv4 address (a dual-stack IPv6
// socket sends IPv4 too).
func (t *sockTable) bound(addr netip.AddrPort) ([]sockRow, error) {
	var rows []sockRow
	families := []uint8{afInet6}
	if addr.Addr().Unmap().Is4() {
		families = []uint8{afInet, afInet6}
	}
	for _, fam := range families {
		var err error
		rows, err = t.query(fam, false, addr.Port(), netip.AddrPort{}, netip.AddrPort{}, rows)
		if err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// receiver returns the socket that a datagram from local (our socket) to
// peer would reach: the socket bound to peer's address and port.
func (t *sockTable) receiver(local, peer netip.AddrPort) (sockRow, error) {
	fam := uint8(afInet6)
	if peer.Addr().Unmap().Is4() {
		fam = afInet
		local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
		if !local.Addr().Is4() { // an IPv6 listener: its v4 view is unknown
			local = netip.AddrPortFrom(netip.IPv4Unspecified(), local.Port())
		}
	}
	rows, err := t.query(fam, true, 0, local, peer, nil)
	if err != nil {
		return sockRow{}, err
	}
	if len(rows) != 1 {
		return sockRow{}, errNoSuchSocket
	}
	return rows[0], nil
}

func (t *sockTable) query(family uint8, exact bool, port uint16, from, to netip.AddrPort, rows []sockRow) ([]sockRow, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fd < 0 {
		return nil, errors.New("sock_diag: closed")
	}
	t.seq++
	req := diagRequest(t.seq, family, exact, port, from, to)
	if err := unix.Sendto(t.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag: %w", os.NewSyscallError("sendto", err))
	}
	for {
		n, sa, err := unix.Recvfrom(t.fd, t.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", os.NewSyscallError("recvfrom", err))
		}
		if nl, ok := sa.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // not from the kernel
		}
		var done bool
		rows, done, err = parseDiagReply(t.buf[:n], t.seq, exact, rows)
		if err != nil || done {
			return rows, err
		}
	}
}
