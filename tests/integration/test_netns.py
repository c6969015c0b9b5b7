"""The namespace harness itself: the LAN it builds works and leaves nothing behind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .netns import (
    DNS_ANSWER,
    DNS_NAME,
    GATEWAY_V4,
    GATEWAY_V6,
    HOST_NIC,
    HOST_V6,
    NETNS_ETC,
    SERVER_V4,
    UNREACHABLE_V4,
    Lab,
    build_lan,
    unavailable_reason,
)

_reason = unavailable_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)
if shutil.which("dnsmasq") is None:
    pytest.skip("dnsmasq is not installed", allow_module_level=True)

pytestmark = pytest.mark.integration


def _namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in listing.stdout.splitlines() if line.strip()]


def test_ipv4_lan_reaches_gateway_server_and_dns(lab: Lab) -> None:
    """The IPv4 LAN pings its gateway and server, not the unreachable set, and resolves."""
    lan = build_lan(lab, family=4)
    assert lan.host.ping(GATEWAY_V4)
    assert lan.host.ping(SERVER_V4)
    assert not lan.host.ping(UNREACHABLE_V4[0], timeout=0.5)
    resolv = lan.host.run("cat", "/etc/resolv.conf").stdout
    assert resolv.split() == ["nameserver", GATEWAY_V4]
    answer = lan.host.run("getent", "ahostsv4", DNS_NAME).stdout
    assert DNS_ANSWER in answer.split()


def test_ipv6_lan_has_only_ipv6_and_a_link_local_gateway(lab: Lab) -> None:
    """The IPv6 LAN has no IPv4 address on the NIC, routes via fe80::1 and resolves."""
    lan = build_lan(lab, family=6)
    assert "inet " not in lan.host.ip("-4", "addr", "show", "dev", HOST_NIC).stdout
    assert "via fe80::1" in lan.host.ip("-6", "route", "show", "default").stdout
    assert lan.host.ping(GATEWAY_V6)
    answer = lan.host.run("getent", "ahostsv6", "host.example.test").stdout
    assert HOST_V6 in answer.split()


def test_close_removes_namespaces_files_and_processes(tmp_path: Path) -> None:
    """Lab.close ends dnsmasq, deletes both namespaces and the /etc/netns directory."""
    lab = Lab(tmp_path)
    try:
        lan = build_lan(lab, family=4)
    except BaseException:
        lab.close()
        raise
    names = [lan.host.name, lan.router.name]
    assert set(names) <= set(_namespaces())
    assert lan.dns is not None and lan.dns.alive()
    assert (NETNS_ETC / lan.host.name / "resolv.conf").exists()
    lab.close()
    assert not set(names) & set(_namespaces())
    assert not lan.dns.alive()
    assert not (NETNS_ETC / lan.host.name).exists()


def test_namespace_names_are_unique_per_lab(tmp_path: Path) -> None:
    """Two labs never share a namespace prefix, so parallel runs cannot collide."""
    prefixes = {Lab(tmp_path).prefix for _ in range(50)}
    assert len(prefixes) == 50
    assert all(p.startswith("dnat-") for p in prefixes)
