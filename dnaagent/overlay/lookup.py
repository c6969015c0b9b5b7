"""The iterative lookup as a pure state machine.

A :class:`Lookup` is fed what happens to its requests (an answer with nodes, an
answer with a value, a soft timeout, a failure) and returns the candidates to
ask next; the node service sends the requests and runs the timers. Nothing is
done in rounds: whenever a request finishes (or is soft-timed-out) the next
candidate is asked, so that ``alpha`` requests are always in flight.

Each candidate goes through these states::

    NEW --ask--> ASKED --answer--> ANSWERED
                   |                  ^
                   | soft timeout     | late answer (still accepted)
                   v                  |
                  SLOW ---------------+
                   |
                   | hard timeout / error
                   v
                 FAILED   (ASKED can fail directly too)

The lookup keeps its candidates sorted by XOR distance to the target. Its
*window* is the ``k`` closest candidates that are neither FAILED nor SLOW (a
SLOW candidate gives its place to the next one, but its late answer is still
used). The lookup

* asks the searched node (node lookups) as soon as it is known, even when
  ``alpha`` requests are in flight: its answer alone can end the lookup early;
* asks, while fewer than ``alpha`` requests are ASKED, the best NEW candidate
  of the window: the one sharing the longest prefix with the target, then the
  lowest known round-trip time (low-latency peers among equally good ones);
  a *narrow* value lookup (one whose closest candidates likely hold the value)
  asks one candidate only -- the lowest-RTT one within the radius it is given,
  else the best by the order above -- until the first answer without the value,
  soft timeout or failure, then ``alpha``;
* asks, once the ``alpha`` closest candidates of the window have all ANSWERED
  (nothing closer is left to ask: the lookup has converged), every NEW
  candidate of the window at once -- Kademlia's last step -- instead of
  ``alpha`` at a time (:attr:`Lookup.converged`); a node that a later answer
  adds to the window is asked at once too;
* ends when every candidate of the window has ANSWERED (the k closest known
  nodes all answered; requests outside the window cannot change that set) and
  no SLOW request to a candidate closer than the window's end is still open
  (it is retransmitted and its late answer may bring closer nodes);
* ends early when the target itself answers or greets the asker after a peer
  introduced it (node lookups, :meth:`Lookup.reached`) or when a peer returns
  the value (value lookups). The closest peer that answered without
  the value is then :attr:`Lookup.cache_at`, where the value should be cached.

The searched node never gives its place when it is slow: a node lookup waits
for its answer or its hard timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from dnaagent.overlay.contact import Address
from dnaagent.wire import unpack_host

NEW = 0
ASKED = 1
SLOW = 2
ANSWERED = 3
FAILED = 4
STATE_NAMES = ("NEW", "ASKED", "SLOW", "ANSWERED", "FAILED")

RttHint = Callable[[bytes], float | None]


class Candidate:
    """One peer known to a lookup.

    ``host`` may still be packed (4 or 16 bytes, as it came in a NODES answer);
    :attr:`address` converts it when the candidate is actually asked.
    """

    __slots__ = ("node_id", "dist", "host", "port", "state", "rank")

    def __init__(
        self, node_id: bytes, dist: int, host: str | bytes, port: int, rtt: float | None = None
    ) -> None:
        self.node_id = node_id
        self.dist = dist
        self.host = host
        self.port = port
        self.state = NEW
        #: ``(common prefix length from the far end, known RTT)``: the lower the
        #: better. Set when the candidate first enters the window (most
        #: candidates never do), or here when ``rtt`` is given.
        self.rank: tuple[int, float] | None = None if rtt is None else (dist.bit_length(), rtt)

    @property
    def address(self) -> Address:
        """The candidate's ``(host, port)``."""
        host = self.host
        if isinstance(host, bytes):
            host = self.host = unpack_host(host)
        return (host, self.port)

    def __repr__(self) -> str:
        return f"Candidate({self.node_id.hex()[:12]}, {STATE_NAMES[self.state]})"


