// Package udp carries CTAPHID reports over UDP, compatible with the
// SoloKeys firmware simulation that conformance tools and python-fido2's
// test setups speak to.
//
// # Wire format
//
// Each datagram is exactly one 64-byte CTAPHID report, with no report-ID
// byte, in both directions. The device listens on [DefaultAddr]
// (127.0.0.1:8111). Datagrams of any other size are ignored. The SoloKeys
// simulator always answered to 127.0.0.1:7112; this package answers every
// request at the address it came from instead, which serves both clients
// bound to 7112 and clients on ephemeral ports, several at once ([Conn] is
// an [hid.SourceDevice]: channels belong to the address that allocated
// them).
//
// # Power cycle
//
// One 64-byte datagram is not a report: the magic reboot ([MagicReboot]).
// The device side ([Conn]) does not deliver it; it calls the function set
// with [Conn.OnReboot], which is normally [hid.Server.PowerCycle].
// [Conn.Serve] wires that up. The host side ([ClientConn]) sends it with
// [ClientConn.Reboot].
//
// # Who is served
//
// On a multi-user machine any local process can send datagrams to a
// loopback port. So by default the device serves only the user running it
// and root: for each datagram it finds the user who owns the sending
// socket in the kernel's socket table (Linux NETLINK_SOCK_DIAG) and drops,
// with a rate-limited log line, datagrams of other users and of sockets it
// cannot attribute to one user (none found, several users sharing the
// port, or a wildcard-bound socket sending from a non-loopback address).
// What it learns is bound to the sending socket, not to its address and
// port: every datagram that starts a message asks the kernel whether the
// same socket still holds that address and port (a few µs), so another
// user who binds a client's port after the client closed it is refused at
// once; a sender's first datagram, every CTAPHID_INIT and the first
// datagram after a silence read the whole table, which also shows a port
// shared by two users. The magic reboot is
// honoured only from a served sender. [ListenConfig.AllowUIDs] serves
// further users, and [ListenConfig.AllowAnyUser] turns the check off —
// needed for senders on other hosts, which have no local user. Listening
// on a non-loopback address needs [ListenConfig.AllowRemote].
//
// The host side checks the other way round: [DialOwned] refuses a device
// address whose socket belongs to an unexpected user (a process that
// bound the port while virtkey was down would otherwise receive the PIN
// protocol's messages).
//
// # Wiring
//
//	conn, err := udp.Listen(udp.DefaultAddr) // or (&udp.ListenConfig{...}).Listen
//	if err != nil { ... }
//	defer conn.Close()
//	return conn.Serve(ctx, authenticator, &hid.Options{Logger: logger})
package udp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/virtkey/virtkey/hid"
)

// DefaultAddr is where the SoloKeys simulation, and so its clients,
// expect the device.
const DefaultAddr = "127.0.0.1:8111"

// magicReboot is the SoloKeys simulation's power-cycle datagram.
var magicReboot = mustHex("ac1052ca95e569de69e02ebff333485f13f9b2da34c5a8a340526697a9ab2e0b" +
	"394d8d04973c134005be1a0140bff6045bb26eb77a73eaa47813f6b49a7250dc")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != hid.ReportSize {
		panic("udp: bad magic reboot constant")
	}
	return b
}

// MagicReboot returns a copy of the 64-byte datagram that asks the device
// for a simulated power cycle.
func MagicReboot() []byte { return bytes.Clone(magicReboot) }

// aLongTimeAgo is a read deadline that has passed: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// Conn is the device side of the UDP transport: an [hid.SourceDevice]
// that reads reports from the senders it serves (see the package
// documentation) and writes each report to the address it is given.
//
// ReadReport and ReadReportFrom must not be called concurrently with
// themselves; WriteReportTo may be called from any goroutine.
type Conn struct {
	pc     *net.UDPConn
	r      reader        // of pc
	filter *senderFilter // nil: every sender is served
	table  *sockTable    // the filter's, closed with the Conn

	mu       sync.Mutex
	onReboot func()
}

// ListenConfig says whom a device [Conn] serves. The zero value serves
// the user running it and root, on a loopback address.
type ListenConfig struct {
	// AllowUIDs are further users whose datagrams are served.
	AllowUIDs []uint32
	// AllowAnyUser serves every datagram that reaches the socket, without
	// looking up its sender (other hosts' senders need it).
	AllowAnyUser bool
	// AllowRemote permits listening on an address that is not a loopback
	// one (0.0.0.0, a LAN address); Listen then logs a warning.
	AllowRemote bool
	// Logger gets that warning and the lines about dropped datagrams.
	// Nil discards.
	Logger *slog.Logger
}

