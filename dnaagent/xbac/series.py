"""Measurement series of one (source, target) pair, bounded in memory.

A series keeps the most recent ``capacity`` timestamped samples. Measurements arrive at
irregular times (active probes on a schedule, passive RTTs whenever other traffic flows), so
the model works on a *normalized* series: the samples linearly interpolated onto a regular
grid, as the thesis prescribes (§2.6.1).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

#: Default number of samples kept per series.
DEFAULT_CAPACITY = 1024


class Series:
    """Timestamped RTT samples of one pair, oldest dropped first beyond ``capacity``.

    Samples must arrive in non-decreasing time order; a sample with the same timestamp as the
    newest one replaces it, an older one is ignored (and counted in ``dropped``). Values must
    be finite and non-negative.
    """

    __slots__ = ("_t", "_v", "capacity", "dropped")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self._t: deque[float] = deque(maxlen=capacity)
        self._v: deque[float] = deque(maxlen=capacity)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._v)

    def add(self, t: float, value: float) -> bool:
        """Append one sample; return whether it was kept."""
        if not (math.isfinite(t) and math.isfinite(value)) or value < 0:
            self.dropped += 1
            return False
        if self._t:
            last = self._t[-1]
            if t < last:
                self.dropped += 1
                return False
            if t == last:
                self._v[-1] = value
                return True
        self._t.append(t)
        self._v.append(value)
        return True

    @property
    def last_time(self) -> float | None:
        """Timestamp of the newest sample, or None when empty."""
        return self._t[-1] if self._t else None

    @property
    def last_value(self) -> float | None:
        """Value of the newest sample, or None when empty."""
        return self._v[-1] if self._v else None

    def times(self) -> np.ndarray:
        """Timestamps as an array (oldest first)."""
        return np.fromiter(self._t, dtype=float, count=len(self._t))

    def values(self) -> np.ndarray:
        """Values as an array (oldest first)."""
        return np.fromiter(self._v, dtype=float, count=len(self._v))

    def step(self) -> float | None:
        """The typical sampling interval (median gap), or None with fewer than two samples."""
        if len(self._t) < 2:
            return None
        gaps = np.diff(self.times())
        gaps = gaps[gaps > 0]
        return float(np.median(gaps)) if gaps.size else None

    def normalized(self, step: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The series interpolated linearly onto a regular grid of ``step`` (default: typical gap).

        The grid starts at the oldest sample and ends at the newest one. With fewer than two
        samples, the raw samples come back unchanged.
        """
        t = self.times()
        v = self.values()
        if step is None:
            step = self.step()
        if step is None or step <= 0 or t.size < 2:
            return t, v
        n = int(math.floor((t[-1] - t[0]) / step + 1e-9)) + 1
        grid = t[0] + step * np.arange(n)
        return grid, np.interp(grid, t, v)

    def recent_level(self, count: int = 16) -> float | None:
        """Median of the newest ``count`` samples: a level robust to spikes, or None when empty."""
        if not self._v:
            return None
        k = min(count, len(self._v))
        tail = [self._v[-i] for i in range(1, k + 1)]
        return float(np.median(tail))


def runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a series into runs of equal consecutive values.

    Returns ``(starts, levels)``: the index where each run starts and its value. The run
    levels are the series with its repetitions removed, one sample per change.
    """
    if values.size == 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate(([0], change))
    return starts, values[starts]
