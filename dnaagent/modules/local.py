"""The local test module: is this host's own network setup sound? (seed 000 §2.2)

Every test concerns one network interface (the ``nic`` parameter). The
default sequence first checks the hardware and the TCP/IP stack
(``NICStatus``, ``NetConnectionStatus``, ``PingLocalHost``); when all three
succeed the Mediator runs the local configuration and connectivity tests
(``IPConfiguration``, ``DNSConfiguration``, ``DHCPLease``, ``PingOwnIP``,
``PingWellKnownHosts``). ``SystemLog``, ``HostsFile`` and ``RoutingTable``
are optional. ``docs/local-tests.md`` describes each test and its failures.

The tests read host facts through :class:`~dnaagent.modules.hostinfo.HostInfoAPI`,
ping through a :class:`~dnaagent.measure.ping.PingerAPI` and query DNS servers
through a :class:`~dnaagent.measure.dns.DnsClientAPI`, so that they can run
against fakes. They only send traffic to the host itself, its gateways, its
configured DNS servers, the entries of its hosts file and the hosts the
operator named.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dnaagent.config import LocalSection
from dnaagent.measure.dns import DnsClientAPI, DnsResult, UdpDnsClient, reverse_name
from dnaagent.measure.ping import Pinger, PingerAPI, PingResult
from dnaagent.mediator.interface import (
    InvalidParameters,
    ITestModule,
    ITestRun,
    Outcome,
    TestSpec,
)
from dnaagent.modules.hostinfo import (
    RT_TABLE_LOCAL,
    Address,
    HostInfo,
    HostInfoAPI,
    Link,
    Route,
)
from dnaagent.modules.leases import Lease, describe_expiry
from dnaagent.modules.sysfiles import parse_hosts, parse_resolv_conf

HARDWARE = ("NICStatus", "NetConnectionStatus", "PingLocalHost")

TESTS: tuple[TestSpec, ...] = (
    TestSpec("NICStatus", "the interface exists and is administratively up; driver, MTU, MAC"),
    TestSpec("NetConnectionStatus", "the interface has a link: carrier present, not dormant"),
    TestSpec("PingLocalHost", "the TCP/IP stack answers ping on 127.0.0.1 (and ::1)"),
    TestSpec(
        "IPConfiguration",
        "the interface has a usable address and its gateway lies in one of its subnets",
        HARDWARE,
    ),
    TestSpec(
        "DNSConfiguration",
        "resolv.conf names DNS servers that answer a lookup",
        HARDWARE,
    ),
    TestSpec(
        "DHCPLease",
        "a DHCP address is leased and unexpired, not self-assigned (169.254/16)",
        HARDWARE,
    ),
    TestSpec("PingOwnIP", "the interface's own addresses answer ping", HARDWARE),
    TestSpec(
        "PingWellKnownHosts",
        "the hosts named in [local] well_known_hosts answer ping",
        HARDWARE,
    ),
    TestSpec(
        "SystemLog",
        "recent warnings of the network stack and DHCP client in the system log",
        default=False,
        timeout=60.0,
    ),
    TestSpec(
        "HostsFile",
        "the hosts file is well formed and its entries answer ping",
        ("PingLocalHost",),
        default=False,
    ),
    TestSpec(
        "RoutingTable",
        "the gateway of every route of every routing table answers ping",
        ("PingLocalHost",),
        default=False,
    ),
)

DNS_TIMEOUT = 2.0
LOG_WINDOW = 3600.0
HOSTS_PING_LIMIT = 16
GATEWAY_PING_LIMIT = 32
LOG_ENTRIES_KEPT = 20
CONFIG_FILE = "/etc/dnaagent/dnaagent.toml"

_APIPA = ipaddress.ip_network("169.254.0.0/16")
_TABLE_NAMES = {253: "default", 254: "main"}

RunBlocking = Callable[..., defer.Deferred[Any]]
ResolveName = Callable[[str], defer.Deferred[list[str]]]


def _table(table: int) -> str:
    return _TABLE_NAMES.get(table, str(table))


def _speed(link: Link) -> str:
    if link.speed_mbps is None:
        return ""
    duplex = f" {link.duplex} duplex" if link.duplex else ""
    return f", {link.speed_mbps} Mb/s{duplex}"


def _summary(results: Sequence[PingResult]) -> str:
    return ", ".join(
        f"{r.address} in {r.rtt_ms:.1f} ms" if r.reply else f"{r.address} no reply" for r in results
    )


def _ping_stats(results: Sequence[PingResult]) -> dict[str, Any]:
    """Flat figures of a set of pings, for threshold triggers and the MIB."""
    rtts = [r.rtt_ms for r in results if r.reply and r.rtt_ms is not None]
    return {
        "rtt_ms_max": max(rtts) if rtts else None,
        "rtt_ms_avg": sum(rtts) / len(rtts) if rtts else None,
        "unreachable": sum(1 for r in results if not r.reply),
    }


def _ping_details(results: Sequence[PingResult]) -> list[dict[str, Any]]:
    return [
        {"address": r.address, "reply": r.reply, "rtt_ms": r.rtt_ms, "error": r.error}
        for r in results
    ]


@implementer(ITestModule)
class LocalModule:
    """Tests of the host's own network setup, bound to one network interface."""

    name = "local"
    description = "local tests: the NIC, its link, the TCP/IP stack and the host's configuration"
    tests = TESTS
    parameters = {
        "nic": "network interface to test (default: [local] nic, else the default route's)",
    }

    def __init__(
        self,
        cfg: LocalSection,
        reactor: Any,
        host: HostInfoAPI,
        pinger: PingerAPI,
        dns: DnsClientAPI,
        *,
        run_blocking: RunBlocking | None = None,
        resolve_name: ResolveName | None = None,
    ) -> None:
        self.cfg = cfg
        self.reactor = reactor
        self.host = host
        self.pinger = pinger
        self.dns = dns
        self.run_blocking: RunBlocking = run_blocking or self._in_thread
        self.resolve_name: ResolveName = resolve_name or self._getaddrinfo

    def _in_thread(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

    def _getaddrinfo(self, name: str) -> defer.Deferred[list[str]]:
        def lookup() -> list[str]:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
            return list(dict.fromkeys(str(info[4][0]) for info in infos))

        return self.run_blocking(lookup)

    def choose_nic(self, params: Mapping[str, str]) -> tuple[str, str]:
        """The interface to test and why it was chosen; raises InvalidParameters."""
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise InvalidParameters(
                f"unknown parameter {', '.join(unknown)} for module local; "
                f"it takes: {', '.join(self.parameters)}"
            )
        nic = (params.get("nic") or "").strip()
        if nic:
            names = [link.name for link in self.host.links()]
            if nic not in names:
                raise InvalidParameters(
                    f"there is no network interface named {nic!r}; "
                    f"existing interfaces: {', '.join(names) or 'none'}"
                )
            return nic, "parameter"
        if self.cfg.nic:
            # Not checked here: if the configured NIC vanished, NICStatus says so.
            return self.cfg.nic, "configuration"
        nic_found = self.host.default_route_nic()
        if nic_found:
            return nic_found, "default route"
        candidates = [link.name for link in self.host.links() if not link.loopback]
        if len(candidates) == 1:
            return candidates[0], "only interface"
        raise InvalidParameters(
            "no NIC given and there is no default route to pick one by; "
            f"choose one with nic=IF (existing interfaces: {', '.join(candidates) or 'none'})"
        )

    def open_run(self, params: Mapping[str, str]) -> LocalRun:
        """Pick the NIC (see :meth:`choose_nic`) and return a run of tests on it."""
        nic, origin = self.choose_nic(params)
        return LocalRun(self, nic, origin)


@implementer(ITestRun)
class LocalRun:
    """One run of the local tests against one interface."""

    log = Logger()

    def __init__(self, module: LocalModule, nic: str, origin: str) -> None:
        self.module = module
        self.cfg = module.cfg
        self.host = module.host
        self.nic = nic
        self.origin = origin
        self._tests: dict[str, Callable[[], Coroutine[Any, Any, Outcome]]] = {
            "NICStatus": self.nic_status,
            "NetConnectionStatus": self.net_connection_status,
            "PingLocalHost": self.ping_local_host,
            "IPConfiguration": self.ip_configuration,
            "DNSConfiguration": self.dns_configuration,
            "DHCPLease": self.dhcp_lease,
            "PingOwnIP": self.ping_own_ip,
            "PingWellKnownHosts": self.ping_well_known_hosts,
            "SystemLog": self.system_log,
            "HostsFile": self.hosts_file,
            "RoutingTable": self.routing_table,
        }

    def run_test(self, name: str) -> Coroutine[Any, Any, Outcome]:
        """Start the test ``name``; the Mediator awaits the coroutine."""
        return self._tests[name]()

    # -- helpers ---------------------------------------------------------

    def _now(self) -> float:
        return float(self.module.reactor.seconds())

    def _ping(self, address: str, interface: str | None = None) -> defer.Deferred[PingResult]:
        return self.module.pinger.ping(address, self.cfg.ping_timeout, interface=interface)

    async def _ping_all(self, targets: Sequence[tuple[str, str | None]]) -> list[PingResult]:
        if not targets:
            return []
        return await _gather([self._ping(a, i) for a, i in targets])

    def _scope(self, address: str, ifname: str | None) -> str | None:
        """The interface to scope a link-local IPv6 address with, else None."""
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.version == 6 and ip.is_link_local:
            return address.split("%", 1)[1] if "%" in address else ifname
        return None

    def _missing(self) -> Outcome:
        names = [link.name for link in self.host.links()]
        return Outcome.error(
            f"{self.nic} does not exist (chosen by {self.origin}); "
            f"existing interfaces: {', '.join(names) or 'none'}",
            nic=self.nic,
            existing=names,
        )

    # -- hardware and TCP/IP ----------------------------------------------

    async def nic_status(self) -> Outcome:
        """NICStatus: the interface exists and is administratively up."""
        link = self.host.link(self.nic)
        if link is None:
            return self._missing()
        details = {
            "nic": link.name,
            "chosen_by": self.origin,
            "index": link.index,
            "driver": link.driver,
            "kind": link.kind,
            "mtu": link.mtu,
            "mac": link.mac,
            "admin_up": link.admin_up,
        }
        what = (
            f"driver {link.driver}"
            if link.driver
            else (f"{link.kind} interface" if link.kind else "no driver reported")
        )
        if not link.admin_up:
            return Outcome.error(
                f"{link.name} is administratively down ({what}); "
                f"bring it up with 'ip link set {link.name} up'",
                **details,
            )
        described = f"{link.name} is up: {what}, MTU {link.mtu}" + (
            f", MAC {link.mac}" if link.mac else ""
        )
        if link.mtu < 576:
            return Outcome.warning(
                f"{described}; an MTU below 576 breaks ordinary IPv4 traffic", **details
            )
        return Outcome.ok(described, **details)

    async def net_connection_status(self) -> Outcome:
        """NetConnectionStatus: the interface has a working link."""
        link = self.host.link(self.nic)
        if link is None:
            return self._missing()
        state = link.oper_state.upper()
        details = {
            "nic": link.name,
            "oper_state": state,
            "carrier": link.carrier,
            "speed_mbps": link.speed_mbps,
            "duplex": link.duplex,
        }
        if not link.admin_up:
            return Outcome.error(
                f"{link.name} is administratively down, so it has no connection", **details
            )
        if state == "DORMANT":
            return Outcome.error(
                f"{link.name} has a link but is dormant: authentication (802.1X or WPA) "
                "is still in progress or was refused",
                **details,
            )
        if state == "LOWERLAYERDOWN":
            return Outcome.error(
                f"{link.name} is down because the interface it runs over is down", **details
            )
        if state == "NOTPRESENT":
            return Outcome.error(
                f"{link.name} is not present: its hardware or driver is missing", **details
            )
        if state == "TESTING":
            return Outcome.error(f"{link.name} is in test mode", **details)
        if state == "DOWN" or link.carrier is False:
            return Outcome.error(
                f"{link.name} has no carrier: the cable is not plugged in, "
                "or the switch port or the other end is down",
                **details,
            )
        if state == "UP":
            text = f"{link.name} is up, carrier present{_speed(link)}"
        else:
            text = (
                f"{link.name} has a carrier{_speed(link)} "
                f"(its driver reports the operational state as {state.lower()})"
            )
        if link.duplex == "half":
            return Outcome.warning(
                f"{text}; half duplex usually means a duplex mismatch with the switch",
                **details,
            )
        return Outcome.ok(text, **details)

    async def ping_local_host(self) -> Outcome:
        """PingLocalHost: the TCP/IP stack answers on the loopback addresses."""
        targets = [("127.0.0.1", None)]
        if self.host.ipv6_enabled():
            targets.append(("::1", None))
        results = await self._ping_all(targets)
        details = {"pings": _ping_details(results), **_ping_stats(results)}
        failed = [r for r in results if not r.reply]
        if failed:
            lo = next((link for link in self.host.links() if link.loopback), None)
            hint = ""
            if lo is not None and not lo.admin_up:
                hint = f"; the loopback interface {lo.name} is down"
            return Outcome.error(
                "the TCP/IP stack does not answer: "
                + "; ".join(r.describe() for r in failed)
                + hint,
                **details,
            )
        return Outcome.ok(f"the TCP/IP stack answers: {_summary(results)}", **details)

    # -- local configuration and connectivity -------------------------------

    async def ip_configuration(self) -> Outcome:
        """IPConfiguration: a usable address, and the gateway in one of its subnets."""
        addresses = self.host.addresses(self.nic)
        usable = [a for a in addresses if a.usable]
        details: dict[str, Any] = {
            "nic": self.nic,
            "addresses": [str(a) for a in addresses],
            "usable": [str(a) for a in usable],
        }
        dadfailed = [a for a in addresses if "dadfailed" in a.flags]
        if not usable:
            if dadfailed:
                return Outcome.error(
                    f"{self.nic}: another host on the link already uses "
                    f"{', '.join(str(a) for a in dadfailed)} (duplicate address detected)",
                    **details,
                )
            tentative = [a for a in addresses if a.tentative]
            if tentative:
                return Outcome.error(
                    f"{self.nic}'s addresses {', '.join(str(a) for a in tentative)} are still "
                    "tentative (duplicate address detection has not finished)",
                    **details,
                )
            apipa = [a for a in addresses if a.version == 4 and a.ip in _APIPA]
            if apipa:
                return Outcome.error(
                    f"{self.nic} has only the self-assigned address {apipa[0]}: "
                    "no DHCP server gave it one",
                    **details,
                )
            local = [a for a in addresses if a.link_local]
            extra = f" (only the link-local {', '.join(map(str, local))})" if local else ""
            return Outcome.error(f"{self.nic} has no IP address{extra}", **details)
        gateways = self._gateways()
        details["gateways"] = [
            {"gateway": str(r.gateway), "table": _table(r.table), "onlink": r.onlink}
            for r in gateways
        ]
        problems: list[str] = []
        remarks: list[str] = []
        placed: list[str] = []
        for route in gateways:
            gw = route.gateway
            assert gw is not None
            same = [a for a in addresses if a.version == gw.version and not a.tentative]
            if any(a.ip == gw for a in same):
                problems.append(f"gateway {gw} is {self.nic}'s own address")
                continue
            if gw.version == 6 and gw.is_link_local:
                placed.append(f"gateway {gw} is link-local (on-link)")
                continue
            home = next((a for a in same if gw in a.interface.network), None)
            if home is not None:
                placed.append(f"gateway {gw} is in {home.interface.network}")
                continue
            subnets = ", ".join(str(a) for a in same) or f"no IPv{gw.version} subnet"
            # The kernel accepts such a route only when it is marked onlink;
            # the gateway is still not where the addressing says it should be.
            onlink = " (the route is forced with onlink)" if route.onlink else ""
            problems.append(f"gateway {gw} is outside {subnets}{onlink}")
        if dadfailed:
            remarks.append(f"duplicate address detected for {', '.join(map(str, dadfailed))}")
        head = f"{self.nic} has {', '.join(str(a) for a in usable)}"
        if problems:
            return Outcome.error(f"{head}, but " + "; ".join(problems), **details)
        if not gateways:
            remarks.append(
                f"there is no default gateway via {self.nic}: only its subnets are reachable"
            )
        if remarks:
            return Outcome.warning("; ".join([head, *placed, *remarks]), **details)
        return Outcome.ok("; ".join([head, *placed]), **details)

    def _gateways(self) -> list[Route]:
        seen: set[tuple[str, int]] = set()
        result = []
        for route in self.host.routes():
            if (
                route.ifname == self.nic
                and route.default
                and route.gateway is not None
                and route.table != RT_TABLE_LOCAL
                and (str(route.gateway), route.table) not in seen
            ):
                seen.add((str(route.gateway), route.table))
                result.append(route)
        return result

    async def dns_configuration(self) -> Outcome:
        """DNSConfiguration: resolvers are configured, reachable and answer a lookup."""
        path = self.cfg.resolv_conf
        text = self.host.read_text(path)
        if text is None:
            return Outcome.error(f"{path} does not exist: no DNS server is configured", path=path)
        servers, bad = parse_resolv_conf(text)
        details: dict[str, Any] = {
            "path": path,
            "servers": servers,
            "bad_lines": [str(b) for b in bad],
        }
        if not servers:
            extra = f" ({'; '.join(map(str, bad))})" if bad else ""
            return Outcome.error(f"{path} names no DNS server{extra}", **details)
        name = self.cfg.dns_lookup_name or "."
        rdtype = "NS" if name == "." else "A"
        reverse_of = self._reverse_address() if self.cfg.dns_reverse_lookup else None
        timeout = max(DNS_TIMEOUT, self.cfg.ping_timeout)
        checks = [self._check_resolver(s, name, rdtype, reverse_of, timeout) for s in servers]
        verdicts = await _gather([defer.ensureDeferred(c) for c in checks])
        details["resolvers"] = [v["details"] for v in verdicts]
        working = [v for v in verdicts if v["works"]]
        dead = [v for v in verdicts if not v["works"]]
        what = "the root name servers" if name == "." else f"{name} {rdtype}"
        if not working:
            return Outcome.error(
                f"no DNS server answers a lookup of {what}: " + "; ".join(v["text"] for v in dead),
                **details,
            )
        text_ok = "; ".join(v["text"] for v in working)
        if dead:
            return Outcome.warning(
                f"{len(dead)} of {len(verdicts)} DNS servers do not work: "
                + "; ".join(v["text"] for v in dead)
                + f" (working: {text_ok})",
                **details,
            )
        missing_ptr = [v for v in working if v.get("reverse_failed")]
        if reverse_of is not None and len(missing_ptr) == len(working):
            return Outcome.warning(
                f"{text_ok}; but no server resolves {reverse_of} in reverse "
                f"({missing_ptr[0]['reverse_failed']})",
                **details,
            )
        return Outcome.ok(text_ok, **details)

    def _reverse_address(self) -> str | None:
        usable = [a for a in self.host.addresses(self.nic) if a.usable]
        return str(usable[0].ip) if usable else None

    async def _check_resolver(
        self, server: str, name: str, rdtype: str, reverse_of: str | None, timeout: float
    ) -> dict[str, Any]:
        waits: list[defer.Deferred[Any]] = [
            self._ping(server, self._scope(server, self.nic)),
            self.module.dns.query(server, name, rdtype, timeout),
        ]
        if reverse_of is not None:
            waits.append(self.module.dns.query(server, reverse_name(reverse_of), "PTR", timeout))
        ping, answer, *rest = await _gather(waits)
        reverse: DnsResult | None = rest[0] if rest else None
        works = answer.noerror
        details: dict[str, Any] = {
            "server": server,
            "ping": {"reply": ping.reply, "rtt_ms": ping.rtt_ms, "error": ping.error},
            "lookup": {
                "name": name,
                "type": rdtype,
                "rcode": answer.rcode,
                "answers": list(answer.answers),
                "rtt_ms": answer.rtt_ms,
                "error": answer.error,
            },
        }
        verdict: dict[str, Any] = {"works": works, "details": details}
        if works:
            text = f"{server} answered in {answer.rtt_ms:.1f} ms"
            if not ping.reply:
                # The seed is explicit: a working lookup outweighs a lost ping.
                text += " (it does not answer ping, which is fine)"
        elif answer.answered:
            text = f"{server} answered {answer.rcode}" + (
                "" if ping.reply else " and does not answer ping"
            )
        elif ping.reply:
            text = f"{server} answers ping but not DNS ({answer.error})"
        else:
            text = f"{server} answers neither ping nor DNS ({answer.error})"
        verdict["text"] = text
        if reverse is not None:
            details["reverse"] = {
                "address": reverse_of,
                "rcode": reverse.rcode,
                "answers": list(reverse.answers),
                "error": reverse.error,
            }
            if not (reverse.noerror and reverse.answers):
                verdict["reverse_failed"] = reverse.rcode or reverse.error
        return verdict

    async def dhcp_lease(self) -> Outcome:
        """DHCPLease: a DHCP address is leased, unexpired, and not self-assigned."""
        now = self._now()
        v4 = [a for a in self.host.addresses(self.nic) if a.version == 4 and not a.tentative]
        apipa = [a for a in v4 if a.ip in _APIPA]
        real = [a for a in v4 if a.ip not in _APIPA]
        mine = {str(a.ip) for a in real}
        leases = [
            lease
            for lease in self.host.dhcp_leases()
            if lease.interface == self.nic or (lease.interface is None and lease.address in mine)
        ]
        details: dict[str, Any] = {
            "nic": self.nic,
            "ipv4": [str(a) for a in v4],
            "leases": [_lease_details(lease, now) for lease in leases],
        }
        if apipa and not real:
            return Outcome.error(
                f"{self.nic} has only the self-assigned address {apipa[0]}: no DHCP server "
                "answered (the server may have no free address or be unreachable, or a "
                "wireless key may be wrong)",
                **details,
            )
        if not real:
            if leases:
                last = max(leases, key=lambda lease: lease.expires or 0.0)
                return Outcome.error(
                    f"{self.nic} has no IPv4 address although it uses DHCP: its last lease "
                    f"({last.address} from {last.path}) {describe_expiry(last, now)}",
                    **details,
                )
            return Outcome.skipped(
                f"{self.nic} has no IPv4 address and no DHCP lease: DHCP is not in use on it",
                **details,
            )
        errors: list[str] = []
        notes: list[str] = []
        for address in real:
            sentence, failed = self._lease_verdict(address, leases, now)
            (errors if failed else notes).append(sentence)
        if errors:
            return Outcome.error("; ".join(errors + notes), **details)
        if apipa:
            notes.append(f"{self.nic} also carries the self-assigned {apipa[0]}")
            return Outcome.warning("; ".join(notes), **details)
        return Outcome.ok("; ".join(notes), **details)

    def _lease_verdict(self, address: Address, leases: list[Lease], now: float) -> tuple[str, bool]:
        """A sentence about one address's lease, and whether it is a failure."""
        ip = str(address.ip)
        matching = [lease for lease in leases if lease.address == ip]
        kernel_valid = address.valid_lft is not None and address.valid_lft > 0
        if matching:
            lease = max(matching, key=lambda item: item.expires or float("inf"))
            server = f" from {lease.server}" if lease.server else ""
            if lease.expired(now) and not kernel_valid:
                return (
                    f"the lease of {address}{server} {describe_expiry(lease, now)}, "
                    f"yet the address is still configured ({lease.source})",
                    True,
                )
            if lease.expired(now):
                return (
                    f"{address} is leased{server}; the kernel keeps it "
                    f"{int(address.valid_lft or 0)} s more ({lease.source})",
                    False,
                )
            return (
                f"{address} is leased{server} {describe_expiry(lease, now)} ({lease.source})",
                False,
            )
        if address.dynamic:
            remaining = (
                f"valid for {int(address.valid_lft)} s more"
                if address.valid_lft is not None
                else "with no expiry"
            )
            return f"{address} is a dynamic address {remaining} (no lease file found)", False
        return f"{address} is a static address, no lease needed", False

    async def ping_own_ip(self) -> Outcome:
        """PingOwnIP: the interface's own addresses answer ping."""
        addresses = [a for a in self.host.addresses(self.nic) if not a.tentative]
        if not addresses:
            return Outcome.error(f"{self.nic} has no address to ping", nic=self.nic)
        targets = [(str(a.ip), self._scope(str(a.ip), self.nic)) for a in addresses]
        results = await self._ping_all(targets)
        details = {"nic": self.nic, "pings": _ping_details(results), **_ping_stats(results)}
        failed = [r for r in results if not r.reply]
        if failed:
            return Outcome.error(
                f"{self.nic}'s own address does not answer: "
                + "; ".join(r.describe() for r in failed)
                + " (a firewall may drop ICMP echo, or the stack cannot use the interface)",
                **details,
            )
        return Outcome.ok(f"{self.nic}'s addresses answer: {_summary(results)}", **details)

    async def ping_well_known_hosts(self) -> Outcome:
        """PingWellKnownHosts: the hosts the operator named answer ping."""
        hosts = list(self.cfg.well_known_hosts)
        limit = self.cfg.well_known_failures
        if not hosts:
            return Outcome.skipped(
                "no well-known hosts are configured: name some with "
                f'[local] well_known_hosts = ["..."] in {CONFIG_FILE} '
                "or with --local-well-known-hosts",
            )
        resolved = await _gather([defer.ensureDeferred(self._resolve(h)) for h in hosts])
        pings: list[defer.Deferred[PingResult]] = []
        for address in resolved:
            if isinstance(address, PingResult):
                pings.append(defer.succeed(address))
            else:
                pings.append(self._ping(address, self._scope(address, None)))
        results = await _gather(pings)
        per_host = [{"host": h, **d} for h, d in zip(hosts, _ping_details(results), strict=True)]
        details = {"hosts": per_host, "failures_allowed": limit, **_ping_stats(results)}
        down = [(h, r) for h, r in zip(hosts, results, strict=True) if not r.reply]
        up = [(h, r) for h, r in zip(hosts, results, strict=True) if r.reply]
        up_text = ", ".join(f"{h} in {r.rtt_ms:.1f} ms" for h, r in up)
        down_text = "; ".join(
            f"{h} ({r.error or 'no reply'})" if h == r.address else f"{h} ({r.address}: {r.error})"
            for h, r in down
        )
        if len(down) >= limit:
            return Outcome.error(
                f"{len(down)} of {len(hosts)} well-known hosts do not answer "
                f"(an error from {limit} on): {down_text}",
                **details,
            )
        if down:
            return Outcome.warning(
                f"{len(down)} of {len(hosts)} well-known hosts do not answer: {down_text}"
                + (f"; answering: {up_text}" if up else ""),
                **details,
            )
        answering = _count(len(hosts), "well-known host answers", "well-known hosts answer")
        return Outcome.ok(f"{answering}: {up_text}", **details)

    async def _resolve(self, host: str) -> str | PingResult:
        """An address for ``host``, or a failed ping result saying why there is none."""
        if _is_ip(host):
            return host
        try:
            addresses = await self.module.resolve_name(host)
        except Exception as e:
            self.log.failure("resolving {host} failed", host=host)
            return PingResult(host, False, error=f"cannot resolve the name: {e}")
        if not addresses:
            return PingResult(host, False, error="the name has no address")
        return addresses[0]

    # -- optional tests -----------------------------------------------------

    async def system_log(self) -> Outcome:
        """SystemLog: recent warnings of the network stack and DHCP clients."""
        since = self._now() - LOG_WINDOW
        scan = await self.module.run_blocking(self.host.system_log, self.nic, since)
        if scan.source is None:
            return Outcome.skipped(f"no system log to search: {scan.reason}")
        entries = scan.entries
        details = {
            "source": scan.source,
            "count": len(entries),
            "entries": [
                {"time": e.time, "source": e.source, "message": e.message}
                for e in entries[-LOG_ENTRIES_KEPT:]
            ],
        }
        where = "journal" if scan.source == "journal" else scan.source
        if not entries:
            return Outcome.ok(
                f"no network or DHCP warnings in the {where} in the last hour", **details
            )
        last = entries[-1]
        return Outcome.warning(
            f"{len(entries)} network or DHCP warnings in the {where} in the last hour; "
            f"latest: {last.source}: {last.message}",
            **details,
        )

    async def hosts_file(self) -> Outcome:
        """HostsFile: the hosts file parses, and its entries answer ping."""
        path = self.cfg.hosts_file
        text = self.host.read_text(path)
        if text is None:
            return Outcome.warning(f"{path} does not exist", path=path)
        entries, bad = parse_hosts(text)
        targets: list[str] = []
        for entry in entries:
            ip = ipaddress.ip_address(entry.address.split("%")[0])
            if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
                continue
            if ip.version == 6 and ip.is_link_local and "%" not in entry.address:
                continue
            if entry.address not in targets:
                targets.append(entry.address)
        skipped = max(0, len(targets) - HOSTS_PING_LIMIT)
        targets = targets[:HOSTS_PING_LIMIT]
        results = await self._ping_all([(a, self._scope(a, None)) for a in targets])
        names = {e.address: e.names for e in entries}
        details = {
            "path": path,
            "entries": len(entries),
            "bad_lines": [{"line": b.number, "text": b.text, "problem": b.problem} for b in bad],
            "pings": _ping_details(results),
            "not_pinged": skipped,
        }
        down = [r for r in results if not r.reply]
        down_text = "; ".join(f"{r.address} ({' '.join(names.get(r.address, ()))})" for r in down)
        if bad:
            text_bad = "; ".join(str(b) for b in bad)
            return Outcome.error(
                f"{path} has {len(bad)} bad line{'s' if len(bad) != 1 else ''}: {text_bad}"
                + (f"; not answering: {down_text}" if down else ""),
                **details,
            )
        if down:
            return Outcome.warning(
                f"{len(down)} of {len(results)} addresses in {path} do not answer: {down_text}",
                **details,
            )
        more = f" ({skipped} more not pinged)" if skipped else ""
        return Outcome.ok(
            f"{path}: {_count(len(entries), 'well-formed entry', 'well-formed entries')}; "
            f"{_count(len(results), 'address answers', 'addresses answer')}{more}",
            **details,
        )

    async def routing_table(self) -> Outcome:
        """RoutingTable: the gateway of every route of every table answers ping."""
        seen: set[tuple[str, str | None]] = set()
        routes: list[Route] = []
        for route in self.host.routes():
            if route.gateway is None or route.table == RT_TABLE_LOCAL:
                continue
            key = (str(route.gateway), route.ifname)
            if key not in seen:
                seen.add(key)
                routes.append(route)
        if not routes:
            return Outcome.ok("no route has a gateway: every route is directly connected")
        skipped = max(0, len(routes) - GATEWAY_PING_LIMIT)
        routes = routes[:GATEWAY_PING_LIMIT]
        targets = [(str(r.gateway), self._scope(str(r.gateway), r.ifname)) for r in routes]
        results = await self._ping_all(targets)
        gateways = [
            {
                "gateway": str(r.gateway),
                "dev": r.ifname,
                "table": _table(r.table),
                "dst": str(r.dst),
                **{k: v for k, v in d.items() if k != "address"},
            }
            for r, d in zip(routes, _ping_details(results), strict=True)
        ]
        details = {"gateways": gateways, "not_pinged": skipped}
        down = [g for g in gateways if not g["reply"]]
        if down:
            return Outcome.error(
                "unreachable gateway"
                + ("s" if len(down) > 1 else "")
                + ": "
                + "; ".join(
                    f"{g['gateway']} dev {g['dev']} (table {g['table']}, route {g['dst']})"
                    for g in down
                ),
                **details,
            )
        return Outcome.ok(
            f"{_count(len(gateways), 'gateway answers', 'gateways answer')}: {_summary(results)}",
            **details,
        )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _gather(ds: Sequence[defer.Deferred[Any]]) -> defer.Deferred[list[Any]]:
    """Like gatherResults, but failing with the first failure itself.

    A cancelled test thus fails with CancelledError (which the Mediator
    turns into a timeout), not with a FirstError wrapping it.
    """

    def unwrap(failure: Failure) -> Failure:
        if failure.check(defer.FirstError):
            return failure.value.subFailure  # type: ignore[no-any-return]
        return failure

    return defer.gatherResults(list(ds), consumeErrors=True).addErrback(unwrap)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return True


def _lease_details(lease: Lease, now: float) -> dict[str, Any]:
    return {
        "source": lease.source,
        "path": lease.path,
        "interface": lease.interface,
        "address": lease.address,
        "server": lease.server,
        "expires": lease.expires,
        "expired": lease.expired(now),
    }


def make_local_module(cfg: LocalSection, reactor: Any) -> LocalModule:
    """The local module on the running host: real netlink, ICMP and DNS."""
    return LocalModule(
        cfg,
        reactor,
        host=HostInfo(),
        pinger=Pinger(reactor),
        dns=UdpDnsClient(reactor),
    )
