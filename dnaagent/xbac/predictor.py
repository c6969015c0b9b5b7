"""The prediction core: ``add_measurement`` and ``predict_rtt`` over series, groups and clusters.

*Warm pairs* (the requester has its own series to the target) are predicted from that
series. RTT series are piecewise constant with jumps and spikes (a new measurement replaces
the held value), so the next value is a mixture: the current value if no change comes
within the horizon, a new level otherwise. The change probability comes from the series'
own run lengths (the hazard of the current run's age); the new level's distribution from
the recent run levels plus the AR(p) forecast of the run-level series (the series with its
repetitions removed). The answer is the value that minimizes the expected loss
``relative error + miss_penalty * [relative error > miss_tolerance]`` under that mixture:
close to the last value while the run is young, pulled toward the usual level when a change
is due or the last value is a spike.

*Cold pairs* (the requester never measured the target) are answered from the experience of
the requester's group (thesis §4.5): members who measured the target, corrected by their
offset to the requester; otherwise hosts of the target's cluster (as the group sees it)
measured by the requester or its group. No answer (None) when neither exists.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

from dnaagent.xbac import ar
from dnaagent.xbac.cluster import ClusterParams, ClusterTable
from dnaagent.xbac.series import Series, runs


@dataclass(frozen=True)
class PredictorParams:
    """Parameters of the predictor (Appendix C names where the thesis has one)."""

    #: DefaultModelOrder
    order: int = ar.DEFAULT_ORDER
    #: Fewest samples for a series to answer on its own ("warm").
    min_samples: int = 10
    #: Newest samples used per prediction.
    window: int = 400
    #: Recent run levels forming the distribution of a new level.
    recent_levels: int = 30
    #: Relative error beyond which a prediction counts as a miss in the loss.
    miss_tolerance: float = 0.2
    #: Weight of a miss in the loss (0: minimize the mean relative error only).
    miss_penalty: float = 4.0
    #: Samples kept per series (bounded memory).
    capacity: int = 1024
    #: Most estimates combined for a cold answer.
    max_estimates: int = 32
    #: Fewest samples of another pair's series for it to support a cold answer.
    cold_min_samples: int = 5
    #: Quantile of the samples in a profile bin: low, so that spikes do not hide the level.
    profile_quantile: float = 0.25
    #: z of the interval (1.645: a 90 % two-sided interval under normal errors).
    interval_z: float = 1.645
    #: Cross-group answers (thesis §7.1.1): fewest targets the requester and another host
    #: must both have measured for the other host's experience to stand in for its own.
    similar_min_common: int = 3
    #: ... and the spread (median absolute deviation, s) of their level differences over
    #: those targets must stay within this plus ``similar_relative`` of the levels.
    similar_absolute: float = 0.010
    similar_relative: float = 0.05
    #: Most other hosts examined for one cross-group answer (bounded work per request).
    similar_max_candidates: int = 64


@dataclass(frozen=True)
class Prediction:
    """An RTT prediction (seconds) with an interval and its basis."""

    value: float
    low: float
    high: float
    #: "series" (the pair's own history), "group" (members who measured the target),
    #: "cluster" (hosts of the target's cluster) or "similar" (hosts of other groups that see
    #: the network as the requester does and measured the target, thesis §7.1.1).
    source: str
    #: Number of (observer, target) series behind the answer.
    series: int
    #: Number of measurements behind the answer.
    samples: int


def min_loss_value(x: np.ndarray, w: np.ndarray, tolerance: float, penalty: float) -> float:
    """The candidate in ``x`` minimizing the expected loss under the discrete distribution (x, w).

    Loss of predicting p for an outcome a: ``|p - a| / a + penalty * [|p - a| / a > tolerance]``.
    Outcomes of 0 are treated as the smallest positive outcome.
    """
    a = np.maximum(x, max(float(x[x > 0].min()) if np.any(x > 0) else 1e-6, 1e-9))
    rel = np.abs(x[:, None] - a[None, :]) / a[None, :]
    loss = ((rel + penalty * (rel > tolerance + 1e-12)) * w[None, :]).sum(axis=1)
    return float(x[int(np.argmin(loss))])


def combine_estimates(
    estimates: list[float], samples: int, source: str, p: PredictorParams
) -> Prediction | None:
    """One answer from several estimates (s): the min-loss value, the 10-90 % interval.

    At most ``max_estimates`` are used; None when there is none.
    """
    if not estimates:
        return None
    x = np.maximum(np.asarray(estimates[: p.max_estimates], dtype=float), 0.0)
    value = min_loss_value(x, np.full(x.size, 1.0 / x.size), p.miss_tolerance, p.miss_penalty)
    lo, hi = (float(q) for q in np.quantile(x, [0.1, 0.9]))
    return Prediction(value, min(lo, value), max(hi, value), source, int(x.size), samples)


def level_similarity(diffs: list[float], p: PredictorParams) -> tuple[float, float, int] | None:
    """(offset, spread, common) of one host's typical levels minus another's to common targets.

    The median difference is the offset to add to the other host's level, the median
    absolute deviation from it the spread. None with fewer than ``similar_min_common``.
    """
    if len(diffs) < p.similar_min_common:
        return None
    d = np.asarray(diffs, dtype=float)
    offset = float(np.median(d))
    spread = float(np.median(np.abs(d - offset)))
    return offset, spread, len(diffs)


def similar_enough(spread: float, level: float, p: PredictorParams) -> bool:
    """Whether a spread (s) is small enough for experience at ``level`` (s) to be shared."""
    return spread <= p.similar_absolute + p.similar_relative * max(level, 0.0)


def change_probability(starts: np.ndarray, n: int, horizon: int) -> float:
    """Probability that the current run ends within ``horizon`` steps, from the completed runs.

    ``starts`` are the run starts of a series of ``n`` samples. The hazard is the share of
    completed runs that lasted at least the current age and ended within the horizon, with a
    half-count prior so that a young series is neither sure nor blind.
    """
    age = n - int(starts[-1])
    lengths = np.diff(starts)
    alive = int(np.count_nonzero(lengths >= age))
    ends = int(np.count_nonzero((lengths >= age) & (lengths < age + horizon)))
    return (ends + 0.5) / (alive + 1.0)


class XbacPredictor:
    """Measurements in, predictions out; groups and clusters as the thesis organizes them.

    Hosts are any hashable ids. ``set_groups`` gives the group of each XBAC host (from the
    bootstrapping); every group keeps a :class:`ClusterTable` of the hosts its members
    measured. Times are seconds (any epoch) and must not go backwards per pair.
    """

    def __init__(
        self,
        params: PredictorParams | None = None,
        cluster_params: ClusterParams | None = None,
        seed: int = 0,
    ) -> None:
        self.params = params or PredictorParams()
        self.cluster_params = cluster_params or ClusterParams()
        self.seed = seed
        self.series: dict[tuple[Hashable, Hashable], Series] = {}
        self.targets: dict[Hashable, set[Hashable]] = {}
        self.group_of: dict[Hashable, Hashable] = {}
        self.members: dict[Hashable, set[Hashable]] = {}
        self.tables: dict[Hashable, ClusterTable] = {}
        self._ar_cache: dict[int, tuple[tuple[int, float, float], tuple[float, float] | None]] = {}
        self._level_cache: dict[tuple[Hashable, Hashable], tuple[tuple, float | None]] = {}
        self._cache: dict[
            tuple[Hashable, Hashable], tuple[int, float, float, Prediction | None]
        ] = {}

    # -- organization ---------------------------------------------------------------

    def set_groups(self, group_of: Mapping[Hashable, Hashable]) -> None:
        """Record the group of every XBAC host and map already measured hosts into clusters."""
        self.group_of = dict(group_of)
        self.members = {}
        for h, g in self.group_of.items():
            self.members.setdefault(g, set()).add(h)
        for g in self.members:
            self.table(g)
        for (src, dst), s in self.series.items():
            g = self.group_of.get(src)
            if g is not None:
                self.tables[g].observe(dst, self.group_of.get(dst), s.last_time or 0.0)

    def table(self, group: Hashable) -> ClusterTable:
        """The cluster table of ``group`` (created empty on first use)."""
        t = self.tables.get(group)
        if t is None:
            t = ClusterTable(self.cluster_params, seed=hash((self.seed, repr(group))) & 0xFFFFFFFF)
            self.tables[group] = t
        return t

    def group_members(self, host: Hashable) -> set[Hashable]:
        """The members of ``host``'s group (just ``host`` when it has none)."""
        g = self.group_of.get(host)
        return self.members.get(g, {host}) if g is not None else {host}

    # -- measurements -----------------------------------------------------------------

    def add_measurement(self, src: Hashable, dst: Hashable, rtt: float, t: float) -> bool:
        """Record an RTT (s) from ``src`` to ``dst`` measured at time ``t``; return whether kept."""
        if src == dst:
            return False
        key = (src, dst)
        s = self.series.get(key)
        if s is None:
            if not (math.isfinite(rtt) and rtt >= 0 and math.isfinite(t)):
                return False
            s = Series(self.params.capacity)
            self.series[key] = s
            self.targets.setdefault(src, set()).add(dst)
            g = self.group_of.get(src)
            if g is not None:
                self.table(g).observe(dst, self.group_of.get(dst), t)
        return s.add(t, rtt)

    # -- predictions ------------------------------------------------------------------

    def predict_rtt(self, src: Hashable, dst: Hashable, t: float) -> Prediction | None:
        """Predict the RTT from ``src`` to ``dst`` at time ``t``; None when impossible."""
        own = self.series.get((src, dst))
        if own is not None and len(own) >= self.params.min_samples:
            return self._series_prediction(src, dst, t)
        return self.predict_cold(src, dst, t)

    def _series_prediction(self, src: Hashable, dst: Hashable, t: float) -> Prediction | None:
        s = self.series[(src, dst)]
        stamp = (len(s), s.last_time or 0.0, t)
        hit = self._cache.get((src, dst))
        if hit is not None and hit[:3] == stamp:
            return hit[3]
        pred = self.predict_series(s, t)
        self._cache[(src, dst)] = (*stamp, pred)
        return pred

    def predict_series(
        self, s: Series, t: float, min_samples: int | None = None
    ) -> Prediction | None:
        """Predict the value of series ``s`` at time ``t`` from its own history (or None)."""
        p = self.params
        need = p.min_samples if min_samples is None else min_samples
        if len(s) < max(need, 1):
            return None
        v = s.values()[-p.window :]
        last = float(v[-1])
        step = s.step()
        t_last = s.last_time or t
        horizon = 1
        if step:
            horizon = max(1, int(round((t - t_last) / step)))
        starts, levels = runs(v)
        if levels.size == 1:
            return Prediction(last, last, last, "series", 1, int(v.size))
        hz = change_probability(starts, int(v.size), horizon)
        recent = levels[-p.recent_levels :]
        cand = [last, *recent.tolist()]
        weight = [1.0 - hz, *([hz / (recent.size + 1)] * recent.size)]
        spread = float(np.std(recent))
        ar_next = self._ar_forecast(s, levels)
        if ar_next is not None:
            cand.append(max(ar_next[0], 0.0))
            weight.append(hz / (recent.size + 1))
            spread = ar_next[1]
        else:
            weight = [w * (recent.size + 1) / recent.size if i else w for i, w in enumerate(weight)]
        x = np.asarray(cand)
        w = np.asarray(weight)
        value = min_loss_value(x, w / w.sum(), p.miss_tolerance, p.miss_penalty)
        half = p.interval_z * math.sqrt(hz) * spread
        return Prediction(value, max(value - half, 0.0), value + half, "series", 1, int(v.size))

    def _ar_forecast(self, s: Series, levels: np.ndarray) -> tuple[float, float] | None:
        """AR(p) forecast of the next run level and its standard error (refit only on change)."""
        key = id(s)
        stamp = (int(levels.size), float(levels[-1]), float(levels[0]))
        hit = self._ar_cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        model = ar.fit(levels, self.params.order)
        out = None
        if model is not None:
            f, var = model.forecast(levels, 1)
            out = (float(f[0]), math.sqrt(max(float(var[0]), 0.0)))
        self._ar_cache[key] = (stamp, out)
        return out

    def typical_level(self, s: Series) -> float | None:
        """The value of ``s`` that best represents any moment, not just the next one.

        The candidate among the recent run levels minimizing the expected loss under their
        empirical distribution: the usual level, not a spike that happens to be current.
        """
        if len(s) == 0:
            return None
        _, levels = runs(s.values()[-self.params.window :])
        recent = levels[-self.params.recent_levels :]
        w = np.full(recent.size, 1.0 / recent.size)
        return min_loss_value(recent, w, self.params.miss_tolerance, self.params.miss_penalty)

    def _support(self, a: Hashable, b: Hashable, t: float) -> tuple[float, int] | None:
        """The typical level of a's series to b (cached per series state), with its size."""
        s = self.series.get((a, b))
        if s is None or len(s) < self.params.cold_min_samples:
            return None
        stamp = (len(s), s.last_time or 0.0, -1.0)
        hit = self._level_cache.get((a, b))
        if hit is not None and hit[0] == stamp:
            value = hit[1]
        else:
            value = self.typical_level(s)
            self._level_cache[(a, b)] = (stamp, value)
        return (value, len(s)) if value is not None else None

    def level(self, a: Hashable, b: Hashable) -> tuple[float, int] | None:
        """a's typical level to b and its series' size; None below ``cold_min_samples``."""
        return self._support(a, b, 0.0)

    def offset(self, src: Hashable, member: Hashable) -> float:
        """Median of (src's level - member's level) over the targets both measured; 0 if none."""
        if src == member:
            return 0.0
        diffs = self._level_differences(src, member)
        return float(np.median(diffs)) if diffs else 0.0

    def _level_differences(self, a: Hashable, b: Hashable) -> list[float]:
        """a's typical level minus b's, for each target both measured (at most max_estimates)."""
        common = sorted(self.targets.get(a, set()) & self.targets.get(b, set()), key=repr)
        diffs = []
        for z in common[: self.params.max_estimates]:
            la = self._support(a, z, 0.0)
            lb = self._support(b, z, 0.0)
            if la is not None and lb is not None:
                diffs.append(la[0] - lb[0])
        return diffs

    def _pair_support(self, m: Hashable, y: Hashable, t: float) -> tuple[float, int] | None:
        """m's experience of y: its own series, else y's series to m (RTT is symmetric)."""
        return self._support(m, y, t) or self._support(y, m, t)

    def predict_cold(self, src: Hashable, dst: Hashable, t: float) -> Prediction | None:
        """Predict from the group's and clusters' experience, without src's own series to dst.

        First the members of ``src``'s group that measured ``dst`` (or were measured by it:
        thesis §7.1.1), each corrected by its offset to ``src``; else the hosts of ``dst``'s
        cluster and ``dst``'s own group as ``src``'s group knows them.
        """
        p = self.params
        members = sorted(self.group_members(src) | {src}, key=lambda m: (m != src, repr(m)))
        estimates: list[float] = []
        samples = 0
        source = "group"
        for m in members:
            sup = self._support(m, dst, t) if m != src else None
            if sup is None:
                sup = self._support(dst, m, t)
            if sup is not None:
                estimates.append(sup[0] + self.offset(src, m))
                samples += sup[1]
        if not estimates:
            source = "cluster"
            g = self.group_of.get(src)
            gd = self.group_of.get(dst)
            table = self.tables.get(g) if g is not None else None
            near: set[Hashable] = set(self.members.get(gd, ())) if gd is not None else set()
            cluster = table.cluster_of(dst, gd) if table is not None else None
            if cluster is not None:
                near |= cluster.hosts
            for y in sorted(near - {dst, src}, key=repr):
                for m in members:
                    if m == y:
                        continue
                    sup = self._pair_support(m, y, t)
                    if sup is not None:
                        estimates.append(sup[0] + self.offset(src, m))
                        samples += sup[1]
                        break
                if len(estimates) >= p.max_estimates:
                    break
        if not estimates:
            source = "similar"
            estimates, samples = self._similar_estimates(src, dst, t, set(members))
        return combine_estimates(estimates, samples, source, p)

    def similarity(self, src: Hashable, other: Hashable) -> tuple[float, float, int] | None:
        """How well ``other``'s experience stands in for ``src``'s: (offset, spread, common).

        Over the targets both measured, the differences of their typical levels: the median
        is the offset to add to ``other``'s level, the median absolute deviation its spread.
        None when they share fewer than ``similar_min_common`` targets.
        """
        return level_similarity(self._level_differences(src, other), self.params)

    def _similar_estimates(
        self, src: Hashable, dst: Hashable, t: float, exclude: set[Hashable]
    ) -> tuple[list[float], int]:
        """Experience of hosts outside ``src``'s group that see the network as ``src`` does.

        Thesis §7.1.1: groups with nearly identical measurements to remote hosts can share
        them. Any host that measured ``dst`` (or was measured by it) answers for ``src`` if
        their levels to common targets differ by a near-constant offset.
        """
        p = self.params
        observers = [m for m in self.targets if dst in self.targets[m]]
        observers += list(self.targets.get(dst, ()))
        scored: list[tuple[float, float, int]] = []
        seen: set[Hashable] = set()
        for m in sorted(observers, key=repr):
            if m in seen or m in exclude or m == dst or m == src:
                continue
            seen.add(m)
            sup = self._pair_support(m, dst, t)
            if sup is None:
                continue
            sim = self.similarity(src, m)
            if sim is None:
                continue
            offset, spread, _ = sim
            if similar_enough(spread, sup[0], p):
                scored.append((spread, sup[0] + offset, sup[1]))
            if len(seen) >= p.similar_max_candidates:
                break
        scored.sort(key=lambda e: e[0])
        best = scored[: p.max_estimates]
        return [e[1] for e in best], sum(e[2] for e in best)

    # -- clusters ---------------------------------------------------------------------

    def profile(
        self, group: Hashable, host: Hashable, t: float, span: float, points: int
    ) -> np.ndarray | None:
        """RTT levels from each member of ``group`` to ``host``: ``points`` bins up to ``t``."""
        rows = []
        edges = np.linspace(t - span, t, points + 1)
        any_data = False
        for m in sorted(self.members.get(group, ()), key=repr):
            s = self.series.get((m, host))
            row = np.full(points, np.nan)
            if s is not None and len(s) >= 2:
                ts, vs = s.times(), s.values()
                idx = np.searchsorted(edges, ts, side="right") - 1
                ok = (idx >= 0) & (idx < points)
                for b in np.unique(idx[ok]):
                    row[b] = float(np.quantile(vs[ok][idx[ok] == b], self.params.profile_quantile))
                any_data = any_data or bool(ok.any())
            rows.append(row)
        return np.asarray(rows) if any_data else None

    def recluster(self, t: float, span: float, points: int = 8, passes: int = 3) -> tuple[int, int]:
        """Run merge passes and one split pass in every group's table; return (merges, splits)."""
        merges = splits = 0
        for g in sorted(self.tables, key=repr):
            cache: dict[Hashable, np.ndarray | None] = {}

            def prof(h: Hashable, g: Hashable = g, cache: dict = cache) -> np.ndarray | None:
                if h not in cache:
                    cache[h] = self.profile(g, h, t, span, points)
                return cache[h]

            table = self.tables[g]
            for _ in range(passes):
                n = table.merge_pass(prof, t)
                merges += n
                if n == 0:
                    break
            splits += table.split_pass(prof, t)
        return merges, splits
