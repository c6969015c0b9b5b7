"""dnaagent as an AgentX subagent of a real Net-SNMP snmpd, queried with the Net-SNMP tools.

Each test starts its own ``snmpd`` (``master agentx``, a unix or TCP AgentX
socket in a temporary directory, SNMP on a free UDP port of 127.0.0.1) and
the subagent of :mod:`tests.integration.agentx_harness` (1,201 instances
under ``experimental.9999``), then talks to snmpd with snmpget, snmpwalk,
snmpbulkwalk, snmptable and snmpset, v2c and v3 authPriv (SHA-256/AES).
Every process is ended by PID; nothing leaves loopback.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dnaagent.snmp.agentx import pdu as P
from dnaagent.snmp.agentx.pdu import SearchRange

from .agentx_harness import NAME, ROOT, TEST_MIB

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROWS = 300
INSTANCES = 4 * ROWS + 1
ROOT_TEXT = "." + ".".join(map(str, ROOT))
NAME_TEXT = "." + ".".join(map(str, NAME))
V3_USER = "dnaops"
V3_AUTH = "dna-auth-pass-1"
V3_PRIV = "dna-priv-pass-1"
#: snmpd in the foreground, logging to stdout, without the system config or SMUX.
SNMPD = ["snmpd", "-f", "-Lo", "-C", "-I", "-smux"]
TOOLS = ("snmpd", "snmpget", "snmpwalk", "snmpbulkwalk", "snmptable", "snmpset")

if missing := [t for t in TOOLS if shutil.which(t) is None]:
    pytest.skip(f"Net-SNMP tools missing: {', '.join(missing)}", allow_module_level=True)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port of 127.0.0.1 that nothing uses right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    """Poll ``check()`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Snmpd:
    """A Net-SNMP master agent with its own configuration, run in the foreground."""

    def __init__(self, tmp: Path, agentx: str) -> None:
        self.tmp = tmp
        self.agentx = agentx
        self.port = free_port()
        self.conf = tmp / "snmpd.conf"
        self.persist = tmp / "persist"
        self.persist.mkdir(exist_ok=True)
        self.log = tmp / "snmpd.log"
        self.proc: subprocess.Popen | None = None
        self.conf.write_text(
            "\n".join(
                [
                    "master agentx",
                    f"agentXSocket {agentx}",
                    "agentXPerms 0600 0700",
                    "agentXTimeout 5",
                    "agentXRetries 1",
                    "dontLogTCPWrappersConnects yes",
                    f"agentaddress udp:127.0.0.1:{self.port}",
                    "rocommunity public 127.0.0.1",
                    f"createUser {V3_USER} SHA-256 {V3_AUTH} AES {V3_PRIV}",
                    f"rwuser {V3_USER} priv",
                    "",
                ]
            )
        )

    @property
    def address(self) -> str:
        """The SNMP agent address for the Net-SNMP tools."""
        return f"udp:127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start snmpd and wait until it answers SNMP."""
        env = dict(
            os.environ, MIBS="", MIBDIRS=str(self.tmp), SNMP_PERSISTENT_DIR=str(self.persist)
        )
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*SNMPD, "-c", str(self.conf), "-M", str(self.tmp)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for(
            lambda: (
                snmp("snmpget", self, ".1.3.6.1.2.1.1.3.0", opts=("-Oqv",), check=False).returncode
                == 0
            ),
            10,
            "snmpd to answer",
        )

    def stop(self) -> None:
        """End snmpd (by PID) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Subagent:
    """The dnaagent AgentX subagent harness as a child process."""

    def __init__(self, tmp: Path, master: str) -> None:
        self.set_log = tmp / "sets.log"
        self.log = tmp / "subagent.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.integration.agentx_harness",
                    "--master",
                    master,
                    "--rows",
                    str(ROWS),
                    "--set-log",
                    str(self.set_log),
                    "--ping-interval",
                    "2",
                    "--reconnect-max",
                    "1",
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def text(self) -> str:
        """What the subagent logged."""
        return self.log.read_text(errors="replace")

    def sets(self) -> list[str]:
        """The SET phases the write handler saw."""
        return self.set_log.read_text().splitlines() if self.set_log.exists() else []

    def stop(self) -> None:
        """End the subagent (by PID) and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def v2c() -> list[str]:
    """Options of a v2c read."""
    return ["-v2c", "-c", "public"]


def v3(auth: str = V3_AUTH) -> list[str]:
    """Options of a v3 authPriv request with SHA-256 and AES."""
    return ["-v3", "-l", "authPriv", "-u", V3_USER, "-a", "SHA-256", "-A", auth] + [
        "-x",
        "AES",
        "-X",
        V3_PRIV,
    ]


def snmp(
    tool: str,
    agent: Snmpd,
    *args: str,
    opts: tuple[str, ...] = (),
    auth: list[str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``tool [auth] [opts] AGENT args`` with numeric OIDs and no MIB unless asked."""
    cmd = [
        tool,
        *(auth if auth is not None else v2c()),
        "-t",
        "3",
        "-r",
        "1",
        *opts,
        agent.address,
        *args,
    ]
    env = dict(os.environ, MIBS="", MIBDIRS=str(agent.tmp))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {result.stdout}{result.stderr}")
    return result


def serving(agent: Snmpd) -> bool:
    """True when snmpd answers the subagent's scalar with its value."""
    r = snmp("snmpget", agent, NAME_TEXT, opts=("-Oqv",), check=False)
    return r.returncode == 0 and "No Such" not in r.stdout


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """A short temporary directory (unix socket paths are limited to 108 bytes)."""
    return tmp_path


@pytest.fixture(params=["unix", "tcp"])
def stack(request, tmp: Path) -> Iterator[tuple[Snmpd, Subagent]]:
    """snmpd and the subagent connected over a unix socket or TCP on loopback."""
    if request.param == "unix":
        master = f"unix:{tmp}/agentx.sock"
    else:
        master = f"tcp:127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    agent = Snmpd(tmp, master)
    sub: Subagent | None = None
    try:
        agent.start()
        sub = Subagent(tmp, master)
        wait_for(lambda: serving(agent), 15, "the subagent to register")
        yield agent, sub
    finally:
        if sub is not None:
            sub.stop()
        agent.stop()


def walk_lines(result: subprocess.CompletedProcess) -> list[str]:
    """Non-empty output lines of a walk."""
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_get_walk_bulkwalk_table_v2c(stack, tmp: Path) -> None:
    """snmpget/snmpwalk/snmpbulkwalk/snmptable through snmpd see the subagent's 1,201 instances."""
    agent, _ = stack
    got = snmp(
        "snmpget",
        agent,
        NAME_TEXT,
        f"{ROOT_TEXT}.2.1.2.7",
        f"{ROOT_TEXT}.2.1.3.300",
        f"{ROOT_TEXT}.2.1.2.999",
        f"{ROOT_TEXT}.7.0",
        opts=("-On",),
    ).stdout.splitlines()
    assert got == [
        f'{NAME_TEXT} = STRING: "initial"',
        f'{ROOT_TEXT}.2.1.2.7 = STRING: "row-7"',
        f"{ROOT_TEXT}.2.1.3.300 = Counter32: 300000",
        f"{ROOT_TEXT}.2.1.2.999 = No Such Instance currently exists at this OID",
        f"{ROOT_TEXT}.7.0 = No Such Object available on this agent at this OID",
    ]
    walked = walk_lines(snmp("snmpwalk", agent, ROOT_TEXT, opts=("-On",)))
    assert len(walked) == INSTANCES
    assert walked[0] == f'{NAME_TEXT} = STRING: "initial"'
    assert walked[1] == f"{ROOT_TEXT}.2.1.1.1 = INTEGER: 1"
    assert walked[-1] == f"{ROOT_TEXT}.2.1.4.300 = Gauge32: 0"
    bulk = walk_lines(snmp("snmpbulkwalk", agent, ROOT_TEXT, opts=("-On", "-Cr25")))
    assert bulk == walked
    (tmp / "DNAX-TEST-MIB.txt").write_text(TEST_MIB)
    mibdirs = f"{tmp}:{REPO / 'mibs'}"
    if not (REPO / "mibs" / "SNMPv2-TC.txt").exists():
        pytest.skip("mibs/ has no SNMPv2-TC for snmptable")
    table = snmp(
        "snmptable",
        agent,
        "DNAX-TEST-MIB::dnaxTable",
        opts=("-M", mibdirs, "-m", "DNAX-TEST-MIB", "-Cf", ","),
    ).stdout.splitlines()
    rows = [line for line in table if line and line[0].isdigit()]
    assert "dnaxIndex,dnaxLabel,dnaxCount,dnaxGauge" in table
    assert len(rows) == ROWS
    assert rows[41] == "42,row-42,42000,42"


def test_v3_authpriv_sha256_aes(stack) -> None:
    """SNMPv3 authPriv (SHA-256, AES) reads through snmpd; wrong credentials get nothing."""
    agent, _ = stack
    assert (
        snmp("snmpget", agent, NAME_TEXT, opts=("-Oqv",), auth=v3()).stdout.strip() == '"initial"'
    )
    walked = walk_lines(snmp("snmpbulkwalk", agent, ROOT_TEXT, opts=("-On",), auth=v3()))
    assert len(walked) == INSTANCES
    bad = snmp(
        "snmpget", agent, NAME_TEXT, opts=("-Oqv",), auth=v3("wrong-password-1"), check=False
    )
    assert bad.returncode != 0 and "initial" not in bad.stdout
    wrong_community = snmp(
        "snmpget", agent, NAME_TEXT, opts=("-Oqv",), auth=["-v2c", "-c", "nope"], check=False
    )
    assert wrong_community.returncode != 0 and "initial" not in wrong_community.stdout


def test_snmpset_reaches_the_write_handlers(stack) -> None:
    """v3 SETs go TestSet/CommitSet to the Writables; refusals come back as SNMP errors."""
    agent, sub = stack
    ok = snmp("snmpset", agent, NAME_TEXT, "s", "hello from v3", auth=v3())
    assert "hello from v3" in ok.stdout
    assert sub.sets() == ["commit hello from v3"]
    assert snmp("snmpget", agent, NAME_TEXT, opts=("-Oqv",)).stdout.strip() == '"hello from v3"'
    refused = snmp("snmpset", agent, NAME_TEXT, "s", "forbidden", auth=v3(), check=False)
    assert refused.returncode != 0 and "wrongValue" in refused.stderr
    wrong_type = snmp("snmpset", agent, NAME_TEXT, "i", "5", auth=v3(), check=False)
    assert "wrongType" in wrong_type.stderr
    read_only = snmp("snmpset", agent, NAME_TEXT, "s", "v2c write", check=False)
    assert read_only.returncode != 0
    not_writable = snmp("snmpset", agent, f"{ROOT_TEXT}.2.1.2.1", "s", "x", auth=v3(), check=False)
    assert "notWritable" in not_writable.stderr
    assert sub.sets() == ["commit hello from v3"]


def test_snmpd_restart_reconnects(stack) -> None:
    """When snmpd is killed and started again, the subagent reconnects and answers again."""
    agent, sub = stack
    agent.stop()
    time.sleep(0.5)
    agent.start()
    wait_for(lambda: serving(agent), 15, "the subagent to register again")
    walked = walk_lines(snmp("snmpbulkwalk", agent, ROOT_TEXT, opts=("-On",)))
    assert len(walked) == INSTANCES
    assert sub.alive()
    log = sub.text()
    assert log.count("open with master") == 2
    assert "lost" in log


def _fake_master_session(conn: socket.socket) -> int:
    """Play master on ``conn``: answer Open and Register; return the session ID."""
    framer = P.Framer()
    pending: list = []
    session = 77
    answered = 0
    conn.settimeout(10)
    while answered < 2:
        if not pending:
            pending = framer.feed(conn.recv(65536))
            continue
        header, raw = pending.pop(0)
        request = P.decode(raw)
        conn.sendall(P.encode(P.ResponsePdu(session_id=session, packet_id=request.packet_id)))
        answered += 1
    return session


def _read_response(conn: socket.socket, framer: P.Framer, packet_id: int) -> P.ResponsePdu:
    """Read PDUs until the Response to ``packet_id``."""
    while True:
        for _, raw in framer.feed(conn.recv(1 << 20)):
            pdu = P.decode(raw)
            if isinstance(pdu, P.ResponsePdu) and pdu.packet_id == packet_id:
                return pdu


def test_malformed_packets_over_a_real_socket(tmp: Path) -> None:
    """5,000 damaged PDUs on a real unix socket: the subagent answers, survives, reconnects."""
    path = str(tmp / "fake-master.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(2)
    server.settimeout(15)
    sub = Subagent(tmp, f"unix:{path}")
    try:
        conn, _ = server.accept()
        session = _fake_master_session(conn)
        rng = random.Random(705)
        valid = P.encode(P.GetPdu(session_id=session, packet_id=1, ranges=[SearchRange(NAME)]))
        started = time.monotonic()
        for i in range(5000):
            body = bytearray(valid[20:])
            for _ in range(rng.randint(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            header = bytearray(valid[:20])
            header[12:16] = struct.pack(">I", 1000 + i)
            conn.sendall(bytes(header) + bytes(body))
        framer = P.Framer()
        conn.sendall(
            P.encode(P.GetPdu(session_id=session, packet_id=99, ranges=[SearchRange(NAME)]))
        )
        answer = _read_response(conn, framer, 99)
        assert answer.varbinds[0].value == b"initial"
        assert time.monotonic() - started < 60
        # A header that breaks the framing: the subagent hangs up and connects again.
        conn.sendall(b"\x07" + bytes(19))
        conn.settimeout(10)
        rest = b""
        try:
            while chunk := conn.recv(65536):
                rest += chunk
        except TimeoutError:
            pytest.fail("the subagent did not close a connection with broken framing")
        conn.close()
        conn2, _ = server.accept()
        _fake_master_session(conn2)
        conn2.close()
        assert sub.alive()
        assert "unreadable" in sub.text()
    finally:
        sub.stop()
        server.close()
