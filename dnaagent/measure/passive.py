"""Passive RTT: the kernel's own estimate for connections other applications have.

Every established TCP connection carries the kernel's smoothed RTT
(``tcpi_rtt``) and its variation (``tcpi_rttvar``), in microseconds. Netlink
``sock_diag`` (``inet_diag``) dumps them for every socket; pyroute2's
:class:`~pyroute2.DiagSocket` reads the dump. This is XBAC's central idea: the
traffic the host has anyway feeds the prediction service, with no probe sent.

The work is split three ways:

* :func:`read_kernel` (blocking; runs in a thread) dumps the established IPv4
  and IPv6 TCP sockets with their TCP info, at most ``max_sockets`` of them, as
  plain :class:`DiagRecord` values, and the host's own addresses;
* :func:`check_record` (pure) keeps a record or names why it is dropped:
  another state, an odd family, unparsable or unwanted addresses (loopback,
  link-local, own, multicast, unspecified, unless told to keep local ones), no
  RTT yet, or an RTT out of range;
* :class:`PassiveRtt` polls on a LoopingCall, never two readings at once,
  rate-limits each destination, counts everything it drops and hands the rest
  to a sink ``(address, rtt_seconds, time)``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task, threads
from twisted.logger import Logger

#: TCP_ESTABLISHED in the kernel's numbering (inet_diag's idiag_state, tcpi_state).
TCP_ESTABLISHED = 1
#: INET_DIAG_INFO is attribute 2; extensions are requested as the bit 1 << (attr - 1).
INET_DIAG_INFO_EXT = 1 << (2 - 1)
#: An RTT beyond this (microseconds) is not a round trip but garbage.
MAX_RTT_US = 60_000_000

Sink = Callable[[str, float, float], object]


@dataclass(frozen=True)
class DiagRecord:
    """What one inet_diag message says of a socket, as plain values."""

    family: int
    state: int
    src: str
    sport: int
    dst: str
    dport: int
    #: None when the message carried no TCP info.
    tcpi_state: int | None
    rtt_us: int | None
    rttvar_us: int | None


@dataclass(frozen=True)
class PassiveSample:
    """A kept passive measurement."""

    destination: str
    rtt: float
    rttvar: float
    local: str
    sport: int
    dport: int


def record_of(msg: Any) -> DiagRecord | None:
    """A :class:`DiagRecord` from a decoded pyroute2 ``inet_diag_msg`` (None if malformed)."""
    try:
        info = msg.get_attr("INET_DIAG_INFO")
        tcpi_state = rtt = rttvar = None
        if info is not None:
            tcpi_state = int(info["tcpi_state"])
            rtt = int(info["tcpi_rtt"])
            rttvar = int(info["tcpi_rttvar"])
        return DiagRecord(
            family=int(msg["idiag_family"]),
            state=int(msg["idiag_state"]),
            src=str(msg["idiag_src"]),
            sport=int(msg["idiag_sport"]),
            dst=str(msg["idiag_dst"]),
            dport=int(msg["idiag_dport"]),
            tcpi_state=tcpi_state,
            rtt_us=rtt,
            rttvar_us=rttvar,
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None


def _local_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not a remote host worth predicting (None: it is)."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    return None


def check_record(
    rec: DiagRecord, own: frozenset[str] = frozenset(), include_local: bool = False
) -> PassiveSample | str:
    """The sample a record gives, or the reason (a counter name) it is dropped."""
    if rec.family not in (socket.AF_INET, socket.AF_INET6):
        return "family"
    if rec.state != TCP_ESTABLISHED:
        return "state"
    if rec.tcpi_state is None or rec.rtt_us is None or rec.rttvar_us is None:
        return "no_info"
    if rec.tcpi_state != TCP_ESTABLISHED:
        return "state"
    if not (0 < rec.rtt_us <= MAX_RTT_US) or not (0 <= rec.rttvar_us <= MAX_RTT_US):
        return "rtt_range"
    if not (0 < rec.sport <= 65535 and 0 < rec.dport <= 65535):
        return "malformed"
    try:
        dst = ipaddress.ip_address(rec.dst)
        ipaddress.ip_address(rec.src)
    except ValueError:
        return "malformed"
    if isinstance(dst, ipaddress.IPv6Address) and dst.ipv4_mapped is not None:
        dst = dst.ipv4_mapped
    kind = _local_kind(dst)
    if kind in ("unspecified", "multicast"):
        return kind
    if not include_local:
        if kind is not None:
            return kind
        if str(dst) in own:
            return "own"
    return PassiveSample(
        destination=str(dst),
        rtt=rec.rtt_us / 1e6,
        rttvar=rec.rttvar_us / 1e6,
        local=rec.src,
        sport=rec.sport,
        dport=rec.dport,
    )


@dataclass(frozen=True)
class KernelReading:
    """One dump: the records (at most the limit), the ones beyond it, own addresses."""

    records: list[DiagRecord]
    skipped: int
    malformed: int
    own: frozenset[str]


def read_kernel(max_sockets: int) -> KernelReading:
    """Dump established TCP sockets with their TCP info (blocking: call it in a thread)."""
    from pyroute2 import DiagSocket, IPRoute

    records: list[DiagRecord] = []
    skipped = malformed = 0
    with DiagSocket() as ds:
        ds.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            msgs = ds.get_sock_stats(
                family=family, states=1 << TCP_ESTABLISHED, extensions=INET_DIAG_INFO_EXT
            )
            for msg in msgs:
                if len(records) >= max_sockets:
                    skipped += 1
                    continue
                rec = record_of(msg)
                if rec is None:
                    malformed += 1
                else:
                    records.append(rec)
    own: set[str] = set()
    with IPRoute() as ipr:
        for addr in ipr.get_addr():
            value = addr.get_attr("IFA_ADDRESS") or addr.get_attr("IFA_LOCAL")
            if value:
                own.add(str(value).split("%")[0])
    return KernelReading(records, skipped, malformed, frozenset(own))


class PassiveRtt:
    """Polls the kernel's TCP info and feeds the RTTs of other applications to ``sink``.

    ``reader(max_sockets) -> KernelReading`` runs in the reactor's thread pool
    (``in_thread`` replaces that in tests); a reading still running when the next
    is due is not doubled, it is counted as ``overrun``. Each destination gives at
    most one sample per ``per_destination`` seconds (the smallest RTT seen within a
    reading: the one least inflated by queues); at most ``max_destinations`` are
    remembered for that.
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        sink: Sink,
        *,
        interval: float = 30.0,
        per_destination: float = 60.0,
        max_sockets: int = 4096,
        include_local: bool = False,
        max_destinations: int = 65536,
        reader: Callable[[int], KernelReading] = read_kernel,
        in_thread: Callable[..., defer.Deferred[Any]] | None = None,
    ) -> None:
        self.clock = clock
        self.sink = sink
        self.interval = interval
        self.per_destination = per_destination
        self.max_sockets = max_sockets
        self.include_local = include_local
        self.max_destinations = max_destinations
        self.reader = reader
        self.in_thread = in_thread or (lambda f, *a: threads.deferToThread(f, *a))
        self.counters: Counter[str] = Counter()
        self._last: OrderedDict[str, float] = OrderedDict()
        self._busy = False
        self._loop: task.LoopingCall | None = None

    def start(self) -> None:
        """Poll now and every ``interval`` seconds."""
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: self.log.failure("passive RTT polling stopped", f)
        )

    def stop(self) -> None:
        """Stop polling (a reading under way is let finish and ignored)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def poll(self) -> defer.Deferred[int] | None:
        """One reading; fires with the number of samples fed (None if one is still running)."""
        if self._busy:
            self.counters["overrun"] += 1
            return None
        self._busy = True
        self.counters["polls"] += 1
        d = self.in_thread(self.reader, self.max_sockets)
        d.addCallback(self._reading)
        d.addErrback(self._failed)
        d.addBoth(self._idle)
        return d

    def _idle(self, result: Any) -> Any:
        self._busy = False
        return result

    def _failed(self, failure: Any) -> int:
        self.counters["errors"] += 1
        self.log.failure("reading the kernel's TCP connections failed", failure)
        return 0

    def _reading(self, reading: KernelReading) -> int:
        self.counters["sockets_skipped"] += reading.skipped
        self.counters["dropped_malformed"] += reading.malformed
        return self.feed(reading.records, reading.own)

    def feed(self, records: Iterable[DiagRecord], own: frozenset[str] = frozenset()) -> int:
        """Check, rate-limit and hand on one reading's records; return how many were fed."""
        now = self.clock.seconds()
        best: dict[str, PassiveSample] = {}
        for rec in records:
            self.counters["records"] += 1
            out = check_record(rec, own, self.include_local)
            if isinstance(out, str):
                self.counters[f"dropped_{out}"] += 1
                continue
            old = best.get(out.destination)
            if old is None or out.rtt < old.rtt:
                best[out.destination] = out
        fed = 0
        for dst, sample in best.items():
            last = self._last.get(dst)
            if last is not None and now - last < self.per_destination:
                self.counters["rate_limited"] += 1
                continue
            self._last[dst] = now
            self._last.move_to_end(dst)
            while len(self._last) > self.max_destinations:
                self._last.popitem(last=False)
            try:
                self.sink(dst, sample.rtt, now)
            except Exception:
                self.counters["errors"] += 1
                self.log.failure("the passive RTT sink failed for {dst}", dst=dst)
                continue
            fed += 1
        self.counters["fed"] += fed
        return fed

    def status(self) -> Mapping[str, Any]:
        """Settings and counters."""
        return {
            "interval": self.interval,
            "per_destination": self.per_destination,
            "include_local": self.include_local,
            "running": self._loop is not None,
            "counters": dict(self.counters),
        }
