"""The prediction subtree with real Net-SNMP tools against a running ``twistd dnaagent``.

An rw SNMPv3 user asks for a prediction with snmpset; snmpget and snmpwalk read
the status scalars and the answer's row. Everything on loopback.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .test_daemon_snmp import ROOT, free_port, start_agent, stop

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("snmpget", "snmpwalk", "snmpset")),
        reason="Net-SNMP's tools are not installed",
    ),
]

AUTH_KEY = "xbac-auth-key-1"
PRIV_KEY = "xbac-priv-key-1"
USER = f"predictor:SHA-256:{AUTH_KEY}:AES:{PRIV_KEY}:rw"
V3 = ["-v3", "-l", "authPriv", "-u", "predictor", "-a", "SHA-256", "-A", AUTH_KEY,
      "-x", "AES", "-X", PRIV_KEY, "-t", "2", "-r", "2"]  # fmt: skip
MIBOPTS = ["-M", str(ROOT / "mibs"), "-m", "DNA-AGENT-MIB"]


def net_snmp(tool: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one Net-SNMP tool against the agent (bounded)."""
    return subprocess.run(
        [tool, *V3, *MIBOPTS, f"127.0.0.1:{port}", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def api(state: Path, path: str, body: object) -> object:
    """POST to the agent's control API (no proxy)."""
    where = json.loads((state / "control.json").read_text())
    req = urllib.request.Request(
        f"http://127.0.0.1:{where['port']}{path}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_snmpset_asks_and_snmpwalk_reads_the_answer(tmp_path: Path) -> None:
    """Status scalars by snmpget; a prediction asked by snmpset appears in the table."""
    port = free_port(socket.SOCK_DGRAM)
    proc = start_agent(
        tmp_path, "--snmp-port", str(port), "--snmp-users", USER, "--xbac-horizon", "0",
        "--snmp-update-interval", "1",
    )  # fmt: skip
    try:
        state = tmp_path / "state"
        kept = api(
            state, "/api/v1/xbac/measurements", {"host": "192.0.2.7", "rtts_ms": [15.0] * 12}
        )
        assert kept["kept"] == 12  # type: ignore[index]

        done = net_snmp("snmpset", port, "DNA-AGENT-MIB::dnaXbacPredictTarget.0", "s", "192.0.2.7")
        assert done.returncode == 0, done.stdout + done.stderr
        bad = net_snmp("snmpset", port, "DNA-AGENT-MIB::dnaXbacPredictTarget.0", "s", "nonsense")
        assert bad.returncode != 0 and "wrongValue" in bad.stdout + bad.stderr

        walk = net_snmp("snmpwalk", port, "DNA-AGENT-MIB::dnaPredictionTable")
        assert walk.returncode == 0, walk.stderr
        text = walk.stdout
        assert "dnaPredictionStatus.1 = INTEGER: predicted(1)" in text, text
        assert "dnaPredictionRtt.1 = Gauge32: 15000 microseconds" in text, text
        assert "dnaPredictionBasis.1 = STRING: series" in text.replace('"', ""), text
        assert "dnaPredictionMeasurements.1 = Gauge32: 12" in text, text

        got = net_snmp(
            "snmpget", port, "-Oqv",
            "DNA-AGENT-MIB::dnaXbacRole.0",
            "DNA-AGENT-MIB::dnaXbacMeasurements.0",
            "DNA-AGENT-MIB::dnaXbacPredictionsAnswered.0",
            "DNA-AGENT-MIB::dnaXbacPredictTarget.0",
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        lines = [line.strip().strip('"') for line in got.stdout.splitlines()]
        assert lines[0] in ("leader", "member", "backup", "none"), lines
        assert int(lines[1].split()[0]) >= 12 and int(lines[2].split()[0]) == 1, lines
        assert lines[3] == "192.0.2.7"
    finally:
        stop(proc)
