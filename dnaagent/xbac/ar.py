"""Auto-regressive model AR(p) fitted with the Yule-Walker equations (thesis §2.6.2).

``fit`` estimates the sample autocovariance, solves the Toeplitz system with the
Levinson-Durbin recursion and returns an :class:`ARModel`, or None when the series cannot
carry a model (too short, constant, non-finite). ``ARModel.forecast`` predicts ``horizon``
steps ahead with the error variance of each step from the residual variance and the model's
impulse response.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Model order used when none is given (Appendix C, DefaultModelOrder).
DEFAULT_ORDER = 8


@dataclass(frozen=True)
class ARModel:
    """A fitted AR(p) model: x_t - mean = sum_i phi_i (x_{t-i} - mean) + e_t, Var(e_t) = sigma2."""

    phi: np.ndarray
    mean: float
    sigma2: float
    n: int

    @property
    def order(self) -> int:
        """The model order p."""
        return int(self.phi.size)

    def forecast(self, history: np.ndarray, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Predict the next ``horizon`` values after ``history``.

        Returns ``(values, variances)``, one entry per step ahead. ``history`` needs at least
        ``order`` values (the newest last).
        """
        if horizon < 1:
            raise ValueError("horizon must be at least 1")
        p = self.order
        if history.size < p:
            raise ValueError(f"history needs at least {p} values")
        buf = list(np.asarray(history[history.size - p :], dtype=float) - self.mean)
        out = np.empty(horizon)
        for h in range(horizon):
            nxt = float(np.dot(self.phi, buf[::-1][:p])) if p else 0.0
            out[h] = nxt + self.mean
            buf.append(nxt)
            buf = buf[-p:] if p else buf
        psi = impulse_response(self.phi, horizon)
        var = self.sigma2 * np.cumsum(psi**2)
        return out, var


def impulse_response(phi: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` MA(inf) weights psi_0..psi_{n-1} of an AR model (psi_0 = 1)."""
    psi = np.zeros(n)
    psi[0] = 1.0
    for j in range(1, n):
        k = min(j, phi.size)
        psi[j] = float(np.dot(phi[:k], psi[j - 1 :: -1][:k])) if k else 0.0
    return psi


def autocovariance(x: np.ndarray, maxlag: int) -> np.ndarray:
    """Biased sample autocovariance gamma_0..gamma_maxlag of ``x`` (mean removed)."""
    y = x - x.mean()
    n = y.size
    return np.array([float(np.dot(y[: n - k], y[k:])) / n for k in range(maxlag + 1)])


def levinson_durbin(gamma: np.ndarray, order: int) -> tuple[np.ndarray, float]:
    """Solve the Yule-Walker system for AR coefficients; return ``(phi, innovation variance)``.

    ``gamma`` holds gamma_0..gamma_order. The biased autocovariance keeps the Toeplitz matrix
    positive definite, so the recursion is stable whenever gamma_0 > 0.
    """
    phi = np.zeros(order)
    err = float(gamma[0])
    for m in range(order):
        acc = gamma[m + 1] - float(np.dot(phi[:m], gamma[m:0:-1]))
        k = acc / err
        prev = phi[:m].copy()
        phi[m] = k
        phi[:m] = prev - k * prev[::-1]
        err *= 1.0 - k * k
        if err <= 0:
            err = 0.0
            break
    return phi, err


def fit(x: np.ndarray, order: int = DEFAULT_ORDER) -> ARModel | None:
    """Fit AR(order) to ``x`` with Yule-Walker; None when impossible (degenerate input).

    Needs at least ``2 * order + 2`` finite values and a non-zero variance. The order is
    lowered to what a shorter series supports only if ``order`` is 0.
    """
    x = np.asarray(x, dtype=float)
    if order < 0:
        raise ValueError("order must be non-negative")
    if x.size < 2 * order + 2 or not np.all(np.isfinite(x)):
        return None
    gamma = autocovariance(x, order)
    scale = max(abs(float(x.mean())), 1.0)
    if gamma[0] <= 1e-18 * scale * scale:
        return None
    phi, sigma2 = levinson_durbin(gamma, order)
    return ARModel(phi=phi, mean=float(x.mean()), sigma2=float(sigma2), n=int(x.size))
