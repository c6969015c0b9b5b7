"""Tests of the simulator's heap-based discrete-event clock."""

from __future__ import annotations

import random

import pytest
from twisted.internet import defer, task
from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface.verify import verifyObject

from dnaagent.sim.clock import SimClock


def test_provides_reactor_time_and_delayed_call() -> None:
    """The clock and its calls provide Twisted's interfaces, so Twisted code accepts them."""
    clock = SimClock()
    assert verifyObject(IReactorTime, clock)
    assert verifyObject(IDelayedCall, clock.callLater(1, lambda: None))


def test_calls_run_in_time_order_and_time_advances() -> None:
    """Calls run in order of their due time, and seconds() reports each call's time."""
    clock = SimClock(start=10.0)
    seen: list[tuple[str, float]] = []
    for name, delay in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
        clock.callLater(delay, lambda n=name: seen.append((n, clock.seconds())))
    assert clock.run_until(12.5) == 2
    assert seen == [("a", 11.0), ("b", 12.0)]
    assert clock.seconds() == 12.5
    clock.run()
    assert seen[-1] == ("c", 13.0)
    assert clock.events == 3


def test_equal_times_run_fifo() -> None:
    """Calls due at the same time run in the order they were scheduled."""
    clock = SimClock()
    seen: list[int] = []
    for i in range(100):
        if i % 2:
            clock.callLater(5.0, seen.append, i)
        else:
            clock.schedule(5.0, seen.append, i)
    clock.run()
    assert seen == list(range(100))


def test_cancel_prevents_the_call_and_second_cancel_raises() -> None:
    """A cancelled call never runs; cancelling twice or after running raises Twisted's errors."""
    clock = SimClock()
    seen: list[str] = []
    call = clock.callLater(1, seen.append, "x")
    other = clock.callLater(2, seen.append, "y")
    call.cancel()
    assert not call.active()
    assert clock.getDelayedCalls() == [other]
    with pytest.raises(AlreadyCancelled):
        call.cancel()
    clock.run()
    assert seen == ["y"]
    with pytest.raises(AlreadyCalled):
        other.cancel()
    with pytest.raises(AlreadyCalled):
        other.reset(1)


def test_reset_and_delay_move_the_call() -> None:
    """reset() counts from now, delay() from the current due time; the call runs once."""
    clock = SimClock()
    seen: list[float] = []
    call = clock.callLater(5, lambda: seen.append(clock.seconds()))
    clock.advance(1)
    call.reset(10)  # due at 11
    assert call.getTime() == 11
    call.delay(2)  # due at 13
    assert call.getTime() == 13
    call.delay(-1)  # due at 12
    clock.run_until(11.9)
    assert seen == []
    clock.run()
    assert seen == [12.0]
    assert len(clock.getDelayedCalls()) == 0


def test_calls_scheduled_while_running_run_if_due() -> None:
    """A call scheduled from inside a call runs in the same run_until if it is due."""
    clock = SimClock()
    seen: list[float] = []

    def first() -> None:
        clock.callLater(0.5, lambda: seen.append(clock.seconds()))
        clock.callLater(5, lambda: seen.append(clock.seconds()))

    clock.callLater(1, first)
    clock.run_until(2)
    assert seen == [1.5]


def test_negative_delay_runs_now() -> None:
    """A negative delay is treated as zero, never as a call in the past."""
    clock = SimClock(start=3)
    call = clock.callLater(-1, lambda: None)
    assert call.getTime() == 3


def test_max_events_stops_early() -> None:
    """run() and run_until() honour max_events."""
    clock = SimClock()
    for i in range(10):
        clock.schedule(i, lambda: None)
    assert clock.run_until(100, max_events=4) == 4
    assert clock.seconds() == 3
    assert clock.run(max_events=3) == 3
    assert clock.run() == 3


def test_errors_are_counted_or_raised() -> None:
    """A raising call is counted and the run goes on; in strict mode it propagates."""
    clock = SimClock()
    seen: list[int] = []
    clock.callLater(1, lambda: 1 / 0)
    clock.callLater(2, seen.append, 2)
    clock.run()
    assert clock.errors == 1 and seen == [2]
    assert isinstance(clock.first_errors[0], ZeroDivisionError)

    strict = SimClock(strict=True)
    strict.callLater(1, lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        strict.run()


def test_heap_is_compacted_under_many_cancellations() -> None:
    """Cancelled entries do not pile up: the heap is rebuilt when they dominate."""
    clock = SimClock()
    keep = [clock.callLater(1000 + i, lambda: None) for i in range(10)]
    for i in range(50_000):
        clock.callLater(1 + i * 1e-3, lambda: None).cancel()
    assert len(clock._heap) < 2 * SimClock.COMPACT_MIN + len(keep)
    assert clock.pending() == len(keep)
    assert clock.run() == len(keep)


def test_matches_task_clock_on_a_random_workload() -> None:
    """A random mix of callLater/cancel/reset runs the same calls in the same order as
    task.Clock (task.Clock reports the end of advance() as the time, so only order is
    compared; the exact times are checked in the other tests)."""

    def trace(clock: IReactorTime, advance: object) -> list[int]:
        rng = random.Random(7)
        out: list[int] = []
        calls = []
        for i in range(2000):
            calls.append(clock.callLater(rng.uniform(0, 50), lambda i=i: out.append(i)))
            victim = rng.choice(calls)
            if victim.active():
                if rng.random() < 0.3:
                    victim.cancel()
                elif rng.random() < 0.3:
                    victim.reset(rng.uniform(0, 50))
            if i % 100 == 0:
                advance(rng.uniform(0, 3))  # type: ignore[operator]
        advance(1000)  # type: ignore[operator]
        return out

    sim = SimClock()
    ref = task.Clock()
    assert trace(sim, sim.advance) == trace(ref, ref.advance)


def test_deferred_timeout_works() -> None:
    """Deferred.addTimeout with the clock times out, and is cancelled when the result comes."""
    clock = SimClock()
    slow: defer.Deferred[int] = defer.Deferred()
    slow.addTimeout(2, clock)
    failures: list[object] = []
    slow.addErrback(failures.append)
    fast: defer.Deferred[int] = defer.Deferred()
    fast.addTimeout(2, clock)
    results: list[int] = []
    fast.addCallback(results.append)
    clock.advance(1)
    fast.callback(7)
    assert clock.getDelayedCalls() != []
    clock.advance(1.5)
    assert results == [7]
    assert len(failures) == 1
    assert clock.getDelayedCalls() == []


def test_looping_call_and_defer_later_work() -> None:
    """task.LoopingCall with .clock set, and task.deferLater, run on simulated time."""
    clock = SimClock()
    ticks: list[float] = []
    loop = task.LoopingCall(lambda: ticks.append(clock.seconds()))
    loop.clock = clock
    loop.start(10, now=True)
    later = task.deferLater(clock, 25, lambda: "done")
    got: list[str] = []
    later.addCallback(got.append)
    clock.run_until(35)
    loop.stop()
    assert ticks == [0.0, 10.0, 20.0, 30.0]
    assert got == ["done"]
    assert clock.run() == 0
