#!/usr/bin/python3
"""python-fido2 steps for the control-API end-to-end test (internal/e2e).

    control_check.py register --rp example.com --user alice [--uv]
    control_check.py assert   --rp example.com [--cred-id B64URL] [--spki B64URL --alg N] [--uv]

The device address comes from $VIRTKEY_UDP. Each prints one JSON object:
{"credentialId": B64URL, "signCount": N, "flags": N} on success, or
{"error": NAME, "code": N} with exit status 1 when the key answers a CTAP
error. `assert` without --cred-id is a discoverable getAssertion; with
--spki it verifies the signature under that public key (SPKI DER).
"""

import argparse
import base64
import json
import os
import sys

from cryptography.hazmat.primitives.serialization import load_der_public_key
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import virtkey_udp  # noqa: E402


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def main(argv=None):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("register")
    r.add_argument("--rp", default="example.com")
    r.add_argument("--user", default="alice")
    r.add_argument("--uv", action="store_true")
    a = sub.add_parser("assert")
    a.add_argument("--rp", default="example.com")
    a.add_argument("--cred-id")
    a.add_argument("--spki")
    a.add_argument("--alg", type=int, default=-7)
    a.add_argument("--uv", action="store_true")
    args = p.parse_args(argv)

    ctap = Ctap2(virtkey_udp.open_device())
    cdh = os.urandom(32)
    options = {"uv": True} if args.uv else None
    try:
        if args.cmd == "register":
            uid = ("uid-" + args.user).encode()
            att = ctap.make_credential(
                cdh,
                {"id": args.rp, "name": args.rp},
                {"id": uid, "name": args.user, "displayName": args.user},
                [{"type": "public-key", "alg": -7}],
                options=dict(options or {}, rk=True),
            )
            ad = att.auth_data
            emit({"credentialId": b64(ad.credential_data.credential_id), "signCount": ad.counter, "flags": ad.flags})
            return 0
        allow = [{"type": "public-key", "id": unb64(args.cred_id)}] if args.cred_id else None
        resp = ctap.get_assertion(args.rp, cdh, allow, options=options)
    except CtapError as e:
        emit({"error": e.code.name, "code": int(e.code)})
        return 1
    if args.spki:
        key = CoseKey.for_alg(args.alg).from_cryptography_key(load_der_public_key(unb64(args.spki)))
        try:
            resp.verify(cdh, key)
        except Exception as e:
            emit({"error": "bad signature: %r" % e, "code": -1})
            return 1
    ad = resp.auth_data
    emit({"credentialId": b64(resp.credential["id"]), "signCount": ad.counter, "flags": ad.flags})
    return 0


if __name__ == "__main__":
    sys.exit(main())
