"""A working FIDO2 key, seen through python-fido2 0.9.1 over UDP.

Every test is independent: a test that needs an empty key resets it first
(virtkey runs with --reset-window 0, so reset is always allowed).
"""

import os
import struct
import time

import pytest

from fido2 import cbor
from fido2.client import Fido2Client
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CTAPHID
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity

import virtkey_udp
from vkutil import (
    EDDSA,
    ES256,
    FLAG_UP,
    RP1,
    RP2,
    check_assertion,
    check_new_credential,
    ctap_error,
    descriptor,
    make_cred,
    make_creds,
    new_cdh,
    params,
    user,
)

ERR = CtapError.ERR


def raw_cbor(dev, payload):
    """Sends a raw CTAPHID_CBOR message; returns (status, rest)."""
    resp = dev.call(CTAPHID.CBOR, payload)
    assert len(resp) >= 1, "empty CTAPHID_CBOR response"
    return resp[0], resp[1:]


# --------------------------------------------------------------------------
# getInfo


def test_get_info(empty_ctap):
    info = empty_ctap.info
    assert "FIDO_2_0" in info.versions
    assert "FIDO_2_1" in info.versions
    assert isinstance(info.aaguid, bytes) and len(info.aaguid) == 16

    opts = info.options
    assert opts.get("rk") is True, "options.rk must be true, got %r" % opts
    assert opts.get("plat") is False, "options.plat must be false, got %r" % opts
    # The first cut had no clientPin; once PIN support exists it must
    # read "supported, not set" on a freshly reset key.
    assert opts.get("clientPin") in (None, False), "fresh key must have no PIN set: %r" % opts

    assert info.algorithms, "getInfo must advertise algorithms (0x0A)"
    for a in info.algorithms:
        assert a.get("type") == "public-key", "bad algorithms entry %r" % a
    algs = [a["alg"] for a in info.algorithms]
    assert ES256 in algs and EDDSA in algs, "algorithms %r lack ES256/EdDSA" % algs

    assert info.transports == ["usb"]
    assert isinstance(info.max_msg_size, int) and info.max_msg_size >= 1024
    assert isinstance(info.firmware_version, int), "firmwareVersion (0x0E) missing"
    rem = info.remaining_disc_creds
    assert isinstance(rem, int) and rem > 0, "remainingDiscoverableCredentials (0x14): %r" % rem
    if info.max_cred_id_length is not None:
        assert info.max_cred_id_length >= 16
    if info.max_creds_in_list is not None:
        assert info.max_creds_in_list >= 1
    for k in info.data:
        assert isinstance(k, int), "getInfo key %r is not an integer" % k


def test_get_info_raw_is_canonical(dev):
    # Ctap2(strict_cbor=True) already re-encodes and compares; check the raw
    # bytes too so that a failure shows them.
    status, body = raw_cbor(dev, b"\x04")
    assert status == 0
    assert cbor.encode(cbor.decode(body)) == body, "non-canonical getInfo: %s" % body.hex()


# --------------------------------------------------------------------------
# makeCredential


def test_make_credential_resident_three_users(empty_ctap):
    ctap = empty_ctap
    rem0 = ctap.info.remaining_disc_creds
    alice, bob = make_creds(ctap, RP1, "alice", "bob")
    carol = make_cred(ctap, RP2, user("carol"))
    ids = {alice["id"], bob["id"], carol["id"]}
    assert len(ids) == 3, "credential IDs must be unique"

    info = ctap.get_info()
    if rem0 is not None:
        assert info.remaining_disc_creds == rem0 - 3

    # RP2 has only carol; RP1 has alice and bob.
    cdh = new_cdh()
    resp = ctap.get_assertion(RP2["id"], cdh)
    check_assertion(resp, cdh, RP2, carol)
    assert resp.number_of_credentials in (None, 1)
    assert resp.user and resp.user["id"] == carol["user"]["id"]

    cdh = new_cdh()
    resp = ctap.get_assertion(RP1["id"], cdh)
    assert resp.number_of_credentials == 2


