"""Running a signed module for a peer, fetched from it when missing, and the control routes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dnaagent.control.api import JsonApi
from dnaagent.control.distributed_routes import install_distributed_routes
from dnaagent.trust import TrustStore, build_package
from dnaagent.trust.loader import ModuleStore
from tests.unit.test_distributed_module import Agent, FakeNet

DEMO = {
    "__init__.py": b"""
from zope.interface import implementer
from dnaagent.mediator.interface import ITestModule, ITestRun, Outcome, TestSpec

@implementer(ITestRun)
class Run:
    def run_test(self, name):
        return Outcome.ok("hello from a signed module")

@implementer(ITestModule)
class Demo:
    name = "remotedemo"
    description = "demo"
    tests = (TestSpec("Hello", "says hello"),)
    parameters = {}

    def open_run(self, params):
        return Run()

def make_module(reactor, agent):
    return Demo()
""",
}


class FakeAgent:
    """What the module and the routes need of an AgentService."""

    def __init__(self, agent: Agent) -> None:
        self.mediator = agent.mediator
        self.overlay = agent.node
        self.reactor = agent.clock


def with_store(agent: Agent, tmp_path, name: str, key: Ed25519PrivateKey) -> ModuleStore:
    """Give ``agent`` a module store trusting ``key`` and serve it on its node."""
    trust = TrustStore(str(tmp_path / name / "trusted_keys"))
    trust.trust(key.public_key())
    store = ModuleStore(str(tmp_path / name / "modules"), trust)
    agent.module.packages = store
    agent.module.agent = FakeAgent(agent)
    agent.module.attach(agent.node)
    return store


def answer_of(d: Any) -> Any:
    """What a Deferred fired with (it must have fired)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "not fired"
    return out[0]


@pytest.fixture()
def pair(tmp_path):
    """Agents a (has the signed module) and b (lacks it), both trusting the publisher."""
    net = FakeNet()
    key = Ed25519PrivateKey.generate()
    a = Agent(net, 1, "192.0.2.10", set(), [])
    b = Agent(net, 2, "198.51.100.10", set(), [])
    store_a = with_store(a, tmp_path, "a", key)
    with_store(b, tmp_path, "b", key)
    store_a.install(build_package("remotedemo", "1.0", DEMO, key))
    a.mediator.register(store_a.make("remotedemo", a.clock, None))
    return a, b, key, tmp_path


def test_peer_fetches_missing_module_and_runs_it(pair) -> None:
    """b lacks the module: it fetches it from a, verifies it, runs the test, answers."""
    a, b, _, _ = pair
    body = {"module": "remotedemo", "test": "Hello"}
    answer = answer_of(a.node.request(b.node.node_id, "dna.run", body))
    assert answer["results"][0]["message"] == "hello from a signed module", answer
    assert "remotedemo" in b.mediator.modules
    assert b.module.packages.trust.counters["verified"] >= 1


def test_unsigned_module_is_not_run(pair) -> None:
    """A requester offering an unsigned package gets a refusal; nothing is registered."""
    a, b, _, tmp_path = pair
    a.module.packages.trust.keys.clear()  # let a keep an unsigned package
    unsigned = build_package("unsigneddemo", "1.0", DEMO, None)
    with open(a.module.packages.path("unsigneddemo"), "wb") as f:
        f.write(unsigned)
    answer = answer_of(
        a.node.request(b.node.node_id, "dna.run", {"module": "unsigneddemo", "test": "Hello"})
    )
    assert answer["refused"] == "untrusted_module" and "not signed" in answer["error"]
    assert "unsigneddemo" not in b.mediator.modules
    assert b.module.packages.trust.counters["rejected_unsigned"] == 1


def test_built_in_modules_are_not_run_for_peers(pair) -> None:
    """The distributed module itself is never run on a peer's request."""
    a, b, _, _ = pair
    answer = answer_of(
        a.node.request(b.node.node_id, "dna.run", {"module": "distributed", "test": "Relay"})
    )
    assert answer["refused"] == "bad_parameter"


class Request:
    """The part of twisted.web's request that JsonApi reads."""

    def __init__(self, method: bytes, path: bytes, body: Any = None) -> None:
        import io

        self.method = method
        self.path = path
        self.args: dict = {}
        self.content = io.BytesIO(json.dumps(body).encode() if body is not None else b"")
        self.code = 0
        self.written = b""
        self.finished = False

    def setResponseCode(self, code: int) -> None:  # noqa: N802
        self.code = code

    def getHeader(self, name: bytes) -> str | None:  # noqa: N802
        return "application/json" if name == b"content-type" else None

    def setHeader(self, name: bytes, value: bytes) -> None:  # noqa: N802
        pass

    def write(self, data: bytes) -> None:
        self.written += data

    def finish(self) -> None:
        self.finished = True


