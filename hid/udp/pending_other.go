//go:build !unix

package udp

import "net/netip"

// readNow would read a datagram that has arrived without waiting; here
// none is ever reported, so the server reads it with its next read.
func (r *reader) readNow([]byte) (int, netip.AddrPort, bool, error) {
	return 0, netip.AddrPort{}, false, nil
}
