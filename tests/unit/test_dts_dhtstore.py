"""The DTS planes in the overlay DHT: merged values, leases as TTLs, claims, commits, PD parts."""

from __future__ import annotations

import random

import msgpack
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from dnaagent.dts.chunks import campaign_key, chunk_key
from dnaagent.dts.dhtstore import (
    VALUE_LIMIT,
    DhtPlane,
    MemoryDht,
    merge_chunk,
    pack_parts,
)
from dnaagent.dts.plane import CampaignError
from dnaagent.dts.stopsets import GlobalStopSet
from dnaagent.overlay import Identity, OverlayConfig, OverlayNode
from tests.fakes.datagram import MemoryNetwork


def run(coro: object) -> object:
    """Run a coroutine whose Deferreds all fire at once (MemoryDht); return its result."""
    d = defer.ensureDeferred(coro)  # type: ignore[arg-type]
    out: list[object] = []
    d.addBoth(out.append)
    assert out, "the coroutine waited on something that never fired"
    result = out[0]
    if hasattr(result, "raiseException"):
        result.raiseException()  # type: ignore[union-attr]
    return result


def record(monitor: str, dst: str, hops: int = 3, t: float = 1.0) -> dict:
    return {
        "campaign": "c1",
        "chunk": 0,
        "monitor": monitor,
        "src_addr": "192.0.2.1",
        "dst_addr": dst,
        "timestamp": t,
        "endtime": t + 1,
        "start_ttl": 2,
        "forward_stop": "destination_reached",
        "backward_stop": "ttl_one_reached",
        "hops": [[i, f"198.51.100.{i}", 1.5, False, 64] for i in range(1, hops + 1)],
    }


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(1000)
    return c


def make(clock: Clock, targets: list[str], **kw: object) -> tuple[MemoryDht, DhtPlane]:
    dht = MemoryDht(clock)
    kw.setdefault("chunk_size", 2)
    kw.setdefault("lease_seconds", 30)
    plane = run(DhtPlane.create(dht, "c1", targets, clock, **kw))  # type: ignore[arg-type]
    return dht, plane  # type: ignore[return-value]


def test_create_open_and_chunk_keys(clock: Clock) -> None:
    """PT of every chunk under the plane.py keys; the record read back by open()."""
    dht, plane = make(clock, ["203.0.113.1", "203.0.113.2", "203.0.113.3"])
    assert plane.chunk_count == 2
    assert chunk_key("pt", "c1", 1) in dht.values and campaign_key("c1") in dht.values
    again = run(DhtPlane.open(dht, "c1", clock))
    assert again.chunk_count == 2 and again.policy == "any"  # type: ignore[attr-defined]
    assert run(again.targets(1)) == ["203.0.113.3"]  # type: ignore[attr-defined]
    with pytest.raises(CampaignError, match="already exists"):
        run(DhtPlane.create(dht, "c1", ["203.0.113.9"], clock, chunk_size=2))
    with pytest.raises(CampaignError, match="not found"):
        run(DhtPlane.open(dht, "nope", clock))
    # A chunk too large for one DHT value is refused with a clear reason.
    big = [f"2001:db8:ffff:ffff:ffff:ffff:ffff:{i:x}" for i in range(60)]
    with pytest.raises(CampaignError, match="smaller chunk size"):
        run(DhtPlane.create(MemoryDht(clock), "big", big, clock, chunk_size=60))


def test_lease_is_a_ttl_and_expired_chunks_are_claimed_again(clock: Clock) -> None:
    """Under any: a claimed chunk is not offered; after the lease runs out it is."""
    _, plane = make(clock, ["203.0.113.1", "203.0.113.2"])
    a = run(plane.claim("a"))
    assert a is not None and a.chunk == 0  # type: ignore[attr-defined]
    assert run(plane.claim("b")) is None
    clock.advance(20)
    a = run(plane.renew(a))  # type: ignore[arg-type]
    clock.advance(20)  # 40 s after the claim, 20 s after the renewal: still held
    assert run(plane.claim("b")) is None
    clock.advance(11)  # the renewed lease ran out: monitor a failed
    b = run(plane.claim("b"))
    assert b is not None and b.chunk == 0  # type: ignore[attr-defined]
    status = run(plane.status())
    assert status["chunks_claimed"] == 1 and status["chunks"][0]["holders"] == ["b"]  # type: ignore[index]


