#!/usr/bin/python3
"""Golden values for ctap2/pinprotocol.go from python-fido2's PIN/UV auth protocols.

Oracle: python-fido2 0.9.1 as packaged by Debian (python3-fido2), module
fido2/ctap2/pin.py (PinProtocolV1, PinProtocolV2, _pad_pin). The script drives
the library's own platform-side code (encapsulate, encrypt, authenticate) with
fixed private keys and fixed IVs by replacing the module's key generator and
os.urandom, and prints JSON on stdout. Regenerate with:

    /usr/bin/python3 python_fido2_golden.py > python_fido2_golden.json

The Go test only reads the JSON; it never runs Python.
"""

import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import fido2
from fido2.ctap2 import pin as fpin

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def scalar(label):
    """A fixed private scalar in [1, n-1] derived from a label."""
    return int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % (P256_N - 1) + 1


def xy(pub):
    b = pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return b[1:33], b[33:]


class FixedIVs:
    """Replaces os.urandom in fido2.ctap2.pin: IV i is 16 bytes of (i + seed)."""

    def __init__(self, seed):
        self.n = seed

    def urandom(self, size):
        assert size == 16, size
        self.n += 1
        return bytes([self.n & 0xFF]) * 16


def case(name, proto_cls, auth_d, plat_d, pin, new_pin, iv_seed):
    auth = ec.derive_private_key(auth_d, ec.SECP256R1())
    plat = ec.derive_private_key(plat_d, ec.SECP256R1())
    ax, ay = xy(auth.public_key())

    # Run python-fido2's encapsulate with our fixed platform key.
    orig_gen = fpin.ec.generate_private_key
    fpin.ec.generate_private_key = lambda curve, backend=None: plat
    try:
        proto = proto_cls()
        key_agreement, shared = proto.encapsulate({1: 2, 3: -25, -1: 1, -2: ax, -3: ay})
    finally:
        fpin.ec.generate_private_key = orig_gen

    ivs = FixedIVs(iv_seed)
    orig_urandom = fpin.os.urandom
    fpin.os.urandom = ivs.urandom
    try:
        padded = fpin._pad_pin(pin)
        new_padded = fpin._pad_pin(new_pin)
        new_pin_enc = proto.encrypt(shared, padded)  # setPIN
        set_pin_auth = proto.authenticate(shared, new_pin_enc)
        pin_hash = hashlib.sha256(pin.encode()).digest()[:16]
        pin_hash_enc = proto.encrypt(shared, pin_hash)  # changePIN / getPinToken
        change_new_pin_enc = proto.encrypt(shared, new_padded)
        change_pin_auth = proto.authenticate(shared, change_new_pin_enc + pin_hash_enc)
        token = hashlib.sha256(b"virtkey golden token " + name.encode()).digest()
        token_enc = proto.encrypt(shared, token)  # authenticator's response, decrypted by the platform
        assert proto.decrypt(shared, token_enc) == token
        client_data_hash = hashlib.sha256(b"virtkey golden clientDataJSON").digest()
        mc_auth = proto.authenticate(proto.validate_token(token), client_data_hash)
        salts = hashlib.sha256(b"salt1").digest() + hashlib.sha256(b"salt2").digest()
        salt_enc = proto.encrypt(shared, salts)  # hmac-secret saltEnc
        salt_auth = proto.authenticate(shared, salt_enc)
    finally:
        fpin.os.urandom = orig_urandom

    h = lambda b: b.hex()
    return {
        "name": name,
        "protocol": proto.VERSION,
        "authenticatorPrivateKey": "%064x" % auth_d,
        "platformPrivateKey": "%064x" % plat_d,
        "authenticatorX": h(ax),
        "authenticatorY": h(ay),
        "platformX": h(key_agreement[-2]),
        "platformY": h(key_agreement[-3]),
        "sharedSecret": h(shared),
        "pin": pin,
        "paddedPIN": h(padded),
        "newPinEnc": h(new_pin_enc),
        "setPinAuth": h(set_pin_auth),
        "pinHash": h(pin_hash),
        "pinHashEnc": h(pin_hash_enc),
        "newPin": new_pin,
        "changeNewPinEnc": h(change_new_pin_enc),
        "changePinAuth": h(change_pin_auth),
        "pinUvAuthToken": h(token),
        "pinUvAuthTokenEnc": h(token_enc),
        "clientDataHash": h(client_data_hash),
        "mcPinUvAuthParam": h(mc_auth),
        "salts": h(salts),
        "saltEnc": h(salt_enc),
        "saltAuth": h(salt_auth),
    }


def main():
    ww_auth = 0x90F0A83DBA763DFA331061198FC90033A7ADEFE8FE63DA224667B2C5AC0A52BA
    ww_plat = 0xE5FCCB46DE79B04B62E930BBB72B274E30134545F08D54C72BBA22407C825344
    vk_auth = scalar("virtkey golden authenticator")
    vk_plat = scalar("virtkey golden platform")
    long_pin = "0123456789" * 6 + "abc"  # 63 bytes, the maximum
    cases = [
        case("p1-webauthnworks-keys", fpin.PinProtocolV1, ww_auth, ww_plat, "123456", "09876", 0x10),
        case("p2-webauthnworks-keys", fpin.PinProtocolV2, ww_auth, ww_plat, "123456", "09876", 0x20),
        case("p1-unicode", fpin.PinProtocolV1, vk_auth, vk_plat, "пароль🔑", long_pin, 0x30),
        case("p2-unicode", fpin.PinProtocolV2, vk_auth, vk_plat, "пароль🔑", long_pin, 0x40),
    ]
    out = {
        "source": "python-fido2 %s (Debian python3-fido2), fido2/ctap2/pin.py; generated by python_fido2_golden.py" % fido2.__version__,
        "cases": cases,
    }
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
