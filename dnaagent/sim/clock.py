"""A discrete-event clock for simulations: Twisted's ``IReactorTime`` on a binary heap.

:class:`twisted.internet.task.Clock` keeps its calls in a list that it sorts again on
every ``callLater``; with the tens of thousands of pending timers of a simulated overlay
that cost dominates a run. :class:`SimClock` keeps a binary heap instead:

* ``callLater`` pushes one entry (``O(log n)``);
* ``cancel`` only marks the call (lazy deletion); the dead entry is skipped when it reaches
  the top of the heap, and the heap is rebuilt when dead entries outnumber live ones;
* ``reset``/``delay`` push a new entry and make the old one stale through a sequence number.

Calls due at the same time run in the order they were scheduled (FIFO), as with a real
reactor. Time only moves when the simulation asks: :meth:`SimClock.run_until` and
:meth:`SimClock.run`. Twisted helpers that take a clock (``Deferred.addTimeout``,
``task.LoopingCall`` with ``.clock`` set, ``task.deferLater``) work unchanged.

For the simulated network there is also :meth:`SimClock.schedule`, a cheaper,
non-cancellable ``callLater`` that creates no ``IDelayedCall`` object: message deliveries
are the bulk of all events and are never cancelled.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

__all__ = ["SimClock", "SimDelayedCall"]

_log = Logger()

# A heap entry: (time, sequence number, delayed call or None, function, arguments).
# Entries of ``schedule`` carry no delayed call; entries of ``callLater`` carry the
# call, whose own fields (function, arguments, current sequence number) are used.
_Entry = tuple[float, int, "SimDelayedCall | None", Any, tuple[Any, ...]]


def _live(call: SimDelayedCall, seq: int) -> bool:
    """Tell whether a heap entry of ``call`` with sequence number ``seq`` will still run."""
    return not call.cancelled and call._seq == seq


@implementer(IDelayedCall)
class SimDelayedCall:
    """A call scheduled on a :class:`SimClock`; the ``IDelayedCall`` handed to callers."""

    __slots__ = ("time", "func", "args", "kw", "cancelled", "called", "_seq", "_clock")

    def __init__(
        self,
        clock: SimClock,
        time: float,
        seq: int,
        func: Callable[..., object],
        args: tuple[Any, ...],
        kw: dict[str, Any],
    ) -> None:
        self._clock = clock
        self.time = time
        self._seq = seq
        self.func = func
        self.args = args
        self.kw = kw
        self.cancelled = False
        self.called = False

    def getTime(self) -> float:
        """Return the simulated time at which the call will run."""
        return self.time

    def active(self) -> bool:
        """Return ``True`` while the call has neither run nor been cancelled."""
        return not (self.cancelled or self.called)

    def _check_active(self) -> None:
        if self.cancelled:
            raise AlreadyCancelled()
        if self.called:
            raise AlreadyCalled()

    def cancel(self) -> None:
        """Cancel the call; its heap entry is dropped lazily.

        :raises AlreadyCancelled: if it was cancelled before.
        :raises AlreadyCalled: if it has already run.
        """
        self._check_active()
        self.cancelled = True
        self._clock._dead += 1
        self._clock._maybe_compact()

    def reset(self, secondsFromNow: float) -> None:  # noqa: N803 (Twisted's name)
        """Run the call ``secondsFromNow`` seconds after the current simulated time."""
        self._check_active()
        self._clock._move(self, self._clock._now + secondsFromNow)

    def delay(self, secondsLater: float) -> None:  # noqa: N803 (Twisted's name)
        """Postpone the call by ``secondsLater`` seconds (may be negative)."""
        self._check_active()
        self._clock._move(self, self.time + secondsLater)

    def __repr__(self) -> str:
        name = getattr(self.func, "__qualname__", repr(self.func))
        state = "cancelled" if self.cancelled else "called" if self.called else "active"
        return f"<SimDelayedCall {name} at {self.time:.6f} ({state})>"


@implementer(IReactorTime)
class SimClock:
    """Simulated time driven by a binary heap of pending calls.

    :param start: the initial simulated time in seconds.
    :param strict: if true, an exception raised by a scheduled call propagates out of
        :meth:`run_until`/:meth:`run` (good for tests); otherwise it is logged, counted
        in :attr:`errors` and the simulation goes on, as a reactor would.
    """

    #: Rebuild the heap when it holds at least this many entries and more dead than live.
    COMPACT_MIN = 4096

    def __init__(self, start: float = 0.0, strict: bool = False) -> None:
        self._now = float(start)
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._dead = 0
        self.strict = strict
        #: Number of scheduled calls that have run (events processed).
        self.events = 0
        #: Number of scheduled calls that raised (only counted when not strict).
        self.errors = 0
        #: The first few exceptions raised by scheduled calls, for diagnosis.
        self.first_errors: list[BaseException] = []

    # -- IReactorTime -------------------------------------------------------------

    def seconds(self) -> float:
        """Return the current simulated time in seconds."""
        return self._now

    def callLater(  # noqa: N802 (Twisted's name)
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> SimDelayedCall:
        """Run ``callable(*args, **kw)`` ``delay`` seconds from now; return its handle."""
        if delay < 0:
            delay = 0.0
        time = self._now + delay
        seq = next(self._seq)
        call = SimDelayedCall(self, time, seq, callable, args, kw)
        heapq.heappush(self._heap, (time, seq, call, None, ()))
        return call

    def getDelayedCalls(self) -> list[SimDelayedCall]:  # noqa: N802 (Twisted's name)
        """Return every pending, active call (each once)."""
        return [
            entry[2]
            for entry in self._heap
            if entry[2] is not None and entry[2].active() and entry[2]._seq == entry[1]
        ]

    # -- simulation API -----------------------------------------------------------

    def schedule(self, delay: float, func: Callable[..., object], *args: object) -> None:
        """Run ``func(*args)`` ``delay`` seconds from now; cheap and not cancellable."""
        time = self._now + (delay if delay > 0 else 0.0)
        heapq.heappush(self._heap, (time, next(self._seq), None, func, args))

    def pending(self) -> int:
        """Return the number of heap entries that will still run (approximately live)."""
        return len(self._heap) - self._dead

    def next_time(self) -> float | None:
        """Return the time of the next live call, or ``None`` if nothing is pending."""
        heap = self._heap
        while heap:
            entry = heap[0]
            call = entry[2]
            if call is None or (not call.cancelled and call._seq == entry[1]):
                return entry[0]
            heapq.heappop(heap)
            self._dead -= 1
        return None

    def advance(self, amount: float) -> None:
        """Move time forward by ``amount`` seconds, running everything due (like ``Clock``)."""
        self.run_until(self._now + amount)

    def run_until(self, until: float, max_events: int | None = None) -> int:
        """Run every call due at or before ``until``, then set the time to ``until``.

        Calls scheduled while running are run too if they fall due before ``until``.

        :param max_events: stop after this many calls (time then stays at the last one).
        :return: the number of calls run.
        """
        heap = self._heap
        pop = heapq.heappop
        ran = 0
        limit = max_events if max_events is not None else -1
        try:
            while heap and heap[0][0] <= until:
                if ran == limit:
                    return ran
                time, seq, call, func, args = pop(heap)
                if call is None:
                    self._now = time
                    ran += 1
                    try:
                        func(*args)
                    except Exception as e:
                        self._failed(e)
                    continue
                if call.cancelled or call._seq != seq:
                    self._dead -= 1
                    continue
                self._now = time
                call.called = True
                ran += 1
                try:
                    call.func(*call.args, **call.kw)
                except Exception as e:
                    self._failed(e)
            if until > self._now:
                self._now = until
        finally:
            self.events += ran
        return ran

    def run(self, max_events: int | None = None) -> int:
        """Run until nothing is pending (or ``max_events`` calls ran); return the count."""
        ran = 0
        while True:
            t = self.next_time()
            if t is None:
                return ran
            budget = None if max_events is None else max_events - ran
            if budget is not None and budget <= 0:
                return ran
            ran += self.run_until(t, budget)

    # -- internals ----------------------------------------------------------------

    def _failed(self, error: Exception) -> None:
        if self.strict:
            raise error
        self.errors += 1
        if len(self.first_errors) < 10:
            self.first_errors.append(error)
            _log.failure("simulated call raised", failure=None)

    def _move(self, call: SimDelayedCall, time: float) -> None:
        """Give ``call`` a new due time: push a fresh entry, leave the old one stale."""
        if time < self._now:
            time = self._now
        call.time = time
        call._seq = seq = next(self._seq)
        heapq.heappush(self._heap, (time, seq, call, None, ()))
        self._dead += 1
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        heap = self._heap
        if self._dead > self.COMPACT_MIN and self._dead * 2 > len(heap):
            # In place: run_until holds a reference to this very list.
            heap[:] = [e for e in heap if e[2] is None or _live(e[2], e[1])]
            heapq.heapify(heap)
            self._dead = 0
