"""Deny list, token buckets, per-target caps and the guard that combines them."""

from __future__ import annotations

import pytest
from twisted.internet import task

from dnaagent.guard import DenyList, Guard, GuardLimits, Refused, TargetCap, TokenBuckets
from dnaagent.guard.denylist import check_prefixes

A = b"\x0a" * 20
B = b"\x0b" * 20


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "169.254.1.1",
        "fe80::1",
        "224.0.0.1",
        "ff02::1",
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "::ffff:127.0.0.1",
    ],
)
def test_special_targets_denied_for_remote_requests(address) -> None:
    """Loopback, link-local, multicast, unspecified and broadcast of the serving host are denied."""
    deny = DenyList()
    assert deny.reason(address) is not None
    assert deny.allows(address, remote=False)


def test_configured_prefixes() -> None:
    """Configured prefixes deny their addresses for everybody; others pass."""
    deny = DenyList(["198.51.100.0/26", "2001:db8:bad::/48"])
    assert "198.51.100.0/26" in (deny.reason("198.51.100.7", remote=False) or "")
    assert deny.reason("2001:db8:bad::9") is not None
    assert deny.allows("198.51.100.64") and deny.allows("203.0.113.1")
    assert deny.reason("not-an-address") is not None
    assert check_prefixes(["192.0.2.0/24"]) is None
    assert "CIDR" in (check_prefixes(["192.0.2.0/33"]) or "")


def test_token_buckets_per_peer() -> None:
    """Each peer has its own bucket: a burst, then the rate."""
    buckets: TokenBuckets[bytes] = TokenBuckets(rate=1.0, burst=3)
    assert [buckets.take(A, 0.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.take(B, 0.0)
    assert buckets.wait(A, 0.0) == pytest.approx(1.0)
    assert not buckets.take(A, 0.5)
    assert buckets.take(A, 1.0)
    assert buckets.take(A, 10.0) and buckets.take(A, 10.0) and buckets.take(A, 10.0)
    assert not buckets.take(A, 10.0)


def test_token_buckets_bounded_memory() -> None:
    """Only max_keys peers are remembered."""
    buckets: TokenBuckets[int] = TokenBuckets(rate=1.0, burst=1, max_keys=10)
    for i in range(100):
        buckets.take(i, 0.0)
    assert len(buckets) == 10


def test_target_cap_sliding_window() -> None:
    """Probes to one target are capped per minute, whoever asks; the window slides."""
    cap: TargetCap[str] = TargetCap(limit=10, window=60.0)
    assert cap.take("t", 0.0, 5) and cap.take("t", 10.0, 5)
    assert not cap.take("t", 20.0, 1)
    assert cap.take("u", 20.0, 10)
    assert cap.used("t", 59.0) == 10
    assert cap.take("t", 60.0, 5) and not cap.take("t", 60.0, 1)
    assert cap.take("t", 70.0, 5)


def make_guard(**limits) -> tuple[Guard, task.Clock]:
    """A guard on a test clock."""
    clock = task.Clock()
    return Guard(GuardLimits(**limits), clock), clock


def test_guard_admits_and_counts() -> None:
    """An admitted request is counted and released."""
    guard, _ = make_guard()
    req = guard.admit("ping", {"target": "203.0.113.5"}, A, "198.51.100.10")
    assert guard.active["ping"] == 1 and guard.counters["admitted_ping"] == 1
    guard.release(req)
    assert guard.active["ping"] == 0
    assert guard.status()["limits"]["target_per_minute"] == 60


def test_guard_refusals_have_reasons() -> None:
    """Each check refuses with its own reason and is counted."""
    guard, clock = make_guard(
        peer_burst=2, peer_rate=0.1, target_per_minute=5, deny=("203.0.113.128/25",)
    )
    with pytest.raises(Refused, match="unknown_kind"):
        guard.admit("exec", {}, A, "198.51.100.10")
    with pytest.raises(Refused, match="denied_target"):
        guard.admit("ping", {"target": "203.0.113.200"}, A, "198.51.100.10")
    with pytest.raises(Refused, match="denied_target"):
        guard.admit("ping", {"target": "127.0.0.1"}, A, "198.51.100.10")
    guard.admit("ping", {"target": "203.0.113.5", "count": 3}, A, "198.51.100.10")
    with pytest.raises(Refused, match="target_rate"):
        guard.admit("ping", {"target": "203.0.113.5", "count": 3}, B, "198.51.100.11")
    guard.admit("ping", {"target": "203.0.113.7", "count": 1}, A, "198.51.100.10")
    with pytest.raises(Refused, match="peer_rate"):
        guard.admit("ping", {"target": "203.0.113.6"}, A, "198.51.100.10")
    clock.advance(10)
    guard.admit("ping", {"target": "203.0.113.6"}, A, "198.51.100.10")
    counters = guard.counters
    assert counters["refused_unknown_kind"] == 1 and counters["refused_denied_target"] == 2
    assert counters["refused_target_rate"] == 1 and counters["refused_peer_rate"] == 1


def test_guard_one_throughput_at_a_time() -> None:
    """Only one throughput test runs at once; the next is refused as busy."""
    guard, _ = make_guard()
    req = guard.admit("throughput", {"port": 5001}, A, "198.51.100.10")
    with pytest.raises(Refused, match="busy"):
        guard.admit("throughput", {"port": 5001}, B, "198.51.100.11")
    guard.release(req)
    guard.admit("throughput", {"port": 5001}, B, "198.51.100.11")


def test_guard_burst_from_several_peers() -> None:
    """A burst from many peers cannot exceed the per-target cap."""
    guard, clock = make_guard(target_per_minute=20, peer_burst=100, peer_rate=100.0)
    admitted = 0
    for i in range(50):
        peer = bytes([i]) * 20
        try:
            req = guard.admit("ping", {"target": "203.0.113.9", "count": 1}, peer, "192.0.2.1")
        except Refused:
            continue
        guard.release(req)
        admitted += 1
        clock.advance(0.1)
    assert admitted == 20
    assert guard.counters["refused_target_rate"] == 30


def test_local_requests_skip_special_denial_and_peer_rate() -> None:
    """The agent's own requests (remote=False) may target loopback and skip the peer bucket."""
    guard, _ = make_guard(peer_burst=1)
    for _ in range(3):
        guard.release(
            guard.admit("ping", {"target": "127.0.0.1", "count": 1}, A, "127.0.0.1", remote=False)
        )


def test_guard_status_shows_busiest_targets() -> None:
    """The status lists the targets with most probes in the window."""
    guard, clock = make_guard()
    guard.admit("ping", {"target": "203.0.113.5", "count": 5}, A, "198.51.100.10")
    guard.admit("ping", {"target": "203.0.113.6", "count": 1}, B, "198.51.100.11")
    assert guard.status()["busiest_targets"] == [["203.0.113.5", 5], ["203.0.113.6", 1]]
    clock.advance(61)
    assert guard.busiest() == []
