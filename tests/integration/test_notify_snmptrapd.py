"""Traps and informs received by a real Net-SNMP ``snmptrapd``.

Each test starts its own ``snmptrapd`` on a free loopback port (127.0.0.1
and ::1) and a small harness process that runs the real
:class:`~dnaagent.snmp.notify.service.NotificationService` with the real
pysnmp sender on Twisted's asyncio reactor. The harness is this module run as
a program (``python -m tests.integration.test_notify_snmptrapd harness ...``);
it reads ``fire N`` lines on stdin and raises one trigger event per line.

Only processes started here are stopped, each by its own PID. Everything
listens and sends on loopback only, and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dnaagent.snmp import mib
from dnaagent.snmp.notify import varbinds as vb
from dnaagent.snmp.notify.queue import NotificationQueue
from dnaagent.snmp.notify.service import QUEUE_FILE
from dnaagent.snmp.tree import format_oid

REPO = Path(__file__).resolve().parents[2]
ENGINE_ID = "80001f8804646e6174657374"
V3_KEYS = ("auth-pass-1234", "priv-pass-5678")
TRAPD_FORMAT = r"NOTIFY %P\t%b\t%v\n"
HARNESS_SETTINGS = {
    "inform_timeout": 1.0,
    "retry_initial": 0.5,
    "retry_max": 2.0,
    "retry_jitter": 0.1,
}

if shutil.which("snmptrapd") is None:
    pytest.skip("snmptrapd is not installed (Debian package snmptrapd)", allow_module_level=True)

pytestmark = pytest.mark.integration


def free_port() -> int:
    """A UDP port free on both 127.0.0.1 and ::1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = s4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
                    s6.bind(("::1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no UDP port free on both 127.0.0.1 and ::1")


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    explain: Callable[[], str] = lambda: "",
    interval: float = 0.2,
) -> Any:
    """Poll ``condition`` until it is true (returning it) or fail after ``timeout``.

    ``explain`` adds what the test knows to the failure message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{explain()}")
        time.sleep(interval)


@dataclass
class Received:
    """One notification as snmptrapd logged it."""

    pdu: str  # TRAP2 or INFORM
    security: str  # e.g. "SNMP v2c, community public" or "SNMP v3, user ops, context "
    source: str
    varbinds: dict[str, str]

    @property
    def sequence(self) -> int:
        """The notification's sequence number (dnaagent's last binding)."""
        for name in ("." + format_oid(vb.NOTIFY_SEQUENCE), "DNA-AGENT-MIB::dnaNotifySequence.0"):
            if name in self.varbinds:
                return int(self.varbinds[name].split(": ")[1])
        raise KeyError("no dnaNotifySequence.0 in the notification")

    @property
    def version(self) -> str:
        """v2c or v3."""
        return "v3" if "SNMP v3" in self.security else "v2c"


class Trapd:
    """One snmptrapd of a test, logging every notification on one line."""

    def __init__(self, workdir: Path, port: int, names: bool = False) -> None:
        self.workdir = workdir
        self.port = port
        # names: translate OIDs with DNA-AGENT-MIB (else numeric, -On)
        self.names = names
        self.logs: list[Path] = []  # one per start: snmptrapd truncates its log file
        self.conf = workdir / "snmptrapd.conf"
        self.persist = workdir / "persist"
        self.persist.mkdir(parents=True, exist_ok=True)
        auth, priv = V3_KEYS
        self.conf.write_text(
            "authCommunity log public\n"
            f"createUser -e 0x{ENGINE_ID} trapuser SHA-256 {auth} AES {priv}\n"
            f"createUser informuser SHA-256 {auth} AES {priv}\n"
            "authUser log trapuser priv\n"
            "authUser log informuser priv\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until it listens (bounded)."""
        log = self.workdir / f"snmptrapd-{len(self.logs) + 1}.log"
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [
                "snmptrapd",
                "-f",
                "-C",
                "-c",
                str(self.conf),
                *(
                    ["-M", mib.mib_dir(), "-m", f"{mib.MIB_NAME}:SNMPv2-MIB"]
                    if self.names
                    else ["-M", "/dev/null", "-m", "", "-On"]
                ),
                "-Lf",
                str(log),
                "-F",
                TRAPD_FORMAT,
                f"udp:127.0.0.1:{self.port},udp6:[::1]:{self.port}",
            ],
            env={**os.environ, "SNMP_PERSISTENT_DIR": str(self.persist)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: log.exists() and b"NET-SNMP version" in log.read_bytes(),
            10,
            "snmptrapd to start",
        )

    def stop(self) -> None:
        """Stop the snmptrapd this object started (by its PID)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def received(self) -> list[Received]:
        """Every notification logged so far, in arrival order."""
        lines = []
        for log in self.logs:
            if log.exists():
                lines += log.read_text(errors="replace").splitlines()
        out = []
        for line in lines:
            if not line.startswith("NOTIFY "):
                continue
            security, source, *bindings = line[len("NOTIFY ") :].split("\t")
            pdu, _, security = security.partition(", ")
            pairs = dict(b.split(" = ", 1) for b in bindings if " = " in b)
            out.append(Received(pdu, security, source, pairs))
        return out


class Harness:
    """A process running NotificationService on a real reactor."""

    def __init__(self, workdir: Path, settings: dict[str, Any]) -> None:
        self.workdir = workdir
        self.state = workdir / "state"
        self.config = workdir / "notify.json"
        self.config.write_text(json.dumps({**HARNESS_SETTINGS, **settings}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the harness and wait for its ``ready`` line (bounded)."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.test_notify_snmptrapd",
                "harness",
                str(self.config),
                str(self.state),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.workdir / "harness.err", "ab"),  # noqa: SIM115
        )
        assert self.readline(30) == "ready", self.errors()

    def errors(self) -> str:
        """What the harness logged (for failure messages)."""
        texts = []
        for name in ("harness.err", "state/harness.log"):
            path = self.workdir / name
            if path.exists():
                texts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(texts)

    def readline(self, timeout: float) -> str:
        """One line of the harness's stdout, waiting at most ``timeout``."""
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            pytest.fail(f"harness said nothing for {timeout:g} s\n{self.errors()}")
        return self.proc.stdout.readline().decode().strip()

    def command(self, line: str) -> str:
        """Send one command line and return the harness's one-line answer."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self.readline(15)

    def fire(self, n: int) -> int:
        """Raise trigger event ``n``; returns the notification's sequence number."""
        answer = self.command(f"fire {n}")
        assert answer.startswith("queued "), answer
        return int(answer.split()[1])

    def status(self) -> dict[str, Any]:
        """The service's status()."""
        return json.loads(self.command("status"))

    def kill(self) -> None:
        """SIGKILL the harness (by its PID) and reap it."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        """Stop the harness cleanly (SIGTERM to its PID), SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def trapd(tmp_path: Path) -> Any:
    """A running snmptrapd on a free loopback port, stopped after the test."""
    daemon = Trapd(tmp_path / "trapd", free_port())
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def harness_factory(tmp_path: Path) -> Any:
    """Makes harnesses; every harness still running after the test is killed."""
    made: list[Harness] = []

    def make(settings: dict[str, Any]) -> Harness:
        h = Harness(tmp_path, settings)
        made.append(h)
        return h

    try:
        yield make
    finally:
        for h in made:
            h.stop()


