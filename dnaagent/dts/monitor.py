"""A DTS monitor probing chunks with Doubletree through any prober.

The prober is a synchronous callable ``probe(destination, ttl) -> Reply`` (the simulated
prober of :mod:`dnaagent.dts.simprober`; a real one wraps its asynchronous probes in a
trace driver of its own). The monitor keeps its local stop set across chunks; each chunk
gets the global stop set read from the PC at claim time, and its new pairs are
committed with the chunk.
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
    StopReason,
)
from dnaagent.dts.export import TraceRecord
from dnaagent.dts.plane import Lease, Plane
from dnaagent.dts.stopsets import GlobalStopSet, LocalStopSet


@dataclass
class Monitor:
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

    def trace(self, destination: str, global_stop: GlobalStopSet) -> DoubletreeTrace:
        """Trace one destination and update both stop sets with what was found."""
        trace = DoubletreeTrace(
            destination,
            self.start_ttl,
            local_stop=self.local,
            global_stop=global_stop,
            max_ttl=self.max_ttl,
            gap_limit=self.gap_limit,
        )
        ttl = trace.next_ttl()
        while ttl is not None:
            ttl = trace.record(ttl, self.probe(destination, ttl))
        self.probes_sent += trace.probes
        for interface in trace.interfaces():
            self.local.add(interface)
            global_stop.add(interface, destination)
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
            records.append(
                TraceRecord.from_trace(
                    trace,
                    campaign=campaign,
                    chunk=chunk,
                    monitor=self.name,
                    src_addr=self.src_addr,
                    timestamp=start,
                    endtime=self.clock(),
                )
            )
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


__all__ = ["Monitor", "StopReason", "classic_trace", "stop_reason_counts"]
