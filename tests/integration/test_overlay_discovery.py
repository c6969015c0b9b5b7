"""Agents on one link find each other by link-local discovery alone, with no seeds.

Five agent namespaces hang off a Linux bridge in a sixth ("switch") namespace::

    agent namespace i (i = 0..4)                 switch namespace
    dna0 192.0.2.(10+i)/24, 2001:db8::(10+i)/64  p<i> --+
         default route via 192.0.2.1                    +-- br0 192.0.2.1/24
    ...                                                 |
                                                   p<j> +

Each agent runs inside its namespace (``ip netns exec``) with
``--overlay-discovery true --overlay-discovery-interval 5`` and no seeds, on the
default overlay port 4001 (announcements go to the agent's own port). Its
control API listens on the namespace's loopback, so ``dnactl`` runs in the
same namespace.

The agents announce themselves to the IPv4 limited broadcast address and to
``ff02::1`` on each interface. Each case turns on one family (or both) and checks
that every routing table holds the other four agents at their address on the
link and that every agent finds every other with ``dnactl lookup``.

The IPv4 limited broadcast is routed like any other destination: without a
route that covers 255.255.255.255 (a default route) Linux refuses to send it,
so the agent namespaces get a default route through the bridge's address, as
on a LAN with a router.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .agents import AgentFleet, AgentProcess, parallel
from .netns import Lab, Namespace, unavailable_reason

_reason = unavailable_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

pytestmark = pytest.mark.integration

AGENTS = 5
NIC = "dna0"
BRIDGE = "br0"
GATEWAY_V4 = "192.0.2.1"
PORT = 4001
INTERVAL = 5
#: Announcements start within one interval; a few more allow for a slow start.
DISCOVERY_TIMEOUT = 6 * INTERVAL


def _v4(i: int) -> str:
    return f"192.0.2.{10 + i}"


def _v6(i: int) -> str:
    return f"2001:db8::{10 + i:x}"


@pytest.fixture
def fleet(lab: Lab) -> Iterator[AgentFleet]:
    """Agents of the test; ended by PID before the lab removes the namespaces."""
    the_fleet = AgentFleet(lab.workdir)
    try:
        yield the_fleet
    finally:
        the_fleet.close()


def _build_link(lab: Lab, count: int = AGENTS, default_route: bool = True) -> list[Namespace]:
    """The switch namespace with its bridge and ``count`` agent namespaces wired to it."""
    switch = lab.namespace("sw")
    switch.ip("link", "add", BRIDGE, "type", "bridge")
    # All-nodes multicast is flooded anyway; no snooping keeps the bridge simple.
    switch.ip("link", "set", "dev", BRIDGE, "type", "bridge", "mcast_snooping", "0")
    switch.ip("addr", "add", f"{GATEWAY_V4}/24", "dev", BRIDGE)
    switch.link_up(BRIDGE)
    nodes = []
    for i in range(count):
        ns = lab.namespace(f"a{i}")
        lab.veth(ns, NIC, switch, f"p{i}")
        switch.ip("link", "set", "dev", f"p{i}", "master", BRIDGE)
        ns.ip("addr", "add", f"{_v4(i)}/24", "dev", NIC)
        ns.ip("addr", "add", f"{_v6(i)}/64", "dev", NIC, "nodad")
        if default_route:
            ns.ip("route", "add", "default", "via", GATEWAY_V4, "dev", NIC)
        nodes.append(ns)
    return nodes


def _link_local(ns: Namespace) -> str:
    """The fe80:: address the kernel gave ``NIC`` in ``ns``."""
    out = ns.ip("-6", "-o", "addr", "show", "dev", NIC, "scope", "link").stdout
    for word in out.split():
        if word.startswith("fe80:"):
            return word.split("/")[0]
    raise AssertionError(f"no link-local address on {NIC} in {ns.name}: {out}")


def _addresses(ns: Namespace, i: int) -> set[str]:
    """Every address agent ``i`` may be seen from (without a zone)."""
    return {_v4(i), _v6(i), _link_local(ns)}


def _peers(agent: AgentProcess) -> list[dict[str, Any]]:
    return list(agent.ctl_json("peers")["peers"])


@pytest.mark.parametrize(
    ("family", "listen_ipv4", "listen_ipv6"),
    [("ipv4", "0.0.0.0", ""), ("ipv6", "", "::"), ("dual", "0.0.0.0", "::")],
)
def test_agents_discover_each_other_on_the_link(
    lab: Lab, fleet: AgentFleet, family: str, listen_ipv4: str, listen_ipv6: str
) -> None:
    """Five seedless agents fill their routing tables by discovery and find each other.

    Only the address families the agents listen on are announced: IPv4 limited
    broadcast, IPv6 all-nodes multicast, or both. Within a bounded time every
    agent knows the four others, at an address of theirs on the link, every
    lookup of another agent succeeds, and a value put by one agent is read by
    another.
    """
    started = time.monotonic()
    nodes = _build_link(lab)
    agents = [
        fleet.spawn(
            f"disc{i}",
            host=listen_ipv4,
            listen_ipv6=listen_ipv6,
            port=PORT,
            extra=[
                "--overlay-discovery",
                "true",
                "--overlay-discovery-interval",
                str(INTERVAL),
            ],
            wrap=ns.argv,
        )
        for i, ns in enumerate(nodes)
    ]
    fleet.wait_ready(agents)
    ready = time.monotonic()
    for agent in agents:
        overlay = agent.overlay()
        assert overlay["seeds"] == [] and overlay["discovery"] is True, overlay

    ids = {a.node_id: i for i, a in enumerate(agents)}
    addresses = [_addresses(ns, i) for i, ns in enumerate(nodes)]

    def complete() -> bool:
        return all(a.overlay()["peers"] >= AGENTS - 1 for a in agents)

    deadline = time.monotonic() + DISCOVERY_TIMEOUT
    while not complete():
        if time.monotonic() > deadline:
            tables = {a.name: [p["host"] for p in _peers(a)] for a in agents}
            raise AssertionError(
                f"after {DISCOVERY_TIMEOUT} s not every agent knows the {AGENTS - 1} others "
                f"({family}): {tables}\n{fleet.logs()}"
            )
        time.sleep(0.5)
    discovered = time.monotonic()

    for i, agent in enumerate(agents):
        table = _peers(agent)
        assert sorted(ids[p["node_id"]] for p in table) == [j for j in range(AGENTS) if j != i]
        for peer in table:
            j = ids[peer["node_id"]]
            host = str(peer["host"]).split("%")[0]
            assert host in addresses[j], f"{agent.name} knows agent {j} at {peer}"
            version = ipaddress.ip_address(host).version
            assert family == "dual" or version == (4 if family == "ipv4" else 6), peer
            assert peer["port"] == PORT, peer

    pairs = [(a, b) for a in agents for b in agents if a is not b]

    def find(pair: tuple[AgentProcess, AgentProcess]) -> str | None:
        src, dst = pair
        answer = src.lookup(dst.node_id)
        found = answer.get("found")
        if found and found["node_id"] == dst.node_id:
            return None
        return f"{src.name} -> {dst.name}: {answer}"

    failed = [line for line in parallel(find, pairs, workers=8) if line]
    assert not failed, "\n".join(failed)

    key = f"link/{secrets.token_hex(4)}"
    put = agents[0].ctl_json("dht", "put", key, f"from {family}")
    assert put["stored_on"] == AGENTS, put
    got = agents[-1].ctl_json("dht", "get", key)
    assert [v["text"] for v in got["values"]] == [f"from {family}"], got
    assert all(a.alive() for a in agents), fleet.logs()
    for agent in agents:
        counters = agent.overlay()["counters"]
        # Nothing hostile on the link: the only drops are an agent's own
        # announcements coming back to it; every datagram could be sent.
        assert counters["dropped"] == counters["dropped_self"], (agent.name, counters)
        assert counters["bans_total"] == 0 and counters["send_errors"] == 0, counters
        assert counters["announcements"] >= 1, counters
    print(
        f"\n{family}: agents ready in {ready - started:.1f} s, all discovered "
        f"{discovered - ready:.1f} s later, total {time.monotonic() - started:.1f} s"
    )


def test_ipv4_discovery_without_a_default_route(lab: Lab, fleet: AgentFleet) -> None:
    """Two IPv4-only agents on a link without any router still find each other.

    A LAN without a gateway is the plainest plug-and-play case: the limited
    broadcast 255.255.255.255 cannot be sent there (no route covers it), so the
    agents announce to each interface's directed broadcast address instead.
    """
    nodes = _build_link(lab, count=2, default_route=False)
    agents = [
        fleet.spawn(
            f"alone{i}",
            host="0.0.0.0",
            port=PORT,
            extra=["--overlay-discovery", "true", "--overlay-discovery-interval", str(INTERVAL)],
            wrap=ns.argv,
        )
        for i, ns in enumerate(nodes)
    ]
    fleet.wait_ready(agents)
    deadline = time.monotonic() + 3 * INTERVAL
    while not all(a.overlay()["peers"] >= 1 for a in agents):
        if time.monotonic() > deadline:
            counters = {a.name: a.overlay()["counters"]["send_errors"] for a in agents}
            raise AssertionError(f"no agent found the other; send errors: {counters}")
        time.sleep(0.5)
