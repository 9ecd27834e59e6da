"""Extensions and large blobs, seen through python-fido2 0.9.1 over UDP.

hmac-secret (PIN/UV protocols 1 and 2), credProtect, credBlob, largeBlobKey
with authenticatorLargeBlobs, and minPinLength. Every test starts from a
reset key (the empty_ctap fixture; virtkey runs with --reset-window 0).

python-fido2 0.9.1's LargeBlobs.write_blob_array sends `length` on every
fragment, which CTAP allows only on the first (offset 0): it works for arrays
that fit one fragment. Larger arrays are written here with our own
authenticatorLargeBlobs requests, and the library's multi-fragment write is
checked to fail the way the spec says.
"""

import os
import struct
import time

import pytest

from fido2 import cbor
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.blob import LargeBlobs
from fido2.ctap2.config import Config
from fido2.ctap2.credman import CredentialManagement
from fido2.ctap2.extensions import (
    CredBlobExtension,
    CredProtectExtension,
    HmacSecretExtension,
    LargeBlobKeyExtension,
    MinPinLengthExtension,
)
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2

import virtkey_udp

from vkutil import (
    FLAG_ED,
    FLAG_UV,
    RP1,
    RP2,
    ctap_error,
    descriptor,
    new_cdh,
    params,
    rp_id_hash,
    sha256,
    user,
)

ERR = CtapError.ERR  # 0.9.1 names: PIN_REQUIRED is CTAP 2.1 PUAT_REQUIRED (0x36)
PERM = ClientPin.PERMISSION
PIN = "12345678"
LARGE_BLOBS = 0x0C
INITIAL_ARRAY = bytes.fromhex("8076be8b528d0075f7aae98d6fa57a6d3c")

PROTOCOLS = pytest.mark.parametrize("proto", [PinProtocolV1, PinProtocolV2], ids=["pinV1", "pinV2"])


# --------------------------------------------------------------------------
# helpers


def set_pin(ctap, pin=PIN):
    ClientPin(ctap).set_pin(pin)
    return Ctap2(ctap.device)  # getInfo again: clientPin is now true


def token(ctap, proto, permissions, rp_id=None, pin=PIN):
    return ClientPin(ctap, proto).get_pin_token(pin, permissions, rp_id)


def pin_params(proto, tok, cdh):
    return {"pin_uv_param": proto.authenticate(tok, cdh), "pin_uv_protocol": proto.VERSION}


def make(ctap, rp=RP1, usr=None, rk=False, extensions=None, auth=None):
    """makeCredential; auth is (proto, token) for a PIN-protected key."""
    cdh = new_cdh()
    kw = pin_params(auth[0], auth[1], cdh) if auth else {}
    att = ctap.make_credential(
        cdh,
        rp,
        usr or user("alice"),
        params(),
        extensions=extensions,
        options={"rk": True} if rk else None,
        **kw
    )
    return att


def assert_(ctap, rp=RP1, cred_ids=None, extensions=None, auth=None):
    cdh = new_cdh()
    kw = pin_params(auth[0], auth[1], cdh) if auth else {}
    allow = [descriptor(i) for i in cred_ids] if cred_ids else None
    return ctap.get_assertion(rp["id"], cdh, allow, extensions=extensions, **kw)


def ext_out(auth_data):
    return auth_data.extensions or {}


def serialize(entries):
    data = cbor.encode(entries)
    return data + sha256(data)[:16]


def lb_auth(proto, tok, offset, fragment):
    msg = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", offset) + sha256(fragment)
    return proto.authenticate(tok, msg)


def lb_set(ctap, offset, fragment, length=None, auth=None):
    req = {2: fragment, 3: offset}
    if length is not None:
        req[4] = length
    if auth is not None:
        proto, tok = auth
        req[5] = lb_auth(proto, tok, offset, fragment)
        req[6] = proto.VERSION
    return ctap.send_cbor(LARGE_BLOBS, req)


def lb_write(ctap, array, frag, auth=None):
    for off in range(0, len(array), frag):
        lb_set(ctap, off, array[off : off + frag], len(array) if off == 0 else None, auth)


