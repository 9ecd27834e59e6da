"""ClientPIN, permissions tokens, credential management and authenticatorConfig,
seen through python-fido2 0.9.1 over UDP.

Every test starts from a reset key and resets it again at the end, so that
the other test files find a key without a PIN and with the default
configuration (virtkey runs with --reset-window 0, so reset is always
allowed). PIN tests run with PIN/UV auth protocol 1 and with protocol 2.

The lockout test checks exactly the sequence conformance suites check:
8 retries in total, persisted across power cycles (magic reboot); 3
consecutive wrong PINs in one power cycle give PIN_AUTH_BLOCKED until a power
cycle, even for the right PIN; the right PIN restores 8; at 0 the PIN is
blocked (PIN_BLOCKED) until authenticatorReset. The same sequence across a
process restart is internal/e2e/pin_restart_test.go.
"""

import os
import time

import pytest

from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.config import Config
from fido2.ctap2.credman import CredentialManagement
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.utils import sha256 as _sha256

import virtkey_udp
from vkutil import (
    ES256,
    FLAG_UP,
    FLAG_UV,
    RP1,
    RP2,
    ctap_error,
    descriptor,
    new_cdh,
    params,
    rp_id_hash,
    user,
    verify_attestation,
)

ERR = CtapError.ERR  # 0.9.1 names CTAP 2.1's PUAT_REQUIRED (0x36) PIN_REQUIRED
PERM = ClientPin.PERMISSION
CM = CredentialManagement
PUAT_REQUIRED = ERR.PIN_REQUIRED

PIN = "1234"
PIN2 = "48151623"
WRONG = "0000"

RP3 = {"id": "login.example.net", "name": "Example Net"}

PROTOCOLS = {1: PinProtocolV1, 2: PinProtocolV2}
CLIENTPIN = 0x06
CREDMGMT_PREVIEW = 0x41


@pytest.fixture(params=[2, 1], ids=["pinV2", "pinV1"])
def proto(request):
    """A PIN/UV auth protocol instance (2 first, as advertised)."""
    return PROTOCOLS[request.param]()


@pytest.fixture
def key(open_dev):
    """A Ctap2 on a freshly reset key; the key is reset again afterwards."""
    ctap = Ctap2(open_dev())
    ctap.reset()
    yield Ctap2(ctap.device)  # getInfo again after the reset
    Ctap2(open_dev()).reset()


# --------------------------------------------------------------------------
# helpers


def power_cycle(addr, open_dev):
    """Magic reboot, then a fresh device (new CTAPHID channel) and getInfo."""
    virtkey_udp.reboot(addr)
    time.sleep(0.2)
    return Ctap2(open_dev())


def set_pin(ctap, proto, pin=PIN):
    ClientPin(ctap, proto).set_pin(pin)
    return Ctap2(ctap.device)  # getInfo again: clientPin is now true


def token(ctap, proto, permissions, rp_id=None, pin=PIN):
    return ClientPin(ctap, proto).get_pin_token(pin, permissions, rp_id)


def retries(ctap, proto):
    return ClientPin(ctap, proto).get_pin_retries()


def auth_kw(proto, tok, cdh):
    return {"pin_uv_param": proto.authenticate(tok, cdh), "pin_uv_protocol": proto.VERSION}


def make(ctap, rp=RP1, usr=None, rk=True, auth=None):
    """makeCredential (auth = (proto, token) or None); returns a credential dict."""
    usr = usr or user("alice")
    cdh = new_cdh()
    kw = auth_kw(auth[0], auth[1], cdh) if auth else {}
    att = ctap.make_credential(
        cdh, rp, usr, params(ES256), options={"rk": True} if rk else None, **kw
    )
    verify_attestation(att, cdh)
    ad = att.auth_data
    assert ad.rp_id_hash == rp_id_hash(rp)
    assert ad.flags & FLAG_UP
    if auth:
        assert ad.flags & FLAG_UV, "UV flag missing after a PIN token (flags=%#x)" % ad.flags
    else:
        assert not ad.flags & FLAG_UV, "UV flag without user verification (flags=%#x)" % ad.flags
    cd = ad.credential_data
    return {
        "id": cd.credential_id,
        "key": CoseKey.parse(dict(cd.public_key)),
        "cose": dict(cd.public_key),
        "user": usr,
        "rp": rp,
    }


def make_with_pin(ctap, proto, rp, usr, pin=PIN):
    """A discoverable credential made with a fresh mc token bound to rp."""
    tok = token(ctap, proto, PERM.MAKE_CREDENTIAL, rp["id"], pin=pin)
    return make(ctap, rp, usr, rk=True, auth=(proto, tok))


def get_assertion(ctap, rp, cred=None, auth=None):
    cdh = new_cdh()
    kw = auth_kw(auth[0], auth[1], cdh) if auth else {}
    allow = [descriptor(cred["id"])] if cred else None
    resp = ctap.get_assertion(rp["id"], cdh, allow, **kw)
    if cred is not None:
        assert resp.credential["id"] == cred["id"]
        resp.verify(cdh, cred["key"])
    if auth:
        assert resp.auth_data.flags & FLAG_UV
    return resp


def raw_set_pin(ctap, proto, pin_bytes, pad_to=64):
    """setPIN with arbitrary PIN bytes (python-fido2 checks lengths itself)."""
    cp = ClientPin(ctap, proto)
    ka, shared = cp._get_shared_secret()
    new_pin_enc = proto.encrypt(shared, pin_bytes.ljust(pad_to, b"\0"))
    ctap.client_pin(
        proto.VERSION,
        ClientPin.CMD.SET_PIN,
        key_agreement=ka,
        new_pin_enc=new_pin_enc,
        pin_uv_param=proto.authenticate(shared, new_pin_enc),
    )


