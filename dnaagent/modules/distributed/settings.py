"""The ``[distributed]`` configuration section: partners, declared services, limits.

Kept apart from the module so that reading the configuration imports none
of the test code.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnaagent import schema
from dnaagent.guard.catalogue import PING_MAX_COUNT, PORTCHECK_MAX_PORTS, Refused, port_spec
from dnaagent.guard.denylist import check_prefixes
from dnaagent.guard.guard import GuardLimits
from dnaagent.schema import key


def _ports(v: list[str]) -> str | None:
    if len(v) > PORTCHECK_MAX_PORTS:
        return f"at most {PORTCHECK_MAX_PORTS} ports"
    for item in v:
        try:
            port_spec(item)
        except Refused as e:
            return e.text
    return None


@dataclass
class DistributedSection:
    """Distributed tests with other agents, and what this agent does for its peers."""

    enabled: bool = key(True, "load the distributed test module and answer peers' requests")
    peers: int = key(
        3, "peers asked by a distributed test, chosen at random", schema.between(1, 16)
    )
    ping_count: int = key(
        3, "echo requests per ping (here and at each peer)", schema.between(1, PING_MAX_COUNT)
    )
    ping_timeout: float = key(2.0, "seconds to wait for each echo reply", schema.between(0.1, 5))
    max_hops: int = key(16, "hops of the traceroutes that locate a fault", schema.between(1, 32))
    services: list[str] = key(
        [], "ports this host serves, checked from outside by PortCheck (tcp/80, udp/53)", _ports
    )
    dns_name: str = key("localhost", "name DNSProxy looks up to test the resolver")
    resolv_conf: str = key("/etc/resolv.conf", "resolver configuration DNSProxy reads")
    dns_proxy_address: str = key(
        "127.0.0.1", "loopback address of the DNS proxy run during an outage", schema.loopback
    )
    dns_proxy_port: int = key(10053, "UDP port of the DNS proxy (0: never start it)", schema.port)
    # Limits applied to peers' requests.
    peer_rate: float = key(1.0, "requests per second a peer may make", schema.between(0.01, 100))
    peer_burst: int = key(10, "requests a peer may make at once", schema.between(1, 1000))
    target_per_minute: int = key(
        60, "probes to any one target per minute, whoever asks", schema.between(1, 10000)
    )
    max_rate_mbit: float = key(
        100.0, "ceiling of a throughput test's rate (Mbit/s)", schema.between(0.01, 10000)
    )
    deny: list[str] = key([], "CIDR prefixes peers may never make this agent probe", check_prefixes)
    deny_special: bool = key(
        True, "refuse peers' probes to loopback, link-local, multicast and unspecified addresses"
    )

    def limits(self) -> GuardLimits:
        """The guard's limits from this section."""
        return GuardLimits(
            peer_rate=self.peer_rate,
            peer_burst=self.peer_burst,
            target_per_minute=self.target_per_minute,
            max_rate_mbit=self.max_rate_mbit,
            deny=tuple(self.deny),
            deny_special=self.deny_special,
        )


__all__ = ["DistributedSection", "PING_MAX_COUNT"]
