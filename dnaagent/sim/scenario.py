"""A simulated overlay run: the real :class:`~dnaagent.overlay.node.OverlayNode` on a
simulated network, with churn, a lookup workload and the paper's measurements.

Phases of a run (all in simulated time):

1. **Join.** ``nodes`` overlay nodes are created; the first one starts alone, every other
   one joins through a random node that has already joined, at staggered times spread
   over ``join_spread`` seconds.
2. **Warm-up** (``warmup`` seconds). Churn, if any, starts at the beginning of the
   warm-up, so that the measurements see a steady churn phase (as in the paper: the
   overlay first stabilises, then churn begins).
3. **Maintenance window** (``maintenance_window`` seconds). No lookups are issued; the
   bytes every node sends are counted (joins, refreshes, pings, leaves, churn included)
   and divided by the node-seconds online: the maintenance traffic per peer.
4. **Lookup phase** (``duration`` seconds). Lookups start at Poisson times
   (``lookup_rate`` per second, network-wide) from random live nodes, for the ID of a
   random other live node (share ``1 - key_share``) or for a random key. Then a drain
   of ``drain`` seconds lets the last lookups end.

Neighbour correctness (how many of its 5 XOR-closest live nodes a node has in its routing
table, against the global view) is sampled ``snapshots`` times over phases 3 and 4.

Measured:

* search time of node lookups (start to result, ms): median, p90, p99, mean;
* success rate: node lookups whose result holds the searched node (the target still
  live when the lookup ended; lookups whose origin or target left are not counted);
* for key lookups, the share of the truly k closest live nodes in the result;
* neighbours known of 5 (of its 5 closest live nodes, how many a node has in its routing
  table), and the stricter "neighbours seen of 5" (how many of them are among the 5
  closest entries of its table, where stale entries of departed nodes count as wrong);
* maintenance bytes per second and peer; by default the 64-byte signature the
  simulator does not compute is added to each message the agent would sign, to count
  what the agent sends (messages to peers whose key a node knows carry their real
  20-byte MAC trailer, of zeros);
* simulated events per CPU-second of the event loop.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from twisted.internet.interfaces import IReactorTime, IUDPTransport

from dnaagent.overlay.identity import Identity
from dnaagent.overlay.node import OverlayNode
from dnaagent.overlay.settings import OverlayConfig
from dnaagent.sim.churn import Churn
from dnaagent.sim.clock import SimClock
from dnaagent.sim.globalview import GlobalView
from dnaagent.sim.network import (
    DEFAULT_PLANETLAB,
    ExponentialLatency,
    LatencyModel,
    MatrixLatency,
    SimNetwork,
    SimTransport,
    load_planetlab,
)

__all__ = ["Peer", "Scenario", "ScenarioConfig", "ScenarioResult", "run_scenario"]

#: Bytes of the Ed25519 signature that the real agent appends to a signed datagram.
SIGNATURE_BYTES = 64

Progress = Callable[[str, float, float], None]


@dataclass
class ScenarioConfig:
    """Parameters of one simulated run (times in seconds of simulated time)."""

    #: Number of overlay nodes (the mean size under churn).
    nodes: int = 1000
    #: Mean online time in minutes; ``None`` for no churn.
    online_min: float | None = None
    #: Length of the lookup phase.
    duration: float = 300.0
    #: Joins are spread over this long.
    join_spread: float | None = None
    #: Time between the last join and the measurements (churn runs during it).
    warmup: float = 1800.0
    #: Length of the maintenance window (no lookups issued).
    maintenance_window: float = 3600.0
    #: Time given to the last lookups to end.
    drain: float = 30.0
    #: Probability that any message is lost.
    loss: float = 0.0
    #: Seed of every random choice of the run.
    seed: int = 1
    #: "exp" (Exp(50 ms) per message, as in the paper) or "planetlab" (RTT/2 of the matrix).
    latency: str = "exp"
    #: Mean one-way delay of the "exp" model.
    mean_delay: float = 0.050
    #: Jitter of the "planetlab" model (each delay x U[1-j, 1+j]).
    jitter: float = 0.1
    #: The PlanetLab archive and which of its 18 measurements to use.
    planetlab_path: Path = DEFAULT_PLANETLAB
    planetlab_slice: int = 1
    #: Lookups started per second, over the whole network.
    lookup_rate: float = 5.0
    #: Share of lookups for random keys (the rest search a live node's ID).
    key_share: float = 0.2
    #: Share of departures that are graceful leaves (the rest crash).
    leave_share: float = 0.0
    #: Number of neighbour-correctness snapshots.
    snapshots: int = 5
    #: How many closest neighbours the correctness counts (the paper: 5).
    neighbours: int = 5
    #: Add the skipped signature to the size of each message the agent would sign.
    count_signatures: bool = True
    #: Overlay settings to change from the defaults (names of OverlayConfig).
    overlay: dict[str, Any] = field(default_factory=dict)

    def total_time(self) -> float:
        """Return the simulated length of the whole run in seconds."""
        return self.spread() + self.warmup + self.maintenance_window + self.duration + self.drain

    def spread(self) -> float:
        """Return the time over which the joins are spread."""
        if self.join_spread is not None:
            return self.join_spread
        return max(10.0, self.nodes * 0.1)


@dataclass
class ScenarioResult:
    """What a run measured (see the module documentation)."""

    nodes: int
    online_min: float | None
    loss: float
    seed: int
    latency: str
    lookups: int
    node_lookups: int
    node_lookups_ok: int
    success_rate: float
    search_ms_median: float
    search_ms_p90: float
    search_ms_p99: float
    search_ms_mean: float
    key_lookups: int
    key_lookup_ms_median: float
    key_closest_recall: float
    lookups_not_counted: int
    neighbours_known_of_5: float
    neighbours_view_of_5: float
    neighbours_snapshots: list[float]
    maintenance_bytes_per_s: float
    maintenance_msgs_per_s: float
    lookup_phase_bytes_per_s: float
    live_nodes_end: int
    arrivals: int
    departures: int
    events: int
    cpu_s: float
    events_per_cpu_s: float
    sim_s: float
    wall_s: float
    errors: int
    lost_msgs: int

    def as_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-serialisable dict."""
        return asdict(self)