def legacy_pin_token(ctap, proto, pin=PIN):
    """getPinToken (0x05), which python-fido2 skips when pinUvAuthToken is set."""
    cp = ClientPin(ctap, proto)
    ka, shared = cp._get_shared_secret()
    resp = ctap.client_pin(
        proto.VERSION,
        ClientPin.CMD.GET_TOKEN_USING_PIN_LEGACY,
        key_agreement=ka,
        pin_hash_enc=proto.encrypt(shared, _sha256(pin.encode())[:16]),
    )
    return proto.validate_token(proto.decrypt(shared, resp[ClientPin.RESULT.PIN_UV_TOKEN]))


def check_token(proto, tok):
    if proto.VERSION == 2:
        assert len(tok) == 32
    else:
        assert len(tok) in (16, 32)


# --------------------------------------------------------------------------
# getInfo


def test_pin_features_advertised(key):
    info = key.info
    assert info.pin_uv_protocols == [2, 1], "pinUvAuthProtocols %r, want [2, 1]" % info.pin_uv_protocols
    for opt in ("pinUvAuthToken", "credMgmt", "authnrCfg", "setMinPINLength"):
        assert info.options.get(opt) is True, "getInfo option %s: %r" % (opt, info.options.get(opt))
    assert info.options.get("clientPin") is False, "a reset key has no PIN: clientPin must be false"
    assert info.options.get("alwaysUv", False) is False
    assert info.min_pin_length == 4
    assert not info.force_pin_change
    # No PIN: getPINRetries answers PIN_NOT_SET (virtkey's compatibility
    # choice; python-fido2's own device tests expect it after a reset).
    with ctap_error(ERR.PIN_NOT_SET):
        retries(key, PinProtocolV2())


# --------------------------------------------------------------------------
# setPIN, changePIN, tokens (protocol 1 and 2)


def test_set_pin(key, proto):
    ctap = key
    with ctap_error(ERR.PIN_NOT_SET):
        retries(ctap, proto)
    # No PIN yet: a token cannot be had, changePIN has nothing to change.
    with ctap_error(ERR.PIN_NOT_SET):
        token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    with ctap_error(ERR.PIN_NOT_SET):
        ClientPin(ctap, proto).change_pin(PIN, PIN2)

    ctap = set_pin(ctap, proto)
    assert ctap.info.options.get("clientPin") is True
    assert retries(ctap, proto) == (8, False)
    # A second setPIN is refused; the PIN stays.
    with ctap_error(ERR.NOT_ALLOWED):
        ClientPin(ctap, proto).set_pin(PIN2)

    tok = token(ctap, proto, PERM.MAKE_CREDENTIAL | PERM.GET_ASSERTION, RP1["id"])
    check_token(proto, tok)
    cred = make(ctap, RP1, user("alice"), auth=(proto, tok))
    get_assertion(ctap, RP1, cred, auth=(proto, token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])))

    # With a PIN set, a discoverable credential needs UV; a non-discoverable
    # one does not (makeCredUvNotRqd).
    with ctap_error(PUAT_REQUIRED):
        make(ctap, RP1, user("bob"), rk=True)
    make(ctap, RP1, user("bob"), rk=False)

    # The PIN also works with the other protocol.
    other = PROTOCOLS[3 - proto.VERSION]()
    check_token(other, token(ctap, other, PERM.GET_ASSERTION, RP1["id"]))
    with ctap_error(ERR.PIN_INVALID):
        token(ctap, other, PERM.GET_ASSERTION, RP1["id"], pin=PIN2)


def test_set_pin_policy(key, proto):
    ctap = key
    # minPINLength counts code points: 3 two-byte characters are too few,
    # 4 are enough.
    with ctap_error(ERR.PIN_POLICY_VIOLATION):
        raw_set_pin(ctap, proto, "äöü".encode())
    # 64 bytes leave no room for the terminating zero: longer than 63 bytes.
    with ctap_error(ERR.PIN_POLICY_VIOLATION):
        raw_set_pin(ctap, proto, b"1" * 64)
    # newPinEnc must be exactly 64 bytes of padded PIN.
    with ctap_error(ERR.INVALID_PARAMETER):
        raw_set_pin(ctap, proto, b"12345678", pad_to=80)
    assert Ctap2(ctap.device).info.options.get("clientPin") is False

    raw_set_pin(ctap, proto, "äöüß".encode())
    ctap = Ctap2(ctap.device)
    assert ctap.info.options.get("clientPin") is True
    check_token(proto, token(ctap, proto, PERM.GET_ASSERTION, RP1["id"], pin="äöüß"))


def test_set_pin_wrong_auth(key, proto):
    ctap = key
    cp = ClientPin(ctap, proto)
    ka, shared = cp._get_shared_secret()
    new_pin_enc = proto.encrypt(shared, PIN.encode().ljust(64, b"\0"))
    bad = bytearray(proto.authenticate(shared, new_pin_enc))
    bad[0] ^= 1
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.client_pin(
            proto.VERSION, ClientPin.CMD.SET_PIN, key_agreement=ka,
            new_pin_enc=new_pin_enc, pin_uv_param=bytes(bad),
        )
    assert Ctap2(ctap.device).info.options.get("clientPin") is False


