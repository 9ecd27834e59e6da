#!/usr/bin/python3
"""Small scripted client steps for internal/e2e (restart and crash tests).

    scenario.py register      --rp example.com --user alice
    scenario.py register-loop --rp example.com --count 500
    scenario.py assert        --rp example.com --creds FILE [--discoverable]

The device address comes from --addr or $VIRTKEY_UDP. Every credential line is
one JSON object, flushed as soon as the authenticator acknowledged it:

    {"id": HEX, "key": HEX(CBOR COSE key), "user": HEX, "rp": RPID, "counter": N}

`assert` reads such lines (the last line per id wins), gets an assertion for
each credential with an allowList, verifies the signature with the stored
public key and checks the counter went up; it prints the credential line again
with the new counter. With --discoverable it also runs a discoverable
getAssertion (+ getNextAssertion) and checks every listed credential is among
the results. Exit status 0: all good; 1: a check failed; 2: usage; 3: the
device failed (e.g. it was killed) during register-loop.
"""

import argparse
import json
import os
import sys

from fido2 import cbor
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import virtkey_udp  # noqa: E402


def verify_attestation(att, cdh):
    """packed (batch with x5c, or self) or none; raises Failure otherwise."""
    from fido2.attestation import NoneAttestation, PackedAttestation

    try:
        if att.fmt == "packed":
            PackedAttestation().verify(att.att_statement, att.auth_data, cdh)
        elif att.fmt == "none":
            NoneAttestation().verify(att.att_statement, att.auth_data, cdh)
        else:
            raise Failure("unexpected attestation %s %r" % (att.fmt, att.att_statement))
    except Failure:
        raise
    except Exception as e:
        raise Failure("attestation does not verify: %r" % e)


class Failure(Exception):
    pass


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def cred_line(rp, uid, att):
    cd = att.auth_data.credential_data
    return {
        "id": cd.credential_id.hex(),
        "key": cbor.encode(dict(cd.public_key)).hex(),
        "user": uid.hex(),
        "rp": rp,
        "counter": att.auth_data.counter,
        "fmt": att.fmt,
    }


def register_one(ctap, rp, name, rk=True):
    uid = ("uid-" + name).encode()
    cdh = os.urandom(32)
    att = ctap.make_credential(
        cdh,
        {"id": rp, "name": rp},
        {"id": uid, "name": name, "displayName": name},
        [{"type": "public-key", "alg": -7}],
        options={"rk": True} if rk else None,
    )
    verify_attestation(att, cdh)
    return cred_line(rp, uid, att)


def cmd_register(args):
    ctap = Ctap2(virtkey_udp.open_device(args.addr))
    emit(register_one(ctap, args.rp, args.user, rk=not args.non_resident))
    return 0


def cmd_register_loop(args):
    ctap = Ctap2(virtkey_udp.open_device(args.addr, timeout=args.timeout))
    for i in range(args.count):
        try:
            line = register_one(ctap, args.rp, "%s%04d" % (args.prefix, i))
        except Exception as e:  # the key was killed under us: expected
            sys.stderr.write("register-loop: stopped after %d: %r\n" % (i, e))
            return 3
        emit(line)
    return 0


def load_creds(path):
    creds = {}
    order = []
    with open(path) as f:
        for raw in f:
            raw = raw.strip()
            if not raw:
                continue
            c = json.loads(raw)
            if c["id"] not in creds:
                order.append(c["id"])
            creds[c["id"]] = c
    return [creds[i] for i in order]


def cmd_assert(args):
    creds = load_creds(args.creds)
    if not creds:
        raise Failure("no credentials in %s" % args.creds)
    ctap = Ctap2(virtkey_udp.open_device(args.addr))
    for c in creds:
        if c["rp"] != args.rp:
            continue
        cid = bytes.fromhex(c["id"])
        key = CoseKey.parse(cbor.decode(bytes.fromhex(c["key"])))
        cdh = os.urandom(32)
        try:
            resp = ctap.get_assertion(args.rp, cdh, [{"type": "public-key", "id": cid}])
        except CtapError as e:
            raise Failure("credential %s: getAssertion failed: %s" % (c["id"], e))
        if resp.credential["id"] != cid:
            raise Failure("credential %s: assertion names %s" % (c["id"], resp.credential["id"].hex()))
        try:
            resp.verify(cdh, key)
        except Exception as e:
            raise Failure("credential %s: signature does not verify: %r" % (c["id"], e))
        if not resp.auth_data.flags & 0x01:
            raise Failure("credential %s: UP flag not set" % c["id"])
        if resp.auth_data.counter <= c["counter"]:
            raise Failure(
                "credential %s: counter %d not above %d"
                % (c["id"], resp.auth_data.counter, c["counter"])
            )
        c = dict(c, counter=resp.auth_data.counter)
        emit(c)

    if args.discoverable:
        want = {c["id"] for c in creds if c["rp"] == args.rp}
        resps = ctap.get_assertions(args.rp, os.urandom(32))
        got = [r.credential["id"].hex() for r in resps]
        missing = want - set(got)
        if missing:
            raise Failure(
                "discoverable getAssertion returned %d credentials; missing %s"
                % (len(got), sorted(missing))
            )
        for r in resps:
            if not r.user or "id" not in r.user:
                raise Failure("discoverable assertion without user.id: %r" % r)
        sys.stderr.write("assert: discoverable getAssertion returned %d credentials\n" % len(got))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", default=None, help="host:port (default $VIRTKEY_UDP)")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("register")
    r.add_argument("--rp", default="example.com")
    r.add_argument("--user", default="alice")
    r.add_argument("--non-resident", action="store_true")
    r.set_defaults(func=cmd_register)

    rl = sub.add_parser("register-loop")
    rl.add_argument("--rp", default="example.com")
    rl.add_argument("--count", type=int, default=1000)
    rl.add_argument("--prefix", default="user")
    rl.add_argument("--timeout", type=float, default=2.0, help="per-report read timeout")
    rl.set_defaults(func=cmd_register_loop)

    a = sub.add_parser("assert")
    a.add_argument("--rp", default="example.com")
    a.add_argument("--creds", required=True, help="file of credential JSON lines")
    a.add_argument("--discoverable", action="store_true")
    a.set_defaults(func=cmd_assert)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except Failure as e:
        sys.stderr.write("FAIL: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
