"""The control API over real HTTP parsing on an in-memory transport."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from dnaagent import config
from dnaagent.control.api import ApiError, JsonApi, make_site
from dnaagent.mediator.interface import Outcome, TestSpec
from dnaagent.service import AgentService
from tests.fakes.modules import ScriptedModule, paper_like_specs


class Http:
    """Sends raw HTTP requests to a Site and parses the answer."""

    def __init__(self, site) -> None:
        self.site = site

    def request(self, method: str, path: str, body: bytes | None = None, headers: str = ""):
        """Send one request; return (status, decoded JSON body) or None if unanswered."""
        proto = self.site.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
        proto.dataReceived(head.encode() + b"\r\n" + (body or b""))
        self.last = (proto, transport)
        return self.parse(transport)

    @staticmethod
    def parse(transport: StringTransport):
        """Parse what the server wrote, or None when nothing was written yet."""
        raw = transport.value()
        if not raw:
            return None
        head, _, rest = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        assert b"content-type: application/json" in head.lower()
        if b"transfer-encoding: chunked" in head.lower():
            size, _, data = rest.partition(b"\r\n")
            rest = data[: int(size, 16)]
        return status, json.loads(rest)


@pytest.fixture
def agent(tmp_path):
    """An AgentService with a scripted module, its API on no socket."""
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
    module = ScriptedModule(paper_like_specs(), {"Link": Outcome.error("no carrier")})
    svc = AgentService(cfg, clock, modules=[module])
    svc.prepare()
    svc.startService()
    yield svc
    svc.stopService()


@pytest.fixture
def http(agent):
    """An HTTP client of the agent's API."""
    return Http(make_site(agent.api))


def test_status(http, agent) -> None:
    """GET /api/v1/status describes the agent."""
    status, body = http.request("GET", "/api/v1/status")
    assert status == 200
    assert body["agent"] == "dnaagent"
    assert body["modules"] == ["fake"]
    assert body["schedule"]["enabled"] is False
    assert body["latest"] == {"ok": 0, "warning": 0, "error": 0, "skipped": 0}


def test_modules(http) -> None:
    """GET /api/v1/modules lists tests with dependencies and kinds."""
    status, body = http.request("GET", "/api/v1/modules")
    assert status == 200
    tests = {t["name"]: t for t in body["modules"][0]["tests"]}
    assert tests["Address"]["depends_on"] == ["NIC", "Link", "Loopback"]
    assert tests["Extra"]["default"] is False


def test_run_then_results_and_latest(http, agent) -> None:
    """POST /api/v1/run runs the module; results are then in the history and latest."""
    status, body = http.request("POST", "/api/v1/run", json.dumps({"module": "fake"}).encode())
    assert status == 200
    by_test = {r["test"]: r for r in body["results"]}
    assert by_test["Link"]["status"] == "error"
    assert by_test["Address"]["status"] == "skipped"
    assert set(by_test["NIC"]) >= {"test", "status", "message", "duration", "started", "details"}
    status, body = http.request("GET", "/api/v1/results?module=fake&limit=3")
    assert status == 200 and len(body["results"]) == 3
    status, body = http.request("GET", "/api/v1/results/latest")
    assert len(body["results"]) == 5
    status, body = http.request("GET", "/api/v1/status")
    assert body["failing"] == ["fake.Link"]
    assert body["results_stored"] == 5