def test_change_pin(key, proto):
    ctap = set_pin(key, proto)
    old_tok = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])

    with ctap_error(ERR.PIN_INVALID):
        ClientPin(ctap, proto).change_pin(WRONG, PIN2)
    assert retries(ctap, proto)[0] == 7
    # The new PIN must meet the policy too (checked after the current PIN,
    # which restores the retries).
    with ctap_error(ERR.PIN_POLICY_VIOLATION):
        raw_change_pin(ctap, proto, PIN, "123".encode())
    assert retries(ctap, proto)[0] == 8

    ClientPin(ctap, proto).change_pin(PIN, PIN2)
    assert retries(ctap, proto)[0] == 8
    # Changing the PIN revokes the tokens issued before.
    cred = make(ctap, RP1, user("alice"), rk=False)
    with ctap_error(ERR.PIN_AUTH_INVALID):
        get_assertion(ctap, RP1, cred, auth=(proto, old_tok))

    with ctap_error(ERR.PIN_INVALID):
        token(ctap, proto, PERM.GET_ASSERTION, RP1["id"], pin=PIN)
    tok = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"], pin=PIN2)
    get_assertion(ctap, RP1, cred, auth=(proto, tok))

    # And back, with the other protocol.
    other = PROTOCOLS[3 - proto.VERSION]()
    ClientPin(ctap, other).change_pin(PIN2, PIN)
    check_token(other, token(ctap, other, PERM.GET_ASSERTION, RP1["id"], pin=PIN))


def raw_change_pin(ctap, proto, old_pin, new_pin_bytes):
    cp = ClientPin(ctap, proto)
    ka, shared = cp._get_shared_secret()
    new_pin_enc = proto.encrypt(shared, new_pin_bytes.ljust(64, b"\0"))
    pin_hash_enc = proto.encrypt(shared, _sha256(old_pin.encode())[:16])
    ctap.client_pin(
        proto.VERSION,
        ClientPin.CMD.CHANGE_PIN,
        key_agreement=ka,
        new_pin_enc=new_pin_enc,
        pin_hash_enc=pin_hash_enc,
        pin_uv_param=proto.authenticate(shared, new_pin_enc + pin_hash_enc),
    )


def test_token_lifecycle(key, proto, addr, open_dev):
    ctap = set_pin(key, proto)
    cred = make_with_pin(ctap, proto, RP1, user("alice"))

    # A new token revokes the previous one.
    t1 = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    t2 = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    assert t1 != t2
    with ctap_error(ERR.PIN_AUTH_INVALID):
        get_assertion(ctap, RP1, cred, auth=(proto, t1))
    get_assertion(ctap, RP1, cred, auth=(proto, t2))

    # The token is bound to its permissions RP ID.
    t3 = token(ctap, proto, PERM.MAKE_CREDENTIAL, RP1["id"])
    cdh = new_cdh()
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.make_credential(cdh, RP2, user("bob"), params(), options={"rk": True}, **auth_kw(proto, t3, cdh))

    # mc and ga are used up by one makeCredential (CTAP 2.1 §6.1.2 step 19).
    t4 = token(ctap, proto, PERM.MAKE_CREDENTIAL | PERM.GET_ASSERTION, RP1["id"])
    make(ctap, RP1, user("bob"), auth=(proto, t4))
    with ctap_error(ERR.PIN_AUTH_INVALID):
        get_assertion(ctap, RP1, cred, auth=(proto, t4))

    # A wrong pinUvAuthParam.
    t5 = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    cdh = new_cdh()
    bad = bytearray(proto.authenticate(t5, cdh))
    bad[-1] ^= 0x80
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.get_assertion(RP1["id"], cdh, [descriptor(cred["id"])],
                           pin_uv_param=bytes(bad), pin_uv_protocol=proto.VERSION)

    # A power cycle invalidates every token.
    t6 = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    ctap = power_cycle(addr, open_dev)
    with ctap_error(ERR.PIN_AUTH_INVALID):
        get_assertion(ctap, RP1, cred, auth=(proto, t6))
    get_assertion(ctap, RP1, cred, auth=(proto, token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])))


def test_token_bound_to_its_protocol(key, proto):
    """A token issued through protocol N authenticates only with protocol N."""
    ctap = set_pin(key, proto)
    cred = make(ctap, RP1, user("alice"), rk=False)
    tok = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    other = PROTOCOLS[3 - proto.VERSION]()
    cdh = new_cdh()
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.get_assertion(RP1["id"], cdh, [descriptor(cred["id"])],
                           pin_uv_param=other.authenticate(tok, cdh), pin_uv_protocol=other.VERSION)


def test_legacy_get_pin_token(key, proto):
    """getPinToken (0x05) gives a token with mc and ga only, bound to no RP."""
    ctap = set_pin(key, proto)
    tok = legacy_pin_token(ctap, proto)
    check_token(proto, tok)
    cred = make(ctap, RP2, user("alice"), auth=(proto, tok))
    tok = legacy_pin_token(ctap, proto)
    get_assertion(ctap, RP2, cred, auth=(proto, tok))
    tok = legacy_pin_token(ctap, proto)
    with ctap_error(ERR.PIN_AUTH_INVALID):
        CredentialManagement(ctap, proto, tok).get_metadata()
    with ctap_error(ERR.PIN_INVALID):
        legacy_pin_token(ctap, proto, pin=WRONG)
    # getPinToken takes no permissions.
    cp = ClientPin(ctap, proto)
    ka, shared = cp._get_shared_secret()
    with ctap_error(ERR.INVALID_PARAMETER):
        ctap.client_pin(
            proto.VERSION, ClientPin.CMD.GET_TOKEN_USING_PIN_LEGACY, key_agreement=ka,
            pin_hash_enc=proto.encrypt(shared, _sha256(PIN.encode())[:16]),
            permissions=PERM.CREDENTIAL_MGMT,
        )


# --------------------------------------------------------------------------
# Permissions