def call(api: JsonApi, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request through the API; status and decoded answer."""
    req = Request(method.encode(), path.encode(), body)
    api.render(req)  # type: ignore[arg-type]
    assert req.finished
    return req.code, json.loads(req.written)


def test_routes_status_fetch_and_remote_run(pair) -> None:
    """Status, fetching a module and asking a peer to run one, through the control API."""
    a, b, _, _ = pair
    api = JsonApi()
    fake = FakeAgent(b)
    install_distributed_routes(api, fake)  # type: ignore[arg-type]
    code, status = call(api, "GET", "/api/v1/distributed")
    assert code == 200 and "guard" in status and status["trust"]["keys"]
    code, got = call(
        api,
        "POST",
        "/api/v1/distributed/fetch",
        {"peer": a.node.node_id.hex(), "name": "remotedemo"},
    )
    assert (code, got["installed"]) == (200, "remotedemo")
    code, got = call(
        api, "POST", "/api/v1/distributed/fetch", {"peer": a.node.node_id.hex(), "name": "nothing"}
    )
    assert code in (403, 502)
    api_a = JsonApi()
    install_distributed_routes(api_a, FakeAgent(a))  # type: ignore[arg-type]
    code, got = call(
        api_a,
        "POST",
        "/api/v1/distributed/run-remote",
        {"peer": b.node.node_id.hex(), "module": "remotedemo", "test": "Hello"},
    )
    assert code == 200 and got["results"][0]["status"] == "ok", got
    code, got = call(api_a, "POST", "/api/v1/distributed/run-remote", {"peer": "x"})
    assert code == 400


def test_run_request_bounds() -> None:
    """The run request's parameters are bounded like every catalogue kind."""
    from dnaagent.guard.catalogue import Refused, validate

    assert validate("run", {"module": "demo", "test": "Hello"}, "192.0.2.1").params["params"] == {}
    for body in (
        {"module": "Demo!", "test": "Hello"},
        {"module": "demo", "test": "x" * 100},
        {"module": "demo", "test": "Hello", "params": {str(i): "v" for i in range(9)}},
        {"module": "distributed", "test": "Relay"},
    ):
        with pytest.raises(Refused):
            validate("run", body, "192.0.2.1")


def test_partner_by_node_id_key_or_address() -> None:
    """A partner is named by node ID, by public key (its node ID) or by address."""
    from dnaagent.mediator.interface import InvalidParameters
    from dnaagent.modules.distributed.module import parse_partner
    from dnaagent.wire import node_id_for_key

    key = bytes(range(32))
    assert parse_partner("ab" * 20) == bytes.fromhex("ab" * 20)
    assert parse_partner(key.hex()) == node_id_for_key(key)
    assert parse_partner("192.0.2.7") == ("192.0.2.7", 4001)
    assert parse_partner("[2001:db8::7]:4100") == ("2001:db8::7", 4100)
    with pytest.raises(InvalidParameters):
        parse_partner("peer.example.test")


def test_chunk_requests_are_rate_limited(tmp_path) -> None:
    """A peer hammering dna.module.get is refused after the burst."""
    from twisted.internet import task

    from dnaagent.trust.loader import CHUNK_BURST, serve_packages
    from tests.unit.test_trust_packages import LoopNode

    key = Ed25519PrivateKey.generate()
    trust = TrustStore(str(tmp_path / "keys"))
    trust.trust(key.public_key())
    store = ModuleStore(str(tmp_path / "modules"), trust)
    store.install(build_package("remotedemo", "1.0", DEMO, key))
    node, clock = LoopNode(), task.Clock()
    serve_packages(node, store, clock)

    class Sender:
        node_id = b"\x05" * 20

    get = node.handlers["dna.module.get"]
    for _ in range(CHUNK_BURST):
        get({"name": "remotedemo", "offset": 0}, Sender())
    with pytest.raises(Exception, match="slow down"):
        get({"name": "remotedemo", "offset": 0}, Sender())
    clock.advance(1)
    assert get({"name": "remotedemo", "offset": 0}, Sender())["total"] > 0
