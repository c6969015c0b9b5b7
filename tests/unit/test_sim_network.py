"""Tests of the simulated datagram network (no sockets)."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import numpy as np
import pytest
from twisted.internet.protocol import DatagramProtocol

from dnaagent.sim.clock import SimClock
from dnaagent.sim.network import (
    DEFAULT_PLANETLAB,
    ExponentialLatency,
    MatrixLatency,
    SimNetwork,
    load_planetlab,
)


class Recorder(DatagramProtocol):
    """Records every datagram with its arrival time and sender."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.got: list[tuple[float, bytes, tuple[str, int]]] = []

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:  # noqa: N802
        """Record the datagram."""
        self.got.append((self.clock.seconds(), datagram, addr))


def make(
    n: int, loss: float = 0.0, seed: int = 1, latency: str = "exp"
) -> tuple[SimClock, SimNetwork, list[Recorder]]:
    """Build a network of ``n`` recorders."""
    clock = SimClock(strict=True)
    rng = random.Random(seed)
    model = None
    if latency == "matrix":
        model = MatrixLatency(random.Random(seed + 1), np.array([[0, 100], [100, 0]]), jitter=0)
    net = SimNetwork(clock, rng, model, loss=loss)
    nodes = []
    for _ in range(n):
        p = Recorder(clock)
        p.makeConnection(net.attach(p))
        nodes.append(p)
    return clock, net, nodes


def test_addresses_are_distinct_and_reported_by_get_host() -> None:
    """Each host gets a fresh 10.x address on the network's port; getHost reports it."""
    _, net, nodes = make(300)
    addrs = {p.transport.address for p in nodes}  # type: ignore[attr-defined]
    assert len(addrs) == 300
    assert all(a[0].startswith("10.") and not a[0].endswith(".0") for a in addrs)
    host = nodes[0].transport.getHost()  # type: ignore[attr-defined]
    assert (host.host, host.port) == nodes[0].transport.address  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        net.attach(Recorder(SimClock()), nodes[0].transport.address)  # type: ignore[attr-defined]


def test_delivery_after_delay_with_sender_address() -> None:
    """A datagram arrives later, intact, with the sender's address, and is counted."""
    clock, net, (a, b) = make(2)
    a.transport.write(b"hello", b.transport.address)  # type: ignore[attr-defined]
    assert b.got == []
    clock.run()
    ((t, data, src),) = b.got
    assert data == b"hello" and src == a.transport.address  # type: ignore[attr-defined]
    assert t > 0
    assert a.transport.sent_msgs == 1 and a.transport.sent_bytes == 5  # type: ignore[attr-defined]
    assert b.transport.recv_msgs == 1 and b.transport.recv_bytes == 5  # type: ignore[attr-defined]
    assert net.delivered_msgs == 1


def test_exponential_delay_has_the_requested_mean() -> None:
    """Exp(50 ms) delays: mean close to 50 ms, and about 63 % below the mean."""
    clock, _, (a, b) = make(2, seed=3)
    n = 20_000
    for _ in range(n):
        a.transport.write(b"x", b.transport.address)  # type: ignore[attr-defined]
    clock.run()
    delays = [t for t, _, _ in b.got]
    assert statistics.fmean(delays) == pytest.approx(0.050, rel=0.03)
    below = sum(d < 0.050 for d in delays) / n
    assert below == pytest.approx(1 - np.exp(-1), abs=0.02)


def test_matrix_delay_is_half_the_rtt() -> None:
    """With a latency matrix and no jitter, one-way delay is RTT/2."""
    clock, _, (a, b) = make(2, latency="matrix")
    a.transport.row, b.transport.row = 0, 1  # type: ignore[attr-defined]
    a.transport.write(b"x", b.transport.address)  # type: ignore[attr-defined]
    clock.run()
    assert b.got[0][0] == pytest.approx(0.050)


