"""Regression test found by the simulator: a lookup must not end while its only
candidates are slow (soft-timed-out but still awaited)."""

from __future__ import annotations

from dnaagent.overlay.lookup import Lookup


def nid(i: int) -> bytes:
    """A 20-byte node ID from a small integer (high byte set so that it differs)."""
    return bytes([0x80]) + i.to_bytes(19, "big")


def test_single_slow_candidate_does_not_end_the_lookup() -> None:
    """A seed that is slow to answer (e.g. at join) still gets its answer used."""
    target = bytes(20)
    seed = nid(1)
    lk = Lookup(target, [(seed, "10.0.0.1", 4001)], k=20, alpha=3)
    (first,) = lk.start()
    assert first.node_id == seed
    assert lk.soft_timeout(seed) == []
    assert not lk.done
    others = [(nid(i), "10.0.0.2", 4000 + i) for i in range(2, 8)]
    nxt = lk.answered(seed, others)
    assert len(nxt) == 3 and not lk.done


def test_slow_candidate_that_fails_ends_a_lookup_with_nothing_else() -> None:
    """When the slow candidate finally fails, the lookup ends (empty result)."""
    seed = nid(1)
    lk = Lookup(bytes(20), [(seed, "10.0.0.1", 4001)], k=20, alpha=3)
    lk.start()
    lk.soft_timeout(seed)
    assert lk.failed(seed) == []
    assert lk.done and lk.result() == []