def test_claim_race_is_decided_by_earliest_lease(clock: Clock) -> None:
    """Two writes that crossed: both read back, the earliest (t, monitor) holds the chunk."""
    dht, plane = make(clock, ["203.0.113.1", "203.0.113.2"])
    key = chunk_key("lease", "c1", 0)
    # Monitor "a" wrote its lease just before "b" looked, but "b" did not see it yet.
    dht.put(key, msgpack.packb({"k": "lease", "m": "a", "t": clock.seconds() - 1}), 30)
    hidden = {key}
    dht.visible = lambda k, v: k not in hidden
    seen_free = []
    original = dht.put

    def put(k: bytes, v: bytes, ttl: float | None = None) -> defer.Deferred[int]:
        if k == key:
            seen_free.append(True)
            hidden.clear()  # the read back sees everything
        return original(k, v, ttl)

    dht.put = put  # type: ignore[method-assign]
    assert run(plane.claim("b", [0])) is None  # b wrote, read back, lost to a
    assert seen_free == [True]
    status = run(plane.status())
    assert status["chunks"][0]["holders"] == ["a", "b"]  # type: ignore[index]


def test_commit_merges_pc_and_deduplicates_pd(clock: Clock) -> None:
    """PC deltas are unioned; PD split into parts; a chunk probed twice keeps one record each."""
    _, plane = make(clock, ["203.0.113.1", "203.0.113.2"], lease_seconds=30)
    a = run(plane.claim("a"))
    stop = GlobalStopSet(0)
    stop.add("198.51.100.1", "203.0.113.1")
    recs = [record("a", "203.0.113.1", 30), record("a", "203.0.113.2", 30)]
    assert run(plane.commit(a, stop, recs)) is True  # type: ignore[arg-type]
    # A second monitor probed the same chunk (a duplicate claim) and commits too.
    clock.advance(1)
    stop_b = GlobalStopSet(0)
    stop_b.add("198.51.100.9", "203.0.113.2")
    lease_b = type(a)("c1", 0, "b", clock.seconds() + 30, b"x")  # type: ignore[call-arg]
    run(plane.commit(lease_b, stop_b, [record("b", "203.0.113.2", 2, t=5.0)]))
    pc = run(plane.stop_set(0))
    assert set(pc.pairs()) == {  # type: ignore[attr-defined]
        ("198.51.100.1", "203.0.113.1"),
        ("198.51.100.9", "203.0.113.2"),
    }
    data = run(plane.data(0))
    assert data["duplicates"] == 1 and data["missing_parts"] == 0  # type: ignore[index]
    by_dst = {r["dst_addr"]: r for r in data["records"]}  # type: ignore[index]
    assert by_dst["203.0.113.2"]["monitor"] == "a"  # the first commit wins under any
    assert len(by_dst["203.0.113.1"]["hops"]) == 30
    status = run(plane.status())
    assert status["chunks_done"] == 1 and status["probes"] == 62  # type: ignore[index]
    # Under "any" the chunk is done: nobody claims it again.
    assert run(plane.claim("c", [0])) is None


def test_big_record_is_split_and_joined(clock: Clock) -> None:
    """A record larger than one DHT value is stored in fragments and read back whole."""
    _, plane = make(clock, ["2001:db8::1"], chunk_size=1)
    lease = run(plane.claim("a"))
    big = record("a", "2001:db8::1", 64)
    for hop in big["hops"]:
        hop[1] = f"2001:db8:aaaa:bbbb:cccc:dddd:eeee:{hop[0]:x}"
    assert len(msgpack.packb(big)) > VALUE_LIMIT
    run(plane.commit(lease, GlobalStopSet(0), [big]))  # type: ignore[arg-type]
    records, counts = run(plane.records())  # type: ignore[misc]
    assert len(records) == 1 and len(records[0].hops) == 64
    assert [h[0] for h in records[0].hops] == list(range(1, 65))
    assert counts == {"duplicates": 0, "missing_parts": 0, "malformed": 0}