// ErrNotLoopback is returned by [ListenConfig.Listen] for a non-loopback
// address without [ListenConfig.AllowRemote].
var ErrNotLoopback = errors.New("not a loopback address")

// Listen opens the device side on addr (host:port; empty means
// [DefaultAddr]; port 0 picks a free port, see [Conn.Addr]) with the
// default [ListenConfig]: it serves the user running it and root only.
func Listen(addr string) (*Conn, error) { return (&ListenConfig{}).Listen(addr) }

// Listen opens the device side on addr (host:port; empty means
// [DefaultAddr]; port 0 picks a free port, see [Conn.Addr]). Unless
// AllowAnyUser is set it checks that it can find the owner of its own
// socket in the kernel's socket table, and fails if it cannot (on systems
// other than Linux, or where NETLINK_SOCK_DIAG is not available).
func (lc *ListenConfig) Listen(addr string) (*Conn, error) {
	log := lc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if addr == "" {
		addr = DefaultAddr
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	if !ua.IP.IsLoopback() && !lc.AllowRemote {
		return nil, fmt.Errorf("udp: listening on %s: %w; other hosts could reach the key (allow it with --udp-allow-remote)", addr, ErrNotLoopback)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	c := &Conn{pc: pc, r: reader{pc: pc}}
	local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	if !ua.IP.IsLoopback() {
		log.Warn("udp: listening on a non-loopback address: other hosts can reach the key", "listen", local.String())
	}
	if lc.AllowAnyUser {
		log.Warn("udp: serving every sender, whatever its user or host (--udp-allow-any-user)")
		return c, nil
	}
	if err := c.startFilter(lc, local, log); err != nil {
		pc.Close()
		return nil, err
	}
	return c, nil
}

// startFilter sets up the sender check, first making sure it can find
// this socket's own owner.
func (c *Conn) startFilter(lc *ListenConfig, local netip.AddrPort, log *slog.Logger) error {
	me := uint32(os.Getuid())
	allow := map[uint32]bool{me: true, 0: true}
	for _, u := range lc.AllowUIDs {
		allow[u] = true
	}
	table, err := openSockTable()
	if err == nil {
		var rows []sockRow
		var uid uint32
		if rows, err = table.bound(local); err == nil {
			if uid, _, err = ownerOf(rows, local); err == nil && uid != me {
				err = fmt.Errorf("the socket table says uid %d owns it, not %d", uid, me)
			}
		}
		if err != nil {
			table.close()
		}
	}
	if err != nil {
		return fmt.Errorf("udp: cannot find the user behind a datagram (%v); to serve every sender, allow any user (--udp-allow-any-user)", err)
	}
	c.table = table
	c.filter = newSenderFilter(table, local, allow, log)
	return nil
}

// Addr returns the address the device listens on.
func (c *Conn) Addr() net.Addr { return c.pc.LocalAddr() }

// Close closes the socket; a blocked ReadReport returns an error.
func (c *Conn) Close() error {
	err := c.r.close()
	if c.table != nil {
		c.table.close()
	}
	return err
}

// OnReboot sets the function called, from inside ReadReport, when the
// magic reboot datagram arrives (nil: the datagram is dropped). Typically
// it is [hid.Server.PowerCycle]. It may be called at any time.
func (c *Conn) OnReboot(f func()) {
	c.mu.Lock()
	c.onReboot = f
	c.mu.Unlock()
}

// Serve runs an [hid.Server] for h on c until ctx ends (it returns nil) or
// the socket fails, with the magic reboot wired to the server's
// PowerCycle. opts may be nil.
func (c *Conn) Serve(ctx context.Context, h hid.Handler, opts *hid.Options) error {
	srv := hid.NewServer(c, h, opts)
	c.OnReboot(srv.PowerCycle)
	defer c.OnReboot(nil)
	return srv.Run(ctx)
}

// ReadReportFrom returns the next 64-byte report and its sender. It skips
// datagrams of other sizes and datagrams from senders it does not serve,
// and handles the magic reboot itself (from a served sender only).
func (c *Conn) ReadReportFrom(ctx context.Context) ([]byte, netip.AddrPort, error) {
	buf := make([]byte, hid.ReportSize+1) // one spare byte detects over-long datagrams
	for {
		n, from, err := c.r.read(ctx, buf)
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		if c.accept(buf[:n], from) {
			return buf[:n], from, nil
		}
	}
}

var _ hid.PendingReader = (*Conn)(nil)

// ReadPending is [Conn.ReadReportFrom] for a datagram that has arrived
// already: ok is false when none is waiting ([hid.PendingReader]).
func (c *Conn) ReadPending() ([]byte, netip.AddrPort, bool, error) {
	buf := make([]byte, hid.ReportSize+1)
	for {
		n, from, ok, err := c.r.readNow(buf)
		if !ok || err != nil {
			return nil, netip.AddrPort{}, false, err
		}
		if c.accept(buf[:n], from) {
			return buf[:n], from, true, nil
		}
	}
}

// accept reports whether datagram r from from is a report to deliver: it
// drops datagrams of other sizes and from senders it does not serve, and
// handles the magic reboot itself (from a served sender only).
func (c *Conn) accept(r []byte, from netip.AddrPort) bool {
	if len(r) != hid.ReportSize {
		return false
	}
	reboot := bytes.Equal(r, magicReboot)
	if c.filter != nil && !c.filter.allowed(r, from, reboot) {
		return false
	}
	if reboot {
		c.mu.Lock()
		f := c.onReboot
		c.mu.Unlock()
		if f != nil {
			f()
		}
		return false
	}
	return true
}

// ReadReport is [Conn.ReadReportFrom] without the sender.
func (c *Conn) ReadReport(ctx context.Context) ([]byte, error) {
	r, _, err := c.ReadReportFrom(ctx)
	return r, err
}

// WriteReportTo sends report, zero-padded to 64 bytes, to to.
func (c *Conn) WriteReportTo(report []byte, to netip.AddrPort) error {
	r, err := pad(report)
	if err != nil {
		return err
	}
	if !to.IsValid() {
		return errors.New("udp: no address to send the report to")
	}
	if _, err := c.pc.WriteToUDPAddrPort(r, to); err != nil {
		return fmt.Errorf("udp: %w", err)
	}
	return nil
}

// WriteReport fails: a report of the device side goes to the sender of the
// request it answers, which only [Conn.WriteReportTo] knows. (There is no
// "last sender" to fall back to: that sent one host's answers to another.)
func (c *Conn) WriteReport(report []byte) error {
	if _, err := pad(report); err != nil {
		return err
	}
	return errors.New("udp: Conn.WriteReport has no destination; use WriteReportTo")
}

// ClientConn is the host side of the UDP transport: an [hid.ReportDevice]
// connected to one device address, for [hid.NewClient].
type ClientConn struct {
	pc *net.UDPConn
	r  reader // of pc
}

// Dial connects to a device at addr (empty means [DefaultAddr]). For a
// loopback device the local end is bound to 127.0.0.1 on a free port.
func Dial(addr string) (*ClientConn, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	var la *net.UDPAddr
	if ra.IP.IsLoopback() && ra.IP.To4() != nil {
		la = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	}
	pc, err := net.DialUDP("udp", la, ra)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	return &ClientConn{pc: pc, r: reader{pc: pc}}, nil
}

// DialOwned is [Dial] to a device on this host whose socket must belong
// to one of uids or to root: before anything is sent it finds the owner of
// the socket bound to addr in the kernel's socket table (as the device side
// finds its senders) and refuses a socket of anyone else, one it cannot
// attribute to a single user, and an address no local socket holds (a
// remote device cannot be checked). A process of another user that bound
// the port while the key was down would otherwise receive the PIN
// protocol's messages.
func DialOwned(addr string, uids ...uint32) (*ClientConn, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	dev := ra.AddrPort()
	dev = netip.AddrPortFrom(dev.Addr().Unmap(), dev.Port())
	uid, err := ListenerOwner(dev)
	switch {
	case errors.Is(err, errNoSocket) && dev.Addr().Unmap().IsLoopback():
		return nil, fmt.Errorf("udp: %w at %v", ErrNoListener, dev)
	case errors.Is(err, errNoSocket):
		return nil, fmt.Errorf("udp: no socket on this host listens at %v, and a key on another host cannot be checked", dev)
	case err != nil:
		return nil, fmt.Errorf("udp: cannot check who listens at %v: %w", dev, err)
	}
	if uid != 0 && !slices.Contains(uids, uid) {
		return nil, fmt.Errorf("udp: %w: the socket at %v belongs to uid %d, not to uid %v or root; it is not your key (is another user's process holding the port?)",
			ErrForeignListener, dev, uid, uids)
	}
	return Dial(addr)
}

// ErrNoListener is returned by [DialOwned] for a loopback address no
// socket holds.
var ErrNoListener = errors.New("nothing listens")

// ErrForeignListener is returned by [DialOwned] for a device address held
// by another user's socket.
var ErrForeignListener = errors.New("refusing to talk to another user's socket")

// ListenerOwner returns the user who owns the UDP socket bound to addr on
// this host, from the kernel's socket table (Linux only). It fails when no
// socket holds addr, or when it cannot be attributed to a single user.
func ListenerOwner(addr netip.AddrPort) (uint32, error) {
	t, err := openSockTable()
	if err != nil {
		return 0, err
	}
	defer t.close()
	rows, err := t.bound(addr)
	if err != nil {
		return 0, err
	}
	uid, _, err := ownerOf(rows, addr)
	return uid, err
}

// LocalAddr returns the client's own address.
func (c *ClientConn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// Close closes the socket; a blocked ReadReport returns an error.
func (c *ClientConn) Close() error { return c.r.close() }

// ReadReport returns the next 64-byte datagram from the device, skipping
// datagrams of other sizes.
func (c *ClientConn) ReadReport(ctx context.Context) ([]byte, error) {
	buf := make([]byte, hid.ReportSize+1)
	for {
		n, _, err := c.r.read(ctx, buf)
		if err != nil {
			return nil, err
		}
		if n == hid.ReportSize {
			return buf[:n], nil
		}
	}
}

// WriteReport sends report, zero-padded to 64 bytes, as one datagram.
func (c *ClientConn) WriteReport(report []byte) error {
	r, err := pad(report)
	if err != nil {
		return err
	}
	if _, err := c.pc.Write(r); err != nil {
		return fmt.Errorf("udp: %w", err)
	}
	return nil
}

// Reboot sends the magic reboot datagram: the device power-cycles.
func (c *ClientConn) Reboot() error {
	if _, err := c.pc.Write(magicReboot); err != nil {
		return fmt.Errorf("udp: %w", err)
	}
	return nil
}

// pad returns report as exactly one 64-byte report.
func pad(report []byte) ([]byte, error) {
	if len(report) > hid.ReportSize {
		return nil, fmt.Errorf("udp: report of %d bytes exceeds %d", len(report), hid.ReportSize)
	}
	if len(report) == hid.ReportSize {
		return report, nil
	}
	r := make([]byte, hid.ReportSize)
	copy(r, report)
	return r, nil
}

// reader reads datagrams from pc, giving up when the context of the read
// ends: a watch on the context sets a read deadline in the past. Rather
// than arm and disarm a watch for every datagram, it keeps watching the
// context of the last read until a read comes with another context (one
// with another Done channel) or the socket is closed.
type reader struct {
	pc *net.UDPConn
	rc syscall.RawConn // of pc, for readNow (made on first use)

	mu   sync.Mutex
	done <-chan struct{} // Done of the watched context
	stop func() bool     // ends the watch (nil: none)
}

// read reads one datagram into buf.
func (r *reader) read(ctx context.Context, buf []byte) (int, netip.AddrPort, error) {
	if err := ctx.Err(); err != nil {
		return 0, netip.AddrPort{}, err
	}
	r.watch(ctx)
	for {
		n, from, err := r.pc.ReadFromUDPAddrPort(buf)
		switch {
		case err == nil:
			return n, from, nil
		case ctx.Err() != nil:
			return 0, from, ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			// A deadline set by the watch of an earlier context. Clearing
			// it could also clear the wake-up of ctx if ctx was cancelled
			// meanwhile, so look at ctx again before reading on.
			r.pc.SetReadDeadline(time.Time{})
			if err := ctx.Err(); err != nil {
				return 0, from, err
			}
		default:
			return 0, from, fmt.Errorf("udp: %w", err)
		}
	}
}

// watch makes ctx the watched context, unless it is already.
func (r *reader) watch(ctx context.Context) {
	done := ctx.Done()
	r.mu.Lock()
	defer r.mu.Unlock()
	if done == r.done && (done == nil || r.stop != nil) {
		return
	}
	r.unwatch()
	r.done = done
	r.pc.SetReadDeadline(time.Time{})
	if done != nil {
		r.stop = context.AfterFunc(ctx, func() { r.pc.SetReadDeadline(aLongTimeAgo) })
	}
}

// unwatch ends the watch. r.mu must be held.
func (r *reader) unwatch() {
	if r.stop != nil {
		r.stop()
		r.stop = nil
	}
}

// close ends the watch and closes the socket.
func (r *reader) close() error {
	r.mu.Lock()
	r.unwatch()
	r.mu.Unlock()
	return r.pc.Close()
}