def v2c(port: int, host: str = "127.0.0.1") -> str:
    """A v2c target string for the test's snmptrapd."""
    return f"v2c:public@{host}:{port}"


def v3(user: str, port: int, host: str = "[::1]") -> str:
    """A v3 authPriv (SHA-256, AES) target string for the test's snmptrapd."""
    auth, priv = V3_KEYS
    return f"v3:{user}:SHA-256:{auth}:AES:{priv}@{host}:{port}"


def oid(o: tuple[int, ...]) -> str:
    """The -On form of an OID."""
    return "." + format_oid(o)


def test_traps_and_informs_v2c_v3_ipv4_ipv6(trapd: Trapd, harness_factory: Any) -> None:
    """One event reaches every sink and target, v2c and v3, IPv4 and IPv6, with its objects."""
    port = trapd.port
    h = harness_factory(
        {
            "trap_sinks": [v2c(port), v3("trapuser", port, "[::1]")],
            "inform_targets": [v2c(port, "[::1]"), v3("informuser", port, "127.0.0.1")],
        }
    )
    h.start()
    seq = h.fire(7)
    got = wait_until(lambda: len(trapd.received()) >= 4 and trapd.received(), 20, "4 notifications")
    time.sleep(0.5)
    got = trapd.received()
    assert len(got) == 4, got
    kinds = sorted((r.pdu, r.version, r.source.split("]")[0] + "]") for r in got)
    assert kinds == [
        ("INFORM", "v2c", "UDP/IPv6: [::1]"),
        ("INFORM", "v3", "UDP: [127.0.0.1]"),
        ("TRAP2", "v2c", "UDP: [127.0.0.1]"),
        ("TRAP2", "v3", "UDP/IPv6: [::1]"),
    ]
    index = "." + format_oid(mib.test_index("local", "Test7") or ())
    for r in got:
        b = r.varbinds
        assert list(b) == [
            oid(vb.SYS_UPTIME),
            oid(vb.SNMP_TRAP_OID),
            oid(vb.NOTIFY_TEST),
            oid(mib.DNA_RESULT_STATUS) + index,
            oid(mib.DNA_RESULT_MESSAGE) + index,
            oid(mib.DNA_RESULT_TIME) + index,
            oid(vb.NOTIFY_PREVIOUS_STATUS),
            oid(vb.NOTIFY_SEQUENCE),
            oid(vb.NOTIFY_MESSAGE),
            oid(vb.NOTIFY_DETAILS),
        ]
        assert b[oid(vb.SYS_UPTIME)].startswith("Timeticks: (")
        assert b[oid(vb.SNMP_TRAP_OID)] == "OID: " + oid(mib.DNA_TEST_FAILED)
        assert b[oid(vb.NOTIFY_TEST)] == 'STRING: "local.Test7"'
        assert b[oid(mib.DNA_RESULT_STATUS) + index] == "INTEGER: 3"
        assert b[oid(mib.DNA_RESULT_MESSAGE) + index] == 'STRING: "broken 7"'
        assert b[oid(mib.DNA_RESULT_TIME) + index].startswith("Hex-STRING: 07 ")
        assert b[oid(vb.NOTIFY_PREVIOUS_STATUS)] == "INTEGER: 1"
        assert b[oid(vb.NOTIFY_MESSAGE)] == 'STRING: "local.Test7 failed: broken 7"'
        assert r.sequence == seq
    users = {r.security for r in got if r.version == "v3"}
    assert users == {"SNMP v3, user trapuser, context ", "SNMP v3, user informuser, context "}
    status = wait_until(
        lambda: (s := h.status())["pending"] == 0 and s, 10, "informs to be acknowledged"
    )
    acked = {t["key"]: (t["acked"], t["sent"]) for t in status["targets"]}
    assert acked == {
        f"trap v2c community@127.0.0.1:{port}": (0, 1),
        f"trap v3 trapuser@[::1]:{port}": (0, 1),
        f"inform v2c community@[::1]:{port}": (1, 1),
        f"inform v3 informuser@127.0.0.1:{port}": (1, 1),
    }


