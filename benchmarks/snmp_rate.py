"""SNMP GET rate and bulkwalk time: embedded agent, AgentX behind snmpd, snmpd alone.

Three agents serve the same 1,200 instances, dnaPeerTable of DNA-AGENT-MIB
with ``--rows`` rows (default 200) of six columns (address type, address,
port, RTT, last seen, peer ID):

embedded
    dnaagent's embedded agent (``dnaagent.snmp.embedded``, pysnmp with its
    fast path for v2c reads) in its own process on the asyncio reactor.
agentx
    a Net-SNMP ``snmpd`` as AgentX master (unix socket) with dnaagent's AgentX
    subagent (``dnaagent.snmp.agentx``) in its own process serving the tree.
snmpd
    the same ``snmpd`` binary serving the same table itself, from
    ``table dnaPeerTable`` / ``add_row`` lines of its configuration
    (Net-SNMP's table_dataset helper): the baseline of what a C agent does
    with this table, with the same values and types.

GET/s: a raw-UDP load generator sends SNMPv2c GETs of one varbind,
pre-encoded for each of the 1,200 instances, cycling through them, with
``--window`` requests in flight, until ``--gets`` answers (or
``--duration`` seconds); every answer is checked (request-id, no error, no
exception value). Bulkwalk: wall time of Net-SNMP's ``snmpbulkwalk -Cr10``
over the table (1,200 varbinds, tool start-up included), median of
``--walks`` runs after one warm-up. Everything is on 127.0.0.1 and a unix
socket in a temporary directory; every process started is ended by PID.

    python benchmarks/snmp_rate.py [--gets 30000] [--window 16] [--walks 9] [--json]

Targets: AgentX GET/s >= 0.9 x snmpd; AgentX bulkwalk <= 1.2 x snmpd;
embedded >= 3,000 GET/s.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import FIGURES, ROOT, dump_json

from dnaagent.snmp import mib
from dnaagent.snmp.tree import OID, MibTree, Value

COMMUNITY = b"public"
TABLE: OID = mib.DNA_PEER_TABLE
#: CPUs the agents run on, and CPUs of the load generator and snmpbulkwalk (see --pin).
AGENT_CPUS: set[int] = set()
CLIENT_CPUS: set[int] = set()
GOALS = {"agentx_vs_snmpd_get": 0.9, "agentx_vs_snmpd_bulkwalk": 1.2, "embedded_get": 3000.0}


# -- the served data -------------------------------------------------------------


def peer_row(i: int) -> list[tuple[OID, Value]]:
    """The six instances of row ``i`` of dnaPeerTable."""
    index = (i,)
    return [
        (mib.DNA_PEER_ADDRESS_TYPE + index, Value.integer(1)),
        (mib.DNA_PEER_ADDRESS + index, Value.octets(bytes([10, 0, i // 256, i % 256]))),
        (mib.DNA_PEER_PORT + index, Value.gauge32(4001)),
        (mib.DNA_PEER_RTT + index, Value.gauge32(i * 7000)),
        (mib.DNA_PEER_LAST_SEEN + index, Value.octets(bytes.fromhex("07ea0b170c000000"))),
        (mib.DNA_PEER_ID + index, Value.octets(bytes([i % 256]) * 20)),
    ]


def build_tree(rows: int) -> MibTree:
    """The tree both dnaagent front ends serve."""
    tree = MibTree()
    values: dict[OID, Value] = {}
    for i in range(1, rows + 1):
        values.update(peer_row(i))
    tree.replace_subtree(TABLE, values)
    return tree


def snmpd_table_lines(rows: int) -> list[str]:
    """snmpd.conf lines that make snmpd serve the same rows itself."""
    lines = ["table dnaPeerTable"]
    for i in range(1, rows + 1):
        cols = []
        for _, v in peer_row(i):
            cols.append("0x" + v.value.hex() if v.kind.name == "OCTETS" else str(v.value))
        lines.append(f"add_row dnaPeerTable {i} {' '.join(cols)}")
    return lines


def instance_oids(rows: int) -> list[OID]:
    """Every served instance, in OID order."""
    return [oid for oid, _ in build_tree(rows).walk()]


# -- servers (child processes) -----------------------------------------------------


def serve(kind: str, target: str, rows: int, state_dir: str) -> None:
    """Child process: serve the tree with the embedded agent or the AgentX subagent."""
    from dnaagent.tap import install_reactor

    reactor = install_reactor()
    tree = build_tree(rows)
    from dnaagent.snmp.writable import Writables

    if kind == "embedded":
        import asyncio

        from dnaagent.snmp.embedded import EmbeddedAgent
        from dnaagent.snmp.service import asyncio_loop
        from dnaagent.snmp.settings import SnmpSection

        loop = asyncio_loop(reactor)
        # pysnmp schedules its socket on asyncio's current loop, which must be the reactor's.
        asyncio.set_event_loop(loop)
        settings = SnmpSection(listen=["127.0.0.1"], port=int(target), community="public")
        agent = EmbeddedAgent(settings, tree, Writables(), state_dir, reactor, loop=loop)
        agent.listen()
        reactor.callWhenRunning(lambda: print("READY", flush=True))
    else:
        from dnaagent.snmp.agentx.settings import AgentxSection
        from dnaagent.snmp.agentx.subagent import AgentxSubagent

        section = AgentxSection(enabled=True, master=target, ping_interval=0)
        sub = AgentxSubagent(section, reactor, tree, Writables(), default_subtree=mib.DNA_AGENT)
        sub.startService()
        sub.when_open().addCallback(lambda _: print("READY", flush=True))
        reactor.addSystemEventTrigger("before", "shutdown", sub.stopService)
    reactor.run()


class Proc:
    """A child process ended by PID."""

    def __init__(
        self, args: list[str], log: Path, env: dict[str, str] | None = None, ready: bool = True
    ) -> None:
        self.log = log
        self.handle = log.open("ab")
        cpus = AGENT_CPUS

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.p = subprocess.Popen(
            args,
            preexec_fn=pin,
            stdout=subprocess.PIPE if ready else self.handle,
            stderr=self.handle,
            env=env,
            cwd=ROOT,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for the READY line of a serving child."""
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        os.set_blocking(self.p.stdout.fileno(), False)
        buf = b""
        while time.monotonic() < deadline:
            chunk = self.p.stdout.read() or b""
            buf += chunk
            if b"READY" in buf:
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.p.args[0]} did not start; see {self.log}")

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far."""
        import psutil

        t = psutil.Process(self.p.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        """Terminate by PID, kill if it lingers."""
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.handle.close()


def free_udp_port() -> int:
    """A free UDP port of 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_snmpd(tmp: Path, name: str, port: int, extra: list[str]) -> Proc:
    """A foreground snmpd with its own configuration; returns when it answers."""
    conf = tmp / f"{name}.conf"
    conf.write_text(
        "\n".join(
            [
                f"agentaddress udp:127.0.0.1:{port}",
                "rocommunity public 127.0.0.1",
                "dontLogTCPWrappersConnects yes",
                *extra,
            ]
        )
        + "\n"
    )
    persist = tmp / f"{name}-persist"
    persist.mkdir(exist_ok=True)
    env = dict(os.environ, MIBS="DNA-AGENT-MIB", SNMP_PERSISTENT_DIR=str(persist))
    proc = Proc(
        [
            "snmpd",
            "-f",
            "-Lo",
            "-C",
            "-I",
            "-smux",
            "-c",
            str(conf),
            "-M",
            str(ROOT / "mibs"),
        ],
        tmp / f"{name}.log",
        env=env,
        ready=False,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if probe(port):
            return proc
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"snmpd ({name}) did not answer; see {tmp / (name + '.log')}")


