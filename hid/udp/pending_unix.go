//go:build unix

package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// readNow reads one datagram into buf if one has arrived, without
// waiting: ok is false when none has (or a passed read deadline stands).
func (r *reader) readNow(buf []byte) (n int, from netip.AddrPort, ok bool, err error) {
	if r.rc == nil {
		if r.rc, err = r.pc.SyscallConn(); err != nil {
			return 0, from, false, fmt.Errorf("udp: %w", err)
		}
	}
	var sa syscall.Sockaddr
	var rerr error
	err = r.rc.Read(func(fd uintptr) bool {
		n, sa, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
		return true // one try
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EINTR):
		return 0, from, false, nil
	case err != nil:
		return 0, from, false, fmt.Errorf("udp: %w", err)
	case rerr != nil:
		return 0, from, false, fmt.Errorf("udp: %w", rerr)
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4: // as net.UDPConn.ReadFromUDPAddrPort gives it
		from = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *syscall.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr)
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				ip = ip.WithZone(ifi.Name)
			}
		}
		from = netip.AddrPortFrom(ip, uint16(a.Port))
	default:
		return 0, from, false, nil // no sender to answer: dropped; the next read goes on
	}
	return n, from, true, nil
}
