"""Thesis test 6.1 with real agents: nine hosts of one site bootstrap into one XBAC group.

Every host is a real ``twistd -n dnaagent`` in a network namespace of its own; all of them
hang off one router namespace (:func:`~tests.integration.netns.build_star`) in whose
``FORWARD`` chain an NFQUEUE rule hands each packet to :mod:`tests.integration.netdelay`,
which releases it after the one-way delay of its (source site, destination site) pair. The
agents measure each other as they always do (ICMP echo, ``[xbac] method = icmp``), so the
RTTs the grouping criterion sees are real RTTs on the wire.

Sites (RTT = distance on a plane + 3 ms, as ``SITES`` in tests/sim/test_xbac_bootstrap.py
scaled by one half): site A holds the nine test hosts 2 ms apart; the reference sites
R1..R5 are 48 to 213 ms from A and from each other. R6 is a reference site 32 ms from A
whose every packet is held for a random 0.5 to 1.5 times its delay: an inconsistent
reference node.

Procedure (thesis §6.1.1): the reference agents start first, each founding its own group;
then the nine site hosts connect one after the other (the next starts once the previous
one is in a group) and finally disconnect with notice (SIGTERM). Settings run in the
thesis' order with the reference agents started once and kept: 0, 1 (R1), 3 (R1-R3),
5 (R1-R5) reference nodes, then 5* (R2-R5 and the inconsistent R6; R1 is stopped), as in
Appendix A.1 where one reference node was swapped for an inconsistent one.

Each round's site hosts listen on addresses of their own (203.0.113.0/24, added to the
nine host namespaces for the round and removed afterwards, as the simulator uses new hosts
per round): a host that disconnected is gone from the network, like a stopped reference
node (its link goes down). With ``DNAAGENT_TEST_HOSTS_STAY_UP=1`` the addresses stay and
the departed agents' hosts answer pings but run no agent: groups that ended are withdrawn
from the DHT and silent leaders leave the rings, yet a newcomer may still found a second
site group now and then, so that mode can fail the one-miss bound ("Departed groups whose
hosts stay up" in docs/xbac.md).

The thesis connected and disconnected the nine hosts three times per setting; to stay
within the time budget of the integration suite (about four minutes on a loaded 2-core
machine) each setting runs **one** round (``SETTINGS``). A site host's bootstrapping
succeeds when it ends in the group of the majority of the site's hosts; a false positive
is a site host in a reference node's group. The counts per setting are printed (``-s``)
for docs/xbac.md.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .agents import AgentFleet, AgentProcess, parallel
from .netdelay import counters, start_delayer
from .netns import Lab, Process, Star, build_star, unavailable_reason, wait_for

pytestmark = pytest.mark.integration

PORT = 4001
SITE_HOSTS = 9
#: Site positions on a plane (ms); the RTT of two sites is their distance plus BASE_MS.
SITES = {
    "A": (0.0, 0.0),
    "R1": (45.0, 5.0),
    "R2": (-30.0, 55.0),
    "R3": (20.0, -75.0),
    "R4": (-85.0, -20.0),
    "R5": (100.0, 80.0),
    "R6": (-15.0, 25.0),
}
BASE_MS = 3.0
LOCAL_MS = 2.0
#: Per-packet delay factor range of the inconsistent reference node.
NOISE = (0.5, 1.5)
NOISY = "R6"
#: (label, reference sites running, rounds of the nine hosts).
SETTINGS = [
    ("0", [], 1),
    ("1", ["R1"], 1),
    ("3", ["R1", "R2", "R3"], 1),
    ("5", ["R1", "R2", "R3", "R4", "R5"], 1),
    ("5*", ["R2", "R3", "R4", "R5", "R6"], 1),
]
#: Every round's site hosts listen on addresses of their own (203.0.113.(10 k + i + 1) for
#: round k, host i), added to the host namespaces: see the module docstring.
FRESH = "203.0.113.{}"
#: Keep a round's addresses after its agents have left (the hosts stay up, only XBAC is
#: gone): their hosts then answer pings without an agent. Off by default; see docs/xbac.md
#: for what it does to bootstrapping.
HOSTS_STAY_UP = os.environ.get("DNAAGENT_TEST_HOSTS_STAY_UP") == "1"
#: Seconds one host may take from exec to being in a group (loaded machine).
CONNECT_TIMEOUT = 90.0


def rtt_ms(a: str, b: str) -> float:
    """RTT between two sites (ms)."""
    if a == b:
        return LOCAL_MS if a == "A" else 0.0
    (xa, ya), (xb, yb) = SITES[a], SITES[b]
    return round(BASE_MS + math.hypot(xa - xb, ya - yb), 1)


@dataclass
class World:
    lab: Lab
    fleet: AgentFleet
    star: Star
    delayer: Process
    refs: dict[str, AgentProcess] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0


def round_address(k: int, i: int) -> str:
    """The address site host ``i`` listens on in round ``k`` (counted over all settings)."""
    return FRESH.format(10 * k + i + 1)


def round_addresses(star: Star, k: int, up: bool) -> None:
    """Bring the site hosts' addresses of round ``k`` up (routed by the router) or down."""
    verb = "add" if up else "del"
    for i in range(SITE_HOSTS):
        role, address = f"a{i}", round_address(k, i)
        star.hosts[role].ip("addr", verb, f"{address}/32", "dev", "dna0")
        star.router.ip("route", verb, f"{address}/32", "via", star.addresses[role])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("iptables") is None:
        pytest.skip("iptables is needed for the NFQUEUE rule")
    lab = Lab(tmp_path)
    fleet = AgentFleet(tmp_path / "agents")
    fleet.workdir.mkdir()
    try:
        hosts = {f"a{i}": "192.0.2.0/24" for i in range(SITE_HOSTS)}
        hosts.update({r: "198.51.100.0/24" for r in SITES if r != "A"})
        star = build_star(lab, hosts)
        rounds = sum(rounds for _, _, rounds in SETTINGS)
        site_of = {a: ("A" if r.startswith("a") else r) for r, a in star.addresses.items()}
        site_of.update((round_address(k, i), "A") for k in range(rounds) for i in range(SITE_HOSTS))
        config = {
            "site_of": site_of,
            "rtt_ms": {a: {b: rtt_ms(a, b) for b in SITES} for a in SITES},
            "noisy": {star.addresses[NOISY]: list(NOISE)},
            "seed": 61,
        }
        try:
            delayer = start_delayer(lab, star.router, config, queue=61, lifetime=900)
        except AssertionError as e:
            if "cannot bind queue" in str(e):
                pytest.skip(f"NFQUEUE cannot be bound here: {e}")
            raise
        yield World(lab, fleet, star, delayer)
    finally:
        try:
            fleet.close()
        finally:
            lab.close()


