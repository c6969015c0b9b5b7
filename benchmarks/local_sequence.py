"""Wall time of the local module's default sequence: parallel against sequential.

The local tests ping the gateway and query the resolver, so the benchmark
builds its own healthy network in namespaces (as root) rather than touching
the machine's real one: a host namespace with 192.0.2.10/24 whose gateway
192.0.2.1 runs dnsmasq, and two well-known hosts (the gateway and
198.51.100.1) so that every default test really runs.

In the host namespace it runs the default sequence ``--repeat`` times through
the real Mediator with no limit on parallel tests, and as many times with
``max_parallel = 1`` (forced sequential, in dependency order), and prints the
two side by side with the slowest tests. Goal: parallel <= 1.5 s on a healthy
host.

    sudo python benchmarks/local_sequence.py [--repeat 20] [--csv FILE] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 1.5


def inner(config_path: str, repeat: int, max_parallel: int) -> dict:
    """Run inside the namespace: time ``repeat`` runs of the default sequence."""
    from twisted.internet import defer

    from dnaagent import config
    from dnaagent.mediator.mediator import Mediator
    from dnaagent.modules.registry import load_modules
    from dnaagent.tap import install_reactor

    cfg = config.load(config_path, must_exist=True)
    reactor = install_reactor()
    mediator = Mediator(
        reactor, default_timeout=cfg.mediator.test_timeout, max_parallel=max_parallel
    )
    for module in load_modules(cfg, reactor):
        mediator.register(module)
    walls: list[float] = []
    per_test: dict[str, list[float]] = {}
    statuses: dict[str, str] = {}

    @defer.inlineCallbacks
    def go():
        try:
            yield mediator.run("local")  # warm-up: imports, first sockets
            for _ in range(repeat):
                start = time.perf_counter()
                results = yield mediator.run("local")
                walls.append(time.perf_counter() - start)
                for r in results:
                    per_test.setdefault(r.test, []).append(r.duration)
                    statuses[r.test] = r.status.value
        finally:
            reactor.stop()

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)
    return {"walls": walls, "per_test": per_test, "statuses": statuses}


def summary(walls: list[float]) -> dict[str, float]:
    """Median, min, max and p90 of wall times, in seconds."""
    ordered = sorted(walls)
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
    }


def outer(args: argparse.Namespace) -> int:
    """Build the namespaces, run both modes inside them, print the comparison."""
    sys.path.insert(0, str(ROOT))
    from tests.integration import netns

    reason = netns.unavailable_reason()
    if reason:
        print(f"local_sequence: cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dna-bench-") as tmp:
        lab = netns.Lab(Path(tmp))
        try:
            print("building a healthy test network in namespaces ...", file=sys.stderr)
            lan = netns.build_lan(lab)
            cfg = lan.write_config(well_known_hosts=[netns.GATEWAY_V4, netns.SERVER_V4])
            runs = {}
            for label, max_parallel in (("parallel", 0), ("sequential", 1)):
                print(
                    f"running the default sequence {args.repeat} times, {label} ...",
                    file=sys.stderr,
                )
                done = lan.host.run(
                    sys.executable,
                    __file__,
                    "--inner",
                    str(cfg),
                    "--repeat",
                    str(args.repeat),
                    "--max-parallel",
                    str(max_parallel),
                    check=True,
                    timeout=600,
                )
                runs[label] = json.loads(done.stdout)
        finally:
            lab.close()
    report = {
        label: {**summary(run["walls"]), "runs": len(run["walls"]), "statuses": run["statuses"]}
        for label, run in runs.items()
    }
    report["speedup"] = report["sequential"]["median"] / report["parallel"]["median"]
    report["goal_parallel_s"] = GOAL_S
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["mode", "run", "wall_s"])
            for label, run in runs.items():
                for i, wall in enumerate(run["walls"]):
                    w.writerow([label, i, f"{wall:.6f}"])
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    par, seq = report["parallel"], report["sequential"]
    print(f"local module default sequence, {args.repeat} runs each, healthy namespace LAN")
    print(f"{'':12}{'parallel':>12}{'sequential':>12}")
    for key in ("median", "p90", "min", "max"):
        print(f"{key:12}{par[key] * 1000:>10.1f}ms{seq[key] * 1000:>10.1f}ms")
    print(f"speedup     {report['speedup']:>11.2f}x")
    verdict = "meets" if par["median"] <= GOAL_S else "MISSES"
    print(f"goal        parallel <= {GOAL_S} s: {verdict} (median {par['median']:.3f} s)")
    slow = sorted(
        ((statistics.median(d), t) for t, d in runs["parallel"]["per_test"].items()), reverse=True
    )[:3]
    print(
        "slowest tests (median, parallel): " + ", ".join(f"{t} {d * 1000:.1f} ms" for d, t in slow)
    )
    bad = {t: s for t, s in par["statuses"].items() if s != "ok"}
    if bad:
        print(f"note: not every test was ok: {bad}")
    return 0


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per mode (20)")
    parser.add_argument("--csv", metavar="FILE", help="also write every wall time to FILE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--inner", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--max-parallel", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.repeat <= 1000:
        parser.error("--repeat must be between 1 and 1000")
    if args.inner:
        json.dump(inner(args.inner, args.repeat, args.max_parallel), sys.stdout)
        return 0
    if os.geteuid() != 0:
        parser.error("needs root to build network namespaces")
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
