"""Cross-group predictions: groups that see the network alike share experience (thesis §7.1.1).

When a node's own group has no basis for a target (no series of its own, no cluster of the
target with levels), it asks up to ``similar_groups`` leaders of other groups it knows
(``xbac.similar``; the neighbour leaders the leader's state carries first, then the other
known leaders, one per group). The request carries the target and the requester's typical
levels to the ``similar_hosts`` remote hosts it measured most (the predictor's own level
function, :meth:`~dnaagent.xbac.predictor.XbacPredictor.level`).

The asked node compares them with its levels to the same hosts (its own series, else its
group members' levels in the clusters it holds, :meth:`SimilarGroups.group_levels`) as
the predictor's :meth:`~dnaagent.xbac.predictor.XbacPredictor.similarity` does
(:func:`~dnaagent.xbac.predictor.level_similarity`: median difference = offset, median
absolute deviation = spread). With at least ``similar_min_common`` common hosts and a spread
within ``similar_absolute + similar_relative * level``
(:func:`~dnaagent.xbac.predictor.similar_enough`), it answers with its own group's
prediction for the target (its own series, else the target's cluster in its group storage;
never another cross-group request, and no cluster is created for someone else's target),
the offset and the spread; otherwise "no basis".

The requester waits at most ``similar_timeout``, keeps the answers with the smallest
spreads, shifts each by its offset and combines them as a cold prediction does
(:func:`~dnaagent.xbac.predictor.combine_estimates`), widened to cover the answers' own
intervals: ``source`` ``"similar"``. Without other leaders the answer is None at once; a
target no group could answer for is not asked about again for ``similar_negative_ttl``;
concurrent requests for one target share one round; the asked side answers at most
``similar_rate`` requests per second (burst four times that). Bodies stay far below the
overlay's datagram limit (at most 64 hosts of at most 64 characters).

Wire (msgpack)::

    request  {"t": target, "l": [[host, level_s], ...]}
    answer   {"p": [value, low, high, series, samples], "o": offset_s, "s": spread_s,
              "c": common}                       # a basis
             {"p": None, "why": reason}          # no basis
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnaagent.guard.limits import TokenBucket
from dnaagent.overlay.contact import Peer
from dnaagent.xbac.predictor import (
    Prediction,
    PredictorParams,
    combine_estimates,
    level_similarity,
    similar_enough,
)

if TYPE_CHECKING:
    from dnaagent.xbac.node import LeaderRecord, XbacNode

log = Logger()

NAME = "xbac.similar"
#: Most hosts a request may carry (whatever the parameters say).
MAX_HOSTS = 64
#: Largest request body sent (bytes); the overlay's datagram limit is 8 KB.
MAX_BODY = 6000
#: Most hosts of the group storage examined to complete a request's levels.
MAX_GROUP_HOSTS = 256
#: Most targets remembered as "no group has a basis".
MAX_NO_BASIS = 4096

COUNTERS = (
    "similar_requests",
    "similar_answers",
    "similar_predictions",
    "similar_served",
    "similar_no_basis",
)


class SimilarError(ValueError):
    """A malformed ``xbac.similar`` request or answer."""


@dataclass(frozen=True)
class Answer:
    """Another group's answer with a basis: its prediction, offset and spread (seconds)."""

    prediction: Prediction
    offset: float
    spread: float
    common: int


# ---------------------------------------------------------------- pure parts