def test_permissions_enforced(key, proto):
    ctap = set_pin(key, proto)
    cred = make_with_pin(ctap, proto, RP1, user("alice"))

    # ga only: no makeCredential, no credential management, no config.
    ga = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    cdh = new_cdh()
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.make_credential(cdh, RP1, user("bob"), params(), options={"rk": True}, **auth_kw(proto, ga, cdh))
    with ctap_error(ERR.PIN_AUTH_INVALID):
        CredentialManagement(ctap, proto, ga).get_metadata()
    with ctap_error(ERR.PIN_AUTH_INVALID):
        CredentialManagement(ctap, proto, ga).enumerate_rps_begin()
    with ctap_error(ERR.PIN_AUTH_INVALID):
        Config(ctap, proto, ga).toggle_always_uv()
    # ... but getAssertion (the failures above did not use it up).
    get_assertion(ctap, RP1, cred, auth=(proto, ga))

    # mc only: no getAssertion.
    mc = token(ctap, proto, PERM.MAKE_CREDENTIAL, RP1["id"])
    with ctap_error(ERR.PIN_AUTH_INVALID):
        get_assertion(ctap, RP1, cred, auth=(proto, mc))

    # cm only: no config, no makeCredential.
    cm = token(ctap, proto, PERM.CREDENTIAL_MGMT)
    with ctap_error(ERR.PIN_AUTH_INVALID):
        Config(ctap, proto, cm).set_min_pin_length(6)
    cdh = new_cdh()
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.make_credential(cdh, RP1, user("bob"), params(), **auth_kw(proto, cm, cdh))

    # acfg only: no credential management.
    acfg = token(ctap, proto, PERM.AUTHENTICATOR_CFG)
    with ctap_error(ERR.PIN_AUTH_INVALID):
        CredentialManagement(ctap, proto, acfg).get_metadata()
    assert ctap.get_info().min_pin_length == 4
    assert not ctap.get_info().options.get("alwaysUv")

    # Several permissions in one token.
    both = token(ctap, proto, PERM.CREDENTIAL_MGMT | PERM.AUTHENTICATOR_CFG)
    assert CredentialManagement(ctap, proto, both).get_metadata()[CM.RESULT.EXISTING_CRED_COUNT] == 1
    Config(ctap, proto, both).set_min_pin_length(4)


def test_permissions_refused(key, proto):
    ctap = set_pin(key, proto)
    # be without built-in biometrics (no bioEnroll option): never granted.
    assert "bioEnroll" not in ctap.info.options
    with ctap_error(ERR.UNAUTHORIZED_PERMISSION):
        token(ctap, proto, PERM.BIO_ENROLL)
    with ctap_error(ERR.UNAUTHORIZED_PERMISSION):
        token(ctap, proto, PERM.BIO_ENROLL | PERM.GET_ASSERTION, RP1["id"])
    # An unknown permission bit.
    with ctap_error(ERR.UNAUTHORIZED_PERMISSION):
        token(ctap, proto, 0x80)
    # No permission at all.
    with ctap_error(ERR.INVALID_PARAMETER):
        token(ctap, proto, 0)
    # mc / ga need an rpId.
    with ctap_error(ERR.MISSING_PARAMETER):
        token(ctap, proto, PERM.MAKE_CREDENTIAL)
    with ctap_error(ERR.MISSING_PARAMETER):
        token(ctap, proto, PERM.GET_ASSERTION)
    # Refused requests never got to the PIN: no retry was spent.
    assert retries(ctap, proto) == (8, False)
    check_token(proto, token(ctap, proto, PERM.CREDENTIAL_MGMT))


def test_key_agreement_regenerated(key, proto, addr, open_dev):
    """A wrong PIN and a power cycle both replace the key-agreement key: a
    shared secret from before decrypts to garbage (a wrong PIN)."""
    ctap = set_pin(key, proto)

    def attempt(ctap, ka, shared, pin):
        return ctap.client_pin(
            proto.VERSION,
            ClientPin.CMD.GET_TOKEN_USING_PIN,
            key_agreement=ka,
            pin_hash_enc=proto.encrypt(shared, _sha256(pin.encode())[:16]),
            permissions=PERM.CREDENTIAL_MGMT,
        )

    cp = ClientPin(ctap, proto)
    ka, shared = cp._get_shared_secret()
    attempt(ctap, ka, shared, PIN)  # a match keeps the key: reusable
    attempt(ctap, ka, shared, PIN)
    with ctap_error(ERR.PIN_INVALID):
        attempt(ctap, ka, shared, WRONG)
    with ctap_error(ERR.PIN_INVALID):  # right PIN, stale shared secret
        attempt(ctap, ka, shared, PIN)
    assert retries(ctap, proto)[0] == 6
    ka, shared = cp._get_shared_secret()
    attempt(ctap, ka, shared, PIN)
    assert retries(ctap, proto)[0] == 8

    ctap = power_cycle(addr, open_dev)
    with ctap_error(ERR.PIN_INVALID):
        attempt(ctap, ka, shared, PIN)
    ka, shared = ClientPin(ctap, proto)._get_shared_secret()
    attempt(ctap, ka, shared, PIN)
    assert retries(ctap, proto)[0] == 8


# --------------------------------------------------------------------------
# The lockout sequence across power cycles


