"""Doubletree against hand-made path sets: every stop reason, the start hop rule."""

from __future__ import annotations

import pytest

from dnaagent.dts.doubletree import (
    DoubletreeTrace,
    Reply,
    StopReason,
    choose_start_hop,
    run_trace,
)
from dnaagent.dts.simprober import ReplayProber, SimPath
from dnaagent.dts.stopsets import GlobalStopSet, LocalStopSet

# Two destinations behind the same first three routers:
#   src - a1 - a2 - a3 - b4 - D1 (TTL 6)        src - a1 - a2 - a3 - c4 - c5 - D2 (TTL 7)
PATHS = {
    "D1": SimPath(("a1", "a2", "a3", "b4", "b5"), 6),
    "D2": SimPath(("a1", "a2", "a3", "c4", "c5", "c6"), 7),
    "GAP": SimPath(("a1", None, "g3"), None),
    "FAR": SimPath(tuple(f"f{i}" for i in range(1, 40)), None),
}


def trace(dst: str, h: int, local=frozenset(), glob=None, **kw) -> DoubletreeTrace:
    """Run one trace over PATHS."""
    t = DoubletreeTrace(dst, h, local_stop=local, global_stop=glob or GlobalStopSet(), **kw)
    return run_trace(t, ReplayProber(PATHS))


def test_first_trace_goes_to_destination_and_ttl_one() -> None:
    """With empty stop sets: forwards to the destination, backwards down to TTL 1."""
    t = trace("D1", 3)
    assert t.forward_stop is StopReason.DESTINATION
    assert t.backward_stop is StopReason.TTL_ONE
    assert sorted(t.hops) == [1, 2, 3, 4, 5, 6]
    assert t.interfaces() == ["a1", "a2", "a3", "b4", "b5"]
    assert ("a3", "b4") in t.links()


def test_probe_order_is_h_then_forwards_then_backwards() -> None:
    """The first probe is at h, then h+1..., then h-1 down."""
    t = DoubletreeTrace("D1", 3)
    prober = ReplayProber(PATHS)
    order = []
    ttl = t.next_ttl()
    while ttl is not None:
        order.append(ttl)
        ttl = t.record(ttl, prober("D1", ttl))
    assert order == [3, 4, 5, 6, 2, 1]


def test_local_stop_set_stops_backwards() -> None:
    """Backwards probing stops at the first interface the monitor already knows."""
    local = LocalStopSet(["a1", "a2"])
    t = trace("D2", 4, local=local)
    assert t.backward_stop is StopReason.LOCAL_STOP_SET
    assert t.backward_stop_ttl == 2
    assert 1 not in t.hops


def test_global_stop_set_stops_forwards() -> None:
    """Forwards probing stops at an (interface, destination) pair already known."""
    glob = GlobalStopSet(0, [("c5", "D2")])
    t = trace("D2", 4, glob=glob)
    assert t.forward_stop is StopReason.GLOBAL_STOP_SET
    assert t.forward_stop_ttl == 5
    assert 6 not in t.hops and 7 not in t.hops


def test_global_pair_of_another_destination_does_not_stop() -> None:
    """A pair for another destination is no reason to stop."""
    glob = GlobalStopSet(0, [("c5", "D1")])
    assert trace("D2", 4, glob=glob).forward_stop is StopReason.DESTINATION


def test_gap_limit() -> None:
    """Forwards probing gives up after gap_limit silent hops in a row."""
    t = trace("GAP", 2, gap_limit=3)
    assert t.forward_stop is StopReason.GAP_LIMIT
    assert sorted(t.hops) == [1, 2, 3, 4, 5, 6]


def test_max_ttl() -> None:
    """Forwards probing stops at max_ttl."""
    t = trace("FAR", 5, max_ttl=10)
    assert t.forward_stop is StopReason.MAX_TTL
    assert max(t.hops) == 10


def test_destination_closer_than_h() -> None:
    """A destination answering at h ends forwards probing; backwards goes on."""
    t = trace("D1", 8)
    assert t.forward_stop is StopReason.DESTINATION
    assert t.hops[8].reached
    assert t.backward_stop is StopReason.TTL_ONE


def test_start_at_one_has_no_backwards() -> None:
    """h = 1 is classic traceroute: backwards ends at once with TTL 1."""
    t = trace("D1", 1)
    assert t.backward_stop is StopReason.TTL_ONE
    assert t.probes == 6


def test_external_stop_and_bad_answer() -> None:
    """stop() ends both directions; an answer for the wrong TTL is refused."""
    t = DoubletreeTrace("D1", 3)
    with pytest.raises(ValueError):
        t.record(4, Reply("x"))
    t.stop(StopReason.DENIED)
    assert t.done and t.next_ttl() is None
    assert t.forward_stop is StopReason.DENIED


def test_second_destination_saves_probes() -> None:
    """The shared prefix of D1 and D2 is not probed twice."""
    local, glob = LocalStopSet(), GlobalStopSet()
    first = trace("D1", 3, local=local, glob=glob)
    local.update(first.interfaces())
    second = trace("D2", 3, local=local, glob=glob)
    assert second.backward_stop is StopReason.LOCAL_STOP_SET
    assert second.probes < 7


@pytest.mark.parametrize(
    ("dists", "p", "h"),
    [
        ([10] * 95 + [3] * 5, 0.05, 9),
        ([10] * 94 + [3] * 6, 0.05, 2),
        ([], 0.05, 1),
        ({4: 1, 8: 99}, 0.0, 3),
        ({4: 1, 8: 99}, 1.0, 8),
    ],
)
def test_choose_start_hop(dists, p: float, h: int) -> None:
    """h is the largest hop at which at most a share p of destinations is reached."""
    assert choose_start_hop(dists, p) == h


def test_choose_start_hop_rejects_bad_p() -> None:
    """p outside [0, 1] is an error."""
    with pytest.raises(ValueError):
        choose_start_hop([3], 1.5)
