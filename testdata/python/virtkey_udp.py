"""CTAPHID over UDP for python-fido2 0.9.1 (SoloKeys-simulation compatible).

Each datagram carries exactly one 64-byte CTAPHID report, without a report-ID
byte, in both directions. virtkey replies to the datagram's source address, so
every connection binds its own ephemeral port on 127.0.0.1.

Usage:

    from virtkey_udp import open_device, reboot
    dev = open_device("127.0.0.1:8111")      # fido2.hid.CtapHidDevice
    ctap = fido2.ctap2.Ctap2(dev)
    reboot("127.0.0.1:8111")                  # simulated power cycle

The address defaults to the environment variable VIRTKEY_UDP.
"""

import os
import socket
import time

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

REPORT_SIZE = 64

# The fixed 64-byte report that the SoloKeys simulation treats as a power cycle.
MAGIC_REBOOT = bytes.fromhex(
    "ac1052ca95e569de69e02ebff333485f13f9b2da34c5a8a340526697a9ab2e0b"
    "394d8d04973c134005be1a0140bff6045bb26eb77a73eaa47813f6b49a7250dc"
)
assert len(MAGIC_REBOOT) == REPORT_SIZE

# pid.codes test VID/PID; only informational for a UDP device.
_VID, _PID = 0x1209, 0x000A

DEFAULT_TIMEOUT = float(os.environ.get("VIRTKEY_UDP_TIMEOUT", "10"))


class UdpTimeout(OSError):
    """No report arrived from the authenticator within the timeout."""


def parse_addr(addr=None):
    """Turns "host:port" (default: $VIRTKEY_UDP) into a (host, port) tuple."""
    if addr is None:
        addr = os.environ.get("VIRTKEY_UDP")
        if not addr:
            raise ValueError("no device address: set VIRTKEY_UDP=127.0.0.1:PORT")
    if isinstance(addr, tuple):
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise ValueError("device address must be host:port, got %r" % addr)
    return host, int(port)


class UdpCtapHidConnection(CtapHidConnection):
    """A CtapHidConnection that exchanges 64-byte reports as UDP datagrams."""

    def __init__(self, addr=None, timeout=DEFAULT_TIMEOUT, bind_host="127.0.0.1"):
        self.addr = parse_addr(addr)
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind_host, 0))
        # connect() filters datagrams to the authenticator's address and turns
        # ICMP port-unreachable (no server) into ConnectionRefusedError.
        self.sock.connect(self.addr)
        self.sock.settimeout(timeout)

    def write_packet(self, data):
        data = bytes(data)
        # python-fido2 0.9.1 passes the bare 64-byte report (its Linux backend
        # prepends the report ID itself); tolerate a leading report ID 0 anyway.
        if len(data) == REPORT_SIZE + 1 and data[0] == 0:
            data = data[1:]
        if len(data) != REPORT_SIZE:
            raise ValueError("CTAPHID report must be %d bytes, got %d" % (REPORT_SIZE, len(data)))
        sent = self.sock.send(data)
        if sent != REPORT_SIZE:
            raise OSError("short UDP send: %d of %d bytes" % (sent, REPORT_SIZE))

    def read_packet(self):
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise UdpTimeout(
                "no CTAPHID report from %s:%d within %.1f s" % (self.addr + (self.timeout,))
            )
        if len(data) != REPORT_SIZE:
            raise OSError(
                "authenticator sent a %d-byte datagram, want %d: %s"
                % (len(data), REPORT_SIZE, data.hex())
            )
        return data

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def open_connection(addr=None, timeout=DEFAULT_TIMEOUT):
    return UdpCtapHidConnection(addr, timeout)


def open_device(addr=None, timeout=DEFAULT_TIMEOUT):
    """Opens the authenticator at addr ("host:port") as a fido2 CtapHidDevice.

    The constructor sends CTAPHID_INIT on the broadcast channel and allocates a
    channel, like a HID client does.
    """
    host, port = parse_addr(addr)
    conn = UdpCtapHidConnection((host, port), timeout)
    desc = HidDescriptor("udp:%s:%d" % (host, port), _VID, _PID, REPORT_SIZE, REPORT_SIZE)
    try:
        return CtapHidDevice(desc, conn)
    except BaseException:
        conn.close()
        raise


