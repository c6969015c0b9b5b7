"""Tests of the AR(p) model fitted with Yule-Walker and of the measurement series."""

from __future__ import annotations

import numpy as np
import pytest

from dnaagent.xbac import ar
from dnaagent.xbac.series import Series, runs


def simulate(phi: list[float], n: int, seed: int, mean: float = 0.0, sd: float = 1.0) -> np.ndarray:
    """A seeded AR process with coefficients ``phi`` (burn-in discarded)."""
    rng = np.random.default_rng(seed)
    p = len(phi)
    x = np.zeros(n + 500)
    e = rng.normal(0.0, sd, x.size)
    for t in range(p, x.size):
        x[t] = sum(phi[i] * x[t - 1 - i] for i in range(p)) + e[t]
    return x[500:] + mean


def test_recovers_ar2_coefficients() -> None:
    """Yule-Walker recovers the coefficients and noise variance of a simulated AR(2)."""
    x = simulate([0.6, -0.3], 20000, seed=7, mean=5.0, sd=0.5)
    m = ar.fit(x, order=2)
    assert m is not None
    assert m.phi == pytest.approx([0.6, -0.3], abs=0.03)
    assert m.sigma2 == pytest.approx(0.25, rel=0.05)
    assert m.mean == pytest.approx(5.0, abs=0.05)


def test_order_8_fit_of_ar1_has_small_extra_coefficients() -> None:
    """An AR(8) fit of an AR(1) finds phi_1 and near-zero higher coefficients."""
    x = simulate([0.8], 20000, seed=3)
    m = ar.fit(x)
    assert m is not None and m.order == 8
    assert m.phi[0] == pytest.approx(0.8, abs=0.03)
    assert np.all(np.abs(m.phi[1:]) < 0.05)


def test_levinson_matches_direct_toeplitz_solve() -> None:
    """The Levinson-Durbin recursion solves the same system as a dense solve."""
    x = simulate([0.5, 0.2, -0.1], 3000, seed=11)
    g = ar.autocovariance(x, 4)
    phi, _ = ar.levinson_durbin(g, 4)
    toeplitz = np.array([[g[abs(i - j)] for j in range(4)] for i in range(4)])
    assert phi == pytest.approx(np.linalg.solve(toeplitz, g[1:5]), abs=1e-9)


def test_forecast_and_variance_grow_with_horizon() -> None:
    """Forecasts decay to the mean and the error variance grows toward the process variance."""
    m = ar.ARModel(phi=np.array([0.5]), mean=10.0, sigma2=1.0, n=100)
    values, var = m.forecast(np.array([12.0]), horizon=3)
    assert values == pytest.approx([11.0, 10.5, 10.25])
    assert var == pytest.approx([1.0, 1.25, 1.3125])


@pytest.mark.parametrize("x", [np.full(50, 0.12), np.arange(10.0), np.array([1.0, np.nan] * 20)])
def test_degenerate_series_give_no_model(x: np.ndarray) -> None:
    """Constant, too short and non-finite series give None instead of a model."""
    assert ar.fit(x, order=8) is None


def test_series_bounded_ordered_and_normalized() -> None:
    """A series keeps its newest samples, refuses time going back and interpolates to a grid."""
    s = Series(capacity=4)
    for t, v in [(0.0, 1.0), (1.0, 2.0), (3.0, 4.0), (4.0, 5.0), (5.0, 6.0)]:
        assert s.add(t, v)
    assert len(s) == 4 and s.times()[0] == 1.0
    assert not s.add(2.0, 1.0) and s.dropped == 1
    assert not s.add(6.0, float("nan")) and not s.add(6.0, -1.0)
    grid, vals = s.normalized(1.0)
    assert grid == pytest.approx([1, 2, 3, 4, 5])
    assert vals == pytest.approx([2, 3, 4, 5, 6])


def test_runs_remove_repetitions() -> None:
    """Runs give the start and level of each stretch of equal values."""
    starts, levels = runs(np.array([1, 1, 2, 2, 2, 1, 3]))
    assert starts.tolist() == [0, 2, 5, 6]
    assert levels.tolist() == [1, 2, 1, 3]
