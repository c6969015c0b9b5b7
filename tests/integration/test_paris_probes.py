"""Real Paris traceroute probes in a routed namespace topology.

::

    mon --A-- r1 --B-- r2 --C-- r3 --D-- dst1
                        \\
                         E-- r4 --F-- dst2

Two paths sharing r1 and r2. Link X uses 198.51.100.4k/30 (IPv4, the lower address on
the left) and 2001:db8:X::/64 (``::1`` left, ``::2`` right); the destinations are
203.0.113.2 / 2001:db8:d::2 and 203.0.113.6 / 2001:db8:f::2. Routers forward, have
rp_filter off and no ICMP rate limit, so every probe gets its answer. Routers answer
from the interface facing the monitor.

The probes run inside the monitor namespace (``python -m dnaagent.measure.paris
--json``), as root with raw sockets and as ``nobody`` (uid dropped inside the
interpreter) with IP_RECVERR and unprivileged ICMP sockets. A packet capture on r1's
interface towards the monitor (an AF_PACKET socket, run in r1) checks that the flow
identifier of every probe to one destination is the same whatever its TTL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .netns import Lab, Namespace, unavailable_reason, wait_for

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")

ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}

# link name -> (left namespace role, right role, index for 198.51.100.4k/30)
LINKS = {
    "a": ("mon", "r1", 0),
    "b": ("r1", "r2", 1),
    "c": ("r2", "r3", 2),
    "d": ("r3", "dst1", None),
    "e": ("r2", "r4", 3),
    "f": ("r4", "dst2", None),
}
V4_DST_LINKS = {"d": ("203.0.113.1", "203.0.113.2"), "f": ("203.0.113.5", "203.0.113.6")}

DST1_V4, DST2_V4 = "203.0.113.2", "203.0.113.6"
DST1_V6, DST2_V6 = "2001:db8:d::2", "2001:db8:f::2"
UNREACHABLE_NET, SILENT_NET = "203.0.113.64/26", "203.0.113.128/25"
# r3 refuses these with the ICMP unreachable code the route type sends: IPv4 "unreachable"
# host unreachable (1), "prohibit" communication prohibited (13), "throw" (no route left)
# network unreachable (0); IPv6 "unreachable" no route (0), "prohibit" admin prohibited (1)
PROHIBIT_NET, THROW_NET = "203.0.113.32/28", "203.0.113.48/28"
UNREACHABLE_NET6, PROHIBIT_NET6 = "2001:db8:d:1::/64", "2001:db8:d:2::/64"


def v4(link: str, side: int) -> str:
    """The IPv4 address of side 0 (left) or 1 (right) of a link."""
    if link in V4_DST_LINKS:
        return V4_DST_LINKS[link][side]
    index = LINKS[link][2]
    assert index is not None
    return f"198.51.100.{4 * index + 1 + side}"


def v6(link: str, side: int) -> str:
    """The IPv6 address of side 0 (left) or 1 (right) of a link."""
    return f"2001:db8:{link}::{side + 1}"


#: The hop-by-hop responders (routers answer from the interface facing the monitor).
PATHS = {
    DST1_V4: [v4("a", 1), v4("b", 1), v4("c", 1), DST1_V4],
    DST2_V4: [v4("a", 1), v4("b", 1), v4("e", 1), DST2_V4],
    DST1_V6: [v6("a", 1), v6("b", 1), v6("c", 1), DST1_V6],
    DST2_V6: [v6("a", 1), v6("b", 1), v6("e", 1), DST2_V6],
}

# Routes: (role, prefix, via link, via side). Defaults point towards the monitor.
ROUTES4 = [
    ("mon", "default", "a", 1),
    ("r1", "203.0.113.0/24", "b", 1),
    ("r1", "198.51.100.8/29", "b", 1),
    ("r2", "default", "b", 0),
    ("r2", "203.0.113.0/30", "c", 1),
    ("r2", "203.0.113.4/30", "e", 1),
    ("r2", "203.0.113.64/26", "c", 1),
    ("r2", "203.0.113.128/25", "c", 1),
    ("r2", "203.0.113.32/27", "c", 1),
    ("r3", "default", "c", 0),
    ("r4", "default", "e", 0),
    ("dst1", "default", "d", 0),
    ("dst2", "default", "f", 0),
]
ROUTES6 = [
    ("mon", "default", "a", 1),
    ("r1", "2001:db8::/32", "b", 1),
    ("r2", "default", "b", 0),
    ("r2", "2001:db8:c::/47", "c", 1),  # c and d
    ("r2", "2001:db8:e::/47", "e", 1),  # e and f
    ("r3", "default", "c", 0),
    ("r4", "default", "e", 0),
    ("dst1", "default", "d", 0),
    ("dst2", "default", "f", 0),
]

CAPTURE = r"""
import json, os, select, socket, struct, sys
dev, ready, stop = sys.argv[1], sys.argv[2], sys.argv[3]

def csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
s.bind((dev, 0))
open(ready, "w").close()
out = []
while not os.path.exists(stop) and len(out) < 5000:
    if not select.select([s], [], [], 0.1)[0]:
        continue
    data, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    version = data[0] >> 4
    if version == 4:
        ihl = (data[0] & 15) * 4
        proto, ttl = data[9], data[8]
        src, dst = data[12:16], data[16:20]
        l4 = data[ihl:struct.unpack_from("!H", data, 2)[0]]
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
        family = socket.AF_INET
    elif version == 6:
        proto, ttl = data[6], data[7]
        src, dst = data[8:24], data[24:40]
        l4 = data[40:40 + struct.unpack_from("!H", data, 4)[0]]
        pseudo = src + dst + struct.pack("!I3xB", len(l4), proto)
        family = socket.AF_INET6
    else:
        continue
    # the checksum as the wire must carry it, computed from the packet's own bytes
    # (veth leaves UDP checksums to an offload that never happens)
    zeroed = l4[:6] + b"\0\0" + l4[8:] if proto == 17 else l4[:2] + b"\0\0" + l4[4:]
    value = csum((b"" if proto == 1 else pseudo) + zeroed)
    src, dst = socket.inet_ntop(family, src), socket.inet_ntop(family, dst)
    if proto == 17 and len(l4) >= 8:
        sport, dport = struct.unpack_from("!HH", l4)
        out.append({"src": src, "dst": dst, "proto": "udp", "ttl": ttl,
                    "flow": [sport, dport, value or 0xFFFF]})
    elif proto in (1, 58) and len(l4) >= 8 and l4[0] in (8, 128):
        ident, seq = struct.unpack_from("!HH", l4, 4)
        out.append({"src": src, "dst": dst, "proto": "icmp", "ttl": ttl,
                    "flow": [ident, value], "seq": seq})
