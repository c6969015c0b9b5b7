"""Tests of the predictor (warm and cold pairs) and of the Vivaldi baseline."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from dnaagent.xbac.predictor import XbacPredictor, change_probability, min_loss_value
from dnaagent.xbac.vivaldi import Vivaldi

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "seattle_99x688.tar.xz"


def held_series(n: int, seed: int, base: float = 0.11, hold: int = 5) -> list[float]:
    """A series like the Seattle data: a new value every ``hold`` steps, spikes now and then."""
    rng = random.Random(seed)
    out: list[float] = []
    while len(out) < n:
        v = base if rng.random() < 0.7 else round(rng.uniform(0.3, 0.9), 2)
        out.extend([v] * hold)
    return out[:n]


def test_min_loss_value_prefers_the_common_low_level() -> None:
    """Under relative error, a 60/40 mix of 0.1 and 0.5 is best predicted by 0.1."""
    x = np.array([0.1, 0.5])
    assert min_loss_value(x, np.array([0.6, 0.4]), 0.2, 0.5) == 0.1
    assert min_loss_value(x, np.array([0.05, 0.95]), 0.2, 0.5) == 0.5


def test_change_probability_follows_run_lengths() -> None:
    """With runs of 5, a change is unlikely after 1 step of a run and likely after 5."""
    starts = np.arange(0, 50, 5)
    young = change_probability(starts, 46, 1)  # age 1
    due = change_probability(starts, 50, 1)  # age 5
    assert young < 0.1 < 0.9 < due


def test_warm_prediction_beats_last_value_on_held_spiky_series() -> None:
    """On held series with spikes, the predictor's mean relative error is below last value's."""
    p = XbacPredictor()
    ours, last = [], []
    for t, v in enumerate(held_series(400, seed=5)):
        if t >= 200:
            pred = p.predict_rtt("a", "b", float(t))
            assert (
                pred is not None and pred.source == "series" and pred.low <= pred.value <= pred.high
            )
            ours.append(abs(pred.value - v) / v)
            last.append(abs(p.series[("a", "b")].last_value - v) / v)
        p.add_measurement("a", "b", v, float(t))
    assert np.mean(ours) < 0.7 * np.mean(last)


def test_no_prediction_when_nothing_is_known() -> None:
    """Too short a series and no group experience give None; a constant series gives its value."""
    p = XbacPredictor()
    for t in range(3):
        p.add_measurement("a", "b", 0.05, float(t))
    assert p.predict_rtt("a", "b", 3.0) is None
    assert p.predict_rtt("a", "zz", 3.0) is None
    for t in range(3, 20):
        p.add_measurement("a", "b", 0.05, float(t))
    pred = p.predict_rtt("a", "b", 20.0)
    assert pred is not None and pred.value == pred.low == pred.high == 0.05
    assert not p.add_measurement("a", "a", 0.01, 0.0)


def test_cold_prediction_from_group_member_and_target_group() -> None:
    """A member's series answers for the requester (with its offset); else the target's group."""
    p = XbacPredictor()
    p.set_groups({"r": "G", "m": "G", "x": "X", "x2": "X"})
    for t in range(30):
        p.add_measurement("m", "x", 0.200, float(t))
        p.add_measurement("m", "z", 0.100, float(t))
        p.add_measurement("r", "z", 0.110, float(t))  # r is 10 ms further than m
        p.add_measurement("r", "x2", 0.300, float(t))
    pred = p.predict_rtt("r", "x", 30.0)
    assert pred is not None and pred.source == "group"
    assert pred.value == pytest.approx(0.210)
    # Nobody in G measured "x3", but its group X holds x and x2, which G knows.
    p.set_groups({**p.group_of, "x3": "X"})
    pred = p.predict_rtt("r", "x3", 30.0)
    assert pred is not None and pred.source == "cluster" and pred.series == 2
    assert pred.value in (pytest.approx(0.210), pytest.approx(0.300))


def test_vivaldi_embeds_a_plane_with_heights() -> None:
    """Vivaldi on RTTs from 2-D points plus access delays reaches a small median error."""
    rng = random.Random(4)
    pts = {
        i: (rng.uniform(0, 0.1), rng.uniform(0, 0.1), rng.uniform(0.001, 0.01)) for i in range(20)
    }

    def rtt(a: int, b: int) -> float:
        (x1, y1, h1), (x2, y2, h2) = pts[a], pts[b]
        return ((x1 - x2) ** 2 + (y1 - y2) ** 2) ** 0.5 + h1 + h2

    v = Vivaldi(seed=1)
    for _ in range(150):
        for a in pts:
            b = rng.choice([x for x in pts if x != a])
            v.update(a, b, rtt(a, b))
    errs = [abs(v.distance(a, b) - rtt(a, b)) / rtt(a, b) for a in pts for b in pts if a < b]
    assert np.median(errs) < 0.1
    assert all(c.height > 0 for c in v.coords.values())


@pytest.mark.skipif(not DATA.is_file(), reason=f"Seattle data not found at {DATA}")
def test_seattle_pairs_warm_prediction_beats_last_value() -> None:
    """On a few real Seattle pairs, the warm predictor's mean relative error beats last value's."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from xbac_accuracy import load

    A = load(DATA)
    p = XbacPredictor()
    ours, last = [], []
    for i, j in [(0, 1), (3, 4), (10, 20), (5, 50), (30, 60), (7, 77)]:
        for t in range(500):
            a = float(A[t, i, j])
            if t >= 400 and a > 0:
                ours.append(abs(p.predict_rtt(i, j, float(t)).value - a) / a)
                last.append(abs(p.series[(i, j)].last_value - a) / a)
            if a > 0:
                p.add_measurement(i, j, a, float(t))
    assert np.mean(ours) < np.mean(last)


def test_typical_level_ignores_spikes() -> None:
    """The typical level of a held series with occasional spikes is its baseline."""
    p = XbacPredictor()
    for t, v in enumerate(held_series(300, seed=9)):
        p.add_measurement("a", "b", v, float(t))
    assert p.typical_level(p.series[("a", "b")]) == 0.11


def test_cold_prediction_from_a_similar_host_of_another_group() -> None:
    """With no experience in the requester's group, a host elsewhere that sees the common
    targets at a near-constant offset answers (thesis §7.1.1); a dissimilar one does not."""
    p = XbacPredictor()
    p.set_groups({"r": "G", "s": "S", "d": "D", "x": "X"})
    common = {"c1": 0.050, "c2": 0.120, "c3": 0.200, "c4": 0.080}
    for t in range(30):
        for c, rtt in common.items():
            p.add_measurement("r", c, rtt + 0.010, float(t))  # r is 10 ms further than s
            p.add_measurement("s", c, rtt, float(t))
            # d sees the common targets in no consistent relation to r
            p.add_measurement("d", c, rtt * (3.0 if c in ("c1", "c3") else 0.5), float(t))
        p.add_measurement("s", "t", 0.150, float(t))
        p.add_measurement("d", "u", 0.400, float(t))
    pred = p.predict_rtt("r", "t", 30.0)
    assert pred is not None and pred.source == "similar" and pred.series == 1
    assert pred.value == pytest.approx(0.160)
    offset, spread, n = p.similarity("r", "s")
    assert offset == pytest.approx(0.010) and spread == pytest.approx(0.0) and n == 4
    # Only d measured u, and d is not similar to r: no answer rather than a wild guess.
    assert p.predict_rtt("r", "u", 30.0) is None
