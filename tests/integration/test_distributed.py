"""Distributed tests between real agents over routed subnets in network namespaces.

Five agents (``twistd -n dnaagent``, each inside its own namespace) sit on
three LANs behind three routers; a host sits on a fourth LAN reached from
two of the routers; every router runs dnsmasq as the DNS server of its LAN::

    LAN1 192.0.2.0/26        a1 .10, a2 .11   -- r1 .1 --+-- host LAN 203.0.113.0/26
    LAN2 198.51.100.0/26     a3 .10, a4 .11   -- r2 .1 --+   h 203.0.113.10 (r1 .1, r2 .2)
    LAN3 198.51.100.64/26    a5 .74           -- r3 .65
    transit r1-r2 198.51.100.128/30, r2-r3 .132/30, r1-r3 .136/30

and the same in IPv6: LANs 2001:db8:1::/64 to 2001:db8:3::/64 (router ::1), the
host 2001:db8:4::10, transit links 2001:db8:12::/64, 2001:db8:23::/64, 2001:db8:13::/64.
The overlay runs over IPv4; DistributedPing is also checked towards the IPv6 host.

The scenarios break one thing each, assert the diagnosis, and repair it:
the link between r1 and the host (path problem, located after r1), the
host itself (host down), a5's DNS server (DNSProxy answers through a peer
and from its loopback proxy), the path between a1 and a3 (Relay), a
declared port of a1 (PortCheck), and a ``tc tbf`` 10 Mbit/s link
(Throughput). Abuse: unsigned and tampered module packages are rejected,
an out-of-catalogue request is refused, and a burst of requests from
several peers stays within the per-peer and per-target limits.

Only documentation prefixes are used; everything is removed afterwards.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dnaagent import config
from dnaagent.trust import TrustStore, build_package
from dnaagent.trust.loader import ModuleStore

from .agents import AgentFleet, AgentProcess, parallel
from .netns import Lab, Namespace, Process, unavailable_reason, wait_for

pytestmark = pytest.mark.integration

HOST = "203.0.113.10"
HOST6 = "2001:db8:4::10"
DNS_NAME = "www.example.test"
DNS_ANSWER = "192.0.2.53"
TBF_RATE_MBIT = 10.0
#: Probes per minute to one target that each agent serves (set low for the burst test).
TARGET_CAP = 30
RUN_TIMEOUT = 150.0
#: Seconds for the five agents to know each other (joins retried every 5 s).
JOIN_TIMEOUT = 90.0

#: name: (LAN router, address, prefix length)
AGENTS = {
    "a1": ("r1", "192.0.2.10"),
    "a2": ("r1", "192.0.2.11"),
    "a3": ("r2", "198.51.100.10"),
    "a4": ("r2", "198.51.100.11"),
    "a5": ("r3", "198.51.100.74"),
}
LANS = {
    "r1": ("192.0.2.1", "192.0.2.0/26"),
    "r2": ("198.51.100.1", "198.51.100.0/26"),
    "r3": ("198.51.100.65", "198.51.100.64/26"),
}

#: IPv6 prefix of each router's LAN (the router is ::1) and each agent's address.
LANS6 = {"r1": "2001:db8:1::", "r2": "2001:db8:2::", "r3": "2001:db8:3::"}
AGENTS6 = {
    "a1": "2001:db8:1::10",
    "a2": "2001:db8:1::11",
    "a3": "2001:db8:2::10",
    "a4": "2001:db8:2::11",
    "a5": "2001:db8:3::10",
}

DEMO_MODULE = {
    "__init__.py": b'''"""A demo test module shipped as a signed package."""
from zope.interface import implementer
from dnaagent.mediator.interface import ITestModule, ITestRun, Outcome, TestSpec


@implementer(ITestRun)
class Run:
    def run_test(self, name):
        return Outcome.ok("hello from a signed module")


@implementer(ITestModule)
class Demo:
    name = "demo"
    description = "a demo module from a signed package"
    tests = (TestSpec("Hello", "says hello"),)
    parameters = {}

    def open_run(self, params):
        return Run()


def make_module(reactor, agent):
    return Demo()
''',
}

#: Sends raw overlay requests from a fresh node: kind, body and count from argv.
RAW_REQUESTS = r"""
import json, sys
from twisted.internet import defer, reactor
from dnaagent.overlay.identity import Identity
from dnaagent.overlay.node import OverlayNode

