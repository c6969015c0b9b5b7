"""Tests of the churn model: exponential online times, Poisson arrivals."""

from __future__ import annotations

import random
import statistics

import pytest

from dnaagent.sim.churn import Churn
from dnaagent.sim.clock import SimClock


class Population:
    """A set of peers that the churn model adds to and removes from."""

    def __init__(self, clock: SimClock, size: int) -> None:
        self.clock = clock
        self.next_id = size
        self.online: dict[int, float] = {i: 0.0 for i in range(size)}
        self.stays: list[float] = []
        self.graceful: list[bool] = []
        self.samples: list[int] = []

    def spawn(self) -> int:
        """Bring a new peer online and return it."""
        peer = self.next_id
        self.next_id += 1
        self.online[peer] = self.clock.seconds()
        return peer

    def depart(self, peer: int, graceful: bool) -> None:
        """Take a peer offline, recording how long it stayed."""
        self.stays.append(self.clock.seconds() - self.online.pop(peer))
        self.graceful.append(graceful)


def run(seed: int, size: int = 200, mean: float = 600.0, horizon: float = 20_000.0) -> Population:
    """Run churn for ``horizon`` seconds, sampling the population size every 10 s."""
    clock = SimClock(strict=True)
    pop = Population(clock, size)
    churn: Churn[int] = Churn(
        clock, random.Random(seed), mean, size, pop.spawn, pop.depart, leave_share=0.25
    )
    churn.start(list(pop.online))
    t = 0.0
    while t < horizon:
        t += 10
        clock.run_until(t)
        pop.samples.append(len(pop.online))
    churn.stop()
    assert churn.arrivals == pop.next_id - size
    assert churn.crashes + churn.leaves == len(pop.stays)
    return pop


def test_online_times_are_exponential_with_the_mean() -> None:
    """Completed stays average M (peers present at start included, by memorylessness)."""
    pop = run(1)
    assert len(pop.stays) > 5000
    assert statistics.fmean(pop.stays) == pytest.approx(600, rel=0.05)
    # exponential: the median is M ln 2
    assert statistics.median(pop.stays) == pytest.approx(600 * 0.6931, rel=0.07)


def test_size_stays_constant_on_average() -> None:
    """Poisson arrivals at N/M keep the mean population at N."""
    pop = run(2)
    assert statistics.fmean(pop.samples) == pytest.approx(200, rel=0.04)
    assert min(pop.samples) > 120 and max(pop.samples) < 280


def test_graceful_share() -> None:
    """About the configured share of departures are graceful leaves."""
    pop = run(3)
    assert sum(pop.graceful) / len(pop.graceful) == pytest.approx(0.25, abs=0.03)


def test_reproducible_and_stoppable() -> None:
    """The same seed gives the same history; after stop() nothing more happens."""
    assert run(4, horizon=3000).stays == run(4, horizon=3000).stays
    clock = SimClock(strict=True)
    pop = Population(clock, 10)
    churn: Churn[int] = Churn(clock, random.Random(5), 60, 10, pop.spawn, pop.depart)
    churn.start(list(pop.online))
    clock.run_until(30)
    churn.stop()
    seen = (len(pop.stays), pop.next_id)
    clock.run_until(10_000)
    assert (len(pop.stays), pop.next_id) == seen
    assert not churn.running


def test_rejects_bad_parameters() -> None:
    """Non-positive mean, empty target or a share outside [0, 1] are refused."""
    clock = SimClock()
    rng = random.Random()
    with pytest.raises(ValueError):
        Churn(clock, rng, 0, 10, lambda: 0, lambda p, g: None)
    with pytest.raises(ValueError):
        Churn(clock, rng, 10, 0, lambda: 0, lambda p, g: None)
    with pytest.raises(ValueError):
        Churn(clock, rng, 10, 10, lambda: 0, lambda p, g: None, leave_share=1.5)