def explain(h: Harness, trapd: Trapd) -> str:
    """The harness's targets and log and what snmptrapd received."""
    targets = "\n".join(map(str, h.status()["targets"])) if h.proc else "(harness not running)"
    got = [(r.pdu, r.version, r.sequence) for r in trapd.received()]
    return f"{targets}\nreceived: {got}\n{h.errors()}"


def test_names_translated_with_the_mib(tmp_path: Path, harness_factory: Any) -> None:
    """With DNA-AGENT-MIB loaded, snmptrapd shows the notification by name."""
    trapd = Trapd(tmp_path / "trapd", free_port(), names=True)
    trapd.start()
    try:
        h = harness_factory({"inform_targets": [v2c(trapd.port)]})
        h.start()
        seq = h.fire(3)
        (got,) = wait_until(trapd.received, 20, "the inform")
    finally:
        trapd.stop()
    assert got.pdu == "INFORM"
    b = got.varbinds
    assert list(b)[:3] == [
        "SNMPv2-MIB::sysUpTime.0",
        "SNMPv2-MIB::snmpTrapOID.0",
        "DNA-AGENT-MIB::dnaNotifyTest.0",
    ]
    assert b["SNMPv2-MIB::snmpTrapOID.0"] == "OID: DNA-AGENT-MIB::dnaTestFailed"
    assert b["DNA-AGENT-MIB::dnaNotifyTest.0"] == "STRING: local.Test3"
    assert b['DNA-AGENT-MIB::dnaResultStatus."local"."Test3"'] == "INTEGER: error(3)"
    assert b['DNA-AGENT-MIB::dnaResultMessage."local"."Test3"'] == "STRING: broken 3"
    assert re.fullmatch(
        r"STRING: \d{4}-\d{1,2}-\d{1,2},\d{1,2}:\d{1,2}:\d{1,2}\.\d,\+0:0",
        b['DNA-AGENT-MIB::dnaResultTime."local"."Test3"'],
    )
    assert b["DNA-AGENT-MIB::dnaNotifyPreviousStatus.0"] == "INTEGER: ok(1)"
    assert b["DNA-AGENT-MIB::dnaNotifySequence.0"] == f"Gauge32: {seq}"
    assert b["DNA-AGENT-MIB::dnaNotifyMessage.0"] == "STRING: local.Test3 failed: broken 3"


def assert_in_order_at_least_once(
    received: list[Received], expected: list[int], version: str
) -> None:
    """Every expected inform arrived, first arrivals in order, none more than twice."""
    seqs = [r.sequence for r in received if r.pdu == "INFORM" and r.version == version]
    counts = Counter(seqs)
    assert set(counts) == set(expected), (version, seqs)
    assert max(counts.values()) <= 2, (version, seqs)
    first = list(dict.fromkeys(seqs))
    assert first == sorted(first), (version, seqs)


