"""CTAPHID over UDP, report by report (CTAP 2.1 §11.2 and the server rules in hid/doc.go).

These tests talk to the key with RawClient: every datagram is one 64-byte
report. They do not depend on any CTAP2 command except getInfo.
"""

import os
import time

import pytest

from virtkey_udp import MAGIC_REBOOT, RawClient, reboot

PING, INIT, CBOR, CANCEL, WINK, KEEPALIVE, ERROR = 0x01, 0x06, 0x10, 0x11, 0x08, 0x3B, 0x3F
ERR_INVALID_CMD, ERR_INVALID_LEN, ERR_INVALID_SEQ = 0x01, 0x03, 0x04
ERR_MSG_TIMEOUT, ERR_CHANNEL_BUSY, ERR_INVALID_CHANNEL = 0x05, 0x06, 0x0B


@pytest.fixture
def raw(addr):
    c = RawClient(addr)
    yield c
    c.close()


@pytest.fixture
def raw2(addr):
    c = RawClient(addr)
    yield c
    c.close()


def expect_error(client, cid, code, timeout=2.0):
    cmd, data = client.recv_msg(cid, timeout)
    assert cmd == ERROR, "want CTAPHID ERROR %#x, got cmd %#x payload %s" % (code, cmd, data.hex())
    assert data[:1] == bytes([code]), "want CTAPHID error %#x, got %s" % (code, data.hex())


def drain(client, quiet=0.2):
    """Discards whatever else arrives until the key is quiet."""
    while client.recv(timeout=quiet) is not None:
        pass


def ping(client, cid, data):
    """Sends a (possibly multi-packet) PING and returns the echo."""
    client.send_init(cid, PING, len(data), data[:57])
    rest, seq = data[57:], 0
    while rest:
        client.send_cont(cid, seq, rest[:59])
        rest, seq = rest[59:], seq + 1
    cmd, echo = client.recv_msg(cid)
    assert cmd == PING, "PING answered with cmd %#x: %s" % (cmd, echo.hex())
    return echo


def test_init_allocates_distinct_channels(raw):
    nonce = os.urandom(8)
    raw.send_init(RawClient.BROADCAST, INIT, 8, nonce)
    cmd, data = raw.recv_msg(RawClient.BROADCAST)
    assert cmd == INIT
    assert len(data) >= 17
    assert data[:8] == nonce
    cid = int.from_bytes(data[8:12], "big")
    assert cid not in (0, RawClient.BROADCAST)
    assert data[12] == 2, "CTAPHID protocol version must be 2"
    assert data[16] & 0x04, "CBOR capability missing"
    assert raw.init() != cid, "two INITs allocated the same channel"


def test_replies_go_to_the_sender(raw, raw2):
    c1, c2 = raw.init(), raw2.init()
    m1, m2 = os.urandom(20), os.urandom(20)
    raw.send_init(c1, PING, len(m1), m1)
    raw2.send_init(c2, PING, len(m2), m2)
    assert raw2.recv_msg(c2) == (PING, m2)
    assert raw.recv_msg(c1) == (PING, m1)


def test_ping_multi_packet_max_sizes(raw):
    cid = raw.init()
    for n in (0, 1, 57, 58, 116, 117, 1000, 7609):
        msg = os.urandom(n)
        assert ping(raw, cid, msg) == msg, "PING of %d bytes" % n


def test_made_up_channel_is_accepted(raw):
    cid = 0x1234ABCD
    assert ping(raw, cid, b"hello") == b"hello"


def test_cid_zero_is_invalid(raw):
    raw.send_init(0, PING, 4, b"ping")
    expect_error(raw, 0, ERR_INVALID_CHANNEL)


def test_non_init_on_broadcast_is_invalid(raw):
    raw.send_init(RawClient.BROADCAST, PING, 4, b"ping")
    expect_error(raw, RawClient.BROADCAST, ERR_INVALID_CHANNEL)


def test_unknown_ctaphid_command(raw):
    cid = raw.init()
    raw.send_init(cid, 0x2A, 0)
    expect_error(raw, cid, ERR_INVALID_CMD)