def lb_read(ctap, n=None):
    n = n or ctap.info.max_msg_size - 64
    out = b""
    while True:
        chunk = ctap.send_cbor(LARGE_BLOBS, {1: n, 3: len(out)})[1]
        out += chunk
        if len(chunk) < n:
            return out


def blob_entry(size, fill):
    # The shape python-fido2 writes: {1: ciphertext, 2: nonce, 3: origSize}.
    return {1: bytes([fill]) * size, 2: os.urandom(12), 3: size}


# --------------------------------------------------------------------------
# getInfo


def test_extensions_advertised(empty_ctap):
    info = empty_ctap.info
    for e in ("hmac-secret", "credProtect", "credBlob", "largeBlobKey", "minPinLength"):
        assert e in info.extensions, "getInfo extensions %r lack %s" % (info.extensions, e)
    assert info.options.get("largeBlobs") is True, info.options
    assert info.max_large_blob is not None and info.max_large_blob >= 4096, info.max_large_blob
    assert info.max_cred_blob_length is not None and info.max_cred_blob_length >= 32


# --------------------------------------------------------------------------
# hmac-secret


def hmac_get(ctap, proto, cred_id, salt1, salt2=None, auth=None, rp=RP1):
    ext = HmacSecretExtension(ctap, pin_protocol=proto())
    inputs = {"salt1": salt1}
    if salt2:
        inputs["salt2"] = salt2
    ext_in = ext.process_get_input({"hmacGetSecret": inputs})
    assert ext_in[4] == proto.VERSION
    resp = assert_(ctap, rp, [cred_id] if cred_id else None, {"hmac-secret": ext_in}, auth)
    enc = ext_out(resp.auth_data)["hmac-secret"]
    n = 32 * (2 if salt2 else 1) + (16 if proto.VERSION == 2 else 0)
    assert len(enc) == n, "encrypted hmac-secret output is %d bytes, want %d" % (len(enc), n)
    out = ext.process_get_output(resp.auth_data)["hmacGetSecret"]
    return out, resp


@PROTOCOLS
def test_hmac_secret(empty_ctap, proto):
    ctap = empty_ctap
    ext = HmacSecretExtension(ctap)
    ext_in = ext.process_create_input({"hmacCreateSecret": True})
    assert ext_in is True
    att = make(ctap, extensions={"hmac-secret": ext_in})
    assert att.auth_data.flags & FLAG_ED
    assert ext.process_create_output(att.auth_data) == {"hmacCreateSecret": True}
    cred = att.auth_data.credential_data.credential_id

    s1, s2 = os.urandom(32), os.urandom(32)
    one, resp = hmac_get(ctap, proto, cred, s1)
    assert set(one) == {"output1"} and len(one["output1"]) == 32
    assert not resp.auth_data.flags & FLAG_UV

    # Stable per credential and salt, across fresh key agreements.
    again, _ = hmac_get(ctap, proto, cred, s1)
    assert again["output1"] == one["output1"]
    # Two salts: output1 unchanged.
    two, _ = hmac_get(ctap, proto, cred, s1, s2)
    assert two["output1"] == one["output1"]
    assert len(two["output2"]) == 32 and two["output2"] != two["output1"]
    # Another salt, another output.
    other, _ = hmac_get(ctap, proto, cred, s2)
    assert other["output1"] == two["output2"]

    # Another credential, another output.
    cred2 = make(ctap, usr=user("bob"), extensions={"hmac-secret": True}).auth_data.credential_data.credential_id
    o2, _ = hmac_get(ctap, proto, cred2, s1)
    assert o2["output1"] != one["output1"]

    # With user verification (a PIN token) the other CredRandom is used.
    ctap = set_pin(ctap)
    tok = token(ctap, proto(), PERM.GET_ASSERTION, RP1["id"])
    uv, resp = hmac_get(ctap, proto, cred, s1, s2, auth=(proto(), tok))
    assert resp.auth_data.flags & FLAG_UV
    assert uv["output1"] != one["output1"] and uv["output2"] != two["output2"]
    tok = token(ctap, proto(), PERM.GET_ASSERTION, RP1["id"])
    uv2, _ = hmac_get(ctap, proto, cred, s1, auth=(proto(), tok))
    assert uv2["output1"] == uv["output1"], "UV output not stable"
    # And without UV the old outputs come back.
    no_uv, _ = hmac_get(ctap, proto, cred, s1)
    assert no_uv["output1"] == one["output1"]


