"""A DTS monitor probing chunks with Doubletree through any prober.

The prober is a synchronous callable ``probe(destination, ttl) -> Reply`` (the simulated
prober of :mod:`dnaagent.dts.simprober`). Real probes are asynchronous: their driver is
:class:`dnaagent.dts.realprober.AsyncMonitor`, which shares :class:`MonitorCore` with
:class:`Monitor` (how a trace starts, what it teaches the stop sets and the start hop,
how it becomes a :class:`~dnaagent.dts.export.TraceRecord`). The monitor keeps its local
stop set across chunks; each chunk gets the global stop set read from the PC at claim
time, and its new pairs are committed with the chunk.

The start hop is ``start_ttl``, or, with ``start_probability`` set, chosen from the
path lengths the monitor has seen (:class:`~dnaagent.dts.doubletree.StartHop`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dnaagent.dts.doubletree import (
    DEFAULT_GAP_LIMIT,
    DEFAULT_MAX_TTL,
    DoubletreeTrace,
    Reply,
    StartHop,
    StopReason,
)
from dnaagent.dts.export import TraceRecord
from dnaagent.dts.plane import Lease, Plane
from dnaagent.dts.stopsets import GlobalStopSet, LocalStopSet


class MonitorCore:
    """What a monitor does around one trace, whatever its prober (sync or async).

    Subclasses are dataclasses with ``name``, ``start_ttl``, ``src_addr``, ``max_ttl``,
    ``gap_limit``, ``clock``, ``local``, ``probes_sent``, ``start_probability`` and
    ``start_min_samples``; they call :meth:`_init_core` from ``__post_init__``.
    """

    name: str
    start_ttl: int
    src_addr: str
    max_ttl: int
    gap_limit: int
    clock: Callable[[], float]
    local: LocalStopSet
    probes_sent: int
    start_probability: float | None
    start_min_samples: int

    def _init_core(self) -> None:
        self.start_hop = StartHop(
            self.start_ttl, self.start_probability, self.start_min_samples, self.max_ttl
        )

    def new_trace(self, destination: str, global_stop: GlobalStopSet) -> DoubletreeTrace:
        """A fresh Doubletree trace of ``destination`` with this monitor's settings."""
        return DoubletreeTrace(
            destination,
            self.start_hop.current(),
            local_stop=self.local,
            global_stop=global_stop,
            max_ttl=self.max_ttl,
            gap_limit=self.gap_limit,
        )

    def learn(self, trace: DoubletreeTrace, global_stop: GlobalStopSet) -> None:
        """Count a finished trace's probes and add what it found to both stop sets."""
        self.probes_sent += trace.probes
        self.start_hop.learn(trace.destination_distance())
        for interface in trace.interfaces():
            self.local.add(interface)
            global_stop.add(interface, trace.destination)

    def make_record(
        self, trace: DoubletreeTrace, campaign: str, chunk: int, start: float
    ) -> TraceRecord:
        """The record of a finished trace started at ``start`` (ends now)."""
        return TraceRecord.from_trace(
            trace,
            campaign=campaign,
            chunk=chunk,
            monitor=self.name,
            src_addr=self.src_addr,
            timestamp=start,
            endtime=self.clock(),
        )


@dataclass
class Monitor(MonitorCore):
    """One monitor: a name, a prober, its local stop set and Doubletree settings."""

    name: str
    probe: Callable[[str, int], Reply]
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

    def __post_init__(self) -> None:
        self._init_core()

    def trace(self, destination: str, global_stop: GlobalStopSet) -> DoubletreeTrace:
        """Trace one destination and update both stop sets with what was found."""
        trace = self.new_trace(destination, global_stop)
        ttl = trace.next_ttl()
        while ttl is not None:
            ttl = trace.record(ttl, self.probe(destination, ttl))
        self.learn(trace, global_stop)
        return trace

    def probe_chunk(
        self,
        campaign: str,
        chunk: int,
        targets: list[str],
        global_stop: GlobalStopSet,
        denied: Callable[[str], bool] | None = None,
    ) -> list[TraceRecord]:
        """Trace every target of a chunk (skipping denied ones, checked just before)."""
        records = []
        for destination in targets:
            if denied is not None and denied(destination):
                continue
            start = self.clock()
            trace = self.trace(destination, global_stop)
            records.append(self.make_record(trace, campaign, chunk, start))
        return records

    def work(self, plane: Plane, lease: Lease) -> list[TraceRecord]:
        """Probe the leased chunk and commit it (PC pairs and PD records)."""
        stop_set = plane.stop_set(lease.chunk)
        records = self.probe_chunk(
            plane.campaign, lease.chunk, plane.targets(lease.chunk), stop_set, plane.is_denied
        )
        plane.commit(lease, stop_set, [r.to_dict() for r in records])
        return records

    def run(self, plane: Plane, order: list[int] | None = None) -> int:
        """Claim and probe chunks until none is left for this monitor; chunks done."""
        done = 0
        while (lease := plane.claim(self.name, order)) is not None:
            self.work(plane, lease)
            done += 1
        return done


def classic_trace(
    probe: Callable[[str, int], Reply],
    destination: str,
    max_ttl: int = DEFAULT_MAX_TTL,
    gap_limit: int = DEFAULT_GAP_LIMIT,
) -> DoubletreeTrace:
    """Classic traceroute of ``destination``: TTL 1 upwards, no stop sets."""
    trace = DoubletreeTrace(destination, 1, max_ttl=max_ttl, gap_limit=gap_limit)
    ttl = trace.next_ttl()
    while ttl is not None:
        ttl = trace.record(ttl, probe(destination, ttl))
    return trace


def stop_reason_counts(records: list[TraceRecord]) -> dict[str, Any]:
    """How often each stop reason ended forwards and backwards probing."""
    out: dict[str, dict[str, int]] = {"forward": {}, "backward": {}}
    for r in records:
        out["forward"][r.forward_stop] = out["forward"].get(r.forward_stop, 0) + 1
        out["backward"][r.backward_stop] = out["backward"].get(r.backward_stop, 0) + 1
    return out


__all__ = ["Monitor", "MonitorCore", "StopReason", "classic_trace", "stop_reason_counts"]
