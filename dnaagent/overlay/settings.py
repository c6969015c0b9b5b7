"""Tunables of the overlay, with the defaults the agent uses.

:class:`OverlayConfig` is a plain dataclass so that the simulator and tests can
build one directly; :meth:`OverlayConfig.from_section` takes the matching
attributes of the agent's ``[overlay]`` configuration section.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class OverlayConfig:
    """Everything an :class:`~dnaagent.overlay.node.OverlayNode` can be tuned with."""

    #: UDP port of the overlay (also the port discovery announcements go to).
    port: int = 4001
    #: "core" (full member) or "stub" (uses the DHT, kept in no routing table).
    role: str = "core"
    #: Bucket size and replication factor.
    k: int = 20
    #: Requests a lookup keeps in flight.
    alpha: int = 3
    #: Hard timeout of one overlay request (seconds).
    rpc_timeout: float = 2.0
    #: Times a request without an answer is sent again (same transaction ID)
    #: before the hard timeout; the first after the adaptive RTO, then doubling.
    rpc_retries: int = 2
    #: Shortest wait before the first retransmission (seconds): a peer whose few
    #: RTT samples were all short is not flooded with copies of every request.
    min_retransmit: float = 0.5
    #: Soft timeout of a request to a peer without RTT samples (seconds).
    initial_rto: float = 1.0
    #: Bounds of the adaptive soft timeout ``srtt + 4 * rttvar`` (seconds).
    min_rto: float = 0.05
    max_rto: float = 2.0
    #: Requests in a row a contact may miss before it is evicted.
    max_failures: int = 2
    #: A full bucket's oldest contact is pinged only if quiet this long (seconds).
    liveness_age: float = 300.0
    #: Buckets without a lookup for this long are refreshed (seconds).
    bucket_refresh_interval: float = 3600.0
    #: The node looks itself up this often to keep its neighbourhood fresh (seconds).
    neighbour_refresh_interval: float = 600.0
    #: After joining, the node looks itself up once more this much later, to
    #: find neighbours that joined at the same time (seconds; 0 turns it off).
    join_recheck_delay: float = 30.0
    #: The closest neighbours not heard from for this long are pinged, and
    #: evicted after two missed pings in a row (seconds; 0 turns it off).
    neighbour_check_interval: float = 60.0
    #: How many of the closest neighbours are watched that way.
    neighbour_check_count: int = 5
    #: Original publishers store their values again this often (seconds).
    republish_interval: float = 3600.0
    #: TTL of a value put without one (seconds).
    default_ttl: float = 86400.0
    #: Longest TTL of a copy cached along a lookup path (seconds).
    cache_ttl: float = 600.0
    #: Storage limits.
    max_value_size: int = 2048
    max_values_per_key: int = 32
    max_keys_per_peer: int = 256
    max_store_values: int = 100_000
    max_store_bytes: int = 64 * 1024 * 1024
    #: Peers that send invalid datagrams are ignored this long (seconds).
    ban_seconds: float = 600.0
    #: Most addresses banned at once (the oldest ban goes first).
    max_bans: int = 10_000
    #: Verify signatures of incoming messages (only simulations turn this off).
    require_signatures: bool = True
    #: Announce the node on the local link (IPv4 broadcast, IPv6 multicast).
    discovery: bool = False
    #: While the routing table is nearly empty, announce this often (seconds).
    discovery_interval: float = 60.0
    #: Tell a searched node who searches it (INTRODUCE) and greet askers one is
    #: introduced to (HERE): node lookups end one one-way delay sooner.
    introductions: bool = True
    #: Most greetings sent per second (burst: twice as many).
    greeting_rate: float = 20.0
    #: A value lookup whose closest candidate already lies within the key's
    #: replica set (the k closest nodes, by the estimated overlay size) asks that
    #: one node first and widens to ``alpha`` only if it has no value or is slow:
    #: a third of the datagrams of a get in small overlays.
    narrow_value_lookups: bool = True
    #: Default timeout of an application request (seconds).
    app_timeout: float = 5.0
    #: Most requests waiting for an answer at once.
    max_pending: int = 10_000

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first value out of range."""
        if self.role not in ("core", "stub"):
            raise ValueError(f"role must be core or stub, not {self.role!r}")
        positive = (
            "k alpha rpc_timeout min_retransmit initial_rto min_rto max_rto max_failures "
            "bucket_refresh_interval "
            "neighbour_refresh_interval republish_interval default_ttl cache_ttl max_value_size "
            "max_values_per_key max_keys_per_peer max_store_values max_store_bytes ban_seconds "
            "max_bans discovery_interval app_timeout max_pending greeting_rate"
        ).split()
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.join_recheck_delay < 0:
            raise ValueError("join_recheck_delay must not be negative")
        if self.rpc_retries < 0:
            raise ValueError("rpc_retries must not be negative")
        if self.neighbour_check_interval < 0 or self.neighbour_check_count < 0:
            raise ValueError("neighbour checks need non-negative settings")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be from 0 to 65535")
        if self.min_rto > self.max_rto:
            raise ValueError("min_rto must not exceed max_rto")

    @classmethod
    def from_section(cls, section: Any) -> OverlayConfig:
        """Build a config from any object with some of these attribute names."""
        values = {
            f.name: getattr(section, f.name)
            for f in dataclasses.fields(cls)
            if hasattr(section, f.name)
        }
        config = cls(**values)
        config.validate()
        return config