# -- SNMP load generator -------------------------------------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _oid(oid: OID) -> bytes:
    out = bytearray([40 * oid[0] + oid[1]])
    for arc in oid[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def get_request(oid: OID) -> tuple[bytearray, int]:
    """An SNMPv2c GET of ``oid`` with a 4-byte request-id; returns it and the id's offset."""
    rid_placeholder = b"\x02\x04\x7f\x7f\x7f\x7f"
    varbinds = _tlv(0x30, _tlv(0x30, _oid(oid) + b"\x05\x00"))
    pdu = _tlv(0xA0, rid_placeholder + b"\x02\x01\x00\x02\x01\x00" + varbinds)
    msg = _tlv(0x30, b"\x02\x01\x01" + _tlv(0x04, COMMUNITY) + pdu)
    return bytearray(msg), msg.index(rid_placeholder) + 2


def _header(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``pos``."""
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    return tag, pos, pos + n


def parse_response(buf: bytes) -> tuple[int, int, int]:
    """(request-id, error-status, tag of the first value) of a v2c Response."""
    _, pos, _ = _header(buf, 0)
    _, _, pos = _header(buf, pos)  # version
    _, _, pos = _header(buf, pos)  # community
    tag, pos, _ = _header(buf, pos)
    if tag != 0xA2:
        raise ValueError(f"not a Response PDU: tag {tag:#x}")
    _, start, end = _header(buf, pos)
    rid = int.from_bytes(buf[start:end], "big", signed=True)
    _, start, pos = _header(buf, end)
    status = int.from_bytes(buf[start:pos], "big")
    _, _, pos = _header(buf, pos)  # error-index
    _, pos, _ = _header(buf, pos)  # varbind list
    _, pos, _ = _header(buf, pos)  # varbind
    _, _, pos = _header(buf, pos)  # name
    return rid, status, buf[pos]


def probe(port: int) -> bool:
    """True when a GET of sysUpTime.0 is answered on ``port``."""
    request, at = get_request((1, 3, 6, 1, 2, 1, 1, 3, 0))
    struct.pack_into(">I", request, at, 0x01000001)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        try:
            s.sendto(bytes(request), ("127.0.0.1", port))
            s.recv(65535)
            return True
        except OSError:
            return False


def get_rate(
    port: int, oids: list[OID], count: int, window: int, duration: float, warmup: int = 500
) -> dict[str, Any]:
    """Send GETs with ``window`` in flight until ``count`` answers; return rate and checks."""
    templates = [get_request(oid) for oid in oids]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(1.0)
    pending: set[int] = set()
    next_rid = 0x01000000
    i = 0
    stats = {"answers": 0, "errors": 0, "exceptions": 0, "lost": 0}

    def send_one() -> None:
        nonlocal next_rid, i
        msg, at = templates[i % len(templates)]
        i += 1
        next_rid += 1
        struct.pack_into(">I", msg, at, next_rid)
        pending.add(next_rid)
        sock.send(msg)

    def run(n: int, limit: float) -> float:
        start = time.perf_counter()
        deadline = start + limit
        got = 0
        for _ in range(window):
            send_one()
        while got < n:
            try:
                data = sock.recv(65535)
            except TimeoutError:
                stats["lost"] += len(pending)
                pending.clear()
                if time.perf_counter() > deadline:
                    break
                for _ in range(window):
                    send_one()
                continue
            rid, status, tag = parse_response(data)
            if rid not in pending:
                continue
            pending.discard(rid)
            got += 1
            stats["answers"] += 1
            if status:
                stats["errors"] += 1
            elif tag in (0x80, 0x81, 0x82):
                stats["exceptions"] += 1
            if time.perf_counter() > deadline:
                break
            send_one()
        elapsed = time.perf_counter() - start
        # drain what is still in flight
        sock.settimeout(0.2)
        try:
            while pending:
                rid, _, _ = parse_response(sock.recv(65535))
                pending.discard(rid)
        except TimeoutError:
            pending.clear()
        sock.settimeout(1.0)
        return elapsed if got else float("nan"), got

    run(warmup, duration)
    for k in stats:
        stats[k] = 0
    elapsed, got = run(count, duration)
    sock.close()
    return {"gets_per_s": got / elapsed, "elapsed_s": elapsed, **stats}


def bulkwalk_times(port: int, walks: int, max_rep: int) -> dict[str, Any]:
    """Median wall time of snmpbulkwalk over the table, and the varbinds it returned."""
    cmd = [
        "snmpbulkwalk",
        "-v2c",
        "-c",
        "public",
        f"-Cr{max_rep}",
        "-On",
        "-t",
        "5",
        "-r",
        "0",
        f"udp:127.0.0.1:{port}",
        "." + ".".join(map(str, TABLE)),
    ]
    env = dict(os.environ, MIBS="")
    times = []
    varbinds = 0
    for n in range(walks + 1):
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        elapsed = time.perf_counter() - start
        if out.returncode != 0:
            raise RuntimeError(f"snmpbulkwalk failed: {out.stderr.strip()}")
        varbinds = sum(
            1
            for line in out.stdout.splitlines()
            if line.startswith(".1.") and "No more variables" not in line
        )
        if n:  # the first walk warms caches up
            times.append(elapsed * 1000)
    return {
        "bulkwalk_ms": statistics.median(times),
        "bulkwalk_min_ms": min(times),
        "bulkwalk_max_ms": max(times),
        "bulkwalk_varbinds": varbinds,
    }


# -- the run ------------------------------------------------------------------------


def measure(name: str, port: int, procs: list[Proc], args: argparse.Namespace) -> dict[str, Any]:
    """GET rate (with the servers' CPU time) and bulkwalk time of one agent."""
    oids = instance_oids(args.rows)
    print(f"[{name}] GET x {args.gets} ...", file=sys.stderr, flush=True)
    cpu0 = [p.cpu_seconds() for p in procs]
    rate = get_rate(port, oids, args.gets, args.window, args.duration)
    cpus = [p.cpu_seconds() - c for p, c in zip(procs, cpu0, strict=True)]
    cpu = sum(cpus)
    print(f"[{name}] bulkwalk x {args.walks} ...", file=sys.stderr, flush=True)
    walk = bulkwalk_times(port, args.walks, args.max_repetitions)
    answers = rate["answers"] or 1
    return {
        "agent": name,
        "instances": len(oids),
        **rate,
        "server_cpu_ms_per_1k_gets": 1000 * 1000 * cpu / answers,
        # the last process is dnaagent's (embedded agent or subagent); 0 for snmpd alone
        "dnaagent_cpu_ms_per_1k_gets": 1000 * 1000 * cpus[-1] / answers if name != "snmpd" else 0,
        **walk,
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start each agent in turn, measure it, stop it."""
    results = []
    with tempfile.TemporaryDirectory(prefix="dna-snmp-rate-") as tmpdir:
        tmp = Path(tmpdir)
        me = [sys.executable, str(Path(__file__).resolve())]
        if "embedded" in args.agents:
            port = free_udp_port()
            (tmp / "state").mkdir()
            child = Proc(
                [
                    *me,
                    "--serve",
                    "embedded",
                    "--target",
                    str(port),
                    "--rows",
                    str(args.rows),
                    "--state-dir",
                    str(tmp / "state"),
                ],
                tmp / "embedded.log",
            )
            try:
                child.wait_ready()
                results.append(measure("embedded", port, [child], args))
            finally:
                child.stop()
        if "agentx" in args.agents:
            port = free_udp_port()
            sock = tmp / "agentx.sock"
            master = start_snmpd(
                tmp,
                "master",
                port,
                ["master agentx", f"agentXSocket unix:{sock}", "agentXPerms 0600 0700"],
            )
            child = None
            try:
                child = Proc(
                    [
                        *me,
                        "--serve",
                        "agentx",
                        "--target",
                        f"unix:{sock}",
                        "--rows",
                        str(args.rows),
                    ],
                    tmp / "subagent.log",
                )
                child.wait_ready()
                results.append(measure("agentx", port, [master, child], args))
            finally:
                if child is not None:
                    child.stop()
                master.stop()
        if "snmpd" in args.agents:
            port = free_udp_port()
            native = start_snmpd(tmp, "native", port, snmpd_table_lines(args.rows))
            try:
                results.append(measure("snmpd", port, [native], args))
            finally:
                native.stop()
    return results


def ratios(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """AgentX against snmpd, and the embedded agent's rate, with the goals."""
    by = {r["agent"]: r for r in results}
    out: dict[str, float | None] = {}
    if "agentx" in by and "snmpd" in by:
        out["agentx_vs_snmpd_get"] = by["agentx"]["gets_per_s"] / by["snmpd"]["gets_per_s"]
        out["agentx_vs_snmpd_bulkwalk"] = by["agentx"]["bulkwalk_ms"] / by["snmpd"]["bulkwalk_ms"]
    if "embedded" in by:
        out["embedded_get"] = by["embedded"]["gets_per_s"]
        if "snmpd" in by:
            out["embedded_vs_snmpd_get"] = by["embedded"]["gets_per_s"] / by["snmpd"]["gets_per_s"]
    return out


def print_table(results: list[dict[str, Any]], r: dict[str, float | None]) -> None:
    """The side-by-side table and the ratios against their goals."""
    print(
        f"{'agent':<10} {'instances':>9} {'GET/s':>9} {'CPU ms/1k GET':>14} "
        f"{'bulkwalk ms':>12} {'(min-max)':>14} {'varbinds':>9} {'lost':>5} {'bad':>4}"
    )
    for x in results:
        print(
            f"{x['agent']:<10} {x['instances']:>9} {x['gets_per_s']:>9.0f} "
            f"{x['server_cpu_ms_per_1k_gets']:>14.0f} {x['bulkwalk_ms']:>12.1f} "
            f"{x['bulkwalk_min_ms']:>6.1f}-{x['bulkwalk_max_ms']:<7.1f} "
            f"{x['bulkwalk_varbinds']:>9} {x['lost']:>5} {x['errors'] + x['exceptions']:>4}"
        )
    print()
    for key, value in r.items():
        goal = GOALS.get(key)
        if value is None:
            continue
        if key == "embedded_get":
            verdict = f"goal >= {goal:,.0f}: {'met' if value >= goal else 'MISSED'}"
            print(f"embedded GET/s                 {value:>8.0f}   ({verdict})")
        elif goal is None:
            print(f"{key:<30} {value:>8.2f}")
        else:
            ok = value >= goal if key.endswith("_get") else value <= goal
            sign = ">=" if key.endswith("_get") else "<="
            print(f"{key:<30} {value:>8.2f}   (goal {sign} {goal}: {'met' if ok else 'MISSED'})")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with --serve, one of its servers)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200, help="table rows (x 6 instances)")
    parser.add_argument("--gets", type=int, default=30_000, help="GETs measured per agent")
    parser.add_argument("--window", type=int, default=16, help="GETs in flight")
    parser.add_argument("--duration", type=float, default=30.0, help="cap of one GET run (s)")
    parser.add_argument("--walks", type=int, default=9, help="timed bulkwalks per agent")
    parser.add_argument("--max-repetitions", type=int, default=10, help="snmpbulkwalk -Cr")
    parser.add_argument(
        "--agents", default="embedded,agentx,snmpd", help="comma-separated subset to measure"
    )
    parser.add_argument(
        "--pin",
        default="",
        help="AGENT_CPUS/CLIENT_CPUS, e.g. 0/1: agents on CPU 0, load generator on CPU 1",
    )
    parser.add_argument("--csv", type=Path, default=FIGURES / "snmp_rate.csv")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--serve", choices=["embedded", "agentx"], help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.target, args.rows, args.state_dir)
        return
    args.agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    if args.pin:
        agents, _, clients = args.pin.partition("/")
        AGENT_CPUS.update(int(c) for c in agents.split(",") if c)
        CLIENT_CPUS.update(int(c) for c in clients.split(",") if c)
        if CLIENT_CPUS:
            os.sched_setaffinity(0, CLIENT_CPUS)
    if shutil.which("snmpd") is None or shutil.which("snmpbulkwalk") is None:
        sys.exit("needs Net-SNMP: apt install snmpd snmp")
    load_before = os.getloadavg()[0]
    results = run(args)
    r = ratios(results)
    load = {"loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0]}
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    if args.json:
        dump_json({"results": results, "ratios": r, "goals": GOALS, **load, "csv": str(args.csv)})
    else:
        print_table(results, r)
        print(
            f"\nload average (1 min) {load['loadavg_1min_before']:.2f} before, "
            f"{load['loadavg_1min_after']:.2f} after; CSV: {args.csv}"
        )


if __name__ == "__main__":
    main()