def test_each_policy_and_max_holders(clock: Clock) -> None:
    """Under each every monitor does every chunk once; max_holders bounds holders at once."""
    _, plane = make(
        clock, ["203.0.113.1", "203.0.113.2", "203.0.113.3"], policy="each", max_holders=1
    )
    a = run(plane.claim("a", [0]))
    assert a is not None
    assert run(plane.claim("b", [0])) is None  # one holder at a time
    run(plane.commit(a, GlobalStopSet(0), []))  # type: ignore[arg-type]
    b = run(plane.claim("b", [0]))
    assert b is not None
    assert run(plane.claim("a", [0])) is None  # a did it already
    run(plane.commit(b, GlobalStopSet(0), []))  # type: ignore[arg-type]
    assert run(plane.complete(["a", "b"])) is False  # chunk 1 not done
    assert run(plane.claim("a")).chunk == 1  # type: ignore[union-attr]


def test_targets_added_removed_denied_while_running(clock: Clock) -> None:
    """Add fills the last chunk then grows; remove and deny take targets out; deny sticks."""
    _, plane = make(clock, ["203.0.113.1", "203.0.113.2", "203.0.113.3"])
    assert run(plane.add_targets(["203.0.113.4", "203.0.113.5", "203.0.113.1"])) == [1, 2]
    other = run(DhtPlane.open(plane.dht, "c1", clock))
    assert other.chunk_count == 3  # type: ignore[attr-defined]
    assert run(other.targets(2)) == ["203.0.113.5"]  # type: ignore[attr-defined]
    assert run(plane.remove_target("203.0.113.2")) is True
    assert run(plane.remove_target("203.0.113.2")) is False
    assert run(plane.targets(0)) == ["203.0.113.1"]
    run(plane.deny("203.0.113.4"))
    assert run(plane.targets(1)) == ["203.0.113.3"]
    assert run(plane.add_targets(["203.0.113.4"])) == []  # denied: not added again
    # Re-adding a removed (not denied) target brings it back in its chunk.
    assert run(plane.add_targets(["203.0.113.2"])) == [0]
    assert run(plane.targets(0)) == ["203.0.113.1", "203.0.113.2"]
    status = run(other.status())
    assert status["denied"] == ["203.0.113.4"] and status["targets"] == 4  # type: ignore[index]


def test_pc_of_removed_target_is_dropped_and_malformed_values_counted(clock: Clock) -> None:
    dht, plane = make(clock, ["203.0.113.1", "203.0.113.2"])
    lease = run(plane.claim("a"))
    stop = GlobalStopSet(0)
    stop.add("198.51.100.1", "203.0.113.1")
    stop.add("198.51.100.1", "203.0.113.2")
    run(plane.commit(lease, stop, []))  # type: ignore[arg-type]
    dht.put(chunk_key("pc", "c1", 0), b"\xc1garbage")
    dht.put(chunk_key("pd", "c1", 0), b"\x01")
    run(plane.remove_target("203.0.113.2"))
    pc = run(plane.stop_set(0))
    assert list(pc.pairs()) == [("198.51.100.1", "203.0.113.1")]  # type: ignore[attr-defined]
    run(plane.data(0))
    assert plane.malformed == 2


def test_merge_chunk_and_pack_parts() -> None:
    base = msgpack.unpackb(msgpack.packb({"chunk": 0, "targets": ["a", "b"], "removed": []}))
    changes = [
        {"k": "remove", "targets": ["a"], "t": 1.0},
        {"k": "add", "targets": ["a", "c"], "t": 2.0},
        {"k": "remove", "targets": "junk", "t": 3.0},
    ]
    merged = merge_chunk(0, [base, *changes])
    assert merged is not None and merged.active() == ["a", "b", "c"]
    assert merge_chunk(1, [base]) is None
    parts = pack_parts([{"x": "y" * 100}] * 50, 1000)
    assert len(parts) > 1 and all(len(p) <= 1000 for p in parts)
    assert sum(len(msgpack.unpackb(p)) for p in parts) == 50
    with pytest.raises(CampaignError):
        pack_parts([{"x": "y" * 2000}], 1000)


def test_memory_dht_limits(clock: Clock) -> None:
    """The fake keeps the overlay's value limits (too large, too many per key)."""
    from dnaagent.overlay.errors import StoreRefused

    dht = MemoryDht(clock, max_values_per_key=2)
    key = b"k" * 20
    run(_put_all(dht, key, [b"1", b"2", b"1"]))
    with pytest.raises(StoreRefused):
        run(_put_all(dht, key, [b"3"]))
    with pytest.raises(StoreRefused):
        run(_put_all(dht, b"j" * 20, [b"x" * 3000]))


