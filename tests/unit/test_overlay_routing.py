"""Tests of the k-bucket routing table (dnaagent.overlay.routing)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dnaagent.overlay.routing import RoutingTable

OWN = bytes(20)


def _id(key: int) -> bytes:
    return key.to_bytes(20, "big")


def _addr(i: int) -> tuple[str, int]:
    return (f"192.0.2.{i % 250 + 1}", 4000 + i)


def _in_bucket(index: int, n: int) -> list[bytes]:
    """n distinct IDs of bucket ``index`` relative to OWN (all zero)."""
    return [_id((1 << index) | i) for i in range(n)]


def test_bucket_index_and_insertion() -> None:
    """Contacts land in the bucket of the highest differing bit; the own ID never."""
    t = RoutingTable(OWN, k=3)
    assert t.seen(_id(1), _addr(1), 0) is None
    assert t.seen(_id(1 << 159), _addr(2), 0) is None
    assert t.seen(OWN, _addr(3), 0) is None
    assert len(t) == 2
    assert t.bucket_index(1) == 0 and t.bucket_index(1 << 159) == 159
    b = t.buckets[159]
    assert b is not None and list(b.contacts) == [_id(1 << 159)]


def test_seen_moves_to_tail_and_updates_rtt_and_address() -> None:
    """A message moves the contact to the tail, resets failures, records RTT and address."""
    t = RoutingTable(OWN, k=3)
    a, b, c = _in_bucket(10, 3)
    for i, x in enumerate((a, b, c)):
        t.seen(x, _addr(i), float(i))
    t.failed(a)
    t.seen(a, ("2001:db8::1", 9), 5.0, rtt=0.2)
    bucket = t.buckets[10]
    assert bucket is not None and list(bucket.contacts) == [b, c, a]
    ca = t.get(a)
    assert ca is not None
    assert ca.failures == 0 and ca.srtt == 0.2 and ca.address == ("2001:db8::1", 9)
    assert ca.v6 and len(ca.record) == 38


def test_full_bucket_checks_only_quiet_oldest() -> None:
    """When full, the newcomer is a replacement; the oldest is pinged only if quiet."""
    t = RoutingTable(OWN, k=2, liveness_age=60)
    a, b, c, d = _in_bucket(20, 4)
    t.seen(a, _addr(1), 0)
    t.seen(b, _addr(2), 0)
    assert t.seen(c, _addr(3), 30) is None  # a was heard 30 s ago: no check
    check = t.seen(d, _addr(4), 70)
    assert check is not None and check.node_id == a
    assert t.seen(d, _addr(4), 71) is None  # one check per bucket at a time
    # a answers: it stays (moved to the tail), the check is over.
    t.seen(a, _addr(1), 72, rtt=0.05)
    t.check_done(a)
    bucket = t.buckets[20]
    assert bucket is not None
    assert list(bucket.contacts) == [b, a] and set(bucket.replacements) == {c, d}


def test_dead_oldest_is_replaced_by_lowest_rtt_replacement() -> None:
    """A failed liveness check evicts the contact; the fastest replacement takes its place."""
    t = RoutingTable(OWN, k=3, liveness_age=0)
    a, b, c, slow, fast, unknown = _in_bucket(30, 6)
    t.seen(a, _addr(1), 0)
    t.seen(b, _addr(2), 1)
    t.seen(c, _addr(6), 1)
    t.seen(slow, _addr(3), 2, rtt=0.3)
    t.seen(fast, _addr(4), 3, rtt=0.02)
    t.seen(unknown, _addr(5), 4)
    assert t.failed(a, evict=True)
    assert a not in t and fast in t and slow not in t
    bucket = t.buckets[30]
    assert bucket is not None and set(bucket.replacements) == {slow, unknown}


def test_failures_evict_only_after_max_even_when_replacement_waits() -> None:
    """A contact survives max_failures-1 failures in a row, replacement waiting or not."""
    t = RoutingTable(OWN, k=2, max_failures=2)
    a, b, c = _in_bucket(40, 3)
    t.seen(a, _addr(1), 0)
    t.seen(b, _addr(2), 0)
    assert not t.failed(a)
    assert t.failed(a)
    assert a not in t
    t.seen(a, _addr(1), 1)
    t.seen(c, _addr(3), 1)  # bucket full again: c waits as a replacement
    assert not t.failed(b)  # one failure is not enough, even with c waiting
    t.seen(b, _addr(2), 2)  # an answer resets the count
    assert not t.failed(b)
    assert t.failed(b)
    assert c in t and b not in t
    t.seen(a, _addr(1), 3)  # a waits as a replacement again
    assert t.failed(c, evict=True)  # evict=True (failed liveness check) is immediate
    assert a in t


def test_remove_and_find_address() -> None:
    """remove() drops contacts and replacements; find_address() finds by address."""
    t = RoutingTable(OWN, k=1)
    a, b = _in_bucket(50, 2)
    t.seen(a, _addr(1), 0)
    t.seen(b, _addr(2), 0)
    found = t.find_address(_addr(1))
    assert found is not None and found.node_id == a
    assert t.remove(b)  # a replacement
    assert t.remove(a)
    assert not t.remove(a)
    assert len(t) == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40))
def test_closest_matches_brute_force(seed: int, n: int) -> None:
    """closest() returns exactly the n XOR-closest contacts, ordered or not."""
    rng = random.Random(seed)
    own = rng.randbytes(20)
    t = RoutingTable(own, k=8)
    for i in range(300):
        t.seen(rng.randbytes(20), _addr(i), 0)
    target = rng.getrandbits(160)
    exclude = next(iter(t)).node_id
    expected = sorted((c for c in t if c.node_id != exclude), key=lambda c: c.key ^ target)[:n]
    got = t.closest(target, n, exclude=exclude)
    assert [c.node_id for c in got] == [c.node_id for c in expected]
    unordered = t.closest(target, n, exclude=exclude, ordered=False)
    assert {c.node_id for c in unordered} == {c.node_id for c in expected}


def test_refresh_bookkeeping() -> None:
    """Idle buckets from the nearest non-empty one outwards are stale; lookups touch them."""
    t = RoutingTable(OWN, k=4, now=0)
    t.seen(_id(1 << 100), _addr(1), 0)
    assert t.stale_buckets(10, 3600) == []
    stale = t.stale_buckets(3600, 3600)
    assert stale == list(range(100, 160))
    t.touch(1 << 150, 3600)
    assert 150 not in t.stale_buckets(3600, 3600)
    rng = random.Random(1)
    for i in (0, 5, 100, 159):
        key = int.from_bytes(t.random_id_in_bucket(i, rng), "big")
        assert t.bucket_index(key) == i
