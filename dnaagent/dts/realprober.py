"""Doubletree over asynchronous probes: :class:`AsyncMonitor`.

:class:`~dnaagent.dts.monitor.Monitor` drives :class:`~dnaagent.dts.doubletree.DoubletreeTrace`
with a synchronous prober (the simulator). Real probes take time, so :class:`AsyncMonitor`
drives the same trace with an asynchronous prober -- anything with::

    probe(destination: str, ttl: int) -> Deferred[Reply]

such as :class:`dnaagent.measure.paris.Prober` (Paris traceroute probes). A probe the
prober refuses because the destination is denied fails with
:class:`~dnaagent.measure.paris.ProbeDenied`: the trace then stops with the stop reason
``denied`` (both directions) and is recorded as such.

Interface (what the campaign service builds on):

* ``AsyncMonitor(name, prober, start_ttl, src_addr=..., max_ttl=30, gap_limit=5,
  clock=reactor.seconds, concurrency=8, start_probability=None, start_min_samples=10)``
  -- the fields of :class:`~dnaagent.dts.monitor.Monitor` (``prober`` instead of
  ``probe``) plus ``concurrency``, the most destinations traced at once;
* :meth:`AsyncMonitor.trace` ``(destination, global_stop) -> Deferred[DoubletreeTrace]``:
  one destination, probes one at a time (Doubletree is sequential), stop sets updated
  when it ends, exactly as :meth:`Monitor.trace`;
* :meth:`AsyncMonitor.probe_chunk` ``(campaign, chunk, targets, global_stop, denied=None)
  -> Deferred[list[TraceRecord]]``: the records of :meth:`Monitor.probe_chunk` (same
  order as ``targets``, denied targets skipped, checked just before each is started),
  up to ``concurrency`` destinations in flight;
* :meth:`AsyncMonitor.work` ``(plane, lease) -> Deferred[list[TraceRecord]]``: probe a
  leased chunk and commit it (:meth:`Monitor.work`).

Traces running at once share the local stop set and the chunk's global stop set; each
adds what it found when it ends, so a trace started later benefits from those that ended
before it started (concurrency trades a few probes for time, like several monitors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet import defer
from twisted.logger import Logger

from dnaagent.dts.doubletree import (
    DEFAULT_GAP_LIMIT,
    DEFAULT_MAX_TTL,
    DoubletreeTrace,
    Reply,
    StopReason,
)
from dnaagent.dts.export import TraceRecord
from dnaagent.dts.monitor import MonitorCore
from dnaagent.dts.plane import Lease, Plane
from dnaagent.dts.stopsets import GlobalStopSet, LocalStopSet
from dnaagent.measure.paris import ProbeDenied

#: Destinations traced at once by default.
DEFAULT_CONCURRENCY = 8


class AsyncProber(Protocol):
    """What :class:`AsyncMonitor` needs of a prober."""

    def probe(self, destination: str, ttl: int) -> defer.Deferred[Reply]:
        """Send one probe with IP TTL ``ttl``; fire with the answer (or no answer)."""
        ...


@dataclass
class AsyncMonitor(MonitorCore):
    """A monitor driving Doubletree with an asynchronous prober (see the module doc)."""

    log = Logger()

    name: str
    prober: AsyncProber
    start_ttl: int
    src_addr: str = "0.0.0.0"
    max_ttl: int = DEFAULT_MAX_TTL
    gap_limit: int = DEFAULT_GAP_LIMIT
    clock: Callable[[], float] = field(default=lambda: 0.0)
    local: LocalStopSet = field(default_factory=LocalStopSet)
    probes_sent: int = 0
    #: Doubletree's p: choose the start hop from the path lengths seen (None: fixed).
    start_probability: float | None = None
    #: Path lengths needed before ``start_probability`` applies.
    start_min_samples: int = 10
    #: Most destinations traced at once in :meth:`probe_chunk`.
    concurrency: int = DEFAULT_CONCURRENCY

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        self._init_core()

    @defer.inlineCallbacks
    def trace(self, destination: str, global_stop: GlobalStopSet):  # type: ignore[no-untyped-def]
        """Trace one destination; fires with the finished :class:`DoubletreeTrace`."""
        trace = self.new_trace(destination, global_stop)
        ttl = trace.next_ttl()
        while ttl is not None:
            try:
                reply = yield self.prober.probe(destination, ttl)
            except ProbeDenied:
                trace.stop(StopReason.DENIED)
                break
            ttl = trace.record(ttl, reply)
        self.learn(trace, global_stop)
        return trace

    def probe_chunk(
        self,
        campaign: str,
        chunk: int,
        targets: list[str],
        global_stop: GlobalStopSet,
        denied: Callable[[str], bool] | None = None,
    ) -> defer.Deferred[list[TraceRecord]]:
        """Trace every target of a chunk, ``concurrency`` at a time; records in order."""
        semaphore = defer.DeferredSemaphore(self.concurrency)

        @defer.inlineCallbacks
        def one(destination: str):  # type: ignore[no-untyped-def]
            if denied is not None and denied(destination):
                return None
            start = self.clock()
            trace: DoubletreeTrace = yield self.trace(destination, global_stop)
            return self.make_record(trace, campaign, chunk, start)

        runs = [semaphore.run(one, destination) for destination in targets]
        gathered = defer.gatherResults(runs, consumeErrors=True)

        def unwrap(failure):  # type: ignore[no-untyped-def]
            failure.trap(defer.FirstError)
            return failure.value.subFailure

        gathered.addCallbacks(lambda records: [r for r in records if r is not None], unwrap)
        return gathered

    def work(self, plane: Plane, lease: Lease) -> defer.Deferred[list[TraceRecord]]:
        """Probe the leased chunk and commit it (PC pairs and PD records) when done."""
        stop_set = plane.stop_set(lease.chunk)
        d = self.probe_chunk(
            plane.campaign, lease.chunk, plane.targets(lease.chunk), stop_set, plane.is_denied
        )

        def commit(records: list[TraceRecord]) -> list[TraceRecord]:
            plane.commit(lease, stop_set, [r.to_dict() for r in records])
            return records

        d.addCallback(commit)
        return d


__all__ = ["DEFAULT_CONCURRENCY", "AsyncMonitor", "AsyncProber"]
