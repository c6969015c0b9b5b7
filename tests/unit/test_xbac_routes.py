"""The prediction service's control API routes, over real HTTP parsing on an in-memory transport."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer, task

from dnaagent import config
from dnaagent.control.api import make_site
from dnaagent.measure.ping import PingResult
from dnaagent.service import AgentService
from tests.fakes.modules import ScriptedModule, paper_like_specs
from tests.unit.test_control_api import Http


class FakePinger:
    """Answers every echo request with a fixed RTT (or never)."""

    def __init__(self, rtt_ms: float | None) -> None:
        self.rtt_ms = rtt_ms
        self.asked: list[str] = []

    def ping(self, address: str, timeout: float, *, interface=None):
        """One scripted answer."""
        self.asked.append(address)
        if self.rtt_ms is None:
            return defer.succeed(PingResult(address, False, error="timeout"))
        return defer.succeed(PingResult(address, True, rtt_ms=self.rtt_ms))


@pytest.fixture
def agent(tmp_path):
    """An agent with the prediction service on its defaults, no sockets."""
    cfg = config.load(
        None,
        {
            "agent.state_dir": str(tmp_path / "state"),
            "control.enabled": "false",
            "overlay.enabled": "false",
        },
    )
    clock = task.Clock()
    clock.advance(1_700_000_000)
    svc = AgentService(cfg, clock, modules=[ScriptedModule(paper_like_specs(), {})])
    svc.prepare()
    svc.startService()
    yield svc
    svc.stopService()


@pytest.fixture
def http(agent):
    """An HTTP client of the agent's API."""
    return Http(make_site(agent.api))


def post(http, path: str, body) -> tuple[int, dict]:
    """POST a JSON body."""
    return http.request("POST", path, json.dumps(body).encode())


def test_defaults_send_nothing(agent) -> None:
    """Built in: the service answers, but neither polls nor probes on its own."""
    assert agent.xbac is not None
    st = agent.xbac.status()
    assert st["passive"] == {"running": False}
    assert st["active"]["interval"] == 0
    assert agent.xbac.passive is None and agent.xbac._active is None
    assert st["mode"] == "local"


def test_no_prediction_is_fast_and_says_why(http) -> None:
    """An unknown target: 200 with predicted false and a reason, counted unanswered."""
    status, body = post(http, "/api/v1/xbac/predict/rtt", {"host": "192.0.2.7"})
    assert status == 200
    assert body["predicted"] is False
    assert "no prediction possible" in body["reason"]
    status, st = http.request("GET", "/api/v1/xbac")
    assert st["predictions_unanswered"] == 1 and st["predictions_answered"] == 0


def test_measurements_then_prediction(http, agent) -> None:
    """A series added through the API gives a prediction with its basis."""
    series = [20.0 + (i % 3) for i in range(30)]
    status, body = post(http, "/api/v1/xbac/measurements", {"host": "192.0.2.7", "rtts_ms": series})
    assert (status, body["kept"]) == (200, 30)
    status, body = post(http, "/api/v1/xbac/predict/rtt", {"host": "192.0.2.7"})
    assert status == 200 and body["predicted"] is True
    assert 19.0 <= body["rtt_ms"] <= 23.0
    assert body["low_ms"] <= body["rtt_ms"] <= body["high_ms"]
    assert body["basis"] == {"source": "series", "series": 1, "measurements": 30}
    status, body = post(http, "/api/v1/xbac/predict", {"metric": "rtt", "target": "192.0.2.7"})
    assert status == 200 and body["metric"] == "rtt" and body["predicted"] is True
    status, recent = http.request("GET", "/api/v1/xbac/recent")
    assert [p["target"] for p in recent["predictions"]] == ["192.0.2.7", "192.0.2.7"]
    st = agent.xbac.status()
    assert st["measurements_by_source"]["api"] == 30
    assert st["predictions_answered"] == 2


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/v1/xbac/predict/rtt", {"host": "not-an-ip"}, "not an IP address"),
        ("/api/v1/xbac/predict/rtt", {"host": "224.0.0.1"}, "not a host address"),
        ("/api/v1/xbac/predict/rtt", {}, "'host' is missing"),
        ("/api/v1/xbac/predict/rtt", {"host": "192.0.2.1", "x": 1}, "unknown field"),
        ("/api/v1/xbac/predict/rtt", [1, 2], "JSON object"),
        ("/api/v1/xbac/measurements", {"host": "192.0.2.1", "rtts_ms": [-1]}, "between 0"),
        ("/api/v1/xbac/measurements", {"host": "192.0.2.1", "rtts_ms": ["1"]}, "number"),
        ("/api/v1/xbac/measurements", {"host": "192.0.2.1", "rtts_ms": []}, "give 1 to"),
        ("/api/v1/xbac/measurements", {"host": "192.0.2.1", "rtts_ms": [1e9]}, "between 0"),
        (
            "/api/v1/xbac/measurements",
            {"host": "192.0.2.1", "rtts_ms": [1], "interval_s": 0},
            "interval",
        ),
        ("/api/v1/xbac/predict", {"metric": "bandwidth", "target": "192.0.2.1"}, "cannot be"),
        ("/api/v1/xbac/predict", {"metric": "rtt"}, "'target'"),
        (
            "/api/v1/xbac/quality",
            {"host": "192.0.2.1", "predicted_ms": True, "measured_ms": 3},
            "number",
        ),
        ("/api/v1/xbac/connect", {"address": "192.0.2.1"}, "overlay is off"),
    ],
)
def test_bad_requests_are_400_with_a_sentence(http, path, body, words) -> None:
    """Malformed bodies and values: 400 naming the problem, nothing recorded."""
    status, answer = post(http, path, body)
    assert status == 400, answer
    assert words in answer["error"]
    _, st = http.request("GET", "/api/v1/xbac")
    assert st["measurements"] == 0


