"""What the local tests need to know about the host, behind one small interface.

:class:`HostInfoAPI` lists the facts: links, addresses, routes, files, DHCP
leases and the system log. :class:`HostInfo` reads them from the running
Linux kernel (rtnetlink through pyroute2, sysfs, psutil) and from the usual
files; tests use a fake of the same interface. Every method here is a quick
blocking read except :meth:`HostInfoAPI.system_log`, which may run
``journalctl`` and belongs in a thread.
"""

from __future__ import annotations

import abc
import glob
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from dnaagent.modules.leases import Lease, parse_dhclient, parse_dhcp_message, parse_networkd

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RT_TABLE_LOCAL = 255
RT_TABLE_MAIN = 254

# Address flags of rtnetlink (linux/if_addr.h), by the name ``ip addr`` shows.
ADDRESS_FLAGS = {
    0x01: "secondary",
    0x02: "nodad",
    0x04: "optimistic",
    0x08: "dadfailed",
    0x10: "homeaddress",
    0x20: "deprecated",
    0x40: "tentative",
    0x80: "permanent",
    0x100: "mngtmpaddr",
    0x200: "noprefixroute",
}
_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
_FOREVER = 0xFFFFFFFF
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_RTNH_F_ONLINK = 0x4


@dataclass(frozen=True)
class Link:
    """A network interface as the kernel reports it."""

    name: str
    index: int
    admin_up: bool
    oper_state: str
    carrier: bool | None
    mtu: int
    mac: str | None = None
    kind: str | None = None
    driver: str | None = None
    speed_mbps: int | None = None
    duplex: str | None = None
    loopback: bool = False


@dataclass(frozen=True)
class Address:
    """One address of an interface, with its kernel flags and lifetimes."""

    ifname: str
    interface: IPInterface
    scope: str = "global"
    flags: frozenset[str] = frozenset({"permanent"})
    valid_lft: float | None = None
    preferred_lft: float | None = None

    @property
    def ip(self) -> IPAddress:
        """The address itself."""
        return self.interface.ip

    @property
    def version(self) -> int:
        """4 or 6."""
        return self.interface.version

    @property
    def link_local(self) -> bool:
        """True for fe80::/10 and for the self-assigned 169.254.0.0/16."""
        return self.ip.is_link_local

    @property
    def tentative(self) -> bool:
        """True while duplicate address detection runs or after it failed."""
        return bool(self.flags & {"tentative", "dadfailed"})

    @property
    def dynamic(self) -> bool:
        """True when the address has a finite lifetime (DHCP, SLAAC)."""
        return "permanent" not in self.flags or self.valid_lft is not None

    @property
    def usable(self) -> bool:
        """A configured address other hosts can reach: not link-local, not tentative."""
        return self.scope in ("global", "site") and not self.link_local and not self.tentative

    def __str__(self) -> str:
        return str(self.interface)


@dataclass(frozen=True)
class Route:
    """One route (one next hop of a multipath route)."""

    family: int
    table: int
    dst: IPNetwork
    gateway: IPAddress | None = None
    ifname: str | None = None
    metric: int = 0
    onlink: bool = False

    @property
    def default(self) -> bool:
        """True for a default route (0.0.0.0/0 or ::/0)."""
        return self.dst.prefixlen == 0


@dataclass(frozen=True)
class LogEntry:
    """One line of the system log."""

    time: float | None
    source: str
    message: str


@dataclass(frozen=True)
class LogScan:
    """What a search of the system log found; ``source`` None: no log exists."""

    source: str | None
    entries: list[LogEntry] = field(default_factory=list)
    reason: str = ""


