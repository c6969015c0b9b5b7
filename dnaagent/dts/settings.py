"""The ``[dts]`` configuration section: decentralized tracing campaigns.

Kept apart from the campaign service so that reading the configuration imports none
of the probing code. Nothing is probed unless an operator creates or joins a campaign
(``dnactl trace campaign create|join``); these keys bound what a joined campaign may do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dnaagent import schema
from dnaagent.schema import key

_NAME = re.compile(r"^[A-Za-z0-9._-]{0,64}$")


def _monitor_name(v: str) -> str | None:
    if not _NAME.match(v):
        return "use at most 64 letters, digits, '.', '_' or '-' (empty: the overlay node ID)"
    return None


@dataclass
class DtsSection:
    """Decentralized Doubletree tracing (DTS) through the overlay DHT."""

    enabled: bool = key(
        True, "serve trace campaigns (probing starts only when an operator joins one)"
    )
    monitor: str = key(
        "", "this monitor's name in campaigns (empty: its overlay node ID)", _monitor_name
    )
    probe_rate: float = key(
        20.0, "probes per second this monitor sends at most", schema.between(0.1, 10000)
    )
    probe_burst: int = key(10, "probes this monitor may send at once", schema.between(1, 10000))
    target_per_minute: int = key(
        60, "probes to any one target per minute", schema.between(1, 100000)
    )
    lease_seconds: float = key(
        300.0, "lease of a claimed chunk for new campaigns (seconds)", schema.between(2, 86400)
    )
    concurrency: int = key(
        4, "destinations of a chunk traced at once by this monitor", schema.between(1, 64)
    )
    max_ttl: int = key(30, "largest TTL probed", schema.between(1, 64))
    start_hop: int = key(3, "Doubletree's starting hop h", schema.between(1, 64))
    gap_limit: int = key(5, "silent hops in a row that end forwards probing", schema.between(1, 32))
    chunk_size: int = key(16, "targets per chunk of new campaigns", schema.between(1, 40))
    policy: str = key(
        "any",
        "new campaigns: any (one monitor per chunk) or each (every monitor probes every chunk)",
        schema.one_of("any", "each"),
    )
    poll_interval: float = key(
        10.0, "seconds between looks for free chunks while none is free", schema.between(0.5, 3600)
    )
    protocol: str = key(
        "udp", "probes: udp (Paris UDP) or icmp (Paris ICMP echo)", schema.one_of("udp", "icmp")
    )
    probe_timeout: float = key(
        2.0, "seconds to wait for the answer to one probe", schema.between(0.1, 30)
    )


__all__ = ["DtsSection"]
