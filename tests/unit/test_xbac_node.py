"""XbacNode role logic and message validation, on an in-memory network with task.Clock.

Takeover when the leader is silent, resolution when two leaders meet, refusal of hostile
messages; and, in the simulator clock, cluster creation, summary broadcasts and merges.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from dnaagent.overlay import Identity, OverlayConfig, OverlayNode
from dnaagent.overlay.contact import Peer
from dnaagent.xbac.node import XbacNode, XbacProtocolError
from dnaagent.xbac.params import XbacParams
from tests.fakes.datagram import MemoryNetwork
from tests.sim.xbac_lab import Lab, SiteLatency

PORT = 4001


class Group:
    """Nodes of one site (1-2 ms apart) on a MemoryNetwork driven by task.Clock."""

    def __init__(self, n: int, seed: int = 2) -> None:
        self.clock = Clock()
        self.net = MemoryNetwork(self.clock, delay=0.002, seed=seed)
        rng = random.Random(seed)
        cfg = OverlayConfig(require_signatures=False, rpc_timeout=2.0, app_timeout=3.0)
        self.agents: list[XbacNode] = []
        self.addrs: list[tuple[str, int]] = []
        for i in range(n):
            host = f"203.0.113.{i + 1}"
            ov = OverlayNode(Identity.unsigned(rng), self.clock, config=cfg, rng=random.Random(i))
            self.net.listen((host, PORT), ov)
            a = XbacNode(ov, self.clock, lambda t: succeed(0.001), XbacParams(), host_id=host)
            if self.addrs:
                self.wait(ov.join(self.addrs[:1]), 20)
            self.wait(a.start(), 60)
            self.agents.append(a)
            self.addrs.append((host, PORT))
        self.run(20)

    def run(self, seconds: float) -> None:
        """Advance in 50 ms steps."""
        for _ in range(int(seconds / 0.05)):
            self.clock.advance(0.05)

    def wait(self, d: Deferred[Any], seconds: float) -> Any:
        """Advance until ``d`` fired."""
        box: list[Any] = []
        d.addBoth(box.append)
        for _ in range(int(seconds / 0.05)):
            if box:
                break
            self.clock.advance(0.05)
        assert box
        return box[0]

    def leaders(self) -> list[XbacNode]:
        """Agents that hold the leader role."""
        return [a for a in self.agents if a.role == "leader"]


def test_group_forms_with_one_leader_and_three_backups() -> None:
    """Five hosts of a site: one leader, three backups with values above the leader's."""
    g = Group(5)
    (leader,) = g.leaders()
    assert len(leader.members) == 5
    assert len(leader.backups) == 3
    assert all(v > leader.leader_value for v in leader.backups.values())
    assert sorted(a.role for a in g.agents).count("backup") == 3
    st = g.agents[-1].status()
    assert st["leader_host"] == leader.host_id and len(st["members"]) == 5
    assert st["traffic"]["xbac.state"]["in"] > 0


def test_silent_leader_is_replaced_by_the_highest_backup() -> None:
    """The leader crashes: a backup takes over; all members follow the highest value."""
    g = Group(5)
    (leader,) = g.leaders()
    highest = max(leader.backups.items(), key=lambda kv: kv[1])[0]
    g.net.crash(g.addrs[g.agents.index(leader)])
    g.run(120)
    live = [a for a in g.agents if a is not leader]
    leaders = [a for a in live if a.role == "leader"]
    assert len(leaders) == 1
    new = leaders[0]
    assert new.node_id == highest or new.leader_value >= leader.backups[highest]
    assert leader.node_id not in new.members
    for a in live:
        assert a.leader is not None and a.leader.node_id == new.node_id
        assert set(a.members) == {x.node_id for x in live}
    assert len(new.backups) == 3