@PROTOCOLS
def test_hmac_secret_discoverable(empty_ctap, proto):
    ctap = empty_ctap
    att = make(ctap, rk=True, extensions={"hmac-secret": True})
    cred = att.auth_data.credential_data.credential_id
    salt = os.urandom(32)
    by_id, _ = hmac_get(ctap, proto, cred, salt)
    discovered, resp = hmac_get(ctap, proto, None, salt)
    assert resp.credential["id"] == cred
    assert discovered == by_id


@PROTOCOLS
def test_hmac_secret_bad_salt_auth(empty_ctap, proto):
    ctap = empty_ctap
    cred = make(ctap, extensions={"hmac-secret": True}).auth_data.credential_data.credential_id
    ext = HmacSecretExtension(ctap, pin_protocol=proto())
    ext_in = ext.process_get_input({"hmacGetSecret": {"salt1": os.urandom(32)}})
    ext_in[3] = bytes(len(ext_in[3]))
    with ctap_error(ERR.PIN_AUTH_INVALID):
        assert_(ctap, RP1, [cred], {"hmac-secret": ext_in})
    # A salt of the wrong length, correctly authenticated.
    client_pin = ClientPin(ctap, proto())
    key_agreement, shared = client_pin._get_shared_secret()
    salt_enc = proto().encrypt(shared, os.urandom(48))
    bad = {1: key_agreement, 2: salt_enc, 3: proto().authenticate(shared, salt_enc), 4: proto.VERSION}
    with ctap_error(ERR.INVALID_LENGTH):
        assert_(ctap, RP1, [cred], {"hmac-secret": bad})
    del bad[1]
    with ctap_error(ERR.MISSING_PARAMETER):
        assert_(ctap, RP1, [cred], {"hmac-secret": bad})


# --------------------------------------------------------------------------
# credProtect


def cred_protect_input(ctap, policy):
    return CredProtectExtension(ctap).process_create_input({"credentialProtectionPolicy": policy})


def test_cred_protect(empty_ctap):
    ctap = empty_ctap
    policies = list(CredProtectExtension.POLICY)
    creds = {}
    for level, policy in enumerate(policies, start=1):
        ext_in = cred_protect_input(ctap, policy)
        assert ext_in == level
        att = make(ctap, rk=True, usr=user("level%d" % level), extensions={"credProtect": ext_in})
        assert ext_out(att.auth_data).get("credProtect") == level
        creds[level] = att.auth_data.credential_data.credential_id

    # Discoverable, no UV: only level 1.
    resp = assert_(ctap)
    assert resp.credential["id"] == creds[1]
    assert not resp.number_of_credentials
    # allowList, no UV: levels 1 and 2, not 3.
    for level in (1, 2):
        assert assert_(ctap, cred_ids=[creds[level]]).credential["id"] == creds[level]
    with ctap_error(ERR.NO_CREDENTIALS):
        assert_(ctap, cred_ids=[creds[3]])
    # excludeList without UV ignores the level-3 credential.
    ctap.make_credential(new_cdh(), RP1, user("x"), params(), exclude_list=[descriptor(creds[3])])
    with ctap_error(ERR.CREDENTIAL_EXCLUDED):
        ctap.make_credential(new_cdh(), RP1, user("x"), params(), exclude_list=[descriptor(creds[2])])

    # With UV (a PIN token) all three are visible.
    ctap = set_pin(ctap)
    proto = PinProtocolV2()
    tok = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    cdh = new_cdh()
    resps = ctap.get_assertions(RP1["id"], cdh, **pin_params(proto, tok, cdh))
    assert sorted(r.credential["id"] for r in resps) == sorted(creds.values())
    tok = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    assert assert_(ctap, cred_ids=[creds[3]], auth=(proto, tok)).credential["id"] == creds[3]

    # Credential management reports each level.
    tok = token(ctap, proto, PERM.CREDENTIAL_MGMT)
    cm = CredentialManagement(ctap, proto, tok)
    listed = {
        c[CredentialManagement.RESULT.CREDENTIAL_ID]["id"]: c.get(CredentialManagement.RESULT.CRED_PROTECT)
        for c in cm.enumerate_creds(rp_id_hash(RP1))
    }
    assert listed == {creds[lvl]: lvl for lvl in creds}, listed


