"""Tests of clusters seen from a group: creation, band and bias tests, merge, split."""

from __future__ import annotations

import numpy as np

from dnaagent.xbac.cluster import ClusterParams, ClusterTable, band_test, bias_test, similar


def prof(level: float, observers: int = 2, points: int = 6) -> np.ndarray:
    """A flat profile: every observer sees ``level`` at every point."""
    return np.full((observers, points), level)


def test_band_and_bias_tests() -> None:
    """Close profiles pass both tests; a bias or many out-of-band points fail."""
    p = ClusterParams()
    a = prof(0.100)
    assert similar(a, prof(0.105), p)
    assert not bias_test(a, prof(0.130), p)
    b = a.copy()
    b[0, :3] = 0.300  # a quarter of the points far outside the band, same mean as a spike
    assert not band_test(a, b, p)
    few = np.full((1, 2), 0.1)
    assert not similar(few, few, p)  # too few common points to decide
    assert not similar(a, np.full_like(a, np.nan), p)


def test_first_contact_creates_a_cluster_and_groups_are_atomic() -> None:
    """Each new host gets its own cluster; a host of a mapped group joins that group's cluster."""
    t = ClusterTable(seed=1)
    c1 = t.observe("x", group="G")
    c2 = t.observe("y")
    assert c1 != c2 and len(t.clusters) == 2
    assert t.observe("x2", group="G") == c1
    assert t.cluster_of("unknown", group="G").cid == c1
    assert t.cluster_of("unknown") is None


def test_merge_and_split_follow_the_profiles() -> None:
    """Similar hosts merge into one cluster; when one drifts, a split separates it."""
    levels = {"a": 0.100, "b": 0.104, "c": 0.300, "d": 0.101}
    t = ClusterTable(ClusterParams(protection=10.0), seed=2)
    for h in levels:
        t.observe(h, group="Gd" if h == "d" else None)
    for now in (0.0, 11.0, 22.0):  # a merged cluster is protected for 10 s
        t.merge_pass(lambda h: prof(levels[h]), now=now)
    assert len(t.clusters) == 2
    assert t.host_cluster["a"] == t.host_cluster["b"] == t.host_cluster["d"] != t.host_cluster["c"]
    assert t.group_cluster["Gd"] == t.host_cluster["d"]
    levels["b"] = 0.200
    guard = max(c.protected_until for c in t.clusters.values())
    assert t.split_pass(lambda h: prof(levels[h]), now=guard - 1) == 0  # still protected
    assert t.split_pass(lambda h: prof(levels[h]), now=guard + 1) == 1
    assert t.host_cluster["a"] == t.host_cluster["d"] != t.host_cluster["b"]
    assert t.group_cluster["Gd"] == t.host_cluster["d"]
