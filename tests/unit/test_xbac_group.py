"""Tests of the grouping criterion, Meridian rings and closest-node discovery."""

from __future__ import annotations

import random

from dnaagent.xbac.group import (
    GroupingParams,
    MeridianRings,
    assign_groups,
    closest_node,
    meets_grouping_criterion,
    ring_index,
)


def test_grouping_criterion_thresholds() -> None:
    """Leader distance, relative and absolute neighbour differences each decide."""
    leader_to = {"n1": 0.100, "n2": 0.300}
    assert meets_grouping_criterion(0.010, leader_to, {"n1": 0.103, "n2": 0.310})
    # Too far from the leader.
    assert not meets_grouping_criterion(0.020, leader_to, {"n1": 0.100, "n2": 0.300})
    # 8 % relative difference to n1 (beyond the 5 ms tolerance).
    assert not meets_grouping_criterion(0.010, leader_to, {"n1": 0.108, "n2": 0.300})
    # 4.9 % of 0.5 s is 24.5 ms: passes the relative test but not the absolute one.
    assert not meets_grouping_criterion(0.010, {"n": 0.500}, {"n": 0.5245})
    # A neighbour the host did not measure fails the test.
    assert not meets_grouping_criterion(0.010, leader_to, {"n1": 0.100})
    # Within the tolerance a large relative difference passes (resolution).
    assert meets_grouping_criterion(0.0, {"n": 0.010}, {"n": 0.015})
    loose = GroupingParams(relative=0.1, tolerance=0.0)
    assert meets_grouping_criterion(0.010, leader_to, {"n1": 0.108, "n2": 0.300}, loose)


def test_ring_index_grows_exponentially() -> None:
    """Ring i holds distances in [base 2^(i-1), base 2^i)."""
    assert [ring_index(d) for d in (0.0005, 0.001, 0.0019, 0.002, 0.0041, 0.1)] == [
        0,
        1,
        1,
        2,
        3,
        7,
    ]


def test_rings_keep_a_bounded_number_per_ring_and_select_by_beta() -> None:
    """A full ring refuses peers; candidates are the peers within (1 +- beta) d."""
    r = MeridianRings(per_ring=2)
    assert r.add("a", 0.0100) and r.add("b", 0.0110)
    assert not r.add("c", 0.0120)
    assert r.add("d", 0.050) and r.add("e", 0.200)
    assert sorted(r.candidates(0.040, beta=0.5)) == ["d"]
    assert sorted(r.candidates(0.020, beta=0.5)) == ["a", "b"]
    r.remove("a")
    assert r.add("c", 0.0120)


def test_closest_node_walks_a_line_to_the_target() -> None:
    """On points of a line, Meridian routing reaches the node nearest to the target."""
    pos = {i: float(i) * 0.01 for i in range(40)}
    rings = {}
    for i in pos:
        rings[i] = MeridianRings(per_ring=4)
        for j in random.Random(i).sample(sorted(pos), 39):
            if j != i:
                rings[i].add(j, abs(pos[i] - pos[j]))
    target = 0.2525
    node, d, route = closest_node(0, rings, lambda n: abs(pos[n] - target), beta=0.5)
    assert node == 25 and d == min(abs(p - target) for p in pos.values())
    assert route[0] == 0 and len(route) <= 8


def test_assign_groups_joins_colocated_hosts() -> None:
    """Hosts of one site form one group; distant sites found groups of their own."""
    sites = {h: h // 3 for h in range(9)}
    xy = {0: (0.0, 0.0), 1: (0.1, 0.0), 2: (0.0, 0.15)}

    def dist(a: int, b: int) -> float:
        if sites[a] == sites[b]:
            return 0.0 if a == b else 0.002
        (x1, y1), (x2, y2) = xy[sites[a]], xy[sites[b]]
        return ((x1 - x2) ** 2 + (y1 - y2) ** 2) ** 0.5

    groups = assign_groups(range(9), dist)
    by_site = {s: {groups[h] for h in range(9) if sites[h] == s} for s in range(3)}
    assert all(len(g) == 1 for g in by_site.values())
    assert len(set(groups.values())) == 3
