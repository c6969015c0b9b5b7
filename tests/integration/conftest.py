"""Fixtures of the namespace integration tests.

``lab``
    A :class:`~tests.integration.netns.Lab`: create namespaces, veth pairs,
    resolv.conf files and processes; all of it is removed after the test,
    passed or failed.
``lan``
    A healthy IPv4 :class:`~tests.integration.netns.Lan` (host + router with
    gateway and DNS server) built in ``lab``.
``lan6``
    The same with IPv6 addresses only and a link-local gateway.
``dnactl`` / ``twistd``
    Paths of the executables installed next to the running Python.

Every test module here skips as a whole when namespaces are not available
(not root, no iproute2, no ``ip netns``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .netns import Lab, Lan, build_lan, venv_bin


def _installed(name: str) -> Path:
    path = venv_bin(name)
    if not path.exists():
        pytest.fail(f"{path} is missing: install the package (pip install -e .) into this venv")
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A lab whose namespaces, files and processes are removed after the test."""
    the_lab = Lab(tmp_path)
    try:
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def dnactl() -> Path:
    """The ``dnactl`` executable of the test venv."""
    return _installed("dnactl")


@pytest.fixture
def twistd() -> Path:
    """The ``twistd`` executable of the test venv."""
    return _installed("twistd")


@pytest.fixture
def lan(lab: Lab, dnactl: Path) -> Lan:
    """A healthy IPv4 LAN: host 192.0.2.10/24, gateway and DNS server 192.0.2.1."""
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed")
    return build_lan(lab, family=4)


@pytest.fixture
def lan6(lab: Lab, dnactl: Path) -> Lan:
    """A healthy IPv6-only LAN: host 2001:db8:1::10/64, gateway fe80::1."""
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed")
    return build_lan(lab, family=6)
