"""A simulated datagram network on a :class:`~dnaagent.sim.clock.SimClock`.

Each simulated host has an address (``("10.a.b.c", port)``) and a
:class:`SimTransport` that stands in for a UDP port: ``write(data, addr)`` schedules the
delivery of ``data`` to the destination protocol's ``datagramReceived(data, src_addr)``
after a delay taken from a latency model:

* :class:`ExponentialLatency` -- an independent Exp(mean) delay per message, the model of
  the paper's simulator (mean 50 ms);
* :class:`MatrixLatency` -- half the measured round-trip time between the two matrix rows
  the hosts are mapped onto (e.g. the 490-node PlanetLab matrix), with a per-message
  jitter.

Messages can be lost with a fixed probability; traffic to or from an offline host is
dropped. Every transport counts the messages and bytes it sent and received so that the
simulation can report maintenance traffic per peer, and the unauthenticated datagrams
among them (dnaagent's flags byte 0: those the real agent signs, their 64-byte
signature left out in simulations). All randomness comes from the
``random.Random`` given to the network: a run is reproducible from its seed.
"""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from twisted.internet.address import IPv4Address

from dnaagent.sim.clock import SimClock

__all__ = [
    "DEFAULT_PLANETLAB",
    "ExponentialLatency",
    "LatencyModel",
    "MatrixLatency",
    "SimNetwork",
    "SimTransport",
    "TrafficTotals",
    "load_planetlab",
]

#: Where the PlanetLab RTT matrices are expected (outside the repository).
DEFAULT_PLANETLAB = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "planetlab_490x18.tar.xz"
)

Address = tuple[str, int]


class DatagramReceiver(Protocol):
    """What the network needs from a hosted protocol (a ``DatagramProtocol`` fits)."""

    def datagramReceived(self, datagram: bytes, addr: Address) -> None:  # noqa: N802
        """Handle one datagram from ``addr``."""


class LatencyModel(Protocol):
    """A one-way delay model: seconds for a message from ``src`` to ``dst``."""

    def assign(self, transport: SimTransport) -> None:
        """Give a new host whatever the model needs (e.g. a matrix row)."""

    def delay(self, src: SimTransport, dst: SimTransport) -> float:
        """Return the one-way delay in seconds for one message from ``src`` to ``dst``."""


class ExponentialLatency:
    """Independent Exp(``mean``) one-way delay per message (the paper: mean 50 ms)."""

    def __init__(self, rng: random.Random, mean: float = 0.050) -> None:
        if mean <= 0:
            raise ValueError(f"mean delay must be positive, got {mean}")
        self.mean = mean
        self._draw = rng.expovariate
        self._rate = 1.0 / mean

    def assign(self, transport: SimTransport) -> None:
        """Nothing to assign: the delay does not depend on the hosts."""

    def delay(self, src: SimTransport, dst: SimTransport) -> float:
        """Draw an Exp(mean) delay."""
        return self._draw(self._rate)


