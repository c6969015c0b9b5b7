"""The distributed module and the peer handlers on an in-memory overlay of fakes."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet import defer, task
from zope.interface.verify import verifyObject

from dnaagent.errors import DnaAgentError
from dnaagent.measure.dns import DnsResult
from dnaagent.measure.ping import PingResult
from dnaagent.measure.traceroute import Hop, TraceResult
from dnaagent.mediator.interface import ITestModule, Status
from dnaagent.mediator.mediator import Mediator
from dnaagent.mediator.triggers import Triggers
from dnaagent.modules.distributed import events
from dnaagent.modules.distributed.dnsproxy import DnsProxy
from dnaagent.modules.distributed.module import DistributedModule
from dnaagent.modules.distributed.probes import ThroughputReport
from dnaagent.modules.distributed.settings import DistributedSection
from dnaagent.overlay.contact import Peer
from dnaagent.overlay.errors import PeerNotFound, RemoteError, RequestTimeout

T = "203.0.113.10"


class FakeNet:
    """Agents that reach each other unless a pair is cut."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, FakeNode] = {}
        self.cut: set[frozenset[bytes]] = set()

    def node(self, n: int, host: str) -> FakeNode:
        node = FakeNode(self, bytes([n]) * 20, (host, 4001))
        self.nodes[node.node_id] = node
        return node


class FakeNode:
    """The part of OverlayNode that the distributed module uses."""

    def __init__(self, net: FakeNet, node_id: bytes, address: tuple[str, int]) -> None:
        self.net = net
        self.node_id = node_id
        self.address = address
        self.handlers: dict[str, Any] = {}

    def register_handler(self, name: str, fn: Any) -> None:
        self.handlers[name] = fn

    def unregister_handler(self, name: str) -> None:
        self.handlers.pop(name, None)

    def peers(self) -> list[dict[str, Any]]:
        return [
            {"node_id": n.hex(), "host": o.address[0], "port": 4001}
            for n, o in self.net.nodes.items()
            if n != self.node_id
        ]

    def request(self, to: Any, name: str, body: Any, timeout: float | None = None) -> Any:
        dest = None
        for node in self.net.nodes.values():
            if to in (node.node_id, node.address):
                dest = node
        if dest is None:
            return defer.fail(PeerNotFound("no such node"))
        if frozenset((self.node_id, dest.node_id)) in self.net.cut:
            return defer.fail(RequestTimeout("no answer"))
        fn = dest.handlers.get(name)
        if fn is None:
            return defer.fail(RemoteError(1, f"unknown handler {name!r}"))
        d = defer.maybeDeferred(fn, body, Peer(self.node_id, self.address, "core"))

        def remote(f: Any) -> Any:
            text = str(f.value) if f.check(DnaAgentError) else f.type.__name__
            raise RemoteError(3, text)

        return d.addErrback(remote)


class FakePinger:
    """Answers for the targets in ``reach``."""

    def __init__(self, reach: set[str]) -> None:
        self.reach = reach
        self.sent: list[str] = []

    def ping(self, address: str, timeout: float, *, interface: str | None = None) -> Any:
        self.sent.append(address)
        if address in self.reach:
            return defer.succeed(PingResult(address, True, rtt_ms=1.5))
        return defer.succeed(PingResult(address, False, error="no reply"))


class FakeTracer:
    """Returns a fixed path."""

    def __init__(self, path: list[str | None]) -> None:
        self.path = path

    def trace(self, target: str, max_hops: int, timeout: float) -> Any:
        hops = tuple(Hop(i + 1, a, 1.0 if a else None) for i, a in enumerate(self.path))
        return defer.succeed(TraceResult(target, hops, bool(self.path) and self.path[-1] == target))


class FakeDns:
    """A resolver that answers or not."""

    def __init__(self, works: bool) -> None:
        self.works = works

    def query(self, server: str, name: str, rdtype: str, timeout: float) -> Any:
        if self.works:
            return defer.succeed(
                DnsResult(server, name, rdtype, rcode="NOERROR", answers=("192.0.2.99",))
            )
        return defer.succeed(DnsResult(server, name, rdtype, error="no reply within 2 s"))


