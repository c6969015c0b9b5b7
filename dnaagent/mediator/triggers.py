"""Trigger rules: results in, events out.

A trigger rule compares a test's new result with the previous one and may
produce an :class:`Event` ("the condition for some trigger event is met",
seed 000 §2). Other components subscribe to events: the SNMP part turns them
into traps and informs. Rules are pure; :class:`Triggers` fans events out to
subscribers and keeps one subscriber's failure from reaching the others.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.logger import Logger

from dnaagent.mediator.interface import Status, TestResult

TEST_FAILED = "test-failed"
TEST_RECOVERED = "test-recovered"
THRESHOLD_CROSSED = "threshold-crossed"


@dataclass(frozen=True)
class Event:
    """Something an operator should hear about."""

    kind: str
    result: TestResult
    previous_status: Status | None
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "kind": self.kind,
            "module": self.result.module,
            "test": self.result.test,
            "status": self.result.status.value,
            "previous_status": self.previous_status.value if self.previous_status else None,
            "message": self.message,
            "time": self.result.started + self.result.duration,
            "details": dict(self.details),
        }


class TriggerRule(Protocol):
    """Decides from the previous and the new result whether an event is due."""

    def evaluate(self, previous: TestResult | None, current: TestResult) -> Event | None:
        """Return an event, or None."""


class StatusChange:
    """Fires ``test-failed`` on a change to error, ``test-recovered`` back.

    A skipped result says nothing about the test itself and changes nothing.
    A first result that is already an error fires ``test-failed``.
    """

    def evaluate(self, previous: TestResult | None, current: TestResult) -> Event | None:
        """See the class docstring."""
        if current.status is Status.SKIPPED:
            return None
        before = previous.status if previous is not None else None
        name = f"{current.module}.{current.test}"
        if current.status is Status.ERROR and before is not Status.ERROR:
            return Event(TEST_FAILED, current, before, f"{name} failed: {current.message}")
        if before is Status.ERROR and current.status.succeeded:
            return Event(TEST_RECOVERED, current, before, f"{name} recovered: {current.message}")
        return None


_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


_THRESHOLD = re.compile(
    r"^\s*([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\s*(<=|>=|<|>)\s*"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Threshold:
    """Fires when a numeric detail of a test crosses a limit (edge-triggered).

    For example ``Threshold("local", "PingOwnIP", "rtt_ms_max", ">", 5.0)``
    fires when the round-trip time goes above 5 ms, and not again until it
    has come back below.
    """

    module: str
    test: str
    detail: str
    comparison: str
    limit: float

    def __post_init__(self) -> None:
        if self.comparison not in _COMPARISONS:
            raise ValueError(f"comparison must be one of {', '.join(_COMPARISONS)}")

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """Read ``"module.test.detail OP limit"``, e.g. ``"local.PingOwnIP.rtt_ms_max > 5"``.

        Raises ValueError with a sentence saying what is wrong.
        """
        match = _THRESHOLD.match(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not a threshold; write MODULE.TEST.DETAIL OP NUMBER, "
                "e.g. local.PingOwnIP.rtt_ms_max > 5 (OP one of <, <=, >, >=)"
            )
        module, test, detail, comparison, limit = match.groups()
        return cls(module, test, detail, comparison, float(limit))

    def _crossed(self, result: TestResult | None) -> bool | None:
        if result is None:
            return False
        value = result.details.get(self.detail)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return _COMPARISONS[self.comparison](float(value), self.limit)

    def evaluate(self, previous: TestResult | None, current: TestResult) -> Event | None:
        """See the class docstring."""
        if (current.module, current.test) != (self.module, self.test):
            return None
        now = self._crossed(current)
        if not now or self._crossed(previous):
            return None
        value = current.details[self.detail]
        return Event(
            THRESHOLD_CROSSED,
            current,
            previous.status if previous else None,
            f"{self.module}.{self.test}: {self.detail} = {value} {self.comparison} {self.limit:g}",
            {
                "detail": self.detail,
                "value": value,
                "comparison": self.comparison,
                "limit": self.limit,
            },
        )


Subscriber = Callable[[Event], object]


class Triggers:
    """Applies the rules to each new result and hands events to subscribers."""

    log = Logger()

    def __init__(self, rules: list[TriggerRule] | None = None) -> None:
        self.rules: list[TriggerRule] = list(rules) if rules is not None else [StatusChange()]
        self._subscribers: list[Subscriber] = []
        self.fired = 0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every event; returns an unsubscriber."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def feed(self, previous: TestResult | None, current: TestResult) -> list[Event]:
        """Evaluate every rule on a new result and publish what fires."""
        events: list[Event] = []
        for rule in self.rules:
            try:
                event = rule.evaluate(previous, current)
            except Exception:
                self.log.failure("trigger rule {rule!r} failed", rule=rule)
                continue
            if event is not None:
                events.append(event)
        for event in events:
            self.fired += 1
            self.log.info("{kind}: {message}", kind=event.kind, message=event.message)
            for subscriber in list(self._subscribers):
                try:
                    subscriber(event)
                except Exception:
                    self.log.failure("event subscriber {s!r} failed", s=subscriber)
        return events