def test_make_credential_non_resident(ctap):
    cred = make_cred(ctap, RP1, user("dave"), rk=False)
    cdh = new_cdh()
    resp = ctap.get_assertion(RP1["id"], cdh, [descriptor(cred["id"])])
    check_assertion(resp, cdh, RP1, cred)


def test_non_resident_is_not_discoverable(empty_ctap):
    make_cred(empty_ctap, RP1, user("dave"), rk=False)
    with ctap_error(ERR.NO_CREDENTIALS):
        empty_ctap.get_assertion(RP1["id"], new_cdh())


def test_make_credential_eddsa(ctap):
    cred = make_cred(ctap, RP1, user("erin"), algs=(EDDSA,))
    assert cred["key"][3] == EDDSA
    cdh = new_cdh()
    resp = ctap.get_assertion(RP1["id"], cdh, [descriptor(cred["id"])])
    check_assertion(resp, cdh, RP1, cred)


# ES512 (-36): a COSE algorithm virtkey does not implement.
ES512 = -36


def test_make_credential_picks_first_supported_algorithm(ctap):
    assert ES512 not in [a["alg"] for a in ctap.info.algorithms]
    cdh = new_cdh()
    att = ctap.make_credential(cdh, RP1, user("frank"), params(ES512, EDDSA, ES256))
    check_new_credential(att, cdh, RP1, alg=EDDSA, aaguid=ctap.info.aaguid)


def test_make_credential_unsupported_algorithm(ctap):
    with ctap_error(ERR.UNSUPPORTED_ALGORITHM):
        ctap.make_credential(new_cdh(), RP1, user("gina"), params(ES512))


def test_make_credential_exclude_list(ctap):
    rk = make_cred(ctap, RP1, user("hank"))
    nonrk = make_cred(ctap, RP1, user("hank2"), rk=False)
    other_rp = make_cred(ctap, RP2, user("hank3"), rk=False)

    for cred in (rk, nonrk):
        with ctap_error(ERR.CREDENTIAL_EXCLUDED):
            ctap.make_credential(
                new_cdh(), RP1, user("hank"), params(), exclude_list=[descriptor(cred["id"])],
                options={"rk": True},
            )
        with ctap_error(ERR.CREDENTIAL_EXCLUDED):
            ctap.make_credential(
                new_cdh(), RP1, user("ivan"), params(),
                exclude_list=[descriptor(os.urandom(48)), descriptor(cred["id"])],
            )

    # Unknown IDs and another RP's credential do not exclude.
    make_cred(
        ctap, RP1, user("ivan"), rk=False,
        exclude=[descriptor(os.urandom(64)), descriptor(other_rp["id"])],
    )


def test_make_credential_none_attestation_preference(ctap):
    # CTAP 2.2 attestationFormatsPreference (0x0B). An authenticator that
    # honours it returns "none" (empty attStmt); one that does not must ignore
    # the unknown key and still answer with a valid attestation.
    cdh = new_cdh()
    req = {1: cdh, 2: RP1, 3: user("judy"), 4: params(), 0x0B: ["none"]}
    from fido2.ctap2 import AttestationObject

    att = ctap.send_cbor(Ctap2.CMD.MAKE_CREDENTIAL, req, parse=AttestationObject)
    assert att.fmt in ("none", "packed")
    if "none" in ctap.info.data.get(0x16, []):  # getInfo attestationFormats
        assert att.fmt == "none", "advertises attestationFormats none but ignored the preference"
    check_new_credential(att, cdh, RP1, aaguid=ctap.info.aaguid)