class Agent:
    """One fake agent: node, module, mediator with triggers."""

    def __init__(self, net: FakeNet, n: int, host: str, reach: set[str], path, dns=True, **cfg):
        self.clock = task.Clock()
        self.node = net.node(n, host)
        section = DistributedSection(dns_proxy_port=0, **cfg)
        self.module = DistributedModule(
            section,
            self.clock,
            FakePinger(reach),
            FakeTracer(path),
            FakeDns(dns),
            lambda: self.node,
            rng=random.Random(n),
            read_file=lambda path: "nameserver 192.0.2.53\n",
        )
        self.checked: list[tuple[str, str, int]] = []
        self.module.handlers.port_checker = self.check_port
        self.module.attach(self.node)
        self.triggers = Triggers()
        events.install(self.triggers)
        self.events: list[Any] = []
        self.triggers.subscribe(self.events.append)
        self.mediator = Mediator(self.clock, None, self.triggers, default_timeout=60)
        self.mediator.register(self.module)
        self.closed_ports: set[str] = set()

    def check_port(self, reactor: Any, host: str, proto: str, port: int, timeout: float) -> Any:
        self.checked.append((host, proto, port))
        return defer.succeed("closed" if f"{proto}/{port}" in self.closed_ports else "open")

    def run(self, test: str, **params: str) -> Any:
        d = self.mediator.run("distributed", [test], params)
        results = self.successResult(d)
        return results[0]

    @staticmethod
    def successResult(d: Any) -> Any:
        out: list[Any] = []
        d.addBoth(out.append)
        assert out, "the run did not finish"
        assert not isinstance(out[0], Exception), out[0]
        return out[0]


@pytest.fixture()
def net() -> FakeNet:
    """An empty fake network."""
    return FakeNet()


def fleet(net: FakeNet, reach_a: set[str], reach_others: set[str]) -> list[Agent]:
    """Agent A (192.0.2.10) and three peers in other subnets."""
    a = Agent(net, 1, "192.0.2.10", reach_a, ["192.0.2.1", "198.51.100.1", None])
    others = [
        Agent(net, n, host, reach_others, ["198.51.100.65", "198.51.100.1", "203.0.113.1", T])
        for n, host in ((2, "198.51.100.70"), (3, "198.51.100.71"), (4, "198.51.100.130"))
    ]
    return [a, *others]


def test_module_interface(net: FakeNet) -> None:
    """The module provides ITestModule and lists the five tests."""
    a = Agent(net, 1, "192.0.2.10", set(), [])
    verifyObject(ITestModule, a.module)
    names = [t.name for t in a.module.tests]
    assert names == ["PortCheck", "DNSProxy", "DistributedPing", "Relay", "Throughput"]


def test_distributed_ping_path_problem(net: FakeNet) -> None:
    """A reaches nothing, its peers reach the target: path problem, link named, event fired."""
    a, *_ = fleet(net, set(), {T})
    r = a.run("DistributedPing", target=T)
    assert r.status is Status.ERROR, r.message
    assert r.details["verdict"] == "path-problem"
    assert "between you and the host" in r.message
    assert r.details["location"].startswith("between 198.51.100.1 and 203.0.113.1")
    fault = [e for e in a.events if e.kind == "fault-localized"]
    assert len(fault) == 1 and fault[0].details["target"] == T


def test_distributed_ping_host_down(net: FakeNet) -> None:
    """Nobody reaches the target: host down."""
    a, *_ = fleet(net, set(), set())
    r = a.run("DistributedPing", target=T)
    assert r.details["verdict"] == "host-down" and "looks down" in r.message


def test_distributed_ping_local_problem(net: FakeNet) -> None:
    """A is cut from every peer and reaches nothing: local problem."""
    a, *others = fleet(net, set(), {T})
    for o in others:
        net.cut.add(frozenset((a.node.node_id, o.node.node_id)))
    r = a.run("DistributedPing", target=T)
    assert r.details["verdict"] == "local-problem", r.message


def test_distributed_ping_reachable_and_chosen_peer(net: FakeNet) -> None:
    """With peers=ID only that peer is asked; a reachable target is OK."""
    a, b, *_ = fleet(net, {T}, {T})
    r = a.run("DistributedPing", target=T, peers=b.node.node_id.hex())
    assert r.status is Status.OK and r.details["partners"] == [b.node.node_id.hex()[:12]]
    assert r.details["peers_asked"] == 1


def test_peers_refuse_denied_targets(net: FakeNet) -> None:
    """Peers refuse to ping their own loopback: the refusal is evidence, not a reach."""
    a, *_ = fleet(net, set(), {"127.0.0.1"})
    r = a.run("DistributedPing", target="127.0.0.1")
    assert r.details["peers_answered"] == 0
    assert all("denied_target" in p["error"] for p in r.details["peers"])


def test_port_check_errors_on_closed_port(net: FakeNet) -> None:
    """A peer probes A's declared ports at A's address; a closed one is an error."""
    a, b, c, d = fleet(net, set(), set())
    for peer in (b, c, d):
        peer.closed_ports = {"tcp/8080"}
    r = a.run("PortCheck", ports="tcp/22,tcp/8080")
    assert r.status is Status.ERROR and "tcp/8080 closed" in r.message
    checked = b.checked + c.checked + d.checked
    assert {h for h, _, _ in checked} == {"192.0.2.10"}
    assert [e.kind for e in a.events] == ["test-failed"]
    r = a.run("PortCheck", ports="tcp/22")
    assert r.status is Status.OK


