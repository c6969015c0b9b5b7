"""Stop sets, chunk keys, the PT/PC/PD planes, leases (injected clock) and the deny list."""

from __future__ import annotations

import hashlib

import pytest

from dnaagent.dts.chunks import TargetChunk, chunk_key, key_name, split, split_even
from dnaagent.dts.monitor import Monitor
from dnaagent.dts.plane import CampaignError, MemoryStore, Plane
from dnaagent.dts.simprober import ReplayProber, SimPath
from dnaagent.dts.simulate import new_clock, simulate_campaign
from dnaagent.dts.stopsets import GlobalStopSet, LocalStopSet


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_keys_are_consistent_across_planes() -> None:
    """PT, PC and PD keys of a chunk are SHA-1 of the same campaign and number."""
    assert key_name("pt", "c1", 3) == "dts/pt/c1/3"
    assert chunk_key("pc", "c1", 3) == hashlib.sha1(b"dts/pc/c1/3").digest()
    keys = {chunk_key(p, "c1", 3) for p in ("pt", "pc", "pd")}
    assert len(keys) == 3 and all(len(k) == 20 for k in keys)
    with pytest.raises(ValueError):
        chunk_key("pt", "bad id/", 0)
    with pytest.raises(ValueError):
        chunk_key("xx", "c1", 0)


def test_split() -> None:
    """Chunks cover the list without overlap."""
    assert split(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert [len(c) for c in split_even(list(range(10)), 4)] == [3, 3, 2, 2]


def test_stop_sets_and_encoding() -> None:
    """Local set membership; global pairs per destination, pending, round trip."""
    local = LocalStopSet(["a"])
    local.add("b")
    assert "b" in local and "c" not in local and len(local) == 2
    g = GlobalStopSet(2, [("x", "D")])
    g.add("y", "D")
    g.add("x", "D")
    assert g.pending == {("y", "D")}
    assert g.contains("x", "D") and not g.contains("x", "E")
    back = GlobalStopSet.decode(g.encode())
    assert back.chunk == 2 and list(back.pairs()) == [("x", "D"), ("y", "D")]
    g.discard_destination("D")
    assert len(g) == 0 and not g.pending
    with pytest.raises(ValueError):
        GlobalStopSet.decode(b"\xc1")
    assert TargetChunk.decode(TargetChunk(1, ["a"], {"a"}).encode()).active() == []


def test_lease_expires_and_failed_monitors_chunk_is_probed_again() -> None:
    """With policy "any", a chunk whose holder died is offered again after the lease."""
    clock = Clock()
    plane = Plane.create(
        MemoryStore(),
        "c",
        ["t1", "t2", "t3"],
        clock,
        chunk_size=2,
        policy="any",
        lease_seconds=60,
    )
    a = plane.claim("A")
    assert a is not None and a.chunk == 0
    b = plane.claim("B")
    assert b is not None and b.chunk == 1
    assert plane.claim("C") is None
    clock.now += 30
    assert plane.renew(b).expires == clock.now + 60
    clock.now += 31  # A's lease has expired, B's was renewed
    c = plane.claim("C")
    assert c is not None and c.chunk == 0
    with pytest.raises(CampaignError):
        plane.renew(a)
    assert plane.commit(c, GlobalStopSet(0), [{"x": 1}])
    assert plane.data(0) == {"C": [{"x": 1}]}
    assert not plane.complete()
    plane.commit(b, GlobalStopSet(1), [])
    assert plane.complete()


def test_each_policy_and_commit_merges_pc() -> None:
    """With policy "each" every monitor gets every chunk; commits merge PC pairs."""
    clock = Clock()
    plane = Plane.create(MemoryStore(), "c", ["t1", "t2"], clock, chunk_size=1, max_holders=1)
    la = plane.claim("A")
    assert la is not None and la.chunk == 0
    lb = plane.claim("B")
    assert lb is not None and lb.chunk == 1  # chunk 0 is held by A
    pc = plane.stop_set(0)
    pc.add("r1", "t1")
    plane.commit(la, pc, [])
    assert plane.stop_set(0).contains("r1", "t1")
    lb2 = plane.claim("B", [0, 1])
    assert lb2 is not None and lb2.chunk == 0
    assert plane.status()["chunks"][0]["done"] == ["A"]


def test_targets_added_removed_and_denied_while_running() -> None:
    """Targets change during a campaign; denied targets are refused for good."""
    clock = Clock()
    hook = {"evil"}
    plane = Plane.create(
        MemoryStore(), "c", ["t1", "t2", "t3"], clock, chunk_size=2, deny_check=hook.__contains__
    )
    assert plane.chunk_count == 2
    assert plane.add_targets(["t4", "t5", "t1"]) == [1, 2]
    assert plane.targets(1) == ["t3", "t4"] and plane.targets(2) == ["t5"]
    pc = plane.stop_set(1)
    pc.add("r", "t3")
    lease = plane.claim("A", [1])
    assert lease is not None
    plane.commit(lease, pc, [])
    assert plane.remove_target("t3")
    assert plane.targets(1) == ["t4"] and not plane.stop_set(1).contains("r", "t3")
    plane.deny("t4")
    assert plane.is_denied("t4") and plane.targets(1) == []
    assert plane.add_targets(["t4"]) == []
    plane.add_targets(["evil"])
    assert "evil" not in plane.targets(2)
    assert plane.is_denied("evil")


def test_campaign_errors() -> None:
    """Bad parameters and a duplicate campaign are refused."""
    store, clock = MemoryStore(), Clock()
    Plane.create(store, "c", ["a"], clock, chunk_size=1)
    with pytest.raises(CampaignError):
        Plane.create(store, "c", ["a"], clock, chunk_size=1)
    with pytest.raises(CampaignError):
        Plane(MemoryStore(), "nope", clock)
    with pytest.raises(CampaignError):
        Plane.create(MemoryStore(), "d", ["a"], clock, chunk_size=1, policy="all")


def _tree_paths() -> dict[str, dict[str, SimPath]]:
    """Two monitors whose paths to four destinations join at router j."""
    dests = [f"d{i}" for i in range(4)]
    return {m: {d: SimPath((f"{m}1", f"{m}2", "j", f"x{d}"), 5) for d in dests} for m in ("A", "B")}


def test_global_stop_set_shared_through_chunks() -> None:
    """The second monitor on a chunk stops at the pairs the first one committed."""
    paths = _tree_paths()
    clock = new_clock()
    plane = Plane.create(MemoryStore(), "c", list(paths["A"]), clock, chunk_size=1)
    monitors = [Monitor(m, ReplayProber(p), 3) for m, p in paths.items()]
    res = simulate_campaign(plane, clock, monitors)
    assert set(res.chunks_done.values()) == {4}
    # Alone, each monitor would send 5 + 3 * 4 = 17 probes (first trace, then h..dest
    # plus one backwards); sharing, the later one on each chunk stops at j.
    assert sum(res.probes.values()) < 2 * 17
    assert {"j", "A1", "B1"} <= res.interfaces


def test_failed_monitor_loses_its_uncommitted_work() -> None:
    """A monitor failing at 0 % probes nothing; survivors still finish every chunk."""
    paths = _tree_paths()
    clock = new_clock()
    plane = Plane.create(MemoryStore(), "c", list(paths["A"]), clock, chunk_size=1)
    monitors = [Monitor(m, ReplayProber(p), 3) for m, p in paths.items()]
    res = simulate_campaign(plane, clock, monitors, fail_after={"B": 0})
    assert res.failed == {"B"} and res.probes["B"] == 0
    assert res.chunks_done["A"] == 4