@dataclass(slots=True)
class Peer:
    """One simulated overlay node and what the scenario knows about it."""

    node: OverlayNode
    transport: SimTransport
    id_int: int
    joined: bool = False
    alive: bool = True


@dataclass(slots=True)
class _LookupRecord:
    origin: Peer
    target: int
    is_node: bool
    target_peer: Peer | None
    start: float
    end: float = -1.0
    ok: bool = False
    recall: float = 0.0
    error: bool = False
    #: False when the origin or the searched node had left before the lookup ended.
    counted: bool = True


def _percentile(values: list[float], q: float) -> float:
    """Return the ``q``-quantile (0..1) of ``values`` (linear interpolation)."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class Scenario:
    """Build and run one simulated overlay; see the module documentation."""

    def __init__(self, config: ScenarioConfig, progress: Progress | None = None) -> None:
        self.config = c = config
        if c.nodes < 2:
            raise ValueError("a scenario needs at least 2 nodes")
        self.progress = progress
        seed = c.seed
        # Independent streams: changing one part of the workload does not reshuffle the rest.
        self.rng_ids = random.Random(f"{seed}/ids")
        self.rng_work = random.Random(f"{seed}/work")
        self.rng_nodes = random.Random(f"{seed}/nodes")
        self.clock = SimClock()
        latency: LatencyModel
        if c.latency == "exp":
            latency = ExponentialLatency(random.Random(f"{seed}/delay"), c.mean_delay)
        elif c.latency == "planetlab":
            matrix = load_planetlab(c.planetlab_path, c.planetlab_slice)
            latency = MatrixLatency(random.Random(f"{seed}/delay"), matrix, jitter=c.jitter)
        else:
            raise ValueError(f"latency must be 'exp' or 'planetlab', not {c.latency!r}")
        self.network = SimNetwork(self.clock, random.Random(f"{seed}/loss"), latency, loss=c.loss)
        overlay = OverlayConfig(require_signatures=False, **c.overlay)
        overlay.validate()
        self.overlay_config = overlay
        self.view = GlobalView()
        self.peers: list[Peer] = []
        self.live: list[Peer] = []
        self._live_index: dict[int, int] = {}
        self.by_id: dict[int, Peer] = {}
        self.records: list[_LookupRecord] = []
        self.cpu = 0.0
        self.churn: Churn[Peer] | None = None
        self.departures = 0

    # -- nodes -------------------------------------------------------------------

    def _new_peer(self) -> Peer:
        identity = Identity.unsigned(self.rng_ids)
        node = OverlayNode(
            identity,
            cast(IReactorTime, self.clock),
            config=self.overlay_config,
            rng=random.Random(self.rng_nodes.getrandbits(64)),
        )
        transport = self.network.attach(node)
        node.makeConnection(cast(IUDPTransport, transport))
        peer = Peer(node, transport, int.from_bytes(identity.node_id, "big"))
        self.peers.append(peer)
        self._live_index[id(peer)] = len(self.live)
        self.live.append(peer)
        return peer

    def _join(self, peer: Peer, via: Peer | None) -> None:
        if via is None:
            self._joined(peer)
            return
        d = peer.node.join([via.transport.address])

        def done(_: object) -> None:
            if peer.alive:
                self._joined(peer)

        def failed(_: object) -> None:
            # Count it as joined anyway: it is online and will be found by others.
            if peer.alive:
                self._joined(peer)

        d.addCallbacks(done, failed)

    def _joined(self, peer: Peer) -> None:
        peer.joined = True
        self.view.add(peer.id_int)
        self.by_id[peer.id_int] = peer

    def _random_live(self, joined: bool = True) -> Peer | None:
        live = self.live
        for _ in range(50):
            p = live[self.rng_work.randrange(len(live))]
            if p.joined or not joined:
                return p
        # Few nodes have joined yet (joins are slow on a lossy network): pick among
        # them rather than return None, which would make the newcomer start a
        # separate overlay of its own.
        ready = [p for p in live if p.joined or not joined]
        return self.rng_work.choice(ready) if ready else None

    def _spawn(self) -> Peer:
        """A churn arrival: a new node joins through a random live node."""
        via = self._random_live()
        peer = self._new_peer()
        self._join(peer, via)
        return peer

    def _depart(self, peer: Peer, graceful: bool) -> None:
        """A churn departure: the node leaves gracefully or crashes."""
        if not peer.alive:
            return
        peer.alive = False
        self.departures += 1
        i = self._live_index.pop(id(peer))
        last = self.live.pop()
        if last is not peer:
            self.live[i] = last
            self._live_index[id(last)] = i
        if peer.joined:
            self.view.remove(peer.id_int)
            self.by_id.pop(peer.id_int, None)
        if graceful:
            peer.node.leave()
            # Let the goodbyes go out, then take the host away.
            self.clock.schedule(1.0, self._remove_host, peer)
        else:
            self._remove_host(peer)

    def _remove_host(self, peer: Peer) -> None:
        self.network.detach(peer.transport)
        # The process is gone: its timers stop too.
        peer.node.doStop()

    # -- running -----------------------------------------------------------------

    def _run_until(self, t: float, phase: str) -> None:
        step = max(1.0, (t - self.clock.seconds()) / 200)
        while self.clock.seconds() < t:
            nxt = min(t, self.clock.seconds() + step)
            start = time.process_time()
            self.clock.run_until(nxt)
            self.cpu += time.process_time() - start
            if self.progress is not None:
                self.progress(phase, self.clock.seconds(), self.config.total_time())

    def _neighbour_snapshot(self) -> tuple[float, float]:
        """Compare every joined live node's neighbours with the global view.

        Returns the mean number of its ``neighbours`` truly closest live nodes that a
        node has in its routing table (the paper's Fig. 3 and issue 3), and the mean
        number of those that are also among the ``neighbours`` closest entries of its
        table (stale entries of departed nodes there count as wrong).
        """
        k = self.config.neighbours
        known_total = 0.0
        view_total = 0.0
        count = 0
        for peer in self.live:
            if not peer.joined:
                continue
            table = peer.node.routing_table
            truth = self.view.closest(peer.id_int, k, exclude=peer.id_int)
            if not truth:
                continue
            scale = k / len(truth)
            known_total += scale * sum(1 for x in truth if x.to_bytes(20, "big") in table)
            seen = {c.key for c in table.closest(peer.id_int, k)}
            view_total += scale * len(seen.intersection(truth))
            count += 1
        if not count:
            return math.nan, math.nan
        return known_total / count, view_total / count

    def _start_lookup(self) -> None:
        c = self.config
        origin = self._random_live()
        if origin is None:
            return
        is_node = self.rng_work.random() >= c.key_share
        target_peer = None
        if is_node:
            for _ in range(20):
                cand = self._random_live()
                if cand is not None and cand is not origin:
                    target_peer = cand
                    break
            if target_peer is None:
                return
            target = target_peer.id_int
        else:
            target = self.rng_work.getrandbits(160)
        rec = _LookupRecord(origin, target, is_node, target_peer, self.clock.seconds())
        self.records.append(rec)
        d = origin.node.lookup(target.to_bytes(20, "big"))
        d.addCallbacks(
            self._lookup_done, self._lookup_failed, callbackArgs=(rec,), errbackArgs=(rec,)
        )

    def _lookup_done(self, contacts: list[Any], rec: _LookupRecord) -> None:
        rec.end = self.clock.seconds()
        rec.counted = self._still_there(rec)
        found = {int.from_bytes(c.node_id, "big") for c in contacts}
        if rec.is_node:
            rec.ok = rec.target in found
        else:
            truth = self.view.closest(rec.target, self.overlay_config.k)
            rec.recall = len(found.intersection(truth)) / len(truth) if truth else 1.0
            rec.ok = rec.recall == 1.0

    def _lookup_failed(self, failure: Any, rec: _LookupRecord) -> None:
        rec.end = self.clock.seconds()
        rec.error = True
        rec.counted = self._still_there(rec)

    @staticmethod
    def _still_there(rec: _LookupRecord) -> bool:
        return rec.origin.alive and (rec.target_peer is None or rec.target_peer.alive)

    def _schedule_lookups(self, until: float) -> None:
        rate = self.config.lookup_rate
        if rate <= 0:
            return
        t = self.clock.seconds()
        while True:
            t += self.rng_work.expovariate(rate)
            if t >= until:
                break
            self.clock.schedule(t - self.clock.seconds(), self._start_lookup)

    def run(self) -> ScenarioResult:
        """Run every phase and return the measurements."""
        c = self.config
        wall0 = time.perf_counter()
        spread = c.spread()
        first = self._new_peer()
        self._join(first, None)
        gap = spread / max(1, c.nodes - 1)
        for i in range(1, c.nodes):
            self.clock.schedule(i * gap, self._stagger_join)
        self._run_until(spread, "join")
        if c.online_min:
            self.churn = Churn(
                self.clock,
                random.Random(f"{c.seed}/churn"),
                c.online_min * 60.0,
                c.nodes,
                self._spawn,
                self._depart,
                leave_share=c.leave_share,
            )
            self.churn.start(list(self.live))
        t_maint = spread + c.warmup
        t_lookups = t_maint + c.maintenance_window
        t_end = t_lookups + c.duration
        snaps: list[tuple[float, float]] = []
        snap_times = [
            t_maint + (t_end - t_maint) * (i + 0.5) / max(1, c.snapshots)
            for i in range(c.snapshots)
        ]
        self._run_until(t_maint, "warm-up")
        before = self.network.totals()
        for ts in [s for s in snap_times if s < t_lookups]:
            self._run_until(ts, "maintenance")
            snaps.append(self._neighbour_snapshot())
        self._run_until(t_lookups, "maintenance")
        after = self.network.totals()
        self._schedule_lookups(t_end)
        for ts in [s for s in snap_times if s >= t_lookups]:
            self._run_until(ts, "lookups")
            snaps.append(self._neighbour_snapshot())
        self._run_until(t_end, "lookups")
        lookups_end = self.network.totals()
        self._run_until(t_end + c.drain, "drain")
        if self.churn is not None:
            self.churn.stop()
        return self._result(before, after, lookups_end, snaps, time.perf_counter() - wall0)

    def _stagger_join(self) -> None:
        via = self._random_live()
        peer = self._new_peer()
        self._join(peer, via)

    def _result(
        self,
        before: Any,
        after: Any,
        lookups_end: Any,
        snaps: list[tuple[float, float]],
        wall: float,
    ) -> ScenarioResult:
        c = self.config
        sig = SIGNATURE_BYTES if c.count_signatures else 0

        def rate(a: Any, b: Any) -> tuple[float, float]:
            ns = b.node_seconds - a.node_seconds
            msgs = b.sent_msgs - a.sent_msgs
            byts = b.sent_bytes - a.sent_bytes + sig * (b.sent_unsigned - a.sent_unsigned)
            return (byts / ns, msgs / ns) if ns > 0 else (math.nan, math.nan)

        maint_bytes, maint_msgs = rate(before, after)
        lookup_bytes, _ = rate(after, lookups_end)
        counted: list[_LookupRecord] = []
        not_counted = 0
        for r in self.records:
            # A lookup still running at the end counts (as failed) if its origin is live.
            if r.counted if r.end >= 0 else r.origin.alive:
                counted.append(r)
            else:
                not_counted += 1
        node = [r for r in counted if r.is_node]
        keys = [r for r in counted if not r.is_node]
        ok_node = [r for r in node if r.ok]
        times = [(r.end - r.start) * 1000 for r in ok_node]
        key_times = [(r.end - r.start) * 1000 for r in keys if r.end >= 0]
        valid_snaps = [s for s in snaps if not math.isnan(s[0])]
        cpu = self.cpu
        return ScenarioResult(
            nodes=c.nodes,
            online_min=c.online_min,
            loss=c.loss,
            seed=c.seed,
            latency=c.latency,
            lookups=len(self.records),
            node_lookups=len(node),
            node_lookups_ok=len(ok_node),
            success_rate=len(ok_node) / len(node) if node else math.nan,
            search_ms_median=_percentile(times, 0.5),
            search_ms_p90=_percentile(times, 0.9),
            search_ms_p99=_percentile(times, 0.99),
            search_ms_mean=statistics.fmean(times) if times else math.nan,
            key_lookups=len(keys),
            key_lookup_ms_median=_percentile(key_times, 0.5),
            key_closest_recall=statistics.fmean(r.recall for r in keys) if keys else math.nan,
            lookups_not_counted=not_counted,
            neighbours_known_of_5=(
                statistics.fmean(s[0] for s in valid_snaps) if valid_snaps else math.nan
            ),
            neighbours_view_of_5=(
                statistics.fmean(s[1] for s in valid_snaps) if valid_snaps else math.nan
            ),
            neighbours_snapshots=[s[0] for s in snaps],
            maintenance_bytes_per_s=maint_bytes,
            maintenance_msgs_per_s=maint_msgs,
            lookup_phase_bytes_per_s=lookup_bytes,
            live_nodes_end=len(self.live),
            arrivals=self.churn.arrivals if self.churn else 0,
            departures=self.departures,
            events=self.clock.events,
            cpu_s=cpu,
            events_per_cpu_s=self.clock.events / cpu if cpu > 0 else math.nan,
            sim_s=self.clock.seconds(),
            wall_s=wall,
            errors=self.clock.errors,
            lost_msgs=self.network.lost_msgs,
        )


def run_scenario(config: ScenarioConfig, progress: Progress | None = None) -> ScenarioResult:
    """Build a :class:`Scenario` from ``config``, run it and return its result."""
    return Scenario(config, progress).run()