host, peer, name, body, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
node = OverlayNode(Identity.generate(), reactor)
reactor.listenUDP(0, node, interface=host)
out = []

def one(_=None):
    d = node.request((peer, 4001), name, json.loads(body), timeout=15)
    d.addCallbacks(
        lambda a: out.append(
            f"refused ({a['refused']}): {a['error']}" if "refused" in a else "ok"
        ),
        lambda f: out.append(getattr(f.value, "text", str(f.value))),
    )
    return d

@defer.inlineCallbacks
def main():
    yield defer.DeferredList([one() for _ in range(count)])
    print(json.dumps(out))
    reactor.stop()

reactor.callWhenRunning(main)
reactor.run()
"""


@dataclass
class World:
    """The namespaces, routers' DNS servers and agents of the scenarios."""

    lab: Lab
    fleet: AgentFleet
    ns: dict[str, Namespace] = field(default_factory=dict)
    dns: dict[str, Process] = field(default_factory=dict)
    agents: dict[str, AgentProcess] = field(default_factory=dict)

    def run(self, agent: str, test: str, **params: str) -> dict[str, Any]:
        """Run one distributed test on ``agent``; its result."""
        body = {"module": "distributed", "tests": [test], "params": params}
        answer = self.agents[agent].post("/api/v1/run", body, timeout=RUN_TIMEOUT)
        return dict(answer["results"][0])

    def distributed(self, agent: str) -> dict[str, Any]:
        """``GET /api/v1/distributed`` of ``agent``."""
        return dict(self.agents[agent].get("/api/v1/distributed"))

    def node_id(self, agent: str) -> str:
        """The node ID of ``agent``."""
        return self.agents[agent].node_id

    def python(self, where: str, *args: str, timeout: float = 60.0) -> str:
        """Run ``python -c ...`` inside a namespace; its standard output."""
        done = self.ns[where].run(sys.executable, "-c", *args, timeout=timeout, check=False)
        assert done.returncode == 0, f"stdout: {done.stdout}\nstderr: {done.stderr}"
        return done.stdout


def build(lab: Lab) -> dict[str, Namespace]:
    """The routers, the host and the agents' namespaces, wired and routed (IPv4 and IPv6)."""
    ns = {name: lab.namespace(name) for name in ("r1", "r2", "r3", "h", *AGENTS)}
    for name in ("r1", "r2", "r3", "h"):
        # Keep IPv6 addresses when a scenario sets a link down and up again.
        ns[name].sysctl(
            {
                "net.ipv6.conf.all.keep_addr_on_down": "1",
                "net.ipv6.conf.default.keep_addr_on_down": "1",
            }
        )
    for r in ("r1", "r2", "r3"):
        ns[r].sysctl({"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"})
        ns[r].ip("link", "add", "br0", "type", "bridge")
        ns[r].link_up("br0")
        ns[r].ip("addr", "add", f"{LANS[r][0]}/26", "dev", "br0")
        ns[r].ip("-6", "addr", "add", f"{LANS6[r]}1/64", "dev", "br0", "nodad")
    for name, (r, address) in AGENTS.items():
        lab.veth(ns[name], "eth0", ns[r], f"p{name}")
        ns[r].ip("link", "set", f"p{name}", "master", "br0")
        ns[name].ip("addr", "add", f"{address}/26", "dev", "eth0")
        ns[name].ip("-6", "addr", "add", f"{AGENTS6[name]}/64", "dev", "eth0", "nodad")
        ns[name].ip("route", "add", "default", "via", LANS[r][0])
        ns[name].ip("-6", "route", "add", "default", "via", f"{LANS6[r]}1")
        lab.resolv_conf(ns[name], [LANS[r][0]])
    # The host's LAN: a bridge in h with one port towards r1 and one towards r2.
    ns["h"].ip("link", "add", "hbr", "type", "bridge")
    ns["h"].link_up("hbr")
    for r, suffix in (("r1", "1"), ("r2", "2")):
        lab.veth(ns[r], f"{r}h", ns["h"], f"h{r}")
        ns["h"].ip("link", "set", f"h{r}", "master", "hbr")
        ns[r].ip("addr", "add", f"203.0.113.{suffix}/26", "dev", f"{r}h")
        ns[r].ip("-6", "addr", "add", f"2001:db8:4::{suffix}/64", "dev", f"{r}h", "nodad")
    ns["h"].ip("addr", "add", f"{HOST}/26", "dev", "hbr")
    ns["h"].ip("-6", "addr", "add", f"{HOST6}/64", "dev", "hbr", "nodad")
    host_routes(ns["h"])
    # Transit links between the routers.
    for a, b, a_ip, b_ip, net6 in (
        ("r1", "r2", "198.51.100.129", "198.51.100.130", "2001:db8:12::"),
        ("r2", "r3", "198.51.100.133", "198.51.100.134", "2001:db8:23::"),
        ("r1", "r3", "198.51.100.137", "198.51.100.138", "2001:db8:13::"),
    ):
        lab.veth(ns[a], f"t{b}", ns[b], f"t{a}")
        ns[a].ip("addr", "add", f"{a_ip}/30", "dev", f"t{b}")
        ns[b].ip("addr", "add", f"{b_ip}/30", "dev", f"t{a}")
        ns[a].ip("-6", "addr", "add", f"{net6}{a[1]}/64", "dev", f"t{b}", "nodad")
        ns[b].ip("-6", "addr", "add", f"{net6}{b[1]}/64", "dev", f"t{a}", "nodad")
    routes = {
        "r1": [
            ("198.51.100.0/26", "198.51.100.130"),
            ("198.51.100.64/26", "198.51.100.138"),
            ("2001:db8:2::/64", "2001:db8:12::2"),
            ("2001:db8:3::/64", "2001:db8:13::3"),
        ],
        "r2": [
            ("192.0.2.0/26", "198.51.100.129"),
            ("198.51.100.64/26", "198.51.100.134"),
            ("2001:db8:1::/64", "2001:db8:12::1"),
            ("2001:db8:3::/64", "2001:db8:23::3"),
        ],
        "r3": [
            ("192.0.2.0/26", "198.51.100.137"),
            ("198.51.100.0/26", "198.51.100.133"),
            ("203.0.113.0/26", "198.51.100.133"),
            ("2001:db8:1::/64", "2001:db8:13::1"),
            ("2001:db8:2::/64", "2001:db8:23::2"),
            ("2001:db8:4::/64", "2001:db8:23::2"),
        ],
    }
    for r, table in routes.items():
        for prefix, via in table:
            ns[r].ip("route", "add", prefix, "via", via)
    return ns