def test_resident_same_user_is_replaced(empty_ctap):
    ctap = empty_ctap
    first = make_cred(ctap, RP1, user("kate"))
    second = make_cred(ctap, RP1, user("kate"))
    assert first["id"] != second["id"]
    cdh = new_cdh()
    resp = ctap.get_assertion(RP1["id"], cdh)
    assert resp.number_of_credentials in (None, 1), "same rp+user.id must overwrite"
    check_assertion(resp, cdh, RP1, second)


# --------------------------------------------------------------------------
# getAssertion / getNextAssertion


def test_get_assertion_allow_list(ctap):
    cred = make_cred(ctap, RP1, user("liam"))
    cdh = new_cdh()
    resp = ctap.get_assertion(RP1["id"], cdh, [descriptor(cred["id"])])
    counter = check_assertion(resp, cdh, RP1, cred)
    assert counter > cred["counter"]
    # Signature check done by hand as well, with the key parsed from COSE.
    key = CoseKey.parse(dict(cred["att"].auth_data.credential_data.public_key))
    key.verify(resp.auth_data + cdh, resp.signature)

    # Unknown IDs in the list are skipped.
    cdh = new_cdh()
    resp = ctap.get_assertion(
        RP1["id"], cdh, [descriptor(os.urandom(70)), descriptor(cred["id"])]
    )
    check_assertion(resp, cdh, RP1, cred)


