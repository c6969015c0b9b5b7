"""AsyncMonitor against hand-made path sets: same records as Monitor, concurrency, denial,
and the start hop chosen from the path lengths seen."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer, task

from dnaagent.dts.doubletree import Reply, StartHop, StopReason, choose_start_hop
from dnaagent.dts.monitor import Monitor
from dnaagent.dts.plane import MemoryStore, Plane
from dnaagent.dts.realprober import AsyncMonitor
from dnaagent.dts.simprober import ReplayProber, SimPath
from dnaagent.dts.stopsets import GlobalStopSet
from dnaagent.measure.paris import ProbeDenied

# Two destinations sharing a1..a3, a third one behind b2, an unreachable one.
PATHS = {
    "D1": SimPath(("a1", "a2", "a3", "b4", "b5"), 6),
    "D2": SimPath(("a1", "a2", "a3", "c4", "c5", "c6"), 7),
    "D3": SimPath(("a1", "b2", "b3"), 4),
    "D4": SimPath(("a1", "a2", "x3"), 5),
}


class DelayedProber:
    """The replay prober answering after ``0.01 * ttl`` s of a task.Clock."""

    def __init__(
        self, clock: task.Clock, paths: dict[str, SimPath], denied: frozenset[str] = frozenset()
    ):
        self.clock = clock
        self.replay = ReplayProber(paths)
        self.denied = denied
        self.in_flight: dict[str, int] = {}
        self.most_destinations = 0
        self.sent = 0

    def probe(self, destination: str, ttl: int) -> defer.Deferred[Reply]:
        if destination in self.denied:
            return defer.fail(ProbeDenied(destination))
        self.sent += 1
        self.in_flight[destination] = self.in_flight.get(destination, 0) + 1
        assert self.in_flight[destination] == 1, "Doubletree probes one TTL at a time"
        self.most_destinations = max(self.most_destinations, len(self.in_flight))

        def answer() -> Reply:
            self.in_flight[destination] -= 1
            if not self.in_flight[destination]:
                del self.in_flight[destination]
            return self.replay(destination, ttl)

        return task.deferLater(self.clock, 0.01 * ttl, answer)


def run(clock: task.Clock, d: defer.Deferred[Any]) -> Any:
    """Advance the clock until ``d`` fires; its result."""
    out: list[Any] = []
    d.addBoth(out.append)
    for _ in range(10_000):
        if out:
            break
        clock.advance(0.01)
    (result,) = out
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


def strip(records: list[Any]) -> list[tuple[Any, ...]]:
    """What must be equal between sync and async monitors (times aside)."""
    return [
        (r.dst_addr, r.start_ttl, r.forward_stop, r.backward_stop, [h[:2] for h in r.hops])
        for r in records
    ]


def test_same_records_as_monitor_one_at_a_time() -> None:
    """With concurrency 1, AsyncMonitor probes exactly as Monitor does."""
    targets = ["D1", "D2", "D3", "D4"]
    sync = Monitor("m", ReplayProber(PATHS), 3)
    expected = sync.probe_chunk("c", 0, targets, GlobalStopSet(0))
    clock = task.Clock()
    prober = DelayedProber(clock, PATHS)
    mon = AsyncMonitor("m", prober, 3, clock=clock.seconds, concurrency=1)
    got = run(clock, mon.probe_chunk("c", 0, targets, GlobalStopSet(0)))
    assert strip(got) == strip(expected)
    assert mon.probes_sent == sync.probes_sent == prober.sent
    assert set(mon.local) == set(sync.local)
    # the second trace stopped backwards at a3 (learnt from D1), forwards at D2
    d2 = got[1]
    assert (d2.forward_stop, d2.backward_stop) == ("destination_reached", "local_stop_set")
    assert got[0].timestamp == 0.0 and 0.21 <= got[0].endtime <= 0.23  # 6 probes, clock steps
    assert got[1].timestamp == pytest.approx(got[0].endtime)


def test_concurrency_is_bounded_and_order_kept() -> None:
    """At most ``concurrency`` destinations in flight; records in target order."""
    targets = [f"D{i}" for i in (1, 2, 3, 4)] * 3
    paths = {f"{t}-{k}": PATHS[t] for k in range(3) for t in ("D1", "D2", "D3", "D4")}
    names = [f"D{i}-{k}" for k in range(3) for i in (1, 2, 3, 4)]
    clock = task.Clock()
    prober = DelayedProber(clock, paths)
    mon = AsyncMonitor("m", prober, 2, clock=clock.seconds, concurrency=3)
    got = run(clock, mon.probe_chunk("c", 0, names, GlobalStopSet(0)))
    assert [r.dst_addr for r in got] == names
    assert prober.most_destinations == 3
    assert len(targets) == len(got)
    assert all(r.forward_stop == "destination_reached" for r in got)


def test_global_stop_set_and_denied() -> None:
    """A known (interface, destination) pair stops forwards; denied targets are handled."""
    clock = task.Clock()
    prober = DelayedProber(clock, PATHS, denied={"D4"})
    mon = AsyncMonitor("m", prober, 2, clock=clock.seconds)
    stop = GlobalStopSet(0, [("a3", "D1")])
    got = run(clock, mon.probe_chunk("c", 0, ["D1", "D3", "D4"], stop, denied=lambda d: d == "D3"))
    d1, d4 = got
    assert d1.forward_stop == "global_stop_set" and [h[0] for h in d1.hops] == [1, 2, 3]
    assert d1.backward_stop == "ttl_one_reached"
    assert (d4.dst_addr, d4.forward_stop, d4.backward_stop, d4.hops) == (
        "D4",
        "denied",
        "denied",
        [],
    )
    assert ("a1", "D1") in set(stop.pending)


def test_unexpected_prober_error_fails_the_chunk() -> None:
    """A prober bug is not hidden: the chunk's Deferred fails with it."""

    class Broken:
        def probe(self, destination: str, ttl: int) -> defer.Deferred[Reply]:
            return defer.fail(RuntimeError("socket exploded"))

    mon = AsyncMonitor("m", Broken(), 2)
    out: list[Any] = []
    mon.probe_chunk("c", 0, ["D1"], GlobalStopSet(0)).addErrback(out.append)
    assert out[0].check(RuntimeError)


