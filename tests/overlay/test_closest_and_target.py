"""closest() stays exact while contacts come and go; the searched node is asked at once."""

from __future__ import annotations

import random

import pytest

from dnaagent.overlay.lookup import ASKED, NEW, Lookup
from dnaagent.overlay.routing import RoutingTable


def _brute(table: RoutingTable, target: int, n: int, exclude: bytes | None) -> list[bytes]:
    ids = [c.node_id for c in table if c.node_id != exclude]
    return sorted(ids, key=lambda i: int.from_bytes(i, "big") ^ target)[:n]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_closest_exact_through_inserts_evictions_and_exclusion(seed: int) -> None:
    """The per-bucket ID cache follows every change of a bucket's members."""
    rng = random.Random(seed)
    own = rng.randbytes(20)
    table = RoutingTable(own, k=4, max_failures=1)
    known: list[bytes] = []
    for step in range(3000):
        r = rng.random()
        if r < 0.6 or not known:
            node_id = rng.randbytes(20)
            # Some IDs near the own one, so that the small buckets fill too.
            if rng.random() < 0.5:
                node_id = int.from_bytes(own, "big") ^ rng.getrandbits(rng.randrange(1, 24))
                node_id = node_id.to_bytes(20, "big")
            table.seen(node_id, ("192.0.2.7", 4001), float(step))
            known.append(node_id)
        elif r < 0.8:
            table.failed(rng.choice(known))
        elif r < 0.9:
            table.remove(rng.choice(known))
        else:
            # A known contact heard from again: moved to the tail, same members.
            victim = rng.choice(known)
            if victim in table:
                table.seen(victim, ("192.0.2.7", 4001), float(step))
        if step % 50 == 0:
            target = rng.getrandbits(160)
            members = [c.node_id for c in table]
            exclude = rng.choice(members) if members and rng.random() < 0.5 else None
            for n in (1, 5, 20):
                got = [c.node_id for c in table.closest(target, n, exclude)]
                assert got == _brute(table, target, n, exclude)
                unordered = table.closest(target, n, exclude, ordered=False)
                assert sorted(c.node_id for c in unordered) == sorted(got)


def _rec(key: int) -> tuple[bytes, str, int]:
    return (key.to_bytes(20, "big"), "192.0.2.1", 4000 + key % 1000)


def test_searched_node_asked_at_once_with_alpha_in_flight() -> None:
    """A NODES answer naming the target gets the target asked without waiting for a slot."""
    target = 1 << 100
    seeds = [_rec(target ^ (1 << b)) for b in (150, 151, 152, 153)]
    lk = Lookup(target.to_bytes(20, "big"), seeds, alpha=3, exclude=b"\xff" * 20)
    first = lk.start()
    assert len(first) == 3 and lk.active == 3
    # One answers and names the target and a closer peer: a slot frees and
    # the target is asked on top of it.
    nxt = lk.answered(first[0].node_id, [_rec(target), _rec(target ^ 1)])
    asked = {c.node_id for c in nxt}
    assert target.to_bytes(20, "big") in asked
    assert lk.candidates[target.to_bytes(20, "big")].state == ASKED
    # The target took the freed slot: the closer peer waits for the next one.
    assert lk.active == 3
    assert lk.candidates[(target ^ 1).to_bytes(20, "big")].state == NEW


def test_searched_node_asked_even_when_no_slot_is_free() -> None:
    """The target appearing in an answer is asked although alpha requests stay in flight."""
    target = 7 << 80
    seeds = [_rec(target ^ (1 << b)) for b in (150, 151, 152, 153, 154)]
    lk = Lookup(target.to_bytes(20, "big"), seeds, alpha=1, exclude=b"\xff" * 20)
    (first,) = lk.start()
    assert lk.active == 1
    # A late answer of a peer already given up (SLOW) names the target while the
    # one slot is taken by another request.
    (second,) = lk.soft_timeout(first.node_id)
    assert second.state == ASKED and lk.active == 1
    nxt = lk.answered(first.node_id, [_rec(target)])
    tgt = lk.candidates[target.to_bytes(20, "big")]
    assert tgt in nxt and tgt.state == ASKED
    assert lk.active == 2
    # When the target answers the lookup is found and done.
    assert lk.answered(tgt.node_id, []) == []
    assert lk.found and lk.done
    assert second.state == ASKED