def test_run_waits_for_slow_tests(tmp_path) -> None:
    """The run request is answered only when the tests finished."""
    gate: defer.Deferred = defer.Deferred()
    cfg = config.load(
        None,
        {"agent.state_dir": str(tmp_path), "control.enabled": "false", "overlay.enabled": "false"},
    )
    module = ScriptedModule([TestSpec("Slow", "slow")], {"Slow": lambda: gate})
    svc = AgentService(cfg, task.Clock(), modules=[module])
    svc.prepare()
    http = Http(make_site(svc.api))
    assert http.request("POST", "/api/v1/run", b'{"module": "fake"}') is None
    gate.callback(Outcome.ok("done"))
    status, body = Http.parse(http.last[1])
    assert status == 200 and body["results"][0]["message"] == "done"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"module": 3}', "module name"),
        (b'{"module": "fake", "tests": "NIC"}', "list"),
        (b'{"module": "fake", "params": {"nic": 5}}', "params"),
        (b'{"module": "fake", "extra": 1}', "unknown field"),
        (b'{"module": "nope"}', "unknown test module"),
        (b'{"module": "fake", "tests": ["Bogus"]}', "no test named Bogus"),
        (b'{"module": "fake", "params": {"nic": "wlan0"}}', "no interface"),
        (b'{"module": "fake", "params": {"speed": "1"}}', "unknown parameter"),
    ],
)
def test_bad_run_requests_get_400_with_reason(http, body, fragment) -> None:
    """Malformed or wrong run requests get a 400 and a sentence saying why."""
    status, answer = http.request("POST", "/api/v1/run", body)
    assert status == 400
    assert fragment in answer["error"]


def test_oversized_body_is_refused(http) -> None:
    """A body over the limit gets 413 and is not parsed."""
    status, answer = http.request("POST", "/api/v1/run", b" " * (70 * 1024))
    assert status == 413


def test_unknown_path_and_method(http) -> None:
    """Unknown paths get 404, a wrong method 405."""
    assert http.request("GET", "/api/v1/nope")[0] == 404
    assert http.request("GET", "/api/v1/run")[0] == 405
    status, body = http.request("GET", "/api/v1")
    assert "POST /api/v1/run" in body["routes"]


@pytest.mark.parametrize("query", ["since=yesterday", "limit=0", "limit=abc", "limit=1000000"])
def test_bad_query_arguments(http, query) -> None:
    """Bad query arguments get 400."""
    assert http.request("GET", f"/api/v1/results?{query}")[0] == 400


def test_handler_crash_is_a_500_without_traceback() -> None:
    """An unexpected exception becomes a 500 whose body holds no traceback."""
    api = JsonApi()

    def broken(args, body):
        raise RuntimeError("oops")

    api.route("GET", "/x", broken)
    status, body = Http(make_site(api)).request("GET", "/x")
    assert status == 500
    assert "Traceback" not in body["error"]


def test_api_error_and_duplicate_route() -> None:
    """ApiError picks the status; a route cannot be served twice."""
    api = JsonApi()

    def teapot(args, body):
        raise ApiError(418, "short and stout")

    api.route("GET", "/t", teapot)
    assert Http(make_site(api)).request("GET", "/t") == (418, {"error": "short and stout"})
    with pytest.raises(ValueError):
        api.route("GET", "/t", teapot)


@pytest.mark.parametrize(
    "headers, status",
    [
        ("Host: localhost:4080\r\n", 200),
        ("Host: 127.0.0.1:4080\r\n", 200),
        ("Host: [::1]:4080\r\n", 200),
        ("Host: evil.example:4080\r\n", 403),  # DNS rebinding
        ("Origin: http://127.0.0.1:4080\r\n", 200),  # the dashboard itself
        ("Origin: https://evil.example\r\n", 403),
        ("Origin: null\r\n", 403),
    ],
)
def test_only_local_hosts_and_origins(agent, headers, status) -> None:
    """Pages elsewhere cannot read or drive the API through a browser on this host."""
    site = make_site(agent.api)
    proto = site.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    if headers.startswith("Host"):
        raw = f"GET /api/v1/status HTTP/1.1\r\n{headers}\r\n"
    else:
        raw = f"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"
    proto.dataReceived(raw.encode())
    assert Http.parse(transport)[0] == status


def test_post_needs_json_content_type(http) -> None:
    """A cross-site form or text/plain POST (no preflight) is refused before any handler."""
    body = b'{"module": "fake"}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
        extra = f"Content-Type: {ctype}\r\n" if ctype else ""
        raw = (
            f"POST /api/v1/run HTTP/1.1\r\nHost: localhost\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        proto = http.site.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(raw)
        status, answer = Http.parse(transport)
        assert status == 415 and "application/json" in answer["error"]
    status, _ = http.request("POST", "/api/v1/run", body)
    assert status == 200