def test_cred_protect_out_of_range(empty_ctap):
    for level in (0, 4):
        with ctap_error(ERR.INVALID_PARAMETER):
            make(empty_ctap, extensions={"credProtect": level})
    with ctap_error(ERR.CBOR_UNEXPECTED_TYPE):
        make(empty_ctap, extensions={"credProtect": "userVerificationRequired"})


# --------------------------------------------------------------------------
# credBlob


def test_cred_blob(empty_ctap):
    ctap = empty_ctap
    max_len = ctap.info.max_cred_blob_length
    blob = os.urandom(max_len)
    ext_in = CredBlobExtension(ctap).process_create_input({"credBlob": blob})
    assert ext_in == blob
    att = make(ctap, rk=True, extensions={"credBlob": ext_in})
    assert ext_out(att.auth_data).get("credBlob") is True
    cred = att.auth_data.credential_data.credential_id

    get_in = CredBlobExtension(ctap).process_get_input({"getCredBlob": True})
    assert get_in is True
    resp = assert_(ctap, cred_ids=[cred], extensions={"credBlob": get_in})
    assert ext_out(resp.auth_data).get("credBlob") == blob
    resp = assert_(ctap, extensions={"credBlob": True})  # discoverable
    assert ext_out(resp.auth_data).get("credBlob") == blob
    assert "credBlob" not in ext_out(assert_(ctap, cred_ids=[cred]).auth_data)

    # Too long (the library would drop it; send it raw): not stored.
    att = make(ctap, rk=True, usr=user("bob"), extensions={"credBlob": os.urandom(max_len + 1)})
    assert ext_out(att.auth_data).get("credBlob") is False
    resp = assert_(ctap, cred_ids=[att.auth_data.credential_data.credential_id], extensions={"credBlob": True})
    assert ext_out(resp.auth_data).get("credBlob") == b""

    # Non-resident: not stored.
    att = make(ctap, rk=False, usr=user("carol"), extensions={"credBlob": b"abc"})
    assert ext_out(att.auth_data).get("credBlob") is False
    resp = assert_(ctap, cred_ids=[att.auth_data.credential_data.credential_id], extensions={"credBlob": True})
    assert ext_out(resp.auth_data).get("credBlob") == b""


# --------------------------------------------------------------------------
# largeBlobKey and authenticatorLargeBlobs


@PROTOCOLS
def test_large_blob_key_and_large_blobs(empty_ctap, proto):
    ctap = set_pin(empty_ctap)
    p = proto()
    lbk_in = LargeBlobKeyExtension(ctap).process_create_input({"largeBlobKey": True})
    assert lbk_in is True
    keys = []
    for name in ("alice", "bob"):
        tok = token(ctap, p, PERM.MAKE_CREDENTIAL, RP1["id"])
        att = make(ctap, rk=True, usr=user(name), extensions={"largeBlobKey": lbk_in}, auth=(p, tok))
        assert isinstance(att.large_blob_key, bytes) and len(att.large_blob_key) == 32
        keys.append((att.auth_data.credential_data.credential_id, att.large_blob_key))
    assert keys[0][1] != keys[1][1]
    # getAssertion returns the same key.
    for cred, key in keys:
        tok = token(ctap, p, PERM.GET_ASSERTION, RP1["id"])
        resp = assert_(ctap, cred_ids=[cred], extensions={"largeBlobKey": True}, auth=(p, tok))
        assert resp.large_blob_key == key
    with ctap_error(ERR.INVALID_OPTION):
        assert_(ctap, extensions={"largeBlobKey": False})

    # Reading needs no token.
    assert LargeBlobs(ctap).read_blob_array() == []
    # Writing needs a token with lbw.
    with ctap_error(ERR.PIN_REQUIRED):
        LargeBlobs(ctap).put_blob(keys[0][1], b"no token")
    ga_tok = token(ctap, p, PERM.GET_ASSERTION, RP1["id"])
    with ctap_error(ERR.PIN_AUTH_INVALID):
        LargeBlobs(ctap, p, ga_tok).put_blob(keys[0][1], b"wrong permission")
    lb = LargeBlobs(ctap, p, token(ctap, p, PERM.LARGE_BLOB_WRITE))
    lb.put_blob(keys[0][1], b"alice's blob" * 10)
    lb.put_blob(keys[1][1], b"bob's blob")
    assert lb.get_blob(keys[0][1]) == b"alice's blob" * 10
    assert lb.get_blob(keys[1][1]) == b"bob's blob"
    assert len(lb.read_blob_array()) == 2
    # Replace and delete.
    lb.put_blob(keys[0][1], b"alice v2")
    assert lb.get_blob(keys[0][1]) == b"alice v2"
    assert len(lb.read_blob_array()) == 2
    lb.delete_blob(keys[0][1])
    assert lb.get_blob(keys[0][1]) is None
    assert lb.get_blob(keys[1][1]) == b"bob's blob"
    assert len(lb.read_blob_array()) == 1


