"""Cross-group predictions between real XBAC nodes in the simulator (thesis §7.1.1).

Groups at sites A and B (45 ms apart, so two groups) see eight remote hosts alike: B's RTTs
are A's plus 4 ms. A member of B measured a target nobody at A measured; a host of A asks
for it, its group has no basis, and B's leader answers through ``xbac.similar`` with its
group's prediction and the offset. A group at site C sees the remote hosts differently
and answers "no basis"; asked alone it makes the answer None, before the wait runs out.
"""

from __future__ import annotations

from typing import Any

from dnaagent.xbac.node import XbacNode
from tests.sim.xbac_lab import Lab, SiteLatency

SITES = {"A": (0.0, 0.0), "B": (40.0, 0.0), "C": (0.0, 300.0), "R": (500.0, 500.0)}
REMOTES = [f"192.0.2.{i}" for i in range(1, 9)]
TARGET = "192.0.2.50"
#: RTTs (s) from site A to the remote hosts and the target.
FROM_A = dict(
    zip(
        [*REMOTES, TARGET],
        [0.080, 0.120, 0.150, 0.200, 0.060, 0.095, 0.170, 0.130, 0.110],
        strict=True,
    )
)
#: Site C sees them in another order.
FROM_C = dict(
    zip(
        [*REMOTES, TARGET],
        [0.200, 0.050, 0.300, 0.080, 0.150, 0.030, 0.090, 0.250, 0.140],
        strict=True,
    )
)


class Latency(SiteLatency):
    """Site geometry between agents; a table between agents and the remote hosts."""

    def rtt(self, a: str, b: str) -> float:
        """RTT (s): from the table when one end is a remote host or the target."""
        for x, y in ((a, b), (b, a)):
            if y in FROM_A:
                site = self.site_of[x]
                if site == "A":
                    return FROM_A[y]
                if site == "B":
                    return FROM_A[y] + 0.004
                if site == "C":
                    return FROM_C[y]
        return super().rtt(a, b)


def build(sites: dict[str, int], few: str = "") -> tuple[Lab, dict[str, list[XbacNode]]]:
    """A lab with ``count`` agents per site; every agent measured the remote hosts, but the
    leader of site ``few`` only the first of them."""
    lat = Latency(SITES, seed=3)
    for h in [*REMOTES, TARGET]:
        lat.place(h, "R")
    lab = Lab(lat, seed=3)
    agents: dict[str, list[XbacNode]] = {}
    n = 0
    for site, count in sites.items():
        for _ in range(count):
            n += 1
            agents.setdefault(site, []).append(lab.add(f"203.0.113.{n}", site))
            lab.run(2.0)
    lab.run(120.0)
    for site, site_agents in agents.items():
        for a in site_agents:
            feed(lab, a, REMOTES[:1] if site == few and a.role == "leader" else REMOTES)
    return lab, agents


def feed(lab: Lab, a: XbacNode, hosts: list[str], count: int = 12) -> None:
    """``count`` measurements by ``a`` of each host (1 % deterministic jitter)."""
    now = lab.clock.seconds()
    for h in hosts:
        rtt = lab.latency.rtt(a.host_id, h)
        for k in range(count):
            a.add_measurement(h, rtt * (1 + 0.01 * ((k % 3) - 1)), now - (count - k) * 10.0)


def leader(agents: list[XbacNode]) -> XbacNode:
    """The leader among ``agents``."""
    (one,) = [a for a in agents if a.role == "leader"]
    return one


def member(agents: list[XbacNode]) -> XbacNode:
    """An agent of ``agents`` that is not the leader."""
    return next(a for a in agents if a.role != "leader")


def test_a_group_that_sees_the_network_alike_answers() -> None:
    """A's host gets a "similar" answer within 3 ms of its true RTT to B's target.

    B's leader measured one of the remote hosts only: it compares through its member's
    levels in the clusters it holds.
    """
    lab, agents = build({"A": 2, "B": 2, "C": 2}, few="B")
    groups = {a.group_id for site in agents.values() for a in site}
    assert len(groups) == 3
    observer = member(agents["B"])
    feed(lab, observer, [TARGET])
    feed(lab, leader(agents["C"]), [TARGET])
    lab.run(200.0)  # the level reports reach the owner of the target's cluster in B
    asker = member(agents["A"])
    assert asker.predictor.series.get((asker.node_id, TARGET)) is None
    b_leader = leader(agents["B"])
    served = b_leader.counters["similar_served"]
    p = lab.wait(asker.predict_rtt(TARGET), 5.0)
    assert p is not None, asker.status()["counters"]
    assert p.source == "similar"
    assert abs(p.value - FROM_A[TARGET]) < 0.003
    assert p.low <= p.value <= p.high
    assert p.series >= 1 and p.samples >= 5
    assert b_leader.counters["similar_served"] == served + 1
    assert leader(agents["C"]).counters["similar_no_basis"] >= 1
    st = asker.status()
    assert st["counters"]["similar_predictions"] == 1
    assert st["counters"]["similar_answers"] == 1
    assert st["traffic"]["xbac.similar"]["out"] == 2  # B's and C's leaders
    # The target's cluster in A stays without levels: the next requests ask again, and two
    # at the same moment share one round (one request to each of B's and C's leaders).
    both = [asker.predict_rtt(TARGET), asker.predict_rtt(TARGET)]
    again = [lab.wait(d, 5.0) for d in both]
    assert all(q is not None and q.source == "similar" for q in again)
    assert all(abs(q.value - p.value) < 1e-9 for q in again)
    assert st["traffic"]["xbac.similar"]["out"] + 2 == asker.traffic["xbac.similar"]["out"]


def test_a_dissimilar_group_gives_no_answer_before_the_wait_ends() -> None:
    """C sees the remote hosts differently: None, as soon as C answered, and then cached."""
    lab, agents = build({"A": 2, "C": 2})
    c_leader = leader(agents["C"])
    feed(lab, c_leader, [TARGET])
    asker = member(agents["A"])
    start = lab.clock.seconds()
    box: list[Any] = []
    asker.predict_rtt(TARGET).addBoth(box.append)
    while not box:
        lab.clock.run_until(lab.clock.next_time() or start + 10)
    assert box == [None]
    assert lab.clock.seconds() - start < asker.params.similar_timeout
    assert c_leader.counters["similar_no_basis"] == 1
    assert c_leader.counters["similar_served"] == 0
    sent = asker.counters["similar_requests"]
    assert sent == 1
    assert lab.wait(asker.predict_rtt(TARGET), 1.0) is None
    assert asker.counters["similar_requests"] == sent  # "no basis" remembered
    assert asker.counters["predictions_none"] == 2


def test_a_group_alone_answers_none_at_once() -> None:
    """Without other groups no request goes out: None with no simulated time passing."""
    lab, agents = build({"A": 2})
    asker = member(agents["A"])
    box: list[Any] = []
    asker.predict_rtt(TARGET).addBoth(box.append)
    lab.run(0.05)  # the group lookup (one request inside the group)
    assert box == [None]
    assert asker.counters["similar_requests"] == 0