class HostInfoAPI(abc.ABC):
    """The host facts the local tests read."""

    @abc.abstractmethod
    def links(self) -> list[Link]:
        """Every network interface."""

    @abc.abstractmethod
    def addresses(self, ifname: str | None = None) -> list[Address]:
        """The addresses of ``ifname``, or of every interface."""

    @abc.abstractmethod
    def routes(self) -> list[Route]:
        """Every IPv4 and IPv6 route of every table, one entry per next hop."""

    @abc.abstractmethod
    def read_text(self, path: str) -> str | None:
        """A text file's content, or None when it does not exist."""

    @abc.abstractmethod
    def dhcp_leases(self) -> list[Lease]:
        """Every IPv4 lease found in the lease files of the known DHCP clients."""

    @abc.abstractmethod
    def system_log(self, ifname: str, since: float) -> LogScan:
        """Warnings and errors of the network stack and DHCP clients since ``since``.

        May block for a while (it may run ``journalctl``): call it in a thread.
        """

    def link(self, name: str) -> Link | None:
        """The interface called ``name``, or None."""
        for link in self.links():
            if link.name == name:
                return link
        return None

    def ipv6_enabled(self) -> bool:
        """True when the host has IPv6 (``::1`` on the loopback interface)."""
        return any(a.ip == ipaddress.IPv6Address("::1") for a in self.addresses())

    def default_route_nic(self) -> str | None:
        """The interface of the best default route, IPv4 first, then IPv6."""
        for family in (socket.AF_INET, socket.AF_INET6):
            candidates = [
                r
                for r in self.routes()
                if r.family == family and r.table == RT_TABLE_MAIN and r.default and r.ifname
            ]
            if candidates:
                return min(candidates, key=lambda r: r.metric).ifname
        return None


# Programs whose log lines concern the network configuration.
LOG_IDENTIFIERS = (
    "dhclient",
    "dhcpcd",
    "NetworkManager",
    "systemd-networkd",
    "systemd-resolved",
    "wpa_supplicant",
    "avahi-autoipd",
    "ifup",
    "networking",
)
_SYSLOG_LINE = re.compile(r"^(?P<stamp>\S+(?:\s+\d+\s+[\d:]+)?)\s+\S+\s+(?P<ident>[^\s:\[]+)")
_TROUBLE = re.compile(
    r"error|fail|timed? ?out|no dhcpoffers|no carrier|link is down|link down|"
    r"not ready|duplicate address|dadfailed|conflict|unreachable|lost",
    re.I,
)


