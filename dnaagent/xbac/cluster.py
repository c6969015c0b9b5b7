"""Clusters of remote hosts seen from one group (thesis §3.1, §4.1.2, §4.6).

A cluster is a set of hosts that the members of one group see at nearly the same RTT. Each
host enters a cluster of its own at first contact; clusters whose summaries pass the band
and the bias tests merge (the union is re-clustered); clusters are periodically re-assessed
and split. A host's *profile* is a matrix of RTT levels, one row per observing group member
and one column per time step of a coarse grid (NaN where unmeasured); a cluster's summary
is the element-wise median of its hosts' profiles.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

import numpy as np

Profile = np.ndarray
ProfileFn = Callable[[Hashable], Profile | None]


@dataclass(frozen=True)
class ClusterParams:
    """Cluster detection parameters (Appendix C names in the comments)."""

    #: ClusterDetectionBandwidth: relative half-width of the band of the band test.
    bandwidth: float = 0.02
    #: ClusterDetectionOOBThresh: largest share of out-of-band points.
    oob_thresh: float = 0.1
    #: ClusterDetectionBiasThresh: largest relative difference of the means.
    bias_thresh: float = 0.015
    #: ClusterDetectionRelaxFactor: widening of the band when a cluster is re-assessed.
    relax: float = 1.05
    #: Measurement resolution (s): band and bias never narrower than this, so that
    #: quantization alone does not separate hosts (10 ms in the Seattle data).
    resolution: float = 0.010
    #: ClusterProtectionTime (s): a merged or broadcast cluster is left alone this long.
    protection: float = 120.0
    #: Fewest common (observer, time) points for a test to be meaningful.
    min_points: int = 3


def band_test(a: Profile, b: Profile, params: ClusterParams, relax: float = 1.0) -> bool:
    """O_b: share of common points outside the relative band is below ``oob_thresh``."""
    m = np.isfinite(a) & np.isfinite(b)
    if int(m.sum()) < params.min_points:
        return False
    x, y = a[m], b[m]
    width = np.maximum(params.bandwidth * relax * np.maximum(x, y), params.resolution * relax)
    oob = np.abs(x - y) > width + 1e-12
    return float(oob.mean()) < params.oob_thresh


def bias_test(a: Profile, b: Profile, params: ClusterParams, relax: float = 1.0) -> bool:
    """B: the means over the common points differ by less than ``bias_thresh`` (relative)."""
    m = np.isfinite(a) & np.isfinite(b)
    if int(m.sum()) < params.min_points:
        return False
    ma, mb = float(a[m].mean()), float(b[m].mean())
    limit = max(params.bias_thresh * relax * max(ma, mb), params.resolution * relax)
    return abs(ma - mb) < limit + 1e-12


def similar(a: Profile, b: Profile, params: ClusterParams, relax: float = 1.0) -> bool:
    """Both tests pass: the two profiles belong in one cluster."""
    return band_test(a, b, params, relax) and bias_test(a, b, params, relax)


def summarize(profiles: Iterable[Profile]) -> Profile | None:
    """Element-wise median of profiles (NaN where no host has a value)."""
    stack = [p for p in profiles if p is not None]
    if not stack:
        return None
    arr = np.stack(stack)
    out = np.full(arr.shape[1:], np.nan)
    have = np.isfinite(arr).any(axis=0)
    if have.any():
        out[have] = np.nanmedian(arr[:, have], axis=0)
    return out


def greedy_clusters(
    hosts: list[Hashable], profile: ProfileFn, params: ClusterParams, relax: float = 1.0
) -> list[list[Hashable]]:
    """Re-cluster ``hosts``: each joins the first cluster whose seed profile it resembles.

    Hosts without a profile stay alone. Deterministic for a given host order.
    """
    out: list[tuple[Profile | None, list[Hashable]]] = []
    for h in hosts:
        p = profile(h)
        for seed, members in out:
            if p is not None and seed is not None and similar(p, seed, params, relax):
                members.append(h)
                break
        else:
            out.append((p, [h]))
    return [m for _, m in out]


@dataclass
class Cluster:
    """One cluster: its id, hosts, remote groups mapped to it and protection deadline."""

    cid: int
    hosts: set[Hashable] = field(default_factory=set)
    groups: set[Hashable] = field(default_factory=set)
    protected_until: float = 0.0


class ClusterTable:
    """The clusters of one group: HostId -> ClusterId and GroupId -> ClusterId mappings.

    Ids are random 63-bit integers (well spread, as the storage by consistent hashing needs)
    from a seeded generator, so that runs are reproducible.
    """

    def __init__(self, params: ClusterParams | None = None, seed: int = 0) -> None:
        self.params = params or ClusterParams()
        self._rng = random.Random(seed)
        self.clusters: dict[int, Cluster] = {}
        self.host_cluster: dict[Hashable, int] = {}
        self.group_cluster: dict[Hashable, int] = {}
        self.host_group: dict[Hashable, Hashable] = {}

    def _new(self, hosts: Iterable[Hashable], now: float = 0.0) -> Cluster:
        cid = self._rng.getrandbits(63)
        while cid in self.clusters:
            cid = self._rng.getrandbits(63)
        c = Cluster(cid=cid, hosts=set(hosts), protected_until=now)
        self.clusters[cid] = c
        for h in c.hosts:
            self.host_cluster[h] = cid
        return c

    def observe(self, host: Hashable, group: Hashable | None = None, now: float = 0.0) -> int:
        """First contact with ``host`` creates its own cluster; return its cluster id.

        ``group`` is the remote host's XBAC group if it has one: the group is mapped to the
        host's cluster (atomic groups: all its members belong to the same cluster).
        """
        if group is not None:
            self.host_group[host] = group
        cid = self.host_cluster.get(host)
        if cid is None and group is not None:
            cid = self.group_cluster.get(group)
            if cid is not None:
                self.clusters[cid].hosts.add(host)
                self.host_cluster[host] = cid
        if cid is None:
            cid = self._new([host], now).cid
        if group is not None and group not in self.group_cluster:
            self.group_cluster[group] = cid
            self.clusters[cid].groups.add(group)
        return cid

    def cluster_of(self, host: Hashable, group: Hashable | None = None) -> Cluster | None:
        """The cluster of ``host`` (directly, or through its group, thesis §4.5), or None."""
        cid = self.host_cluster.get(host)
        if cid is None and group is not None:
            cid = self.group_cluster.get(group)
        return self.clusters.get(cid) if cid is not None else None

    def summary(self, cid: int, profile: ProfileFn) -> Profile | None:
        """The summary a responsible member would broadcast for cluster ``cid``."""
        return summarize(profile(h) for h in sorted(self.clusters[cid].hosts, key=repr))

    def _replace(self, old: list[Cluster], parts: list[list[Hashable]], now: float) -> list[int]:
        groups = set().union(*(c.groups for c in old))
        for c in old:
            del self.clusters[c.cid]
        new = [self._new(p, now + self.params.protection) for p in parts]
        # A group follows its hosts: map it to the new cluster holding most of them.
        for g in sorted(groups, key=repr):
            best = max(new, key=lambda c: sum(1 for h in c.hosts if self.host_group.get(h) == g))
            self.group_cluster[g] = best.cid
            best.groups.add(g)
        return [c.cid for c in new]

    def merge_pass(self, profile: ProfileFn, now: float = 0.0) -> int:
        """Compare every unprotected cluster's summary with the others; merge similar pairs.

        A merge dissolves both clusters and re-clusters the union of their hosts; the result
        is protected for ``params.protection`` seconds. Returns the number of merges.
        """
        merges = 0
        ids = sorted(self.clusters)
        summaries = {cid: self.summary(cid, profile) for cid in ids}
        done: set[int] = set()
        for i, a in enumerate(ids):
            if a in done or self.clusters[a].protected_until > now or summaries[a] is None:
                continue
            for b in ids[i + 1 :]:
                if b in done or self.clusters[b].protected_until > now or summaries[b] is None:
                    continue
                if similar(summaries[a], summaries[b], self.params):
                    ca, cb = self.clusters[a], self.clusters[b]
                    hosts = sorted(ca.hosts | cb.hosts, key=repr)
                    parts = greedy_clusters(hosts, profile, self.params, self.params.relax)
                    self._replace([ca, cb], parts, now)
                    done.update((a, b))
                    merges += 1
                    break
        return merges

    def split_pass(self, profile: ProfileFn, now: float = 0.0) -> int:
        """Re-assess every unprotected cluster; split those whose hosts no longer agree.

        Returns the number of clusters split.
        """
        splits = 0
        for cid in sorted(self.clusters):
            c = self.clusters.get(cid)
            if c is None or c.protected_until > now or len(c.hosts) < 2:
                continue
            parts = greedy_clusters(
                sorted(c.hosts, key=repr), profile, self.params, self.params.relax
            )
            if len(parts) > 1:
                self._replace([c], parts, now)
                splits += 1
        return splits