def test_get_assertion_unknown_or_foreign_credential(ctap):
    cred = make_cred(ctap, RP1, user("mia"), rk=False)
    with ctap_error(ERR.NO_CREDENTIALS):
        ctap.get_assertion(RP1["id"], new_cdh(), [descriptor(os.urandom(64))])
    with ctap_error(ERR.NO_CREDENTIALS):  # bound to RP1, asked for RP2
        ctap.get_assertion(RP2["id"], new_cdh(), [descriptor(cred["id"])])
    # Corrupt one byte of a valid ID.
    bad = bytearray(cred["id"])
    bad[len(bad) // 2] ^= 0x01
    with ctap_error(ERR.NO_CREDENTIALS):
        ctap.get_assertion(RP1["id"], new_cdh(), [descriptor(bytes(bad))])


def test_get_assertion_up_false(ctap):
    cred = make_cred(ctap, RP1, user("nora"))
    cdh = new_cdh()
    resp = ctap.get_assertion(
        RP1["id"], cdh, [descriptor(cred["id"])], options={"up": False}
    )
    check_assertion(resp, cdh, RP1, cred, up=False)


def test_discoverable_two_accounts(empty_ctap):
    ctap = empty_ctap
    alice, bob = make_creds(ctap, RP1, "alice", "bob")  # bob is the newest
    make_cred(ctap, RP2, user("zed"))  # another RP: must not show up

    cdh = new_cdh()
    first = ctap.get_assertion(RP1["id"], cdh)
    assert first.number_of_credentials == 2
    check_assertion(first, cdh, RP1, bob)
    assert first.user is not None and first.user["id"] == bob["user"]["id"], (
        "newest credential first, with its user entity"
    )

    second = ctap.get_next_assertion()
    check_assertion(second, cdh, RP1, alice)
    assert second.user is not None and second.user["id"] == alice["user"]["id"]
    assert second.number_of_credentials is None, "numberOfCredentials only in the first response"
    assert second.auth_data.rp_id_hash == first.auth_data.rp_id_hash

    with ctap_error(ERR.NOT_ALLOWED):
        ctap.get_next_assertion()


def test_get_assertions_helper(empty_ctap):
    ctap = empty_ctap
    make_creds(ctap, RP1, "alice", "bob", "carl")
    cdh = new_cdh()
    resps = ctap.get_assertions(RP1["id"], cdh)
    names = [r.user["id"] for r in resps]
    assert names == [b"user-carl", b"user-bob", b"user-alice"]


def test_get_next_assertion_without_get_assertion(empty_ctap):
    with ctap_error(ERR.NOT_ALLOWED):
        empty_ctap.get_next_assertion()


def test_get_next_assertion_after_other_command(empty_ctap):
    ctap = empty_ctap
    make_creds(ctap, RP1, "alice", "bob")
    first = ctap.get_assertion(RP1["id"], new_cdh())
    assert first.number_of_credentials == 2
    ctap.get_info()  # any other command ends the getAssertion sequence
    with ctap_error(ERR.NOT_ALLOWED):
        ctap.get_next_assertion()

    first = ctap.get_assertion(RP1["id"], new_cdh())
    make_cred(ctap, RP2, user("olga"), rk=False)
    with ctap_error(ERR.NOT_ALLOWED):
        ctap.get_next_assertion()


def test_get_assertion_no_credentials_for_rp(empty_ctap):
    make_cred(empty_ctap, RP1, user("alice"))
    with ctap_error(ERR.NO_CREDENTIALS):
        empty_ctap.get_assertion(RP2["id"], new_cdh())


def test_counters_strictly_increase(ctap):
    a = make_cred(ctap, RP1, user("paul"))
    b = make_cred(ctap, RP1, user("quinn"), rk=False)
    last = {a["id"]: a["counter"], b["id"]: b["counter"]}
    for i in range(6):
        cred = (a, b)[i % 2]
        cdh = new_cdh()
        resp = ctap.get_assertion(RP1["id"], cdh, [descriptor(cred["id"])])
        c = check_assertion(resp, cdh, RP1, cred)
        assert c > last[cred["id"]], "counter did not increase: %d after %d" % (
            c,
            last[cred["id"]],
        )
        last[cred["id"]] = c


# --------------------------------------------------------------------------
# Power cycle (magic reboot) and reset


def test_magic_reboot_power_cycle(empty_ctap, addr, open_dev):
    ctap = empty_ctap
    alice, bob = make_creds(ctap, RP1, "alice", "bob")
    cdh = new_cdh()
    resp = ctap.get_assertion(RP1["id"], cdh, [descriptor(alice["id"])])
    last_alice = check_assertion(resp, cdh, RP1, alice)

    # Leave a getAssertion sequence pending, then power-cycle.
    first = ctap.get_assertion(RP1["id"], new_cdh())
    assert first.number_of_credentials == 2
    virtkey_udp.reboot(addr)
    time.sleep(0.2)

    # Volatile state is gone: the pending getNextAssertion state.
    with ctap_error(ERR.NOT_ALLOWED):
        ctap.get_next_assertion()

    # A new client (new INIT) works; credentials and counters survived.
    ctap2 = Ctap2(open_dev())
    assert ctap2.info.aaguid == ctap.info.aaguid
    cdh = new_cdh()
    resp = ctap2.get_assertion(RP1["id"], cdh, [descriptor(alice["id"])])
    c = check_assertion(resp, cdh, RP1, alice)
    assert c > last_alice, "counter went from %d to %d across a power cycle" % (last_alice, c)
    cdh = new_cdh()
    resps = ctap2.get_assertions(RP1["id"], cdh)
    assert [r.credential["id"] for r in resps] == [bob["id"], alice["id"]]
    for r, cred in zip(resps, (bob, alice)):
        check_assertion(r, cdh, RP1, cred)


def test_magic_reboot_twice_then_ping(addr, open_dev):
    virtkey_udp.reboot(addr)
    virtkey_udp.reboot(addr)
    time.sleep(0.2)
    dev = open_dev()
    assert dev.ping(b"still alive") == b"still alive"
    Ctap2(dev).get_info()


def test_reset_removes_credentials(ctap):
    ctap.reset()
    rem_max = ctap.get_info().remaining_disc_creds
    alice = make_cred(ctap, RP1, user("alice"))
    make_cred(ctap, RP2, user("bob"))
    if rem_max is not None:
        assert ctap.get_info().remaining_disc_creds == rem_max - 2

    ctap.reset()
    with ctap_error(ERR.NO_CREDENTIALS):
        ctap.get_assertion(RP1["id"], new_cdh(), [descriptor(alice["id"])])
    with ctap_error(ERR.NO_CREDENTIALS):
        ctap.get_assertion(RP1["id"], new_cdh())
    with ctap_error(ERR.NO_CREDENTIALS):
        ctap.get_assertion(RP2["id"], new_cdh())
    assert ctap.get_info().remaining_disc_creds == rem_max


def test_reset_invalidates_non_resident_credentials(ctap):
    # CTAP 2.1 §6.6: reset invalidates *all* generated credentials.
    cred = make_cred(ctap, RP1, user("rita"), rk=False)
    ctap.reset()
    with ctap_error(ERR.NO_CREDENTIALS):
        ctap.get_assertion(RP1["id"], new_cdh(), [descriptor(cred["id"])])


def test_reset_keeps_aaguid_and_key_working(ctap):
    aaguid = ctap.info.aaguid
    ctap.reset()
    info = ctap.get_info()
    assert info.aaguid == aaguid
    cred = make_cred(ctap, RP1, user("sam"), info=info)
    cdh = new_cdh()
    resp = ctap.get_assertion(RP1["id"], cdh, [descriptor(cred["id"])])
    check_assertion(resp, cdh, RP1, cred)


def test_selection(ctap):
    assert ctap.selection() is None


# --------------------------------------------------------------------------
# A full WebAuthn ceremony: python-fido2 client + python-fido2 RP server


def test_webauthn_ceremony(dev, addr, open_dev):
    Ctap2(dev).reset()
    origin = "https://example.com"
    client = Fido2Client(open_dev(), origin)
    assert hasattr(client, "ctap2"), "Fido2Client fell back to CTAP1: getInfo failed"
    server = Fido2Server(PublicKeyCredentialRpEntity("example.com", "Example RP"))

    def register(name):
        uid = ("uid-" + name).encode()
        options, state = server.register_begin(
            {"id": uid, "name": name, "displayName": name.title()},
            resident_key=True,
            user_verification="discouraged",
        )
        att = client.make_credential(options["publicKey"])
        auth_data = server.register_complete(state, att.client_data, att.attestation_object)
        # Check the attestation statement as well (Fido2Server ignores it by default).
        from vkutil import verify_attestation

        verify_attestation(att.attestation_object, att.client_data.hash)
        return uid, auth_data.credential_data

    uid_a, cred_a = register("alice")

    # Login with allowCredentials.
    options, state = server.authenticate_begin([cred_a], user_verification="discouraged")
    sel = client.get_assertion(options["publicKey"])
    assert len(sel.get_assertions()) == 1
    r = sel.get_response(0)
    server.authenticate_complete(
        state, [cred_a], r.credential_id, r.client_data, r.authenticator_data, r.signature
    )

    # Second account, then a discoverable login (no allowCredentials).
    uid_b, cred_b = register("bob")
    options, state = server.authenticate_begin(user_verification="discouraged")
    sel = client.get_assertion(options["publicKey"])
    assertions = sel.get_assertions()
    assert len(assertions) == 2
    handles = []
    for i in range(2):
        r = sel.get_response(i)
        server.authenticate_complete(
            state, [cred_a, cred_b], r.credential_id, r.client_data,
            r.authenticator_data, r.signature,
        )
        handles.append(r.user_handle)
    assert handles == [uid_b, uid_a]

    # Excluding an existing credential fails the ceremony.
    from fido2.client import ClientError

    options, state = server.register_begin(
        {"id": uid_a, "name": "alice"}, credentials=[cred_a], resident_key=True,
        user_verification="discouraged",
    )
    with pytest.raises(ClientError) as exc:
        client.make_credential(options["publicKey"])
    assert exc.value.code == ClientError.ERR.DEVICE_INELIGIBLE
    assert exc.value.cause.code == ERR.CREDENTIAL_EXCLUDED


# --------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "payload",
    [
        b"\x01\xa1\x01",  # map(1) with the value missing
        b"\x01\xa1",  # map(1) with nothing
        b"\x01\xff",  # a lone "break"
        b"\x01\x5a\xff\xff\xff\xff",  # byte string longer than the message
        b"\x02\xa2\x01\x6bexample.com",  # getAssertion, map(2) with one pair
    ],
)
def test_malformed_cbor(dev, payload):
    status, _ = raw_cbor(dev, payload)
    assert status == ERR.INVALID_CBOR, "payload %s: status %#x" % (payload.hex(), status)