print(json.dumps(out))
"""


class Topology:
    """The namespaces of the module docstring."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.ns: dict[str, Namespace] = {}
        for role in ("mon", "r1", "r2", "r3", "r4", "dst1", "dst2"):
            ns = lab.namespace(role)
            self.ns[role] = ns
            if role.startswith("r"):
                ns.sysctl(ROUTER_SYSCTLS)
        # unprivileged ICMP sockets for every group in the monitor namespace
        self.ns["mon"].sysctl({"net.ipv4.ping_group_range": "0 2147483647"})
        for link, (left, right, _index) in LINKS.items():
            ldev, rdev = f"{link}-{right}"[:15], f"{link}-{left}"[:15]
            lab.veth(self.ns[left], ldev, self.ns[right], rdev)
            for side, (role, dev) in enumerate(((left, ldev), (right, rdev))):
                ns = self.ns[role]
                ns.sysctl(
                    {
                        f"net.ipv4.conf.{dev.replace('.', '/')}.rp_filter": "0",
                        f"net.ipv6.conf.{dev}.accept_dad": "0",
                    }
                )
                prefix4 = 30
                ns.ip("addr", "add", f"{v4(link, side)}/{prefix4}", "dev", dev)
                ns.ip("addr", "add", f"{v6(link, side)}/64", "dev", dev, "nodad")
        self.dev_of = {
            (role, link): (f"{link}-{right}" if role == left else f"{link}-{left}")[:15]
            for link, (left, right, _i) in LINKS.items()
            for role in (left, right)
        }
        for role, prefix, link, side in ROUTES4:
            self.ns[role].ip(
                "route", "add", prefix, "via", v4(link, side), "dev", self.dev_of[(role, link)]
            )
        for role, prefix, link, side in ROUTES6:
            self.ns[role].ip(
                "-6",
                "route",
                "add",
                prefix,
                "via",
                v6(link, side),
                "dev",
                self.dev_of[(role, link)],
            )
        # r3 refuses 203.0.113.64/26 (ICMP unreachable) and drops 203.0.113.128/25
        self.ns["r3"].ip("route", "add", "unreachable", UNREACHABLE_NET)
        self.ns["r3"].ip("route", "add", "blackhole", SILENT_NET)
        self.ns["r3"].ip("route", "add", "prohibit", PROHIBIT_NET)
        self.ns["r3"].ip("route", "add", "throw", THROW_NET)
        self.ns["r3"].ip("-6", "route", "add", "unreachable", UNREACHABLE_NET6)
        self.ns["r3"].ip("-6", "route", "add", "prohibit", PROHIBIT_NET6)
        for dst in (DST1_V4, DST2_V4, DST1_V6, DST2_V6):
            wait_for(lambda d=dst: self.ns["mon"].ping(d, timeout=1), 20, f"{dst} to answer")

    def paris(self, *args: str, unprivileged: bool = False, timeout: float = 60) -> Any:
        """Run ``python -m dnaagent.measure.paris --json ARGS`` in the monitor namespace."""
        argv: list[str] = [sys.executable, "-m", "dnaagent.measure.paris", "--json", *args]
        if unprivileged:
            # Become nobody inside the interpreter, after the imports: the interpreter and
            # the test venv may live where nobody cannot read (/root, tox's 0700 .tox).
            # Leaving uid 0 clears every capability, so the probes run as any user would.
            argv = [sys.executable, "-c", DROP_TO_NOBODY, "--json", *args]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        done = self.ns["mon"].run(*argv, check=False, timeout=timeout, env=env)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"paris exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
            ) from None


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The topology, built once for the module and removed afterwards."""
    lab = Lab(tmp_path_factory.mktemp("paris"))
    try:
        yield Topology(lab)
    finally:
        lab.close()


class Capture:
    """A packet capture on one interface of one namespace (AF_PACKET, in Python)."""

    def __init__(self, topo: Topology, role: str, dev: str) -> None:
        work = topo.lab.workdir
        stamp = f"{role}-{dev}-{time.monotonic_ns()}"
        self.ready, self.stop = work / f"ready-{stamp}", work / f"stop-{stamp}"
        self.out = work / f"capture-{stamp}.json"
        ns = topo.ns[role]
        self.popen = subprocess.Popen(
            ns.argv(sys.executable, "-c", CAPTURE, dev, str(self.ready), str(self.stop)),
            stdout=open(self.out, "wb"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_for(lambda: self.ready.exists() or self.popen.poll() is not None, 20, "capture")
        assert self.popen.poll() is None, self.out.read_text()

    def packets(self) -> list[dict[str, Any]]:
        """Stop the capture; the probe packets it saw."""
        Path(self.stop).touch()
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)
            raise
        return json.loads(self.out.read_text())


DROP_TO_NOBODY = """
import os, sys
import json, argparse, ipaddress, socket, select, errno, struct
from twisted.internet import reactor, task, defer
from dnaagent.measure import paris
from dnaagent.dts import realprober, stopsets, doubletree, export
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
assert os.geteuid() == 65534
with open("/proc/self/status") as f:
    eff = [l for l in f if l.startswith("CapEff:")][0].split()[1]