@PROTOCOLS
def test_large_blobs_multi_fragment(empty_ctap, proto):
    ctap = set_pin(empty_ctap)
    p = proto()
    auth = (p, token(ctap, p, PERM.LARGE_BLOB_WRITE))
    max_array = ctap.info.max_large_blob
    max_frag = ctap.info.max_msg_size - 64
    entries = [blob_entry(2000, i) for i in range(3)]
    array = serialize(entries)
    assert len(array) > 1024
    lb_write(ctap, array, 1024, auth)
    assert lb_read(ctap) == array
    assert lb_read(ctap, 100) == array
    assert LargeBlobs(ctap).read_blob_array() == entries
    # Reads at offsets.
    assert ctap.send_cbor(LARGE_BLOBS, {1: 50, 3: 1000})[1] == array[1000:1050]
    assert ctap.send_cbor(LARGE_BLOBS, {1: 50, 3: len(array)})[1] == b""
    with ctap_error(ERR.INVALID_PARAMETER):
        ctap.send_cbor(LARGE_BLOBS, {1: 50, 3: len(array) + 1})

    # Larger than one fragment, written in maximal fragments.
    big_entries = [blob_entry(max_array - 200, 0x42)]
    big = serialize(big_entries)
    assert max_frag < len(big) <= max_array
    lb_write(ctap, big, max_frag, auth)
    assert LargeBlobs(ctap).read_blob_array() == big_entries

    # python-fido2 0.9.1's own multi-fragment write sends the fragment
    # length as `length`: the first fragment then looks like a complete
    # array whose checksum is wrong. The stored array stays.
    lb = LargeBlobs(ctap, p, auth[1])
    with ctap_error(ERR.INTEGRITY_FAILURE):
        lb.write_blob_array([blob_entry(max_frag, 1)])
    assert lb_read(ctap) == big
    # Its second fragment (length with a non-zero offset) would be refused
    # as well.
    with ctap_error(ERR.INVALID_PARAMETER):
        lb_set(ctap, max_frag, big[:10], 10, auth)

    # Out of sequence, overshoot, checksum failure, storage full.
    lb_set(ctap, 0, array[:100], len(array), auth)
    with ctap_error(ERR.INVALID_SEQ):
        lb_set(ctap, 101, array[101:200], None, auth)
    with ctap_error(ERR.INVALID_PARAMETER):
        lb_set(ctap, 100, array[100:200], len(array), auth)
    with ctap_error(ERR.INVALID_PARAMETER):
        lb_set(ctap, 100, array[100:] + b"x", None, auth)
    bad = array[:-1] + bytes([array[-1] ^ 1])
    lb_set(ctap, 100, bad[100:2000], None, auth)
    with ctap_error(ERR.INTEGRITY_FAILURE):
        lb_set(ctap, 2000, bad[2000:], None, auth)
    assert lb_read(ctap) == big, "a failed write replaced the array"
    with ctap_error(ERR.LARGE_BLOB_STORAGE_FULL):
        lb_set(ctap, 0, array[:100], max_array + 1, auth)
    with ctap_error(ERR.INVALID_PARAMETER):
        ctap.send_cbor(LARGE_BLOBS, {2: array[:10], 3: 0})  # no length
    # A fragment authenticated for another offset.
    lb_set(ctap, 0, array[:100], len(array), auth)
    req = {2: array[100:200], 3: 100, 5: lb_auth(p, auth[1], 0, array[100:200]), 6: p.VERSION}
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.send_cbor(LARGE_BLOBS, req)