class MatrixLatency:
    """One-way delay = RTT/2 between the matrix rows of the two hosts, times a jitter.

    Hosts are mapped onto rows at random (several hosts share a row when there are more
    hosts than rows; two hosts on one row are given ``local_rtt_ms``). Missing entries
    (zero or negative off the diagonal, NaN) are replaced by the median RTT.

    :param rtt_ms: a square matrix of round-trip times in milliseconds.
    :param jitter: each message's delay is multiplied by a factor drawn uniformly from
        ``[1 - jitter, 1 + jitter]``.
    """

    def __init__(
        self,
        rng: random.Random,
        rtt_ms: np.ndarray,
        jitter: float = 0.1,
        local_rtt_ms: float = 1.0,
    ) -> None:
        m = np.array(rtt_ms, dtype=float)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
            raise ValueError(f"latency matrix must be square, got shape {m.shape}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        bad = ~np.isfinite(m) | (m <= 0)
        np.fill_diagonal(bad, False)
        if bad.all():
            raise ValueError("latency matrix holds no usable entry")
        median = float(np.median(m[~bad & ~np.eye(len(m), dtype=bool)]))
        m[bad] = median
        np.fill_diagonal(m, local_rtt_ms)
        # One-way delay in seconds, as nested lists: indexing them is faster than numpy.
        self._one_way: list[list[float]] = (m / 2000.0).tolist()
        self.rows = len(m)
        self.median_rtt_ms = median
        self._rng = rng
        self._jitter = jitter

    def assign(self, transport: SimTransport) -> None:
        """Map the host onto a random row of the matrix."""
        transport.row = self._rng.randrange(self.rows)

    def delay(self, src: SimTransport, dst: SimTransport) -> float:
        """Return RTT/2 between the rows of ``src`` and ``dst``, with jitter."""
        base = self._one_way[src.row][dst.row]
        j = self._jitter
        if j:
            return base * (1.0 - j + 2.0 * j * self._rng.random())
        return base


def load_planetlab(path: Path | str = DEFAULT_PLANETLAB, slice_no: int = 1) -> np.ndarray:
    """Read one 490x490 RTT matrix (ms) from the PlanetLab archive without unpacking it.

    :param path: the ``planetlab_490x18.tar.xz`` archive.
    :param slice_no: which of the 18 measurements (1..18).
    :raises FileNotFoundError: if the archive or the slice is missing.
    """
    member = f"PlanetLab/PlanetLabData_{slice_no}"
    with tarfile.open(path, "r:xz") as tar:
        try:
            f = tar.extractfile(member)
        except KeyError:
            raise FileNotFoundError(f"{path} has no member {member}") from None
        if f is None:
            raise FileNotFoundError(f"{path}: {member} is not a file")
        text = f.read().decode("ascii")
    return np.loadtxt(io.StringIO(text), dtype=float)


@dataclass
class TrafficTotals:
    """Network-wide counters at one instant (see :meth:`SimNetwork.totals`)."""

    time: float
    sent_msgs: int
    sent_bytes: int
    sent_unsigned: int
    delivered_msgs: int
    lost_msgs: int
    dropped_offline: int
    node_seconds: float


class SimTransport:
    """The simulated UDP port of one host; hand it to a protocol's ``makeConnection``.

    Counters: ``sent_msgs``/``sent_bytes`` (accepted from the protocol while online),
    ``sent_unsigned`` (those of them with flags byte 0, see the module doc),
    ``recv_msgs``/``recv_bytes`` (handed to the protocol).
    """

    __slots__ = (
        "_network",
        "protocol",
        "address",
        "row",
        "online",
        "sent_msgs",
        "sent_bytes",
        "sent_unsigned",
        "recv_msgs",
        "recv_bytes",
        "_receive",
    )

    def __init__(self, network: SimNetwork, protocol: DatagramReceiver, address: Address) -> None:
        self._network = network
        self.protocol = protocol
        self.address = address
        self.row = 0
        self.online = True
        self.sent_msgs = 0
        self.sent_bytes = 0
        self.sent_unsigned = 0
        self.recv_msgs = 0
        self.recv_bytes = 0
        self._receive: Callable[[bytes, Address], None] = protocol.datagramReceived

    # -- what a DatagramProtocol calls ---------------------------------------------

    def write(self, data: bytes, addr: Address | None = None) -> None:
        """Send ``data`` to ``addr``; it arrives after the model's delay, unless lost."""
        if not self.online:
            return
        self.sent_msgs += 1
        self.sent_bytes += len(data)
        if len(data) > 1 and not data[1]:
            self.sent_unsigned += 1
        self._network._send(self, data, addr)

    def getHost(self) -> IPv4Address:  # noqa: N802 (Twisted's name)
        """Return this host's address as Twisted does for a UDP port."""
        return IPv4Address("UDP", self.address[0], self.address[1])

    def stopListening(self) -> None:  # noqa: N802 (Twisted's name)
        """Take the host off the network (like closing the port)."""
        self._network.set_online(self, False)

    loseConnection = stopListening  # noqa: N815 (Twisted's name)

    def setBroadcastAllowed(self, enabled: bool) -> None:  # noqa: N802 (Twisted's name)
        """Accepted and ignored: the simulated network has no broadcast."""

    def getBroadcastAllowed(self) -> bool:  # noqa: N802 (Twisted's name)
        """Return ``False``: the simulated network has no broadcast."""
        return False

    def __repr__(self) -> str:
        state = "online" if self.online else "offline"
        return f"<SimTransport {self.address[0]}:{self.address[1]} {state}>"


class SimNetwork:
    """A set of simulated hosts that exchange datagrams on simulated time.

    :param clock: the simulation clock.
    :param rng: the random source for losses (the latency model has its own).
    :param latency: the delay model; Exp(50 ms) when omitted.
    :param loss: probability that any one message is lost.
    :param port: the UDP port every host uses.
    """

    def __init__(
        self,
        clock: SimClock,
        rng: random.Random,
        latency: LatencyModel | None = None,
        loss: float = 0.0,
        port: int = 4001,
    ) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss probability must be in [0, 1), got {loss}")
        self.clock = clock
        self.latency: LatencyModel = latency or ExponentialLatency(rng)
        self.loss = loss
        self.port = port
        self._rng = rng
        self._hosts: dict[Address, SimTransport] = {}
        self._next_ip = (10 << 24) + 1
        self.delivered_msgs = 0
        self.lost_msgs = 0
        self.dropped_offline = 0
        self._live = 0
        self._node_seconds = 0.0
        self._live_since = clock.seconds()
        self._gone_msgs = 0
        self._gone_bytes = 0
        self._gone_unsigned = 0
        # bound once: the hot path
        self._schedule = clock.schedule
        self._random = rng.random
        self._delay = self.latency.delay

    # -- hosts -------------------------------------------------------------------

    def new_address(self) -> Address:
        """Return a fresh, never used address ``("10.x.y.z", port)``."""
        n = self._next_ip
        self._next_ip += 1
        if n & 0xFF == 0:  # skip .0
            n = self._next_ip
            self._next_ip += 1
        return (f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", self.port)

    def attach(self, protocol: DatagramReceiver, address: Address | None = None) -> SimTransport:
        """Put ``protocol`` on the network at ``address`` (fresh if omitted), online.

        The caller then connects it, e.g. ``protocol.makeConnection(transport)``.
        """
        addr = address or self.new_address()
        if addr in self._hosts:
            raise ValueError(f"address {addr} is already in use")
        transport = SimTransport(self, protocol, addr)
        self.latency.assign(transport)
        self._hosts[addr] = transport
        self._count_live(+1)
        return transport

    def detach(self, transport: SimTransport) -> None:
        """Remove a host for good; messages in flight to it are dropped.

        The traffic it sent stays counted in :meth:`totals`.
        """
        if self._hosts.get(transport.address) is transport:
            self.set_online(transport, False)
            del self._hosts[transport.address]
            self._gone_msgs += transport.sent_msgs
            self._gone_bytes += transport.sent_bytes
            self._gone_unsigned += transport.sent_unsigned

    def set_online(self, transport: SimTransport, online: bool) -> None:
        """Bring a host up or down; an offline host sends and receives nothing."""
        if transport.online != online:
            transport.online = online
            self._count_live(+1 if online else -1)

    def host(self, address: Address) -> SimTransport | None:
        """Return the transport at ``address`` (online or not), or ``None``."""
        return self._hosts.get(address)

    def hosts(self) -> Iterator[SimTransport]:
        """Iterate over every attached host."""
        return iter(self._hosts.values())

    @property
    def live(self) -> int:
        """The number of online hosts."""
        return self._live

    # -- accounting --------------------------------------------------------------

    def _count_live(self, change: int) -> None:
        now = self.clock.seconds()
        self._node_seconds += self._live * (now - self._live_since)
        self._live_since = now
        self._live += change

    def totals(self) -> TrafficTotals:
        """Snapshot the network-wide counters (subtract two snapshots for a window).

        ``node_seconds`` integrates the number of online hosts over time, so that
        ``(b.sent_bytes - a.sent_bytes) / (b.node_seconds - a.node_seconds)`` is the mean
        traffic sent per online peer and second, churn included.
        """
        now = self.clock.seconds()
        sent_msgs = sent_bytes = sent_unsigned = 0
        for t in self._hosts.values():
            sent_msgs += t.sent_msgs
            sent_bytes += t.sent_bytes
            sent_unsigned += t.sent_unsigned
        return TrafficTotals(
            time=now,
            sent_msgs=sent_msgs + self._gone_msgs,
            sent_bytes=sent_bytes + self._gone_bytes,
            sent_unsigned=sent_unsigned + self._gone_unsigned,
            delivered_msgs=self.delivered_msgs,
            lost_msgs=self.lost_msgs,
            dropped_offline=self.dropped_offline,
            node_seconds=self._node_seconds + self._live * (now - self._live_since),
        )

    # -- delivery ----------------------------------------------------------------

    def _send(self, src: SimTransport, data: bytes, addr: Address | None) -> None:
        dst = self._hosts.get(addr) if addr is not None else None  # type: ignore[arg-type]
        if dst is None:
            self.dropped_offline += 1
            return
        if self.loss and self._random() < self.loss:
            self.lost_msgs += 1
            return
        self._schedule(self._delay(src, dst), self._deliver, dst, data, src.address)

    def _deliver(self, dst: SimTransport, data: bytes, src: Address) -> None:
        if not dst.online:
            self.dropped_offline += 1
            return
        dst.recv_msgs += 1
        dst.recv_bytes += len(data)
        self.delivered_msgs += 1
        dst._receive(data, src)