assert int(eff, 16) == 0, eff
sys.exit(paris.main(sys.argv[1:]))
"""


MATRIX = [
    (protocol, family, unprivileged)
    for protocol in ("udp", "icmp")
    for family in (4, 6)
    for unprivileged in (False, True)
]


@pytest.mark.parametrize(("protocol", "family", "unprivileged"), MATRIX)
def test_hops_equal_topology_with_constant_flow(
    topo: Topology, protocol: str, family: int, unprivileged: bool
) -> None:
    """Every hop answers from the namespace topology; each destination keeps one flow."""
    dsts = (DST1_V4, DST2_V4) if family == 4 else (DST1_V6, DST2_V6)
    capture = Capture(topo, "r1", topo.dev_of[("r1", "a")])
    mode = "dgram" if unprivileged else "raw"
    result = topo.paris(
        "--protocol", protocol, "--mode", mode, "--timeout", "3", *dsts, unprivileged=unprivileged
    )
    packets = capture.packets()
    assert "error" not in result, result
    assert result["mode"] == mode
    for trace in result["traces"]:
        dst = trace["destination"]
        hops = trace["hops"]
        assert [h["from"] for h in hops] == PATHS[dst], trace
        assert [h["kind"] for h in hops] == ["time_exceeded"] * 3 + ["destination_reached"]
        assert trace["forward_stop"] == "destination_reached"
        assert all(h["rtt"] is not None and h["rtt"] >= 0 for h in hops)
        if not unprivileged:
            assert all(h["reply_ttl"] for h in hops)  # raw sockets read the reply TTL
        # the prober's own account: one flow per destination
        sent = [s for s in result["sent"] if s["destination"] == dst]
        assert sorted(s["ttl"] for s in sent) == [1, 2, 3, 4]
        flows = {tuple(v for k, v in sorted(s.items()) if k not in ("ttl", "seq")) for s in sent}
        assert len(flows) == 1
        # the wire: every probe of this destination crossed r1 with the same flow fields
        wire = [p for p in packets if p["dst"] == dst and p["proto"] == protocol]
        assert sorted(p["ttl"] for p in wire) == [1, 2, 3, 4], wire
        assert len({tuple(p["flow"]) for p in wire}) == 1, wire
        flow = wire[0]["flow"]
        if protocol == "udp":
            assert flow[:2] == [trace["flow"]["src_port"], 33434]
            assert flow[2] == trace["flow"]["checksum"]
        else:
            assert flow == [trace["flow"]["ident"], trace["flow"]["checksum"]]
            assert len({p["seq"] for p in wire}) == 4  # sequence varies, checksum does not
    assert result["counters"]["sent"] == 8
    assert result["counters"]["answered"] == 8
    assert result["counters"].get("timeouts", 0) == 0


def test_doubletree_global_stop_set(topo: Topology) -> None:
    """From h = 2 towards dst2, the known pair (r4, dst2) stops forwards at TTL 3."""
    r4 = v4("e", 1)
    result = topo.paris("--start-ttl", "2", "--global-stop", f"{r4},{DST2_V4}", DST2_V4)
    (trace,) = result["traces"]
    assert trace["forward_stop"] == "global_stop_set"
    assert trace["backward_stop"] == "ttl_one_reached"
    assert [(h["ttl"], h["from"]) for h in trace["hops"]] == [
        (1, v4("a", 1)),
        (2, v4("b", 1)),
        (3, r4),
    ]
    assert sorted(s["ttl"] for s in result["sent"]) == [1, 2, 3]  # the destination unprobed


def test_doubletree_local_stop_set_v6(topo: Topology) -> None:
    """From h = 3 towards dst1 (ICMPv6), r2 in the local stop set ends backwards at TTL 2."""
    r2 = v6("b", 1)
    result = topo.paris(
        "--protocol", "icmp", "--start-ttl", "3", "--local-stop", r2, DST1_V6, unprivileged=True
    )
    (trace,) = result["traces"]
    assert trace["forward_stop"] == "destination_reached"
    assert trace["backward_stop"] == "local_stop_set"
    assert [(h["ttl"], h["from"]) for h in trace["hops"]] == [
        (2, r2),
        (3, v6("c", 1)),
        (4, DST1_V6),
    ]


def test_chunk_traced_concurrently_discovers_the_topology(topo: Topology) -> None:
    """AsyncMonitor.probe_chunk over real probes: four destinations at once, from h = 2;
    the interfaces and links found are exactly those of the topology."""
    dsts = [DST1_V4, DST2_V4, DST1_V6, DST2_V6]
    result = topo.paris("--chunk", "--concurrency", "4", "--start-ttl", "2", *dsts)
    assert "error" not in result, result
    assert result["peak_in_flight"] == 4  # the first probe of every destination at once
    by_dst = {t["destination"]: t for t in result["traces"]}
    assert list(by_dst) == dsts  # records in target order
    interfaces, links = set(), set()
    for dst, trace in by_dst.items():
        assert trace["forward_stop"] == "destination_reached"
        # TTL 1 is probed either way; a trace that ends after another one found r1
        # stops there because r1 is in the local stop set by then
        assert trace["backward_stop"] in ("ttl_one_reached", "local_stop_set")
        path = [h["from"] for h in trace["hops"]]
        assert path == PATHS[dst]
        interfaces.update(path[:-1])
        links.update(zip(path[:-2], path[1:-1], strict=True))
    expected = {a for d in dsts for a in PATHS[d][:-1]}
    assert interfaces == expected
    assert links == {(p[i], p[i + 1]) for d in dsts for p in [PATHS[d]] for i in range(len(p) - 2)}
    assert result["counters"]["sent"] == 16 and result["counters"]["answered"] == 16


def test_silent_hops_and_gap_limit(topo: Topology) -> None:
    """r3 drops 203.0.113.128/25 before its TTL check: r1, r2, then silence to the gap limit."""
    result = topo.paris("--timeout", "1", "--gap-limit", "2", "--max-ttl", "8", "203.0.113.200")
    (trace,) = result["traces"]
    assert [h["from"] for h in trace["hops"]] == PATHS[DST1_V4][:2] + [None, None]
    assert [h["kind"] for h in trace["hops"]][2:] == ["no_reply", "no_reply"]
    assert trace["forward_stop"] == "gap_limit"
    assert result["counters"]["timeouts"] == 2


def test_router_unreachable_stops_forwards(topo: Topology) -> None:
    """r3 answers 'unreachable' for a prefix it refuses: forwards probing stops there."""
    result = topo.paris("--protocol", "icmp", "--max-ttl", "8", "203.0.113.70")
    (trace,) = result["traces"]
    assert [(h["from"], h["kind"]) for h in trace["hops"]] == [
        (PATHS[DST1_V4][0], "time_exceeded"),
        (PATHS[DST1_V4][1], "time_exceeded"),
        (PATHS[DST1_V4][2], "unreachable"),
    ]
    assert trace["forward_stop"] == "unreachable"


#: Seconds after which r3 may again send the ICMP errors of refusing routes. Linux sends
#: them (ip_error) through a token bucket per source address that no namespace sysctl
#: lifts: net.ipv4.route.error_cost (1 s a message) and error_burst (5 s, 5 messages) are
#: host-wide. Each run below needs at most three IPv4 ones; waiting refills the bucket.
ROUTE_ERROR_REFILL = 5.5


def wait_for_route_error_tokens() -> None:
    """Let r3's IPv4 route errors towards the monitor be sendable again (see above)."""
    time.sleep(ROUTE_ERROR_REFILL)


