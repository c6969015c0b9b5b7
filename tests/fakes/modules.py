"""A scriptable test module for Mediator and control tests.

Each test of a :class:`ScriptedModule` answers with what the test script says:
an :class:`Outcome` at once, a Deferred the test fires itself, a coroutine,
an exception, or nothing at all (to exercise timeouts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from dnaagent.mediator.interface import (
    InvalidParameters,
    ITestModule,
    ITestRun,
    Outcome,
    TestSpec,
)

Behaviour = Outcome | Callable[[], Any]


@implementer(ITestRun)
class _Run:
    def __init__(self, module: ScriptedModule, params: Mapping[str, str]) -> None:
        self.module = module
        self.params = dict(params)

    def run_test(self, name: str) -> Any:
        self.module.started.append(name)
        behaviour = self.module.script.get(name, Outcome.ok(f"{name} fine"))
        if isinstance(behaviour, Outcome):
            return behaviour
        return behaviour()


@implementer(ITestModule)
class ScriptedModule:
    """A module whose tests do what ``script`` says."""

    description = "a module for tests"
    parameters = {"nic": "interface name (must start with 'eth')"}

    def __init__(
        self,
        specs: list[TestSpec],
        script: dict[str, Behaviour] | None = None,
        name: str = "fake",
    ) -> None:
        self.name = name
        self.tests = tuple(specs)
        self.script: dict[str, Behaviour] = dict(script or {})
        self.started: list[str] = []
        self.runs: list[_Run] = []

    def open_run(self, params: Mapping[str, str]) -> ITestRun:
        """Accept only the ``nic`` parameter, and only ``eth*`` values."""
        for key, value in params.items():
            if key != "nic":
                raise InvalidParameters(f"unknown parameter {key!r}")
            if not value.startswith("eth"):
                raise InvalidParameters(f"no interface named {value!r}")
        run = _Run(self, params)
        self.runs.append(run)
        return run


def pending() -> Callable[[], defer.Deferred[Outcome]]:
    """A behaviour that never answers unless the test fires the Deferred."""
    return lambda: defer.Deferred()


def paper_like_specs() -> list[TestSpec]:
    """Three base tests and two dependents, plus an optional test."""
    base = ("NIC", "Link", "Loopback")
    return [
        TestSpec("NIC", "nic"),
        TestSpec("Link", "link"),
        TestSpec("Loopback", "loopback"),
        TestSpec("Address", "address", base),
        TestSpec("Resolver", "resolver", base),
        TestSpec("Extra", "extra", ("Address",), default=False),
    ]
