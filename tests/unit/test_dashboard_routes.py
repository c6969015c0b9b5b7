"""The control listener's dashboard files, /metrics and the dashboard's JSON routes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import task
from twisted.internet.testing import StringTransport

from dnaagent import config
from dnaagent.control.api import make_site
from dnaagent.control.dashboard_routes import control_root, load_web_files
from dnaagent.mediator.interface import Outcome
from dnaagent.service import AgentService
from tests.fakes.modules import ScriptedModule, paper_like_specs
from tests.unit.test_notify_service import FakeSender

WEB = Path(__file__).resolve().parents[2] / "dnaagent" / "control" / "web"


class Raw:
    """Sends raw HTTP requests to a Site; returns status, headers and body."""

    def __init__(self, site) -> None:
        self.site = site

    def request(self, method: str, path: str, headers: str = "", body: bytes = b""):
        """One request: (status, {lower-case header: value}, body bytes)."""
        proto = self.site.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        proto.dataReceived(head.encode() + b"\r\n" + body)
        raw = transport.value()
        top, _, rest = raw.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if hdrs.get("transfer-encoding") == "chunked":
            out, data = b"", rest
            while True:
                size, _, data = data.partition(b"\r\n")
                n = int(size, 16)
                if n == 0:
                    break
                out, data = out + data[:n], data[n + 2 :]
            rest = out
        return status, hdrs, rest


@pytest.fixture
def agent(tmp_path):
    """An AgentService with a scripted module and a trap sink (fake sender), no sockets."""
    cfg = config.load(
        None,
        {
            "agent.state_dir": str(tmp_path / "state"),
            "control.enabled": "false",
            "overlay.enabled": "false",
            "snmp.enabled": "false",
            "notifications.trap_sinks": "v2c:public@192.0.2.5:162",
        },
    )
    clock = task.Clock()
    clock.advance(1_700_000_000)
    module = ScriptedModule(paper_like_specs(), {"Link": Outcome.error("no carrier")})
    svc = AgentService(cfg, clock, modules=[module])
    svc.prepare()
    svc.notifications._sender = FakeSender()
    svc.startService()
    yield svc
    svc.stopService()


@pytest.fixture
def http(agent):
    """An HTTP client of the whole control listener (dashboard, metrics, API)."""
    return Raw(make_site(control_root(agent.api, agent)))


def test_index_is_served_with_security_headers(http) -> None:
    """GET / is the dashboard page with CSP, nosniff and no framing."""
    status, headers, body = http.request("GET", "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    csp = headers["content-security-policy"]
    assert csp.startswith("default-src 'self'") and "'unsafe-inline'" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert b'src="/ui/dashboard.js"' in body and b"<script>" not in body
    assert http.request("GET", "/ui/")[2] == body
    assert http.request("GET", "/ui")[2] == body
    status, headers, head_body = http.request("HEAD", "/")
    assert status == 200 and head_body == b"" and headers["content-length"] == str(len(body))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("charts.js", "text/javascript; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files(http, name, kind) -> None:
    """Each shipped file is served with its type and the security headers."""
    status, headers, body = http.request("GET", f"/ui/{name}")
    assert status == 200 and headers["content-type"] == kind
    assert headers["x-content-type-options"] == "nosniff"
    assert body == (WEB / name).read_bytes()


@pytest.mark.parametrize(
    "path", ["/ui/nothing.js", "/ui/../service.py", "/ui/%2e%2e/api.py", "/ui/web/index.html"]
)
def test_unknown_files_are_404(http, path) -> None:
    """Only the shipped files by name are reachable; no path leads elsewhere."""
    status, headers, body = http.request("GET", path)
    assert status == 404 and body == b"not found\n"
    assert headers["x-content-type-options"] == "nosniff"


def test_dashboard_files_only_answer_get(http) -> None:
    """POST to the page is refused; the JSON API keeps its own answers."""
    status, headers, body = http.request("POST", "/", body=b"x")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert http.request("DELETE", "/metrics")[0] == 405
    status, headers, body = http.request("GET", "/api/v1/status")
    assert status == 200 and headers["content-type"] == "application/json"
    status, headers, body = http.request("GET", "/nothing/here")
    assert status == 404 and json.loads(body)["error"].startswith("no such endpoint")


def test_web_files_are_all_shipped() -> None:
    """Every file of web/ is loaded (and so matched by the package-data globs)."""
    files = load_web_files()
    assert sorted(files) == sorted(p.name for p in WEB.iterdir() if p.is_file())
    pyproject = (WEB.parents[2] / "pyproject.toml").read_text()
    for suffix in {p.suffix for p in WEB.iterdir()}:
        assert f'"web/*{suffix}"' in pyproject


def test_dashboard_scripts_never_insert_html() -> None:
    """The scripts build the DOM with textContent; no innerHTML, eval or inline handlers."""
    for name in ("dashboard.js", "charts.js"):
        text = (WEB / name).read_text()
        for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "document.write"):
            assert bad not in text, (name, bad)
    assert "http://" not in (WEB / "index.html").read_text()
    assert "https://" not in (WEB / "dashboard.js").read_text()


def test_metrics_formats(http) -> None:
    """/metrics speaks Prometheus text by default and OpenMetrics when asked."""
    status, headers, body = http.request("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert "dnaagent_uptime_seconds" in names
    status, headers, body = http.request(
        "GET", "/metrics", headers="Accept: application/openmetrics-text; version=1.0.0\r\n"
    )
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert http.request("GET", "/metrics/other")[0] == 404


def test_dashboard_route_lists_routes_and_components(http) -> None:
    """GET /api/v1/dashboard tells which routes and optional components are there."""
    status, headers, body = http.request("GET", "/api/v1/dashboard")
    data = json.loads(body)
    assert status == 200
    assert "GET /api/v1/notifications" in data["routes"]
    assert data["components"]["overlay"] is False
    assert data["components"]["notifications"] is True
    assert data["components"]["scheduler"] is False


def test_notifications_route(http, agent) -> None:
    """A failing test queues a trap; the route lists the target and the notification."""
    done: list = []
    agent.mediator.run("fake", None, {}, origin="control").addBoth(done.append)
    for _ in range(20):
        agent.reactor.advance(0.1)
    assert done and isinstance(done[0], list)
    status, headers, body = http.request("GET", "/api/v1/notifications?limit=10")
    data = json.loads(body)
    assert status == 200
    [target] = data["targets"]
    assert target["mode"] == "trap" and target["queued"] >= 1
    failed = [n for n in data["recent"] if n["kind"] == "test-failed"]
    assert failed and failed[0]["test"] == "fake.Link"
    assert failed[0]["target"] == target["key"]
    assert data["events_seen"] >= 1
    status, headers, body = http.request("GET", "/api/v1/notifications?limit=0")
    assert status == 400 and "limit" in json.loads(body)["error"]