def xbac(agent: AgentProcess) -> dict[str, Any]:
    """The agent's XBAC status (engine fields included)."""
    return dict(agent.get("/api/v1/xbac", timeout=20))


def spawn(
    w: World, name: str, role: str, seeds: list[str], address: str | None = None
) -> AgentProcess:
    return w.fleet.spawn(
        name,
        host=address or w.star.addresses[role],
        port=PORT,
        seeds=seeds,
        wrap=w.star.hosts[role].argv,
        extra=["--overlay-rejoin-interval", "5"],
    )


def connect(w: World, agent: AgentProcess) -> dict[str, Any]:
    """Wait until ``agent`` has bootstrapped (is in a group); its XBAC status."""
    w.fleet.wait_ready([agent], timeout=CONNECT_TIMEOUT)
    seen: dict[str, Any] = {}

    def grouped() -> bool:
        if not agent.alive():
            raise AssertionError(f"{agent.describe()} exited:\n{agent.output()}")
        seen.update(xbac(agent))
        return seen.get("role") not in (None, "none", "unknown") and bool(seen.get("group"))

    try:
        wait_for(grouped, CONNECT_TIMEOUT, f"{agent.name} to join or found a group", 0.3)
    except AssertionError:
        raise AssertionError(f"{seen}\n{w.fleet.logs([agent])}") from None
    return seen


