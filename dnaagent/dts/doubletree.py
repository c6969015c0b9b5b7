"""The Doubletree algorithm as a pure state machine.

Doubletree (Donnet, Raoult, Friedman, Crovella, SIGMETRICS 2005) probes a destination
starting at an intermediate hop ``h`` rather than at TTL 1:

* the first probe goes to TTL ``h``;
* **forwards probing** then goes ``h+1, h+2, ...`` and stops when the destination
  answers, when the (interface, destination) pair of the answer is in the *global stop
  set* (the rest of the path towards this destination is already known), when a router
  says the destination is unreachable (ICMP destination unreachable other than the
  destination's own port unreachable), after ``gap_limit`` silent hops in a row, or past
  ``max_ttl``;
* **backwards probing** then goes ``h-1, h-2, ...`` and stops when the answering
  interface is in the monitor's *local stop set* (the path from the monitor to it is
  already known: routes from one source form a tree) or after TTL 1.

The answer at ``h`` is judged by the forwards rules (destination reached, global stop
set, unreachable). :class:`DoubletreeTrace` holds no sockets and no clock: the caller
asks :meth:`~DoubletreeTrace.next_ttl`, sends the probe, and feeds the answer (a
:class:`Reply`, whatever prober produced it: simulated, or the real Paris traceroute
probes of :mod:`dnaagent.measure.paris`) to :meth:`~DoubletreeTrace.record`.
:func:`choose_start_hop` picks ``h`` from the probability ``p`` of hitting a destination
with the first probe, given the distribution of path lengths seen; :class:`StartHop`
keeps that distribution for a monitor and applies the rule as it learns.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

#: Default highest TTL probed.
DEFAULT_MAX_TTL = 30
#: Default number of silent hops in a row after which forwards probing gives up.
DEFAULT_GAP_LIMIT = 5


class StopReason(enum.Enum):
    """Why one direction of a trace stopped."""

    LOCAL_STOP_SET = "local_stop_set"
    GLOBAL_STOP_SET = "global_stop_set"
    DESTINATION = "destination_reached"
    GAP_LIMIT = "gap_limit"
    TTL_ONE = "ttl_one_reached"
    MAX_TTL = "max_ttl"
    DENIED = "denied"
    UNREACHABLE = "unreachable"


class ReplyKind(enum.Enum):
    """What kind of answer a probe got."""

    TIME_EXCEEDED = "time_exceeded"
    DESTINATION = "destination_reached"
    UNREACHABLE = "unreachable"
    NONE = "no_reply"


@dataclass(frozen=True)
class Reply:
    """The answer to one probe.

    ``address`` is the interface that answered (``None``: no answer, a ``*``);
    ``reached`` is true when the destination itself answered (port unreachable or echo
    reply) rather than a router on the way (time exceeded); ``rtt`` in milliseconds and
    ``reply_ttl`` (the IP TTL of the answer) when known; ``unreachable`` is true for
    any other ICMP destination unreachable (no route, prohibited, host unreachable,
    also when the local host itself refused to send: then ``address`` may be ``None``).

    ``err`` is the ICMP destination unreachable code of the answer as the RIPE Atlas
    traceroute result format writes it in a reply's ``err`` member: ``"N"`` network
    unreachable, ``"H"`` host (destination) unreachable, ``"A"`` administratively
    prohibited, ``"P"`` protocol unreachable, ``"p"`` port unreachable that is not the
    expected end of a UDP trace, ``"h"`` beyond scope (ICMPv6), any other code as its
    number; ``None`` when the answer was no destination unreachable, was the
    destination's own port unreachable, or when no ICMP message came at all (a silent
    hop, or the local host refused to send). :func:`dnaagent.measure.paris.atlas_err`
    maps the ICMP codes.
    """

    address: str | None
    reached: bool = False
    rtt: float | None = None
    reply_ttl: int | None = None
    unreachable: bool = False
    err: str | int | None = None

    @property
    def kind(self) -> ReplyKind:
        """Time exceeded, destination reached, unreachable or no reply."""
        if self.reached:
            return ReplyKind.DESTINATION
        if self.unreachable:
            return ReplyKind.UNREACHABLE
        if self.address is None:
            return ReplyKind.NONE
        return ReplyKind.TIME_EXCEEDED


#: A silent hop.
NO_REPLY = Reply(None)


class GlobalStopView(Protocol):
    """What Doubletree needs of a global stop set: membership of (interface, destination)."""

    def contains(self, interface: str, destination: str) -> bool:
        """Whether the pair is known."""
        ...


class _EmptyGlobal:
    def contains(self, interface: str, destination: str) -> bool:
        return False


EMPTY_GLOBAL: GlobalStopView = _EmptyGlobal()


class _Phase(enum.Enum):
    FIRST = "first"
    FORWARDS = "forwards"
    BACKWARDS = "backwards"
    DONE = "done"


@dataclass
class DoubletreeTrace:
    """One destination traced with Doubletree; fed answers, it says what to probe next.

    ``local_stop`` is any container of interfaces (the monitor's local stop set) and
    ``global_stop`` anything with ``contains(interface, destination)``; both are only
    read. Classic traceroute is the special case ``start_ttl=1`` with empty stop sets.
    """

    destination: str
    start_ttl: int
    local_stop: object = field(default_factory=frozenset)
    global_stop: GlobalStopView = EMPTY_GLOBAL
    max_ttl: int = DEFAULT_MAX_TTL
    gap_limit: int = DEFAULT_GAP_LIMIT
    #: Answers by probe TTL, in the order they were recorded.
    hops: dict[int, Reply] = field(default_factory=dict, init=False)
    forward_stop: StopReason | None = field(default=None, init=False)
    backward_stop: StopReason | None = field(default=None, init=False)
    #: TTL at which the stop set that ended a direction was hit (``None`` otherwise).
    forward_stop_ttl: int | None = field(default=None, init=False)
    backward_stop_ttl: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.max_ttl < 1:
            raise ValueError(f"max_ttl must be at least 1, not {self.max_ttl}")
        if self.gap_limit < 1:
            raise ValueError(f"gap_limit must be at least 1, not {self.gap_limit}")
        self.start_ttl = max(1, min(self.start_ttl, self.max_ttl))
        self._phase = _Phase.FIRST
        self._next: int | None = self.start_ttl
        self._gap = 0

    @property
    def done(self) -> bool:
        """Whether both directions have stopped."""
        return self._phase is _Phase.DONE

    @property
    def probes(self) -> int:
        """Probes sent so far (one per recorded TTL)."""
        return len(self.hops)

    def next_ttl(self) -> int | None:
        """The TTL of the next probe to send, or ``None`` when the trace is over."""
        return self._next

    def record(self, ttl: int, reply: Reply) -> int | None:
        """Feed the answer to the probe at ``ttl``; return the next TTL (or ``None``)."""
        if ttl != self._next:
            raise ValueError(f"expected an answer for TTL {self._next}, got TTL {ttl}")
        self.hops[ttl] = reply
        if self._phase in (_Phase.FIRST, _Phase.FORWARDS):
            self._forwards(ttl, reply)
        else:
            self._backwards(ttl, reply)
        return self._next

    def stop(self, reason: StopReason) -> None:
        """End the trace from outside (for example the target was denied meanwhile)."""
        if self.forward_stop is None:
            self.forward_stop = reason
        if self.backward_stop is None:
            self.backward_stop = reason
        self._finish()

    def _forwards(self, ttl: int, reply: Reply) -> None:
        self._phase = _Phase.FORWARDS
        reason: StopReason | None = None
        if reply.reached:
            reason = StopReason.DESTINATION
        elif reply.unreachable:
            reason = StopReason.UNREACHABLE
        elif reply.address is None:
            self._gap += 1
            if self._gap >= self.gap_limit:
                reason = StopReason.GAP_LIMIT
        else:
            self._gap = 0
            if self.global_stop.contains(reply.address, self.destination):
                reason = StopReason.GLOBAL_STOP_SET
                self.forward_stop_ttl = ttl
        if reason is None and ttl >= self.max_ttl:
            reason = StopReason.MAX_TTL
        if reason is None:
            self._next = ttl + 1
            return
        self.forward_stop = reason
        self._start_backwards()

    def _start_backwards(self) -> None:
        self._phase = _Phase.BACKWARDS
        if self.start_ttl <= 1:
            self.backward_stop = StopReason.TTL_ONE
            self._finish()
        else:
            self._next = self.start_ttl - 1

    def _backwards(self, ttl: int, reply: Reply) -> None:
        if (
            reply.address is not None and not reply.reached and reply.address in self.local_stop  # type: ignore[operator]
        ):
            self.backward_stop = StopReason.LOCAL_STOP_SET
            self.backward_stop_ttl = ttl
            self._finish()
        elif ttl <= 1:
            self.backward_stop = StopReason.TTL_ONE
            self._finish()
        else:
            self._next = ttl - 1

    def _finish(self) -> None:
        self._phase = _Phase.DONE
        self._next = None

    def interfaces(self) -> list[str]:
        """Router interfaces that answered (time exceeded or unreachable), by TTL."""
        return [
            r.address
            for _, r in sorted(self.hops.items())
            if r.address is not None and not r.reached
        ]

    def destination_distance(self) -> int | None:
        """The TTL at which the destination answered, if it did."""
        reached = [ttl for ttl, r in self.hops.items() if r.reached]
        return min(reached) if reached else None

    def links(self) -> list[tuple[str, str]]:
        """Pairs of interfaces that answered at consecutive TTLs (both routers)."""
        out = []
        for ttl, r in sorted(self.hops.items()):
            nxt = self.hops.get(ttl + 1)
            if (
                nxt is not None
                and r.address is not None
                and nxt.address is not None
                and not r.reached
                and not nxt.reached
            ):
                out.append((r.address, nxt.address))
        return out


def run_trace(trace: DoubletreeTrace, probe: Callable[[str, int], Reply]) -> DoubletreeTrace:
    """Drive ``trace`` to its end with a synchronous ``probe(destination, ttl)``."""
    ttl = trace.next_ttl()
    while ttl is not None:
        ttl = trace.record(ttl, probe(trace.destination, ttl))
    return trace


def choose_start_hop(hop_counts: Mapping[int, int] | Iterable[int], p: float) -> int:
    """The starting hop ``h`` for a probability ``p`` of hitting a destination at ``h``.

    ``hop_counts`` is the distribution of destination distances seen by the monitor
    (a mapping distance -> count, or the distances themselves). Doubletree's rule:
    ``h`` is the largest hop such that the share of destinations at distance ``h`` or
    less (those a first probe at ``h`` would reach) is at most ``p``. Returns 1 when no
    distance is known or every hop exceeds ``p``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], not {p}")
    if isinstance(hop_counts, Mapping):
        counts = {int(k): int(v) for k, v in hop_counts.items() if v > 0}
    else:
        counts = {}
        for d in hop_counts:
            counts[int(d)] = counts.get(int(d), 0) + 1
    total = sum(counts.values())
    if total == 0:
        return 1
    best = 1
    cumulative = 0
    for hop in range(1, max(counts) + 1):
        cumulative += counts.get(hop, 0)
        if cumulative / total <= p:
            best = hop
        else:
            break
    return best


