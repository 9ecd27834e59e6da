"""Attestation modes, every algorithm, enterprise attestation and CTAP1/U2F
against virtkey run's defaults (batch attestation), with python-fido2 0.9.1.
"""

import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fido2.attestation import PackedAttestation
from fido2.attestation.base import AttestationType
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap1 import APDU, ApduError, Ctap1

from vkutil import (
    EDDSA,
    ES256,
    RP1,
    RS256,
    ctap_error,
    descriptor,
    new_cdh,
    params,
    rp_id_hash,
    sha256,
    user,
)

ES384 = -35
OID_AAGUID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
ERR = CtapError.ERR


def batch_cert(att):
    stmt = att.att_statement
    assert att.fmt == "packed" and "x5c" in stmt, "want batch attestation, got %s %r" % (att.fmt, list(stmt))
    assert PackedAttestation().verify(stmt, att.auth_data, att.cdh).attestation_type == AttestationType.BASIC
    return x509.load_der_x509_certificate(stmt["x5c"][0])


def make(ctap, alg=ES256, **kw):
    cdh = new_cdh()
    att = ctap.make_credential(cdh, RP1, user("alice"), params(alg), **kw)
    att.cdh = cdh
    return att


def test_batch_attestation(empty_ctap):
    ctap = empty_ctap
    assert ctap.info.options.get("ep") is False, "enterprise attestation capable, off after reset"
    cert = batch_cert(make(ctap))
    ou = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert [a.value for a in ou] == ["Authenticator Attestation"]
    ext = cert.extensions.get_extension_for_oid(OID_AAGUID)
    assert not ext.critical
    assert ext.value.value == b"\x04\x10" + ctap.info.aaguid
    issuer = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert issuer.startswith("virtkey Attestation Root")


@pytest.mark.parametrize("alg", [ES256, EDDSA, ES384, RS256])
def test_every_algorithm(empty_ctap, alg):
    ctap = empty_ctap
    assert alg in [a["alg"] for a in ctap.info.algorithms]
    att = make(ctap, alg)
    batch_cert(att)
    cd = att.auth_data.credential_data
    pub = dict(cd.public_key)
    assert pub[3] == alg
    cdh = new_cdh()
    resp = ctap.get_assertion(RP1["id"], cdh, [descriptor(cd.credential_id)])
    signed = resp.auth_data + cdh
    if alg == ES384:
        nums = ec.EllipticCurvePublicNumbers(
            int.from_bytes(pub[-2], "big"), int.from_bytes(pub[-3], "big"), ec.SECP384R1()
        )
        nums.public_key().verify(resp.signature, signed, ec.ECDSA(hashes.SHA384()))
    else:
        CoseKey.parse(pub).verify(signed, resp.signature)


def test_enterprise_attestation(empty_ctap):
    ctap = empty_ctap
    # Disabled: the parameter is refused.
    with ctap_error(ERR.INVALID_PARAMETER):
        ctap.send_cbor(0x01, {1: new_cdh(), 2: RP1, 3: user("a"), 4: params(), 0x0A: 2})
    ctap.config(0x01)  # enableEnterpriseAttestation (unprotected key: no token)
    assert ctap.get_info().options.get("ep") is True
    with ctap_error(ERR.INVALID_OPTION):
        ctap.send_cbor(0x01, {1: new_cdh(), 2: RP1, 3: user("a"), 4: params(), 0x0A: 3})
    # Platform-managed: the per-device enterprise certificate, epAtt true.
    from fido2.ctap2 import AttestationObject

    cdh = new_cdh()
    att = ctap.send_cbor(0x01, {1: cdh, 2: RP1, 3: user("a"), 4: params(), 0x0A: 2}, parse=AttestationObject)
    att.cdh = cdh
    assert att.ep_att is True
    cn = batch_cert(att).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn.startswith("virtkey EA Serial ")
    # Vendor-facilitated for an RP that is not on the list: ordinary batch attestation.
    att = ctap.send_cbor(0x01, {1: cdh, 2: RP1, 3: user("b"), 4: params(), 0x0A: 1}, parse=AttestationObject)
    att.cdh = cdh
    assert not att.ep_att
    cn = batch_cert(att).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "virtkey Batch Attestation"
    ctap.reset()


def test_u2f(empty_ctap, dev):
    ctap = empty_ctap
    assert "U2F_V2" in ctap.info.versions
    u2f = Ctap1(dev)
    assert u2f.get_version() == "U2F_V2"
    app = rp_id_hash(RP1)
    challenge = os.urandom(32)
    reg = u2f.register(challenge, app)
    reg.verify(app, challenge)  # attestation signature with the batch certificate
    cert = x509.load_der_x509_certificate(reg.certificate)
    ou = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert [a.value for a in ou] == ["Authenticator Attestation"]

    with pytest.raises(ApduError) as e:
        u2f.authenticate(challenge, app, reg.key_handle, check_only=True)
    assert e.value.code == APDU.USE_NOT_SATISFIED
    with pytest.raises(ApduError) as e:
        u2f.authenticate(challenge, sha256(b"other.example"), reg.key_handle, check_only=True)
    assert e.value.code == APDU.WRONG_DATA

    last = 0
    for _ in range(2):
        sig = u2f.authenticate(challenge, app, reg.key_handle)
        sig.verify(app, challenge, reg.public_key)
        assert sig.user_presence & 1 and sig.counter > last
        last = sig.counter

    # The U2F credential works for CTAP2 getAssertion with the same RP id.
    cdh = new_cdh()
    resp = ctap.get_assertion(RP1["id"], cdh, [descriptor(reg.key_handle)])
    assert resp.auth_data.counter > last
    from fido2.cose import ES256 as CoseES256

    CoseES256.from_ctap1(reg.public_key).verify(resp.auth_data + cdh, resp.signature)

    # Bad APDUs.
    for cla, ins, want in [(0x80, 0x03, 0x6E00), (0x00, 0x04, 0x6D00)]:
        with pytest.raises(ApduError) as e:
            u2f.send_apdu(cla=cla, ins=ins)
        assert e.value.code == want
    with pytest.raises(ApduError) as e:
        u2f.send_apdu(ins=Ctap1.INS.REGISTER, data=b"\x00" * 63)
    assert e.value.code == 0x6700