def host_routes(h: Namespace) -> None:
    """The host's routes: towards LAN1 through r1, everything else through r2."""
    h.ip("route", "replace", "default", "via", "203.0.113.2")
    h.ip("route", "replace", "192.0.2.0/26", "via", "203.0.113.1")
    h.ip("-6", "route", "replace", "default", "via", "2001:db8:4::2")
    h.ip("-6", "route", "replace", "2001:db8:1::/64", "via", "2001:db8:4::1")


def prepare_trust(workdir: Path, fleet_dir: Path) -> None:
    """One publisher key trusted by every agent; a1 holds a signed module,
    a2 a tampered one and a5 an unsigned one."""
    key = Ed25519PrivateKey.generate()
    for name in AGENTS:
        state = fleet_dir / name
        state.mkdir(exist_ok=True)
        TrustStore(str(state / "trusted_keys")).trust(key.public_key())
    signed = build_package("demo", "1.0", DEMO_MODULE, key)
    trust = TrustStore(str(fleet_dir / "a1" / "trusted_keys"))
    ModuleStore(str(fleet_dir / "a1" / "modules"), trust).install(signed)
    # Signed, then one file changed in transit: the manifest and signature stay valid.
    forged = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(build_package("tampered", "1.0", DEMO_MODULE, key))) as src,
        zipfile.ZipFile(forged, "w") as dst,
    ):
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "__init__.py":
                data += b"\nimport os  # anything at all\n"
            dst.writestr(info.filename, data)
    for name, package, data in (
        ("a2", "tampered", forged.getvalue()),
        ("a5", "unsigned", build_package("unsigned", "1.0", DEMO_MODULE, None)),
    ):
        modules = fleet_dir / name / "modules"
        modules.mkdir(parents=True, exist_ok=True)
        (modules / f"{package}.dnapkg").write_bytes(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The whole network with five agents that know each other."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    if "distributed" not in config.Config.__dataclass_fields__:
        pytest.skip("the distributed module is not wired into the agent ([distributed] section)")
    for program in ("dnsmasq", "traceroute", "tc"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed")
    workdir = tmp_path_factory.mktemp("distributed")
    lab = Lab(workdir)
    fleet = AgentFleet(workdir / "agents")
    fleet.workdir.mkdir()
    w = World(lab, fleet)
    try:
        w.ns = build(lab)
        for r in ("r1", "r2", "r3"):
            w.dns[r] = lab.dnsmasq(w.ns[r], [LANS[r][0]])
        prepare_trust(workdir, fleet.workdir)
        common = [
            "--distributed-ping-timeout",
            "1",
            "--distributed-max-hops",
            "8",
            "--distributed-target-per-minute",
            str(TARGET_CAP),
            # A join that failed on a loaded machine is retried soon.
            "--overlay-rejoin-interval",
            "5",
        ]
        seed = f"{AGENTS['a1'][1]}:4001"
        for name, (_, address) in AGENTS.items():
            extra = list(common)
            if name == "a1":
                extra += ["--distributed-services", "tcp/8080,tcp/8081"]
                # Informs to r1, where no receiver listens: they stay queued.
                extra += ["--notifications-inform-targets", f"v2c:public@{LANS['r1'][0]}:162"]
            w.agents[name] = fleet.spawn(
                name,
                host=address,
                port=4001,
                seeds=[] if name == "a1" else [seed],
                extra=extra,
                wrap=w.ns[name].argv,
            )
            if name == "a1":
                # The seed answers before the others try to join through it.
                fleet.wait_ready([w.agents["a1"]])
        fleet.wait_ready(list(w.agents.values()))
        modules = w.agents["a1"].get("/api/v1/modules")["modules"]
        if "distributed" not in {m["name"] for m in modules}:
            pytest.skip("the distributed module is not wired into the agent")

        def everyone_known() -> bool:
            return all(a.overlay()["peers"] >= len(AGENTS) - 1 for a in w.agents.values())

        wait_for(everyone_known, JOIN_TIMEOUT, "every agent to know the four others", 0.5)
        yield w
    finally:
        try:
            fleet.close()
        finally:
            lab.close()


def explain(result: dict[str, Any]) -> str:
    """A result for an assertion message."""
    return json.dumps(result, indent=1)[:4000]


def test_link_between_router_and_host_broken(world: World) -> None:
    """r1 loses its link to the host: a1 is told it is a path problem after r1 (over IPv4
    and IPv6); a3 reaches it."""
    world.ns["r1"].link_up("r1h", False)
    try:
        result = world.run("a1", "DistributedPing", target=HOST, count="4")
        details = result["details"]
        assert result["status"] == "error" and details["verdict"] == "path-problem", explain(result)
        assert "between you and the host" in result["message"]
        assert "192.0.2.1" in details["location"], explain(result)
        assert details["peers_reaching"] >= 2
        result = world.run("a1", "DistributedPing", target=HOST6, count="4")
        assert result["details"]["verdict"] == "path-problem", explain(result)
        assert "2001:db8:1::1" in result["details"]["location"], explain(result)
        ok = world.run("a3", "DistributedPing", target=HOST)
        assert ok["status"] == "ok" and ok["details"]["verdict"] == "reachable", explain(ok)
        assert world.agents["a1"].get("/api/v1/status")["events_fired"] >= 2
    finally:
        world.ns["r1"].link_up("r1h", True)
    wait_for(lambda: world.ns["a1"].ping(HOST, 1.0), 30, "a1 to reach the host again")


def test_host_down(world: World) -> None:
    """The host's LAN goes dark: nobody reaches it, so it is diagnosed as down."""
    world.ns["h"].link_up("hbr", False)
    try:
        result = world.run("a1", "DistributedPing", target=HOST, count="4")
        assert result["details"]["verdict"] == "host-down", explain(result)
        assert result["message"].startswith(f"{HOST} looks down")
        # The operator's command prints the same diagnosis and exits 1 (a test failed).
        shown = world.agents["a1"].ctl("run", "distributed", "ping", "--target", HOST)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert f"{HOST} looks down" in shown.stdout and "DistributedPing" in shown.stdout
    finally:
        world.ns["h"].link_up("hbr", True)
        host_routes(world.ns["h"])  # setting the bridge down removed its routes
    wait_for(lambda: world.ns["a3"].ping(HOST, 1.0), 30, "the host to answer again")


def test_dns_server_dead_proxy_answers(world: World) -> None:
    """a5's DNS server dies: a peer resolves for it, and its loopback proxy answers."""
    assert world.run("a5", "DNSProxy", name=DNS_NAME)["status"] == "ok"
    world.dns["r3"].stop()
    result = world.run("a5", "DNSProxy", name=DNS_NAME)
    assert result["status"] == "warning", explain(result)
    assert DNS_ANSWER in result["message"] and result["details"]["proxy"], explain(result)
    script = (
        "import dns.message, dns.query\n"
        f"q = dns.message.make_query({DNS_NAME!r}, 'A')\n"
        "r = dns.query.udp(q, '127.0.0.1', timeout=15, port=10053)\n"
        "print(r.answer[0][0].to_text())\n"
    )
    assert world.python("a5", script).strip() == DNS_ANSWER


def test_relay_when_direct_path_cut(world: World) -> None:
    """a1 and a3 cannot reach each other; a third agent relays between them."""
    a1, a3 = AGENTS["a1"][1], AGENTS["a3"][1]
    world.ns["a1"].ip("route", "add", "blackhole", f"{a3}/32")
    world.ns["a3"].ip("route", "add", "blackhole", f"{a1}/32")
    try:
        result = world.run("a1", "Relay", peers=world.node_id("a3"))
        assert result["status"] == "warning", explain(result)
        assert "answers through" in result["message"] and result["details"]["via"]
    finally:
        world.ns["a1"].ip("route", "del", "blackhole", f"{a3}/32")
        world.ns["a3"].ip("route", "del", "blackhole", f"{a1}/32")
    assert world.run("a1", "Relay", peers=world.node_id("a3"))["status"] == "ok"


def queued_notifications(world: World, agent: str) -> int:
    """How many notifications ``agent`` has queued so far, all targets together."""
    status = world.agents[agent].get("/api/v1/status")["notifications"]
    return sum(int(c.get("queued", 0)) for c in status["counters"].values())


def test_port_check_reports_closed_port(world: World) -> None:
    """a1 declares tcp/8080 (served) and tcp/8081 (closed): a peer sees 8081 closed.

    The error is a test-failed event, and its inform is queued for the NMS.
    """
    listener = world.lab.spawn(
        world.ns["a1"],
        sys.executable,
        "-c",
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', 8080)); s.listen(16)\n"
        "while True:\n    c, _ = s.accept(); c.close()\n",
        log_name="listener.log",
    )
    probe = "import socket; socket.create_connection(('192.0.2.10', 8080), 2).close()"
    wait_for(
        lambda: world.ns["a1"].run(sys.executable, "-c", probe, check=False).returncode == 0,
        30,
        "the tcp/8080 listener",
    )
    try:
        fired = world.agents["a1"].get("/api/v1/status")["events_fired"]
        queued = queued_notifications(world, "a1")
        result = world.run("a1", "PortCheck")
        assert result["status"] == "error", explain(result)
        assert "tcp/8081 closed" in result["message"] and "8080" not in result["message"]
        assert result["details"]["ports"]["tcp/8080"] == "open"
        assert result["details"]["seen_as"] == "192.0.2.10"
        assert world.agents["a1"].get("/api/v1/status")["events_fired"] > fired
        assert queued_notifications(world, "a1") > queued
    finally:
        listener.stop()


def test_throughput_over_tbf_link(world: World) -> None:
    """a3 streams to a1 over the r2->r1 link limited to 10 Mbit/s by tbf: within 10 %."""
    world.ns["r2"].run(
        "tc",
        "qdisc",
        "add",
        "dev",
        "tr1",
        "root",
        "tbf",
        "rate",
        "10mbit",
        "burst",
        "32kb",
        "latency",
        "50ms",
    )
    try:
        result = world.run("a1", "Throughput", peers=world.node_id("a3"), seconds="5")
        assert result["status"] == "ok", explain(result)
        mbit = result["details"]["mbit"]
        assert abs(mbit - TBF_RATE_MBIT) <= 0.1 * TBF_RATE_MBIT, explain(result)
        assert len(result["details"]["per_second_mbit"]) >= 5
    finally:
        world.ns["r2"].run("tc", "qdisc", "del", "dev", "tr1", "root", check=False)


def test_signed_modules_only(world: World) -> None:
    """Only the signed module loads; tampered and unsigned ones are rejected, also when
    fetched by an operator's request or by a peer asked to run a module it lacks."""
    names = {m["name"] for m in world.agents["a1"].get("/api/v1/modules")["modules"]}
    assert "demo" in names
    for agent, reason in (("a2", "hash_mismatch"), ("a5", "unsigned")):
        names = {m["name"] for m in world.agents[agent].get("/api/v1/modules")["modules"]}
        assert not {"tampered", "unsigned"} & names
        counters = world.distributed(agent)["trust"]["counters"]
        assert counters.get(f"rejected_{reason}", 0) >= 1, counters
    got = world.agents["a3"].post(
        "/api/v1/distributed/fetch", {"peer": world.node_id("a1"), "name": "demo"}
    )
    assert got["installed"] == "demo"
    hello = world.agents["a3"].post("/api/v1/run", {"module": "demo"})["results"][0]
    assert hello["message"] == "hello from a signed module"
    for source, name in (("a2", "tampered"), ("a5", "unsigned")):
        with pytest.raises(AssertionError, match="403"):
            world.agents["a4"].post(
                "/api/v1/distributed/fetch", {"peer": world.node_id(source), "name": name}
            )
    counters = world.distributed("a4")["trust"]["counters"]
    assert counters["rejected_hash_mismatch"] >= 1 and counters["rejected_unsigned"] >= 1
    # Asked to run a module it lacks, a4 fetches it from the requester and verifies it.
    ran = world.agents["a1"].post(
        "/api/v1/distributed/run-remote",
        {"peer": world.node_id("a4"), "module": "demo", "test": "Hello"},
        timeout=120,
    )
    assert ran["results"][0]["message"] == "hello from a signed module", ran
    with pytest.raises(AssertionError, match="403"):
        world.agents["a5"].post(
            "/api/v1/distributed/run-remote",
            {"peer": world.node_id("a4"), "module": "unsigned", "test": "Hello"},
            timeout=120,
        )
    after = world.distributed("a4")["trust"]["counters"]
    assert after["rejected_unsigned"] > counters["rejected_unsigned"], after
    names = {m["name"] for m in world.agents["a4"].get("/api/v1/modules")["modules"]}
    assert "demo" in names and "unsigned" not in names
    names = {m["name"] for m in world.agents["a4"].get("/api/v1/modules")["modules"]}
    assert not {"tampered", "unsigned"} & names


def raw(world: World, where: str, to: str, name: str, body: Any, count: int = 1) -> list[str]:
    """Answers ("ok" or the refusal text) to ``count`` raw requests from a fresh node."""
    host = AGENTS[where][1]
    out = world.python(where, RAW_REQUESTS, host, to, name, json.dumps(body), str(count))
    return list(json.loads(out.strip().splitlines()[-1]))


def test_out_of_catalogue_refused(world: World) -> None:
    """Requests outside the catalogue or its bounds are refused with a reason."""
    a3 = AGENTS["a3"][1]
    assert "unknown handler" in raw(world, "a1", a3, "dna.exec", {"cmd": "id"})[0]
    answer = raw(world, "a1", a3, "dna.ping", {"target": HOST, "count": 500})[0]
    assert "refused (bad_parameter)" in answer
    answer = raw(world, "a1", a3, "dna.ping", {"target": "127.0.0.1"})[0]
    assert "refused (denied_target)" in answer
    answer = raw(world, "a1", a3, "dna.relay", {"to": [HOST, 4001], "kind": "throughput"})[0]
    assert "refused (bad_parameter)" in answer


def test_rate_limits_hold_under_burst(world: World) -> None:
    """Four peers each send 15 pings of 5 probes to one target through a3 at once."""
    a3, target = AGENTS["a3"][1], "198.51.100.65"
    before = world.distributed("a3")["guard"]["counters"]
    senders = ["a1", "a2", "a4", "a5"]
    answers = parallel(
        lambda s: raw(world, s, a3, "dna.ping", {"target": target, "count": 5}, 15), senders
    )
    served = sum(a.count("ok") for a in answers)
    assert served <= TARGET_CAP // 5, answers
    assert all(a.count("ok") <= 10 for a in answers)
    guard = world.distributed("a3")["guard"]
    after = guard["counters"]
    for reason in ("refused_target_rate", "refused_peer_rate"):
        assert after.get(reason, 0) > before.get(reason, 0), after
    used = dict((t, n) for t, n in guard["busiest_targets"])
    assert used.get(target, 0) <= TARGET_CAP
