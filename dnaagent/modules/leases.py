"""DHCP lease files of the common Linux DHCP clients, parsed into one shape.

Each client keeps its leases in its own format:

* ISC dhclient (and NetworkManager when it uses dhclient): ``lease { ... }``
  blocks with ``fixed-address`` and an ``expire`` date, in
  ``/var/lib/dhcp/*.leases`` or ``/var/lib/NetworkManager/dhclient-*.lease``;
* systemd-networkd (and NetworkManager's internal client): ``KEY=value``
  lines with ``ADDRESS`` and ``LIFETIME`` (seconds from the moment the file
  was written), in ``/run/systemd/netif/leases/IFINDEX`` or
  ``/var/lib/NetworkManager/internal-*.lease``;
* dhcpcd: the server's DHCPACK message itself (binary BOOTP), in
  ``/var/lib/dhcpcd/IFNAME.lease``.

The parsers are pure functions of a file's content; :mod:`hostinfo` finds the
files and feeds them here.
"""

from __future__ import annotations

import calendar
import ipaddress
import re
import struct
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Lease:
    """One IPv4 lease as a DHCP client recorded it."""

    source: str
    path: str
    interface: str | None
    address: str | None
    server: str | None = None
    acquired: float | None = None
    expires: float | None = None

    def expired(self, now: float) -> bool:
        """True when the lease has an expiry time and it lies before ``now``."""
        return self.expires is not None and self.expires <= now


_BLOCK = re.compile(r"\blease\s*\{(.*?)\}", re.S)
_STATEMENT = re.compile(r"^\s*(option\s+[a-z0-9-]+|[a-z-]+)\s+(.*?);", re.M)
_DATE = re.compile(r"^\d\s+(\d{4})/(\d{1,2})/(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})")


def _dhclient_time(value: str) -> float | None:
    """Read a dhclient date: ``W YYYY/MM/DD HH:MM:SS`` (UTC) or ``epoch N``."""
    value = value.strip()
    if value.startswith("epoch"):
        try:
            return float(value.split()[1])
        except (IndexError, ValueError):
            return None
    m = _DATE.match(value)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups())
    try:
        return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    except (OverflowError, ValueError):
        return None


def parse_dhclient(text: str, path: str) -> list[Lease]:
    """Parse an ISC dhclient lease file; the newest lease comes last.

    ``lease6`` blocks (DHCPv6) are ignored: the lease test is about IPv4.
    """
    leases = []
    for block in _BLOCK.finditer(text):
        fields: dict[str, str] = {}
        for m in _STATEMENT.finditer(block.group(1)):
            fields[m.group(1)] = m.group(2).strip()
        server = None
        for key, value in fields.items():
            if key == "option dhcp-server-identifier":
                server = value
        interface = fields.get("interface", "").strip('"') or None
        expire = fields.get("expire")
        expires = None if expire is None or expire == "never" else _dhclient_time(expire)
        leases.append(
            Lease(
                source="dhclient",
                path=path,
                interface=interface,
                address=fields.get("fixed-address"),
                server=server,
                expires=expires,
            )
        )
    return leases


def parse_networkd(text: str, path: str, interface: str | None, mtime: float) -> Lease | None:
    """Parse a systemd-networkd (sd-dhcp) lease file written at ``mtime``."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    address = values.get("ADDRESS")
    if not address:
        return None
    expires = None
    lifetime = values.get("LIFETIME")
    if lifetime:
        try:
            expires = mtime + float(lifetime)
        except ValueError:
            expires = None
    return Lease(
        source="systemd-networkd",
        path=path,
        interface=interface,
        address=address,
        server=values.get("SERVER_ADDRESS"),
        acquired=mtime,
        expires=expires,
    )


_COOKIE = b"\x63\x82\x53\x63"


def parse_dhcp_message(data: bytes, path: str, interface: str | None, mtime: float) -> Lease | None:
    """Parse a binary DHCP reply as dhcpcd stores it, acquired at ``mtime``."""
    if len(data) < 240 or data[236:240] != _COOKIE:
        return None
    address = str(ipaddress.IPv4Address(data[16:20]))
    lease_time: int | None = None
    server: str | None = None
    i = 240
    while i < len(data):
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(data):
            break
        length = data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) < length:
            break
        if code == 51 and length == 4:
            (lease_time,) = struct.unpack("!I", value)
        elif code == 54 and length == 4:
            server = str(ipaddress.IPv4Address(value))
        i += 2 + length
    expires = None
    if lease_time is not None and lease_time != 0xFFFFFFFF:
        expires = mtime + lease_time
    return Lease(
        source="dhcpcd",
        path=path,
        interface=interface,
        address=address,
        server=server,
        acquired=mtime,
        expires=expires,
    )


def describe_expiry(lease: Lease, now: float) -> str:
    """Say when a lease expires or expired, relative to ``now``."""
    if lease.expires is None:
        return "with no expiry"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(lease.expires))
    delta = lease.expires - now
    if delta <= 0:
        return f"expired at {stamp} ({_span(-delta)} ago)"
    return f"until {stamp} (in {_span(delta)})"


def _span(seconds: float) -> str:
    """A short human duration."""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
