"""The real ``twistd dnaagent`` answers SNMP and serves its overlay on loopback.

The agent runs with its built-in defaults (no schedule, so the local tests
never run here) except for ports, on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("snmpget") is None, reason="Net-SNMP's snmpget is not installed"
    ),
]


def free_port(kind: int) -> int:
    """A free loopback port of the given socket type."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent(tmp_path: Path, *options: str) -> subprocess.Popen[bytes]:
    """Start ``twistd -n dnaagent`` on loopback ports with ``options`` and wait for it.

    State goes to ``tmp_path/state``, output to ``tmp_path/agent.log``; the
    overlay gets a free loopback port unless ``options`` name one.
    """
    state, log = tmp_path / "state", tmp_path / "agent.log"
    overlay = [] if "--overlay-port" in options else [
        "--overlay-port", str(free_port(socket.SOCK_DGRAM)),
        "--overlay-listen-ipv4", "127.0.0.1", "--overlay-listen-ipv6", "",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "twistd"), "-n", "--pidfile=", "dnaagent",
                "--state-dir", str(state), "--control-port", "0", *overlay, *options,
            ],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (state / "control.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            pytest.fail(f"agent did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return proc


def stop(*procs: subprocess.Popen[bytes]) -> None:
    """End processes this module started, by PID: SIGTERM, then SIGKILL."""
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def processes():
    """Processes a test starts; all are ended by PID when it ends, pass or fail."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    stop(*reversed(started))


@pytest.fixture
def agent(tmp_path):
    """A running ``twistd -n dnaagent`` with SNMP and the overlay on loopback ports."""
    snmp_port = free_port(socket.SOCK_DGRAM)
    proc = start_agent(tmp_path, "--snmp-port", str(snmp_port))
    try:
        yield snmp_port, tmp_path / "state", tmp_path / "agent.log"
    finally:
        stop(proc)


def test_twistd_agent_answers_snmpget(agent) -> None:
    """snmpget reads sysDescr and the agent's version from the daemon started by twistd."""
    port, state, log = agent
    done = subprocess.run(
        [
            "snmpget", "-v2c", "-c", "public", "-r", "2", "-t", "2",
            "-M", str(ROOT / "mibs"), "-m", "DNA-AGENT-MIB:SNMPv2-MIB",
            f"127.0.0.1:{port}", "SNMPv2-MIB::sysDescr.0", "DNA-AGENT-MIB::dnaVersion.0",
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + log.read_text()
    assert "Distributed Network Agent" in done.stdout
    from dnaagent import __version__

    assert f"dnaVersion.0 = STRING: {__version__}" in done.stdout


def test_twistd_agent_reports_its_overlay_node(agent) -> None:
    """dnactl status shows the overlay node whose ID SNMP serves."""
    port, state, log = agent
    status = subprocess.run(
        [str(BIN / "dnactl"), "--state-dir", str(state), "status", "--json"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    node_id = json.loads(status.stdout)["overlay"]["node_id"]
    done = subprocess.run(
        [
            "snmpget", "-v2c", "-c", "public", "-Oqv", "-M", str(ROOT / "mibs"),
            "-m", "DNA-AGENT-MIB", f"127.0.0.1:{port}", "DNA-AGENT-MIB::dnaNodeId.0",
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().strip('"') == node_id, log.read_text()


@pytest.mark.skipif(shutil.which("snmptrapd") is None, reason="snmptrapd is not installed")
def test_twistd_agent_sends_informs_from_trigger_events(tmp_path, processes) -> None:
    """A threshold event of a real run becomes an inform that snmptrapd logs by name.

    Only PingLocalHost runs (it pings 127.0.0.1 and ::1); its threshold of
    rtt_ms_max > 0 always fires, so the whole chain Mediator -> triggers ->
    persisted queue -> pysnmp -> snmptrapd is exercised on loopback.
    """
    trap_port = free_port(socket.SOCK_DGRAM)
    (tmp_path / "trapd.conf").write_text("authCommunity log public\n")
    traps = tmp_path / "traps.log"
    trapd = subprocess.Popen(
        [
            "snmptrapd", "-f", "-Lf", str(traps), "-C", "-c", str(tmp_path / "trapd.conf"),
            "-M", str(ROOT / "mibs"), "-m", "ALL", f"127.0.0.1:{trap_port}",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    processes.append(trapd)
    state, log = tmp_path / "state", tmp_path / "agent.log"
    agent = start_agent(
        tmp_path,
        "--snmp-port", str(free_port(socket.SOCK_DGRAM)),
        "--notifications-inform-targets", f"v2c:public@127.0.0.1:{trap_port}",
        "--triggers-thresholds", "local.PingLocalHost.rtt_ms_max > 0",
    )  # fmt: skip
    try:
        run = subprocess.run(
            [str(BIN / "dnactl"), "--state-dir", str(state), "run", "local",
             "--tests", "PingLocalHost", "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        deadline = time.monotonic() + 30
        while "dnaThresholdCrossed" not in (traps.read_text() if traps.exists() else ""):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = traps.read_text()
        assert "DNA-AGENT-MIB::dnaNotifyTest.0 = STRING: local.PingLocalHost" in text
        assert "dnaNotifyThresholdDetail.0 = STRING: rtt_ms_max" in text
        status = subprocess.run(
            [str(BIN / "dnactl"), "--state-dir", str(state), "status", "--json"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        target = json.loads(status.stdout)["notifications"]["targets"][0]
        assert target["acked"] == 1 and target["pending"] == 0
    finally:
        stop(agent)


@pytest.mark.skipif(shutil.which("snmpd") is None, reason="snmpd is not installed")
def test_twistd_agent_answers_through_snmpd_via_agentx(tmp_path, processes) -> None:
    """With the embedded agent off, snmpd serves the agent's MIB through AgentX."""
    snmpd_port = free_port(socket.SOCK_DGRAM)
    sock = tmp_path / "agentx.sock"
    conf = tmp_path / "snmpd.conf"
    conf.write_text(
        f"master agentx\nagentXSocket unix:{sock}\n"
        f"agentaddress udp:127.0.0.1:{snmpd_port}\nrocommunity public 127.0.0.1\n"
    )
    snmpd = subprocess.Popen(
        ["snmpd", "-f", "-Lo", "-C", "-c", str(conf), "-p", str(tmp_path / "snmpd.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    processes.append(snmpd)
    log = tmp_path / "agent.log"
    agent = start_agent(
        tmp_path,
        "--snmp-enabled", "false", "--agentx-enabled", "true", "--agentx-master", f"unix:{sock}",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 45
        while True:
            done = subprocess.run(
                [
                    "snmpget", "-v2c", "-c", "public", "-r", "1", "-t", "1",
                    "-M", str(ROOT / "mibs"), "-m", "DNA-AGENT-MIB",
                    f"127.0.0.1:{snmpd_port}", "DNA-AGENT-MIB::dnaVersion.0",
                ],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if "STRING" in done.stdout:
                break
            assert agent.poll() is None and snmpd.poll() is None, log.read_text()
            assert time.monotonic() < deadline, done.stdout + done.stderr + log.read_text()
            time.sleep(0.5)
        from dnaagent import __version__

        assert f"dnaVersion.0 = STRING: {__version__}" in done.stdout
        assert "AgentX session" in log.read_text()
    finally:
        stop(agent)


def test_overlay_port_zero_reports_the_port_bound_and_announces_at_start(lab) -> None:
    """With --overlay-port 0 status shows the real port; discovery announces at once.

    The agent runs in a namespace of its own: discovery broadcasts must never
    reach a real network.
    """
    ns = lab.namespace("solo")
    lab.veth(ns, "dna0", lab.namespace("peer"), "dnr0")
    ns.ip("addr", "add", "192.0.2.10/24", "dev", "dna0")
    ns.ip("route", "add", "default", "via", "192.0.2.1", "dev", "dna0")
    state = lab.workdir / "state"
    agent = lab.spawn(
        ns,
        BIN / "twistd", "-n", "--pidfile=", "dnaagent",
        "--state-dir", str(state), "--control-port", "0", "--snmp-enabled", "false",
        "--overlay-port", "0", "--overlay-listen-ipv6", "",
        "--overlay-discovery", "true", "--overlay-discovery-interval", "3600",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (state / "control.json").exists():
        assert agent.alive() and time.monotonic() < deadline, agent.output()
        time.sleep(0.1)
    status = ns.run(BIN / "dnactl", "--state-dir", str(state), "status", "--json", timeout=30)
    overlay = json.loads(status.stdout)["overlay"]
    assert overlay["port"] != 0
    listening = ns.run("ss", "-Hnul", f"sport = :{overlay['port']}", timeout=30).stdout
    assert str(overlay["port"]) in listening  # the reported port is the one bound
    got = ns.run(
        "python3", "-c",
        "import json,sys,urllib.request as u;"
        f"c=json.load(open('{state}/control.json'));"
        "o=u.build_opener(u.ProxyHandler({}));"
        "print(json.load(o.open(f'http://127.0.0.1:{c[\"port\"]}/api/v1/overlay'))"
        "['counters']['announcements'])",
        timeout=30,
    )  # fmt: skip
    # One announcement at start, although the interval is an hour.
    assert int(got.stdout) >= 1, got.stdout + got.stderr + agent.output()