def test_bcnt_too_large(raw):
    cid = raw.init()
    raw.send_init(cid, PING, 7610, b"x" * 57)
    expect_error(raw, cid, ERR_INVALID_LEN)


def test_empty_cbor_is_invalid_len(raw):
    cid = raw.init()
    raw.send_init(cid, CBOR, 0)
    expect_error(raw, cid, ERR_INVALID_LEN)


def skip_seq(raw, cid):
    raw.send_cont(cid, 0, b"b" * 59)
    raw.send_cont(cid, 2, b"c" * 59)  # 1 skipped


def init_packet(raw, cid):
    raw.send_init(cid, PING, 4, b"ping")  # not a continuation


@pytest.mark.parametrize("interrupt", [skip_seq, init_packet])
def test_broken_sequence(raw, interrupt):
    cid = raw.init()
    raw.send_init(cid, PING, 200, b"a" * 57)
    interrupt(raw, cid)
    expect_error(raw, cid, ERR_INVALID_SEQ)
    drain(raw)
    assert ping(raw, cid, b"after") == b"after"


def test_init_mid_message_resyncs(raw):
    cid = raw.init()
    raw.send_init(cid, PING, 100, b"a" * 57)
    nonce = os.urandom(8)
    raw.send_init(cid, INIT, 8, nonce)
    cmd, data = raw.recv_msg(cid)
    assert cmd == INIT and data[:8] == nonce
    assert ping(raw, cid, b"after") == b"after"


def test_incomplete_message_times_out(raw):
    cid = raw.init()
    t0 = time.monotonic()
    raw.send_init(cid, PING, 100, b"a" * 57)
    expect_error(raw, cid, ERR_MSG_TIMEOUT, timeout=3.0)
    dt = time.monotonic() - t0
    assert 0.3 <= dt <= 1.5, "MSG_TIMEOUT after %.3f s, want about 0.5 s" % dt
    assert ping(raw, cid, b"after") == b"after"


def test_other_channel_busy_while_buffering(raw, raw2):
    c1, c2 = raw.init(), raw2.init()
    raw.send_init(c1, PING, 100, b"a" * 57)
    t0 = time.monotonic()
    raw2.send_init(c2, PING, 4, b"ping")
    expect_error(raw2, c2, ERR_CHANNEL_BUSY, timeout=1.0)
    assert time.monotonic() - t0 < 0.3, "CHANNEL_BUSY must come promptly"
    # A continuation from another channel is ignored; the first message completes.
    raw2.send_cont(c2, 0, b"z" * 59)
    raw.send_cont(c1, 0, b"b" * 43)
    assert raw.recv_msg(c1) == (PING, b"a" * 57 + b"b" * 43)


def test_cancel_without_request_gets_no_answer(raw):
    cid = raw.init()
    raw.send_init(cid, CANCEL, 0)
    assert raw.recv(timeout=0.3) is None, "CANCEL must not be answered"
    assert ping(raw, cid, b"after") == b"after"


@pytest.mark.parametrize("size", [0, 1, 10, 63, 65, 128])
def test_wrong_size_datagrams_are_ignored(raw, size):
    cid = raw.init()
    junk = (cid.to_bytes(4, "big") + bytes([0x80 | PING, 0, 4]) + b"junk" + os.urandom(128))[:size]
    raw.send_raw(junk)
    assert ping(raw, cid, b"after") == b"after"


def test_magic_reboot_gets_no_answer_and_key_comes_back(raw, addr):
    cid = raw.init()
    raw.send_raw(MAGIC_REBOOT)
    assert raw.recv(timeout=0.3) is None, "the magic reboot report must not be answered"
    reboot(addr)
    time.sleep(0.2)
    cid = raw.init()
    assert ping(raw, cid, b"back") == b"back"


def test_getinfo_over_raw_reports(raw):
    cid = raw.init()
    raw.send_init(cid, CBOR, 1, b"\x04")
    cmd, data = raw.recv_msg(cid)
    assert cmd == CBOR
    assert data[0] == 0x00, "getInfo status %#x" % data[0]