def test_lockout_sequence(key, proto, addr, open_dev):
    ctap = set_pin(key, proto)
    cred = make_with_pin(ctap, proto, RP1, user("alice"))

    def attempt(ctap, pin):
        return token(ctap, proto, PERM.GET_ASSERTION, RP1["id"], pin=pin)

    def wrong(ctap, err, left, blocked=False):
        with ctap_error(err):
            attempt(ctap, WRONG)
        r, pcs = retries(ctap, proto)
        assert r == left, "pinRetries %d after a wrong PIN, want %d" % (r, left)
        assert bool(pcs) == blocked, "powerCycleState %r, want %r" % (pcs, blocked)

    assert retries(ctap, proto) == (8, False)
    wrong(ctap, ERR.PIN_INVALID, 7)
    wrong(ctap, ERR.PIN_INVALID, 6)
    wrong(ctap, ERR.PIN_AUTH_BLOCKED, 5, blocked=True)
    # Blocked until a power cycle: even the right PIN, for every PIN use,
    # without spending retries.
    with ctap_error(ERR.PIN_AUTH_BLOCKED):
        attempt(ctap, PIN)
    with ctap_error(ERR.PIN_AUTH_BLOCKED):
        ClientPin(ctap, proto).change_pin(PIN, PIN2)
    with ctap_error(ERR.PIN_AUTH_BLOCKED):
        legacy_pin_token(ctap, proto)
    assert retries(ctap, proto) == (5, True)

    # A power cycle lifts PIN_AUTH_BLOCKED; the retries were persisted.
    ctap = power_cycle(addr, open_dev)
    assert retries(ctap, proto) == (5, False)
    tok = attempt(ctap, PIN)
    assert retries(ctap, proto) == (8, False)
    get_assertion(ctap, RP1, cred, auth=(proto, tok))

    # 8 wrong PINs spread over power cycles block the PIN.
    wrong(ctap, ERR.PIN_INVALID, 7)
    wrong(ctap, ERR.PIN_INVALID, 6)
    wrong(ctap, ERR.PIN_AUTH_BLOCKED, 5, blocked=True)
    ctap = power_cycle(addr, open_dev)
    assert retries(ctap, proto) == (5, False)
    wrong(ctap, ERR.PIN_INVALID, 4)
    wrong(ctap, ERR.PIN_INVALID, 3)
    wrong(ctap, ERR.PIN_AUTH_BLOCKED, 2, blocked=True)
    ctap = power_cycle(addr, open_dev)
    assert retries(ctap, proto) == (2, False)
    wrong(ctap, ERR.PIN_INVALID, 1)
    with ctap_error(ERR.PIN_BLOCKED):
        attempt(ctap, WRONG)
    assert retries(ctap, proto)[0] == 0

    # Blocked for good: the right PIN, changePIN, across a power cycle.
    with ctap_error(ERR.PIN_BLOCKED):
        attempt(ctap, PIN)
    with ctap_error(ERR.PIN_BLOCKED):
        ClientPin(ctap, proto).change_pin(PIN, PIN2)
    ctap = power_cycle(addr, open_dev)
    assert retries(ctap, proto)[0] == 0
    with ctap_error(ERR.PIN_BLOCKED):
        attempt(ctap, PIN)
    with ctap_error(ERR.PIN_BLOCKED):
        legacy_pin_token(ctap, proto)
    with ctap_error(ERR.NOT_ALLOWED):  # a PIN is still set
        ClientPin(ctap, proto).set_pin(PIN2)
    assert retries(ctap, proto)[0] == 0

    # Only a reset recovers: no PIN (getPINRetries: PIN_NOT_SET), no
    # credentials, and 8 retries once a PIN is set again.
    ctap.reset()
    ctap = Ctap2(ctap.device)
    assert ctap.info.options.get("clientPin") is False
    with ctap_error(ERR.PIN_NOT_SET):
        retries(ctap, proto)
    with ctap_error(ERR.NO_CREDENTIALS):
        ctap.get_assertion(RP1["id"], new_cdh(), [descriptor(cred["id"])])
    ctap = set_pin(ctap, proto, PIN2)
    assert retries(ctap, proto) == (8, False)
    check_token(proto, token(ctap, proto, PERM.GET_ASSERTION, RP1["id"], pin=PIN2))


# --------------------------------------------------------------------------
# Credential management


ACCOUNTS = [
    (RP1, ["alice", "bob", "carol"]),
    (RP2, ["dave", "erin"]),
    (RP3, ["frank"]),
]


@pytest.fixture
def populated(key, proto):
    """A PIN-protected key with resident credentials for 3 RPs (3, 2, 1 users)."""
    ctap = set_pin(key, proto)
    creds = []
    for rp, names in ACCOUNTS:
        for n in names:
            creds.append(make_with_pin(ctap, proto, rp, user(n)))
    return ctap, proto, creds


def cm_session(ctap, proto, permissions=PERM.CREDENTIAL_MGMT, rp_id=None):
    return CredentialManagement(ctap, proto, token(ctap, proto, permissions, rp_id))


def listing(cm):
    """{rp_id: {cred_id: credential map}}, checking totals and uniqueness."""
    rps = cm.enumerate_rps()
    out = {}
    total_rps = rps[0][CM.RESULT.TOTAL_RPS] if rps else 0
    assert len(rps) == total_rps
    for r in rps:
        rp = r[CM.RESULT.RP]
        rp_id = rp["id"]
        assert rp_id not in out, "RP %s enumerated twice" % rp_id
        assert r[CM.RESULT.RP_ID_HASH] == _sha256(rp_id.encode())
        creds = cm.enumerate_creds(r[CM.RESULT.RP_ID_HASH])
        assert creds, "RP %s listed without credentials" % rp_id
        assert creds[0][CM.RESULT.TOTAL_CREDENTIALS] == len(creds)
        by_id = {}
        for c in creds:
            cid = c[CM.RESULT.CREDENTIAL_ID]["id"]
            assert c[CM.RESULT.CREDENTIAL_ID]["type"] == "public-key"
            assert cid not in by_id, "credential %s enumerated twice" % cid.hex()
            by_id[cid] = c
        out[rp_id] = (rp, by_id)
    return out


