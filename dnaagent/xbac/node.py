"""One agent's XBAC protocol: groups, roles, group storage and clusters over the overlay.

:class:`XbacNode` is the distributed layer around the pure core (:mod:`~dnaagent.xbac.group`,
:mod:`~dnaagent.xbac.cluster`, :mod:`~dnaagent.xbac.predictor`,
:mod:`~dnaagent.xbac.storage`). Its I/O is injected: the overlay node (application RPC and
DHT), a clock and a measurement function, so that tests and the simulator drive the very
same code with ``task.Clock`` and fake RTTs, and the agent with ICMP/TCP probes.

Interface::

    node = XbacNode(overlay, clock, measure, params=None, host_id=None)
        # overlay: has register_handler(name, fn), request(to, name, body, timeout=),
        #          get(key), put(key, value, ttl=), node_id (an OverlayNode fits)
        # clock:   seconds(), callLater(delay, fn, *args)
        # measure: measure(address: str) -> Deferred[float]   (RTT in seconds)
        # params:  XbacParams (dnaagent.xbac.params); host_id: this host's address string
    node.start() -> Deferred[None]          # connect: bootstrap, join or found a group
    node.stop(graceful=True)                # leave with notice (hand over) or just stop
    node.add_measurement(target, rtt, t=None) -> bool
    node.predict_rtt(target) -> Deferred[Prediction | None]
    node.report_prediction_quality(target, predicted, measured)
    node.status() -> dict                   # role, group, leader, members, storage, traffic

Protocol (application requests on the overlay, names ``xbac.*``, msgpack bodies, every field
validated; a bad body is refused with an error and counted in ``invalid``):

* **Bootstrapping** (thesis §4.4, §5.2.2). Leaders announce ``[group, node, host, ip, port,
  time]`` under one DHT key. A new node reads them, walks Meridian-style towards the leader
  closest to itself (``xbac.meridian``: the leader measures the newcomer, asks the members of
  its rings within ``[(1 - beta) d, (1 + beta) d]`` to measure it too, ``xbac.measure``, and
  names the closest), asks the leader's closest other leaders (``xbac.neighbours``), measures
  them and applies the mOverlay criterion; it tries up to ``attempts`` leaders, then joins
  (``xbac.join``) or founds a group and announces itself.
* **Roles** (§4.3.3, §4.8). The leader sends its state (members, backups with their leader
  values, its neighbour leaders) to every member every ``alive_interval`` (``xbac.state``);
  a member that misses ``member_misses`` of them is dropped (failure without notice). It
  picks ``backups`` backup leaders with leader values just above its own. A backup that
  heard nothing for ``leader_timeout`` asks the leader (``xbac.alive``) and, without an
  answer, takes over with its leader value; members accept a state only from a member of
  their group whose leader value is at least the one they know, and answer a lower one with
  the leader they know: the lower leader steps down and hands its members over
  (``xbac.yield``). A leader that leaves hands over to its highest backup (``xbac.handover``).
* **Group storage** (§4.3.2, §4.7; :mod:`~dnaagent.xbac.storage`). HostId -> ClusterId,
  GroupId -> ClusterId and cluster data live at the member that owns their key on the ring
  of the membership, with a copy at the next member (``xbac.store``, ``xbac.fetch``,
  ``xbac.delete``), re-sent every ``backup_interval``, expiring after ``backup_ttl``;
  a membership change hands entries to their new owners.
* **Clusters** (§4.6, §7.5.1). The owner of a host's mapping creates its cluster at first
  contact (``xbac.observe``). Members report their levels to the owner of the cluster
  (``xbac.report``: typical level and a profile row of ``points`` bins). The cluster's owner
  broadcasts its summary at an exponentially decreasing rate (``xbac.summary``, first after
  ``summary_step``, then doubling, none after ``summary_duration``), within a byte budget per
  second. A member owning a similar unprotected cluster (band and bias tests) answers with it
  (the merge request); after ``merge_wait`` the broadcaster re-clusters the union, stores the
  new clusters and mappings, drops the old clusters and protects the new ones. A periodic
  split pass re-assesses every owned cluster.
* **Predictions** (§4.5). The pair's own series answers when it is long enough; otherwise
  the HostId mapping, or the target's group (``xbac.info`` to the target) and its GroupId
  mapping, give the cluster; the cluster's levels (of the target, else of its other hosts)
  corrected by each member's offset give the answer. No basis in the group: up to
  ``similar_groups`` other groups' leaders are asked (``xbac.similar``,
  :mod:`~dnaagent.xbac.similar`: a group that sees the network as this node does answers
  with its prediction and offset); none known: ``None`` at once. The target enters a
  cluster of its own for later requests.

One periodic tick per node does all maintenance (no timer per cluster).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack
import numpy as np
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnaagent.errors import DnaAgentError
from dnaagent.guard.limits import TokenBucket
from dnaagent.overlay.contact import Peer
from dnaagent.overlay.errors import RequestTimeout
from dnaagent.xbac.cluster import greedy_clusters, similar, summarize
from dnaagent.xbac.group import MeridianRings, meets_grouping_criterion
from dnaagent.xbac.params import XbacParams
from dnaagent.xbac.predictor import Prediction, XbacPredictor, min_loss_value
from dnaagent.xbac.similar import SimilarGroups
from dnaagent.xbac.storage import KINDS, Entry, GroupStore, Key, Ring

log = Logger()

#: DHT key under which group leaders announce themselves.
LEADERS_KEY = hashlib.sha1(b"dnaagent/xbac/leaders").digest()

ROLES = ("none", "member", "backup", "leader")

MAX_HOST = 64
_SELF_GROUP = "self"
_MAX_WIRE_CLUSTER = 5000
#: Deletion version that removes whatever version is held: cluster ids are never reused, so
#: dissolving a cluster needs no ordering against writes (and no agreement of clocks).
_ANY = 1e12


#: Group requests off the prediction path: they may wait ``batch_delay`` and travel to a
#: member together in one ``xbac.batch`` datagram (one envelope and signature for all).
#: Each with the one-letter name it has inside a batch.
BATCH_CODES = {
    "xbac.store": "s",
    "xbac.delete": "d",
    "xbac.observe": "o",
    "xbac.report": "r",
    "xbac.summary": "m",
}
BATCHED = frozenset(BATCH_CODES)
BATCH_NAMES = {c: n for n, c in BATCH_CODES.items()}
#: A batch is sent at once when its operations reach this many bytes, and an answer whose
#: parts would exceed the reply budget asks for the rest to be sent again, each alone.
BATCH_BYTES = 5000
BATCH_REPLY_BYTES = 6500
BATCH_MAX_OPS = 128


class XbacProtocolError(DnaAgentError, ValueError):
    """A peer sent an XBAC message that is malformed or not allowed."""


class Clock(Protocol):
    """What the node needs from a clock."""

    def seconds(self) -> float:
        """Now, in seconds."""

    def callLater(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any:  # noqa: N802
        """Run ``fn(*args)`` after ``delay`` seconds."""


Measure = Callable[[str], Deferred]


@dataclass
class Member:
    """A group member: overlay node ID, host address string, overlay address."""

    node_id: bytes
    host: str
    ip: str
    port: int

    def wire(self) -> list[Any]:
        """``[node_id, host, ip, port]``."""
        return [self.node_id, self.host, self.ip, self.port]


@dataclass
class LeaderRecord:
    """A leader as announced in the DHT."""

    group: bytes
    node_id: bytes
    host: str
    ip: str
    port: int
    time: float
    #: The group ended (its last member left): readers forget it and its leader.
    gone: bool = False

    def wire(self) -> list[Any]:
        """``[group, node_id, host, ip, port, time]``, plus ``True`` for a group that ended."""
        w = [self.group, self.node_id, self.host, self.ip, self.port, self.time]
        return [*w, True] if self.gone else w

    @property
    def address(self) -> tuple[str, int]:
        """The leader's overlay address."""
        return (self.ip, self.port)


# ---------------------------------------------------------------- validation


def _bad(what: str) -> XbacProtocolError:
    return XbacProtocolError(f"invalid {what}")


def _id(v: Any, what: str = "node id") -> bytes:
    if type(v) is not bytes or len(v) != 20:
        raise _bad(what)
    return v


