"""The embedded SNMP agent against the real Net-SNMP tools, on loopback.

An agent process (``python -m tests.integration.test_snmp_embedded``: an
:class:`~dnaagent.service.AgentService` with a scripted test module, a fake
overlay and the :class:`~dnaagent.snmp.service.SnmpService`, on Twisted's
asyncio reactor) listens on a free UDP port of 127.0.0.1 and ::1. The tests
drive it with ``snmpget``, ``snmpwalk``, ``snmpbulkwalk``, ``snmptable`` and
``snmpset``: SNMPv2c and SNMPv3 authPriv (SHA-256 + AES) read, wrong
credentials get nothing, writes only for SNMPv3 ``rw`` users, and the
answers carry the values of the MIB. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIBS = ROOT / "mibs"
COMMUNITY = "dna-secret-community"
AUTH_KEY = "auth-pass-phrase-1"
PRIV_KEY = "priv-pass-phrase-1"
RW_USER = f"nms:SHA-256:{AUTH_KEY}:AES:{PRIV_KEY}:rw"
RO_USER = f"viewer:SHA-512:{AUTH_KEY}:AES-256:{PRIV_KEY}"
START_TIMEOUT = 30.0

if shutil.which("snmpget") is None:
    pytest.skip("Net-SNMP tools (Debian package snmp) are not installed", allow_module_level=True)

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- the agent


def _serve(state_dir: str, port_file: str) -> None:
    """Run the agent until SIGTERM (the body of the agent process)."""
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import reactor

    from dnaagent import config
    from dnaagent.mediator.interface import Outcome, TestSpec
    from dnaagent.service import AgentService
    from dnaagent.snmp.service import SnmpService
    from dnaagent.snmp.settings import SnmpSection
    from tests.fakes.modules import ScriptedModule

    class FakeOverlay:
        """Two peers and some counters, as OverlayNode shows them."""

        node_id = bytes(range(1, 21))
        counters = {
            "messages_in": 1234,
            "messages_out": 1200,
            "bytes_in": 98765,
            "bytes_out": 87654,
            "dropped_bad_signature": 3,
            "dropped_too_large": 2,
            "bans_total": 1,
            "banned_peers": 1,
        }

        def peers(self) -> list[dict[str, object]]:
            return [
                {
                    "node_id": "aa" * 20,
                    "host": "192.0.2.7",
                    "port": 4001,
                    "last_seen_s": 2.0,
                    "rtt_ms": 12.5,
                },
                {
                    "node_id": "bb" * 20,
                    "host": "2001:db8::9",
                    "port": 4001,
                    "last_seen_s": 30.0,
                    "rtt_ms": None,
                },
            ]

    # This harness builds its own SnmpService below (with its own settings),
    # and needs no overlay.
    cfg = config.load(
        None,
        {
            "agent.state_dir": state_dir,
            "control.enabled": "false",
            "snmp.enabled": "false",
            "overlay.enabled": "false",
        },
    )
    module = ScriptedModule(
        [
            TestSpec("NIC", "the network card is up"),
            TestSpec("Link", "the link has carrier", ("NIC",)),
            TestSpec("Gateway", "the gateway answers ping", ("Link",)),
            TestSpec("Extra", "an optional check", default=False),
        ],
        {
            "Link": Outcome.warning("carrier flapped twice"),
            "Gateway": Outcome.error("no answer from 192.0.2.1"),
        },
        name="demo",
    )
    agent = AgentService(cfg, reactor, modules=[module])
    agent.prepare()
    agent.overlay = FakeOverlay()  # type: ignore[attr-defined]
    settings = SnmpSection(
        listen=["127.0.0.1", "::1"],
        port=0,
        community=COMMUNITY,
        users=[RW_USER, RO_USER],
        update_interval=0.5,
    )
    snmp = SnmpService(agent, settings)
    snmp.prepare()
    snmp.setServiceParent(agent)
    agent.startService()

    def ready() -> None:
        d = agent.mediator.run("demo", origin="schedule")

        def announce(_: object) -> None:
            tmp = port_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"addresses": snmp.addresses, "pid": os.getpid()}, f)
            os.replace(tmp, port_file)

        d.addCallback(announce)

    reactor.callWhenRunning(ready)
    reactor.addSystemEventTrigger("before", "shutdown", agent.stopService)
    reactor.run()


@dataclass
class RunningAgent:
    """The agent process and where it listens."""

    proc: subprocess.Popen[bytes]
    port: int
    port6: int
    log: Path

    @property
    def target(self) -> str:
        """The IPv4 agent address as Net-SNMP writes it."""
        return f"127.0.0.1:{self.port}"

    @property
    def target6(self) -> str:
        """The IPv6 agent address as Net-SNMP writes it."""
        return f"udp6:[::1]:{self.port6}"


def start_agent(tmp: Path) -> RunningAgent:
    """Start the agent process and wait until it serves results."""
    port_file = tmp / "ports.json"
    log = tmp / "agent.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.test_snmp_embedded",
                str(tmp),
                str(port_file),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_agent(proc)
            pytest.fail(f"the agent did not start:\n{log.read_text()}")
        time.sleep(0.1)
    data = json.loads(port_file.read_text())
    ports = {":" in host: port for host, port in data["addresses"]}
    return RunningAgent(proc, ports[False], ports[True], log)


def stop_agent(proc: subprocess.Popen[bytes]) -> None:
    """Stop the agent process we started (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    """One agent process for the tests of this module."""
    running = start_agent(tmp_path_factory.mktemp("snmp-agent"))
    try:
        yield running
    finally:
        stop_agent(running.proc)
        assert "Traceback" not in running.log.read_text(), running.log.read_text()


# ---------------------------------------------------------------- helpers


def net_snmp(tool: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a Net-SNMP tool with the project's MIBs only (no other MIB noise)."""
    return subprocess.run(
        [tool, "-M", str(MIBS), "-m", "DNA-AGENT-MIB", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def v2c(community: str = COMMUNITY) -> list[str]:
    """SNMPv2c options (one short try: a refusal is a timeout)."""
    return ["-v2c", "-c", community, "-t", "1", "-r", "1"]


def v3(
    user: str = "nms", auth: str = "SHA-256", auth_key: str = AUTH_KEY, priv: str = "AES"
) -> list[str]:
    """SNMPv3 authPriv options."""
    return [
        "-v3",
        "-l",
        "authPriv",
        "-u",
        user,
        "-a",
        auth,
        "-A",
        auth_key,
        "-x",
        priv,
        "-X",
        PRIV_KEY,
        "-t",
        "1",
        "-r",
        "1",
    ]


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The output of a tool that must have succeeded."""
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until it is true (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


# ---------------------------------------------------------------- tests


def test_v2c_get_reads_scalars_and_system_group(agent: RunningAgent) -> None:
    """snmpget returns sysDescr, sysObjectID, sysUpTime and the agent scalars by name."""
    out = ok(
        net_snmp(
            "snmpget",
            *v2c(),
            agent.target,
            "SNMPv2-MIB::sysDescr.0",
            "SNMPv2-MIB::sysObjectID.0",
            "SNMPv2-MIB::sysUpTime.0",
            "DNA-AGENT-MIB::dnaVersion.0",
            "DNA-AGENT-MIB::dnaNodeId.0",
            "DNA-AGENT-MIB::dnaPeerCount.0",
            "DNA-AGENT-MIB::dnaOverlaySize.0",
        )
    )
    assert "SNMPv2-MIB::sysDescr.0 = STRING: dnaagent" in out
    assert "SNMPv2-MIB::sysObjectID.0 = OID: DNA-AGENT-MIB::dnaAgent" in out
    assert re.search(r"sysUpTime.0 = Timeticks: \(\d+\)", out)
    assert "DNA-AGENT-MIB::dnaVersion.0 = STRING: " in out
    assert "dnaNodeId.0 = STRING: 0102030405060708090a0b0c0d0e0f1011121314" in out
    assert "DNA-AGENT-MIB::dnaPeerCount.0 = Gauge32: 2 peers" in out
    assert re.search(r"dnaOverlaySize.0 = Gauge32: [1-9]\d* agents", out)


def test_v2c_get_missing_instances(agent: RunningAgent) -> None:
    """A missing row is noSuchInstance, an unknown OID noSuchObject."""
    out = ok(
        net_snmp(
            "snmpget",
            *v2c(),
            agent.target,
            'DNA-AGENT-MIB::dnaResultStatus."demo"."Nope"',
            "1.3.6.1.4.1.8072.1.0",
        )
    )
    assert "No Such Instance currently exists at this OID" in out
    assert "No Such Object available on this agent at this OID" in out


def test_walk_and_bulkwalk_agree(agent: RunningAgent) -> None:
    """snmpwalk and snmpbulkwalk return the same dnaAgent subtree, with every part filled."""
    walk = ok(net_snmp("snmpwalk", *v2c(), agent.target, "DNA-AGENT-MIB::dnaAgent"))
    bulk = ok(net_snmp("snmpbulkwalk", *v2c(), agent.target, "DNA-AGENT-MIB::dnaAgent"))
    strip = [re.sub(r"Timeticks: \(\d+\).*", "T", line) for line in walk.splitlines()]
    strip_bulk = [re.sub(r"Timeticks: \(\d+\).*", "T", line) for line in bulk.splitlines()]
    assert strip == strip_bulk
    for expected in (
        'DNA-AGENT-MIB::dnaTestDescription."demo"."Gateway" = STRING: the gateway answers ping',
        'DNA-AGENT-MIB::dnaTestDependencies."demo"."Gateway" = STRING: Link',
        'DNA-AGENT-MIB::dnaTestDefault."demo"."Extra" = INTEGER: false(2)',
        'DNA-AGENT-MIB::dnaTestRun."demo"."NIC" = INTEGER: idle(1)',
        'DNA-AGENT-MIB::dnaResultStatus."demo"."Gateway" = INTEGER: error(3)',
        'DNA-AGENT-MIB::dnaResultStatus."demo"."Link" = INTEGER: warning(2)',
        'DNA-AGENT-MIB::dnaResultMessage."demo"."Gateway" = STRING: no answer from 192.0.2.1',
        'DNA-AGENT-MIB::dnaResultOrigin."demo"."NIC" = STRING: schedule',
        "DNA-AGENT-MIB::dnaOverlayMessagesIn.0 = Counter64: 1234 messages",
        "DNA-AGENT-MIB::dnaOverlayInvalidDropped.0 = Counter64: 5 messages",
        "DNA-AGENT-MIB::dnaOverlayBannedPeers.0 = Gauge32: 1 peers",
    ):
        assert expected in walk, expected
    assert re.search(r'dnaResultErrors."demo"."Gateway" = Counter32: [1-9]', walk)
    assert re.search(r'dnaResultTime."demo"."NIC" = STRING: \d{4}-\d+-\d+,', walk)
    assert "dnaPeerAddress" in walk and "c0 00 02 07" in walk.lower().replace('"', "")


def test_walk_ends_at_the_end_of_the_view(agent: RunningAgent) -> None:
    """A walk of the whole tree sees only the system group and DNA-AGENT-MIB."""
    out = ok(net_snmp("snmpbulkwalk", *v2c(), "-On", agent.target, ".1"))
    oids = [line.split(" ", 1)[0] for line in out.splitlines() if line.startswith(".")]
    assert oids[0] == ".1.3.6.1.2.1.1.1.0"
    assert all(o.startswith((".1.3.6.1.2.1.1.", ".1.3.6.1.3.4001.")) for o in oids)
    assert len(oids) > 60


def test_snmptable_of_results_and_peers(agent: RunningAgent) -> None:
    """snmptable shows the result table and the peer table with column names."""
    out = ok(
        net_snmp(
            "snmptable", *v2c(), "-Cf", "|", "-Ci", agent.target, "DNA-AGENT-MIB::dnaResultTable"
        )
    )
    assert "index|dnaResultStatus|dnaResultMessage" in out
    assert '"demo"."Gateway"|error|no answer from 192.0.2.1|' in out
    assert '"demo"."NIC"|ok|NIC fine|' in out
    peers = ok(
        net_snmp(
            "snmptable", *v2c(), "-Cf", "|", "-Ci", agent.target, "DNA-AGENT-MIB::dnaPeerTable"
        )
    )
    assert "index|dnaPeerAddressType|dnaPeerAddress|dnaPeerPort|dnaPeerRtt|" in peers
    assert '1|ipv4|"C0 00 02 07 "|4001|12500 microseconds|' in peers
    assert "|aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" in peers
    assert "2|ipv6|" in peers and "|bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" in peers


def test_ipv6_listener(agent: RunningAgent) -> None:
    """The agent also answers on ::1."""
    out = ok(net_snmp("snmpget", *v2c(), agent.target6, "DNA-AGENT-MIB::dnaPeerCount.0"))
    assert "Gauge32: 2 peers" in out


def test_v3_authpriv_sha256_aes_reads(agent: RunningAgent) -> None:
    """SNMPv3 authPriv (SHA-256 + AES-128) walks the MIB; SHA-512 + AES-256 works too."""
    out = ok(net_snmp("snmpwalk", *v3(), agent.target, "DNA-AGENT-MIB::dnaResultStatus"))
    assert 'dnaResultStatus."demo"."Gateway" = INTEGER: error(3)' in out
    out = ok(
        net_snmp(
            "snmpget",
            *v3("viewer", "SHA-512", priv="AES256"),
            agent.target,
            "DNA-AGENT-MIB::dnaPeerCount.0",
        )
    )
    assert "Gauge32: 2 peers" in out


def test_wrong_community_gets_nothing(agent: RunningAgent) -> None:
    """A wrong community is not answered at all (the manager times out)."""
    done = net_snmp("snmpget", *v2c("public"), agent.target, "SNMPv2-MIB::sysDescr.0")
    assert done.returncode != 0
    assert "Timeout" in done.stdout + done.stderr
    assert "dnaagent" not in done.stdout


def test_snmpv1_gets_nothing(agent: RunningAgent) -> None:
    """SNMPv1 with the right community is not served (SNMPv2c only)."""
    done = net_snmp(
        "snmpget",
        "-v1",
        "-c",
        COMMUNITY,
        "-t",
        "1",
        "-r",
        "0",
        agent.target,
        "SNMPv2-MIB::sysDescr.0",
    )
    assert done.returncode != 0
    assert "dnaagent" not in done.stdout


def test_wrong_v3_credentials_get_nothing(agent: RunningAgent) -> None:
    """A wrong key, a wrong protocol and an unknown user are refused with a report."""
    wrong_key = net_snmp(
        "snmpget", *v3(auth_key="not-the-key-1"), agent.target, "SNMPv2-MIB::sysDescr.0"
    )
    assert wrong_key.returncode != 0
    assert "Authentication failure" in wrong_key.stderr
    wrong_proto = net_snmp("snmpget", *v3(auth="SHA-384"), agent.target, "SNMPv2-MIB::sysDescr.0")
    assert wrong_proto.returncode != 0
    assert "dnaagent" not in wrong_proto.stdout
    unknown = net_snmp("snmpget", *v3(user="mallory"), agent.target, "SNMPv2-MIB::sysDescr.0")
    assert unknown.returncode != 0
    assert "Unknown user name" in unknown.stderr


def test_v2c_cannot_write(agent: RunningAgent) -> None:
    """snmpset with the community is refused and starts nothing."""
    done = net_snmp(
        "snmpset", *v2c(), agent.target, 'DNA-AGENT-MIB::dnaTestRun."demo"."Extra"', "i", "2"
    )
    assert done.returncode != 0
    assert re.search(r"authorizationError|noAccess|notWritable", done.stderr), done.stderr
    done = net_snmp(
        "snmpget", *v2c(), agent.target, 'DNA-AGENT-MIB::dnaResultStatus."demo"."Extra"'
    )
    assert "No Such Instance" in done.stdout


def test_v3_read_only_user_cannot_write(agent: RunningAgent) -> None:
    """An SNMPv3 user without rw access is refused too."""
    done = net_snmp(
        "snmpset",
        *v3("viewer", "SHA-512", priv="AES256"),
        agent.target,
        'DNA-AGENT-MIB::dnaTestRun."demo"."Extra"',
        "i",
        "2",
    )
    assert done.returncode != 0
    assert re.search(r"authorizationError|noAccess|notWritable", done.stderr), done.stderr


def test_v3_rw_user_bad_writes_are_refused(agent: RunningAgent) -> None:
    """Wrong value, wrong type, missing row and read-only objects give their errors."""
    cases = [
        ('DNA-AGENT-MIB::dnaTestRun."demo"."Extra"', "i", "1", "wrongValue"),
        ('DNA-AGENT-MIB::dnaTestRun."demo"."Extra"', "s", "run", "wrongType"),
        ('DNA-AGENT-MIB::dnaTestRun."demo"."Nope"', "i", "2", "noCreation"),
        ("DNA-AGENT-MIB::dnaPeerCount.0", "u", "3", r"noAccess|notWritable"),
    ]
    for oid, kind, value, error in cases:
        done = net_snmp("snmpset", *v3(), "-Ir", agent.target, oid, kind, value)
        assert done.returncode != 0, (oid, done.stdout)
        assert re.search(error, done.stderr), (oid, done.stderr)


def test_v3_rw_user_runs_a_test(agent: RunningAgent) -> None:
    """snmpset dnaTestRun = run(2) by an rw user makes the Mediator run it; the result appears."""
    oid = 'DNA-AGENT-MIB::dnaTestRun."demo"."Extra"'
    out = ok(net_snmp("snmpset", *v3(), agent.target, oid, "i", "2"))
    assert "INTEGER: run(2)" in out

    def has_result() -> bool:
        done = net_snmp(
            "snmpget", *v2c(), agent.target, 'DNA-AGENT-MIB::dnaResultStatus."demo"."Extra"'
        )
        return "INTEGER: ok(1)" in done.stdout

    wait_for(has_result)
    out = ok(
        net_snmp("snmpget", *v2c(), agent.target, 'DNA-AGENT-MIB::dnaResultOrigin."demo"."Extra"')
    )
    assert "STRING: snmp" in out
    out = ok(net_snmp("snmpget", *v2c(), agent.target, oid))
    assert "idle(1)" in out


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