def _host(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= 64:
        raise SimilarError("invalid host")
    return v


def _seconds(v: Any, what: str, lo: float = 0.0, hi: float = 3600.0) -> float:
    if type(v) not in (int, float) or not lo <= v <= hi:  # NaN fails the comparison
        raise SimilarError(f"invalid {what}")
    return float(v)


def _count(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= 2**40:
        raise SimilarError(f"invalid {what}")
    return v


def request_body(target: str, levels: list[tuple[str, float]]) -> dict[str, Any]:
    """The request: ``target`` and the requester's levels, trimmed to fit ``MAX_BODY``."""
    rows = [[h, float(v)] for h, v in levels[:MAX_HOSTS]]
    body = {"t": target, "l": rows}
    while rows and len(msgpack.packb(body, use_bin_type=True)) > MAX_BODY:
        rows.pop()
    return body


def parse_request(body: Any, max_hosts: int = MAX_HOSTS) -> tuple[str, dict[str, float]]:
    """(target, {host: level}) of a request; :class:`SimilarError` when malformed."""
    if type(body) is not dict:
        raise SimilarError("invalid body")
    target = _host(body.get("t"))
    rows = body.get("l")
    if type(rows) is not list or len(rows) > min(max_hosts, MAX_HOSTS):
        raise SimilarError("invalid level list")
    levels: dict[str, float] = {}
    for row in rows:
        if type(row) is not list or len(row) != 2:
            raise SimilarError("invalid level")
        h = _host(row[0])
        if h in levels or h == target:
            raise SimilarError("invalid level list")
        levels[h] = _seconds(row[1], "level")
    return target, levels


def answer_body(answer: Answer | None, why: str = "") -> dict[str, Any]:
    """The answer's body: a basis, or "no basis" with a short reason."""
    if answer is None:
        return {"p": None, "why": why[:64]}
    p = answer.prediction
    return {
        "p": [p.value, p.low, p.high, p.series, p.samples],
        "o": answer.offset,
        "s": answer.spread,
        "c": answer.common,
    }


def parse_answer(body: Any) -> Answer | None:
    """An answer with a basis, None for "no basis"; :class:`SimilarError` when malformed."""
    if type(body) is not dict:
        raise SimilarError("invalid answer")
    raw = body.get("p", 0)
    if raw is None:
        return None
    if type(raw) is not list or len(raw) != 5:
        raise SimilarError("invalid answer")
    value = _seconds(raw[0], "value")
    low = _seconds(raw[1], "low")
    high = _seconds(raw[2], "high")
    if not low <= value <= high:
        raise SimilarError("invalid interval")
    pred = Prediction(value, low, high, "similar", _count(raw[3], "series"), _count(raw[4], "n"))
    return Answer(
        pred,
        _seconds(body.get("o"), "offset", -3600.0),
        _seconds(body.get("s"), "spread"),
        _count(body.get("c"), "common"),
    )


def compare(
    theirs: dict[str, float], mine: dict[str, float], p: PredictorParams
) -> tuple[float, float, int] | None:
    """(offset, spread, common) of the requester's levels minus ours, as the predictor does.

    Hosts are taken in a fixed order, at most ``max_estimates``, like
    ``XbacPredictor._level_differences``.
    """
    common = sorted(set(theirs) & set(mine))[: p.max_estimates]
    return level_similarity([theirs[h] - mine[h] for h in common], p)


def combine(answers: list[Answer], p: PredictorParams) -> Prediction | None:
    """One prediction from other groups' answers: those with the smallest spreads first.

    Each answer's value shifted by its offset is one estimate; the estimates are combined
    as a cold prediction's (min-loss value, 10-90 % interval), the interval widened to
    cover the shifted intervals of the answers used. The basis counts are the answers'.
    """
    best = sorted(answers, key=lambda a: (a.spread, a.prediction.value))[: p.max_estimates]
    if not best:
        return None
    est = [a.prediction.value + a.offset for a in best]
    samples = sum(a.prediction.samples for a in best)
    out = combine_estimates(est, samples, "similar", p)
    if out is None:
        return None
    low = min([out.low, *(max(a.prediction.low + a.offset, 0.0) for a in best)])
    high = max([out.high, *(a.prediction.high + a.offset for a in best)])
    series = sum(max(a.prediction.series, 1) for a in best)
    return dataclasses.replace(out, low=min(low, out.value), high=high, series=series)


# ---------------------------------------------------------------- the node's part


class SimilarGroups:
    """The cross-group source of one :class:`~dnaagent.xbac.node.XbacNode`: asker and answerer."""

    def __init__(self, node: XbacNode) -> None:
        self.node = node
        self._no_basis: dict[str, float] = {}
        self._pending: dict[str, list[Deferred[Prediction | None]]] = {}
        p = node.params
        #: Answers given: ``similar_rate`` per second, a burst of four times that.
        self._answers = TokenBucket(p.similar_rate, 4.0 * p.similar_rate, node.clock.seconds())
        self._leaders_read_at = 0.0
        self._silent: dict[bytes, float] = {}
        for name in COUNTERS:
            node.counters.setdefault(name, 0)

    # -- asking ------------------------------------------------------------------------

    def levels(self, exclude: str) -> list[tuple[str, float]]:
        """This node's typical levels to the hosts it measured most (``similar_hosts``).

        A node that measured fewer hosts (one that just joined) completes them with its
        group's levels from the clusters it holds (:meth:`group_levels`).
        """
        node = self.node
        pred = node.predictor
        want = min(node.params.similar_hosts, MAX_HOSTS)
        targets = pred.targets.get(node.node_id, set())
        ranked = sorted(
            (t for t in targets if t != exclude and type(t) is str),
            key=lambda t: (-len(pred.series[(node.node_id, t)]), t),
        )
        out: list[tuple[str, float]] = []
        for t in ranked:
            lv = pred.level(node.node_id, t)
            if lv is not None:
                out.append((t, lv[0]))
                if len(out) >= want:
                    return out
        have = {h for h, _ in out}
        mapped = sorted(
            k[1]
            for table in (node.store.primary, node.store.backup)
            for k in table
            if k[0] == "h" and k[1] != exclude and k[1] not in have
        )[:MAX_GROUP_HOSTS]
        if mapped:
            filled = self.group_levels([*have, *mapped])
            out += [(h, filled[h]) for h in mapped if h in filled][: want - len(out)]
        return out

    def leaders(self) -> list[LeaderRecord]:
        """Leaders of other groups to ask: neighbours first, then the newest known, one a group.

        A leader that did not answer (gone, or an agent without ``xbac.similar``) is left
        out for ``similar_negative_ttl``, so that it does not hold a place for nothing.
        """
        node = self.node
        now = node._now()
        cands = [r for r, _ in node.neighbours]
        cands += sorted(node.known_leaders.values(), key=lambda r: (-r.time, r.node_id))
        out: list[LeaderRecord] = []
        groups: set[bytes] = set()
        for r in cands:
            if r.node_id == node.node_id or r.group == node.group_id or r.group in groups:
                continue
            if self._silent.get(r.node_id, 0.0) > now:
                continue
            groups.add(r.group)
            out.append(r)
            if len(out) >= node.params.similar_groups:
                break
        return out

    def ask(self, target: str) -> Deferred[Prediction | None]:
        """Other groups' prediction for ``target``, or None (at once when nobody can be asked).

        Never fails.
        """
        node = self.node
        p = node.params
        now = node._now()
        if p.similar_groups == 0 or node.group_id is None or not node._running:
            return succeed(None)
        if self._no_basis.get(target, 0.0) > now:
            return succeed(None)
        waiting = self._pending.get(target)
        if waiting is not None:
            d: Deferred[Prediction | None] = Deferred()
            waiting.append(d)
            return d
        self._refresh_leaders(now)
        leaders = self.leaders()
        if not leaders:
            return succeed(None)
        levels = self.levels(target)
        if len(levels) < p.predictor.similar_min_common:
            return succeed(None)
        body = request_body(target, levels)
        result: Deferred[Prediction | None] = Deferred()
        self._pending[target] = [result]
        answers: list[Answer] = []
        heard = [0]
        finished = [False]

        def finish() -> None:
            if finished[0]:
                return
            finished[0] = True
            if timer.active():
                timer.cancel()
            pred = None
            try:
                pred = combine(answers, p.predictor)
            except Exception:
                log.failure("combining cross-group answers")
            if pred is None:
                self._remember_no_basis(target, node._now() + p.similar_negative_ttl)
            else:
                node.counters["similar_predictions"] += 1
            for w in self._pending.pop(target, []):
                w.callback(pred)

        def got(b: Any) -> None:
            node._count(NAME, "in", b)
            try:
                a = parse_answer(b)
            except SimilarError:
                node.counters["invalid"] += 1
                a = None
            if a is not None:
                node.counters["similar_answers"] += 1
                answers.append(a)
            answered()

        def failed(f: Failure, rec: LeaderRecord) -> None:
            if len(self._silent) >= MAX_NO_BASIS:
                self._silent.clear()
            self._silent[rec.node_id] = node._now() + p.similar_negative_ttl
            answered()

        def answered() -> None:
            heard[0] += 1
            if heard[0] >= len(leaders):
                finish()

        timer = node.clock.callLater(p.similar_timeout, finish)
        for rec in leaders:
            node.counters["similar_requests"] += 1
            node._count(NAME, "out", body)
            try:
                d = node.overlay.request(rec.address, NAME, body, timeout=p.similar_timeout)
            except Exception:
                failed(Failure(), rec)
                continue
            d.addCallbacks(got, failed, errbackArgs=(rec,)).addErrback(
                lambda f: log.failure("xbac.similar", f)
            )
        return result

    def _refresh_leaders(self, now: float) -> None:
        """Read the announced leaders from the DHT, at most every ``announce_ttl / 2``.

        A member learns of other groups at its bootstrap and through its leader's state;
        groups founded later reach it only with a full state. The read runs in the
        background: its leaders serve the next request, this one is not delayed.
        """
        if now < self._leaders_read_at:
            return
        self._leaders_read_at = now + self.node.params.announce_ttl / 2
        try:
            self.node._read_leaders().addErrback(lambda f: None)
        except Exception:
            log.failure("reading the announced leaders")

    def _remember_no_basis(self, target: str, until: float) -> None:
        if len(self._no_basis) >= MAX_NO_BASIS:
            now = self.node._now()
            self._no_basis = {h: t for h, t in self._no_basis.items() if t > now}
            while len(self._no_basis) >= MAX_NO_BASIS:
                self._no_basis.pop(next(iter(self._no_basis)))
        self._no_basis[target] = until

    # -- answering ---------------------------------------------------------------------

    def _allowed(self) -> bool:
        """Token bucket: at most ``similar_rate`` answers per second, burst four times that."""
        return self._answers.take(self.node._now())

    def on_request(self, body: Any, sender: Peer) -> Any:
        """``xbac.similar``: our group's prediction for the target if we see the network alike."""
        node = self.node
        try:
            target, theirs = parse_request(body)
        except SimilarError as e:
            from dnaagent.xbac.node import XbacProtocolError

            raise XbacProtocolError(str(e)) from e
        if not self._allowed():
            node.counters["refused"] += 1
            return self._no(node, "busy")
        if node.group_id is None:
            return self._no(node, "no group")
        pp = node.params.predictor
        mine = self.group_levels(list(theirs))
        sim = compare(theirs, mine, pp)
        if sim is None:
            return self._no(node, "too few common hosts")
        offset, spread, common = sim

        def judge(pred: Prediction | None) -> dict[str, Any]:
            if pred is None:
                return self._no(node, "no basis for the target")
            if not similar_enough(spread, pred.value, pp):
                return self._no(node, "dissimilar")
            node.counters["similar_served"] += 1
            return answer_body(Answer(pred, offset, spread, common))

        def failed(f: Failure) -> dict[str, Any]:
            return self._no(node, "no basis for the target")

        return self.own_prediction(target).addCallbacks(judge, failed)

    def group_levels(self, hosts: list[str]) -> dict[str, float]:
        """Levels to ``hosts``: this node's own, else its group's from the clusters it holds.

        For a host this node did not measure (enough): the level records of the group's
        members in the host's cluster, when this node holds that cluster and the host's
        mapping (as owner or backup copy: no request), each corrected by the member's
        offset to this node over the hosts both measured (as cluster predictions are),
        and the median of them.
        """
        node = self.node
        pp = node.params.predictor
        now = node._now()
        mine: dict[str, float] = {}
        for h in hosts:
            lv = node.predictor.level(node.node_id, h)
            if lv is not None:
                mine[h] = lv[0]

        def stored(key: tuple[str, str]) -> Any:
            e = node.store.primary.get(key) or node.store.backup.get(key)
            return e.value if e is not None and e.expires > now else None

        members: dict[str, dict[str, float]] = {}
        for h in hosts:
            cid = stored(("h", h))
            data = stored(("c", str(cid))) if type(cid) is int else None
            per = data.get("lv", {}).get(h) if type(data) is dict else None
            if type(per) is not dict:
                continue
            for mid, rec in per.items():
                if mid != node.mid and rec[1] >= pp.cold_min_samples:
                    members.setdefault(mid, {})[h] = float(rec[0])
        filled: dict[str, list[float]] = {}
        for levels in members.values():
            diffs = [mine[h] - v for h, v in levels.items() if h in mine]
            offset = float(np.median(diffs)) if diffs else 0.0
            for h, v in levels.items():
                if h not in mine:
                    filled.setdefault(h, []).append(v + offset)
        out = dict(mine)
        for h, vs in filled.items():
            out[h] = float(np.median(vs))
        return out

    @staticmethod
    def _no(node: XbacNode, why: str) -> dict[str, Any]:
        node.counters["similar_no_basis"] += 1
        return answer_body(None, why)

    def own_prediction(self, target: str) -> Deferred[Prediction | None]:
        """This group's prediction for ``target`` without asking other groups.

        This node's own series when long enough, else the target's cluster found through
        the HostId mapping in the group storage. Unlike a local request it neither asks
        the target for its group nor creates a cluster: a remote request leaves no state.
        """
        node = self.node
        own = node.predictor.series.get((node.node_id, target))
        if own is not None and len(own) >= node.params.predictor.min_samples:
            return succeed(node.predictor.predict_rtt(node.node_id, target, node._now()))

        def with_cid(cid: Any) -> Any:
            if type(cid) is not int:
                return None
            return node._fetch(("c", str(cid))).addCallback(node._from_cluster, target)

        return node._fetch(("h", target)).addCallback(with_cid)
