"""Tests of the lookup state machine (dnaagent.overlay.lookup)."""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.internet.task import Clock

from dnaagent.overlay.lookup import ANSWERED, ASKED, FAILED, SLOW, Candidate, Lookup
from dnaagent.overlay.routing import RoutingTable


def _id(key: int) -> bytes:
    return key.to_bytes(20, "big")


def _rec(key: int) -> tuple[bytes, str, int]:
    return (_id(key), "192.0.2.1", 4000 + key % 1000)


class World:
    """A static overlay of n nodes, each with a filled routing table."""

    def __init__(self, n: int, seed: int = 1, k: int = 20) -> None:
        rng = random.Random(seed)
        self.ids = [rng.randbytes(20) for _ in range(n)]
        self.tables = {}
        for i, own in enumerate(self.ids):
            t = RoutingTable(own, k=k)
            for j, other in enumerate(self.ids):
                if j != i:
                    t.seen(other, ("192.0.2.1", 4000 + j), 0)
            self.tables[own] = t

    def answer(self, node_id: bytes, target: bytes, k: int = 20) -> list[tuple[bytes, str, int]]:
        """What ``node_id`` returns to FIND_NODE(target)."""
        t = self.tables[node_id]
        closest = t.closest(int.from_bytes(target, "big"), k, ordered=False)
        return [(c.node_id, c.address[0], c.address[1]) for c in closest]

    def true_closest(self, target: bytes, k: int, exclude: bytes) -> list[bytes]:
        """The k closest IDs by global knowledge."""
        key = int.from_bytes(target, "big")
        others = [i for i in self.ids if i != exclude]
        return sorted(others, key=lambda i: int.from_bytes(i, "big") ^ key)[:k]


def _start(world: World, origin: bytes, target: bytes, **kw: object) -> Lookup:
    seeds = world.answer(origin, target)
    return Lookup(target, seeds, exclude=origin, **kw)  # type: ignore[arg-type]


def test_alpha_in_flight_and_asynchronous_progress() -> None:
    """alpha requests start; each finished one starts exactly one more, without rounds."""
    world = World(300)
    origin, target = world.ids[0], random.Random(2).randbytes(20)
    lk = _start(world, origin, target, alpha=3)
    first = lk.start()
    assert len(first) == 3 and lk.active == 3
    assert all(c.state == ASKED for c in first)
    nxt = lk.answered(first[0].node_id, world.answer(first[0].node_id, target))
    assert len(nxt) == 1 and lk.active == 3  # two still out, one new: no waiting for a round


def test_completes_with_the_true_k_closest() -> None:
    """Answering in random order, the lookup ends with the globally k closest nodes."""
    world = World(400, seed=3)
    rng = random.Random(4)
    for _ in range(5):
        origin, target = rng.choice(world.ids), rng.randbytes(20)
        lk = _start(world, origin, target, k=20, alpha=3)
        out = list(lk.start())
        while out:
            c = out.pop(rng.randrange(len(out)))
            out.extend(lk.answered(c.node_id, world.answer(c.node_id, target)))
        assert lk.done and not lk.found
        got = [c.node_id for c in lk.result()]
        assert got == world.true_closest(target, 20, origin)
        # Far fewer than all nodes were asked.
        assert lk.queries < 80


def test_node_lookup_ends_when_the_target_answers() -> None:
    """A node lookup ends as soon as the searched node answers, even with requests out."""
    world = World(200, seed=5)
    origin, target = world.ids[0], world.ids[1]
    lk = _start(world, origin, target)
    out = lk.start()
    while not lk.done:
        asked = [c for c in out if c.node_id == target]
        c = asked[0] if asked else out[0]
        out.remove(c)
        out.extend(lk.answered(c.node_id, world.answer(c.node_id, target)))
    assert lk.found
    assert lk.result()[0].node_id == target
    # Answers arriving after the end change nothing.
    for c in out:
        assert lk.answered(c.node_id, world.answer(c.node_id, target)) == []


