"""Churn: peers that come and go, as in the paper's simulations.

Every peer stays online for an exponentially distributed time with mean ``M``; new peers
arrive as a Poisson process with rate ``N / M``, so that the number of peers online stays
``N`` on average (an M/M/infinity system whose mean occupancy is rate x mean stay). A
departing peer either crashes (silently disappears) or leaves gracefully; the share of
graceful leaves is configurable. What "spawn" and "depart" mean is up to the caller (the
scenario joins a new overlay node through a random live one, and stops or crashes a node).

All draws come from the ``random.Random`` given, so a run is reproducible from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from dnaagent.sim.clock import SimClock

__all__ = ["Churn"]

N = TypeVar("N")


class Churn(Generic[N]):
    """Drive departures and arrivals of peers on a simulation clock.

    :param clock: the simulation clock.
    :param rng: the random source of every draw.
    :param mean_online_s: the mean online time ``M`` of a peer, in seconds.
    :param target_size: the mean number of peers ``N`` to keep online.
    :param spawn: called for each arrival; returns the new peer (it then gets an online
        time of its own).
    :param depart: called as ``depart(peer, graceful)`` when a peer's online time ends.
    :param leave_share: the probability that a departure is a graceful leave rather than
        a crash.
    """

    def __init__(
        self,
        clock: SimClock,
        rng: random.Random,
        mean_online_s: float,
        target_size: int,
        spawn: Callable[[], N],
        depart: Callable[[N, bool], None],
        leave_share: float = 0.0,
    ) -> None:
        if mean_online_s <= 0:
            raise ValueError(f"mean online time must be positive, got {mean_online_s}")
        if target_size < 1:
            raise ValueError(f"target size must be at least 1, got {target_size}")
        if not 0.0 <= leave_share <= 1.0:
            raise ValueError(f"leave share must be in [0, 1], got {leave_share}")
        self.clock = clock
        self.mean_online_s = mean_online_s
        self.target_size = target_size
        self.arrival_rate = target_size / mean_online_s
        self.leave_share = leave_share
        self._rng = rng
        self._spawn = spawn
        self._depart = depart
        self._running = False
        self._epoch = 0
        #: Counters of what happened so far.
        self.arrivals = 0
        self.crashes = 0
        self.leaves = 0

    @property
    def running(self) -> bool:
        """Whether churn is currently active."""
        return self._running

    def start(self, peers: Iterable[N]) -> None:
        """Start churn: give each current peer an online time and schedule arrivals.

        Online times are memoryless, so peers already online get a fresh Exp(M) draw.
        """
        if self._running:
            return
        self._running = True
        self._epoch += 1
        for peer in peers:
            self.track(peer)
        self._schedule_arrival()

    def stop(self) -> None:
        """Stop churn: pending departures and arrivals are ignored from now on."""
        self._running = False
        self._epoch += 1

    def track(self, peer: N) -> None:
        """Give ``peer`` an online time, after which it departs."""
        if self._running:
            stay = self._rng.expovariate(1.0 / self.mean_online_s)
            self.clock.schedule(stay, self._end_of_stay, peer, self._epoch)

    def _end_of_stay(self, peer: N, epoch: int) -> None:
        if epoch != self._epoch:
            return
        graceful = self._rng.random() < self.leave_share
        if graceful:
            self.leaves += 1
        else:
            self.crashes += 1
        self._depart(peer, graceful)

    def _schedule_arrival(self) -> None:
        gap = self._rng.expovariate(self.arrival_rate)
        self.clock.schedule(gap, self._arrive, self._epoch)

    def _arrive(self, epoch: int) -> None:
        if epoch != self._epoch:
            return
        self.arrivals += 1
        peer = self._spawn()
        self.track(peer)
        self._schedule_arrival()