#: Destination -> the RIPE Atlas err of r3's answer (see the routes of r3).
REFUSED = {
    "203.0.113.70": "H",
    "203.0.113.40": "A",
    "203.0.113.50": "N",
    "2001:db8:d:1::1": "N",
    "2001:db8:d:2::1": "A",
}


@pytest.mark.parametrize(
    ("protocol", "unprivileged", "chunk"),
    [("udp", False, False), ("icmp", True, False), ("udp", True, True)],
)
def test_unreachable_codes_of_real_routers(
    topo: Topology, protocol: str, unprivileged: bool, chunk: bool
) -> None:
    """r3's unreachable, prohibit and throw routes answer with their ICMP codes; every
    hop at r3 carries the RIPE Atlas err of its code (raw sockets and error queues; the
    chunk's records keep it too), and forwards probing stops there."""
    args = ["--protocol", protocol, "--max-ttl", "8", "--timeout", "3", *REFUSED]
    if chunk:
        args = ["--chunk", "--concurrency", "5", *args]
    wait_for_route_error_tokens()
    result = topo.paris(*args, unprivileged=unprivileged)
    assert "error" not in result, result
    assert result["mode"] == ("dgram" if unprivileged else "raw")
    by_dst = {t["destination"]: t for t in result["traces"]}
    assert sorted(by_dst) == sorted(REFUSED)
    for dst, err in REFUSED.items():
        trace = by_dst[dst]
        path = PATHS[DST1_V6 if ":" in dst else DST1_V4]
        assert [(h["from"], h["kind"], h["err"]) for h in trace["hops"]] == [
            (path[0], "time_exceeded", None),
            (path[1], "time_exceeded", None),
            (path[2], "unreachable", err),
        ], trace
        assert trace["forward_stop"] == "unreachable"
    assert result["counters"]["sent"] == 15 and result["counters"]["answered"] == 15


def test_text_output_marks_unreachable_hops(topo: Topology) -> None:
    """Without --json the hop line ends with !N / !H / !A, as traceroute marks it."""
    argv = [sys.executable, "-m", "dnaagent.measure.paris", "--max-ttl", "8"]
    wait_for_route_error_tokens()
    done = topo.ns["mon"].run(*argv, "203.0.113.50", "203.0.113.70", check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("   3")]
    assert [(w[1], w[2], w[-1]) for w in lines] == [
        (PATHS[DST1_V4][2], "unreachable", "!N"),
        (PATHS[DST1_V4][2], "unreachable", "!H"),
    ], done.stdout