def test_two_leaders_meet_and_the_lower_steps_down() -> None:
    """A leader cut off while its backups took over steps down when it is heard again."""
    g = Group(5)
    (old,) = g.leaders()
    addr = g.addrs[g.agents.index(old)]
    g.net.crash(addr)
    g.run(120)
    g.net.crashed.discard(addr)
    g.run(400)  # leaders re-announce every announce_ttl / 2 and meet through the DHT
    leaders = g.leaders()
    assert len(leaders) == 1 and leaders[0] is not old
    assert old.role in ("member", "backup")
    assert old.counters["stepdowns"] >= 1
    for a in g.agents:
        assert a.leader is not None and a.leader.node_id == leaders[0].node_id
        assert set(a.members) == {x.node_id for x in g.agents}


def test_hostile_messages_are_refused_and_counted() -> None:
    """Messages from strangers or with bad fields raise a protocol error, never crash."""
    g = Group(3)
    a = g.agents[1]
    stranger = Peer(b"\x07" * 20, ("192.0.2.99", PORT), "core")
    handlers = a._handlers()
    bad: list[tuple[str, Any]] = [
        ("xbac.state", {"g": a.group_id, "v": 10**6, "l": [b"\x07" * 20, "x", "192.0.2.99", 1]}),
        ("xbac.store", {"e": [["h", "192.0.2.1", 5, 0.0, 10.0]]}),
        ("xbac.measure", {"t": "192.0.2.1"}),
        ("xbac.join", {"m": [b"\x01" * 20, "x", "192.0.2.1", 4001]}),
        ("xbac.fetch", {"k": ["z", "a"]}),
        ("xbac.report", {"r": "nonsense"}),
    ]
    before = dict(a.counters)
    for name, body in bad:
        try:
            r = a._wrap(name, handlers[name])(body, stranger)
        except XbacProtocolError:
            continue
        # A state from a non-member is answered (with the leader it follows), not applied.
        assert name == "xbac.state" and r["ok"] is False
    assert a.counters["refused"] + a.counters["invalid"] > before["refused"] + before["invalid"]
    assert a.leader is not None and a.leader.node_id != b"\x07" * 20
    member = Peer(g.agents[0].node_id, g.addrs[0], "core")
    for body in (
        {"e": [["h", "192.0.2.1", "not an id", 0.0, 10.0]]},
        {"e": [["c", "1", {"h": []}, 0.0, 10.0]]},
        {"e": [["h", "x" * 200, 1, 0.0, 10.0]]},
        {"e": [["h", "192.0.2.1", 1, float("nan"), 10.0]]},
    ):
        with pytest.raises(XbacProtocolError):
            a._wrap("xbac.store", handlers["xbac.store"])(body, member)
    assert not a.store.primary or all(k[1] != "x" * 200 for k in a.store.primary)


def test_measurements_form_clusters_that_merge() -> None:
    """Two outside hosts of one site seen alike by the group end in one cluster."""
    params = XbacParams(
        span=80.0, points=8, summary_step=40.0, merge_wait=5.0, report_interval=10.0
    )
    lat = SiteLatency({"A": (0.0, 0.0), "X": (100.0, 0.0)}, seed=1)
    lab = Lab(lat, params=params, seed=4)
    hosts = [f"203.0.113.{i + 1}" for i in range(3)]
    for h in hosts:
        lab.add(h, "A")
        lab.run(2.0)
    targets = ["192.0.2.10", "192.0.2.11"]
    for t in targets:
        lat.place(t, "X")
    for _step in range(30):
        now = lab.clock.seconds()
        for h in hosts:
            for t in targets:
                lab.agents[h].add_measurement(t, 0.100, now)
        lab.run(5.0)
    lab.run(200.0)
    owners = {}
    for a in lab.agents.values():
        for (kind, ident), e in a.store.primary.items():
            if kind == "h":
                owners[ident] = e.value
    assert set(owners) >= set(targets)
    assert owners[targets[0]] == owners[targets[1]]
    assert sum(a.counters["merges"] for a in lab.agents.values()) >= 1
    # A cold prediction from the cluster for a member that never measured the target.
    newcomer = lab.add("203.0.113.9", "A")
    lab.run(60.0)
    p = lab.wait(newcomer.predict_rtt(targets[0]), 30.0)
    assert p is not None and p.source == "group"
    assert abs(p.value - 0.100) < 0.01