async def _put_all(dht: MemoryDht, key: bytes, values: list[bytes]) -> None:
    for v in values:
        await dht.put(key, v, 10)


def test_campaign_through_real_overlay_nodes() -> None:
    """Three overlay nodes on an in-memory network: a claim by one is seen by the others,
    and records committed by one are exported by another."""
    clock = Clock()
    net = MemoryNetwork(clock, delay=lambda r: 0.01, seed=1)
    config = OverlayConfig(require_signatures=False)
    rng = random.Random(7)
    nodes = []
    for i in range(3):
        node = OverlayNode(Identity.unsigned(rng), clock, config=config, rng=random.Random(i))
        net.listen((f"203.0.113.{i + 1}", 4001), node)
        nodes.append(node)

    def wait(d: defer.Deferred) -> object:
        out: list[object] = []
        d.addBoth(out.append)
        for _ in range(2000):
            if out:
                break
            clock.advance(0.01)
        assert out, "timed out"
        if hasattr(out[0], "raiseException"):
            out[0].raiseException()  # type: ignore[union-attr]
        return out[0]

    for node in nodes[1:]:
        wait(node.join([("203.0.113.1", 4001)]))
    plane_a = wait(
        defer.ensureDeferred(
            DhtPlane.create(nodes[0], "c1", ["192.0.2.1", "192.0.2.2"], clock, chunk_size=1)
        )
    )
    plane_b = wait(defer.ensureDeferred(DhtPlane.open(nodes[1], "c1", clock)))
    lease = wait(defer.ensureDeferred(plane_a.claim("a", [0])))  # type: ignore[attr-defined]
    assert lease is not None
    # b looks at chunk 0 first and gets chunk 1: a's lease reached it.
    lease_b = wait(defer.ensureDeferred(plane_b.claim("b", [0, 1])))  # type: ignore[attr-defined]
    assert lease_b is not None and lease_b.chunk == 1  # type: ignore[attr-defined]
    stop = GlobalStopSet(0)
    stop.add("198.51.100.7", "192.0.2.1")
    wait(defer.ensureDeferred(plane_a.commit(lease, stop, [record("a", "192.0.2.1")])))  # type: ignore[attr-defined]
    plane_c = wait(defer.ensureDeferred(DhtPlane.open(nodes[2], "c1", clock)))
    records, counts = wait(defer.ensureDeferred(plane_c.records()))  # type: ignore[attr-defined,misc]
    assert [r.dst_addr for r in records] == ["192.0.2.1"] and counts["missing_parts"] == 0
    pc = wait(defer.ensureDeferred(plane_c.stop_set(0)))  # type: ignore[attr-defined]
    assert pc.contains("198.51.100.7", "192.0.2.1")  # type: ignore[attr-defined]
    status = wait(defer.ensureDeferred(plane_c.status()))  # type: ignore[attr-defined]
    assert status["chunks_done"] == 1 and status["chunks_claimed"] == 1  # type: ignore[index]


def test_malformed_pd_parts_are_dropped_and_counted(clock: Clock) -> None:
    """A PD part holding junk items (no hops list, bad TTLs) does not break the export."""
    from dnaagent.dts.dhtstore import part_key

    dht, plane = make(clock, ["203.0.113.1", "203.0.113.2"])
    lease = run(plane.claim("a"))
    run(plane.commit(lease, GlobalStopSet(0), [record("a", "203.0.113.1")]))  # type: ignore[arg-type]
    manifest = {"k": "pd", "m": "z", "c": "junk", "parts": 2, "records": 3, "t": 0.0}
    dht.put(chunk_key("pd", "c1", 0), msgpack.packb(manifest))
    bad = [
        {"dst_addr": "203.0.113.2", "hops": "x"},
        {"dst_addr": "203.0.113.2", "hops": [["a"]]},
        7,
    ]
    dht.put(part_key("c1", 0, "junk", 0), msgpack.packb(bad))
    records, counts = run(plane.records())  # type: ignore[misc]
    assert [r.dst_addr for r in records] == ["203.0.113.1"]
    assert counts["missing_parts"] == 1 and counts["malformed"] == 3
