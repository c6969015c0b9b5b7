"""``dnactl predict`` against a real ``twistd -n dnaagent`` on the host (loopback only).

The agent's overlay listens on 127.0.0.1 only, the schedule is off, and the
only active measurement is a TCP connect to a loopback port this test owns.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .agents import AgentFleet, AgentProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[AgentFleet]:
    """Agents started by the test, ended by PID afterwards."""
    the_fleet = AgentFleet(tmp_path)
    try:
        yield the_fleet
    finally:
        the_fleet.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP port that accepts connections."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s
    finally:
        s.close()


def test_dnactl_predict_against_a_real_agent(fleet: AgentFleet, listener: socket.socket) -> None:
    """No basis: exit 1 with a clear sentence; after measurements: a value with its basis."""
    port = listener.getsockname()[1]
    (agent,) = fleet.start(
        1, extra=["--xbac-method", "tcp", "--xbac-tcp-port", str(port), "--xbac-horizon", "0"]
    )
    done = agent.ctl("predict", "rtt", "127.0.0.9")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no prediction possible for 127.0.0.9" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr

    done = agent.ctl("predict", "rtt", "no such host..invalid")
    assert done.returncode == 2 and "cannot resolve" in done.stderr

    rtts = [str(10.0 + (i % 4) * 0.5) for i in range(24)]
    done = agent.ctl("predict", "add", "127.0.0.9", *rtts)
    assert done.returncode == 0 and "24 of 24 measurements recorded" in done.stdout

    answer = agent.ctl_json("predict", "rtt", "127.0.0.9")
    assert answer["predicted"] is True
    assert 9.0 <= answer["rtt_ms"] <= 12.0
    assert answer["basis"] == {"source": "series", "series": 1, "measurements": 24}
    done = agent.ctl("predict", "rtt", "127.0.0.9")
    assert done.returncode == 0
    assert "basis: this host's own measurements of it: 1 series, 24 measurements" in done.stdout

    measured = agent.ctl_json("predict", "measure", "127.0.0.1")
    assert measured["method"] == "tcp" and measured["port"] == port
    assert measured["rtt_ms"] is not None and measured["recorded"] is True

    done = agent.ctl("predict", "report", "127.0.0.9", "--predicted", "10", "--measured", "12.5")
    assert done.returncode == 0 and "relative error 20.0 %" in done.stdout

    status = agent.ctl_json("predict", "status")
    assert status["predictions_answered"] == 2 and status["predictions_unanswered"] == 1
    assert status["measurements_by_source"] == {"api": 24, "active": 1, "passive": 0, "report": 1}
    assert status["passive"] == {"running": False}
    done = agent.ctl("predict", "status")
    assert done.returncode == 0 and "passive       off" in done.stdout


def _agent_alive(agent: AgentProcess) -> bool:
    return agent.alive()


def test_passive_rtt_of_a_loopback_connection_reaches_the_agent(
    fleet: AgentFleet, listener: socket.socket
) -> None:
    """With passive polling and loopback included, another program's connection feeds XBAC."""
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    try:
        for _ in range(3):
            client.sendall(b"x")
            server.recv(1)
            server.sendall(b"y")
            client.recv(1)
        (agent,) = fleet.start(
            1,
            extra=[
                "--xbac-passive",
                "true",
                "--xbac-passive-interval",
                "1",
                "--xbac-passive-include-loopback",
                "true",
            ],
        )
        import time

        deadline = time.monotonic() + 30
        status: dict = {}
        while time.monotonic() < deadline:
            status = agent.get("/api/v1/xbac")
            if status["measurements_by_source"]["passive"] > 0:
                break
            time.sleep(0.5)
        assert status["measurements_by_source"]["passive"] > 0, (status, fleet.logs([agent]))
        assert status["passive"]["running"] is True
        assert status["passive"]["counters"]["fed"] >= 1
        answer = agent.post("/api/v1/xbac/predict/rtt", {"host": "127.0.0.1"})
        # One passive sample is not a series yet, but it is recorded: no crash, a clear answer.
        assert answer["target"] == "127.0.0.1" and "predicted" in answer
        assert _agent_alive(agent)
    finally:
        client.close()
        server.close()
