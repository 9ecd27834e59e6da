//go:build !linux

package udp

import (
	"errors"
	"net/netip"
)

// sockTable would read the kernel's socket table; only Linux has one here.
type sockTable struct{}

var errNoSockDiag = errors.New("finding the user behind a UDP socket needs Linux (NETLINK_SOCK_DIAG)")

func openSockTable() (*sockTable, error) { return nil, errNoSockDiag }

func (t *sockTable) close() error { return nil }

func (t *sockTable) bound(netip.AddrPort) ([]sockRow, error) { return nil, errNoSockDiag }

func (t *sockTable) receiver(_, _ netip.AddrPort) (sockRow, error) {
	return sockRow{}, errNoSockDiag
}