def test_make_credential_missing_client_data_hash(ctap):
    with ctap_error(ERR.MISSING_PARAMETER):
        ctap.send_cbor(Ctap2.CMD.MAKE_CREDENTIAL, {2: RP1, 3: user("x"), 4: params()})


@pytest.mark.parametrize("missing", [2, 3, 4])
def test_make_credential_missing_other_parameters(ctap, missing):
    req = {1: new_cdh(), 2: RP1, 3: user("x"), 4: params()}
    del req[missing]
    with ctap_error(ERR.MISSING_PARAMETER):
        ctap.send_cbor(Ctap2.CMD.MAKE_CREDENTIAL, req)


def test_get_assertion_missing_parameters(ctap):
    with ctap_error(ERR.MISSING_PARAMETER):
        ctap.send_cbor(Ctap2.CMD.GET_ASSERTION, {2: new_cdh()})
    with ctap_error(ERR.MISSING_PARAMETER):
        ctap.send_cbor(Ctap2.CMD.GET_ASSERTION, {1: RP1["id"]})


def test_make_credential_rp_not_a_map(ctap):
    with ctap_error(ERR.CBOR_UNEXPECTED_TYPE):
        ctap.send_cbor(
            Ctap2.CMD.MAKE_CREDENTIAL, {1: new_cdh(), 2: "example.com", 3: user("x"), 4: params()}
        )


