"""Autonomous runs of test modules: the Mediator "schedules a test itself".

Each scheduled module runs every ``interval`` seconds, give or take a random
``jitter`` share so that a fleet of agents started together does not test in
lock step. The first run comes after a random part of one jittered interval.
A run that fails is logged and the schedule goes on; a run still going when
the next is due is not started twice.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from dnaagent.mediator.mediator import Mediator


class Scheduler(Service):
    """Runs modules of a :class:`Mediator` on a jittered interval."""

    log = Logger()

    def __init__(
        self,
        mediator: Mediator,
        clock: IReactorTime,
        modules: Sequence[str],
        interval: float,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.mediator = mediator
        self.clock = clock
        self.modules = list(modules)
        self.interval = interval
        self.jitter = jitter
        self.rng = rng or random.Random()
        self._calls: dict[str, IDelayedCall] = {}
        self._running: set[str] = set()
        self.runs = 0
        self.failures = 0

    def next_delay(self) -> float:
        """One interval with its random jitter applied."""
        spread = self.interval * self.jitter
        return self.interval + self.rng.uniform(-spread, spread)

    def startService(self) -> None:
        """Check the modules exist and schedule the first run of each."""
        for name in self.modules:
            self.mediator.module(name)  # raises UnknownModuleError at start
        super().startService()
        for name in self.modules:
            self._schedule(name, self.rng.uniform(0, self.next_delay()))

    def stopService(self) -> None:
        """Cancel every pending run."""
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()
        return super().stopService()

    def next_runs(self) -> dict[str, float]:
        """When each module runs next (clock seconds)."""
        return {name: call.getTime() for name, call in self._calls.items() if call.active()}

    def _schedule(self, name: str, delay: float) -> None:
        if self.running:
            self._calls[name] = self.clock.callLater(delay, self._fire, name)

    def _fire(self, name: str) -> None:
        self._calls.pop(name, None)
        self._schedule(name, self.next_delay())
        if name in self._running:
            self.log.warn(
                "scheduled run of {module} skipped: the last one is still going", module=name
            )
            return
        self._running.add(name)
        try:
            d = self.mediator.run(name, origin="schedule")
        except Exception:
            self._running.discard(name)
            self.failures += 1
            self.log.failure("scheduled run of {module} could not start", module=name)
            return

        def finished(results: object) -> None:
            self.runs += 1

        def failed(failure: object) -> None:
            self.failures += 1
            self.log.failure("scheduled run of {module} failed", failure, module=name)

        d.addCallbacks(finished, failed)
        d.addBoth(lambda _: self._running.discard(name))
