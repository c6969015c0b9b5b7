"""The Mediator: the one component that runs tests (seed 000 §2.1).

It receives test requests from the operator (control API, SNMP) or from its
own schedule, runs the selected tests of a module in parallel, starts a test
only when all its dependencies succeeded, stops tests that overrun their
timeout, records every result in the store and feeds the trigger rules.
The dependency logic lives in :mod:`dnaagent.mediator.plan`; this class only
drives it with Deferreds and a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from dnaagent.errors import UnknownModuleError
from dnaagent.mediator.interface import (
    ITestModule,
    ITestRun,
    Outcome,
    Status,
    TestResult,
    TestSpec,
    spec_map,
)
from dnaagent.mediator.plan import RunPlan, check_specs, select
from dnaagent.mediator.store import ResultsStore
from dnaagent.mediator.triggers import Triggers


@dataclass
class ActiveRun:
    """A module run in progress, as ``dnactl status`` shows it."""

    module: str
    tests: list[str]
    origin: str
    started: float
    finished: dict[str, Status] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "module": self.module,
            "tests": self.tests,
            "origin": self.origin,
            "started": self.started,
            "finished": {k: v.value for k, v in self.finished.items()},
        }


class Mediator:
    """Runs test modules and records their results.

    ``max_parallel`` caps how many tests of one run go at once (0: no cap;
    1: one after the other in dependency order).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: ResultsStore | None = None,
        triggers: Triggers | None = None,
        *,
        default_timeout: float = 10.0,
        max_parallel: int = 0,
    ) -> None:
        self.clock = clock
        self.max_parallel = max_parallel
        self.store = store
        self.triggers = triggers if triggers is not None else Triggers()
        self.default_timeout = default_timeout
        self.modules: dict[str, ITestModule] = {}
        self.active: list[ActiveRun] = []
        self.runs_completed = 0
        self._latest: dict[tuple[str, str], TestResult] = {}
        self._listeners: list[Callable[[TestResult], object]] = []
        if store is not None:
            for result in store.latest():
                self._latest[(result.module, result.test)] = result

    def register(self, module: ITestModule) -> None:
        """Add a test module; checks its interface and its dependency graph."""
        verifyObject(ITestModule, module)
        check_specs(module.name, list(module.tests))
        self.modules[module.name] = module

    def module(self, name: str) -> ITestModule:
        """The module named ``name``, or :class:`UnknownModuleError`."""
        try:
            return self.modules[name]
        except KeyError:
            raise UnknownModuleError(name) from None

    def latest(self, module: str | None = None) -> list[TestResult]:
        """The most recent result of every test run so far."""
        return [r for (m, _), r in self._latest.items() if module is None or m == module]

    def on_result(self, listener: Callable[[TestResult], object]) -> None:
        """Call ``listener(result)`` after every result is recorded."""
        self._listeners.append(listener)

    def plan(self, module: str, tests: Iterable[str] | None = None) -> list[str]:
        """The tests a request would run, dependencies included."""
        mod = self.module(module)
        return select(mod.name, list(mod.tests), tests)

    def run(
        self,
        module: str,
        tests: Iterable[str] | None = None,
        params: Mapping[str, str] | None = None,
        *,
        origin: str = "user",
    ) -> defer.Deferred[list[TestResult]]:
        """Run ``tests`` (default: the default sequence) of ``module``.

        Returns a Deferred firing with the results in the module's order,
        each already recorded in the store. Raises at once for an unknown
        module or test and for invalid parameters.
        """
        mod = self.module(module)
        specs = list(mod.tests)
        selection = select(mod.name, specs, tests)
        run: ITestRun = mod.open_run(dict(params or {}))
        plan = RunPlan(specs, selection)
        by_name = spec_map(mod)
        active = ActiveRun(mod.name, selection, origin, self.clock.seconds())
        self.active.append(active)
        results: dict[str, TestResult] = {}
        finished: defer.Deferred[list[TestResult]] = defer.Deferred()
        queue: list[str] = []  # ready, waiting for a free slot (max_parallel)
        running: set[str] = set()

        def record(spec: TestSpec, outcome: Outcome, started: float) -> None:
            result = TestResult(
                module=mod.name,
                test=spec.name,
                status=outcome.status,
                message=outcome.message,
                details=dict(outcome.details),
                started=started,
                duration=max(0.0, self.clock.seconds() - started),
                origin=origin,
            )
            results[spec.name] = result
            active.finished[spec.name] = result.status
            self._record(result)

        def launch(names: list[str], skips: list[Any]) -> None:
            for skip in skips:
                record(
                    by_name[skip.test],
                    Outcome.skipped(skip.message, dependency=skip.dependency),
                    self.clock.seconds(),
                )
            queue.extend(names)
            while queue and (not self.max_parallel or len(running) < self.max_parallel):
                name = queue.pop(0)
                running.add(name)
                self._start_test(run, by_name[name], done)
            if plan.done and not finished.called:
                self.active.remove(active)
                self.runs_completed += 1
                finished.callback([results[n] for n in selection])

        def done(spec: TestSpec, outcome: Outcome, started: float) -> None:
            running.discard(spec.name)
            record(spec, outcome, started)
            launch(*plan.finish(spec.name, outcome.status))

        launch(*plan.start())
        return finished

    def _start_test(
        self,
        run: ITestRun,
        spec: TestSpec,
        done: Callable[[TestSpec, Outcome, float], None],
    ) -> None:
        started = self.clock.seconds()
        timeout = spec.timeout if spec.timeout is not None else self.default_timeout
        d = defer.maybeDeferred(run.run_test, spec.name)
        d.addCallback(_ensure_deferred)
        d.addTimeout(timeout, self.clock)

        def check(value: object) -> Outcome:
            if not isinstance(value, Outcome):
                return Outcome.error(
                    f"the test returned {type(value).__name__} instead of an outcome",
                )
            return value

        def failed(failure: Failure) -> Outcome:
            if failure.check(defer.TimeoutError):
                return Outcome.error(
                    f"no answer within {timeout:g} s: the test was stopped", timeout=timeout
                )
            self.log.failure("test {test} crashed", failure, test=spec.name)
            return Outcome.error(
                f"the test crashed: {failure.getErrorMessage() or failure.type.__name__}",
                exception=failure.type.__name__,
            )

        d.addCallbacks(check, failed)
        d.addCallback(lambda outcome: done(spec, outcome, started))
        d.addErrback(lambda f: self.log.failure("recording {test} failed", f, test=spec.name))

    def _record(self, result: TestResult) -> None:
        key = (result.module, result.test)
        previous = self._latest.get(key)
        if self.store is not None:
            try:
                self.store.add(result)
            except Exception:
                self.log.failure("storing the result of {test} failed", test=result.test)
        self._latest[key] = result
        self.triggers.feed(previous, result)
        for listener in list(self._listeners):
            try:
                listener(result)
            except Exception:
                self.log.failure("result listener {l!r} failed", l=listener)


def _ensure_deferred(value: object) -> object:
    """Let a test return a coroutine as well as a value or a Deferred."""
    if hasattr(value, "__await__") and not isinstance(value, defer.Deferred):
        return defer.ensureDeferred(value)  # type: ignore[arg-type]
    return value
