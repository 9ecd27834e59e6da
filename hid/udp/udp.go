// Package udp carries CTAPHID reports over UDP, compatible with the
// SoloKeys firmware simulation that conformance tools and python-fido2's
// test setups speak to.
//
// # Wire format
//
// Each datagram is exactly one 64-byte CTAPHID report, with no report-ID
// byte, in both directions. The device listens on [DefaultAddr]
// (127.0.0.1:8111). Datagrams of any other size are ignored. The SoloKeys
// simulator always answered to 127.0.0.1:7112; this package answers each
// channel at the address that last sent on it instead, which serves both
// clients bound to 7112 and clients on ephemeral ports, several at once.
//
// # Power cycle
//
// One 64-byte datagram is not a report: the magic reboot ([MagicReboot]).
// The device side ([Conn]) does not deliver it; it calls the function set
// with [Conn.OnReboot], which is normally [hid.Server.PowerCycle].
// [Conn.Serve] wires that up. The host side ([ClientConn]) sends it with
// [ClientConn.Reboot].
//
// # Security
//
// Anyone who can send datagrams to the device's address can use the key.
// Bind to a loopback address (the default) unless you mean otherwise.
//
// # Wiring
//
//	conn, err := udp.Listen(udp.DefaultAddr)
//	if err != nil { ... }
//	defer conn.Close()
//	return conn.Serve(ctx, authenticator, &hid.Options{Logger: logger})
package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
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

// maxPeers bounds the CID → address table; past it the table starts over
// (clients using made-up CIDs would otherwise grow it without end).
const maxPeers = 4096

// aLongTimeAgo is a read deadline that has passed: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// Conn is the device side of the UDP transport: an [hid.ReportDevice] that
// reads reports from any sender and writes each report to the address that
// last sent on the report's channel. Answers on the broadcast CID go to
// the last sender on the broadcast CID, and the channel an INIT answer
// allocates is routed to that same address; with no address known for a
// channel, a report goes to the last sender of all.
//
// ReadReport must not be called concurrently with itself; WriteReport may
// be called from any goroutine.
type Conn struct {
	pc *net.UDPConn
	r  reader // of pc

	mu       sync.Mutex
	onReboot func()
	peers    map[uint32]netip.AddrPort
	last     netip.AddrPort
}

// Listen opens the device side on addr (host:port; empty means
// [DefaultAddr]; port 0 picks a free port, see [Conn.Addr]).
func Listen(addr string) (*Conn, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	return &Conn{pc: pc, r: reader{pc: pc}, peers: make(map[uint32]netip.AddrPort)}, nil
}

// Addr returns the address the device listens on.
func (c *Conn) Addr() net.Addr { return c.pc.LocalAddr() }

// Close closes the socket; a blocked ReadReport returns an error.
func (c *Conn) Close() error { return c.r.close() }

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

// ReadReport returns the next 64-byte report. It skips datagrams of other
// sizes, handles the magic reboot itself, and records the sender as the
// address of the report's channel.
func (c *Conn) ReadReport(ctx context.Context) ([]byte, error) {
	buf := make([]byte, hid.ReportSize+1) // one spare byte detects over-long datagrams
	for {
		n, from, err := c.r.read(ctx, buf)
		if err != nil {
			return nil, err
		}
		if n != hid.ReportSize {
			continue
		}
		r := buf[:n]
		if bytes.Equal(r, magicReboot) {
			c.mu.Lock()
			f := c.onReboot
			c.mu.Unlock()
			if f != nil {
				f()
			}
			continue
		}
		c.mu.Lock()
		cid := binary.BigEndian.Uint32(r)
		if _, ok := c.peers[cid]; !ok && len(c.peers) >= maxPeers {
			clear(c.peers)
		}
		c.peers[cid] = from
		c.last = from
		c.mu.Unlock()
		return r, nil
	}
}

// WriteReport sends report (zero-padded to 64 bytes) to its channel's
// address.
func (c *Conn) WriteReport(report []byte) error {
	r, err := pad(report)
	if err != nil {
		return err
	}
	cid := binary.BigEndian.Uint32(r)
	c.mu.Lock()
	to, ok := c.peers[cid]
	if !ok {
		to = c.last
	}
	// An INIT answer on broadcast names the channel the client will use
	// next: route it to the same client.
	if cid == hid.BroadcastCID && r[4] == hid.CmdInit && binary.BigEndian.Uint16(r[5:]) >= 12 && to.IsValid() {
		if newCID := binary.BigEndian.Uint32(r[7+8:]); newCID != hid.BroadcastCID {
			c.peers[newCID] = to
		}
	}
	c.mu.Unlock()
	if !to.IsValid() {
		return errors.New("udp: no client address known yet")
	}
	if _, err := c.pc.WriteToUDPAddrPort(r, to); err != nil {
		return fmt.Errorf("udp: %w", err)
	}
	return nil
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