def test_matrix_fills_missing_entries_and_jitters() -> None:
    """Missing RTTs become the median; jitter keeps delays within +-jitter of RTT/2."""
    m = np.array([[0, 10, 30, -1], [10, 0, 20, 30], [30, 20, 0, 40], [-1, 30, 40, 0]], float)
    model = MatrixLatency(random.Random(1), m, jitter=0.2, local_rtt_ms=2.0)
    assert model.median_rtt_ms == 30.0
    clock = SimClock()
    net = SimNetwork(clock, random.Random(2), model)
    t0, t3 = net.attach(Recorder(clock)), net.attach(Recorder(clock))
    t0.row, t3.row = 0, 3
    d = [model.delay(t0, t3) for _ in range(2000)]
    assert 0.012 <= min(d) and max(d) <= 0.018
    t3.row = 0
    assert model.delay(t0, t3) == pytest.approx(0.001, rel=0.21)
    with pytest.raises(ValueError):
        MatrixLatency(random.Random(1), np.zeros((2, 3)))


def test_loss_drops_the_requested_share() -> None:
    """With loss p, about p of the messages never arrive and are counted as lost."""
    clock, net, (a, b) = make(2, loss=0.2, seed=5)
    for _ in range(10_000):
        a.transport.write(b"x", b.transport.address)  # type: ignore[attr-defined]
    clock.run()
    assert len(b.got) + net.lost_msgs == 10_000
    assert net.lost_msgs / 10_000 == pytest.approx(0.2, abs=0.015)
    with pytest.raises(ValueError):
        SimNetwork(clock, random.Random(), loss=1.0)


def test_offline_hosts_neither_send_nor_receive() -> None:
    """Traffic to an offline host (even in flight) and from it is dropped."""
    clock, net, (a, b, c) = make(3)
    a.transport.write(b"in flight", b.transport.address)  # type: ignore[attr-defined]
    net.set_online(b.transport, False)  # type: ignore[arg-type, attr-defined]
    b.transport.write(b"from offline", c.transport.address)  # type: ignore[attr-defined]
    a.transport.write(b"to nowhere", ("192.0.2.1", 4001))  # type: ignore[attr-defined]
    clock.run()
    assert b.got == [] and c.got == []
    assert net.dropped_offline == 2
    assert b.transport.sent_msgs == 0  # type: ignore[attr-defined]
    net.set_online(b.transport, True)  # type: ignore[arg-type, attr-defined]
    a.transport.write(b"back", b.transport.address)  # type: ignore[attr-defined]
    clock.run()
    assert [g[1] for g in b.got] == [b"back"]


def test_totals_integrate_online_hosts_and_keep_departed_traffic() -> None:
    """node_seconds integrates the online count; detached hosts' bytes stay counted."""
    clock, net, (a, b) = make(2)
    before = net.totals()
    clock.advance(10)
    a.transport.write(b"12345", b.transport.address)  # type: ignore[attr-defined]
    net.detach(a.transport)  # type: ignore[arg-type, attr-defined]
    clock.advance(10)
    after = net.totals()
    assert after.node_seconds - before.node_seconds == pytest.approx(2 * 10 + 1 * 10)
    assert after.sent_bytes - before.sent_bytes == 5
    assert net.live == 1 and net.host(a.transport.address) is None  # type: ignore[attr-defined]


def test_same_seed_same_run() -> None:
    """Two networks built from the same seed deliver at exactly the same times."""

    def run(seed: int) -> list[float]:
        clock, _, nodes = make(5, loss=0.1, seed=seed)
        rng = random.Random(0)
        for _ in range(500):
            src, dst = rng.sample(nodes, 2)
            src.transport.write(b"m", dst.transport.address)  # type: ignore[attr-defined]
        clock.run()
        return [t for n in nodes for t, _, _ in n.got]

    assert run(9) == run(9)
    assert run(9) != run(10)


def test_exponential_latency_rejects_bad_mean() -> None:
    """A non-positive mean delay is refused."""
    with pytest.raises(ValueError):
        ExponentialLatency(random.Random(), 0)


@pytest.mark.skipif(not Path(DEFAULT_PLANETLAB).exists(), reason="PlanetLab data not present")
def test_load_planetlab_reads_a_square_rtt_matrix() -> None:
    """The PlanetLab archive yields a symmetric 490x490 matrix with a plausible median."""
    m = load_planetlab()
    assert m.shape == (490, 490)
    off = m[~np.eye(490, dtype=bool)]
    assert 50 < float(np.median(off)) < 300
    with pytest.raises(FileNotFoundError):
        load_planetlab(slice_no=99)