class StartHop:
    """A monitor's starting hop: fixed, or chosen from the path lengths it has seen.

    With ``probability`` ``None`` the start hop is always ``initial``. Otherwise every
    destination distance learnt (:meth:`learn`, the TTL at which a destination
    answered) joins the distribution, and once ``min_samples`` distances are known the
    start hop is :func:`choose_start_hop` of that distribution and ``probability``
    (Doubletree's ``p``: the chance that the first probe hits a destination, which
    would waste the probes towards it that a lower start would have saved by the
    stop sets), never above ``limit``.
    """

    def __init__(
        self,
        initial: int,
        probability: float | None = None,
        min_samples: int = 10,
        limit: int = DEFAULT_MAX_TTL,
    ) -> None:
        if initial < 1:
            raise ValueError(f"the start hop must be at least 1, not {initial}")
        if probability is not None and not 0.0 <= probability <= 1.0:
            raise ValueError(f"the probability must be in [0, 1], not {probability}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, not {min_samples}")
        self.initial = initial
        self.probability = probability
        self.min_samples = min_samples
        self.limit = limit
        self.distances: dict[int, int] = {}

    @property
    def samples(self) -> int:
        """Distances learnt so far."""
        return sum(self.distances.values())

    def learn(self, distance: int | None) -> None:
        """Add one destination distance (``None``: not reached, ignored)."""
        if distance is not None and distance >= 1:
            self.distances[distance] = self.distances.get(distance, 0) + 1

    def current(self) -> int:
        """The start hop for the next trace."""
        if self.probability is None or self.samples < self.min_samples:
            return self.initial
        return max(1, min(self.limit, choose_start_hop(self.distances, self.probability)))