def test_greeting_of_the_searched_node_ends_a_node_lookup() -> None:
    """reached(): the searched node, not yet a candidate, is first and the lookup ends."""
    world = World(200, seed=5)
    origin = world.ids[0]
    target = next(i for i in world.ids[1:] if i not in {c[0] for c in world.answer(origin, i)})
    lk = _start(world, origin, target)
    out = lk.start()
    assert target not in lk.candidates and lk.active == len(out)
    lk.reached("192.0.2.9", 4009)
    assert lk.done and lk.found and lk.active == len(out)
    first = lk.result()[0]
    assert first.node_id == target and first.address == ("192.0.2.9", 4009)
    # The requests still out change nothing.
    for c in out:
        assert lk.answered(c.node_id, world.answer(c.node_id, target)) == []
    # A value lookup is not ended by a greeting.
    vl = _start(world, origin, target, find_value=True)
    vl.start()
    vl.reached("192.0.2.9", 4009)
    assert not vl.done


def test_greeting_while_the_searched_node_is_asked_frees_its_slot() -> None:
    """The searched node greets while the asker's own request to it is out."""
    world = World(200, seed=5)
    origin, target = world.ids[0], world.ids[1]
    lk = Lookup(target, [_rec(int.from_bytes(target, "big"))], exclude=origin)
    out = lk.start()
    assert [c.node_id for c in out] == [target] and lk.active == 1
    lk.reached("192.0.2.1", 4000)
    assert lk.done and lk.found and lk.active == 0
    assert lk.answered(target, []) == []


def test_soft_timeout_frees_the_slot_and_late_answer_counts() -> None:
    """A slow request lets another start; its late answer is still used."""
    seeds = [_rec(k) for k in (1, 2, 3, 4, 5)]
    lk = Lookup(_id(0xFFFF << 100), seeds, k=3, alpha=2, exclude=_id(0))
    a, b = lk.start()
    nxt = lk.soft_timeout(a.node_id)
    assert a.state == SLOW and len(nxt) == 1 and lk.active == 2
    lk.answered(a.node_id, [_rec(6)])
    assert a.state == ANSWERED and _id(6) in lk.candidates
    assert lk.soft_timeout(a.node_id) == []  # no effect on an answered candidate


def test_failures_are_excluded_and_lookup_still_ends() -> None:
    """Failed candidates leave the window; the lookup ends with those that answered."""
    seeds = [_rec(k) for k in range(1, 8)]
    lk = Lookup(_id(0), seeds, k=3, alpha=3, exclude=_id(0), find_value=True)
    out = list(lk.start())
    while out:
        c = out.pop(0)
        if int.from_bytes(c.node_id, "big") % 2:
            out.extend(lk.failed(c.node_id))
        else:
            out.extend(lk.answered(c.node_id, []))
    assert lk.done
    assert [int.from_bytes(c.node_id, "big") for c in lk.result()] == [2, 4, 6]
    assert all(lk.candidates[_id(k)].state == FAILED for k in (1, 3, 5))


def test_slow_target_is_waited_for() -> None:
    """The searched node keeps its place when slow: the lookup waits for it."""
    target = _id(1 << 40)
    lk = Lookup(target, [(target, "192.0.2.1", 1), _rec(5)], k=2, alpha=2, exclude=_id(0))
    t, other = sorted(lk.start(), key=lambda c: c.dist)
    assert t.node_id == target
    lk.soft_timeout(target)
    lk.answered(other.node_id, [])
    assert not lk.done
    lk.failed(target)
    assert lk.done and not lk.found


def test_value_found_and_cache_target() -> None:
    """A value ends the lookup; the closest node that lacked it is where to cache."""
    seeds = [_rec(k) for k in (8, 9, 10, 11)]
    lk = Lookup(_id(0), seeds, k=4, alpha=3, find_value=True, exclude=_id(99))
    first = sorted(lk.start(), key=lambda c: c.dist)
    lk.answered(first[0].node_id, [])
    lk.found_value(first[2].node_id, [[b"v", 60]])
    assert lk.done and lk.found and lk.value == [[b"v", 60]]
    cache = lk.cache_at
    assert cache is not None and cache.node_id == first[0].node_id


def test_prefers_low_rtt_among_equally_good_candidates() -> None:
    """Candidates sharing the same prefix length with the target are asked fastest first."""
    near_slow = _id((1 << 20) | 1)
    near_fast = _id((1 << 20) | 2)
    far = _id(1 << 30)
    rtts = {near_slow: 0.5, near_fast: 0.01, far: 0.001}
    lk = Lookup(
        _id(0),
        [(near_slow, "h", 1), (near_fast, "h", 2), (far, "h", 3)],
        alpha=1,
        exclude=_id(7),
        rtt_hint=rtts.get,
    )
    assert [c.node_id for c in lk.start()] == [near_fast]
    assert [c.node_id for c in lk.answered(near_fast, [])] == [near_slow]
    assert [c.node_id for c in lk.answered(near_slow, [])] == [far]