def test_summary_broadcasts_respect_the_byte_budget() -> None:
    """With a tight budget, summaries wait for tokens: bytes sent stay under the bucket."""
    params = XbacParams(
        span=80.0, points=8, summary_step=20.0, report_interval=10.0, budget=20.0, burst=600.0
    )
    lat = SiteLatency({"A": (0.0, 0.0), "X": (100.0, 0.0)}, seed=1)
    lab = Lab(lat, params=params, seed=6)
    hosts = [f"203.0.113.{i + 1}" for i in range(3)]
    for h in hosts:
        lab.add(h, "A")
        lab.run(2.0)
    targets = [f"192.0.2.{i + 1}" for i in range(40)]
    for t in targets:
        lat.place(t, "X")
    t0 = lab.clock.seconds()
    for a in lab.agents.values():
        a.traffic.clear()
    for k in range(60):
        now = lab.clock.seconds()
        for h in hosts:
            for i, t in enumerate(targets):
                # Distinct levels per target, so that the clusters do not merge.
                lab.agents[h].add_measurement(t, 0.05 + 0.02 * i + 0.001 * (k % 2), now)
        lab.run(5.0)
    span = lab.clock.seconds() - t0
    deferred = 0
    for a in lab.agents.values():
        sent = a.traffic.get("xbac.summary", {}).get("out_bytes", 0)
        assert sent <= params.budget * span + params.burst
        deferred += a.counters["summaries_deferred"]
    assert deferred > 0


def test_cluster_data_fits_one_message() -> None:
    """A large cluster is capped to its newest levels and trimmed to fit one datagram."""
    import msgpack
    import numpy as np

    from dnaagent.xbac.node import _cap_levels, _check_cluster, _fit_cluster, _row_bytes

    row = _row_bytes(np.full(8, 0.1))
    hosts = [f"192.0.2.{i}" for i in range(1, 65)]
    data = {
        "h": hosts,
        "hg": {},
        "p": 0.0,
        "t": 0.0,
        "n": 10.0,
        "s": 60.0,
        "lv": {
            h: {f"{m:016x}": [0.1, 20, float(i * 10 + m), row] for m in range(10)}
            for i, h in enumerate(hosts)
        },
    }
    assert len(msgpack.packb(data, use_bin_type=True)) > 8192
    small = _fit_cluster(data)
    assert len(msgpack.packb(small, use_bin_type=True)) <= 5000
    assert small["h"] == hosts and _check_cluster(small, 8, 256) is small
    newest = max(rec[2] for per in small["lv"].values() for rec in per.values())
    assert newest == 63 * 10 + 9
    _cap_levels(data, 64)
    kept = [rec[2] for per in data["lv"].values() for rec in per.values()]
    assert len(kept) == 64
    assert sorted(kept) == sorted(float(i * 10 + m) for i in range(64) for m in range(10))[-64:]


