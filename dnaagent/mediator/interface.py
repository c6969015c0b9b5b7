"""What a test module must provide to the Mediator, and what a test returns.

A test module groups tests that are alike in what they check (seed 000 §2.1).
It names its tests, says which of them form the default sequence, which are
optional, and which tests depend on which. The Mediator runs a selection of a
module's tests in parallel, starting a test only when all its dependencies
succeeded.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zope.interface import Attribute, Interface


class Status(enum.StrEnum):
    """How a test ended."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"
    SKIPPED = "skipped"

    @property
    def succeeded(self) -> bool:
        """True when tests that depend on this one may run (ok or warning)."""
        return self in (Status.OK, Status.WARNING)


@dataclass(frozen=True)
class TestSpec:
    """One test of a module: its name, what it checks and what it needs."""

    __test__ = False  # not a pytest test class

    name: str
    description: str
    depends_on: tuple[str, ...] = ()
    default: bool = True
    timeout: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What a test itself returns: a status, a sentence and the evidence."""

    status: Status
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, message: str, **details: Any) -> Outcome:
        """A successful outcome."""
        return cls(Status.OK, message, details)

    @classmethod
    def warning(cls, message: str, **details: Any) -> Outcome:
        """Success with a remark the operator should read."""
        return cls(Status.WARNING, message, details)

    @classmethod
    def error(cls, message: str, **details: Any) -> Outcome:
        """A failure."""
        return cls(Status.ERROR, message, details)

    @classmethod
    def skipped(cls, message: str, **details: Any) -> Outcome:
        """The test did not run; the message says why."""
        return cls(Status.SKIPPED, message, details)


@dataclass(frozen=True)
class TestResult:
    """A test's outcome as the Mediator records it."""

    __test__ = False  # not a pytest test class

    module: str
    test: str
    status: Status
    message: str
    details: Mapping[str, Any]
    started: float
    duration: float
    origin: str = "user"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary (the shape of ``dnactl --json`` output)."""
        return {
            "module": self.module,
            "test": self.test,
            "status": self.status.value,
            "message": self.message,
            "details": _jsonable(self.details),
            "started": self.started,
            "duration": round(self.duration, 6),
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TestResult:
        """Rebuild a result from :meth:`to_json` output."""
        return cls(
            module=str(data["module"]),
            test=str(data["test"]),
            status=Status(data["status"]),
            message=str(data["message"]),
            details=dict(data.get("details") or {}),
            started=float(data["started"]),
            duration=float(data["duration"]),
            origin=str(data.get("origin", "user")),
        )


def _jsonable(value: Any) -> Any:
    """Make details JSON-safe: tuples become lists, odd objects strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class InvalidParameters(ValueError):
    """A parameter given for a module run is unknown or bad."""


class ITestRun(Interface):
    """One run of a module: the shared context of the tests it runs."""

    def run_test(name: str) -> Any:
        """Run the test ``name`` and return an :class:`Outcome`.

        The return value may be an Outcome, a Deferred firing with one, or a
        coroutine returning one. An exception is reported as an error.
        """


class ITestModule(Interface):
    """A test module the Mediator can run (seed 000 §2.1, "Interface")."""

    name = Attribute("short module name, as used by dnactl (str)")
    description = Attribute("one sentence saying what the module tests (str)")
    tests = Attribute(
        "sequence of TestSpec: the default sequence first, in its order, then the optional tests"
    )
    parameters = Attribute("mapping of parameter name to help text for open_run()")

    def open_run(params: Mapping[str, str]) -> ITestRun:
        """Validate ``params`` and return a run sharing them among tests.

        Raises :class:`InvalidParameters` for an unknown or bad parameter.
        """


def default_tests(module: ITestModule) -> list[str]:
    """The names of a module's default sequence, in order."""
    return [spec.name for spec in module.tests if spec.default]


def spec_map(module: ITestModule) -> dict[str, TestSpec]:
    """A module's tests by name."""
    return {spec.name: spec for spec in module.tests}


def describe(module: ITestModule) -> dict[str, Any]:
    """A JSON-ready description of a module (``dnactl modules``)."""
    return {
        "name": module.name,
        "description": module.description,
        "parameters": dict(module.parameters),
        "tests": [
            {
                "name": spec.name,
                "description": spec.description,
                "depends_on": list(spec.depends_on),
                "default": spec.default,
                "timeout": spec.timeout,
            }
            for spec in module.tests
        ],
    }


TestSpecs = Sequence[TestSpec]
