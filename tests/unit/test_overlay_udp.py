"""Where link-local discovery announcements go (psutil's interface list faked)."""

from __future__ import annotations

import socket
import sys
import types
from typing import Any

import pytest

from dnaagent.overlay import udp


def _addr(
    family: int, address: str, broadcast: str | None = None, netmask: str | None = None
) -> Any:
    return types.SimpleNamespace(
        family=family, address=address, netmask=netmask, broadcast=broadcast, ptp=None
    )


def _fake_psutil(addrs: dict[str, list[Any]], up: dict[str, bool]) -> Any:
    return types.SimpleNamespace(
        net_if_addrs=lambda: addrs,
        net_if_stats=lambda: {n: types.SimpleNamespace(isup=u) for n, u in up.items()},
    )


@pytest.fixture
def interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback, two up interfaces (one IPv4-only) and one that is down."""
    v4, v6 = socket.AF_INET, socket.AF_INET6
    addrs = {
        "lo": [_addr(v4, "127.0.0.1"), _addr(v6, "::1")],
        "eth0": [
            _addr(v4, "192.0.2.10", "192.0.2.255"),
            _addr(v6, "2001:db8::10"),
            _addr(v6, "fe80::1%eth0"),
        ],
        # Added without "brd": reports its own address as broadcast.
        "eth1": [_addr(v4, "198.51.100.7", "198.51.100.7", "255.255.255.128")],
        "eth3": [_addr(v4, "192.0.2.129", None, "255.255.255.254")],  # a /31
        "eth2": [_addr(v4, "203.0.113.5", "203.0.113.255"), _addr(v6, "fe80::2%eth2")],
        "tun0": [_addr(v4, "10.8.0.2")],  # point to point: no broadcast address
    }
    up = {"lo": True, "eth0": True, "eth1": True, "eth2": False, "eth3": True, "tun0": True}
    monkeypatch.setitem(sys.modules, "psutil", _fake_psutil(addrs, up))


def test_each_up_interface_gets_its_broadcast_and_all_nodes_group(interfaces: None) -> None:
    """Directed broadcast per interface, ff02::1 scoped per interface, never loopback."""
    assert udp.discovery_addresses(4001) == [
        ("192.0.2.255", 4001),
        ("ff02::1%eth0", 4001),
        ("198.51.100.127", 4001),
    ]


def test_one_family_only(interfaces: None) -> None:
    """ipv4/ipv6 switch a family off."""
    assert udp.discovery_addresses(4001, ipv6=False) == [
        ("192.0.2.255", 4001),
        ("198.51.100.127", 4001),
    ]
    assert udp.discovery_addresses(4001, ipv4=False) == [("ff02::1%eth0", 4001)]


def test_falls_back_to_the_limited_broadcast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an interface list the limited broadcast is used."""

    def broken() -> Any:
        raise OSError("no interfaces")

    monkeypatch.setitem(
        sys.modules,
        "psutil",
        types.SimpleNamespace(net_if_addrs=broken, net_if_stats=broken),
    )
    monkeypatch.setattr(socket, "if_nameindex", lambda: [(1, "lo"), (2, "eth0")])
    assert udp.discovery_addresses(4001) == [
        ("255.255.255.255", 4001),
        ("ff02::1%eth0", 4001),
    ]