def _host(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= MAX_HOST:
        raise _bad("host")
    return v


def _num(v: Any, what: str, lo: float = 0.0, hi: float = 1e12) -> float:
    if type(v) not in (int, float) or not math.isfinite(v) or not lo <= v <= hi:
        raise _bad(what)
    return float(v)


def _int(v: Any, what: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise _bad(what)
    return v


def _dict(v: Any, what: str = "body") -> dict[str, Any]:
    if type(v) is not dict:
        raise _bad(what)
    return v


def _member(v: Any) -> Member:
    if type(v) is not list or len(v) != 4:
        raise _bad("member")
    return Member(_id(v[0]), _host(v[1]), _host(v[2]), _int(v[3], "port", 1, 65535))


def _leader_record(v: Any) -> LeaderRecord:
    if type(v) is not list or len(v) not in (6, 7) or (len(v) == 7 and v[6] is not True):
        raise _bad("leader record")
    return LeaderRecord(
        _id(v[0], "group id"),
        _id(v[1]),
        _host(v[2]),
        _host(v[3]),
        _int(v[4], "port", 1, 65535),
        _num(v[5], "time"),
        len(v) == 7,
    )


def _key(v: Any) -> Key:
    if type(v) is not list or len(v) != 2 or v[0] not in KINDS:
        raise _bad("key")
    return (v[0], _host(v[1]))


def _row(v: Any, points: int) -> list[float]:
    if type(v) is not bytes or len(v) != 2 * points:
        raise _bad("profile row")
    arr = np.frombuffer(v, dtype="<f2").astype(float)
    arr[~np.isfinite(arr)] = np.nan
    arr[arr < 0] = np.nan
    return arr.tolist()


def _row_bytes(row: Any) -> bytes:
    return np.asarray(row, dtype=float).astype("<f2").tobytes()


def _check_cluster(v: Any, points: int, max_hosts: int) -> dict[str, Any]:
    """Validate cluster data: hosts, groups, protection, levels and rows."""
    d = _dict(v, "cluster")
    hosts = d.get("h")
    if type(hosts) is not list or not 0 < len(hosts) <= max_hosts:
        raise _bad("cluster hosts")
    for h in hosts:
        _host(h)
    hg = _dict(d.get("hg", {}), "cluster groups")
    for h, g in hg.items():
        _host(h)
        _id(g, "group id")
    _num(d.get("p", 0.0), "protection")
    _num(d.get("n", 0.0), "next broadcast", -1.0)
    _num(d.get("s", 1.0), "broadcast step", 0.0, 1e9)
    _num(d.get("t", 0.0), "creation time")
    lv = _dict(d.get("lv", {}), "cluster levels")
    for h, per in lv.items():
        _host(h)
        for m, rec in _dict(per, "levels").items():
            _host(m)
            if type(rec) is not list or len(rec) != 4:
                raise _bad("level")
            _num(rec[0], "level", 0.0, 3600.0)
            _int(rec[1], "samples")
            _num(rec[2], "time")
            if rec[3] is not None:
                _row(rec[3], points)
    return d


def _cap_levels(data: dict[str, Any], limit: int) -> None:
    """Keep at most ``limit`` (host, member) level records in a cluster, the newest."""
    lv = data.get("lv", {})
    recs = [(rec[2], h, m) for h, per in lv.items() for m, rec in per.items()]
    if len(recs) <= limit:
        return
    recs.sort()
    for _, h, m in recs[: len(recs) - limit]:
        del lv[h][m]
        if not lv[h]:
            del lv[h]


def _near(a: float, b: float, p: XbacParams) -> bool:
    """Whether two levels differ by no more than ``report_change`` (at least ``report_floor``)."""
    return abs(a - b) <= max(p.report_floor, p.report_change * max(abs(a), abs(b)))


def _rows_near(a: bytes | None, b: bytes | None, p: XbacParams) -> bool:
    """Whether two profile rows agree bin by bin (empty bins alike) within the report tolerance."""
    if a is None or b is None or len(a) != len(b):
        return a == b
    x = np.frombuffer(a, dtype="<f2").astype(float)
    y = np.frombuffer(b, dtype="<f2").astype(float)
    nx, ny = np.isnan(x), np.isnan(y)
    if not np.array_equal(nx, ny):
        return False
    x, y = x[~nx], y[~ny]
    limit = np.maximum(p.report_floor, p.report_change * np.maximum(np.abs(x), np.abs(y)))
    return bool(np.all(np.abs(x - y) <= limit))


def _shape(e: Entry) -> int:
    """A cluster entry's hosts, hashed: a change of it is copied to the backup at once."""
    hosts = e.value.get("h", ()) if isinstance(e.value, dict) else ()
    return hash(tuple(hosts))


def _fit_cluster(data: dict[str, Any]) -> dict[str, Any]:
    """Cluster data small enough for one message: rows, then the oldest levels, go first."""
    if len(msgpack.packb(data, use_bin_type=True)) <= _MAX_WIRE_CLUSTER:
        return data
    out = dict(data)
    lv = {h: {m: list(r) for m, r in per.items()} for h, per in data.get("lv", {}).items()}
    out["lv"] = lv
    recs = sorted((r[2], h, m) for h, per in lv.items() for m, r in per.items())
    for _, h, m in recs:
        lv[h][m][3] = None
        if len(msgpack.packb(out, use_bin_type=True)) <= _MAX_WIRE_CLUSTER:
            return out
    for _, h, m in recs:
        del lv[h][m]
        if not lv[h]:
            del lv[h]
        if len(msgpack.packb(out, use_bin_type=True)) <= _MAX_WIRE_CLUSTER:
            break
    return out


# ---------------------------------------------------------------- the node


class XbacNode:
    """One agent's XBAC: member, backup leader or leader of its group."""

    def __init__(
        self,
        overlay: Any,
        clock: Clock,
        measure: Measure,
        params: XbacParams | None = None,
        host_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.params = p = params or XbacParams()
        p.validate()
        self.overlay = overlay
        self.clock = clock
        self._measure = measure
        self.node_id: bytes = overlay.node_id
        self.host_id = host_id or self.node_id.hex()[:40]
        self.mid = self.node_id.hex()[:16]
        self._rng = rng or random.Random(int.from_bytes(self.node_id[:8], "big"))
        self.role = "none"
        self.group_id: bytes | None = None
        self.leader: Member | None = None
        self.leader_value = 0
        self.my_value = 0
        self.next_value = 0
        self.members: dict[bytes, Member] = {}
        self.backups: dict[bytes, int] = {}
        self.neighbours: list[tuple[LeaderRecord, float]] = []
        self.rings = MeridianRings(per_ring=p.per_ring)
        self.known_leaders: dict[bytes, LeaderRecord] = {}
        self.ring = Ring([])
        self.store = GroupStore()
        self.predictor = XbacPredictor(p.predictor, p.clusters)
        self.predictor.set_groups({self.node_id: _SELF_GROUP})
        self.version = 0
        self._last_heard = 0.0
        self._misses: dict[bytes, int] = {}
        self._lost: dict[bytes, tuple[Member, float]] = {}
        self._member_ver: dict[bytes, int] = {}
        self._summaries: dict[tuple[Any, ...], tuple[Any, np.ndarray | None]] = {}
        self.group_version = 0
        #: Last backup copy of each key: (backup member, version, when, hosts' hash, interval).
        self._pushed: dict[Key, tuple[bytes, float, float, int, float]] = {}
        self._reported: dict[str, tuple[int, float, bytes | None, float]] = {}
        self._cid: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._not_xbac: dict[str, float] = {}
        self._merging: dict[int, list[tuple[bytes, int, dict[str, Any]]]] = {}
        #: Summary broadcasts: ``budget`` bytes/s, ``burst`` saved up (thesis §7.5.1).
        self._summary_bytes = TokenBucket(p.budget, p.burst, clock.seconds())
        #: Measurements peers may ask for (Meridian probes).
        self._probes = TokenBucket(p.probe_rate, p.probe_burst, clock.seconds())
        self._timer: Any = None
        self._state_timer: Any = None
        self._next: dict[str, float] = {}
        self._running = False
        self.quality: dict[str, list[float]] = {}
        self.counters: dict[str, int] = {
            "invalid": 0,
            "refused": 0,
            "merges": 0,
            "splits": 0,
            "takeovers": 0,
            "stepdowns": 0,
            "members_dropped": 0,
            "summaries_deferred": 0,
            "predictions": 0,
            "predictions_none": 0,
            "regroups": 0,
        }
        #: Group id kept while a lone leader looks for a group (reused if it founds again).
        self._refound_as: bytes | None = None
        self._regrouping = False
        self._founded_blind = False
        # Its own stream, so that regroup timing leaves the protocol's random choices alone.
        self._regroup_rng = random.Random(self.node_id)
        self.traffic: dict[str, dict[str, int]] = {}
        #: Batched group requests waiting per member: (name, body, size, Deferred) and timer.
        self._outbox: dict[bytes, list[tuple[str, Any, int, Deferred[Any]]]] = {}
        self._outbox_timer: dict[bytes, Any] = {}
        self._outbox_group: dict[bytes, bytes | None] = {}
        #: Cross-group predictions (thesis §7.1.1): asks other groups, answers them.
        self._similar = SimilarGroups(self)
        self._register()

    def _register(self) -> None:
        for name, fn in self._handlers().items():
            self.overlay.register_handler(name, self._wrap(name, fn))

    # ================================================================ helpers

    def _now(self) -> float:
        return float(self.clock.seconds())

    def _me(self) -> Member:
        ip, port = self._address()
        return Member(self.node_id, self.host_id, ip, port)

    def _address(self) -> tuple[str, int]:
        t = getattr(self.overlay, "transport", None)
        if t is not None:
            try:
                h = t.getHost()
                return (str(h.host), int(h.port))
            except Exception:
                log.failure("cannot read the overlay address")
        return (self.host_id, self.params.port)

    def _traffic_of(self, name: str) -> dict[str, int]:
        return self.traffic.setdefault(name, {"out": 0, "out_bytes": 0, "in": 0, "in_bytes": 0})

    def _count(self, name: str, direction: str, body: Any) -> None:
        try:
            size = len(msgpack.packb(body, use_bin_type=True))
        except Exception:
            size = 0
        t = self._traffic_of(name)
        t[direction] += 1
        t[direction + "_bytes"] += size

    def _wrap(self, name: str, fn: Callable[[Any, Peer], Any]) -> Callable[[Any, Peer], Any]:
        def handler(body: Any, sender: Peer) -> Any:
            if name != "xbac.batch":  # a batch counts its parts, and its framing apart
                self._count(name, "in", body)
            if not self._running and name not in ("xbac.info",):
                raise XbacProtocolError("not running")
            try:
                return fn(body, sender)
            except XbacProtocolError:
                self.counters["invalid"] += 1
                raise
            except (KeyError, TypeError, IndexError, AttributeError) as e:
                self.counters["invalid"] += 1
                raise XbacProtocolError(f"invalid body: {type(e).__name__}") from e

        return handler

    def _send(
        self, to: Any, name: str, body: Any, timeout: float | None = None, batch: bool = True
    ) -> Deferred[Any]:
        """Send ``name`` to a node ID (a member, or ourselves) or an address.

        A request of :data:`BATCHED` to another member waits in that member's outbox (unless
        ``batch`` is false or ``batch_delay`` is 0) and goes with the others in one datagram.
        """
        if (
            batch
            and name in BATCHED
            and self.params.batch_delay > 0
            and isinstance(to, bytes)
            and to != self.node_id
            and to in self.members
            and self.group_id is not None
        ):
            return self._enqueue(to, name, body)
        if type(body) is dict and self.group_id is not None and "G" not in body:
            body = {**body, "G": self.group_id}
        if isinstance(to, bytes) and to == self.node_id:
            # A local call: no traffic.
            fn = self._handlers()[name]
            return maybeDeferred(fn, body, Peer(self.node_id, ("", 0), "core"))
        if isinstance(to, bytes):
            m = self.members.get(to)
            if m is not None:
                to = (m.ip, m.port)
        wait = self.params.rpc_timeout if timeout is None else timeout
        # Group requests are idempotent: a lost datagram costs one more try, not a member.
        tries = 1 if name in ("xbac.info", "xbac.measure") else 1 + self.params.retries

        def attempt(left: int) -> Deferred[Any]:
            if name != "xbac.batch" or left < tries:
                # A batch's first copy was counted by its parts and framing.
                self._count(name, "out", body)
            try:
                d = self.overlay.request(to, name, body, timeout=wait)
            except Exception as e:
                return fail(e)
            if left <= 1:
                return d

            def again(f: Failure) -> Any:
                if f.check(RequestTimeout) and self._running:
                    return attempt(left - 1)
                return f

            return d.addErrback(again)

        return attempt(tries)

    # -- batches -------------------------------------------------------------------------

    def _enqueue(self, to: bytes, name: str, body: Any) -> Deferred[Any]:
        try:
            size = len(msgpack.packb(body, use_bin_type=True))
        except (TypeError, ValueError, OverflowError) as e:
            return fail(XbacProtocolError(f"cannot encode {name}: {e}"))
        if size >= BATCH_BYTES:
            # Too big to share a datagram: it goes alone, now.
            return self._send(to, name, body, batch=False)
        self._count(name, "out", body)
        d: Deferred[Any] = Deferred()
        box = self._outbox.get(to, [])
        if box and sum(op[2] for op in box) + size > BATCH_BYTES:
            self._flush(to)
        box = self._outbox.setdefault(to, [])
        self._outbox_group.setdefault(to, self.group_id)
        box.append((name, body, size, d))
        if len(box) >= BATCH_MAX_OPS:
            self._flush(to)
        elif to not in self._outbox_timer:
            self._outbox_timer[to] = self.clock.callLater(self.params.batch_delay, self._flush, to)
        return d

    def _flush(self, to: bytes) -> None:
        """Send the member's waiting requests as one ``xbac.batch``."""
        t = self._outbox_timer.pop(to, None)
        if t is not None and t.active():
            t.cancel()
        ops = self._outbox.pop(to, [])
        group = self._outbox_group.pop(to, None)
        if not ops:
            return
        # The group of the moment they were queued: a member that leaves right after still
        # hands its entries over as a member of that group.
        batch = {"o": [[BATCH_CODES[name], body] for name, body, _, _ in ops], "G": group}
        t = self._traffic_of("xbac.batch")
        t["out"] += 1
        t["out_bytes"] += max(
            0, len(msgpack.packb(batch, use_bin_type=True)) - sum(op[2] for op in ops)
        )
        d = self._send(to, "xbac.batch", batch, batch=False)

        def answered(body: Any) -> None:
            results = body.get("r") if type(body) is dict else None
            if type(results) is not list or len(results) != len(ops):
                failed(Failure(XbacProtocolError("malformed batch answer")))
                return
            for (name, sub, _, sd), res in zip(ops, results, strict=True):
                if type(res) is list and len(res) == 2 and res[0] == 0:
                    sd.callback(res[1])
                elif type(res) is list and len(res) == 2 and res[0] == 2:
                    # Its answer did not fit: send it again, alone.
                    self._send(to, name, sub, batch=False).chainDeferred(sd)
                else:
                    msg = res[1] if type(res) is list and len(res) == 2 else "bad answer"
                    sd.errback(XbacProtocolError(f"{name}: {msg}"))

        def failed(f: Failure) -> None:
            for _, _, _, sd in ops:
                if not sd.called:
                    sd.errback(f)

        d.addCallbacks(answered, failed)

    def _flush_all(self) -> None:
        for to in list(self._outbox):
            self._flush(to)

    def _on_batch(self, body: Any, sender: Peer) -> Any:
        """Run each part of a batch through its own handler; answer the results in order."""
        b = _dict(body)
        parts = b["o"]
        if type(parts) is not list or not 1 <= len(parts) <= BATCH_MAX_OPS:
            raise _bad("batch")
        handlers = self._handlers()
        group = b.get("G")
        framing = len(msgpack.packb(body, use_bin_type=True))
        ds: list[Deferred[Any]] = []
        for part in parts:
            if type(part) is not list or len(part) != 2 or part[0] not in BATCH_NAMES:
                raise _bad("batch part")
            name, sub = BATCH_NAMES[part[0]], part[1]
            framing -= len(msgpack.packb(sub, use_bin_type=True))
            if type(sub) is dict and group is not None:
                sub = {**sub, "G": group}
            ds.append(maybeDeferred(self._wrap(name, handlers[name]), sub, sender))
        t = self._traffic_of("xbac.batch")
        t["in"] += 1
        t["in_bytes"] += max(0, framing)

        def collect(outcomes: list[tuple[bool, Any]]) -> dict[str, Any]:
            results: list[list[Any]] = []
            room = BATCH_REPLY_BYTES
            for ok, value in outcomes:
                if not ok:
                    err = value.value
                    if isinstance(err, XbacProtocolError):
                        text = str(err)
                    else:
                        log.failure("XBAC batch part", value)
                        text = "failed"
                    results.append([1, text[:200]])
                    continue
                try:
                    n = len(msgpack.packb(value, use_bin_type=True))
                except (TypeError, ValueError, OverflowError):
                    results.append([1, "unencodable answer"])
                    continue
                if n > room:
                    results.append([2, None])
                else:
                    room -= n
                    results.append([0, value])
            return {"r": results}

        return DeferredList(ds, consumeErrors=True).addCallback(collect)

    def _rtt(self, host: str) -> Deferred[float | None]:
        try:
            d = maybeDeferred(self._measure, host)
        except Exception:
            return succeed(None)

        def ok(v: Any) -> float | None:
            if type(v) in (int, float) and math.isfinite(v) and v >= 0:
                return float(v)
            return None

        return d.addCallbacks(ok, lambda f: None)

    # ================================================================ lifecycle

    def start(self) -> Deferred[None]:
        """Bootstrap: find the closest leaders, join a group or found one (thesis connect)."""
        if self._running:
            return succeed(None)
        self._running = True
        self._register()
        self._last_heard = self._now()
        d = self._bootstrap()

        def started(_: Any) -> None:
            self._schedule_tick()

        return d.addCallback(started)

    def stop(self, graceful: bool = True) -> Deferred[None]:
        """Leave the group: with notice, hand over leadership and stored entries first.

        The Deferred fires once a withdrawn group's record is stored in the DHT, or after
        ``2 * rpc_timeout`` at most, so that the overlay can stay up until then.
        """
        if not self._running:
            return succeed(None)
        left: Deferred[Any] = succeed(None)
        if graceful and self.group_id is not None:
            try:
                left = self._leave_with_notice()
            except Exception:
                log.failure("leaving the XBAC group")
        done: Deferred[None] = Deferred()

        def finish(_: Any = None) -> None:
            if not done.called:
                done.callback(None)

        timer = self.clock.callLater(2 * self.params.rpc_timeout, finish)

        def settled(_: Any) -> None:
            if timer.active():
                timer.cancel()
            finish()

        left.addBoth(settled)
        self._flush_all()
        self._running = False
        for t in (self._timer, self._state_timer):
            if t is not None and t.active():
                t.cancel()
        self._timer = self._state_timer = None
        self.role = "none"
        unregister = getattr(self.overlay, "unregister_handler", None)
        if unregister is not None:
            for name in self._handlers():
                unregister(name)
        return done

    # ================================================================ bootstrapping

    def _bootstrap(self, records: list[LeaderRecord] | None = None) -> Deferred[Any]:
        """Find a group through the announced leaders (``records`` if just read)."""
        d = succeed(records) if records is not None else self._read_leaders()

        def walk(records: list[LeaderRecord]) -> Deferred[None] | None:
            records = [r for r in records if r.node_id != self.node_id]
            if not records:
                self._found_group()
                return None
            return self._meridian(records).addCallback(self._try_leaders, records)

        def failed(f: Failure) -> None:
            log.failure("XBAC bootstrap failed; founding a group", f)
            if self.group_id is None:
                self._found_group()

        return d.addCallback(walk).addErrback(failed)

    def _read_leaders(self) -> Deferred[list[LeaderRecord]]:
        try:
            d = self.overlay.get(LEADERS_KEY)
        except Exception as e:
            return fail(e)

        def parse(values: list[bytes]) -> list[LeaderRecord]:
            newest: dict[bytes, LeaderRecord] = {}
            for v in values:
                try:
                    rec = _leader_record(msgpack.unpackb(v, raw=False))
                except Exception:
                    self.counters["invalid"] += 1
                    continue
                old = newest.get(rec.group)
                if old is None or rec.time > old.time:
                    newest[rec.group] = rec
            ended = {g for g, rec in newest.items() if rec.gone}
            for n in [n for n, r in self.known_leaders.items() if r.group in ended]:
                self._drop_leader(n)
            live = [rec for rec in newest.values() if not rec.gone]
            for rec in live:
                self.known_leaders[rec.node_id] = rec
            return sorted(live, key=lambda r: (-r.time, r.node_id))

        return d.addCallback(parse).addErrback(lambda f: [])

    def _meridian(self, records: list[LeaderRecord]) -> Deferred[LeaderRecord | None]:
        """Walk from the newest announced leader towards the leader closest to this host."""
        result: Deferred[LeaderRecord | None] = Deferred()
        hops = [0]

        def ask(rec: LeaderRecord) -> None:
            hops[0] += 1
            d = self._send(rec.address, "xbac.meridian", {"t": self.host_id})

            def answered(body: Any) -> None:
                b = _dict(body)
                nxt = b.get("n")
                if nxt is not None and hops[0] < self.params.max_hops:
                    n = _leader_record(nxt)
                    if n.node_id not in (rec.node_id, self.node_id):
                        self.known_leaders[n.node_id] = n
                        ask(n)
                        return
                result.callback(rec)

            def failed(f: Failure) -> None:
                others = [r for r in records if r is not rec and r.node_id != rec.node_id]
                records[:] = others
                if others and hops[0] < self.params.max_hops:
                    ask(others[0])
                else:
                    result.callback(None)

            d.addCallbacks(answered, failed).addErrback(failed)

        ask(records[0])
        return result

    def _try_leaders(self, found: LeaderRecord | None, records: list[LeaderRecord]) -> Any:
        """Apply the grouping criterion to the found leader, then the next nearest ones."""
        if found is None:
            self._found_group()
            return None
        tried: list[bytes] = []
        refused: list[bytes] = []

        def attempt(rec: LeaderRecord) -> Deferred[None] | None:
            tried.append(rec.node_id)
            d = self._send(rec.address, "xbac.neighbours", None)
            d.addCallback(check, rec)
            d.addErrback(lambda f: next_one(None))
            return d

        def check(body: Any, rec: LeaderRecord) -> Deferred[Any]:
            b = _dict(body)
            neigh = []
            for item in b.get("n", [])[:16]:
                if type(item) is not list or len(item) != 2:
                    raise _bad("neighbour")
                neigh.append((_leader_record(item[0]), _num(item[1], "distance", 0, 3600)))
            for r, _ in neigh:
                self.known_leaders.setdefault(r.node_id, r)
            hosts = [rec.host, *(r.host for r, _ in neigh)]
            ds = [self._rtt(h) for h in hosts]

            def decide(results: list[tuple[bool, Any]]) -> Any:
                vals = [v if ok else None for ok, v in results]
                to_leader = vals[0]
                if to_leader is None:
                    return next_one(neigh)
                leader_to: dict[Hashable, float] = {r.node_id: dl for r, dl in neigh}
                host_to: dict[Hashable, float] = {
                    r.node_id: v for (r, _), v in zip(neigh, vals[1:], strict=True) if v is not None
                }
                if meets_grouping_criterion(to_leader, leader_to, host_to, self.params.grouping):
                    return self._join(rec).addErrback(lambda f: next_one(neigh))
                refused.append(rec.node_id)
                return next_one(neigh, host_to)

            return DeferredList(ds, consumeErrors=True).addCallback(decide)

        def next_one(
            neigh: list[tuple[LeaderRecord, float]] | None, host_to: dict | None = None
        ) -> Any:
            if self.group_id is not None:
                return None
            if len(tried) < self.params.attempts and neigh:
                dist = host_to or {}
                cands = sorted(
                    (r for r, _ in neigh if r.node_id not in tried),
                    key=lambda r: dist.get(r.node_id, math.inf),
                )
                if cands:
                    return attempt(cands[0])
            # Founded after the criterion refused us: a group of one by measurement, not
            # for want of reachable leaders, so no regrouping later.
            self._found_group(blind=not refused)
            return None

        return attempt(found)

    def _join(self, rec: LeaderRecord) -> Deferred[None]:
        d = self._send(rec.address, "xbac.join", {"m": self._me().wire()})

        def joined(body: Any) -> None:
            b = _dict(body)
            if "redirect" in b:
                raise XbacProtocolError("not a leader any more")
            sender = _member(b["l"])
            self.role = "member"
            self._apply_state(b, sender.node_id, accept_any=True)

        return d.addCallback(joined)

    def _found_group(self, blind: bool = True) -> None:
        """Found a group; ``blind`` when no leader could be asked (see _maybe_regroup)."""
        if self.group_id is not None:
            return
        self._founded_blind = blind
        now = self._now()
        self.group_id = (
            self._refound_as
            or hashlib.sha1(f"{self.host_id}|{self.node_id.hex()}|{now!r}".encode()).digest()
        )
        self._refound_as = None
        self.role = "leader"
        self.my_value = self.leader_value = 1
        self.next_value = 1
        me = self._me()
        self.leader = me
        self.members = {self.node_id: me}
        self._membership_changed()
        self._announce()
        self._measure_leaders()

    def _announce(self, gone: bool = False) -> Deferred[Any]:
        """Announce this leader in the DHT, or (``gone``) that its group ended."""
        if self.role != "leader" or self.group_id is None:
            return succeed(None)
        me = self._me()
        rec = LeaderRecord(
            self.group_id, self.node_id, self.host_id, me.ip, me.port, self._now(), gone
        )
        value = msgpack.packb(rec.wire(), use_bin_type=True)
        self._next["announce"] = self._now() + self.params.announce_ttl / 2
        try:
            d = self.overlay.put(LEADERS_KEY, value, ttl=self.params.announce_ttl)
        except Exception:
            log.failure("announcing the XBAC leader")
            return succeed(None)
        return d.addErrback(lambda f: log.info("leader announcement not stored: {f}", f=f.value))

    def _measure_leaders(self) -> None:
        """Measure the other leaders into the rings and greet them (they add us to theirs).

        The leaders come from the DHT and from what this node learned while bootstrapping;
        each greeted leader answers with the leaders it knows, measured in turn.
        """
        d = self._read_leaders()
        seen: set[bytes] = set()

        def meet(rec: LeaderRecord) -> None:
            if rec.node_id in seen or rec.node_id == self.node_id or rec.group == self.group_id:
                return
            if len(seen) >= 64:
                return
            seen.add(rec.node_id)
            self._rtt(rec.host).addCallback(self._ring_add, rec)
            if self.group_id is None or self.role != "leader":
                return
            me = self._me()
            mine = LeaderRecord(
                self.group_id, self.node_id, self.host_id, me.ip, me.port, self._now()
            )
            self._send(rec.address, "xbac.hello", {"r": mine.wire()}).addCallbacks(
                learned, lambda f: self._forget_leader(rec.node_id, f)
            )

        def learned(body: Any) -> None:
            raw = body.get("l") if type(body) is dict else None
            if type(raw) is not list:
                return
            for item in raw[:32]:
                try:
                    rec = _leader_record(item)
                except XbacProtocolError:
                    self.counters["invalid"] += 1
                    continue
                self.known_leaders.setdefault(rec.node_id, rec)
                meet(rec)

        def measure(records: list[LeaderRecord]) -> None:
            for rec in records:
                if rec.group == self.group_id and rec.node_id != self.node_id:
                    # Another leader announces this group: the two resolve who leads.
                    if self.role == "leader":
                        self._send(rec.address, "xbac.state", self._state_body()).addCallbacks(
                            self._state_answer, lambda f: None, callbackArgs=(rec.node_id,)
                        )
            known = {r.node_id: r for r in self.known_leaders.values()}
            known.update({r.node_id: r for r in records})
            for rec in sorted(known.values(), key=lambda r: (-r.time, r.node_id))[:32]:
                meet(rec)

        d.addCallback(measure)

    def _forget_leader(self, node_id: bytes, why: Failure) -> None:
        """A leader that did not answer an XBAC request leaves the rings (its host may
        still answer pings after its agent left); it comes back when it answers again."""
        if why.check(RequestTimeout):
            self._drop_leader(node_id)

    def _drop_leader(self, node_id: bytes) -> None:
        """Forget a leader: known leaders, Meridian rings and the nearest neighbours."""
        if node_id in self.known_leaders:
            del self.known_leaders[node_id]
            self.rings.remove(node_id)
            self._update_neighbours()

    def _ring_add(self, rtt: float | None, rec: LeaderRecord) -> None:
        if rtt is None:
            return
        self.known_leaders[rec.node_id] = rec
        self.rings.add(rec.node_id, rtt)
        self._update_neighbours()

    def _update_neighbours(self) -> None:
        peers = self.rings.peers()
        near = sorted((n for n in peers if n in self.known_leaders), key=lambda n: (peers[n], n))[
            : self.params.grouping.neighbours
        ]
        self.neighbours = [(self.known_leaders[n], peers[n]) for n in near]

    # ================================================================ handlers

    def _handlers(self) -> dict[str, Callable[[Any, Peer], Any]]:
        return {
            "xbac.info": self._on_info,
            "xbac.measure": self._on_measure,
            "xbac.meridian": self._on_meridian,
            "xbac.neighbours": self._on_neighbours,
            "xbac.hello": self._on_hello,
            "xbac.join": self._on_join,
            "xbac.leave": self._on_leave,
            "xbac.state": self._on_state,
            "xbac.alive": self._on_alive,
            "xbac.yield": self._on_yield,
            "xbac.handover": self._on_handover,
            "xbac.store": self._on_store,
            "xbac.fetch": self._on_fetch,
            "xbac.delete": self._on_delete,
            "xbac.observe": self._on_observe,
            "xbac.report": self._on_report,
            "xbac.summary": self._on_summary,
            "xbac.batch": self._on_batch,
            "xbac.similar": self._similar.on_request,
        }

    def _on_info(self, body: Any, sender: Peer) -> Any:
        return {
            "g": self.group_id,
            "h": self.host_id,
            "r": self.role,
            "l": self.leader.wire() if self.leader is not None else None,
        }

    def _on_measure(self, body: Any, sender: Peer) -> Any:
        b = _dict(body)
        target = _host(b["t"])
        if sender.node_id not in self.known_leaders and sender.node_id not in self.members:
            self.counters["refused"] += 1
            raise XbacProtocolError("measurements only for known leaders")
        if not self._probe_allowed():
            self.counters["refused"] += 1
            raise XbacProtocolError("too many measurement requests")
        return self._rtt(target).addCallback(lambda v: {"d": v})

    def _probe_allowed(self) -> bool:
        """Token bucket of the measurements peers may ask for (no abuse amplifier)."""
        return self._probes.take(self._now())

    def _on_meridian(self, body: Any, sender: Peer) -> Any:
        b = _dict(body)
        _host(b["t"])
        # A newcomer asks about itself: the leader measures the address the request came
        # from, never a third party.
        target = sender.address[0] or b["t"]
        if not self._probe_allowed():
            self.counters["refused"] += 1
            raise XbacProtocolError("too many measurement requests")
        if self.role != "leader":
            if self.leader is not None and self.leader.node_id != self.node_id:
                rec = self._leader_record()
                return {"n": rec.wire() if rec is not None else None}
            return {"n": None}

        def probe(d0: float | None) -> Any:
            if d0 is None:
                return {"n": None}
            cands = [
                n for n in self.rings.candidates(d0, self.params.beta) if n in self.known_leaders
            ]
            # Within half the asker's timeout and without retries: a ring member that is
            # gone (its host may still answer pings) must not make the newcomer give up.
            wait = self.params.rpc_timeout / 2
            ds = [
                self._send(
                    self.known_leaders[n].address, "xbac.measure", {"t": target}, timeout=wait
                )
                for n in cands
            ]

            start: float = d0

            def pick(results: list[tuple[bool, Any]]) -> Any:
                best: bytes | None = None
                best_d = start
                for n, (ok, r) in zip(cands, results, strict=True):
                    if not ok:
                        self._forget_leader(n, r)
                        continue
                    if type(r) is not dict:
                        continue
                    v: Any = r.get("d")
                    if isinstance(v, int | float) and math.isfinite(v) and 0 <= v < best_d:
                        best, best_d = n, float(v)
                if best is None:
                    return {"n": None, "d": d0}
                return {"n": self.known_leaders[best].wire(), "d": best_d}

            return DeferredList(ds, consumeErrors=True).addCallback(pick)

        return self._rtt(target).addCallback(probe)

    def _leader_record(self) -> LeaderRecord | None:
        if self.leader is None or self.group_id is None:
            return None
        L = self.leader
        return LeaderRecord(self.group_id, L.node_id, L.host, L.ip, L.port, self._now())

    def _on_neighbours(self, body: Any, sender: Peer) -> Any:
        if self.role != "leader":
            raise XbacProtocolError("not a leader")
        return {"n": [[r.wire(), d] for r, d in self.neighbours]}

    def _on_hello(self, body: Any, sender: Peer) -> Any:
        rec = _leader_record(_dict(body)["r"])
        if rec.node_id != sender.node_id or rec.group == self.group_id:
            raise XbacProtocolError("hello from someone else")
        self.known_leaders[rec.node_id] = rec
        self._rtt(rec.host).addCallback(self._ring_add, rec)
        others = [r.wire() for n, r in self.known_leaders.items() if n != rec.node_id]
        return {"ok": True, "l": others[:32]}

    # -- membership --------------------------------------------------------------------

    def _state_body(self) -> dict[str, Any]:
        return {
            "g": self.group_id,
            "v": self.leader_value,
            "nv": self.next_value,
            "ver": self.version,
            "l": self._me().wire(),
            "m": [m.wire() for m in self.members.values()],
            "b": [[n, v] for n, v in self.backups.items()],
            "n": [[r.wire(), d] for r, d in self.neighbours],
        }

    def _on_join(self, body: Any, sender: Peer) -> Any:
        m = _member(_dict(body)["m"])
        if m.node_id != sender.node_id:
            raise XbacProtocolError("a node joins only itself")
        if self.role != "leader":
            rec = self._leader_record()
            return {"redirect": rec.wire() if rec is not None else None}
        if m.node_id not in self.members and len(self.members) >= self.params.max_members:
            raise XbacProtocolError("group full")
        if sender.address[0]:
            m.ip, m.port = sender.address[0], int(sender.address[1])
        self.members[m.node_id] = m
        self._misses.pop(m.node_id, None)
        self._membership_changed()
        self._broadcast_state_soon()
        return self._state_body()

    def _on_leave(self, body: Any, sender: Peer) -> Any:
        if (
            self.role == "leader"
            and sender.node_id in self.members
            and sender.node_id != self.node_id
        ):
            del self.members[sender.node_id]
            self.backups.pop(sender.node_id, None)
            self._membership_changed()
            self._broadcast_state_soon()
        return {"ok": True}

    def _on_state(self, body: Any, sender: Peer) -> Any:
        b = _dict(body)
        gid = _id(b["g"], "group id")
        value = _int(b["v"], "leader value")
        if gid != self.group_id:
            return {"g": self.group_id, "ok": False}
        if sender.node_id not in self.members:
            self.counters["refused"] += 1
            if (
                self.role == "leader"
                and sender.node_id in self._lost
                and (value, sender.node_id) > (self.leader_value, self.node_id)
            ):
                # Two leaders of one group met: the lower one (this node) hands over.
                try:
                    other = _member(b["l"])
                except XbacProtocolError:
                    return {"ok": False}
                if other.node_id == sender.node_id:
                    self._step_down(other, value)
                    return {"ok": True}
            # Not applied; tell the sender who leads the group.
            return {
                "ok": False,
                "v": self.leader_value,
                "l": self.leader.wire() if self.leader else None,
            }
        if (value, sender.node_id) < (
            self.leader_value,
            self.leader.node_id if self.leader else b"",
        ):
            # A leader with a lower value: tell it who leads.
            return {
                "ok": False,
                "v": self.leader_value,
                "l": self.leader.wire() if self.leader else None,
            }
        if "m" not in b:
            # A heartbeat: enough when it is from our leader and our state is current.
            ver = _int(b.get("ver"), "version")
            if self.leader is not None and sender.node_id == self.leader.node_id:
                if ver == self.group_version and value == self.leader_value:
                    self._last_heard = self._now()
                    return {"ok": True, "ver": ver}
            return {"ok": True, "need": True}
        self._apply_state(b, sender.node_id)
        return {"ok": True, "v": self.leader_value, "ver": self.group_version}

    def _apply_state(self, b: dict[str, Any], sender_id: bytes, accept_any: bool = False) -> None:
        gid = _id(b["g"], "group id")
        value = _int(b["v"], "leader value")
        nv = _int(b.get("nv", value), "next value")
        leader = _member(b["l"])
        if leader.node_id != sender_id:
            raise XbacProtocolError("state from someone else")
        raw = b["m"]
        if type(raw) is not list or not 0 < len(raw) <= self.params.max_members:
            raise _bad("member list")
        members = {}
        for item in raw:
            m = _member(item)
            members[m.node_id] = m
        backups: dict[bytes, int] = {}
        for item in b.get("b", [])[: self.params.backups + 8]:
            if type(item) is not list or len(item) != 2:
                raise _bad("backup")
            backups[_id(item[0])] = _int(item[1], "leader value")
        neigh = []
        for item in b.get("n", [])[:16]:
            if type(item) is not list or len(item) != 2:
                raise _bad("neighbour")
            neigh.append((_leader_record(item[0]), _num(item[1], "distance", 0, 3600)))
        members[leader.node_id] = leader
        if self.node_id not in members:
            # Dropped from the group (we were silent too long): join again.
            if accept_any:
                raise XbacProtocolError("join answer without us")
            self._rejoin()
            return
        was_leader = self.role == "leader"
        old_leader = self.leader.node_id if self.leader else None
        self.group_id = gid
        self.leader = leader
        self.leader_value = value
        self.next_value = max(self.next_value, nv)
        self.group_version = _int(b.get("ver", 0), "version")
        self._last_heard = self._now()
        self.neighbours = neigh
        for r, _ in neigh:
            self.known_leaders.setdefault(r.node_id, r)
        if leader.node_id != self.node_id:
            if was_leader:
                self.counters["stepdowns"] += 1
                lost = [m for n, m in self.members.items() if n not in members]
                if lost:
                    self._send(
                        leader.node_id if leader.node_id in members else (leader.ip, leader.port),
                        "xbac.yield",
                        {"m": [m.wire() for m in lost]},
                    ).addErrback(lambda f: None)
            if self.node_id in backups:
                self.role = "backup"
                self.my_value = backups[self.node_id]
            else:
                self.role = "member"
        changed = set(members) != set(self.members)
        self.members = members
        self.backups = backups
        if changed or old_leader != leader.node_id:
            self._membership_changed()

    def _maybe_regroup(self) -> None:
        """A leader alone in its group joins another group if the bootstrap now finds one.

        A node that started before its overlay joined (or while the leaders were out of
        reach) founds a group of one; without this it would stay alone. When other groups'
        leaders are announced, it bootstraps again; if none takes it, it founds its group
        again under the same id. A node that founded its group because the grouping
        criterion refused it (a site of its own) does not regroup.
        """
        if self.role != "leader" or len(self.members) != 1 or self._regrouping:
            return
        if not self._founded_blind:
            return
        self._regrouping = True

        def check(records: list[LeaderRecord]) -> None:
            others = [r for r in records if r.node_id != self.node_id and r.group != self.group_id]
            if not others or self.role != "leader" or len(self.members) != 1:
                return
            self.counters["regroups"] += 1
            log.info(
                "XBAC: alone in its group, {n} other leader(s) known; regrouping", n=len(others)
            )
            self._refound_as = self.group_id
            self._rejoin(reason="alone in its group", records=records)

        def done(result: Any) -> None:
            self._regrouping = False
            if isinstance(result, Failure):
                log.failure("XBAC regroup", result)

        self._read_leaders().addCallback(check).addBoth(done)

    def _rejoin(
        self, reason: str = "dropped from XBAC group", records: list[LeaderRecord] | None = None
    ) -> None:
        log.info("{reason}; bootstrapping again", reason=reason)
        self.group_id = None
        self.role = "none"
        self.leader = None
        self.members = {}
        self.backups = {}
        self.leader_value = 0
        self._bootstrap(records)

    def _on_alive(self, body: Any, sender: Peer) -> Any:
        return {
            "leader": self.role == "leader",
            "g": self.group_id,
            "backup": sender.node_id in self.backups and self.role == "leader",
        }

    def _on_yield(self, body: Any, sender: Peer) -> Any:
        if self.role != "leader":
            raise XbacProtocolError("not a leader")
        if sender.node_id not in self._lost:
            self._check_member(sender, body)
        raw = _dict(body)["m"]
        if type(raw) is not list or len(raw) > self.params.max_members:
            raise _bad("member list")
        added = False
        for item in raw:
            m = _member(item)
            if m.node_id not in self.members and len(self.members) < self.params.max_members:
                self.members[m.node_id] = m
                added = True
        if sender.node_id not in self.members:
            self.members[sender.node_id] = Member(
                sender.node_id, sender.node_id.hex()[:40], sender.address[0], int(sender.address[1])
            )
            added = True
        if added:
            self._membership_changed()
            self._broadcast_state_soon()
        return {"ok": True}

    def _on_handover(self, body: Any, sender: Peer) -> Any:
        if self.leader is None or sender.node_id != self.leader.node_id:
            raise XbacProtocolError("handover only from the leader")
        if self.node_id not in self.backups:
            raise XbacProtocolError("not a backup leader")
        self._take_over(exclude=sender.node_id)
        return {"ok": True}

    def _take_over(self, exclude: bytes | None = None) -> None:
        """Become the leader with this backup's leader value; tell the group."""
        self.counters["takeovers"] += 1
        value = self.backups.get(self.node_id, self.my_value)
        self.role = "leader"
        self.my_value = self.leader_value = value
        self.next_value = max([self.next_value, value, *self.backups.values()])
        if exclude is not None:
            self.members.pop(exclude, None)
        me = self._me()
        self.members[self.node_id] = me
        self.leader = me
        self.backups = {}
        self._misses = {}
        self._choose_backups()
        self._membership_changed()
        self._announce()
        self._measure_leaders()
        self._broadcast_state()

    def _choose_backups(self) -> None:
        if self.role != "leader":
            return
        want = self.params.backups
        current = {n: v for n, v in self.backups.items() if n in self.members and n != self.node_id}
        others = sorted(n for n in self.members if n != self.node_id and n not in current)
        self._rng.shuffle(others)
        for n in others[: max(0, want - len(current))]:
            self.next_value += 1
            current[n] = self.next_value
        self.backups = current

    def _membership_changed(self) -> None:
        self.version += 1
        if self.role == "leader":
            self._choose_backups()
        self.ring = Ring(self.members)
        now = self._now()
        handover = self.store.rebalance(self.ring, self.node_id, now, self.params.entry_ttl)
        for owner, entries in handover.items():
            self._push(owner, entries, backup=False)
        self._push_backups()

    # -- leader duties -----------------------------------------------------------------

    def _broadcast_state_soon(self) -> None:
        if self._state_timer is None or not self._state_timer.active():
            self._state_timer = self.clock.callLater(0.2, self._broadcast_state)

    def _broadcast_state(self) -> None:
        if self.role != "leader" or not self._running:
            return
        body = self._state_body()
        # Members that acknowledged the current state get a short heartbeat instead.
        beat = {k: body[k] for k in ("g", "v", "ver", "l")}
        for n in list(self.members):
            if n == self.node_id:
                continue
            msg = beat if self._member_ver.get(n) == self.version else body
            self._send(n, "xbac.state", msg).addCallbacks(
                self._state_answer, self._state_missed, callbackArgs=(n,), errbackArgs=(n,)
            ).addErrback(lambda f: log.failure("state answer", f))
        # Members dropped for silence still hear from us for a while: if this node was the
        # one cut off, they answer with the leader they follow now and this node steps down.
        now = self._now()
        for n, (m, until) in list(self._lost.items()):
            if until < now or n in self.members:
                del self._lost[n]
                continue
            self._send((m.ip, m.port), "xbac.state", body).addCallbacks(
                self._state_answer, lambda f: None, callbackArgs=(n,)
            )
        self._next["state"] = now + self.params.alive_interval

    def _state_answer(self, answer: Any, n: bytes) -> None:
        self._misses.pop(n, None)
        if type(answer) is dict and answer.get("ok") is True and n in self.members:
            if answer.get("ver") == self.version:
                self._member_ver[n] = self.version
            elif answer.get("need") is True and self.role == "leader":
                self._member_ver.pop(n, None)
                self._send(n, "xbac.state", self._state_body()).addCallbacks(
                    self._state_answer, lambda f: None, callbackArgs=(n,)
                )
        if n in self._lost and type(answer) is dict and answer.get("ok") is True:
            del self._lost[n]
        if type(answer) is not dict or self.role != "leader":
            return
        if answer.get("ok") is False and answer.get("l") is not None:
            try:
                other = _member(answer["l"])
                value = _int(answer.get("v"), "leader value")
            except XbacProtocolError:
                self.counters["invalid"] += 1
                return
            if other.node_id != self.node_id and (value, other.node_id) > (
                self.leader_value,
                self.node_id,
            ):
                # Two leaders met: the lower one steps down and hands its members over.
                self._step_down(other, value)

    def _step_down(self, other: Member, value: int) -> None:
        """Another leader of the group has the higher value: follow it, hand members over."""
        self.counters["stepdowns"] += 1
        self.role = "member"
        self.leader = other
        self.leader_value = value
        self.members.setdefault(other.node_id, other)
        self._last_heard = self._now()
        self._send(
            (other.ip, other.port),
            "xbac.yield",
            {"m": [m.wire() for m in self.members.values()]},
        ).addErrback(lambda f: None)

    def _state_missed(self, f: Failure, n: bytes) -> None:
        if self.role != "leader" or n not in self.members:
            return
        self._misses[n] = self._misses.get(n, 0) + 1
        if self._misses[n] >= self.params.member_misses:
            self._lost[n] = (self.members.pop(n), self._now() + self.params.lost_memory)
            self.backups.pop(n, None)
            self._misses.pop(n, None)
            self.counters["members_dropped"] += 1
            self._membership_changed()
            self._broadcast_state_soon()

    def _check_leader(self) -> None:
        """A backup leader that heard nothing for too long asks the leader, then takes over.

        A plain member that heard nothing for ``orphan_timeout`` (leader and backups gone,
        or this member cut off) bootstraps again.
        """
        if self.role == "member" and self._now() - self._last_heard > self.params.orphan_timeout:
            self._rejoin()
            return
        if self.role != "backup" or self.leader is None:
            return
        if self._now() - self._last_heard < self.params.leader_timeout:
            return
        L = self.leader
        self._last_heard = self._now()  # one check per timeout period

        def answered(body: Any) -> None:
            if type(body) is dict and body.get("leader") and body.get("g") == self.group_id:
                if not body.get("backup"):
                    self.role = "member"
                return
            self._take_over(exclude=L.node_id)

        self._send((L.ip, L.port), "xbac.alive", None).addCallbacks(
            answered, lambda f: self._take_over(exclude=L.node_id)
        ).addErrback(lambda f: log.failure("leader check", f))

    def _leave_with_notice(self) -> Deferred[Any]:
        """Hand over role and entries; a leader alone withdraws its group from the DHT."""
        others = [n for n in self.members if n != self.node_id]
        ring = Ring(others)
        withdrawn: Deferred[Any] = succeed(None)
        if self.role == "leader" and not others:
            # The group ends with its last member: newcomers must not walk towards it.
            withdrawn = self._announce(gone=True)
        if self.role == "leader" and others:
            succ = max(
                (n for n in self.backups if n in self.members and n != self.node_id),
                key=lambda n: (self.backups[n], n),
                default=None,
            )
            if succ is not None:
                self._send(succ, "xbac.handover", None).addErrback(lambda f: None)
        elif self.leader is not None and self.leader.node_id != self.node_id:
            self._send(self.leader.node_id, "xbac.leave", None).addErrback(lambda f: None)
        if ring.members:
            out: dict[bytes, list[Entry]] = {}
            for e in list(self.store.primary.values()) + list(self.store.backup.values()):
                owner = ring.owner_of(e.key)
                if owner is not None:
                    out.setdefault(owner, []).append(e)
            for owner, entries in out.items():
                self._push(owner, entries, backup=False)
        self.store = GroupStore()
        self.group_id = None
        return withdrawn

    # ================================================================ storage

    def _entry_wire(self, e: Entry, now: float) -> list[Any]:
        value = _fit_cluster(e.value) if e.kind == "c" else e.value
        return [e.kind, e.ident, value, e.version, max(1.0, e.expires - now)]

    def _push(self, to: bytes, entries: list[Entry], backup: bool, tries: int = 4) -> None:
        """Send entries to ``to``. A hand-over of primaries that got no answer is tried
        again (to whoever owns each entry by then), and an entry that finds no owner but
        this member comes back here: a lost datagram must not lose a mapping."""
        now = self._now()
        batches: list[tuple[list[list[Any]], list[Entry]]] = [([], [])]
        size = 0
        for e in entries:
            w = self._entry_wire(e, now)
            n = len(msgpack.packb(w, use_bin_type=True))
            if batches[-1][0] and size + n > 6000:
                batches.append(([], []))
                size = 0
            batches[-1][0].append(w)
            batches[-1][1].append(e)
            size += n
        for wire, sent in batches:
            if not wire:
                continue
            d = self._send(to, "xbac.store", {"e": wire, "b": backup})
            if backup or tries <= 1:
                d.addErrback(lambda f: None)
            else:
                d.addErrback(lambda f, sent=sent: self._handover_failed(sent, tries - 1))

    def _handover_failed(self, entries: list[Entry], tries: int) -> None:
        if not self._running or self.group_id is None:
            return
        by_owner: dict[bytes, list[Entry]] = {}
        for e in entries:
            owner = self.ring.owner_of(e.key)
            if owner is None or owner == self.node_id:
                if self.store.get(e.key, self._now()) is None:
                    self.store.put(e)
                continue
            by_owner.setdefault(owner, []).append(e)
        for owner, es in by_owner.items():
            self.clock.callLater(self.params.rpc_timeout, self._push, owner, es, False, tries)

    def _push_backups(self, keys: set[Key] | None = None) -> None:
        """Send backup copies: of ``keys``, or (periodically) of what changed or must be
        refreshed before its copy expires.

        A cluster whose hosts did not change (only levels moved) is copied at an interval
        that doubles from ``backup_interval`` up to ``cluster_backup_max`` (thesis
        MaxClusterBackupInterval); a host that joins or leaves it is copied at once. Its
        copy lives that interval plus ``backup_ttl``.
        """
        now = self._now()
        p = self.params
        for b, entries in self.store.by_backup(self.ring, self.node_id).items():
            if keys is not None:
                entries = [e for e in entries if e.key in keys]
            else:
                entries = [e for e in entries if self._backup_due(e, b, now)]
            out = []
            for e in entries:
                shape = _shape(e) if e.kind == "c" else 0
                last = self._pushed.get(e.key)
                every = p.backup_interval
                if e.kind == "c" and last is not None and last[0] == b and last[3] == shape:
                    every = min(2 * last[4], p.cluster_backup_max)
                self._pushed[e.key] = (b, e.version, now, shape, every)
                ttl = p.backup_ttl + (every if e.kind == "c" else 0.0)
                out.append(Entry(e.kind, e.ident, e.value, e.version, now + ttl))
            if out:
                self._push(b, out, backup=True)

    def _backup_due(self, e: Entry, b: bytes, now: float) -> bool:
        last = self._pushed.get(e.key)
        if last is None or last[0] != b:
            return True
        if e.kind != "c":
            return last[1] != e.version or now - last[2] >= self.params.backup_ttl / 2
        return last[3] != _shape(e) or now - last[2] >= last[4]

    def _valid_value(self, kind: str, value: Any) -> Any:
        if kind in ("h", "g"):
            return _int(value, "cluster id")
        return _check_cluster(value, self.params.points, self.params.max_cluster_hosts * 4)

    def _on_store(self, body: Any, sender: Peer) -> Any:
        self._check_member(sender, body)
        b = _dict(body)
        raw = b["e"]
        backup = b.get("b") is True
        if type(raw) is not list or len(raw) > 512:
            raise _bad("entries")
        now = self._now()
        kept = 0
        for item in raw:
            if type(item) is not list or len(item) != 5 or item[0] not in KINDS:
                raise _bad("entry")
            kind, ident = item[0], _host(item[1])
            value = self._valid_value(kind, item[2])
            version = _num(item[3], "version")
            ttl = _num(item[4], "ttl", 0.0, 86400.0 * 30)
            e = Entry(kind, ident, value, version, now + ttl)
            if backup:
                kept += self.store.put_backup(e)
            else:
                new = e.key not in self.store.primary
                if self.store.put(e):
                    kept += 1
                    if new:
                        self._adopted(e)
        if not backup and kept:
            self._push_backups({(i[0], i[1]) for i in raw})
        return {"n": kept}

    def _adopted(self, e: Entry) -> None:
        """A cluster came to this member as its owner: keep its broadcast schedule going."""
        if e.kind == "c" and isinstance(e.value, dict):
            e.value.setdefault("n", self._now() + self.params.summary_step)

    def _on_fetch(self, body: Any, sender: Peer) -> Any:
        self._check_member(sender, body)
        key = _key(_dict(body)["k"])
        e = self.store.get(key, self._now())
        if e is None:
            return {"e": None}
        return {"e": e.value, "v": e.version}

    def _on_delete(self, body: Any, sender: Peer) -> Any:
        self._check_member(sender, body)
        b = _dict(body)
        key = _key(b["k"])
        version = _num(b["v"], "version")
        return {"ok": self.store.delete(key, version)}

    def _check_member(self, sender: Peer, body: Any) -> None:
        """Group requests come from members (or from a node that knows the group's id)."""
        if sender.node_id in self.members and self.group_id is not None:
            return
        if type(body) is dict and self.group_id is not None and body.get("G") == self.group_id:
            return
        self.counters["refused"] += 1
        raise XbacProtocolError("not a member of this group")

    def _owner(self, key: Key) -> bytes:
        return self.ring.owner_of(key) or self.node_id

    def _fetch(self, key: Key) -> Deferred[Any]:
        d = self._send(self._owner(key), "xbac.fetch", {"k": list(key)})
        return d.addCallback(lambda b: b.get("e") if type(b) is dict else None)

    def _put(self, key: Key, value: Any, version: float | None = None) -> Deferred[Any]:
        now = self._now()
        v = now if version is None else version
        e = Entry(key[0], key[1], value, v, now + self.params.entry_ttl)
        owner = self._owner(key)
        if owner == self.node_id:
            new = key not in self.store.primary
            self.store.put(e)
            if new:
                self._adopted(e)
            self._push_backups({key})
            return succeed({"n": 1})
        return self._send(owner, "xbac.store", {"e": [self._entry_wire(e, now)], "b": False})

    def _delete(self, key: Key, version: float) -> None:
        self._send(self._owner(key), "xbac.delete", {"k": list(key), "v": version}).addErrback(
            lambda f: None
        )
        b = self.ring.backup_of(key)
        if b is not None:
            self._send(b, "xbac.delete", {"k": list(key), "v": version}).addErrback(lambda f: None)

    # ================================================================ clusters

    def _new_cid(self) -> int:
        return self._rng.getrandbits(63)

    def _on_observe(self, body: Any, sender: Peer) -> Any:
        """First contact with a host: the owner of its mapping creates its cluster if needed."""
        self._check_member(sender, body)
        b = _dict(body)
        host = _host(b["h"])
        group = b.get("tg")
        if group is not None:
            group = _id(group, "group id")
        now = self._now()
        e = self.store.get(("h", host), now)
        if e is not None:
            return {"c": e.value}
        cid = None
        if group is not None:
            # A host of a mapped group falls in its group's cluster (thesis §4.5).
            return self._fetch(("g", group.hex())).addCallback(self._observe_with, host, group)
        return self._observe_with(cid, host, None)

    def _observe_with(self, cid: Any, host: str, group: bytes | None) -> Any:
        now = self._now()
        e = self.store.get(("h", host), now)
        if e is not None:
            return {"c": e.value}
        if type(cid) is int:
            # Join the group's cluster: the cluster owner adds the host when it gets a report.
            self._put(("h", host), cid)
            return {"c": cid}
        cid = self._new_cid()
        data: dict[str, Any] = {
            "h": [host],
            "hg": {host: group} if group is not None else {},
            "p": 0.0,
            "t": now,
            "n": now + self.params.summary_step * (0.75 + 0.5 * self._rng.random()),
            "s": self.params.summary_step,
            "lv": {},
        }
        self._put(("c", str(cid)), data)
        self._put(("h", host), cid)
        if group is not None:
            self._put(("g", group.hex()), cid)
        return {"c": cid}

    def _observe(self, host: str, group: bytes | None = None) -> Deferred[int | None]:
        if self.group_id is None:
            return succeed(None)
        body: dict[str, Any] = {"h": host}
        if group is not None:
            body["tg"] = group
        d = self._send(self._owner(("h", host)), "xbac.observe", body)

        def got(b: Any) -> int | None:
            cid = b.get("c") if type(b) is dict else None
            if type(cid) is int:
                self._cid[host] = cid
                return cid
            return None

        return d.addCallbacks(got, lambda f: None)

    def _on_report(self, body: Any, sender: Peer) -> Any:
        self._check_member(sender, body)
        raw = _dict(body)["r"]
        if type(raw) is not list or len(raw) > 256:
            raise _bad("reports")
        mid = sender.node_id.hex()[:16]
        now = self._now()
        missing = []
        touched: set[Key] = set()
        for item in raw:
            if type(item) is not list or len(item) != 5:
                raise _bad("report")
            cid = _int(item[0], "cluster id")
            host = _host(item[1])
            row = _row(item[2], self.params.points) if item[2] is not None else None
            level = _num(item[3], "level", 0.0, 3600.0)
            samples = _int(item[4], "samples")
            key: Key = ("c", str(cid))
            e = self.store.get(key, now)
            if e is None:
                missing.append(host)
                continue
            data = e.value
            if host not in data["h"]:
                if len(data["h"]) >= self.params.max_cluster_hosts:
                    missing.append(host)
                    continue
                data["h"].append(host)
            data["lv"].setdefault(host, {})[mid] = [
                level,
                samples,
                now,
                _row_bytes(row) if row is not None else None,
            ]
            _cap_levels(data, self.params.max_levels)
            e.version = now
            e.expires = now + self.params.entry_ttl
            touched.add(key)
        # The changed clusters reach their backup with the next periodic push.
        return {"missing": missing}

    def _send_reports(self) -> None:
        if self.group_id is None or not self._dirty:
            return
        now = self._now()
        binw = self.params.span / self.params.points
        t_end = math.ceil(now / binw) * binw
        by_owner: dict[bytes, list[list[Any]]] = {}
        pending = []
        for host in sorted(self._dirty):
            cid = self._cid.get(host)
            if cid is None:
                pending.append(host)
                continue
            s = self.predictor.series.get((self.node_id, host))
            if s is None or len(s) == 0:
                continue
            level = self.predictor.typical_level(s)
            if level is None:
                continue
            prof = self.predictor.profile(
                _SELF_GROUP, host, t_end, self.params.span, self.params.points
            )
            row = _row_bytes(prof[0]) if prof is not None else None
            last = self._reported.get(host)
            if (
                last is not None
                and last[0] == cid
                and now - last[3] < self.params.report_refresh
                and _near(last[1], float(level), self.params)
                and _rows_near(last[2], row, self.params)
            ):
                continue
            self._reported[host] = (cid, float(level), row, now)
            owner = self._owner(("c", str(cid)))
            by_owner.setdefault(owner, []).append([cid, host, row, float(level), len(s)])
        self._dirty = set(pending)
        for host in pending:
            self._observe(host)
        for owner, reports in by_owner.items():
            for i in range(0, len(reports), 64):
                chunk = reports[i : i + 64]
                self._send(owner, "xbac.report", {"r": chunk}).addCallbacks(
                    self._report_answer, lambda f, c=chunk: self._dirty.update(r[1] for r in c)
                )

    def _report_answer(self, body: Any) -> None:
        if type(body) is not dict:
            return
        for h in body.get("missing", [])[:256]:
            if type(h) is str:
                self._cid.pop(h, None)
                self._reported.pop(h, None)
                self._dirty.add(h)

    # -- profiles and summaries --------------------------------------------------------

    def _member_order(self) -> list[str]:
        return [n.hex()[:16] for n in self.ring.members]

    def _profile(self, data: dict[str, Any], host: str, order: list[str]) -> np.ndarray | None:
        """The host's profile: one row per member (ring order), aligned on the current grid."""
        per = data.get("lv", {}).get(host)
        if not per:
            return None
        binw = self.params.span / self.params.points
        t_end = math.ceil(self._now() / binw) * binw
        pts = self.params.points
        rows = np.full((len(order), pts), np.nan)
        have = False
        for i, mid in enumerate(order):
            rec = per.get(mid)
            if rec is None or rec[3] is None:
                continue
            row = np.frombuffer(rec[3], dtype="<f2").astype(float)
            shift = int(round((t_end - math.ceil(rec[2] / binw) * binw) / binw))
            if shift >= pts:
                continue
            if shift > 0:
                row = np.concatenate([row[shift:], np.full(shift, np.nan)])
            rows[i] = row
            have = True
        return rows if have else None

    def _summary(
        self, data: dict[str, Any], order: list[str], key: tuple[Any, ...] | None = None
    ) -> np.ndarray | None:
        """The cluster's summary; cached under ``key`` (cluster, version) per grid and ring."""
        binw = self.params.span / self.params.points
        stamp = (math.ceil(self._now() / binw), tuple(order))
        if key is not None:
            hit = self._summaries.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        profiles = (self._profile(data, h, order) for h in data["h"])
        out = summarize(p for p in profiles if p is not None)
        if key is not None:
            if len(self._summaries) > 4 * len(self.store.primary) + 64:
                self._summaries.clear()
            self._summaries[key] = (stamp, out)
        return out

    def _digest(self, order: list[str]) -> bytes:
        return hashlib.sha1("|".join(order).encode()).digest()[:8]

    def _spend(self, nbytes: int) -> bool:
        return self._summary_bytes.take(self._now(), nbytes)

    def _broadcast_summaries(self) -> None:
        """Broadcast the summaries that are due, within the byte budget (thesis §7.5.1)."""
        now = self._now()
        order = self._member_order()
        others = [n for n in self.ring.members if n != self.node_id]
        due = sorted(
            (
                e
                for e in self.store.primary.values()
                if e.kind == "c" and 0 <= e.value.get("n", 0) <= now
            ),
            key=lambda e: e.value.get("n", 0),
        )
        for e in due:
            data = e.value
            if now - data.get("t", now) > self.params.summary_duration:
                data["n"] = -1.0  # no more scheduled broadcasts
                continue
            summ = self._summary(data, order, (e.ident, e.version, len(data["h"])))
            if summ is None:
                data["n"] = now + data.get("s", self.params.summary_step)
                continue
            cid = int(e.ident)
            body = {
                "c": cid,
                "dg": self._digest(order),
                "s": _row_bytes(summ.ravel()),
                "rows": len(order),
            }
            cost = len(msgpack.packb(body, use_bin_type=True)) * len(others)
            if not self._spend(cost):
                self.counters["summaries_deferred"] += 1
                break
            step = data.get("s", self.params.summary_step)
            data["s"] = step * 2
            data["n"] = now + step * 2
            self._merging.setdefault(cid, [])
            # The broadcaster compares with its own other clusters too.
            for n in [self.node_id, *others]:
                self._send(n, "xbac.summary", body).addCallbacks(
                    self._merge_request, lambda f: None, callbackArgs=(n, cid)
                )
            self.clock.callLater(self.params.merge_wait, self._merge, cid)

    def _on_summary(self, body: Any, sender: Peer) -> Any:
        self._check_member(sender, body)
        b = _dict(body)
        cid = _int(b["c"], "cluster id")
        order = self._member_order()
        if b.get("dg") != self._digest(order):
            return {"merge": None}
        rows = _int(b["rows"], "rows", 1, self.params.max_members)
        raw = b["s"]
        if (
            type(raw) is not bytes
            or len(raw) != 2 * rows * self.params.points
            or rows != len(order)
        ):
            raise _bad("summary")
        theirs = np.frombuffer(raw, dtype="<f2").astype(float).reshape(rows, self.params.points)
        now = self._now()
        for e in sorted(self.store.primary.values(), key=lambda e: e.ident):
            if e.kind != "c" or int(e.ident) == cid or e.value.get("p", 0) > now:
                continue
            if int(e.ident) in self._merging:
                continue
            mine = self._summary(e.value, order, (e.ident, e.version, len(e.value["h"])))
            if mine is not None and similar(mine, theirs, self.params.clusters):
                e.value["p"] = now + self.params.clusters.protection
                return {"merge": [int(e.ident), _fit_cluster(e.value), e.version]}
        return {"merge": None}

    def _merge_request(self, body: Any, sender: bytes, cid: int) -> None:
        if type(body) is not dict or body.get("merge") is None:
            return
        try:
            item = body["merge"]
            if type(item) is not list or len(item) != 3:
                raise _bad("merge request")
            other = _int(item[0], "cluster id")
            data = _check_cluster(item[1], self.params.points, self.params.max_cluster_hosts * 4)
            version = _num(item[2], "version")
        except XbacProtocolError:
            self.counters["invalid"] += 1
            return
        if cid in self._merging:
            self._merging[cid].append((sender, other, data, version))  # type: ignore[arg-type]

    def _merge(self, cid: int) -> None:
        """Re-cluster this cluster with the first merge candidate (thesis §4.6)."""
        cands = self._merging.pop(cid, [])
        if not cands:
            return
        now = self._now()
        key: Key = ("c", str(cid))
        e = self.store.get(key, now)
        if e is None:
            return
        sender, other, odata, oversion = cands[0]  # type: ignore[misc]
        self._replace([(key, e.value, e.version), (("c", str(other)), odata, oversion)])
        self.counters["merges"] += 1

    def _replace(self, old: list[tuple[Key, dict[str, Any], float]]) -> list[int]:
        """Dissolve clusters, re-cluster their hosts, store new clusters and mappings."""
        now = self._now()
        order = self._member_order()
        hosts: list[str] = []
        lv: dict[str, dict[str, Any]] = {}
        hg: dict[str, bytes] = {}
        for _, data, _ in old:
            for h in data["h"]:
                if h not in hosts:
                    hosts.append(h)
            for h, per in data.get("lv", {}).items():
                lv.setdefault(h, {}).update(per)
            hg.update(data.get("hg", {}))
        tmp = {"h": hosts, "lv": lv}
        profiles = {h: self._profile(tmp, h, order) for h in hosts}
        found = greedy_clusters(
            list[Hashable](hosts),
            lambda h: profiles[str(h)],
            self.params.clusters,
            self.params.clusters.relax,
        )
        parts = [[str(h) for h in part] for part in found]
        new_ids = []
        for part in parts:
            ncid = self._new_cid()
            new_ids.append(ncid)
            data = {
                "h": list(part)[: self.params.max_cluster_hosts],
                "hg": {h: hg[h] for h in part if h in hg},
                "p": now + self.params.clusters.protection,
                "t": now,
                "n": now + self.params.summary_step,
                "s": self.params.summary_step,
                "lv": {h: lv[h] for h in part if h in lv},
            }
            self._put(("c", str(ncid)), data)
            for h in part:
                self._put(("h", h), ncid)
                self._cid.pop(h, None)
            for g in set(data["hg"].values()):
                self._put(("g", g.hex()), ncid)
        for key, _, _version in old:
            if self._owner(key) == self.node_id:
                self.store.delete(key)
                b = self.ring.backup_of(key)
                if b is not None:
                    self._send(b, "xbac.delete", {"k": list(key), "v": _ANY}).addErrback(
                        lambda f: None
                    )
            else:
                self._delete(key, _ANY)
        return new_ids

    def _split_pass(self) -> None:
        now = self._now()
        order = self._member_order()
        for e in sorted(list(self.store.primary.values()), key=lambda e: e.ident):
            if e.kind != "c" or e.value.get("p", 0) > now or len(e.value["h"]) < 2:
                continue
            if int(e.ident) in self._merging:
                continue
            data = e.value
            profiles = {h: self._profile(data, h, order) for h in data["h"]}
            parts = greedy_clusters(
                list(data["h"]),
                profiles.get,
                self.params.clusters,
                self.params.clusters.relax,
            )
            if len(parts) > 1:
                self._replace([(e.key, data, e.version)])
                self.counters["splits"] += 1
        self._next["split"] = now + self.params.split_interval

    # ================================================================ maintenance tick

    def _schedule_tick(self) -> None:
        if not self._running:
            return
        self._timer = self.clock.callLater(self._tick_interval(), self._tick)

    def _tick_interval(self) -> float:
        return min(5.0, self.params.alive_interval / 3)

    def _tick(self) -> None:
        try:
            self._maintain()
        except Exception:
            log.failure("XBAC maintenance")
        self._schedule_tick()

    def _due(self, name: str, interval: float) -> bool:
        now = self._now()
        t = self._next.get(name)
        if t is None:
            self._next[name] = now + interval
            return False
        if now >= t:
            self._next[name] = now + interval
            return True
        return False

    def _prune(self, now: float) -> None:
        """Keep the per-target and per-leader caches bounded."""
        if len(self._not_xbac) > 4096:
            self._not_xbac = {h: t for h, t in self._not_xbac.items() if t > now}
            while len(self._not_xbac) > 4096:
                self._not_xbac.pop(next(iter(self._not_xbac)))
        if len(self.known_leaders) > 1024:
            keep = sorted(self.known_leaders.values(), key=lambda r: -r.time)[:1024]
            self.known_leaders = {r.node_id: r for r in keep}
        limit = 4 * len(self.predictor.series) + 1024
        for cache in (self._cid, self._reported):
            while len(cache) > limit:
                cache.pop(next(iter(cache)))  # type: ignore[attr-defined]

    def _maintain(self) -> None:
        if self.group_id is None:
            return
        p = self.params
        now = self._now()
        if self.role == "leader":
            if len(self.members) == 1:
                t = self._next.get("regroup")
                if t is None or now >= t:
                    jitter = 0.75 + self._regroup_rng.random() / 2
                    self._next["regroup"] = now + p.regroup_interval * jitter
                    if t is not None:
                        self._maybe_regroup()
            else:
                self._next.pop("regroup", None)
            if now >= self._next.get("state", 0):
                self._broadcast_state()
            if now >= self._next.get("announce", now + 1):
                self._announce()
                self._measure_leaders()
        else:
            self._check_leader()
        self._prune(now)
        promoted = self.store.expire(now, self.ring, self.node_id)
        for e in promoted:
            self._adopted(e)
        if promoted:
            self._push_backups({e.key for e in promoted})
        if self._due("backup", p.backup_interval):
            self._push_backups()
        if self._due("report", p.report_interval):
            self._send_reports()
        self._broadcast_summaries()
        if self._due("split", p.split_interval):
            self._split_pass()

    # ================================================================ application API

    def add_measurement(self, target: str, rtt: float, t: float | None = None) -> bool:
        """Record an RTT (s) to ``target`` measured at ``t`` (default now); return whether kept."""
        try:
            _host(target)
        except XbacProtocolError:
            return False
        t = self._now() if t is None else t
        if not (isinstance(rtt, (int, float)) and math.isfinite(rtt) and 0 <= rtt <= 3600):
            return False
        first = (self.node_id, target) not in self.predictor.series
        kept = self.predictor.add_measurement(self.node_id, target, float(rtt), float(t))
        if kept:
            self._dirty.add(target)
            if first and self._running:
                self._observe(target)
        return kept

    def predict_rtt(self, target: str) -> Deferred[Prediction | None]:
        """Predict the RTT to ``target``: own series, else the group's clusters; None if none."""
        try:
            _host(target)
        except XbacProtocolError as e:
            return fail(e)
        self.counters["predictions"] += 1
        now = self._now()
        own = self.predictor.series.get((self.node_id, target))
        if own is not None and len(own) >= self.params.predictor.min_samples:
            return succeed(self.predictor.predict_rtt(self.node_id, target, now))
        if self.group_id is None:
            self.counters["predictions_none"] += 1
            return succeed(None)
        d = self._cluster_of(target)

        def with_cid(cid: int | None, again: bool = True) -> Any:
            if cid is None:
                self._observe(target)
                return None

            def got(data: Any) -> Any:
                if data is None and again and self._cid.pop(target, None) is not None:
                    # The cluster was merged or split since we looked: look again.
                    return self._cluster_of(target).addCallback(with_cid, False)
                return self._from_cluster(data, target)

            return self._fetch(("c", str(cid))).addCallback(got)

        def counted(p: Prediction | None) -> Prediction | None:
            if p is None:
                self.counters["predictions_none"] += 1
            return p

        def done(p: Prediction | None) -> Any:
            if p is None:
                # No basis in the group: groups that see the network alike (similar.py).
                return self._similar.ask(target).addCallback(counted)
            return p

        return d.addCallback(with_cid).addErrback(lambda f: None).addCallback(done)

    def _cluster_of(self, target: str) -> Deferred[int | None]:
        cid = self._cid.get(target)
        if cid is not None:
            return succeed(cid)
        d = self._fetch(("h", target))

        def got(v: Any) -> Any:
            if type(v) is int:
                self._cid[target] = v
                return v
            return self._target_group(target)

        return d.addCallback(got)

    def _peer_address(self, target: str) -> tuple[str, int] | None:
        """The overlay address of ``target`` if it is a peer in the routing table."""
        peers = getattr(self.overlay, "peers", None)
        if peers is None:
            return None
        try:
            want = ipaddress.ip_address(target)
        except ValueError:
            return None
        try:
            for p in peers():
                try:
                    if ipaddress.ip_address(str(p.get("host"))) == want:
                        return (target, int(p["port"]))  # type: ignore[call-overload]
                except (ValueError, KeyError, TypeError):
                    continue
        except Exception:
            log.failure("reading the routing table")
        return None

    def _target_group(self, target: str) -> Deferred[int | None]:
        """Ask the target whether it is an XBAC host, and look its group's cluster up.

        A target in the routing table is asked and waited for (one round trip). Any other
        target is asked at this agent's own overlay port in the background and the
        prediction is "no prediction possible" at once: an answer, if one comes, serves
        the next request for it. So a host that runs no agent never costs the requester
        a timeout.
        """
        now = self._now()
        if self._not_xbac.get(target, 0) > now:
            return succeed(None)
        addr = self._peer_address(target)
        wait = addr is not None
        if addr is None:
            own_port = self._address()[1]
            addr = (target, own_port or self.params.port)
        d = self._send(addr, "xbac.info", None, timeout=self.params.info_timeout)

        def got(b: Any) -> Any:
            g = b.get("g") if type(b) is dict else None
            if type(g) is not bytes or len(g) != 20:
                self._not_xbac[target] = now + 3600
                return None
            # The host falls in its group's cluster (created at first contact if none).
            return self._observe(target, g if g != self.group_id else None)

        def failed(f: Failure) -> None:
            self._not_xbac[target] = now + 600
            return None

        d.addCallbacks(got, failed)
        if wait:
            return d
        d.addErrback(lambda f: None)
        self._not_xbac.setdefault(target, now + self.params.info_timeout)
        return succeed(None)

    def _from_cluster(self, data: Any, target: str) -> Prediction | None:
        if type(data) is not dict:
            return None
        lv: dict[str, dict[str, Any]] = data.get("lv", {})
        p = self.params.predictor

        def mine(host: str) -> float | None:
            s = self.predictor.series.get((self.node_id, host))
            if s is None or len(s) < p.cold_min_samples:
                return None
            return self.predictor.typical_level(s)

        def offset(mid: str) -> float:
            diffs = []
            for h, per in lv.items():
                rec = per.get(mid)
                a = mine(h)
                if rec is not None and a is not None:
                    diffs.append(a - rec[0])
            return float(np.median(diffs)) if diffs else 0.0

        estimates: list[float] = []
        samples = 0
        source = "group"
        for mid, rec in sorted(lv.get(target, {}).items()):
            if mid == self.mid or rec[1] < p.cold_min_samples:
                continue
            estimates.append(rec[0] + offset(mid))
            samples += rec[1]
        if not estimates:
            source = "cluster"
            for h in sorted(data.get("h", [])):
                if h == target:
                    continue
                a = mine(h)
                if a is not None:
                    estimates.append(a)
                    samples += len(self.predictor.series[(self.node_id, h)])
                    continue
                for mid, rec in sorted(lv.get(h, {}).items()):
                    if mid != self.mid and rec[1] >= p.cold_min_samples:
                        estimates.append(rec[0] + offset(mid))
                        samples += rec[1]
                        break
                if len(estimates) >= p.max_estimates:
                    break
        if not estimates:
            return None
        x = np.maximum(np.asarray(estimates[: p.max_estimates]), 0.0)
        value = min_loss_value(x, np.full(x.size, 1.0 / x.size), p.miss_tolerance, p.miss_penalty)
        lo, hi = (float(q) for q in np.quantile(x, [0.1, 0.9]))
        return Prediction(value, min(lo, value), max(hi, value), source, int(x.size), samples)

    def report_prediction_quality(self, target: str, predicted: float, measured: float) -> None:
        """An application's report: the measured value joins the series, the error is kept."""
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (predicted, measured)):
            return
        if measured <= 0:
            return
        q = self.quality.setdefault("all", [0.0, 0.0])
        q[0] += 1
        q[1] += abs(predicted - measured) / measured
        self.add_measurement(target, measured)

    # ================================================================ status

    def status(self) -> dict[str, Any]:
        """Role, group, leader, members, backups, stored entries and traffic by message type."""
        counts = self.store.counts()
        q = self.quality.get("all", [0.0, 0.0])
        return {
            "role": self.role,
            "group": self.group_id.hex() if self.group_id else None,
            "leader": self.leader.node_id.hex() if self.leader else None,
            "leader_host": self.leader.host if self.leader else None,
            "leader_value": self.leader_value,
            "members": sorted(m.host for m in self.members.values()),
            "backups": sorted(self.members[n].host for n in self.backups if n in self.members),
            "clusters": counts["primary_c"],
            "mappings": counts["primary_h"] + counts["primary_g"],
            "backup_entries": counts["backup"],
            "series": len(self.predictor.series),
            "neighbour_leaders": [r.host for r, _ in self.neighbours],
            "quality_reports": int(q[0]),
            "quality_mean_rel_err": (q[1] / q[0]) if q[0] else None,
            "counters": dict(self.counters),
            "traffic": {k: dict(v) for k, v in sorted(self.traffic.items())},
        }