class HostInfo(HostInfoAPI):
    """Facts of the running Linux host, read through rtnetlink, sysfs and files."""

    log = Logger()

    def __init__(
        self,
        *,
        sysfs: str = "/sys/class/net",
        lease_globs: Iterable[str] | None = None,
        syslog_paths: Iterable[str] = ("/var/log/syslog", "/var/log/messages"),
        journalctl: str | None = None,
        log_max_bytes: int = 2_000_000,
    ) -> None:
        self.sysfs = sysfs
        self.lease_globs = list(lease_globs) if lease_globs is not None else list(LEASE_GLOBS)
        self.syslog_paths = list(syslog_paths)
        self.journalctl = journalctl if journalctl is not None else shutil.which("journalctl")
        self.log_max_bytes = log_max_bytes
        self.netlink_timeout = 10.0
        self._executor: ThreadPoolExecutor | None = None
        self._ipr: Any = None  # used only in the netlink thread
        self._lock = threading.Lock()

    def _netlink(self, dump: Callable[[Any], Iterable[Any]]) -> list[Any]:
        """``list(dump(ipr))`` with pyroute2's IPRoute, in the netlink thread.

        pyroute2's synchronous API drives an asyncio loop of its own, which
        cannot run in a thread whose loop already runs (Twisted's asyncio
        reactor). The dump therefore runs in one worker thread that keeps its
        netlink socket open between calls (opening one costs ~15 ms) and
        reopens it after an error; the caller waits for the answer.
        """

        def work() -> list[Any]:
            from pyroute2 import IPRoute

            if self._ipr is None:
                self._ipr = IPRoute()
            try:
                return list(dump(self._ipr))
            except Exception:
                ipr, self._ipr = self._ipr, None
                try:
                    ipr.close()
                except Exception:
                    self.log.failure("closing a failed netlink socket")
                raise

        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="dnaagent-netlink")
            executor = self._executor
        return executor.submit(work).result(timeout=self.netlink_timeout)

    def _names(self) -> dict[int, str]:
        return {
            int(msg.get("index")): msg.get("ifname")
            for msg in self._netlink(lambda ipr: ipr.get_links())
        }

    def links(self) -> list[Link]:
        """Every interface, with driver and speed from sysfs and psutil."""
        import psutil

        try:
            stats = psutil.net_if_stats()
        except OSError:
            self.log.failure("psutil could not read interface statistics")
            stats = {}
        result = []
        for msg in self._netlink(lambda ipr: ipr.get_links()):
            name = msg.get("ifname")
            flags = int(msg.get("flags") or 0)
            carrier = msg.get("carrier")
            try:
                kind = msg.get(("linkinfo", "kind"))
            except (KeyError, TypeError, AttributeError):
                kind = None
            stat = stats.get(name)
            speed = stat.speed if stat is not None and stat.speed > 0 else None
            duplex = None
            if stat is not None:
                duplex = {psutil.NIC_DUPLEX_FULL: "full", psutil.NIC_DUPLEX_HALF: "half"}.get(
                    stat.duplex
                )
            result.append(
                Link(
                    name=name,
                    index=int(msg.get("index")),
                    admin_up=bool(flags & _IFF_UP),
                    oper_state=str(msg.get("operstate") or "UNKNOWN"),
                    carrier=None if carrier is None else bool(carrier),
                    mtu=int(msg.get("mtu") or 0),
                    mac=msg.get("address"),
                    kind=kind,
                    driver=self._driver(name),
                    speed_mbps=speed,
                    duplex=duplex,
                    loopback=bool(flags & _IFF_LOOPBACK),
                )
            )
        return result

    def _driver(self, name: str) -> str | None:
        try:
            target = os.readlink(os.path.join(self.sysfs, name, "device", "driver"))
        except OSError:
            return None
        return os.path.basename(target)

    def addresses(self, ifname: str | None = None) -> list[Address]:
        """Addresses with their flags and remaining lifetimes."""
        names = self._names()
        result = []
        for msg in self._netlink(lambda ipr: ipr.get_addr()):
            name = names.get(int(msg.get("index")), "")
            if ifname is not None and name != ifname:
                continue
            local = msg.get("local") or msg.get("address")
            if not local:
                continue
            flag_bits = msg.get("IFA_FLAGS")
            if flag_bits is None:
                flag_bits = msg.get("flags") or 0
            cache = msg.get("cacheinfo") or {}
            valid = cache.get("ifa_valid", _FOREVER)
            preferred = cache.get("ifa_preferred", _FOREVER)
            result.append(
                Address(
                    ifname=name,
                    interface=ipaddress.ip_interface(f"{local}/{msg.get('prefixlen')}"),
                    scope=_SCOPES.get(int(msg.get("scope") or 0), str(msg.get("scope"))),
                    flags=frozenset(n for bit, n in ADDRESS_FLAGS.items() if flag_bits & bit),
                    valid_lft=None if valid == _FOREVER else float(valid),
                    preferred_lft=None if preferred == _FOREVER else float(preferred),
                )
            )
        return result

    def routes(self) -> list[Route]:
        """Routes of both families, multipath routes split into their next hops."""
        names = self._names()
        result = []
        messages = self._netlink(
            lambda ipr: [
                *ipr.get_routes(family=socket.AF_INET),
                *ipr.get_routes(family=socket.AF_INET6),
            ]
        )
        for msg in messages:
            family = int(msg.get("family"))
            dst = msg.get("dst")
            if dst is None:
                dst = "0.0.0.0" if family == socket.AF_INET else "::"
            try:
                network = ipaddress.ip_network(f"{dst}/{msg.get('dst_len')}", strict=False)
            except ValueError:
                continue
            table = int(msg.get("table") or 0)
            metric = int(msg.get("priority") or 0)
            hops = msg.get("multipath")
            if hops:
                pairs = [(h.get("gateway"), h.get("oif"), int(h.get("flags") or 0)) for h in hops]
            else:
                pairs = [(msg.get("gateway"), msg.get("oif"), int(msg.get("flags") or 0))]
            for gateway, oif, flags in pairs:
                result.append(
                    Route(
                        family=family,
                        table=table,
                        dst=network,
                        gateway=ipaddress.ip_address(gateway) if gateway else None,
                        ifname=names.get(int(oif)) if oif is not None else None,
                        metric=metric,
                        onlink=bool(flags & _RTNH_F_ONLINK),
                    )
                )
        return result

    def read_text(self, path: str) -> str | None:
        """The file's text (undecodable bytes replaced), None if it does not exist."""
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def dhcp_leases(self) -> list[Lease]:
        """Leases of dhclient, systemd-networkd, NetworkManager and dhcpcd."""
        names = self._names()
        leases: list[Lease] = []
        for pattern in self.lease_globs:
            for path in sorted(glob.glob(pattern)):
                try:
                    leases.extend(self._read_lease(path, names))
                except (OSError, ValueError):
                    self.log.failure("could not read the lease file {path}", path=path)
        return leases

    def _read_lease(self, path: str, names: dict[int, str]) -> list[Lease]:
        mtime = os.stat(path).st_mtime
        base = os.path.basename(path)
        with open(path, "rb") as f:
            data = f.read(1_000_000)
        if "/netif/leases/" in path:
            ifname = names.get(int(base)) if base.isdigit() else None
            lease = parse_networkd(data.decode("utf-8", "replace"), path, ifname, mtime)
            return [lease] if lease else []
        if base.startswith("internal-") and base.endswith(".lease"):
            ifname = _name_from_path(base, names)
            lease = parse_networkd(data.decode("utf-8", "replace"), path, ifname, mtime)
            return [_with_interface(lease, ifname)] if lease else []
        if "dhcpcd" in path:
            stem = base[: -len(".lease")] if base.endswith(".lease") else base
            stem = stem.removeprefix("dhcpcd-")
            lease = parse_dhcp_message(data, path, stem, mtime)
            if lease is None:
                return []
            for name in names.values():
                if stem == name or stem.startswith(name + "-"):
                    return [_with_interface(lease, name)]
            return [lease]
        found = parse_dhclient(data.decode("utf-8", "replace"), path)
        return [
            lease if lease.interface else _with_interface(lease, _name_from_path(base, names))
            for lease in found
        ]

    def system_log(self, ifname: str, since: float) -> LogScan:
        """Search the journal, or failing that the syslog files, for network trouble."""
        if self.journalctl:
            try:
                return self._journal(ifname, since)
            except (OSError, subprocess.SubprocessError, ValueError):
                self.log.failure("journalctl failed; trying the syslog files")
        for path in self.syslog_paths:
            if os.path.exists(path):
                return self._syslog(path, ifname)
        return LogScan(
            None,
            reason="neither journalctl nor "
            + " / ".join(self.syslog_paths)
            + " is available on this host",
        )

    def _journal(self, ifname: str, since: float) -> LogScan:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        assert self.journalctl is not None
        argv = [self.journalctl, "--no-pager", "-q", "-o", "json", "-p", "warning"]
        argv += ["--since", stamp]
        for ident in (*LOG_IDENTIFIERS, "kernel"):
            argv += ["-t", ident]
        proc = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        if proc.returncode != 0 and not proc.stdout:
            raise ValueError(proc.stderr.decode("utf-8", "replace").strip() or "journalctl failed")
        entries = []
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            message = record.get("MESSAGE")
            if not isinstance(message, str):
                continue
            ident = str(record.get("SYSLOG_IDENTIFIER") or "")
            if ident == "kernel" and ifname not in message:
                continue
            usec = record.get("__REALTIME_TIMESTAMP")
            entries.append(
                LogEntry(float(usec) / 1e6 if usec else None, ident or "?", message.strip())
            )
        return LogScan("journal", entries)

    def _syslog(self, path: str, ifname: str) -> LogScan:
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - self.log_max_bytes))
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            self.log.failure("could not read {path}", path=path)
            return LogScan(None, reason=f"{path} is not readable: {e.strerror}")
        entries = []
        for line in text.splitlines():
            m = _SYSLOG_LINE.match(line)
            if not m:
                continue
            ident = m.group("ident")
            if ident == "kernel":
                if ifname not in line:
                    continue
            elif ident not in LOG_IDENTIFIERS:
                continue
            if _TROUBLE.search(line):
                entries.append(LogEntry(None, ident, line.strip()))
        return LogScan(path, entries)


LEASE_GLOBS = (
    "/var/lib/dhcp/*.leases",
    "/var/lib/dhclient/*.leases",
    "/var/lib/dhclient/*.lease",
    "/run/systemd/netif/leases/*",
    "/var/lib/NetworkManager/*.lease",
    "/var/lib/dhcpcd/*.lease",
    "/var/lib/dhcpcd5/*.lease",
)


def _with_interface(lease: Lease, ifname: str | None) -> Lease:
    return Lease(
        source=lease.source if "NetworkManager" not in lease.path else "NetworkManager",
        path=lease.path,
        interface=ifname,
        address=lease.address,
        server=lease.server,
        acquired=lease.acquired,
        expires=lease.expires,
    )


def _name_from_path(base: str, names: dict[int, str]) -> str | None:
    """Guess the interface of a lease file from its name (``dhclient.eth0.leases``)."""
    for name in sorted(names.values(), key=len, reverse=True):
        if re.search(rf"(^|[.\-]){re.escape(name)}([.\-]|$)", base):
            return name
    return None
