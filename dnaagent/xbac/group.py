"""Pure pieces of group formation: the mOverlay grouping criterion and Meridian rings.

A new host joins the group whose leader it is close to *and* which sees the rest of the
network as it does (thesis §4.4, §5.2.2): its distances to the leader's neighbour leaders
must match the leader's own. Finding that leader uses Meridian's closest-node discovery
(thesis §2.4.2): peers kept in rings of exponentially growing radii; a query at distance
``d`` from the target probes the ring members within ``[(1 - beta) d, (1 + beta) d]`` and moves
to the closest one until no closer peer exists. All distances are in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GroupingParams:
    """Thresholds of the grouping criterion (Appendix C names in the comments)."""

    #: BootstrapRelativeErrorToNeighborThreshold
    relative: float = 0.05
    #: BootstrapAbsoluteErrorToNeighborThreshold (20 ms)
    absolute: float = 0.020
    #: BootstrapDistanceToLeaderThreshold (20 ms)
    leader_distance: float = 0.020
    #: BootstrapAbsoluteErrorToNeighborTolerance (5 ms): differences up to this always pass,
    #: so that measurement resolution alone cannot fail the relative test.
    tolerance: float = 0.005
    #: DefaultNumberOfBootstrapNeighbours
    neighbours: int = 3


def meets_grouping_criterion(
    to_leader: float,
    leader_to: Mapping[Hashable, float],
    host_to: Mapping[Hashable, float],
    params: GroupingParams | None = None,
) -> bool:
    """Whether a new host belongs to the group of a leader (mOverlay criterion + leader distance).

    ``to_leader`` is the host's distance to the leader; ``leader_to`` and ``host_to`` map
    each neighbour (another group's leader) to its distance from the leader and from the new
    host. Every neighbour the leader knows must be measured by the host and pass both the
    relative and the absolute test (or differ by no more than the tolerance). With no
    neighbours, the distance to the leader decides alone.
    """
    p = params or GroupingParams()
    if not math.isfinite(to_leader) or to_leader < 0 or to_leader >= p.leader_distance:
        return False
    for n, dl in leader_to.items():
        dh = host_to.get(n)
        if dh is None or not (math.isfinite(dl) and math.isfinite(dh)):
            return False
        diff = abs(dl - dh)
        if diff <= p.tolerance:
            continue
        base = max(dl, dh)
        if diff >= p.absolute or (base > 0 and diff / base >= p.relative):
            return False
    return True


def ring_index(distance: float, base: float = 0.001, factor: float = 2.0) -> int:
    """Meridian ring of a peer at ``distance``.

    Ring 0 holds ``[0, base)``, ring i holds ``[base f^(i-1), base f^i)``.
    """
    if distance < base:
        return 0
    return 1 + int(math.floor(math.log(distance / base, factor) + 1e-12))


class MeridianRings:
    """Peers of one node sorted into concentric rings, at most ``per_ring`` per ring.

    When a ring is full, a new peer replaces nobody (first come, first kept); ``remove`` frees
    a place. Distances are the node's own measurements.
    """

    def __init__(self, per_ring: int = 8, base: float = 0.001, factor: float = 2.0) -> None:
        if per_ring < 1 or base <= 0 or factor <= 1:
            raise ValueError("per_ring >= 1, base > 0 and factor > 1 are required")
        self.per_ring = per_ring
        self.base = base
        self.factor = factor
        self.rings: dict[int, dict[Hashable, float]] = {}

    def add(self, peer: Hashable, distance: float) -> bool:
        """Place ``peer`` in its ring (updating its distance); return whether it is kept."""
        self.remove(peer)
        ring = self.rings.setdefault(ring_index(distance, self.base, self.factor), {})
        if len(ring) >= self.per_ring:
            return False
        ring[peer] = distance
        return True

    def remove(self, peer: Hashable) -> None:
        """Forget ``peer`` wherever it is."""
        for ring in self.rings.values():
            ring.pop(peer, None)

    def peers(self) -> dict[Hashable, float]:
        """All kept peers with their distances."""
        return {p: d for ring in self.rings.values() for p, d in ring.items()}

    def candidates(self, d: float, beta: float = 0.5) -> list[Hashable]:
        """Peers whose distance lies within ``[(1 - beta) d, (1 + beta) d]``: the ones to probe."""
        lo, hi = (1.0 - beta) * d, (1.0 + beta) * d
        return [p for p, x in self.peers().items() if lo <= x <= hi]


def closest_node(
    start: Hashable,
    rings: Mapping[Hashable, MeridianRings],
    distance_to_target: Callable[[Hashable], float],
    beta: float = 0.5,
    max_hops: int = 16,
) -> tuple[Hashable, float, list[Hashable]]:
    """Meridian closest-node discovery from ``start``; return ``(node, distance, route)``.

    ``distance_to_target(n)`` is node ``n``'s measurement to the target. At each hop, the
    current node probes its ring members within the acceptance band; the request moves to the
    closest of them if it is nearer to the target than the current node, otherwise the
    current node is the answer.
    """
    node = start
    d = distance_to_target(node)
    route = [node]
    for _ in range(max_hops):
        r = rings.get(node)
        if r is None:
            break
        best, best_d = None, d
        for peer in r.candidates(d, beta):
            dp = distance_to_target(peer)
            if dp < best_d:
                best, best_d = peer, dp
        if best is None:
            break
        node, d = best, best_d
        route.append(node)
    return node, d, route


def assign_groups(
    hosts: Iterable[Hashable],
    dist: Callable[[Hashable, Hashable], float],
    params: GroupingParams | None = None,
    beta: float = 0.5,
    per_ring: int = 8,
    attempts: int = 3,
) -> dict[Hashable, Hashable]:
    """Bootstrap hosts one by one; return host -> group (named by its founding leader).

    Each host finds the closest leader with Meridian over the leaders' rings, then checks the
    grouping criterion against that leader's ``params.neighbours`` closest other leaders; if
    it fails, it tries the next leaders nearest to it that the found leader knows (up to
    ``attempts`` in all, the remedy the thesis proposes in §4.4); it joins the first that
    accepts it, or founds a group of its own (and enters every leader's rings).
    """
    p = params or GroupingParams()
    group: dict[Hashable, Hashable] = {}
    rings: dict[Hashable, MeridianRings] = {}
    leaders: list[Hashable] = []
    for h in hosts:
        if leaders:
            leader, d, _ = closest_node(leaders[0], rings, lambda n, h=h: dist(n, h), beta)
            # Meridian's answer first, then the other leaders it knows near the host (§4.4).
            near = sorted(rings[leader].peers(), key=lambda n, h=h: dist(h, n))
            tries = [leader, *(n for n in near if n != leader)][:attempts]
            chosen = None
            for cand in tries:
                others = sorted((x for x in leaders if x != cand), key=lambda x: dist(cand, x))
                neigh = others[: p.neighbours]
                leader_to = {n: dist(cand, n) for n in neigh}
                host_to = {n: dist(h, n) for n in neigh}
                if meets_grouping_criterion(dist(h, cand), leader_to, host_to, p):
                    chosen = cand
                    break
            if chosen is not None:
                group[h] = chosen
                continue
        group[h] = h
        rings[h] = MeridianRings(per_ring=per_ring)
        for other in leaders:
            rings[h].add(other, dist(h, other))
            rings[other].add(h, dist(other, h))
        leaders.append(h)
    return group
