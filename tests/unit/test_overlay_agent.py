"""The overlay in the agent: seed syntax, the [overlay] section, control routes."""

from __future__ import annotations

import hashlib
import json

import pytest
from twisted.internet import defer, task

from dnaagent import config
from dnaagent.control.api import make_site
from dnaagent.control.overlay_routes import dht_key
from dnaagent.errors import ConfigError
from dnaagent.overlay.section import parse_address
from dnaagent.service import AgentService
from tests.unit.test_control_api import Http


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.7", ("192.0.2.7", 4001)),
        ("192.0.2.7:4100", ("192.0.2.7", 4100)),
        ("[2001:db8::7]:4100", ("2001:db8::7", 4100)),
        ("2001:db8::7", ("2001:db8::7", 4001)),
        ("[2001:db8::7]", ("2001:db8::7", 4001)),
    ],
)
def test_parse_address(text, address) -> None:
    """Seeds are IP literals with an optional port; IPv6 with a port takes brackets."""
    assert parse_address(text) == address


@pytest.mark.parametrize(
    "text", ["seed.example.test:4001", "192.0.2.7:0", "192.0.2.7:x", "[2001:db8::7", "[::1]x"]
)
def test_parse_address_refuses(text) -> None:
    """Names, bad ports and broken brackets are refused with a reason."""
    with pytest.raises(ValueError):
        parse_address(text)


def test_overlay_section_defaults_and_checks() -> None:
    """The overlay listens on 4001 and sends nothing by default; bad seeds name the key."""
    cfg = config.load(None)
    assert (cfg.overlay.port, cfg.overlay.seeds, cfg.overlay.discovery) == (4001, [], False)
    with pytest.raises(ConfigError) as info:
        config.load(None, {"overlay.seeds": "192.0.2.1,seed.example.test"})
    assert info.value.key == "overlay.seeds" and "seed.example.test" in str(info.value)
    with pytest.raises(ConfigError, match="core, stub"):
        config.load(None, {"overlay.role": "leader"})


class FakeContact:
    """What the routes need of a contact."""

    def __init__(self, node_id: bytes) -> None:
        self.node_id = node_id

    def as_dict(self, now: float) -> dict:
        return {"node_id": self.node_id.hex(), "host": "192.0.2.9", "port": 4001}


class FakeNode:
    """An overlay node with a dict for a DHT and one known peer."""

    node_id = b"\x01" * 20
    counters = {"messages_in": 3}
    routing_table = [1]

    def __init__(self) -> None:
        self.values: dict[bytes, list[bytes]] = {}
        self.alive = {b"\x02" * 20}

    def peers(self):
        return [{"node_id": "02" * 20, "host": "192.0.2.9", "port": 4001, "rtt_ms": 1.0}]

    def find(self, target):
        return defer.succeed(FakeContact(target) if target in self.alive else None)

    def lookup(self, target):
        return defer.succeed([FakeContact(b"\x02" * 20)])

    def get(self, key):
        return defer.succeed(self.values.get(key, []))

    def put(self, key, value, ttl=None):
        self.values.setdefault(key, []).append(value)
        return defer.succeed(3)


@pytest.fixture
def http(tmp_path):
    """The agent's API with a fake overlay node."""
    cfg = config.load(
        None,
        {"agent.state_dir": str(tmp_path), "control.enabled": "false", "overlay.enabled": "false"},
    )
    agent = AgentService(cfg, task.Clock(), modules=[])
    agent.prepare()
    agent.overlay = FakeNode()  # type: ignore[assignment]

    class Status:
        def status(self):
            return {"enabled": True, "node_id": "01" * 20}

    agent.overlay_service = Status()  # type: ignore[assignment]
    return Http(make_site(agent.api))


def test_overlay_off_is_503(tmp_path) -> None:
    """With the overlay off its routes say so."""
    cfg = config.load(
        None,
        {"agent.state_dir": str(tmp_path), "control.enabled": "false", "overlay.enabled": "false"},
    )
    agent = AgentService(cfg, task.Clock(), modules=[])
    agent.prepare()
    status, body = Http(make_site(agent.api)).request("GET", "/api/v1/peers")
    assert status == 503 and "enabled = false" in body["error"]


