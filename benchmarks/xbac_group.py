"""XBAC with real agents: prediction answer time and group traffic with 200 clusters.

Starts ``--agents`` (5) real ``twistd -n dnaagent`` processes, each on its own
loopback address (127.0.0.11, .12, ...) with a free overlay port, no schedule,
no SNMP, no active or passive measurements of their own. They form their XBAC
group over the overlay. Measurements are fed through the control API only:
every agent gets a series to each of ``--clusters`` (200) remote hosts, placed
at ``--places`` (200) distances, each with an RTT pattern of its own that steps
every 450 s (one profile bin), so that the clusters stay apart as remote hosts
of different places do; then one new value per host every ``--feed-interval``
seconds, through a ``--warmup`` and the measured window. The remote hosts are
loopback addresses of 127.100.0.0/16, so that whatever the agents send to them
(the "is it an XBAC host?" question of §4.5) stays on this machine.

Figures:

* **answer time**: ``--requests`` prediction requests spread over the agents
  (own series, hosts only another member measured, unknown hosts), timed by
  the service (``elapsed_ms``: from the request reaching XBAC to its answer) and
  by the client (the whole HTTP round trip); p50 and p99. Target: p99 <= 50 ms.
* **traffic per node**: overlay bytes sent and received per node per second
  over ``--window`` seconds (everything on the UDP socket, Kademlia upkeep
  included), and the XBAC message bodies alone. Target: <= 300 B/s (the
  thesis measured 2.27 KB/s).

Run: ``python benchmarks/xbac_group.py [--json]``. Needs nothing but loopback.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (import path)
from _common import dump_json

from tests.integration.agents import AgentFleet, AgentProcess, free_udp_ports

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def target(i: int) -> str:
    """The i-th remote host: a loopback address (nothing leaves the machine)."""
    return f"127.100.{i // 250}.{i % 250 + 1}"


def base_rtt(i: int, places: int) -> float:
    """RTT level (ms) of remote host i: one of ``places`` distances (10-250 ms)."""
    return 10.0 + 240.0 * (i % places) / max(1, places - 1)


def pattern(i: int, now: float) -> float:
    """Host i's own RTT pattern (ms): a step of 0-60 ms that changes every 450 s bin."""
    return 15.0 * random.Random(i * 100_003 + int(now // 450)).randrange(5)


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[k]


def log(text: str) -> None:
    """Progress on stderr."""
    print(text, file=sys.stderr, flush=True)


def start(fleet: AgentFleet, count: int, timeout: float) -> list[AgentProcess]:
    """The agents, each on its own loopback address, seeded from the first, started one
    after the other once the previous one has its XBAC role (so that the later ones find
    the group's leader in the DHT instead of all founding groups at once)."""
    agents: list[AgentProcess] = []
    extra = ["--overlay-rejoin-interval", "5"]
    for i in range(count):
        host = f"127.0.0.{11 + i}"
        (port,) = free_udp_ports(1, host)
        seeds = [agents[0].address] if agents else []
        agent = fleet.spawn(f"xbac{i}", host=host, port=port, seeds=seeds, extra=extra)
        agents.append(agent)
        fleet.wait_ready([agent])
        wait_group([agent], timeout)
    return agents


def wait_group(agents: list[AgentProcess], timeout: float) -> list[dict[str, Any]]:
    """Wait until every agent has a role in a group; return their XBAC status."""
    deadline = time.monotonic() + timeout
    while True:
        st = [a.get("/api/v1/xbac") for a in agents]
        if all(s["role"] in ("leader", "member", "backup") for s in st):
            return st
        if time.monotonic() > deadline:
            return st
        time.sleep(1.0)


def feed(agents: list[AgentProcess], clusters: int, places: int, values: int, t: int) -> int:
    """Every agent measures every remote host (``values`` values each); return values fed."""
    fed = 0
    now = time.time()
    for k, a in enumerate(agents):
        offset = 0.7 * k
        for i in range(clusters):
            level = base_rtt(i, places) + pattern(i, now) + offset
            rtts = [round(level + ((t + j + i) % 3) * 0.3, 2) for j in range(values)]
            out = a.post(
                "/api/v1/xbac/measurements",
                {"host": target(i), "rtts_ms": rtts, "interval_s": 30.0},
            )
            fed += int(out["kept"])
    return fed


def overlay_bytes(a: AgentProcess) -> tuple[int, int]:
    """(bytes in, bytes out) of the agent's overlay socket."""
    c = a.get("/api/v1/overlay")["counters"]
    return int(c.get("bytes_in", 0)), int(c.get("bytes_out", 0))


def overlay_counters(a: AgentProcess) -> dict[str, int]:
    """The agent's overlay counters (messages, bytes, RPCs)."""
    return {k: int(v) for k, v in a.get("/api/v1/overlay")["counters"].items()}


def xbac_traffic(a: AgentProcess) -> dict[str, dict[str, int]]:
    """XBAC messages and body bytes by message type, from the group node's counters."""
    return a.get("/api/v1/xbac")["engine"].get("traffic", {})


def by_type(
    after: list[dict[str, dict[str, int]]], before: list[dict[str, dict[str, int]]], s: float
) -> dict[str, dict[str, float]]:
    """Messages and body bytes sent per node per second, by XBAC message type."""
    n = len(after)
    out: dict[str, dict[str, float]] = {}
    for name in sorted({k for t in after for k in t}):
        msgs = sum(t.get(name, {}).get("out", 0) for t in after)
        msgs -= sum(t.get(name, {}).get("out", 0) for t in before)
        nbytes = sum(t.get(name, {}).get("out_bytes", 0) for t in after)
        nbytes -= sum(t.get(name, {}).get("out_bytes", 0) for t in before)
        if msgs or nbytes:
            out[name] = {
                "msgs_per_s": round(msgs / n / s, 3),
                "bytes_per_s": round(nbytes / n / s, 1),
            }
    return out


def xbac_bytes(a: AgentProcess) -> tuple[int, int]:
    """(bytes in, bytes out) of XBAC message bodies, from the group node's counters."""
    traffic = a.get("/api/v1/xbac")["engine"].get("traffic", {})
    return (
        sum(int(v.get("in_bytes", 0)) for v in traffic.values()),
        sum(int(v.get("out_bytes", 0)) for v in traffic.values()),
    )


def timed_predictions(
    agents: list[AgentProcess], clusters: int, requests: int
) -> tuple[list[float], list[float], dict[str, int], dict[str, list[float]]]:
    """Ask ``requests`` predictions; return service times, client times (ms), answer counts
    and the service times by outcome (answered or without basis)."""
    server: list[float] = []
    client: list[float] = []
    by_outcome: dict[str, list[float]] = {"predicted": [], "none": []}
    counts = {"predicted": 0, "none": 0}
    kinds = ("own", "other", "unknown")
    for r in range(requests):
        a = agents[r % len(agents)]
        kind = kinds[r % 3]
        if kind == "own":
            host = target(r % clusters)
        elif kind == "other":
            host = target(clusters + (r % 50))  # measured by the first agent only
            if a is agents[0]:
                a = agents[1]
        else:
            host = f"127.101.{r // 250}.{r % 250 + 1}"
        t0 = time.perf_counter()
        out = a.post("/api/v1/xbac/predict/rtt", {"host": host})
        client.append((time.perf_counter() - t0) * 1000)
        server.append(float(out["elapsed_ms"]))
        outcome = "predicted" if out["predicted"] else "none"
        counts[outcome] += 1
        by_outcome[outcome].append(float(out["elapsed_ms"]))
    return server, client, counts, by_outcome


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=5, help="real agents started (5)")
    ap.add_argument("--clusters", type=int, default=200, help="remote hosts measured (200)")
    ap.add_argument("--places", type=int, default=200, help="distinct RTT levels (200)")
    ap.add_argument("--window", type=float, default=300.0, help="seconds of traffic measured")
    ap.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="seconds of feed rounds before the measured window (0: measure from the start)",
    )
    ap.add_argument("--feed-interval", type=float, default=60.0, help="seconds between feeds")
    ap.add_argument("--requests", type=int, default=300, help="prediction requests timed")
    ap.add_argument("--group-timeout", type=float, default=120.0, help="seconds to form a group")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if not 2 <= args.agents <= 20 or not 1 <= args.clusters <= 5000:
        ap.error("--agents 2..20 and --clusters 1..5000")
    with tempfile.TemporaryDirectory(prefix="xbac-group-") as tmp:
        fleet = AgentFleet(Path(tmp))
        try:
            log(f"starting {args.agents} agents on loopback")
            agents = start(fleet, args.agents, args.group_timeout)
            st = wait_group(agents, args.group_timeout)
            roles = [s["role"] for s in st]
            groups = sorted({s["group"] for s in st})
            log(f"roles {roles}, {len(groups)} group(s)")
            log(f"feeding {args.clusters} remote hosts to every agent")
            fed = feed(agents, args.clusters, args.places, 12, 0)
            # Hosts only the first agent measured: cold requests for the others.
            for i in range(50):
                agents[0].post(
                    "/api/v1/xbac/measurements",
                    {"host": target(args.clusters + i), "rtts_ms": [20.0] * 12},
                )
            time.sleep(5.0)
            rounds = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.warmup:
                time.sleep(min(args.feed_interval, max(0.0, args.warmup - (time.monotonic() - t0))))
                rounds += 1
                fed += feed(agents, args.clusters, args.places, 1, rounds)
                log(f"warm-up {time.monotonic() - t0:.0f} s of {args.warmup:.0f}: round {rounds}")
            before = [overlay_bytes(a) for a in agents]
            xb_before = [xbac_bytes(a) for a in agents]
            types_before = [xbac_traffic(a) for a in agents]
            ov_before = [overlay_counters(a) for a in agents]
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.window:
                time.sleep(min(args.feed_interval, max(0.0, args.window - (time.monotonic() - t0))))
                if time.monotonic() - t0 >= args.window:
                    break
                rounds += 1
                fed += feed(agents, args.clusters, args.places, 1, rounds)
                log(f"window {time.monotonic() - t0:.0f} s of {args.window:.0f}: round {rounds}")
            elapsed = time.monotonic() - t0
            after = [overlay_bytes(a) for a in agents]
            xb_after = [xbac_bytes(a) for a in agents]
            types_after = [xbac_traffic(a) for a in agents]
            ov_after = [overlay_counters(a) for a in agents]
            log(f"timing {args.requests} predictions")
            server, client, counts, by_outcome = timed_predictions(
                agents, args.clusters, args.requests
            )
            final = [a.get("/api/v1/xbac") for a in agents]
        finally:
            fleet.close()
    per_node_out = [(a[1] - b[1]) / elapsed for a, b in zip(after, before, strict=True)]
    per_node_in = [(a[0] - b[0]) / elapsed for a, b in zip(after, before, strict=True)]
    xb_out = [(a[1] - b[1]) / elapsed for a, b in zip(xb_after, xb_before, strict=True)]
    xb_in = [(a[0] - b[0]) / elapsed for a, b in zip(xb_after, xb_before, strict=True)]
    result = {
        "agents": args.agents,
        "clusters_fed": args.clusters,
        "roles": [s["role"] for s in final],
        "groups": len({s["group"] for s in final}),
        "clusters_kept": [s["clusters"] for s in final],
        "measurements_fed": fed,
        "warmup_s": args.warmup,
        "window_s": round(elapsed, 1),
        "answer_ms": {
            "service_p50": round(quantile(server, 0.5), 3),
            "service_p99": round(quantile(server, 0.99), 3),
            "client_p50": round(quantile(client, 0.5), 3),
            "client_p99": round(quantile(client, 0.99), 3),
            "answered_p99": round(quantile(by_outcome["predicted"], 0.99), 3),
            "no_basis_p99": round(quantile(by_outcome["none"], 0.99), 3),
            "requests": len(server),
            **counts,
        },
        "traffic_Bps_per_node": {
            "overlay_out_mean": round(statistics.fmean(per_node_out), 1),
            "overlay_out_max": round(max(per_node_out), 1),
            "overlay_in_mean": round(statistics.fmean(per_node_in), 1),
            "xbac_bodies_out_mean": round(statistics.fmean(xb_out), 1),
            "xbac_bodies_out_max": round(max(xb_out), 1),
            "xbac_bodies_in_mean": round(statistics.fmean(xb_in), 1),
        },
        "xbac_by_type_per_node": by_type(types_after, types_before, elapsed),
        "overlay_per_node_per_s": {
            k: round(
                sum(a.get(k, 0) - b.get(k, 0) for a, b in zip(ov_after, ov_before, strict=True))
                / len(agents)
                / elapsed,
                3,
            )
            for k in ("messages_out", "bytes_out", "rpc_sent", "app_requests_out", "lookups")
        },
        "targets": {"answer_p99_ms": 50, "traffic_Bps": 300, "thesis_traffic_Bps": 2270},
    }
    if args.json:
        dump_json(result)
        return 0
    a, t = result["answer_ms"], result["traffic_Bps_per_node"]
    print(f"agents {args.agents}: roles {', '.join(result['roles'])}; {result['groups']} group(s)")
    print(f"clusters kept per node: {result['clusters_kept']} ({args.clusters} hosts fed)")
    print(
        f"answer time (service) p50 {a['service_p50']:.2f} ms, p99 {a['service_p99']:.2f} ms "
        f"(target <= 50 ms); with HTTP p50 {a['client_p50']:.2f} ms, p99 {a['client_p99']:.2f} ms"
    )
    print(
        f"  {a['requests']} requests: {a['predicted']} answered (p99 {a['answered_p99']:.2f} ms), "
        f"{a['none']} without basis (p99 {a['no_basis_p99']:.2f} ms)"
    )
    print(
        f"traffic per node over {result['window_s']:.0f} s: "
        f"overlay out {t['overlay_out_mean']} B/s (max {t['overlay_out_max']}), "
        f"in {t['overlay_in_mean']} B/s; XBAC bodies out "
        f"{t['xbac_bodies_out_mean']} B/s (max {t['xbac_bodies_out_max']}) "
        "(target <= 300 B/s; thesis 2.27 KB/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
