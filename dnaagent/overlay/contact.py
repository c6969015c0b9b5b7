"""What a node knows of one peer: ID, address, liveness and round-trip time."""

from __future__ import annotations

from dnaagent import wire

Address = tuple[str, int]


class RttEstimator:
    """Smoothed round-trip time and its variation (the RFC 6298 estimator)."""

    __slots__ = ("srtt", "rttvar")

    def __init__(self) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0

    def observe(self, sample: float) -> None:
        """Fold one measured round-trip time (seconds) into the estimate."""
        if self.srtt is None:
            self.srtt = sample
            self.rttvar = sample / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
            self.srtt = 0.875 * self.srtt + 0.125 * sample

    def timeout(self, default: float, lo: float, hi: float) -> float:
        """Return ``srtt + 4 * rttvar`` bounded to ``[lo, hi]`` (``default`` if unknown)."""
        if self.srtt is None:
            return default
        rto = self.srtt + 4 * self.rttvar
        return lo if rto < lo else hi if rto > hi else rto


class Contact(RttEstimator):
    """One peer as seen by the local node.

    ``key`` is the node ID as an integer (XOR distances are computed on it);
    ``last_seen`` is the clock time of the last message received from it;
    ``failures`` counts requests in a row it did not answer.
    """

    __slots__ = (
        "node_id",
        "key",
        "address",
        "last_seen",
        "failures",
        "v6",
        "record",
        "link_local",
    )

    def __init__(self, node_id: bytes, address: Address, last_seen: float = 0.0) -> None:
        # RttEstimator.__init__ inlined: contacts are created on hot paths.
        self.srtt = None
        self.rttvar = 0.0
        self.node_id = node_id
        self.key = int.from_bytes(node_id, "big")
        self.last_seen = last_seen
        self.failures = 0
        self.address = address
        #: The contact's fixed-size NODES record and whether it is an IPv6 one.
        self.v6, self.record = wire.contact_record(node_id, address)
        #: Whether the address is IPv6 link-local (not relayed to other nodes).
        self.link_local = self.v6 and wire.is_link_local(self.record[20:36])

    def set_address(self, address: Address) -> None:
        """Record that the peer now uses ``address``."""
        if address != self.address:
            self.address = address
            self.v6, self.record = wire.contact_record(self.node_id, address)
            self.link_local = self.v6 and wire.is_link_local(self.record[20:36])

    def as_dict(self, now: float) -> dict[str, object]:
        """Return plain data for display (``dnactl peers``) and export."""
        return {
            "node_id": self.node_id.hex(),
            "host": self.address[0],
            "port": self.address[1],
            "last_seen_s": round(now - self.last_seen, 3),
            "rtt_ms": None if self.srtt is None else round(self.srtt * 1000, 3),
            "failures": self.failures,
        }

    def __repr__(self) -> str:
        return f"Contact({self.node_id.hex()[:12]}, {self.address!r})"


class Peer:
    """Who sent an application request: node ID, address and role."""

    __slots__ = ("node_id", "address", "role")

    def __init__(self, node_id: bytes, address: Address, role: str) -> None:
        self.node_id = node_id
        self.address = address
        self.role = role

    def __repr__(self) -> str:
        return f"Peer({self.node_id.hex()[:12]}, {self.address!r}, {self.role})"