def test_quality_report_records_the_measurement(http, agent) -> None:
    """A quality report gives the relative error and feeds the measured value."""
    status, body = post(
        http, "/api/v1/xbac/quality", {"host": "192.0.2.9", "predicted_ms": 10, "measured_ms": 8}
    )
    assert status == 200
    assert body["relative_error"] == pytest.approx(0.25)
    st = agent.xbac.status()
    assert st["quality_reports"] == 1 and st["measurements_by_source"]["report"] == 1
    assert st["engine"]["quality_reports"] == 1 and st["engine"]["measurements"] == 1


def test_measure_uses_the_configured_method_and_records(http, agent) -> None:
    """POST /measure pings once (the configured ICMP method) and keeps the RTT."""
    agent.xbac._pinger = FakePinger(4.5)
    status, body = post(http, "/api/v1/xbac/measure", {"host": "192.0.2.3"})
    assert status == 200
    assert (body["method"], body["rtt_ms"], body["recorded"]) == ("icmp", 4.5, True)
    assert agent.xbac._pinger.asked == ["192.0.2.3"]
    agent.xbac._pinger = FakePinger(None)
    status, body = post(http, "/api/v1/xbac/measure", {"host": "192.0.2.3"})
    assert body["rtt_ms"] is None and body["recorded"] is False
    assert agent.xbac.status()["active"]["failures"] == 1


def test_agent_status_carries_xbac(http) -> None:
    """GET /api/v1/status has the prediction service's summary."""
    _, st = http.request("GET", "/api/v1/status")
    assert st["xbac"]["role"] == "leader" and st["xbac"]["members"] == 1


def test_service_off_is_503(tmp_path) -> None:
    """With [xbac] enabled = false the routes say so."""
    cfg = config.load(
        None,
        {
            "agent.state_dir": str(tmp_path / "s"),
            "control.enabled": "false",
            "overlay.enabled": "false",
            "xbac.enabled": "false",
        },
    )
    svc = AgentService(cfg, task.Clock(), modules=[ScriptedModule(paper_like_specs(), {})])
    svc.prepare()
    status, body = Http(make_site(svc.api)).request("GET", "/api/v1/xbac")
    assert status == 503 and "[xbac] enabled = false" in body["error"]


def test_own_address_prefers_the_overlay_address() -> None:
    """The host id is the overlay's listening address, else the routing source address."""
    from dnaagent.xbac.service import own_address

    assert own_address("127.0.0.12", "") == "127.0.0.12"
    assert own_address("", "::1") == "::1"
    found = own_address("0.0.0.0", "::")
    assert found is None or not found.startswith("0.")


def test_group_engine_waits_for_the_overlay_before_bootstrapping() -> None:
    """With join_wait, the engine starts once the overlay knows a peer, or when the wait ends."""
    from dnaagent.xbac.service import XbacService
    from dnaagent.xbac.settings import XbacSection

    class Overlay:
        routing_table: list = []

    class Engine:
        started = 0

        def start(self):
            Engine.started += 1

        def stop(self, graceful=True):
            return None

    clock = task.Clock()
    svc = XbacService(XbacSection(), clock, None, join_wait=30.0)
    svc.overlay, svc.mode, svc.engine = Overlay(), "group", Engine()
    svc.startService()
    clock.advance(5)
    assert Engine.started == 0
    Overlay.routing_table = ["peer"]
    clock.advance(0.5)
    assert Engine.started == 1
    clock.advance(60)
    assert Engine.started == 1
    svc.stopService()


def test_connect_joins_the_overlay_through_the_address() -> None:
    """connect(address) joins the overlay through that agent (the thesis' bootstrapping call)."""
    from dnaagent.xbac.service import XbacInputError, XbacService
    from dnaagent.xbac.settings import XbacSection

    joined: list = []

    class Overlay:
        routing_table: list = []

        def join(self, seeds):
            joined.append(seeds)
            return defer.succeed(3)

    svc = XbacService(XbacSection(), task.Clock(), None)
    svc.overlay = Overlay()
    out: list = []
    svc.connect("127.0.0.5:4100").addCallback(out.append)
    assert joined == [[("127.0.0.5", 4100)]]
    assert out[0]["peers"] == 3 and out[0]["address"] == "127.0.0.5:4100"
    with pytest.raises(XbacInputError, match="not an IP address"):
        svc.connect("agent.example")