def test_manager_down_then_back(trapd: Trapd, harness_factory: Any) -> None:
    """Informs raised while snmptrapd is down all arrive, in order, after it returns.

    A scaled-down "manager down for an hour": snmptrapd is stopped for 20 s
    while five events are raised, then restarted on the same port.
    """
    port = trapd.port
    h = harness_factory({"inform_targets": [v2c(port), v3("informuser", port)], "retry_max": 4.0})
    h.start()
    seqs = [h.fire(0)]
    wait_until(lambda: len(trapd.received()) >= 2, 15, "the first informs")
    trapd.stop()
    down = time.monotonic()
    for n in range(1, 6):
        seqs.append(h.fire(n))
        time.sleep(1)
    status = h.status()
    assert status["pending"] == 10, status
    time.sleep(max(0.0, 20 - (time.monotonic() - down)))
    retried = sum(t["retried"] for t in h.status()["targets"])
    assert retried >= 4  # it kept trying while the manager was away
    trapd.start()
    wait_until(
        lambda: h.status()["pending"] == 0,
        40,
        "every inform to be acknowledged",
        lambda: explain(h, trapd),
    )
    got = trapd.received()
    assert_in_order_at_least_once(got, seqs, "v2c")
    assert_in_order_at_least_once(got, seqs, "v3")


def test_agent_killed_with_informs_pending(tmp_path: Path, harness_factory: Any) -> None:
    """SIGKILLed twice with informs pending, the agent still delivers every one.

    First kill: snmptrapd is not running, five informs are only in the queue.
    Second kill: snmptrapd runs and informs are on the wire. After the last
    start every inform has arrived, in order, and none more than twice.
    """
    trapd = Trapd(tmp_path / "trapd", free_port())
    port = trapd.port
    settings = {"inform_targets": [v2c(port), v3("informuser", port)]}
    try:
        h1 = harness_factory(settings)
        h1.start()
        seqs = [h1.fire(n) for n in range(5)]
        h1.kill()
        trapd.start()
        h2 = harness_factory(settings)
        h2.start()
        seqs += [h2.fire(n) for n in range(5, 30)]
        wait_until(
            lambda: len(trapd.received()) >= 12, 20, "some informs after the restart", interval=0.01
        )
        h2.kill()
        left = NotificationQueue(h2.state / QUEUE_FILE)
        pending = left.pending()
        left.close()
        assert pending > 0, "everything was acknowledged before the kill: nothing was tested"
        h3 = harness_factory(settings)
        h3.start()
        wait_until(
            lambda: h3.status()["pending"] == 0,
            40,
            "every inform to be acknowledged",
            lambda: explain(h3, trapd),
        )
        got = trapd.received()
        assert_in_order_at_least_once(got, seqs, "v2c")
        assert_in_order_at_least_once(got, seqs, "v3")
    finally:
        trapd.stop()


# -- the harness program -----------------------------------------------------


def harness_main(config_path: str, state_dir: str) -> None:
    """Run NotificationService on the asyncio reactor; commands on stdin.

    ``fire N`` raises a test-failed event for local.TestN and answers
    ``queued SEQ``; ``status`` answers with the service's status as JSON.
    """
    import dataclasses

    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import reactor, stdio
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.protocols.basic import LineReceiver

    from dnaagent.mediator.interface import Status, TestResult
    from dnaagent.mediator.triggers import Event, Triggers
    from dnaagent.snmp.notify.service import NotificationService
    from dnaagent.snmp.notify.settings import NotifySection

    os.makedirs(state_dir, exist_ok=True)
    log_file = open(os.path.join(state_dir, "harness.log"), "a")  # noqa: SIM115
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log_file)], redirectStandardIO=False)
    with open(config_path) as f:
        section = NotifySection(**json.load(f))
    for field in dataclasses.fields(NotifySection):
        check = field.metadata["check"]
        problem = check(getattr(section, field.name)) if check else None
        if problem:
            raise SystemExit(f"{field.name}: {problem}")
    triggers = Triggers()
    service = NotificationService(
        section, reactor, triggers, state_dir, engine_id=bytes.fromhex(ENGINE_ID)
    )

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            words = line.decode().split()
            if words[:1] == ["fire"]:
                n = int(words[1])
                result = TestResult(
                    "local", f"Test{n}", Status.ERROR, f"broken {n}", {}, time.time(), 0.01
                )
                seq = service.on_event(
                    Event("test-failed", result, Status.OK, f"local.Test{n} failed: broken {n}")
                )
                self.sendLine(f"queued {seq}".encode())
            elif words[:1] == ["status"]:
                self.sendLine(json.dumps(service.status()).encode())

        def connectionLost(self, reason: object = None) -> None:
            if reactor.running:
                reactor.stop()

    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    stdio.StandardIO(Commands())
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__" and sys.argv[1:2] == ["harness"]:
    harness_main(sys.argv[2], sys.argv[3])
