"""Fifty overlay nodes in one process on an in-memory network with task.Clock.

Messages take an exponentially distributed time (mean 50 ms, as in the DNA
paper's simulations). The nodes join, find each other, store and retrieve
values; then one leaves gracefully and one crashes, and everything that is
still alive must stay reachable.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from dnaagent.overlay import Identity, OverlayConfig, OverlayNode
from tests.fakes.datagram import MemoryNetwork

N = 50
PORT = 4001


class Overlay:
    """Fifty nodes, their addresses and helpers to run the clock."""

    def __init__(self, seed: int = 1) -> None:
        self.clock = Clock()
        self.rng = random.Random(seed)
        self.net = MemoryNetwork(self.clock, delay=lambda r: r.expovariate(1 / 0.05), seed=seed)
        config = OverlayConfig(require_signatures=False, rpc_timeout=2.0)
        self.nodes: list[OverlayNode] = []
        self.addr: dict[bytes, tuple[str, int]] = {}
        for i in range(N):
            node = OverlayNode(
                Identity.unsigned(self.rng), self.clock, config=config, rng=random.Random(i)
            )
            address = (f"203.0.113.{i + 1}", PORT)
            self.net.listen(address, node)
            self.nodes.append(node)
            self.addr[node.node_id] = address
        self.gone: set[bytes] = set()

    def live(self) -> list[OverlayNode]:
        """Nodes that neither left nor crashed."""
        return [n for n in self.nodes if n.node_id not in self.gone]

    def run(self, seconds: float) -> None:
        """Advance simulated time in 10 ms steps."""
        for _ in range(int(seconds / 0.01)):
            self.clock.advance(0.01)

    def run_coarse(self, seconds: float) -> None:
        """Advance a long idle time in 50 ms steps (only periodic work runs)."""
        for _ in range(int(seconds / 0.05)):
            self.clock.advance(0.05)

    def wait_all(self, deferreds: list[Any], seconds: float = 10.0) -> list[Any]:
        """Run until every Deferred fired; return their results (failures raise)."""
        results: list[Any] = [None] * len(deferreds)
        fired = [False] * len(deferreds)
        for i, d in enumerate(deferreds):

            def store(r: Any, i: int = i) -> None:
                results[i] = r
                fired[i] = True

            d.addBoth(store)
        for _ in range(int(seconds / 0.01)):
            if all(fired):
                break
            self.clock.advance(0.01)
        assert all(fired), f"{fired.count(False)} operations did not finish"
        for r in results:
            if isinstance(r, Failure):
                r.raiseException()
        return results

    def join_all(self) -> None:
        """Each node joins through a random node that joined before it."""
        for i, node in enumerate(self.nodes[1:], start=1):
            seed = self.addr[self.nodes[self.rng.randrange(i)].node_id]
            self.wait_all([node.join([seed])])
        self.run(5)

    def find_everyone(self) -> tuple[int, int]:
        """Every live node looks up every other live node; returns (found, total).

        One node's lookups run at a time (49 concurrent lookups): task.Clock
        sorts its calls on every callLater and slows down with many pending.
        """
        live = self.live()
        found = total = 0
        for a in live:
            targets = [b.node_id for b in live if b is not a]
            results = self.wait_all([a.find(t) for t in targets], seconds=30)
            total += len(targets)
            found += sum(1 for r, t in zip(results, targets, strict=True) if r and r.node_id == t)
        return found, total


@pytest.fixture(scope="module")
def overlay() -> Overlay:
    """A joined overlay of 50 nodes, shared by the tests of this module in order."""
    o = Overlay()
    o.join_all()
    return o


def test_joins_fill_routing_tables(overlay: Overlay) -> None:
    """After joining, every node knows most of a 50-node overlay (k = 20 per bucket)."""
    sizes = [len(n.routing_table) for n in overlay.nodes]
    assert min(sizes) >= 20
    assert sum(sizes) / N >= 35


def test_every_node_knows_its_five_closest_neighbours(overlay: Overlay) -> None:
    """Each node's table holds its 5 XOR-closest nodes (global view)."""
    ids = [n.node_id for n in overlay.nodes]
    for node in overlay.nodes:
        key = int.from_bytes(node.node_id, "big")
        closest = sorted(
            (i for i in ids if i != node.node_id), key=lambda i: int.from_bytes(i, "big") ^ key
        )[:5]
        assert all(i in node.routing_table for i in closest)


def test_lookups_for_every_node_succeed(overlay: Overlay) -> None:
    """All 2,450 node lookups find their target."""
    found, total = overlay.find_everyone()
    assert (found, total) == (N * (N - 1), N * (N - 1))


def test_lookups_end_early_and_quickly(overlay: Overlay) -> None:
    """A node lookup takes a few round trips: the median is well under a second."""
    times = []
    for _ in range(100):
        a, b = overlay.rng.sample(overlay.nodes, 2)
        start = overlay.clock.seconds()
        overlay.wait_all([a.find(b.node_id)])
        times.append(overlay.clock.seconds() - start)
    times.sort()
    assert times[50] <= 0.3


def test_store_and_get(overlay: Overlay) -> None:
    """Values put by random nodes are read back by other random nodes."""
    keys = {overlay.rng.randbytes(20): overlay.rng.randbytes(40) for _ in range(20)}
    puts = [overlay.rng.choice(overlay.nodes).put(k, v, ttl=3600) for k, v in keys.items()]
    assert all(stored >= 20 for stored in overlay.wait_all(puts))
    gets = [overlay.rng.choice(overlay.nodes).get(k) for k in keys]
    assert overlay.wait_all(gets) == [[v] for v in keys.values()]
    overlay.keys = keys  # type: ignore[attr-defined]


def test_graceful_leave(overlay: Overlay) -> None:
    """A node that leaves disappears from its contacts' tables; everyone else is still found."""
    leaver = overlay.nodes[17]
    told = [n for n in overlay.nodes if n.node_id in leaver.routing_table]
    leaver.leave()
    overlay.gone.add(leaver.node_id)
    overlay.run(1)
    assert told and all(leaver.node_id not in n.routing_table for n in told)
    asker = overlay.nodes[3]
    assert overlay.wait_all([asker.find(leaver.node_id)]) == [None]
    found, total = overlay.find_everyone()
    assert found == total


def test_crash(overlay: Overlay) -> None:
    """A node that stops answering is routed around; lookups and gets still succeed."""
    victim = overlay.nodes[31]
    overlay.net.crash(overlay.addr[victim.node_id])
    overlay.gone.add(victim.node_id)
    assert overlay.wait_all([overlay.nodes[5].find(victim.node_id)], seconds=20) == [None]
    found, total = overlay.find_everyone()
    assert found == total
    keys = overlay.keys  # type: ignore[attr-defined]
    gets = [overlay.rng.choice(overlay.live()).get(k) for k in keys]
    assert overlay.wait_all(gets, seconds=30) == [[v] for v in keys.values()]
    # Its neighbours notice when they refresh their neighbourhood (every 10 min).
    overlay.run_coarse(1300)
    key = int.from_bytes(victim.node_id, "big")
    neighbours = sorted(overlay.live(), key=lambda n: int.from_bytes(n.node_id, "big") ^ key)[:5]
    assert all(victim.node_id not in n.routing_table for n in neighbours)


def test_nothing_was_dropped(overlay: Overlay) -> None:
    """No datagram between honest nodes was rejected as invalid."""
    for node in overlay.nodes:
        c = node.counters
        invalid = c["dropped"] - c["dropped_unexpected_reply"] - c["dropped_not_running"]
        assert invalid == 0, c