def test_peers_and_overview(http) -> None:
    """Peers list the routing table; the overview adds counters."""
    assert http.request("GET", "/api/v1/peers")[1]["peers"][0]["host"] == "192.0.2.9"
    assert http.request("GET", "/api/v1/overlay")[1]["counters"] == {"messages_in": 3}


def test_lookup(http) -> None:
    """A lookup says whether the node answered and lists the closest."""
    status, body = http.request(
        "POST", "/api/v1/lookup", json.dumps({"node_id": "02" * 20}).encode()
    )
    assert status == 200 and body["found"]["node_id"] == "02" * 20
    status, body = http.request(
        "POST", "/api/v1/lookup", json.dumps({"node_id": "03" * 20}).encode()
    )
    assert body["found"] is None and body["closest"]
    status, body = http.request("POST", "/api/v1/lookup", b'{"node_id": "abc"}')
    assert status == 400 and "40 hex digits" in body["error"]


def test_dht_put_then_get_by_name_and_hex(http) -> None:
    """A value put by name is read back by name and by its SHA-1 key."""
    status, body = http.request(
        "POST", "/api/v1/dht", b'{"key": "site/lyon", "value": "up", "ttl": 60}'
    )
    assert status == 200 and body["stored_on"] == 3
    assert body["key_hex"] == hashlib.sha1(b"site/lyon").hexdigest() == dht_key("site/lyon").hex()
    values = http.request("GET", "/api/v1/dht?key=site/lyon")[1]["values"]
    assert values == [{"text": "up", "hex": "7570", "size": 2}]
    hexed = http.request("GET", f"/api/v1/dht?key_hex={body['key_hex']}")[1]["values"]
    assert hexed == values


@pytest.mark.parametrize(
    "body",
    [
        b'{"value": "x"}',
        b'{"key": "a", "key_hex": "00", "value": "x"}',
        b'{"key": "a"}',
        b'{"key": "a", "value": ""}',
        b'{"key": "a", "value_hex": "zz"}',
        b'{"key": "a", "value": "x", "ttl": 0}',
        b'{"key": "a", "value": "x", "ttl": true}',
    ],
)
def test_dht_put_refuses_bad_bodies(http, body) -> None:
    """Missing or double keys and values, empty values and bad TTLs get 400."""
    assert http.request("POST", "/api/v1/dht", body)[0] == 400


def test_discovery_targets_follow_the_interfaces(monkeypatch, tmp_path) -> None:
    """An interface that comes up after the start gets an announcement at once; the
    targets follow address changes; nothing is announced once enough peers are known."""
    from types import SimpleNamespace

    from dnaagent.overlay import udp
    from dnaagent.overlay.service import OverlayService

    cfg = config.load(None, {"overlay.discovery": "true"})
    links: list[tuple[str, int]] = []
    monkeypatch.setattr(udp, "discovery_addresses", lambda port, ipv4, ipv6: list(links))
    svc = OverlayService(cfg.overlay, task.Clock(), str(tmp_path))
    announced: list[list[tuple[str, int]]] = []
    table: list[object] = []
    svc.node = SimpleNamespace(  # type: ignore[assignment]
        discovery_addresses=[],
        routing_table=table,
        config=SimpleNamespace(k=20),
        announce=lambda addrs: announced.append(list(addrs)),
    )
    svc._refresh_discovery()
    assert announced == []  # still no interface
    links.append(("192.0.2.255", 4001))
    svc._refresh_discovery()
    assert announced == [[("192.0.2.255", 4001)]]
    assert svc.node.discovery_addresses == [("192.0.2.255", 4001)]
    svc._refresh_discovery()
    assert len(announced) == 1  # unchanged: no new announcement
    links[:] = [("198.51.100.255", 4001)]
    table.extend(object() for _ in range(20))  # enough peers: targets kept, no announcement
    svc._refresh_discovery()
    assert len(announced) == 1 and svc.node.discovery_addresses == [("198.51.100.255", 4001)]