def start_references(w: World, roles: list[str]) -> None:
    """Start reference agents: the first alone when none runs yet, the others at once.

    Reference sites are 36 ms or more apart (over the 20 ms leader distance), so each
    founds a group of its own however they overlap.
    """
    if roles and not w.refs:
        roles = list(roles)
        agent = spawn(w, f"ref-{roles[0]}", roles[0], [])
        status = connect(w, agent)
        assert status["role"] == "leader", (roles[0], status)
        w.refs[roles.pop(0)] = agent
    seeds = [a.address for a in w.refs.values()][:3]
    agents = [spawn(w, f"ref-{role}", role, seeds) for role in roles]
    for role, agent, status in zip(
        roles, agents, parallel(lambda a: connect(w, a), agents), strict=True
    ):
        assert status["role"] == "leader", (role, status)
        w.refs[role] = agent


def run_round(w: World, label: str, rnd: int) -> dict[str, Any]:
    """Connect the nine site hosts one by one, read their groups, disconnect them."""
    started = time.monotonic()
    round_addresses(w.star, w.rounds, up=True)
    hosts: list[AgentProcess] = []
    joined: list[tuple[str, float]] = []
    for i in range(SITE_HOSTS):
        seeds = [a.address for a in list(w.refs.values())[:2]] + [h.address for h in hosts[:2]]
        name = f"s{label.replace('*', 'x')}-{rnd}-a{i}"
        agent = spawn(w, name, f"a{i}", seeds, round_address(w.rounds, i))
        t0 = time.monotonic()
        first = connect(w, agent)
        joined.append((first["role"], round(time.monotonic() - t0, 1)))
        hosts.append(agent)
    time.sleep(0.5)  # state messages in flight arrive
    site = parallel(xbac, hosts)
    refs = parallel(xbac, list(w.refs.values()))
    ref_groups = {r["group"] for r in refs}
    groups = [s["group"] for s in site]
    majority = max(set(groups), key=groups.count)
    false_pos = sum(g in ref_groups for g in groups)
    ok = sum(g == majority and g not in ref_groups for g in groups)
    # Per bootstrapping (thesis Fig. 23): the first host rightly founds the site's group,
    # every later one should join a group of site hosts (founding another is a miss).
    bootstrapped = sum(
        (role == "leader") == (i == 0) and g not in ref_groups
        for i, ((role, _), g) in enumerate(zip(joined, groups, strict=True))
    )
    leader = next((s for s in site if s["group"] == majority and s["role"] == "leader"), None)
    # The agents' own measurement towards a reference node sees the delay on the wire.
    probe = None
    if w.refs:
        first_ref = next(iter(w.refs))
        probe = hosts[0].post(
            "/api/v1/xbac/measure", {"host": w.star.addresses[first_ref]}, timeout=20
        )
        probe["site"] = first_ref
    parallel(lambda a: a.stop(timeout=15), hosts)
    for a in hosts:
        a.killed = True  # ended by the test: not restarted, not stopped again
    if not HOSTS_STAY_UP:
        round_addresses(w.star, w.rounds, up=False)
    w.rounds += 1
    result = {
        "setting": label,
        "round": rnd,
        "ok": ok,
        "bootstrapped": bootstrapped,
        "false_positives": false_pos,
        "total": len(groups),
        "groups": len(set(groups)),
        "ref_roles": [r["role"] for r in refs],
        "ref_members": [r["members"] for r in refs],
        "leader_neighbours": (leader or {}).get("engine", {}).get("neighbour_leaders"),
        "probe": probe,
        "hosts": [
            (
                s["role"],
                s["group"][:8],
                s["engine"].get("leader_host"),
                s["engine"].get("neighbour_leaders"),
                {k: v for k, v in s["engine"].get("counters", {}).items() if v},
                {
                    k: (v.get("out", 0), v.get("in", 0))
                    for k, v in s["engine"].get("traffic", {}).items()
                    if k in ("xbac.meridian", "xbac.neighbours", "xbac.join", "xbac.measure")
                },
            )
            for s in site
        ],
        "joined": joined,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(f"setting {label} round {rnd}: {result}", flush=True)
    return result


def test_nine_site_hosts_bootstrap_into_one_group(world: World) -> None:
    """0, 1, 3, 5 consistent reference nodes: all nine hosts in one group, none wrongly;
    5 with one inconsistent reference node: fewer successes, still no false positive."""
    w = world
    began = time.monotonic()
    for label, wanted, rounds in SETTINGS:
        for role in list(w.refs):
            if role not in wanted:
                w.refs.pop(role).stop(timeout=15)
                if not HOSTS_STAY_UP:
                    w.star.hosts[role].link_up("dna0", False)
        start_references(w, [role for role in wanted if role not in w.refs])
        for rnd in range(rounds):
            w.results.append(run_round(w, label, rnd))
    assert w.delayer.alive(), w.delayer.output()
    w.delayer.stop()
    held = counters(w.delayer)

    print("\nThesis test 6.1 in namespaces: hosts in the site's majority group; bootstrappings")
    print("that did the right thing (first host founds, later ones join); false positives")
    print(f"{'setting':>8} {'rounds':>6} {'one group':>14} {'bootstraps':>14} {'false +':>8}")
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for r in w.results:
        by_setting.setdefault(r["setting"], []).append(r)
    for label, rs in by_setting.items():
        ok = sum(r["ok"] for r in rs)
        good = sum(r["bootstrapped"] for r in rs)
        total = sum(r["total"] for r in rs)
        fp = sum(r["false_positives"] for r in rs)
        print(
            f"{label:>8} {len(rs):>6} {ok:>5}/{total:<2} {100 * ok / total:4.0f}%"
            f" {good:>5}/{total:<2} {100 * good / total:4.0f}% {fp:>8}"
        )
    print(f"delayer: {held}; wall {time.monotonic() - began:.0f} s")

    report = "\n".join(str(r) for r in w.results)
    # The delays were really applied: every forwarded packet went through the queue.
    assert held.get("delayed", 0) > 1000 and held.get("overflow", 0) == 0, held
    for r in w.results:
        assert r["false_positives"] == 0, report
        # The reference nodes stay leaders of groups of their own.
        assert all(role == "leader" for role in r["ref_roles"]), report
        assert all(m == 1 for m in r["ref_members"]), report
        if r["probe"] is not None:
            want = rtt_ms("A", r["probe"]["site"])
            got = r["probe"]["rtt_ms"]
            lo = want * (NOISE[0] if r["probe"]["site"] == NOISY else 0.98)
            assert got is not None and got >= lo, (want, r["probe"])
    consistent = [r for r in w.results if r["setting"] != "5*"]
    # All nine in one group; one miss in all the consistent rounds is tolerated (a measurement
    # disturbed by the load of this machine; the thesis saw two with five reference nodes).
    assert all(r["total"] == SITE_HOSTS and r["ok"] >= SITE_HOSTS - 1 for r in consistent), report
    assert sum(r["ok"] for r in consistent) >= SITE_HOSTS * len(consistent) - 1, report
    # The site's leader found the (at most three) nearest reference leaders as its neighbours.
    nearest = sorted((r for r in SITES if r not in ("A", NOISY)), key=lambda r: rtt_ms("A", r))
    for r in consistent:
        n = {"0": 0, "1": 1, "3": 3, "5": 3}[r["setting"]]
        expected = {w.star.addresses[site] for site in nearest[:n]}
        assert set(r["leader_neighbours"] or []) == expected, report
    noisy = by_setting["5*"]
    good = sum(r["bootstrapped"] for r in noisy)
    total = sum(r["total"] for r in noisy)
    # Thesis: "significantly lower" success with the inconsistent node among the nearest
    # leaders (here 5 or 6 of 9 in most runs; a host whose measurement of it happens to
    # agree with its leader's still joins); never a false positive (asserted above).
    assert total // 3 <= good < total, report
    assert all(r["groups"] >= 2 for r in noisy), report