def test_work_commits_the_chunk() -> None:
    """work() probes the leased chunk and commits PD records and PC pairs."""
    clock = task.Clock()
    store = MemoryStore()
    Plane.create(store, "camp", ["D1", "D2", "D3"], chunk_size=3, clock=clock.seconds)
    plane = Plane(store, "camp", clock.seconds)
    lease = plane.claim("m")
    assert lease is not None
    mon = AsyncMonitor("m", DelayedProber(clock, PATHS), 3, clock=clock.seconds)
    records = run(clock, mon.work(plane, lease))
    assert [r.dst_addr for r in records] == ["D1", "D2", "D3"]
    assert plane.stop_set(0).contains("a3", "D1")
    assert plane.claim("m") is None


def test_bad_concurrency() -> None:
    """Concurrency below 1 is refused."""
    with pytest.raises(ValueError):
        AsyncMonitor("m", DelayedProber(task.Clock(), PATHS), 2, concurrency=0)


# -- the start hop from path lengths --------------------------------------------------------


def test_start_hop_rule_on_hand_made_distributions() -> None:
    """h is the largest hop with P(distance <= h) <= p."""
    # 20 paths: lengths 3 (1), 5 (1), 8 (8), 9 (10)
    lengths = [3] + [5] + [8] * 8 + [9] * 10
    assert choose_start_hop(lengths, 0.05) == 4  # P(<=4) = 0.05, P(<=5) = 0.10
    assert choose_start_hop(lengths, 0.10) == 7
    assert choose_start_hop(lengths, 0.0) == 2
    assert choose_start_hop(lengths, 1.0) == 9


def test_start_hop_learns_from_traces() -> None:
    """StartHop keeps h fixed until enough distances are known, then applies the rule."""
    hop = StartHop(3, probability=0.1, min_samples=4, limit=30)
    assert hop.current() == 3
    for d in (6, 7, 7):
        hop.learn(d)
    hop.learn(None)
    assert hop.samples == 3 and hop.current() == 3
    hop.learn(8)
    # distances 6, 7, 7, 8: P(<=5) = 0 <= 0.1, P(<=6) = 0.25
    assert hop.current() == 5
    assert StartHop(3).current() == 3
    with pytest.raises(ValueError):
        StartHop(0)
    with pytest.raises(ValueError):
        StartHop(3, probability=2.0)


def test_monitor_start_hop_from_paths_seen() -> None:
    """A monitor with start_probability starts later once it has seen long paths."""
    far = {f"F{i}": SimPath(tuple(f"r{j}" for j in range(1, 9)), 9) for i in range(6)}
    mon = Monitor("m", ReplayProber(far), 1, start_probability=0.05, start_min_samples=5)
    stop = GlobalStopSet(0)
    first = [mon.trace(f"F{i}", stop) for i in range(5)]
    assert all(t.start_ttl == 1 for t in first)
    sixth = mon.trace("F5", stop)
    assert sixth.start_ttl == 8  # all 5 distances are 9: P(<=8) = 0
    assert sixth.forward_stop is StopReason.DESTINATION
    clock = task.Clock()
    amon = AsyncMonitor(
        "a", DelayedProber(clock, far), 1, start_probability=0.05, start_min_samples=5
    )
    for i in range(5):
        run(clock, amon.trace(f"F{i}", GlobalStopSet(0)))
    assert run(clock, amon.trace("F5", GlobalStopSet(0))).start_ttl == 8
