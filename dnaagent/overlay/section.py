"""The ``[overlay]`` configuration section and the address syntax of seeds.

Kept apart from the overlay code so that reading the configuration (as
``dnactl`` does) imports nothing of the overlay itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dnaagent import schema
from dnaagent.schema import key

Address = tuple[str, int]


def parse_address(text: str, default_port: int = 4001) -> Address:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 literal into a tuple.

    Only address literals are accepted (no names: a seed list must not depend
    on DNS). Raises ValueError with a sentence.
    """
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':PORT' after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{text!r}: not an IP address (write 192.0.2.7:4001 or [2001:db8::7]:4001)"
        ) from None
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    return str(ip), port


def _seeds(v: list[str]) -> str | None:
    for item in v:
        try:
            parse_address(item)
        except ValueError as e:
            return str(e)
    return None


def _optional_ip(v: str) -> str | None:
    return schema.ip_address(v) if v else None


@dataclass
class OverlaySection:
    """The Kademlia overlay: port, seeds, discovery, tuning."""

    enabled: bool = key(True, "run the overlay (UDP) so that the agent joins its peers")
    port: int = key(4001, "UDP port of the overlay, on IPv4 and IPv6", schema.port)
    listen_ipv4: str = key("0.0.0.0", "IPv4 address to bind (empty: no IPv4)", _optional_ip)
    listen_ipv6: str = key("::", "IPv6 address to bind (empty: no IPv6)", _optional_ip)
    seeds: list[str] = key(
        [], "agents to join through, as ADDRESS[:PORT] or [IPv6]:PORT (empty: wait)", _seeds
    )
    role: str = key(
        "core",
        "core (full member) or stub (uses the DHT, kept in no routing table)",
        schema.one_of("core", "stub"),
    )
    discovery: bool = key(
        False, "announce the agent on the local link (IPv4 broadcast, IPv6 multicast)"
    )
    discovery_interval: float = key(
        60.0, "seconds between announcements while few peers are known", schema.between(5, 86400)
    )
    rejoin_interval: float = key(
        60.0, "seconds between join attempts while no peer is known", schema.between(5, 86400)
    )
    k: int = key(20, "bucket size and replication factor", schema.between(2, 64))
    alpha: int = key(3, "requests a lookup keeps in flight", schema.between(1, 16))
    rpc_timeout: float = key(
        2.0, "seconds before a request counts as lost", schema.between(0.1, 60)
    )
    bucket_refresh_interval: float = key(
        3600.0, "seconds before an idle bucket is refreshed", schema.between(60, 86400)
    )
    republish_interval: float = key(
        3600.0, "seconds between republications of own DHT values", schema.between(60, 86400)
    )
    ban_seconds: float = key(
        600.0, "seconds a peer that sent invalid messages is ignored", schema.between(1, 86400)
    )
    narrow_value_lookups: bool = key(
        True,
        "a get that already knows nodes near the key asks one of them first, not alpha "
        "(fewer datagrams; slower when delays vary much)",
    )