def test_credmgmt_metadata_and_enumerate(populated, addr, open_dev):
    ctap, proto, creds = populated
    other_channel = Ctap2(open_dev())
    cm = cm_session(ctap, proto)

    meta = cm.get_metadata()
    assert meta[CM.RESULT.EXISTING_CRED_COUNT] == 6
    remaining = meta[CM.RESULT.MAX_REMAINING_COUNT]
    info = ctap.get_info()
    if info.remaining_disc_creds is not None:
        assert remaining == info.remaining_disc_creds

    got = listing(cm)
    assert set(got) == {rp["id"] for rp, _ in ACCOUNTS}
    seen = set()
    for rp, names in ACCOUNTS:
        rp_entity, by_id = got[rp["id"]]
        assert rp_entity.get("name", rp["name"]) == rp["name"]
        assert len(by_id) == len(names)
        for c in (c for c in creds if c["rp"] is rp):
            e = by_id.get(c["id"])
            assert e is not None, "credential of %s at %s not enumerated" % (c["user"]["name"], rp["id"])
            assert e[CM.RESULT.USER] == c["user"], "user %r, want %r" % (e[CM.RESULT.USER], c["user"])
            assert dict(e[CM.RESULT.PUBLIC_KEY]) == c["cose"]
            assert e.get(CM.RESULT.CRED_PROTECT, 1) == 1
            seen.add(c["id"])
    assert len(seen) == 6
    assert sum(len(b) for _, b in got.values()) == meta[CM.RESULT.EXISTING_CRED_COUNT]

    # An RP without credentials.
    assert cm.enumerate_creds(_sha256(b"nobody.example")) == []
    with ctap_error(ERR.NO_CREDENTIALS):
        cm.enumerate_creds_begin(_sha256(b"nobody.example"))

    # Enumeration state is dropped by any other command.
    first = cm.enumerate_rps_begin()
    assert first[CM.RESULT.TOTAL_RPS] == 3
    ctap.get_info()
    with ctap_error(ERR.NOT_ALLOWED):
        cm.enumerate_rps_next()
    first = cm.enumerate_creds_begin(rp_id_hash(RP1))
    assert first[CM.RESULT.TOTAL_CREDENTIALS] == 3
    cm.enumerate_creds_next()
    cm.get_metadata()
    with ctap_error(ERR.NOT_ALLOWED):
        cm.enumerate_creds_next()
    # A GetNext without any Begin.
    with ctap_error(ERR.NOT_ALLOWED):
        cm.enumerate_rps_next()
    # A GetNext on another CTAPHID channel.
    cm.enumerate_rps_begin()
    with ctap_error(ERR.NOT_ALLOWED):
        CredentialManagement(other_channel, proto, b"").enumerate_rps_next()

    # The preview command 0x41 (libfido2 1.12 always sends it) works alike.
    tok = token(ctap, proto, PERM.CREDENTIAL_MGMT)
    resp = ctap.send_cbor(CREDMGMT_PREVIEW, {
        1: CM.CMD.GET_CREDS_METADATA, 3: proto.VERSION,
        4: proto.authenticate(tok, bytes([CM.CMD.GET_CREDS_METADATA])),
    })
    assert resp[CM.RESULT.EXISTING_CRED_COUNT] == 6

    # Everything survives a power cycle (a new token is needed).
    ctap = power_cycle(addr, open_dev)
    with ctap_error(ERR.PIN_AUTH_INVALID):
        cm.get_metadata()
    again = listing(cm_session(ctap, proto))
    assert {k: set(v[1]) for k, v in again.items()} == {k: set(v[1]) for k, v in got.items()}


def test_credmgmt_token_checks(populated):
    ctap, proto, creds = populated
    # No pinUvAuthParam at all.
    with ctap_error(PUAT_REQUIRED):
        ctap.credential_mgmt(CM.CMD.GET_CREDS_METADATA)
    # A wrong one.
    tok = token(ctap, proto, PERM.CREDENTIAL_MGMT)
    bad = bytearray(proto.authenticate(tok, bytes([CM.CMD.GET_CREDS_METADATA])))
    bad[0] ^= 1
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.credential_mgmt(CM.CMD.GET_CREDS_METADATA, pin_uv_protocol=proto.VERSION, pin_uv_param=bytes(bad))
    # Tokens without cm.
    for perms, rp in ((PERM.GET_ASSERTION, RP1["id"]), (PERM.MAKE_CREDENTIAL, RP1["id"]),
                      (PERM.AUTHENTICATOR_CFG, None), (PERM.LARGE_BLOB_WRITE, None)):
        cm = cm_session(ctap, proto, perms, rp)
        with ctap_error(ERR.PIN_AUTH_INVALID):
            cm.get_metadata()
        with ctap_error(ERR.PIN_AUTH_INVALID):
            cm.enumerate_creds_begin(rp_id_hash(RP1))
        with ctap_error(ERR.PIN_AUTH_INVALID):
            cm.delete_cred(descriptor(creds[0]["id"]))
    # A cm token bound to an RP ID manages that RP's credentials only.
    cm = cm_session(ctap, proto, PERM.CREDENTIAL_MGMT, RP2["id"])
    assert len(cm.enumerate_creds(rp_id_hash(RP2))) == 2
    with ctap_error(ERR.PIN_AUTH_INVALID):
        cm.enumerate_creds_begin(rp_id_hash(RP1))
    with ctap_error(ERR.PIN_AUTH_INVALID):
        cm.get_metadata()
    with ctap_error(ERR.PIN_AUTH_INVALID):
        cm.enumerate_rps_begin()
    rp1_cred = next(c for c in creds if c["rp"] is RP1)
    with ctap_error(ERR.PIN_AUTH_INVALID):
        cm.delete_cred(descriptor(rp1_cred["id"]))
    assert cm_session(ctap, proto).get_metadata()[CM.RESULT.EXISTING_CRED_COUNT] == 6


