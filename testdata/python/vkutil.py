"""Shared helpers for the python-fido2 tests against virtkey (python-fido2 0.9.1)."""

import contextlib
import hashlib
import os

import pytest

from fido2.attestation import NoneAttestation, PackedAttestation
from fido2.attestation.base import AttestationType
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import AttestationObject, AuthenticatorData

ES256 = -7
EDDSA = -8
RS256 = -257

RP1 = {"id": "example.com", "name": "Example"}
RP2 = {"id": "example.org", "name": "Other Example"}

FLAG_UP = AuthenticatorData.FLAG.USER_PRESENT
FLAG_UV = AuthenticatorData.FLAG.USER_VERIFIED
FLAG_AT = AuthenticatorData.FLAG.ATTESTED
FLAG_ED = AuthenticatorData.FLAG.EXTENSION_DATA


def sha256(data):
    return hashlib.sha256(data).digest()


def rp_id_hash(rp):
    return sha256(rp["id"].encode())


def new_cdh():
    """A random clientDataHash."""
    return os.urandom(32)


def user(name, uid=None):
    return {
        "id": uid if uid is not None else ("user-" + name).encode(),
        "name": name,
        "displayName": name.capitalize(),
    }


def params(*algs):
    return [{"type": "public-key", "alg": a} for a in (algs or (ES256,))]


def descriptor(cred_id):
    return {"type": "public-key", "id": cred_id}


@contextlib.contextmanager
def ctap_error(code):
    """Expects the block to raise CtapError with exactly `code`."""
    with pytest.raises(CtapError) as exc:
        yield exc
    got = exc.value.code
    assert got == code, "want CTAP error %s, got %s" % (CtapError.ERR(code), got)


def verify_attestation(att, cdh):
    """Verifies a makeCredential attestation object like an RP would.

    packed is either *batch* attestation (virtkey run's default: x5c holding
    the batch certificate, which must meet the FIDO packed certificate
    requirements python-fido2 checks, alg -7, signature over authData ||
    clientDataHash with the certificate's key) or *self* attestation (no x5c,
    alg of the credential key, signature with the credential key); none must
    carry an empty attStmt.
    """
    assert isinstance(att, AttestationObject)
    if att.fmt == "packed":
        stmt = att.att_statement
        assert "ecdaaKeyId" not in stmt
        result = PackedAttestation().verify(stmt, att.auth_data, cdh)
        if "x5c" in stmt:
            assert len(stmt["x5c"]) >= 1
            assert stmt.get("alg") == ES256, "batch attestation alg %r" % stmt.get("alg")
            assert result.attestation_type == AttestationType.BASIC
        else:
            cose = att.auth_data.credential_data.public_key
            assert stmt.get("alg") == cose[3], "attStmt alg %r != credential alg %r" % (
                stmt.get("alg"),
                cose[3],
            )
            assert result.attestation_type == AttestationType.SELF
    elif att.fmt == "none":
        assert att.att_statement == {}, "none attestation must have an empty attStmt"
        NoneAttestation().verify(att.att_statement, att.auth_data, cdh)
    else:
        pytest.fail("unexpected attestation format %r" % att.fmt)


def check_new_credential(att, cdh, rp, alg=ES256, aaguid=None):
    """Common checks on a fresh credential; returns (cred_id, CoseKey)."""
    verify_attestation(att, cdh)
    ad = att.auth_data
    assert ad.rp_id_hash == rp_id_hash(rp)
    assert ad.flags & FLAG_UP, "UP flag not set in makeCredential authData (flags=%#x)" % ad.flags
    assert ad.flags & FLAG_AT, "AT flag not set in makeCredential authData (flags=%#x)" % ad.flags
    assert not ad.flags & FLAG_UV, "UV flag set although no UV was performed (flags=%#x)" % ad.flags
    cd = ad.credential_data
    assert cd is not None
    assert len(cd.aaguid) == 16
    if aaguid is not None and att.fmt == "packed":
        assert cd.aaguid == aaguid, "authData AAGUID differs from getInfo aaguid"
    assert 16 <= len(cd.credential_id) <= 1023
    key = CoseKey.parse(dict(cd.public_key))
    assert key[3] == alg, "credential alg %r, want %r" % (key[3], alg)
    if alg == ES256:
        assert key[1] == 2 and key[-1] == 1, "want an EC2 P-256 COSE key, got %r" % dict(key)
        assert len(key[-2]) == 32 and len(key[-3]) == 32
    elif alg == EDDSA:
        assert key[1] == 1 and key[-1] == 6, "want an OKP Ed25519 COSE key, got %r" % dict(key)
        assert len(key[-2]) == 32
    # The key really is a point we can load (raises otherwise).
    if alg == ES256:
        from cryptography.hazmat.primitives.asymmetric import ec

        ec.EllipticCurvePublicNumbers(
            int.from_bytes(key[-2], "big"), int.from_bytes(key[-3], "big"), ec.SECP256R1()
        ).public_key()
    return cd.credential_id, key


def make_cred(ctap, rp=RP1, usr=None, rk=True, algs=(ES256,), exclude=None, info=None):
    """makeCredential + all the standard checks. Returns a dict describing it."""
    usr = usr or user("alice")
    cdh = new_cdh()
    options = {"rk": True} if rk else None
    att = ctap.make_credential(cdh, rp, usr, params(*algs), exclude_list=exclude, options=options)
    cred_id, key = check_new_credential(
        att, cdh, rp, alg=algs[0] if len(algs) == 1 else att.auth_data.credential_data.public_key[3],
        aaguid=(info or ctap.info).aaguid,
    )
    return {
        "id": cred_id,
        "key": key,
        "user": usr,
        "rp": rp,
        "counter": att.auth_data.counter,
        "att": att,
    }


def make_creds(ctap, rp, *names):
    """make_cred of a discoverable credential at rp for each user name, in order."""
    return [make_cred(ctap, rp, user(name)) for name in names]


def check_assertion(resp, cdh, rp, cred=None, up=True):
    """Checks a getAssertion/getNextAssertion response; verifies the signature."""
    ad = resp.auth_data
    assert ad.rp_id_hash == rp_id_hash(rp)
    if up:
        assert ad.flags & FLAG_UP, "UP flag missing in assertion (flags=%#x)" % ad.flags
    else:
        assert not ad.flags & FLAG_UP, "UP flag set though up=false (flags=%#x)" % ad.flags
    assert not ad.flags & FLAG_AT, "AT flag must not be set in an assertion"
    assert not ad.flags & FLAG_UV
    assert resp.credential is not None and resp.credential.get("type") == "public-key"
    if cred is not None:
        assert resp.credential["id"] == cred["id"], "assertion for an unexpected credential"
        resp.verify(cdh, cred["key"])
    return ad.counter