def _narrow(rtts: dict[bytes, float], radius: int | None = 1 << 25) -> Lookup:
    ids = list(rtts)
    return Lookup(
        _id(0),
        [(i, "h", n) for n, i in enumerate(ids)],
        k=4,
        alpha=3,
        find_value=True,
        exclude=_id(99),
        rtt_hint=rtts.get,
        narrow=radius,
    )


NEAR, NEAR_FAST, OUTSIDE_FASTEST, FAR = (_id(1 << 8), _id(1 << 20), _id(1 << 26), _id(1 << 30))
RTTS = {NEAR: 0.2, NEAR_FAST: 0.02, OUTSIDE_FASTEST: 0.001, FAR: 0.1}


def test_narrow_value_lookup_asks_the_fastest_node_within_the_radius_only() -> None:
    """One request, to the lowest-RTT candidate inside the radius; a value ends it."""
    lk = _narrow(RTTS)
    assert [c.node_id for c in lk.start()] == [NEAR_FAST]
    assert lk.active == 1 and lk.width == 1
    assert lk.found_value(NEAR_FAST, [[b"v", 60]]) == []
    assert lk.done and lk.found and lk.queries == 1


def test_narrow_value_lookup_widens_to_alpha_after_an_answer_without_value() -> None:
    """No value at the first node: the lookup goes on with alpha requests in flight."""
    lk = _narrow(RTTS)
    lk.start()
    nxt = lk.answered(NEAR_FAST, [])
    assert len(nxt) == 3 and lk.width == 3 and lk.active == 3
    assert NEAR_FAST not in [c.node_id for c in nxt]


def test_narrow_value_lookup_widens_when_its_request_is_late_or_fails() -> None:
    """A soft timeout or a failure of the single request opens the other slots."""
    lk = _narrow(RTTS)
    lk.start()
    assert len(lk.soft_timeout(NEAR_FAST)) == 3 and lk.width == 3
    lk = _narrow(RTTS)
    lk.start()
    assert len(lk.failed(NEAR_FAST)) == 3 and lk.width == 3


def test_narrow_value_lookup_without_candidate_inside_takes_the_best_ranked() -> None:
    """Nothing within the radius: the one request goes to the best by prefix, then RTT."""
    lk = _narrow(RTTS, radius=1 << 4)
    assert [c.node_id for c in lk.start()] == [NEAR]
    wide = _narrow(RTTS, radius=None)
    assert len(wide.start()) == 3 and wide.width == 3


def test_empty_lookup_is_done_at_once() -> None:
    """Without any candidate the lookup is done with an empty result."""
    lk = Lookup(_id(1), [], exclude=_id(0))
    assert lk.start() == [] and lk.done and lk.result() == []


