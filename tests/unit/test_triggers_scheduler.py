"""Trigger rules and the autonomous schedule."""

from __future__ import annotations

import random

import pytest
from twisted.internet import defer, task

from dnaagent.mediator.interface import Outcome, Status, TestResult, TestSpec
from dnaagent.mediator.mediator import Mediator
from dnaagent.mediator.scheduler import Scheduler
from dnaagent.mediator.triggers import (
    TEST_FAILED,
    TEST_RECOVERED,
    THRESHOLD_CROSSED,
    StatusChange,
    Threshold,
    Triggers,
)
from tests.fakes.modules import ScriptedModule


def res(status: Status, **details) -> TestResult:
    """A result of local.PingOwnIP with the given status and details."""
    return TestResult("local", "PingOwnIP", status, "m", details, 10.0, 0.1)


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (None, Status.ERROR, TEST_FAILED),
        (Status.OK, Status.ERROR, TEST_FAILED),
        (Status.WARNING, Status.ERROR, TEST_FAILED),
        (Status.SKIPPED, Status.ERROR, TEST_FAILED),
        (Status.ERROR, Status.OK, TEST_RECOVERED),
        (Status.ERROR, Status.WARNING, TEST_RECOVERED),
        (Status.ERROR, Status.ERROR, None),
        (Status.OK, Status.OK, None),
        (Status.ERROR, Status.SKIPPED, None),
        (None, Status.OK, None),
    ],
)
def test_status_change(before, after, kind) -> None:
    """StatusChange fires exactly on transitions into and out of error."""
    prev = res(before) if before else None
    event = StatusChange().evaluate(prev, res(after))
    assert (event.kind if event else None) == kind


def test_threshold_is_edge_triggered() -> None:
    """Threshold fires when a value crosses the limit, not while it stays above."""
    rule = Threshold("local", "PingOwnIP", "rtt_ms", ">", 5.0)
    assert (
        rule.evaluate(res(Status.OK, rtt_ms=1.0), res(Status.OK, rtt_ms=7.0)).kind
        == THRESHOLD_CROSSED
    )
    assert rule.evaluate(res(Status.OK, rtt_ms=7.0), res(Status.OK, rtt_ms=8.0)) is None
    assert rule.evaluate(res(Status.OK, rtt_ms=8.0), res(Status.OK, rtt_ms=2.0)) is None
    assert rule.evaluate(None, res(Status.OK, rtt_ms=9.0)) is not None
    assert rule.evaluate(None, res(Status.OK, rtt_ms="n/a")) is None
    other = TestResult("local", "NICStatus", Status.OK, "m", {"rtt_ms": 99}, 0, 0)
    assert rule.evaluate(None, other) is None


def test_threshold_rejects_unknown_comparison() -> None:
    """A comparison other than <, <=, >, >= is refused."""
    with pytest.raises(ValueError):
        Threshold("local", "X", "v", "==", 1)


def test_subscriber_failure_does_not_stop_others() -> None:
    """A subscriber that raises is logged; the next subscriber still gets the event."""
    triggers = Triggers()
    got = []

    def bad(event):
        raise RuntimeError("boom")

    triggers.subscribe(bad)
    unsubscribe = triggers.subscribe(got.append)
    triggers.feed(res(Status.OK), res(Status.ERROR))
    assert len(got) == 1
    unsubscribe()
    triggers.feed(res(Status.ERROR), res(Status.OK))
    assert len(got) == 1
    assert triggers.fired == 2


def scheduled(script=None, interval=100.0, jitter=0.1):
    """A Scheduler over a one-test module on a fake clock."""
    clock = task.Clock()
    mediator = Mediator(clock)
    module = ScriptedModule([TestSpec("T", "t")], script, name="m")
    mediator.register(module)
    sched = Scheduler(mediator, clock, ["m"], interval, jitter, random.Random(4))
    return sched, module, clock


def test_scheduler_runs_repeatedly_within_jitter() -> None:
    """Runs happen every interval ± jitter, the first within one interval."""
    sched, module, clock = scheduled()
    sched.startService()
    times = []
    for _ in range(2000):
        clock.advance(1)
        if len(module.started) > len(times):
            times.append(clock.seconds())
    assert len(times) >= 18
    assert times[0] <= 110
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(89 <= g <= 111 for g in gaps)
    assert len({round(g) for g in gaps}) > 3  # really jittered
    assert sched.runs == len(times)


def test_scheduler_survives_failing_runs() -> None:
    """A run whose start raises is counted and the schedule goes on."""
    sched, module, clock = scheduled()
    sched.startService()

    def explode(*a, **kw):
        raise RuntimeError("broken")

    original = sched.mediator.run
    sched.mediator.run = explode  # type: ignore[method-assign]
    clock.pump([1] * 250)
    assert sched.failures >= 2
    sched.mediator.run = original  # type: ignore[method-assign]
    clock.pump([1] * 250)
    assert sched.runs >= 2


def test_scheduler_does_not_overlap_runs() -> None:
    """While a run is still going, the next due run of the same module is skipped."""
    gate: defer.Deferred = defer.Deferred()
    sched, module, clock = scheduled({"T": lambda: gate}, interval=10, jitter=0)
    sched.mediator.default_timeout = 1000
    sched.startService()
    clock.pump([1] * 35)
    assert module.started == ["T"]
    gate.callback(Outcome.ok("done"))
    clock.pump([1] * 10)
    assert len(module.started) == 2


def test_scheduler_stop_cancels_pending_runs() -> None:
    """After stopService no further run starts."""
    sched, module, clock = scheduled()
    sched.startService()
    sched.stopService()
    clock.advance(1000)
    assert module.started == []
    assert clock.getDelayedCalls() == []


def test_scheduler_rejects_bad_settings() -> None:
    """Non-positive interval or jitter outside [0, 1) are refused."""
    clock = task.Clock()
    with pytest.raises(ValueError):
        Scheduler(Mediator(clock), clock, [], 0)
    with pytest.raises(ValueError):
        Scheduler(Mediator(clock), clock, [], 10, 1.5)


def test_threshold_parse() -> None:
    """Thresholds are written MODULE.TEST.DETAIL OP NUMBER; nonsense is refused."""
    rule = Threshold.parse(" local.PingOwnIP.rtt_ms >= 2.5 ")
    assert rule == Threshold("local", "PingOwnIP", "rtt_ms", ">=", 2.5)
    assert Threshold.parse("m.t.loss<-1e-3").limit == -0.001
    for bad in ("local.PingOwnIP > 5", "local.PingOwnIP.rtt_ms == 5", "a.b.c > x", ""):
        with pytest.raises(ValueError, match="MODULE.TEST.DETAIL"):
            Threshold.parse(bad)


def test_threshold_config_is_checked_and_used(tmp_path) -> None:
    """[triggers] thresholds are validated at load and become rules of the agent."""
    from dnaagent import config
    from dnaagent.errors import ConfigError
    from dnaagent.service import AgentService

    with pytest.raises(ConfigError, match="triggers.thresholds"):
        config.load(None, {"triggers.thresholds": "local.X > y"})
    cfg = config.load(
        None,
        {
            "triggers.thresholds": "local.PingOwnIP.rtt_ms > 5",
            "agent.state_dir": str(tmp_path),
        },
    )
    agent = AgentService(cfg, task.Clock(), modules=[])
    assert Threshold("local", "PingOwnIP", "rtt_ms", ">", 5.0) in agent.triggers.rules
