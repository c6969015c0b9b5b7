"""Trace campaign routes over real HTTP parsing, and dnactl trace campaign against them."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import pytest
from twisted.internet import task

from dnaagent import config
from dnaagent.control import dnactl
from dnaagent.control.api import make_site
from dnaagent.control.trace_cli import TraceUsageError, cmd_trace, read_targets
from dnaagent.dts.dhtstore import MemoryDht
from dnaagent.dts.service import CampaignService
from dnaagent.errors import ControlError
from dnaagent.service import AgentService
from tests.fakes.modules import ScriptedModule, paper_like_specs
from tests.unit.test_control_api import Http
from tests.unit.test_dts_service import PATHS, ReplayMonitor

TARGETS = list(PATHS)


@pytest.fixture
def agent(tmp_path):
    """An agent without sockets whose campaign service uses an in-memory DHT and replay."""
    cfg = config.load(
        None,
        {
            "agent.state_dir": str(tmp_path / "state"),
            "control.enabled": "false",
            "overlay.enabled": "false",
            "dts.poll_interval": "1",
            "dts.probe_rate": "1000",
            "dts.probe_burst": "1000",
        },
    )
    clock = task.Clock()
    clock.advance(1_700_000_000)
    svc = AgentService(cfg, clock, modules=[ScriptedModule(paper_like_specs(), {})])
    svc.prepare()
    assert svc.dts is None  # no overlay: no campaigns
    from dnaagent.dts.simprober import ReplayProber

    svc.dts = CampaignService(
        cfg.dts,
        clock,
        MemoryDht(clock),
        name="mon-a",
        deny=lambda t: "in the deny list" if t == "203.0.113.99" else None,
        monitor_factory=lambda name, probe: ReplayMonitor(name, probe, clock),
        probe=ReplayProber(PATHS),
    )
    svc.startService()
    svc.clock = clock
    yield svc
    svc.stopService()


@pytest.fixture
def http(agent):
    return Http(make_site(agent.api))


def post(http: Http, path: str, body: Any) -> tuple[int, Any]:
    return http.request("POST", path, json.dumps(body).encode())


def test_create_join_status_export(agent, http) -> None:
    status, body = post(
        http,
        "/api/v1/trace/campaigns",
        {"campaign": "c1", "targets": TARGETS, "chunk_size": 3, "lease_seconds": 30},
    )
    assert status == 200 and body["chunks"] == 3 and body["targets"] == 8
    status, body = post(http, "/api/v1/trace/campaigns", {"campaign": "c1", "targets": TARGETS})
    assert status == 409 and "already exists" in body["error"]
    status, body = http.request("GET", "/api/v1/trace/campaign?campaign=c1")
    assert status == 200 and body["chunks_pending"] == 3 and not body["complete"]
    status, body = post(http, "/api/v1/trace/campaign/join", {"campaign": "c1"})
    assert status == 200 and body["monitor"] == "mon-a"
    for _ in range(600):
        agent.clock.advance(0.1)
    status, body = http.request("GET", "/api/v1/trace/campaign?campaign=c1")
    assert body["complete"] and body["chunks_done"] == 3 and body["local"]["records"] == 8
    status, body = http.request("GET", "/api/v1/trace/campaign/export?campaign=c1&format=atlas")
    assert status == 200 and body["records"] == 8 and len(body["data"]) == 8
    status, body = http.request("GET", "/api/v1/trace/campaign/export?campaign=c1&format=csv")
    assert status == 200 and body["data"].startswith("campaign,chunk,monitor")
    status, body = http.request("GET", "/api/v1/trace/campaigns")
    assert body["monitor"] == "mon-a" and body["campaigns"][0]["state"] == "finished"


def test_bad_requests_are_clear(http) -> None:
    cases = [
        ({"campaign": "c 1", "targets": TARGETS}, "invalid campaign id"),
        ({"campaign": "c1", "targets": ["example.org"]}, "not an IP address"),
        ({"campaign": "c1", "targets": []}, "at least one target"),
        ({"campaign": "c1", "targets": TARGETS, "policy": "some"}, "policy"),
        ({"campaign": "c1", "targets": TARGETS, "chunk_size": 0}, "chunk_size"),
        ({"campaign": "c1", "targets": TARGETS, "what": 1}, "body must be"),
        ({"campaign": "c1", "targets": ["203.0.113.99"]}, "may not be probed"),
    ]
    for body, words in cases:
        status, answer = post(http, "/api/v1/trace/campaigns", body)
        assert status == 400 and words in answer["error"], (body, answer)
    status, answer = http.request("GET", "/api/v1/trace/campaign?campaign=nope")
    assert status == 404 and "not found" in answer["error"]
    status, answer = http.request("GET", "/api/v1/trace/campaign/export?campaign=c1&format=x")
    assert status == 400
    status, answer = post(http, "/api/v1/trace/campaign/leave", {"campaign": "c1"})
    assert status == 404


def test_targets_route(agent, http) -> None:
    post(http, "/api/v1/trace/campaigns", {"campaign": "c1", "targets": TARGETS[:2]})
    status, body = post(
        http,
        "/api/v1/trace/campaign/targets",
        {"campaign": "c1", "add": ["203.0.113.5", "203.0.113.99"], "deny": ["203.0.113.1"]},
    )
    assert status == 200
    assert body["refused"] == {"203.0.113.99": "in the deny list"}
    assert body["denied"] == ["203.0.113.1"]
    status, body = post(http, "/api/v1/trace/campaign/targets", {"campaign": "c1"})
    assert status == 400


class ApiClient:
    """dnactl's Client calling the agent's API in process."""

    def __init__(self, http: Http) -> None:
        self.http = http

    def get(self, path: str, **query: Any) -> Any:
        from urllib.parse import urlencode

        status, body = self.http.request("GET", path + "?" + urlencode(query))
        if status != 200:
            raise ControlError(f"the agent refused: {body['error']}")
        return body

    def post(self, path: str, body: Any) -> Any:
        status, answer = post(self.http, path, body)
        if status != 200:
            raise ControlError(f"the agent refused: {answer['error']}")
        return answer


def parse(*argv: str) -> argparse.Namespace:
    return dnactl.build_parser().parse_args(["trace", "campaign", *argv])


def test_dnactl_trace_campaign(agent, http, tmp_path) -> None:
    client = ApiClient(http)
    targets = tmp_path / "targets.txt"
    targets.write_text("# lab\n" + "\n".join(TARGETS[2:]) + "\n")
    out = io.StringIO()
    args = parse("create", "c2", TARGETS[0], TARGETS[1], "-f", str(targets), "--chunk-size", "4")
    assert cmd_trace(client, args, out) == 0
    assert "8 targets in 2 chunks" in out.getvalue()
    out = io.StringIO()
    assert cmd_trace(client, parse("status", "c2"), out) == 1  # not complete yet
    assert "0 done, 0 claimed, 2 pending of 2" in out.getvalue()
    assert cmd_trace(client, parse("join", "c2"), io.StringIO()) == 0
    for _ in range(600):
        agent.clock.advance(0.1)
    out = io.StringIO()
    assert cmd_trace(client, parse("status", "c2", "--chunks"), out) == 0
    assert "complete" in out.getvalue() and "chunk    1" in out.getvalue()
    dest = tmp_path / "out.json"
    assert cmd_trace(client, parse("export", "c2", "-o", str(dest)), io.StringIO()) == 0
    results = json.loads(dest.read_text())
    assert len(results) == 8
    from ripe.atlas.sagan import TracerouteResult

    parsed = [TracerouteResult(r) for r in results]
    assert all(not p.is_error for p in parsed)
    assert {p.destination_address for p in parsed} == set(TARGETS)
    out = io.StringIO()
    assert cmd_trace(client, parse("deny", "c2", "203.0.113.2"), out) == 0
    assert "203.0.113.2" in out.getvalue()
    with pytest.raises(ControlError):
        cmd_trace(client, parse("add", "c3", "203.0.113.2"), io.StringIO())
    with pytest.raises(TraceUsageError, match="not an IP"):
        read_targets(parse("add", "c2", "nope"))
    with pytest.raises(TraceUsageError, match="no targets"):
        read_targets(parse("add", "c2"))


def test_dnactl_exit_codes(capsys) -> None:
    # Unreachable agent: 3; bad address: 2.
    code = dnactl.main(["--api", "http://127.0.0.1:9", "trace", "campaign", "status", "c1"])
    assert code == 3
    code = dnactl.main(
        ["--api", "http://127.0.0.1:9", "trace", "campaign", "create", "c1", "not-an-ip"]
    )
    assert code == 2