class Lookup:
    """One iterative node or value lookup.

    ``contacts`` seeds the lookup with ``(node_id, host, port)`` records
    (usually the routing table's closest); ``rtt_hint`` returns a known round-trip time
    for a node ID or ``None``; ``exclude`` (the local node's ID) is never asked.
    """

    def __init__(
        self,
        target: bytes,
        contacts: Iterable[tuple[bytes, str | bytes, int]],
        *,
        k: int = 20,
        alpha: int = 3,
        find_value: bool = False,
        exclude: bytes | None = None,
        rtt_hint: RttHint | None = None,
        narrow: int | None = None,
    ) -> None:
        self.target = target
        self.target_key = int.from_bytes(target, "big")
        self.k = k
        self.alpha = alpha
        #: Requests allowed in flight: 1 while a narrow lookup waits for its first
        #: answer, ``alpha`` otherwise.
        self.width = alpha if narrow is None else 1
        #: The replica radius of a narrow lookup (XOR distance from the target).
        self.narrow = narrow
        self.find_value = find_value
        self.exclude = exclude
        self._rtt_hint = rtt_hint
        self.candidates: dict[bytes, Candidate] = {}
        self._order: list[Candidate] = []
        self.active = 0
        #: The ``alpha`` closest candidates have all answered: every new
        #: candidate of the window is asked at once (Kademlia's last step).
        self.converged = False
        self.done = False
        self.found = False
        self.value: Any = None
        self.value_from: Candidate | None = None
        self.queries = 0
        #: Transaction IDs of the requests sent (node lookups): a greeting
        #: (HERE) from the searched node must carry one of them.
        self.txids: set[int] = set()
        self._limit = 4 * k
        self._add(contacts)

    # ------------------------------------------------------------ helpers

    def _add(self, records: Iterable[tuple[bytes, str | bytes, int]]) -> None:
        cands = self.candidates
        order = self._order
        target = self.target_key
        exclude = self.exclude
        limit = self._limit
        # Candidates beyond the closest ``limit`` would never be asked: they
        # are not even created once the list is full.
        worst = order[-1].dist if len(order) >= limit else None
        added = False
        from_bytes = int.from_bytes
        for node_id, host, port in records:
            if node_id in cands or node_id == exclude:
                continue
            dist = from_bytes(node_id, "big") ^ target
            if worst is not None and dist >= worst:
                continue
            c = Candidate(node_id, dist, host, port)
            cands[node_id] = c
            order.append(c)
            added = True
        if added:
            order.sort(key=_by_dist)
            if len(order) > limit:
                keep: list[Candidate] = []
                for c in order:
                    if len(keep) < limit or c.state != NEW:
                        keep.append(c)
                    else:
                        del cands[c.node_id]
                self._order = keep

    def _step(self) -> list[Candidate]:
        """Ask new candidates until ``alpha`` are in flight; detect the end."""
        if self.done:
            return []
        out: list[Candidate] = []
        k = self.k
        hint = self._rtt_hint
        order = self._order
        # The searched node is asked as soon as it is known, even with alpha
        # requests in flight: only its answer can end a node lookup early.
        if order and not self.find_value:
            first = order[0]
            if first.dist == 0 and first.state == NEW:
                first.state = ASKED
                self.active += 1
                self.queries += 1
                out.append(first)
        # One pass over the window: asking a NEW candidate keeps it in the
        # window (ASKED), so the window and its end test do not change.
        news: list[Candidate] = []
        window = 0
        complete = True
        slow = False
        # How many of the window's closest candidates have answered, in a row:
        # when the alpha closest all have, the lookup has converged.
        head = 0
        for c in order:
            s = c.state
            if s == FAILED:
                continue
            if s == SLOW and c.dist:
                slow = True
                continue
            window += 1
            if s != ANSWERED:
                complete = False
                if s == NEW:
                    news.append(c)
            elif head == window - 1:
                head = window
            if window >= k:
                break
        # A slow request to a peer closer than the window's end still
        # holds the end: requests are retransmitted, so its (late) answer
        # usually comes, and may name nodes closer than any in the window.
        # It frees its slot in the alpha in flight, though.
        if complete and not slow:
            self.done = True
            return out
        # Kademlia's last step: once the alpha closest known nodes have all
        # answered without naming anyone closer, the rest of the window is
        # asked at once instead of alpha at a time, and so is any node that a
        # late answer adds to the window.
        if head >= self.alpha:
            self.converged = True
        width = k if self.converged else self.width
        free = width - self.active
        if free <= 0 or not news:
            return out
        if len(news) > 1:
            for c in news:
                if c.rank is None:
                    rtt = hint(c.node_id) if hint is not None else None
                    c.rank = (c.dist.bit_length(), 1e9 if rtt is None else rtt)
            news.sort(key=_by_rank)
            radius = self.narrow
            if width == 1 and radius is not None:
                # Any node within the radius should hold the value: the fastest
                # of them first (else the closest).
                inside = [c for c in news if c.dist <= radius]
                if inside:
                    news = [min(inside, key=_by_rtt)]
        for c in news[:free]:
            c.state = ASKED
            out.append(c)
        asked = min(free, len(news))
        self.active += asked
        self.queries += asked
        return out

    def _finish_request(self, node_id: bytes) -> Candidate | None:
        c = self.candidates.get(node_id)
        if c is None or c.state in (ANSWERED, FAILED, NEW):
            return None
        if c.state == ASKED:
            self.active -= 1
        return c

    # ------------------------------------------------------------- events

    def start(self) -> list[Candidate]:
        """Return the first candidates to ask (up to ``alpha``)."""
        return self._step()

    def answered(
        self, node_id: bytes, nodes: Iterable[tuple[bytes, str | bytes, int]]
    ) -> list[Candidate]:
        """Record that ``node_id`` answered with ``nodes``; return who to ask next.

        ``nodes`` holds ``(node_id, host, port)`` records, ``host`` text or
        packed (see :func:`dnaagent.wire.iter_records`).
        """
        c = self._finish_request(node_id)
        if c is None:
            return []
        c.state = ANSWERED
        self.width = self.alpha
        if self.done:
            return []
        if not self.find_value and c.dist == 0:
            self.found = True
            self.done = True
            return []
        self._add(nodes)
        return self._step()

    def found_value(self, node_id: bytes, value: Any) -> list[Candidate]:
        """Record that ``node_id`` returned the value: the lookup ends."""
        c = self._finish_request(node_id)
        if c is None or self.done:
            return []
        c.state = ANSWERED
        self.value = value
        self.value_from = c
        self.found = True
        self.done = True
        return []

    def reached(self, host: str, port: int) -> None:
        """The searched node greeted the asker directly (HERE): the node lookup ends.

        A peer that knew it introduced the asker to it; its request to the
        searched node, if any, is still open and its answer will be ignored.
        """
        if self.done or self.find_value:
            return
        c = self.candidates.get(self.target)
        if c is None:
            c = Candidate(self.target, 0, host, port)
            self.candidates[self.target] = c
            self._order.insert(0, c)
        elif c.state == ASKED:
            self.active -= 1
        c.state = ANSWERED
        self.found = True
        self.done = True

    def soft_timeout(self, node_id: bytes) -> list[Candidate]:
        """Record that ``node_id`` is slow: free its slot, keep waiting for it."""
        c = self.candidates.get(node_id)
        if c is None or c.state != ASKED or self.done:
            return []
        c.state = SLOW
        self.active -= 1
        self.width = self.alpha
        return self._step()

    def failed(self, node_id: bytes) -> list[Candidate]:
        """Record that ``node_id`` did not answer (or answered an error)."""
        c = self._finish_request(node_id)
        if c is None:
            return []
        c.state = FAILED
        self.width = self.alpha
        return self._step()

    # ------------------------------------------------------------- results

    def result(self) -> list[Candidate]:
        """Return up to ``k`` candidates that answered, closest first."""
        return [c for c in self._order if c.state == ANSWERED][: self.k]

    @property
    def cache_at(self) -> Candidate | None:
        """The closest candidate that answered without the value (value lookups)."""
        for c in self._order:
            if c.state == ANSWERED and c is not self.value_from:
                return c
        return None

    def in_flight(self) -> list[Candidate]:
        """Return the candidates whose requests are outstanding (ASKED or SLOW)."""
        return [c for c in self._order if c.state in (ASKED, SLOW)]


_by_dist = attrgetter("dist")
_by_rank = attrgetter("rank")


def _by_rtt(c: Candidate) -> float:
    return c.rank[1] if c.rank is not None else 1e9
