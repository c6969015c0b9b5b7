"""Traceroute: the routers on the path to a host, one probe per hop.

:class:`ProcessTracer` runs the ``traceroute`` program
(``traceroute -n -q 1 -w W -m N TARGET``) and parses its output with the pure
:func:`parse_traceroute`. One probe per hop keeps the load low; a hop that
does not answer is ``None``. The result is bounded: at most 32 hops.
Cancelling the Deferred kills the process.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from dnaagent.measure.process import MeasurementProcess

MAX_HOPS = 32
_OUTPUT_LIMIT = 16384
_HOP = re.compile(r"^\s*(\d+)\s+(.*)$")
_RTT = re.compile(r"([\d.]+)\s*ms")


@dataclass(frozen=True)
class Hop:
    """One hop of a path: its TTL, the address that answered (or None) and the delay."""

    ttl: int
    address: str | None
    rtt_ms: float | None = None

    def to_json(self) -> list[Any]:
        """``[ttl, address, rtt_ms]``, compact for the overlay."""
        return [self.ttl, self.address, self.rtt_ms]


@dataclass(frozen=True)
class TraceResult:
    """The path to ``target``: the hops, whether it was reached, or why it failed."""

    target: str
    hops: tuple[Hop, ...] = ()
    reached: bool = False
    error: str | None = None

    def addresses(self) -> list[str | None]:
        """The hop addresses in TTL order (None for silent hops)."""
        return [h.address for h in self.hops]

    def describe(self) -> str:
        """``192.0.2.1 > * > 203.0.113.5 (reached)``."""
        if self.error and not self.hops:
            return f"no path to {self.target}: {self.error}"
        path = " > ".join(h.address or "*" for h in self.hops) or "no hop answered"
        return f"{path} ({'reached' if self.reached else 'not reached'})"


class TracerAPI(Protocol):
    """Anything that can trace a path: the process tracer and test fakes."""

    def trace(self, target: str, max_hops: int, timeout: float) -> defer.Deferred[TraceResult]:
        """Trace the path to ``target`` (an IP literal)."""


def parse_traceroute(target: str, text: str) -> TraceResult:
    """Read the output of ``traceroute -n -q 1`` into a :class:`TraceResult`."""
    hops: list[Hop] = []
    for line in text.splitlines():
        match = _HOP.match(line)
        if match is None:
            continue
        ttl = int(match.group(1))
        rest = match.group(2).split()
        if not rest or not 1 <= ttl <= MAX_HOPS or any(h.ttl == ttl for h in hops):
            continue
        address: str | None = None
        try:
            address = str(ipaddress.ip_address(rest[0]))
        except ValueError:
            address = None
        rtt = _RTT.search(match.group(2)) if address else None
        hops.append(Hop(ttl, address, float(rtt.group(1)) if rtt else None))
    hops.sort(key=lambda h: h.ttl)
    reached = bool(hops) and hops[-1].address == str(ipaddress.ip_address(target))
    return TraceResult(target, tuple(hops), reached)


class ProcessTracer:
    """Trace with the ``traceroute`` program, one process per trace."""

    log = Logger()

    def __init__(self, reactor: Any, executable: str | None = None) -> None:
        self.reactor = reactor
        self.executable = executable or shutil.which("traceroute") or "/usr/sbin/traceroute"

    def trace(self, target: str, max_hops: int, timeout: float) -> defer.Deferred[TraceResult]:
        """Run ``traceroute -n -q 1 -w TIMEOUT -m MAX_HOPS TARGET``."""
        try:
            ip = ipaddress.ip_address(target)
        except ValueError:
            return defer.succeed(TraceResult(target, error="not an IP address"))
        hops = max(1, min(MAX_HOPS, max_hops))
        wait = max(0.1, timeout)
        argv = [self.executable, "-n", "-q", "1", "-w", f"{wait:g}", "-m", str(hops)]
        argv += ["-6" if ip.version == 6 else "-4", str(ip)]
        proto = _TraceProcess(str(ip))
        d: defer.Deferred[TraceResult] = defer.Deferred(lambda _: proto.kill())
        proto.deferred = d
        try:
            self.reactor.spawnProcess(proto, argv[0], argv, env={"LC_ALL": "C", "PATH": os.defpath})
        except OSError as e:
            self.log.failure("cannot run {exe}", exe=argv[0])
            d.callback(TraceResult(str(ip), error=f"cannot run {argv[0]}: {e}"))
            return d
        # Probes go out 16 at a time; each batch waits at most ``wait`` seconds.
        proto.killer = self.reactor.callLater(wait * (hops // 16 + 2) + 5.0, proto.kill)
        return d


class _TraceProcess(MeasurementProcess[TraceResult]):
    """Collects the output of one ``traceroute`` process."""

    program = "traceroute"
    out_limit = _OUTPUT_LIMIT
    keep_head = True  # the hops come first

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def finished(self) -> TraceResult:
        """Parse what the process printed."""
        result = parse_traceroute(self.target, self.out.decode("utf-8", "replace"))
        if not result.hops:
            return TraceResult(self.target, error=self.last_error_line("no output"))
        return result
