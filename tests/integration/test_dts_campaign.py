"""A DTS trace campaign between three real agents in network namespaces.

Three monitors (``twistd -n dnaagent``, each in its own namespace) reach two hosts
through four routers; the paths of m1 and of m2/m3 share r3 and r4, m2 and m3 share r2::

    m1 192.0.2.2  -L1- r1 -L4 198.51.100.0/28-- r3 -L6 .32/28- r4 -L7 203.0.113.0/28-- t1
    m2 192.0.2.18 -L2- r2 -L5 198.51.100.16/28-/               \\-L8 203.0.113.16/28- t2
    m3 192.0.2.34 -L3-/

(routers are ``.1``/``.17``/``.33`` of a /28 on the monitor side, r3 is ``.2``/``.18``/
``.33`` and r4 ``.34``/``203.0.113.1``/``.17``; t1 and t2 have seven addresses each.)
Every address has an IPv6 twin: link ``Lk`` is 2001:db8:k::/64, the interface ID is the
last IPv4 byte's digits. The overlay runs over IPv4; the campaign traces IPv4 and IPv6
targets.
Routes are static, derived from the same table; routers forward with ``rp_filter`` off;
ICMP rate limits are lifted in every namespace. The agents form an overlay among
themselves; m1's operator creates a campaign with ``dnactl trace campaign create`` over
every host address and the far-side router addresses (chunks of two, lease 6 s), all
three join, and m3 is killed with SIGKILL (by PID) while it holds a chunk, after it has
committed one. The campaign completes (m3's chunk is claimed again once its lease
expired), and what the exported RIPE Atlas JSON shows -- read back with
``ripe.atlas.sagan`` -- equals the namespace topology: every router interface, every
router-to-router link seen from the monitors, every host address (IPv4), the interfaces
and links of the paths traced (IPv6); each record's hops match the path the routing
table gives.

Only documentation prefixes are used; everything is removed afterwards.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .agents import AgentFleet, AgentProcess, parallel
from .netns import Lab, Namespace, unavailable_reason, wait_for

# Link name -> {node: [addresses]} (the first address is the node's primary one); /28 each.
LINKS: dict[str, dict[str, list[str]]] = {
    "L1": {"m1": ["192.0.2.2"], "r1": ["192.0.2.1"]},
    "L2": {"m2": ["192.0.2.18"], "r2": ["192.0.2.17"]},
    "L3": {"m3": ["192.0.2.34"], "r2": ["192.0.2.33"]},
    "L4": {"r1": ["198.51.100.1"], "r3": ["198.51.100.2"]},
    "L5": {"r2": ["198.51.100.17"], "r3": ["198.51.100.18"]},
    "L6": {"r3": ["198.51.100.33"], "r4": ["198.51.100.34"]},
    "L7": {"r4": ["203.0.113.1"], "t1": [f"203.0.113.{i}" for i in range(2, 9)]},
    "L8": {"r4": ["203.0.113.17"], "t2": [f"203.0.113.{i}" for i in range(18, 25)]},
}
PREFIX_LEN = 28
MONITORS = ("m1", "m2", "m3")
ROUTERS = ("r1", "r2", "r3", "r4")
HOSTS = ("t1", "t2")
VICTIM = "m3"
CAMPAIGN = "lab1"
LEASE = 6
#: Probes per second per monitor: slow enough that a chunk takes a few seconds.
PROBE_RATE = 2
TIMEOUT = 240.0


def prefix(link: str) -> str:
    """The /28 of a link."""
    first = next(iter(LINKS[link].values()))[0]
    return str(ipaddress.ip_interface(f"{first}/{PREFIX_LEN}").network)


def neighbours(node: str) -> dict[str, tuple[str, str]]:
    """Adjacent node -> (link, the neighbour's address on it)."""
    out = {}
    for link, members in LINKS.items():
        if node in members:
            for other, addresses in members.items():
                if other != node:
                    out[other] = (link, addresses[0])
    return out


def node_path(src: str, dst: str) -> list[str]:
    """Nodes from ``src`` to ``dst`` (the topology is a tree: one path)."""
    seen = {src: [src]}
    todo = [src]
    while todo:
        node = todo.pop(0)
        for nxt in neighbours(node):
            if nxt not in seen:
                seen[nxt] = [*seen[node], nxt]
                todo.append(nxt)
    return seen[dst]


def owner(address: str) -> str:
    """The node holding ``address``."""
    for members in LINKS.values():
        for node, addresses in members.items():
            if address in addresses:
                return node
    raise KeyError(address)


def v6(address: str) -> str:
    """The IPv6 twin of an IPv4 address of the table: link ``Lk`` is 2001:db8:k::/64,
    the interface ID the last IPv4 byte (as digits)."""
    for link, members in LINKS.items():
        if any(address in addrs for addrs in members.values()):
            return f"2001:db8:{link[1:]}::{address.rsplit('.', 1)[1]}"
    raise KeyError(address)


V4_OF = {v6(a): a for m in LINKS.values() for addrs in m.values() for a in addrs}


def truth_hops(monitor: str, destination: str) -> list[str]:
    """What answers at TTL 1, 2, ...: each router's address on the link the probe came
    in by, then the destination itself (IPv6 destinations: the IPv6 twins)."""
    family6 = destination in V4_OF
    nodes = node_path(monitor, owner(V4_OF.get(destination, destination)))
    hops = []
    for prev, node in zip(nodes, nodes[1:-1], strict=False):
        link = neighbours(prev)[node][0]
        address = LINKS[link][node][0]
        hops.append(v6(address) if family6 else address)
    return [*hops, destination]


def targets() -> list[str]:
    """Host addresses and the routers' far-side addresses, so that every chunk of two
    holds a host (whose trace crosses r3 and r4)."""
    hosts = [
        a for link in ("L7", "L8") for n, addrs in LINKS[link].items() if n in HOSTS for a in addrs
    ]
    far = ["198.51.100.1", "198.51.100.17", "198.51.100.33", "203.0.113.1", "203.0.113.17"]
    out = []
    for i, host in enumerate(hosts):
        out.append(host)
        if i < len(far):
            out.append(far[i])
    # IPv6: two addresses of each host, two far-side router addresses.
    hosts6 = [v6(a) for a in (*hosts[:2], *hosts[7:9])]
    out += [hosts6[0], v6("198.51.100.1"), hosts6[1], v6("203.0.113.17"), *hosts6[2:]]
    return out


def build(lab: Lab) -> dict[str, Namespace]:
    """Namespaces, veth links, addresses, static routes, forwarding on the routers."""
    ns = {name: lab.namespace(name) for name in (*MONITORS, *ROUTERS, *HOSTS)}
    for r in ROUTERS:
        ns[r].sysctl(
            {
                "net.ipv4.ip_forward": "1",
                "net.ipv4.conf.all.rp_filter": "0",
                "net.ipv4.conf.default.rp_filter": "0",
                "net.ipv6.conf.all.forwarding": "1",
            }
        )
    devs: dict[tuple[str, str], str] = {}
    for link, members in LINKS.items():
        (a, _), (b, _) = members.items()
        da, db = f"{link.lower()}{a}", f"{link.lower()}{b}"
        lab.veth(ns[a], da, ns[b], db)
        devs[(a, link)], devs[(b, link)] = da, db
        for node, addresses in members.items():
            for address in addresses:
                dev = devs[(node, link)]
                ns[node].ip("addr", "add", f"{address}/{PREFIX_LEN}", "dev", dev)
                ns[node].ip("-6", "addr", "add", f"{v6(address)}/64", "dev", dev, "nodad")
    for node in ns:
        attached = {link for link, members in LINKS.items() if node in members}
        for link, members in LINKS.items():
            if link in attached:
                continue
            path = node_path(node, next(iter(members)))
            gateway = neighbours(node)[path[1]][1]
            ns[node].ip("route", "add", prefix(link), "via", gateway)
            ns[node].ip("-6", "route", "add", f"2001:db8:{link[1:]}::/64", "via", v6(gateway))
    return ns


def interfaces_and_links(results: list[Any]) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """From parsed Atlas results: router interfaces (answers that are not the
    destination), destinations reached, router links (consecutive TTLs)."""
    interfaces: set[str] = set()
    reached: set[str] = set()
    links: set[tuple[str, str]] = set()
    for r in results:
        by_ttl: dict[int, str] = {}
        for hop in r.hops:
            origins = {p.origin for p in hop.packets if p.origin}
            assert len(origins) <= 1, f"one probe per hop, one answer: {hop.raw_data}"
            if origins:
                by_ttl[hop.index] = origins.pop()
        for ttl, address in by_ttl.items():
            if address == r.destination_address:
                reached.add(address)
                continue
            interfaces.add(address)
            nxt = by_ttl.get(ttl + 1)
            if nxt is not None and nxt != r.destination_address:
                links.add((address, nxt))
    return interfaces, reached, links


class World:
    def __init__(self, lab: Lab, fleet: AgentFleet) -> None:
        self.lab = lab
        self.fleet = fleet
        self.ns: dict[str, Namespace] = {}
        self.agents: dict[str, AgentProcess] = {}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(tmp_path)
    fleet = AgentFleet(tmp_path / "agents")
    fleet.workdir.mkdir()
    w = World(lab, fleet)
    try:
        w.ns = build(lab)
        seed = f"{LINKS['L1']['m1'][0]}:4001"
        for name in MONITORS:
            address = LINKS[{"m1": "L1", "m2": "L2", "m3": "L3"}[name]][name][0]
            w.agents[name] = fleet.spawn(
                name,
                host=address,
                port=4001,
                seeds=[] if name == "m1" else [seed],
                wrap=w.ns[name].argv,
                extra=[
                    "--overlay-rejoin-interval",
                    "5",
                    "--dts-monitor",
                    name,
                    "--dts-probe-rate",
                    str(PROBE_RATE),
                    "--dts-probe-burst",
                    "1",
                    "--dts-poll-interval",
                    "1",
                    "--dts-probe-timeout",
                    "1",
                    "--dts-max-ttl",
                    "8",
                    "--dts-gap-limit",
                    "3",
                    "--dts-start-hop",
                    "2",
                    "--dts-concurrency",
                    "1",
                ],
            )
            if name == "m1":
                fleet.wait_ready([w.agents["m1"]])
        fleet.wait_ready(list(w.agents.values()))

        def everyone_known() -> bool:
            return all(a.overlay()["peers"] >= 2 for a in w.agents.values())

        wait_for(everyone_known, 120, "the three monitors to know each other", 0.5)
        yield w
    finally:
        try:
            fleet.close()
        finally:
            lab.close()


def local(agent: AgentProcess) -> dict[str, Any]:
    """The agent's own part in the campaign."""
    for c in agent.get("/api/v1/trace/campaigns")["campaigns"]:
        if c["campaign"] == CAMPAIGN:
            return dict(c)
    return {}


def test_campaign_survives_a_killed_monitor_and_finds_the_topology(world: World) -> None:
    m1, m2, m3 = (world.agents[n] for n in MONITORS)
    # The routed topology works before anything is traced.
    assert world.ns["m1"].ping("203.0.113.2") and world.ns["m3"].ping("198.51.100.1")
    wanted = targets()
    created = m1.ctl(
        "trace", "campaign", "create", CAMPAIGN, *wanted,
        "--chunk-size", "2", "--lease", str(LEASE), "--policy", "any",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr + world.fleet.logs()
    chunks = (len(wanted) + 1) // 2
    assert f"{len(wanted)} targets in {chunks} chunks" in created.stdout
    # Nothing is probed before a monitor joins.
    status = m2.ctl_json("trace", "campaign", "status", CAMPAIGN, ok=(1,))
    assert status["chunks_pending"] == chunks and status["probes"] == 0

    def join(agent: AgentProcess) -> Any:
        done = agent.ctl("trace", "campaign", "join", CAMPAIGN)
        assert done.returncode == 0, done.stderr + agent.output()
        return done.stdout

    parallel(join, [m3, m1, m2])

    # Kill m3 once it committed a chunk and while it holds another.
    held: list[int] = []

    def victim_busy() -> bool:
        info = local(m3)
        if info.get("state") == "failed":
            raise AssertionError(f"m3's campaign failed: {info}\n{m3.output()}")
        if info.get("chunks_done", 0) >= 1 and info.get("working"):
            held.extend(info["working"])
            return True
        return False

    wait_for(victim_busy, TIMEOUT, "m3 to commit a chunk and hold another", 0.3)
    m3.kill()
    lost = held[0]
    before = m1.ctl_json("trace", "campaign", "status", CAMPAIGN, ok=(0, 1))
    chunk = before["chunks"][lost]
    assert "m3" not in chunk["done"], f"m3 committed chunk {lost} before it died: {chunk}"

    done = m1.ctl(
        "trace", "campaign", "status", CAMPAIGN, "--wait", str(TIMEOUT), "--json",
        timeout=TIMEOUT + 30,
    )  # fmt: skip
    status = json.loads(done.stdout or "{}")
    assert done.returncode == 0, f"not complete: {done.stdout}\n{world.fleet.logs()}"
    assert status["complete"] and status["chunks_done"] == chunks
    taken_over = status["chunks"][lost]["done"]
    assert taken_over and "m3" not in taken_over, status["chunks"][lost]
    assert status["monitors"]["m3"]["alive"] is False
    by_monitor = {m: sum(1 for c in status["chunks"] if m in c["done"]) for m in MONITORS}
    assert all(by_monitor[m] >= 1 for m in MONITORS), by_monitor

    out = world.lab.workdir / "lab1.json"
    exported = m2.ctl("trace", "campaign", "export", CAMPAIGN, "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    raw = json.loads(out.read_text())
    from ripe.atlas.sagan import TracerouteResult

    results = [TracerouteResult(r) for r in raw]
    assert not any(r.is_error for r in results)
    assert sorted(r.destination_address for r in results) == sorted(wanted)  # one each
    sources = {"m1": "192.0.2.2", "m2": "192.0.2.18", "m3": "192.0.2.34"}
    # Every record matches the routing table at every TTL probed.
    traced = []
    for r, rec in zip(results, raw, strict=True):
        monitor = rec["dts"]["monitor"]
        source = sources[monitor]
        assert r.source_address == (v6(source) if ":" in r.destination_address else source), rec
        truth = truth_hops(monitor, r.destination_address)
        for hop in r.hops:
            origins = [p.origin for p in hop.packets if p.origin]
            expected = truth[min(hop.index, len(truth)) - 1]
            assert origins in ([], [expected]), (monitor, r.destination_address, hop.raw_data)
        assert rec["dts"]["forward_stop"] == "destination_reached", rec
        traced.append((monitor, r.destination_address))
    # Discovered interfaces and links equal the namespace topology.
    interfaces, reached, links = interfaces_and_links(results)
    router_addresses = {
        a for m in LINKS.values() for n, addrs in m.items() if n in ROUTERS for a in addrs
    }
    host_addresses = {
        a for m in LINKS.values() for n, addrs in m.items() if n in HOSTS for a in addrs
    }
    assert reached == set(wanted)
    # IPv4: every router interface and every router-to-router link as the monitors see
    # them (each monitor traced hosts), every host address.
    v4 = {a for a in interfaces if ":" not in a}
    assert v4 | (reached & router_addresses) == router_addresses
    assert host_addresses <= reached
    expected_links = set()
    for monitor in MONITORS:
        for host in host_addresses:
            path = truth_hops(monitor, host)[:-1]
            expected_links.update(zip(path, path[1:], strict=False))
    assert {link for link in links if ":" not in link[0]} == expected_links
    assert {m for m, _ in traced} == set(MONITORS)
    # IPv6: the interfaces and links of the paths the records traced, exactly.
    expected6: set[str] = set()
    links6: set[tuple[str, str]] = set()
    for monitor, dst in traced:
        if ":" in dst:
            path = truth_hops(monitor, dst)[:-1]
            expected6.update(path)
            links6.update(zip(path, path[1:], strict=False))
    assert expected6 and {a for a in interfaces if ":" in a} == expected6
    assert {link for link in links if ":" in link[0]} == links6
