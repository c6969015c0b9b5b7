"""Rate limits: token buckets per peer and a probe cap per target.

Both take the current time as an argument, so that they are pure and tests
drive them with any clock. Both bound their memory: they track at most
``max_keys`` peers or targets and forget the least recently used ones
(a forgotten peer starts again with a full bucket, which is the state it
would have reached anyway after being idle; a forgotten target loses its
history, so the table is sized well above the number of targets a minute
can bring).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Generic, TypeVar

K = TypeVar("K")


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; return whether it did."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are available (0 if they are)."""
        self._refill(now)
        if self.tokens >= cost:
            return 0.0
        return (cost - self.tokens) / self.rate if self.rate > 0 else float("inf")


class TokenBuckets(Generic[K]):
    """One :class:`TokenBucket` per key (per peer), least recently used forgotten."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def take(self, key: K, now: float, cost: float = 1.0) -> bool:
        """Spend from ``key``'s bucket; False when it is empty."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, cost)

    def wait(self, key: K, now: float, cost: float = 1.0) -> float:
        """Seconds until ``key`` may spend ``cost``."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait(now, cost)

    def __len__(self) -> int:
        return len(self._buckets)


class TargetCap(Generic[K]):
    """At most ``limit`` probes to any one target per ``window`` seconds, whoever asks."""

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._sent: OrderedDict[K, deque[tuple[float, int]]] = OrderedDict()
        self._totals: dict[K, int] = {}

    def used(self, key: K, now: float) -> int:
        """Probes sent to ``key`` within the window ending ``now``."""
        history = self._sent.get(key)
        if history is None:
            return 0
        total = self._totals[key]
        while history and history[0][0] <= now - self.window:
            total -= history.popleft()[1]
        self._totals[key] = total
        return total

    def take(self, key: K, now: float, probes: int) -> bool:
        """Record ``probes`` to ``key`` if that stays within the cap; return whether it did."""
        if probes <= 0:
            return True
        if self.used(key, now) + probes > self.limit:
            return False
        history = self._sent.get(key)
        if history is None:
            history = self._sent[key] = deque()
            self._totals[key] = 0
            while len(self._sent) > self.max_keys:
                old, _ = self._sent.popitem(last=False)
                del self._totals[old]
        else:
            self._sent.move_to_end(key)
        history.append((now, probes))
        self._totals[key] += probes
        return True

    def keys(self) -> list[K]:
        """The targets tracked."""
        return list(self._sent)

    def __len__(self) -> int:
        return len(self._sent)
