"""pytest fixtures for the virtkey UDP tests.

The authenticator address comes from the environment variable VIRTKEY_UDP
(host:port), e.g. VIRTKEY_UDP=127.0.0.1:8111. internal/e2e starts virtkey and
sets it; to run by hand:

    virtkey run --transport udp --udp-listen 127.0.0.1:8111 --state-dir /tmp/vk \
        --presence auto --reset-window 0 &
    VIRTKEY_UDP=127.0.0.1:8111 /usr/bin/python3 -m pytest -q testdata/python
"""

import os

import pytest

from fido2.ctap2 import Ctap2

import virtkey_udp


@pytest.fixture(scope="session")
def addr():
    a = os.environ.get("VIRTKEY_UDP")
    if not a:
        pytest.fail("VIRTKEY_UDP is not set: start virtkey and set VIRTKEY_UDP=127.0.0.1:PORT")
    virtkey_udp.parse_addr(a)  # validates the format
    return a


@pytest.fixture
def open_dev(addr):
    """Factory: opens extra CtapHidDevices (closed at teardown)."""
    devs = []

    def _open():
        d = virtkey_udp.open_device(addr)
        devs.append(d)
        return d

    yield _open
    for d in devs:
        d.close()


@pytest.fixture
def dev(open_dev):
    """A fresh CtapHidDevice (own UDP socket, own CTAPHID channel)."""
    return open_dev()


@pytest.fixture
def ctap(dev):
    """A fresh Ctap2 on a fresh device (getInfo already done)."""
    return Ctap2(dev)


@pytest.fixture
def empty_ctap(ctap):
    """A Ctap2 on a key that was just reset (no credentials)."""
    ctap.reset()
    return Ctap2(ctap.device)  # re-read getInfo after the reset