def test_packed_hosts_are_decoded_when_asked() -> None:
    """Candidates from NODES answers keep the host packed until they are asked."""
    c = Candidate(_id(1), 1, b"\xc0\x00\x02\x07", 4001, 0.0)
    assert c.address == ("192.0.2.7", 4001)
    c6 = Candidate(_id(1), 1, b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01", 4001, 0.0)
    assert c6.address == ("2001:db8::1", 4001)


def _drive(
    clock: Clock,
    lk: Lookup,
    delay: Callable[[bytes], float | None],
    answer: Callable[[bytes], list[tuple[bytes, str, int]]],
    soft: float,
    hard: float,
) -> list[float]:
    """Run a lookup on a clock: answers after delay(node) seconds (None: never)."""
    done_at: list[float] = []

    def check() -> None:
        if lk.done and not done_at:
            done_at.append(clock.seconds())

    def send(cands: list[Candidate]) -> None:
        for c in cands:
            d = delay(c.node_id)
            nid = c.node_id
            if d is not None:
                clock.callLater(d, lambda nid=nid: (send(lk.answered(nid, answer(nid))), check()))
            clock.callLater(soft, lambda nid=nid: (send(lk.soft_timeout(nid)), check()))
            clock.callLater(hard, lambda nid=nid: (send(lk.failed(nid)), check()))
        check()

    send(lk.start())
    clock.advance(0)
    for _ in range(1000):
        clock.advance(0.005)
    return done_at


def test_on_a_clock_the_lookup_does_not_wait_for_slow_peers() -> None:
    """With a clock: a fast path to the target ends the lookup long before slow peers answer."""
    target = _id(1 << 10)
    fast, slow1, slow2 = _id(1 << 40), _id(1 << 41), _id(1 << 42)
    delays = {fast: 0.010, slow1: 0.8, slow2: 0.8, target: 0.010}
    answers = {fast: [(target, "192.0.2.9", 1)], slow1: [], slow2: [], target: []}
    lk = Lookup(
        target,
        [(fast, "h", 1), (slow1, "h", 2), (slow2, "h", 3)],
        alpha=3,
        exclude=_id(0),
    )
    done_at = _drive(Clock(), lk, delays.get, answers.__getitem__, soft=0.3, hard=2.0)
    assert lk.found
    assert done_at and abs(done_at[0] - 0.020) < 1e-9


def test_on_a_clock_soft_timeouts_route_around_a_dead_peer() -> None:
    """With a clock: a dead peer costs one soft timeout, not a hard one."""
    target = _id(1 << 10)
    dead, alive, other = _id(1 << 20), _id(1 << 40), _id(1 << 41)
    delays = {dead: None, alive: 0.05, other: 0.05, target: 0.05}
    answers = {alive: [(target, "h", 9)], other: [], target: []}
    lk = Lookup(target, [(dead, "h", 1), (alive, "h", 2), (other, "h", 3)], alpha=1, exclude=_id(0))
    done_at = _drive(Clock(), lk, delays.get, answers.__getitem__, soft=0.2, hard=5.0)
    assert lk.found
    # dead (0.2 s soft timeout) -> alive (0.05) -> target (0.05)
    assert done_at and abs(done_at[0] - 0.30) < 1e-9


def test_converged_lookup_asks_the_rest_of_the_window_at_once() -> None:
    """Once the alpha closest have answered, every new candidate of the window is asked."""
    # Twenty contacts at distances 2**1 .. 2**20 from the target: the ones
    # asked first are the closest, and none of them knows anyone closer.
    target = _id(1 << 100)
    contacts = [(_id((1 << 100) ^ (1 << i)), "192.0.2.1", 4000 + i) for i in range(1, 21)]
    lk = Lookup(target, contacts, k=20, alpha=3, exclude=_id(0))
    out = lk.start()
    assert len(out) == 3 and not lk.converged
    nxt = lk.answered(out[0].node_id, [])
    assert len(nxt) == 1  # one finished, one more: alpha at a time
    nxt = lk.answered(out[1].node_id, [])
    assert len(nxt) == 1 and not lk.converged
    rest = lk.answered(out[2].node_id, [])
    assert lk.converged
    # The three closest answered, two are out: the other 15 are asked now.
    assert len(rest) == 15 and lk.active == 17
    assert all(c.state == ASKED for c in rest)
    # A late answer that names a node closer than all of them: asked at once.
    closer = _id((1 << 100) ^ 1)
    assert [c.node_id for c in lk.answered(rest[-1].node_id, [(closer, "192.0.2.2", 1)])] == [
        closer
    ]


def test_last_step_shortens_a_key_lookup_on_a_clock() -> None:
    """On a clock, a key lookup in 400 nodes ends in fewer round trips and asks no more nodes."""
    world = World(400, seed=11)
    rng = random.Random(12)
    times, queries = [], []
    for _ in range(10):
        origin, target = rng.choice(world.ids), rng.randbytes(20)
        lk = _start(world, origin, target, k=20, alpha=3)
        done_at = _drive(
            Clock(),
            lk,
            lambda _nid: 0.1,
            lambda nid, target=target: world.answer(nid, target),  # type: ignore[misc]
            soft=1.0,
            hard=2.0,
        )
        assert lk.done and [c.node_id for c in lk.result()] == world.true_closest(
            target, 20, origin
        )
        times.append(done_at[0])
        queries.append(lk.queries)
    # Alpha at a time, the 20 of the window alone take 7 round trips of 0.1 s.
    assert max(times) <= 0.45, times
    assert max(queries) <= 30, queries