def test_credmgmt_update_user_info(populated):
    ctap, proto, creds = populated
    cm = cm_session(ctap, proto)
    bob = next(c for c in creds if c["user"]["name"] == "bob")
    carol = next(c for c in creds if c["user"]["name"] == "carol")

    renamed = {"id": bob["user"]["id"], "name": "robert@example.com", "displayName": "Robert Example"}
    cm.update_user_info(descriptor(bob["id"]), renamed)
    got = listing(cm)
    assert got[RP1["id"]][1][bob["id"]][CM.RESULT.USER] == renamed
    # Nobody else changed.
    for c in creds:
        if c is not bob:
            assert got[c["rp"]["id"]][1][c["id"]][CM.RESULT.USER] == c["user"]

    # Fields left out are removed.
    cm.update_user_info(descriptor(bob["id"]), {"id": bob["user"]["id"], "name": "rob"})
    assert listing(cm)[RP1["id"]][1][bob["id"]][CM.RESULT.USER] == {"id": bob["user"]["id"], "name": "rob"}

    # Another user.id is refused and changes nothing.
    with ctap_error(ERR.INVALID_PARAMETER):
        cm.update_user_info(descriptor(carol["id"]), {"id": bob["user"]["id"], "name": "mallory"})
    with ctap_error(ERR.INVALID_PARAMETER):
        cm.update_user_info(descriptor(carol["id"]), {"id": b"\x00" * 16, "name": "mallory"})
    assert listing(cm)[RP1["id"]][1][carol["id"]][CM.RESULT.USER] == carol["user"]

    # An unknown credential.
    with ctap_error(ERR.NO_CREDENTIALS):
        cm.update_user_info(descriptor(os.urandom(64)), {"id": b"x", "name": "x"})

    # The credential still signs, and a discoverable assertion made with UV
    # reports the new user entity.
    tok = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    cdh = new_cdh()
    resps = ctap.get_assertions(RP1["id"], cdh, **auth_kw(proto, tok, cdh))
    assert len(resps) == 3
    users = {r.credential["id"]: r.user for r in resps}
    assert users[bob["id"]]["id"] == bob["user"]["id"]
    if "name" in users[bob["id"]]:
        assert users[bob["id"]]["name"] == "rob"
    for r in resps:
        r.verify(cdh, next(c for c in creds if c["id"] == r.credential["id"])["key"])


def test_credmgmt_delete(populated):
    ctap, proto, creds = populated
    cm = cm_session(ctap, proto)
    alice = next(c for c in creds if c["user"]["name"] == "alice")
    frank = next(c for c in creds if c["user"]["name"] == "frank")

    cm.delete_cred(descriptor(alice["id"]))
    assert cm.get_metadata()[CM.RESULT.EXISTING_CRED_COUNT] == 5
    got = listing(cm)
    assert alice["id"] not in got[RP1["id"]][1]
    assert len(got[RP1["id"]][1]) == 2
    with ctap_error(ERR.NO_CREDENTIALS):
        ctap.get_assertion(RP1["id"], new_cdh(), [descriptor(alice["id"])])
    with ctap_error(ERR.NO_CREDENTIALS):
        cm.delete_cred(descriptor(alice["id"]))
    with ctap_error(ERR.NO_CREDENTIALS):
        cm.update_user_info(descriptor(alice["id"]), alice["user"])

    # Deleting an RP's only credential removes the RP from the listing.
    cm.delete_cred(descriptor(frank["id"]))
    got = listing(cm)
    assert set(got) == {RP1["id"], RP2["id"]}
    assert cm.get_metadata()[CM.RESULT.EXISTING_CRED_COUNT] == 4
    info = ctap.get_info()
    if info.remaining_disc_creds is not None:
        assert cm.get_metadata()[CM.RESULT.MAX_REMAINING_COUNT] == info.remaining_disc_creds

    # The others still sign; a discoverable assertion lists the 2 left at RP1.
    for c in creds:
        if c is not alice and c is not frank:
            get_assertion(ctap, c["rp"], c)
    tok = token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])
    cdh = new_cdh()
    resps = ctap.get_assertions(RP1["id"], cdh, **auth_kw(proto, tok, cdh))
    assert {r.credential["id"] for r in resps} == set(got[RP1["id"]][1])

    # Delete everything (the ga token replaced the cm one: a new session).
    cm = cm_session(ctap, proto)
    for c in creds:
        if c is not alice and c is not frank:
            cm.delete_cred(descriptor(c["id"]))
    assert cm.get_metadata()[CM.RESULT.EXISTING_CRED_COUNT] == 0
    with ctap_error(ERR.NO_CREDENTIALS):
        cm.enumerate_rps_begin()


# --------------------------------------------------------------------------
# authenticatorConfig


def test_config_toggle_always_uv_without_pin(key, addr, open_dev):
    ctap = key
    # No PIN and no built-in UV: the key is unprotected, config needs no token.
    Config(ctap).toggle_always_uv()
    assert ctap.get_info().options.get("alwaysUv") is True
    # alwaysUv: makeCredential and getAssertion now need UV, which this key
    # can only do with a PIN.
    with ctap_error(PUAT_REQUIRED):
        make(ctap, RP1, user("alice"), rk=False)
    with ctap_error(PUAT_REQUIRED):
        make(ctap, RP1, user("alice"), rk=True)
    with ctap_error(PUAT_REQUIRED):
        ctap.get_assertion(RP1["id"], new_cdh())
    # It is persistent.
    ctap = power_cycle(addr, open_dev)
    assert ctap.info.options.get("alwaysUv") is True
    Config(ctap).toggle_always_uv()
    assert ctap.get_info().options.get("alwaysUv") is False
    cred = make(ctap, RP1, user("alice"), rk=False)
    get_assertion(ctap, RP1, cred)


def test_config_always_uv_clears_make_cred_uv_not_rqd(key):
    ctap = key
    assert ctap.info.options.get("makeCredUvNotRqd") is True
    Config(ctap).toggle_always_uv()
    opts = ctap.get_info().options
    assert opts.get("alwaysUv") is True
    assert not opts.get("makeCredUvNotRqd"), "makeCredUvNotRqd still true with alwaysUv on"


