"""Targets a peer may never make this agent probe.

The deny list holds CIDR prefixes from the configuration. For requests from
remote peers it also refuses, by default, the addresses that only make
sense on the serving host itself or that reach many hosts at once:
loopback, link-local, multicast, unspecified and the IPv4 limited
broadcast, also when written as IPv4-mapped IPv6. DTS reuses the same list
for its probing targets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_prefixes(texts: Iterable[str]) -> list[IPNetwork]:
    """CIDR prefixes (or single addresses) as networks; ValueError names a bad one."""
    out: list[IPNetwork] = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not a CIDR prefix like 192.0.2.0/24") from None
    return out


def check_prefixes(texts: list[str]) -> str | None:
    """A configuration check: every item is a CIDR prefix."""
    try:
        parse_prefixes(texts)
    except ValueError as e:
        return str(e)
    return None


def _special(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address of the serving host"
    if ip.is_link_local:
        return "a link-local address (it means a different host on every link)"
    if ip.is_multicast:
        return "a multicast address"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the limited broadcast address"
    return None


class DenyList:
    """Configured CIDR prefixes plus, for remote requests, the special ranges."""

    def __init__(self, prefixes: Iterable[str] = (), *, deny_special: bool = True) -> None:
        self.prefixes = parse_prefixes(prefixes)
        self.deny_special = deny_special

    def add(self, prefix: str) -> None:
        """Deny one more prefix."""
        self.prefixes.extend(parse_prefixes([prefix]))

    def reason(self, address: str, *, remote: bool = True) -> str | None:
        """Why ``address`` may not be probed, or None when it may.

        ``remote`` is True for requests from peers; the special ranges then
        apply. An address that is not an IP literal is refused.
        """
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        mapped = getattr(ip, "ipv4_mapped", None)
        candidates = [ip] if mapped is None else [ip, mapped]
        for candidate in candidates:
            if remote and self.deny_special:
                special = _special(candidate)
                if special:
                    return f"{address} is {special}"
            for net in self.prefixes:
                if candidate.version == net.version and candidate in net:
                    return f"{address} is in the deny list ({net})"
        return None

    def allows(self, address: str, *, remote: bool = True) -> bool:
        """Whether ``address`` may be probed."""
        return self.reason(address, remote=remote) is None