def test_large_blobs_reset_and_power_cycle(empty_ctap, addr, open_dev):
    ctap = empty_ctap
    array = serialize([blob_entry(3000, 7)])
    lb_write(ctap, array, 1000)  # no PIN: no token needed
    assert lb_read(ctap) == array
    # A power cycle keeps the array and drops a write in progress.
    lb_set(ctap, 0, array[:1000], len(array))
    virtkey_udp.reboot(addr)
    time.sleep(0.2)
    ctap = Ctap2(open_dev())
    assert lb_read(ctap) == array
    with ctap_error(ERR.INVALID_SEQ):
        lb_set(ctap, 1000, array[1000:2000])
    # Reset restores the initial (empty) array.
    ctap.reset()
    assert lb_read(ctap) == INITIAL_ARRAY
    assert LargeBlobs(ctap).read_blob_array() == []


# --------------------------------------------------------------------------
# minPinLength


def test_min_pin_length(empty_ctap):
    ctap = empty_ctap
    ext_in = MinPinLengthExtension(ctap).process_create_input({"minPinLength": True})
    assert ext_in is True
    # No RP is allowed yet.
    assert "minPinLength" not in ext_out(make(ctap, extensions={"minPinLength": True}).auth_data)
    # No PIN is set, so authenticatorConfig needs no token.
    Config(ctap).set_min_pin_length(min_pin_length=6, rp_ids=[RP1["id"]])
    ctap = Ctap2(ctap.device)
    assert ctap.info.min_pin_length == 6
    att = make(ctap, extensions={"minPinLength": ext_in})
    assert ext_out(att.auth_data).get("minPinLength") == 6
    att = make(ctap, rp=RP2, extensions={"minPinLength": ext_in})
    assert "minPinLength" not in ext_out(att.auth_data)
    # With a PIN: the token needs acfg, and the list is replaced.
    ctap = set_pin(ctap)
    p = PinProtocolV2()
    Config(ctap, p, token(ctap, p, PERM.AUTHENTICATOR_CFG)).set_min_pin_length(rp_ids=[RP2["id"]])
    tok = token(ctap, p, PERM.MAKE_CREDENTIAL, RP2["id"])
    att = make(ctap, rp=RP2, extensions={"minPinLength": True}, auth=(p, tok))
    assert ext_out(att.auth_data).get("minPinLength") == 6
    tok = token(ctap, p, PERM.MAKE_CREDENTIAL, RP1["id"])
    att = make(ctap, rp=RP1, extensions={"minPinLength": True}, auth=(p, tok))
    assert "minPinLength" not in ext_out(att.auth_data)


# --------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "ext",
    [
        {"hmac-secret": 1},
        {"credProtect": b"\x01"},
        {"credBlob": "text"},
        {"largeBlobKey": 1},
        {"minPinLength": "yes"},
    ],
    ids=lambda e: next(iter(e)),
)
def test_malformed_extension_inputs(empty_ctap, ext):
    with ctap_error(ERR.CBOR_UNEXPECTED_TYPE):
        make(empty_ctap, extensions=ext)


def test_unknown_extension_ignored(empty_ctap):
    att = make(empty_ctap, extensions={"unknownExt": {"a": [1, 2]}, "hmac-secret": True})
    assert ext_out(att.auth_data) == {"hmac-secret": True}
    cred = att.auth_data.credential_data.credential_id
    resp = assert_(empty_ctap, cred_ids=[cred], extensions={"somethingElse": True})
    assert not resp.auth_data.flags & FLAG_ED