def test_config_toggle_always_uv_with_pin(key, proto):
    ctap = set_pin(key, proto)
    cred = make(ctap, RP1, user("alice"), rk=False)
    # A protected key needs an acfg token.
    with ctap_error(PUAT_REQUIRED):
        Config(ctap).toggle_always_uv()
    Config(ctap, proto, token(ctap, proto, PERM.AUTHENTICATOR_CFG)).toggle_always_uv()
    assert ctap.get_info().options.get("alwaysUv") is True

    # Without a token: refused, also for non-discoverable credentials and
    # assertions; with one: UV.
    with ctap_error(PUAT_REQUIRED):
        make(ctap, RP1, user("bob"), rk=False)
    with ctap_error(PUAT_REQUIRED):
        ctap.get_assertion(RP1["id"], new_cdh(), [descriptor(cred["id"])])
    make_with_pin(ctap, proto, RP1, user("bob"))
    get_assertion(ctap, RP1, cred, auth=(proto, token(ctap, proto, PERM.GET_ASSERTION, RP1["id"])))

    # Toggle back.
    cfg = Config(ctap, proto, token(ctap, proto, PERM.AUTHENTICATOR_CFG))
    cfg.toggle_always_uv()
    assert ctap.get_info().options.get("alwaysUv") is False
    get_assertion(ctap, RP1, cred)


def test_config_bad_requests(key, proto):
    ctap = key
    # vendorPrototype: none defined. Enterprise attestation is offered ("ep")
    # but off until enableEnterpriseAttestation (test_attestation_u2f.py).
    assert ctap.info.options.get("ep") is False
    with ctap_error(ERR.INVALID_SUBCOMMAND):
        ctap.config(Config.CMD.VENDOR_PROTOTYPE, {1: 1})
    ctap = set_pin(ctap, proto)
    tok = token(ctap, proto, PERM.AUTHENTICATOR_CFG)
    msg = b"\xff" * 32 + b"\x0d" + b"\xff"
    with ctap_error(ERR.INVALID_SUBCOMMAND):
        ctap.config(Config.CMD.VENDOR_PROTOTYPE, None, proto.VERSION, proto.authenticate(tok, msg))
    # A wrong pinUvAuthParam.
    msg = b"\xff" * 32 + b"\x0d" + bytes([Config.CMD.TOGGLE_ALWAYS_UV])
    bad = bytearray(proto.authenticate(tok, msg))
    bad[3] ^= 4
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.config(Config.CMD.TOGGLE_ALWAYS_UV, None, proto.VERSION, bytes(bad))
    assert ctap.get_info().options.get("alwaysUv") is False


def test_config_set_min_pin_length(key, proto, addr, open_dev):
    ctap = key
    assert ctap.info.min_pin_length == 4
    # Unprotected key: no token needed.
    Config(ctap).set_min_pin_length(6)
    assert ctap.get_info().min_pin_length == 6
    with ctap_error(ERR.PIN_POLICY_VIOLATION):
        ClientPin(ctap, proto).set_pin("12345")
    with ctap_error(ERR.PIN_POLICY_VIOLATION):  # 5 code points, 10 bytes
        raw_set_pin(ctap, proto, "äöüßé".encode())
    ctap = set_pin(ctap, proto, "123456")
    assert not ctap.info.force_pin_change

    # Now the key is protected: a token with acfg is needed.
    with ctap_error(PUAT_REQUIRED):
        Config(ctap).set_min_pin_length(7)
    cfg = Config(ctap, proto, token(ctap, proto, PERM.AUTHENTICATOR_CFG, pin="123456"))
    # Lowering is refused (only a reset lowers it); the same value is fine.
    with ctap_error(ERR.PIN_POLICY_VIOLATION):
        cfg.set_min_pin_length(5)
    cfg.set_min_pin_length(6)
    info = ctap.get_info()
    assert info.min_pin_length == 6 and not info.force_pin_change
    # Above the current PIN's length: the PIN must be changed.
    cfg.set_min_pin_length(8)
    info = ctap.get_info()
    assert info.min_pin_length == 8
    assert info.force_pin_change is True
    # A right PIN is verified (retries restored) but gives no token.
    with ctap_error(ERR.PIN_POLICY_VIOLATION):
        token(ctap, proto, PERM.GET_ASSERTION, RP1["id"], pin="123456")
    assert retries(ctap, proto)[0] == 8
    with ctap_error(ERR.PIN_POLICY_VIOLATION):
        ClientPin(ctap, proto).change_pin("123456", "1234567")
    # Persistent across a power cycle.
    ctap = power_cycle(addr, open_dev)
    assert ctap.info.min_pin_length == 8 and ctap.info.force_pin_change is True
    ClientPin(ctap, proto).change_pin("123456", "12345678")
    info = ctap.get_info()
    assert not info.force_pin_change and info.min_pin_length == 8
    tok = token(ctap, proto, PERM.AUTHENTICATOR_CFG, pin="12345678")

    # forceChangePin without a new length.
    Config(ctap, proto, tok).set_min_pin_length(force_change_pin=True)
    info = ctap.get_info()
    assert info.force_pin_change is True and info.min_pin_length == 8
    with ctap_error(ERR.PIN_POLICY_VIOLATION):
        token(ctap, proto, PERM.CREDENTIAL_MGMT, pin="12345678")
    with ctap_error(ERR.PIN_POLICY_VIOLATION):  # the new PIN must differ
        ClientPin(ctap, proto).change_pin("12345678", "12345678")
    ClientPin(ctap, proto).change_pin("12345678", "87654321")
    assert not ctap.get_info().force_pin_change
    tok = token(ctap, proto, PERM.AUTHENTICATOR_CFG, pin="87654321")

    # The RP ID list is accepted (its effect is the minPinLength extension's
    # test); the length stays.
    Config(ctap, proto, tok).set_min_pin_length(rp_ids=[RP1["id"]])
    assert ctap.get_info().min_pin_length == 8

    # Reset restores the defaults.
    ctap.reset()
    info = ctap.get_info()
    assert info.min_pin_length == 4 and not info.force_pin_change
    assert info.options.get("clientPin") is False


def test_config_force_change_needs_pin(key):
    with ctap_error(ERR.PIN_NOT_SET):
        Config(key).set_min_pin_length(force_change_pin=True)
    assert not key.get_info().force_pin_change