def test_port_check_without_services_is_skipped(net: FakeNet) -> None:
    """No declared service: nothing to check."""
    a, *_ = fleet(net, set(), set())
    assert a.run("PortCheck").status is Status.SKIPPED


def answer_of(d: Any) -> Any:
    """What a request fired with: the answer body, or the failure's text."""
    out: list[Any] = []
    d.addCallbacks(out.append, lambda f: out.append(f.value.text))
    return out[0]


def test_out_of_catalogue_request_refused(net: FakeNet) -> None:
    """Out-of-bounds requests are answered with a refusal; unknown names are not served."""
    a, b, *_ = fleet(net, set(), set())
    answer = answer_of(a.node.request(b.node.node_id, "dna.ping", {"target": T, "count": 50}))
    assert answer["refused"] == "bad_parameter" and "count" in answer["error"]
    assert "unknown handler" in answer_of(a.node.request(b.node.node_id, "dna.exec", {}))
    assert b.module.guard.counters["refused_bad_parameter"] == 1


def test_rate_limits_hold_under_burst(net: FakeNet) -> None:
    """A burst from several peers: per-peer buckets and the per-target cap both hold."""
    agents = fleet(net, set(), {T})
    victim = agents[0]
    outcomes: list[str] = []
    for sender in agents[1:]:
        for _ in range(30):
            d = sender.node.request(victim.node.node_id, "dna.ping", {"target": T, "count": 5})
            answer = answer_of(d)
            outcomes.append(answer.get("refused") or "ok")
    assert outcomes.count("ok") == 60 // 5, outcomes
    assert {"target_rate", "peer_rate"} <= set(outcomes)
    assert victim.module.guard.counters["refused_target_rate"] > 0
    assert victim.module.guard.counters["refused_peer_rate"] > 0
    assert len(victim.module.pinger.sent) <= 60


def test_relay_when_direct_path_is_cut(net: FakeNet) -> None:
    """A cannot reach B directly but C relays: warning naming the relay."""
    a, b, c, d = fleet(net, set(), set())
    assert a.run("Relay", peers=b.node.node_id.hex()).status is Status.OK
    net.cut.add(frozenset((a.node.node_id, b.node.node_id)))
    r = a.run("Relay", peers=b.node.node_id.hex())
    assert r.status is Status.WARNING and "answers through" in r.message
    for o in (c, d):
        net.cut.add(frozenset((o.node.node_id, b.node.node_id)))
    assert a.run("Relay", peers=b.node.node_id.hex()).status is Status.ERROR


def test_dns_proxy_through_peer(net: FakeNet) -> None:
    """A's resolver is dead; a peer resolves: warning with the peer's answer."""
    a = Agent(net, 1, "192.0.2.10", set(), [], dns=False)
    Agent(net, 2, "198.51.100.70", set(), [], dns=True)
    r = a.run("DNSProxy", name="www.example.test")
    assert r.status is Status.WARNING and "192.0.2.99" in r.message
    ok = Agent(net, 3, "198.51.100.71", set(), [], dns=True)
    assert ok.run("DNSProxy").status is Status.OK


def test_dns_proxy_answers_queries_from_peer_records() -> None:
    """The loopback proxy builds a DNS answer from a peer's records."""
    import dns.message

    async def ask(partner, kind, body, timeout):
        assert (kind, body) == ("dns", {"name": "www.example.test", "rdtype": "A"})
        return {"rcode": "NOERROR", "answers": ["192.0.2.99"]}

    proxy = DnsProxy(task.Clock(), lambda: [b"\x02" * 20], ask)
    query = dns.message.make_query("www.example.test", "A")
    reply = []
    defer.ensureDeferred(proxy._answer(query)).addCallback(reply.append)
    assert reply[0].answer[0].to_text().endswith("192.0.2.99")
    assert proxy.counters["answered"] == 1


def test_throughput_report() -> None:
    """The average leaves out the slow-start second and the partial last one."""
    report = ThroughputReport([500_000, 1_250_000, 1_250_000, 1_250_000, 10], 3_750_010, 4.0)
    assert report.mbit() == pytest.approx(10.0)
    assert report.per_second_mbit()[1] == 10.0


def test_no_overlay_skips(net: FakeNet) -> None:
    """Without an overlay the tests that need peers are skipped."""
    a = Agent(net, 1, "192.0.2.10", set(), [])
    a.module.node = lambda: None
    assert a.run("DistributedPing", target=T).status is Status.SKIPPED
