"""The ``fault-localized`` event: a distributed test named where a fault is.

:class:`FaultLocalized` is a trigger rule like
:class:`~dnaagent.mediator.triggers.StatusChange`: the Mediator feeds it
every result, and it fires when a distributed test's error names a location
(``details["location"]``) that the previous result did not name. The
notification side turns the event into a dnaFaultLocalized trap.
"""

from __future__ import annotations

from typing import Any

from dnaagent.mediator.interface import Status, TestResult
from dnaagent.mediator.triggers import Event

FAULT_LOCALIZED = "fault-localized"


class FaultLocalized:
    """Fires ``fault-localized`` when a ``module`` result names a new fault location."""

    def __init__(self, module: str = "distributed") -> None:
        self.module = module

    @staticmethod
    def _where(result: TestResult | None) -> tuple[Any, Any] | None:
        if result is None or result.status is not Status.ERROR:
            return None
        location = result.details.get("location")
        if not location:
            return None
        return result.details.get("target"), location

    def evaluate(self, previous: TestResult | None, current: TestResult) -> Event | None:
        """See the class docstring."""
        if current.module != self.module:
            return None
        where = self._where(current)
        if where is None or where == self._where(previous):
            return None
        target, location = where
        return Event(
            FAULT_LOCALIZED,
            current,
            previous.status if previous is not None else None,
            f"fault towards {target} localized: {location}",
            {"target": str(target or ""), "location": str(location)},
        )


def install(triggers: Any, module: str = "distributed") -> None:
    """Add the rule to a :class:`~dnaagent.mediator.triggers.Triggers` once."""
    if not any(isinstance(r, FaultLocalized) for r in triggers.rules):
        triggers.rules.append(FaultLocalized(module))
