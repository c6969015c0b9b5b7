"""Fakes of the host facts, the pinger and the DNS client of the local module.

:class:`FakeHostInfo` implements :class:`~dnaagent.modules.hostinfo.HostInfoAPI`
from plain lists; :meth:`FakeHostInfo.healthy` builds a well-configured host
that tests then break one fact at a time. :class:`FakePinger` and
:class:`FakeResolver` answer from tables and record what they were asked;
both fire at once unless told to hang, and hanging requests honour
cancellation.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from twisted.internet import defer

from dnaagent.measure.dns import DnsResult
from dnaagent.measure.ping import PingResult
from dnaagent.modules.hostinfo import (
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    Address,
    HostInfoAPI,
    Link,
    LogScan,
    Route,
)
from dnaagent.modules.leases import Lease

NIC = "eth0"
ADDRESS_V4 = "192.0.2.10/24"
GATEWAY_V4 = "192.0.2.1"
ADDRESS_V6 = "2001:db8:1::10/64"
LINK_LOCAL_V6 = "fe80::10/64"
GATEWAY_V6 = "fe80::1"
RESOLVER = "192.0.2.53"


def link(name: str = NIC, index: int = 2, **changes: Any) -> Link:
    """A healthy Ethernet link named ``name``; keyword arguments change fields."""
    base = Link(
        name=name,
        index=index,
        admin_up=True,
        oper_state="UP",
        carrier=True,
        mtu=1500,
        mac="02:00:00:00:00:10",
        driver="e1000e",
        speed_mbps=1000,
        duplex="full",
    )
    return replace(base, **changes)


def address(text: str, ifname: str = NIC, **changes: Any) -> Address:
    """An address of ``ifname`` with the scope ``ip addr`` would give it."""
    iface = ipaddress.ip_interface(text)
    if iface.ip.is_loopback:
        scope = "host"
    elif iface.ip.is_link_local:
        scope = "link"
    else:
        scope = "global"
    base = Address(ifname=ifname, interface=iface, scope=scope)
    return replace(base, **changes)


def route(
    dst: str,
    gateway: str | None = None,
    ifname: str = NIC,
    table: int = RT_TABLE_MAIN,
    **changes: Any,
) -> Route:
    """A route to ``dst`` (``default`` for 0.0.0.0/0 or ::/0)."""
    if dst == "default":
        v6 = gateway is not None and ":" in gateway
        dst = "::/0" if v6 else "0.0.0.0/0"
    network = ipaddress.ip_network(dst, strict=False)
    family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
    return Route(
        family=family,
        table=table,
        dst=network,
        gateway=ipaddress.ip_address(gateway) if gateway else None,
        ifname=ifname,
        **changes,
    )


class FakeHostInfo(HostInfoAPI):
    """Host facts from plain lists, changeable by tests."""

    def __init__(
        self,
        links: Iterable[Link] = (),
        addresses: Iterable[Address] = (),
        routes: Iterable[Route] = (),
        files: Mapping[str, str] | None = None,
        leases: Iterable[Lease] = (),
        log: LogScan | None = None,
    ) -> None:
        self.link_list = list(links)
        self.address_list = list(addresses)
        self.route_list = list(routes)
        self.files = dict(files or {})
        self.lease_list = list(leases)
        self.log = log if log is not None else LogScan("journal", [])
        self.log_requests: list[tuple[str, float]] = []

    @classmethod
    def healthy(cls, *, ipv6: bool = True) -> FakeHostInfo:
        """A host whose eth0 has IPv4 and IPv6, gateways and one resolver."""
        addresses = [address("127.0.0.1/8", "lo"), address(ADDRESS_V4)]
        routes = [
            route("default", GATEWAY_V4),
            route("192.0.2.0/24"),
            route("127.0.0.0/8", ifname="lo", table=RT_TABLE_LOCAL),
        ]
        if ipv6:
            addresses += [address("::1/128", "lo"), address(ADDRESS_V6), address(LINK_LOCAL_V6)]
            routes += [route("default", GATEWAY_V6), route("2001:db8:1::/64")]
        return cls(
            links=[
                link("lo", 1, oper_state="UNKNOWN", loopback=True, driver=None, mac=None),
                link(),
            ],
            addresses=addresses,
            routes=routes,
            files={
                "/etc/resolv.conf": f"# managed by hand\nnameserver {RESOLVER}\n",
                "/etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
            },
        )

    def set_link(self, name: str, **changes: Any) -> None:
        """Change fields of the link ``name``."""
        self.link_list = [replace(x, **changes) if x.name == name else x for x in self.link_list]

    def remove_addresses(self, ifname: str = NIC) -> None:
        """Drop every address of ``ifname``."""
        self.address_list = [a for a in self.address_list if a.ifname != ifname]

    def links(self) -> list[Link]:
        """The links given."""
        return list(self.link_list)

    def addresses(self, ifname: str | None = None) -> list[Address]:
        """The addresses given, of ``ifname`` or all."""
        return [a for a in self.address_list if ifname is None or a.ifname == ifname]

    def routes(self) -> list[Route]:
        """The routes given."""
        return list(self.route_list)

    def read_text(self, path: str) -> str | None:
        """The text given for ``path``, None when there is none."""
        return self.files.get(path)

    def dhcp_leases(self) -> list[Lease]:
        """The leases given."""
        return list(self.lease_list)

    def system_log(self, ifname: str, since: float) -> LogScan:
        """The log scan given; records what was asked."""
        self.log_requests.append((ifname, since))
        return self.log


class FakePinger:
    """Answers pings from a table of round-trip times; records every ping."""

    def __init__(
        self, answers: Mapping[str, float] | None = None, hang: Iterable[str] = ()
    ) -> None:
        self.answers = dict(answers or {})
        self.hang = set(hang)
        self.sent: list[tuple[str, str | None]] = []
        self.cancelled: list[str] = []

    def answer(self, *addresses: str, rtt_ms: float = 0.5) -> FakePinger:
        """Make ``addresses`` answer with ``rtt_ms``; returns self."""
        for a in addresses:
            self.answers[a] = rtt_ms
        return self

    def ping(
        self, address: str, timeout: float, *, interface: str | None = None
    ) -> defer.Deferred[PingResult]:
        """A result at once, or (for a hanging address) a Deferred that never fires."""
        self.sent.append((address, interface))
        if address in self.hang:
            return defer.Deferred(lambda _d: self.cancelled.append(address))
        if address in self.answers:
            return defer.succeed(PingResult(address, True, rtt_ms=self.answers[address]))
        return defer.succeed(PingResult(address, False, error=f"no reply within {timeout:g} s"))


class FakeResolver:
    """A DNS client answering from a table keyed by server (and optionally name)."""

    def __init__(self, answers: Mapping[Any, DnsResult | str] | None = None) -> None:
        self.answers: dict[Any, DnsResult | str] = dict(answers or {})
        self.queries: list[tuple[str, str, str]] = []

    def works(self, server: str, *records: str) -> FakeResolver:
        """Make ``server`` answer NOERROR with ``records``; returns self."""
        self.answers[server] = DnsResult(server, "", "", rcode="NOERROR", answers=records)
        return self

    def query(
        self, server: str, name: str, rdtype: str, timeout: float
    ) -> defer.Deferred[DnsResult]:
        """The table's answer for ``(server, name)`` or ``server``, else a timeout."""
        self.queries.append((server, name, rdtype))
        found = self.answers.get((server, name), self.answers.get(server))
        if found is None:
            return defer.succeed(
                DnsResult(server, name, rdtype, error=f"no reply within {timeout:g} s")
            )
        if isinstance(found, str):
            return defer.succeed(DnsResult(server, name, rdtype, rcode=found))
        return defer.succeed(replace(found, server=server, name=name, rdtype=rdtype, rtt_ms=1.0))
