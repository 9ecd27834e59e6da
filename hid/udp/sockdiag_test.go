package udp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/virtkey/virtkey/internal/testkit"
)

// encodeDiagMsg is the kernel's side of parseDiagMsg: one
// SOCK_DIAG_BY_FAMILY netlink message describing r, for request seq.
func encodeDiagMsg(seq uint32, r sockRow) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagMsgLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFam)
	ne.PutUint32(b[8:], seq)
	m := b[nlmsgHdrLen:]
	m[0] = r.family
	m[1] = 7 // TCP_CLOSE: an unconnected UDP socket
	id := m[4:]
	binary.BigEndian.PutUint16(id[0:], r.local.Port())
	binary.BigEndian.PutUint16(id[2:], r.remote.Port())
	putDiagAddr(id[4:20], r.family, r.local.Addr())
	putDiagAddr(id[20:36], r.family, r.remote.Addr())
	ne.PutUint32(m[64:], r.uid)
	ne.PutUint32(m[68:], r.inode)
	return b
}

func nlmsg(seq uint32, typ uint16, body []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(body))
	binary.NativeEndian.PutUint32(b[0:], uint32(nlmsgHdrLen+len(body)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint32(b[8:], seq)
	return append(b, body...)
}

func errnoBody(errno int32) []byte {
	b := make([]byte, 4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(b, uint32(-errno))
	return b
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestParseDiagReply(t *testing.T) {
	t.Parallel()
	a := sockRow{family: afInet, local: ap("127.0.0.1:4000"), remote: ap("127.0.0.1:8111"), uid: 1000, inode: 77}
	b := sockRow{family: afInet6, local: ap("[::ffff:127.0.0.1]:4000"), remote: ap("[::]:0"), uid: 0, inode: 78}
	buf := append(append(encodeDiagMsg(5, a), encodeDiagMsg(4, b)...), encodeDiagMsg(5, b)...) // 4: an old request's
	rows, done, err := parseDiagReply(buf, 5, false, nil)
	if err != nil || done || len(rows) != 2 || rows[0] != a || rows[1] != b {
		t.Fatalf("rows %+v, done %v, err %v", rows, done, err)
	}
	rows, done, err = parseDiagReply(nlmsg(5, nlmsgDone, make([]byte, 4)), 5, false, rows)
	if err != nil || !done || len(rows) != 2 {
		t.Fatalf("NLMSG_DONE: %d rows, done %v, %v", len(rows), done, err)
	}
	if _, done, err := parseDiagReply(nlmsg(6, nlmsgError, errnoBody(2)), 6, true, nil); !done || !errors.Is(err, errNoSuchSocket) {
		t.Fatalf("ENOENT: done %v, %v", done, err)
	}
	if _, done, err := parseDiagReply(nlmsg(6, nlmsgError, errnoBody(1)), 6, true, nil); !done || err == nil {
		t.Fatalf("EPERM: done %v, %v", done, err)
	}
	if rows, done, err := parseDiagReply(encodeDiagMsg(7, a), 7, true, nil); !done || err != nil || len(rows) != 1 {
		t.Fatalf("exact answer: %v %v %v", rows, done, err)
	}
	for name, bad := range map[string][]byte{
		"short header":  make([]byte, 10),
		"length 0":      make([]byte, 20),
		"length beyond": nlmsg(5, sockDiagByFam, nil)[:15],
		"short msg":     nlmsg(5, sockDiagByFam, make([]byte, 40)),
		"bad family":    nlmsg(5, sockDiagByFam, make([]byte, inetDiagMsgLen)),
		"unknown type":  nlmsg(5, 99, nil),
	} {
		if _, _, err := parseDiagReply(bad, 5, false, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzParseDiagReply: any buffer parses without a panic, and every socket
// it yields encodes back to a message that parses to the same socket.
func FuzzParseDiagReply(f *testing.F) {
	row := sockRow{family: afInet, local: ap("127.0.0.1:4000"), remote: ap("0.0.0.0:0"), uid: 1000, inode: 9}
	f.Add(append(encodeDiagMsg(1, row), nlmsg(1, nlmsgDone, make([]byte, 4))...), false)
	f.Add(nlmsg(1, nlmsgError, errnoBody(2)), true)
	f.Add(encodeDiagMsg(1, sockRow{family: afInet6, local: ap("[::1]:5"), remote: ap("[::]:0")}), true)
	f.Fuzz(func(t *testing.T, b []byte, exact bool) {
		rows, _, _ := parseDiagReply(b, 1, exact, nil)
		for _, r := range rows {
			back, done, err := parseDiagReply(encodeDiagMsg(1, r), 1, true, nil)
			if err != nil || !done || len(back) != 1 || back[0] != r {
				t.Fatalf("%+v encodes and parses back as %+v, %v", r, back, err)
			}
		}
	})
}

func TestDiagRequest(t *testing.T) {
	t.Parallel()
	b := diagRequest(3, afInet, false, 4000, netip.AddrPort{}, netip.AddrPort{})
	ne := binary.NativeEndian
	if len(b) != 72 || ne.Uint32(b) != 72 || ne.Uint16(b[4:]) != sockDiagByFam || ne.Uint16(b[6:]) != nlmFRequest|nlmFDump || ne.Uint32(b[8:]) != 3 {
		t.Fatalf("header % X", b[:16])
	}
	if r := b[16:]; r[0] != afInet || r[1] != ipprotoUDP || ne.Uint32(r[4:]) != 0xFFFFFFFF || binary.BigEndian.Uint16(r[8:]) != 4000 {
		t.Fatalf("request % X", r)
	}
	b = diagRequest(4, afInet, true, 0, ap("127.0.0.1:8111"), ap("127.0.0.2:4000"))
	id := b[16+8:]
	if ne.Uint16(b[6:]) != nlmFRequest || binary.BigEndian.Uint16(id) != 8111 || binary.BigEndian.Uint16(id[2:]) != 4000 ||
		string(id[4:8]) != "\x7f\x00\x00\x01" || string(id[20:24]) != "\x7f\x00\x00\x02" {
		t.Fatalf("exact request % X", b)
	}
}

func TestOwnerOf(t *testing.T) {
	t.Parallel()
	row := func(fam uint8, local string, uid, inode uint32) sockRow {
		return sockRow{family: fam, local: ap(local), uid: uid, inode: inode}
	}
	tests := []struct {
		name      string
		rows      []sockRow
		addr      string
		uid       uint32
		inode     uint32
		ambiguous bool
		none      bool
	}{
		{"exact", []sockRow{row(afInet, "127.0.0.1:4000", 1000, 1), row(afInet, "127.0.0.1:4001", 5, 2)}, "127.0.0.1:4000", 1000, 1, false, false},
		{"v4-mapped", []sockRow{row(afInet6, "[::ffff:127.0.0.1]:4000", 1000, 1)}, "127.0.0.1:4000", 1000, 1, false, false},
		{"wildcard, loopback sender", []sockRow{row(afInet, "0.0.0.0:4000", 1000, 1)}, "127.0.0.1:4000", 1000, 1, false, false},
		{"dual-stack wildcard", []sockRow{row(afInet6, "[::]:4000", 1000, 1)}, "127.0.0.1:4000", 1000, 1, false, false},
		{"IPv6 loopback", []sockRow{row(afInet6, "[::1]:4000", 7, 1), row(afInet, "0.0.0.0:4000", 8, 2)}, "[::1]:4000", 7, 1, false, false},
		{"wildcard, remote sender", []sockRow{row(afInet, "0.0.0.0:4000", 1000, 1)}, "192.0.2.7:4000", 0, 0, true, false},
		{"two users share the port", []sockRow{row(afInet, "127.0.0.1:4000", 1000, 1), row(afInet, "127.0.0.1:4000", 65534, 2)}, "127.0.0.1:4000", 0, 0, true, false},
		{"wildcard beside exact", []sockRow{row(afInet, "127.0.0.1:4000", 1000, 1), row(afInet6, "[::]:4000", 65534, 2)}, "127.0.0.1:4000", 0, 0, true, false},
		{"one user, two sockets", []sockRow{row(afInet, "127.0.0.1:4000", 1000, 1), row(afInet, "0.0.0.0:4000", 1000, 2)}, "127.0.0.1:4000", 1000, 0, false, false},
		{"the same socket twice", []sockRow{row(afInet, "127.0.0.1:4000", 1000, 1), row(afInet, "127.0.0.1:4000", 1000, 1)}, "127.0.0.1:4000", 1000, 1, false, false},
		{"no socket", []sockRow{row(afInet, "127.0.0.2:4000", 1000, 1)}, "127.0.0.1:4000", 0, 0, false, true},
		{"remote host", nil, "192.0.2.7:4000", 0, 0, false, true},
	}
	for _, tt := range tests {
		uid, inode, err := ownerOf(tt.rows, ap(tt.addr))
		switch {
		case tt.ambiguous:
			if !errors.Is(err, errAmbiguous) {
				t.Errorf("%s: %d, %d, %v; want ambiguous", tt.name, uid, inode, err)
			}
		case tt.none:
			if err == nil || errors.Is(err, errAmbiguous) {
				t.Errorf("%s: %d, %d, %v; want no socket", tt.name, uid, inode, err)
			}
		case err != nil || uid != tt.uid || inode != tt.inode:
			t.Errorf("%s: %d, %d, %v; want %d, %d", tt.name, uid, inode, err, tt.uid, tt.inode)
		}
	}
}

// TestSockTable asks the running kernel about sockets this test holds.
func TestSockTable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the socket table is read on Linux only")
	}
	table, err := openSockTable()
	if err != nil {
		t.Fatal(err)
	}
	defer table.close()
	me := uint32(os.Getuid())

	dev, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	devAddr := dev.LocalAddr().(*net.UDPAddr).AddrPort()

	for name, dial := range map[string]func() (*net.UDPConn, error){
		"bound":     func() (*net.UDPConn, error) { return net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) },
		"connected": func() (*net.UDPConn, error) { return net.DialUDP("udp", nil, dev.LocalAddr().(*net.UDPAddr)) },
		"wildcard":  func() (*net.UDPConn, error) { return net.ListenUDP("udp4", &net.UDPAddr{}) },
	} {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// What the device sees as the sender: its address and port.
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), c.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		rows, err := table.bound(from)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		uid, inode, err := ownerOf(rows, from)
		if err != nil || uid != me || inode == 0 {
			t.Fatalf("%s: ownerOf = %d, %d, %v; rows %+v", name, uid, inode, err, rows)
		}
		row, err := table.receiver(devAddr, from)
		if err != nil || row.inode != inode || row.uid != me {
			t.Fatalf("%s: receiver = %+v, %v; want inode %d", name, row, err, inode)
		}
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	gone := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	if _, err := table.receiver(devAddr, gone); !errors.Is(err, errNoSuchSocket) {
		t.Fatalf("receiver of a closed socket = %v", err)
	}
	if uid, err := ListenerOwner(devAddr); err != nil || uid != me {
		t.Fatalf("ListenerOwner = %d, %v", uid, err)
	}
}

// fakeTable is a socket table the test edits.
type fakeTable struct {
	rows          []sockRow
	full, receivs int
}

func (f *fakeTable) bound(netip.AddrPort) ([]sockRow, error) {
	f.full++
	return f.rows, nil
}

func (f *fakeTable) receiver(_, peer netip.AddrPort) (sockRow, error) {
	f.receivs++
	for _, r := range f.rows {
		if r.local == peer {
			return r, nil
		}
	}
	return sockRow{}, errNoSuchSocket
}

// report returns an init packet of cmd, or a continuation packet if cmd
// is 0.
func report(cmd byte) []byte {
	r := make([]byte, 64)
	copy(r, "\x01\x02\x03\x04")
	r[4] = cmd
	return r
}

// TestSenderFilterPortReuse: another user who binds a served client's
// address and port after it closed inherits nothing: the next init packet
// finds another socket and is refused, and so are the continuation
// packets after it.
func TestSenderFilterPortReuse(t *testing.T) {
	t.Parallel()
	from := ap("127.0.0.1:4000")
	table := &fakeTable{rows: []sockRow{{family: afInet, local: from, uid: 1000, inode: 1}}}
	var logs testkit.SyncBuffer
	f := newSenderFilter(table, ap("127.0.0.1:8111"), map[uint32]bool{1000: true, 0: true}, newTestLogger(&logs))
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	step := func(r []byte, reboot, want bool) {
		t.Helper()
		now = now.Add(time.Millisecond)
		if got := f.allowed(r, from, reboot); got != want {
			t.Fatalf("allowed(% X…) = %v, want %v", r[:5], got, want)
		}
	}
	step(report(0x86), false, true) // INIT: full lookup
	step(report(0x90), false, true) // CBOR init packet: same socket
	step(report(0x00), false, true) // continuation
	if table.full != 1 || table.receivs != 1 {
		t.Fatalf("%d full lookups, %d receiver lookups; want 1 and 1", table.full, table.receivs)
	}

	// The client closes; nobody binds its address and port.
	table.rows = []sockRow{{family: afInet, local: from, uid: 65534, inode: 2}}
	step(report(0x90), false, false)
	step(report(0x00), false, false)
	step(report(0x91), false, false) // CANCEL
	step(magicReboot, true, false)
	if !strings.Contains(logs.String(), "uid=65534") || strings.Count(logs.String(), "dropped") != 1 {
		t.Fatalf("log (one line per second):\n%s", logs.String())
	}

	// Two users on one port (SO_REUSEADDR): refused at the next INIT.
	table.rows = []sockRow{{family: afInet, local: from, uid: 1000, inode: 3}, {family: afInet, local: from, uid: 65534, inode: 4}}
	step(report(0x86), false, false)

	// No socket at all (it closed, or a remote host): refused, and looked
	// up again only after refusedHold however many datagrams come.
	table.rows = nil
	step(report(0x86), false, false)
	n := table.full
	for range 50 {
		step(report(0x90), false, false)
	}
	if table.full != n {
		t.Fatalf("%d full lookups for a flood within %v", table.full-n, refusedHold)
	}
	// The owner's new socket gets the port back.
	table.rows = []sockRow{{family: afInet, local: from, uid: 1000, inode: 5}}
	now = now.Add(refusedHold)
	step(report(0x90), false, true)

	// After a long silence, a full lookup again.
	now = now.Add(recheckIdle)
	n = table.full
	step(report(0x00), false, true)
	if table.full != n+1 {
		t.Fatal("no full lookup after a long silence")
	}
}