@pytest.mark.parametrize(
    "key,value",
    [
        (1, "not bytes"),  # clientDataHash as text
        (3, b"user"),  # user as bytes
        (4, {"type": "public-key", "alg": -7}),  # params as a map
    ],
)
def test_make_credential_wrong_types(ctap, key, value):
    req = {1: new_cdh(), 2: RP1, 3: user("x"), 4: params()}
    req[key] = value
    with ctap_error(ERR.CBOR_UNEXPECTED_TYPE):
        ctap.send_cbor(Ctap2.CMD.MAKE_CREDENTIAL, req)


@pytest.mark.parametrize("cmd", [0x03, 0x05, 0x20, 0x3F])
def test_unknown_command(dev, cmd):
    status, rest = raw_cbor(dev, bytes([cmd]))
    assert status == ERR.INVALID_COMMAND, "command %#x: status %#x" % (cmd, status)
    assert rest == b""


def test_unknown_ctaphid_command(dev):
    with ctap_error(ERR.INVALID_COMMAND):
        dev.call(0x30, b"")


def test_empty_cbor_message(dev):
    # CTAPHID_CBOR with no payload at all: CTAPHID ERROR INVALID_LEN.
    with ctap_error(ERR.INVALID_LENGTH):
        dev.call(CTAPHID.CBOR, b"")


def test_ping_multi_packet(dev):
    msg = os.urandom(1000)
    assert dev.ping(msg) == msg


def test_init_response(dev):
    assert dev.version == 2, "CTAPHID protocol version must be 2"
    caps = dev.capabilities
    assert caps & 0x04, "CBOR capability missing (caps=%#x)" % caps
    # A second INIT on the allocated channel resyncs it and echoes the nonce.
    nonce = os.urandom(8)
    resp = dev.call(CTAPHID.INIT, nonce)
    assert resp[:8] == nonce
    cid = struct.unpack(">I", resp[8:12])[0]
    assert cid not in (0, 0xFFFFFFFF)