def reboot(addr=None):
    """Sends the magic reboot report: a simulated power cycle of the key.

    The report gets no answer. The authenticator drops its volatile state
    (channels, getNextAssertion state, PIN tokens, key agreement key) and keeps
    credentials and counters.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.connect(parse_addr(addr))
        s.send(MAGIC_REBOOT)
        # virtkey serves only its own user: it looks up who owns the sending
        # socket, which must still exist then. An INIT answered on the same
        # socket shows the reboot was read (datagrams are read in order), so
        # the socket stays open until then.
        nonce = os.urandom(8)
        s.send((b"\xff\xff\xff\xff\x86\x00\x08" + nonce).ljust(REPORT_SIZE, b"\0"))
        s.settimeout(DEFAULT_TIMEOUT)
        while True:
            r = s.recv(4096)
            if r[:5] == b"\xff\xff\xff\xff\x86" and r[7:15] == nonce:
                return


def wait_ready(addr=None, timeout=10.0):
    """Polls with CTAPHID_INIT until the authenticator answers (or raises)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            dev = open_device(addr, timeout=0.3)
            dev.close()
            return
        except Exception as e:  # any failure means "not yet"
            last = e
            time.sleep(0.1)
    raise TimeoutError("authenticator at %s not ready: %r" % (addr, last))


class RawClient:
    """Report-level access for CTAPHID transport tests (no reassembly magic).

    send() pads to 64 bytes; recv() returns one 64-byte report or None on
    timeout.
    """

    BROADCAST = 0xFFFFFFFF

    def __init__(self, addr=None):
        self.addr = parse_addr(addr)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(self.addr)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.send(bytes(data))

    def send(self, data):
        data = bytes(data)
        assert len(data) <= REPORT_SIZE
        self.sock.send(data.ljust(REPORT_SIZE, b"\0"))

    def send_init(self, cid, cmd, bcnt, data=b""):
        """An initialization packet: CID | CMD|0x80 | BCNT | data (≤57 bytes)."""
        self.send(cid.to_bytes(4, "big") + bytes([0x80 | cmd]) + bcnt.to_bytes(2, "big") + data[:57])

    def send_cont(self, cid, seq, data=b""):
        self.send(cid.to_bytes(4, "big") + bytes([seq & 0x7F]) + data[:59])

    def recv(self, timeout=2.0):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        if len(data) != REPORT_SIZE:
            raise OSError("%d-byte datagram from the authenticator: %s" % (len(data), data.hex()))
        return data

    def recv_msg(self, cid, timeout=2.0, skip_keepalive=True):
        """Reassembles one response on cid; returns (cmd, payload)."""
        while True:
            r = self.recv(timeout)
            if r is None:
                raise UdpTimeout("no response on CID %08x" % cid)
            if int.from_bytes(r[:4], "big") != cid:
                raise AssertionError("response on CID %s, want %08x: %s" % (r[:4].hex(), cid, r.hex()))
            if not r[4] & 0x80:
                raise AssertionError("expected an init packet, got %s" % r.hex())
            cmd = r[4] & 0x7F
            if cmd == 0x3B and skip_keepalive:
                continue
            bcnt = int.from_bytes(r[5:7], "big")
            data = r[7:]
            seq = 0
            while len(data) < bcnt:
                c = self.recv(timeout)
                if c is None:
                    raise UdpTimeout("missing continuation %d on CID %08x" % (seq, cid))
                assert int.from_bytes(c[:4], "big") == cid and c[4] == seq, c.hex()
                data += c[5:]
                seq += 1
            return cmd, data[:bcnt]

    def init(self, cid=BROADCAST, nonce=None):
        """CTAPHID INIT; returns the (new) CID."""
        nonce = nonce or os.urandom(8)
        self.send_init(cid, 0x06, 8, nonce)
        while True:
            cmd, data = self.recv_msg(cid)
            assert cmd == 0x06, "INIT answered with cmd %#x: %s" % (cmd, data.hex())
            if data[:8] == nonce:
                return int.from_bytes(data[8:12], "big")