def test_lone_leaders_regroup_once_the_overlay_joins() -> None:
    """Two hosts started XBAC before their overlays met: each founded a group of one.

    Once the overlay is joined, the lone leaders find each other's announcement and end in
    one group with one leader; a leader that stays alone keeps its group id.
    """
    clock = Clock()
    net = MemoryNetwork(clock, delay=0.002, seed=5)
    rng = random.Random(5)
    cfg = OverlayConfig(require_signatures=False, rpc_timeout=2.0, app_timeout=3.0)
    params = XbacParams(regroup_interval=120.0)
    g = Group.__new__(Group)
    g.clock, g.net, g.agents, g.addrs = clock, net, [], []
    overlays = []
    for i in range(2):
        host = f"198.51.100.{i + 1}"
        ov = OverlayNode(Identity.unsigned(rng), clock, config=cfg, rng=random.Random(i))
        net.listen((host, PORT), ov)
        a = XbacNode(ov, clock, lambda t: succeed(0.001), params, host_id=host)
        g.wait(a.start(), 60)
        overlays.append(ov)
        g.agents.append(a)
        g.addrs.append((host, PORT))
    first, second = g.agents
    assert first.role == second.role == "leader" and first.group_id != second.group_id
    alone = first.group_id
    g.run(200)  # overlays still apart: a regroup finds nobody and changes nothing
    assert first.group_id == alone and first.counters["regroups"] == 0
    g.wait(overlays[1].join([g.addrs[0]]), 20)
    g.run(400)
    assert len(g.leaders()) == 1
    (leader,) = g.leaders()
    assert first.group_id == second.group_id == leader.group_id
    assert set(leader.members) == {first.node_id, second.node_id}
    assert first.counters["regroups"] + second.counters["regroups"] >= 1


def test_no_prediction_for_a_host_without_agent_comes_back_at_once() -> None:
    """A target that is not an overlay peer is answered "no prediction" after the group
    lookup only (a few ms), not after the agent question times out (info_timeout, 1 s);
    a peer of the routing table is asked and waited for."""
    g = Group(3)
    a = g.agents[0]
    assert a.params.info_timeout >= 1.0
    start = g.clock.seconds()
    assert g.wait(a.predict_rtt("192.0.2.77"), 0.2) is None
    assert g.clock.seconds() - start < 0.2
    g.run(5)
    assert g.wait(a.predict_rtt("192.0.2.77"), 0.2) is None
    asked = a.traffic["xbac.info"]["out"]
    assert asked == 1  # known not to run an agent now: no second question
    peer = g.agents[2].host_id
    g.wait(a.predict_rtt(peer), 10)
    assert a.traffic["xbac.info"]["out"] == asked + 1


def test_a_group_that_ends_is_withdrawn_from_the_dht() -> None:
    """The last member of a group leaves with notice: its leader record is replaced by a
    withdrawal, and leaders reading the DHT forget that leader (no Meridian walk to it)."""
    lab = Lab(SiteLatency({"A": (0.0, 0.0), "B": (80.0, 0.0)}, seed=4), seed=4)
    lone = lab.add("198.51.100.1", "B")
    lab.run(5.0)
    site = lab.add("203.0.113.1", "A")
    lab.run(60.0)
    assert lone.role == site.role == "leader" and lone.group_id != site.group_id
    assert lone.node_id in site.known_leaders
    d = lone.stop(graceful=True)
    lab.wait(d, 10.0)
    records = lab.wait(site._read_leaders(), 10.0)
    assert all(r.node_id != lone.node_id for r in records)
    assert lone.node_id not in site.known_leaders
    assert lone.node_id not in site.rings.peers()


def test_group_requests_travel_in_batches() -> None:
    """Store, report and summary requests to a member share datagrams (xbac.batch); a bad
    batch is refused and counted."""
    g = Group(3)
    a, b = g.agents[0], g.agents[1]
    for i in range(40):
        for x in (a, b):
            for k in range(6):
                x.add_measurement(f"192.0.2.{i + 1}", 0.02 + 0.001 * (i % 4), float(k))
    g.run(200)
    st = a.status()["traffic"]
    assert st["xbac.batch"]["out"] > 0
    parts = sum(st.get(n, {}).get("out", 0) for n in ("xbac.store", "xbac.report", "xbac.observe"))
    assert parts > st["xbac.batch"]["out"]
    handler = a._wrap("xbac.batch", a._handlers()["xbac.batch"])
    member = Peer(b.node_id, g.addrs[1], "core")
    before = a.counters["invalid"]
    for body in ({"o": []}, {"o": [["xbac.fetch", {"k": ["h", "x"]}]]}, {"o": "x"}):
        with pytest.raises(XbacProtocolError):
            handler(body, member)
    assert a.counters["invalid"] == before + 3
