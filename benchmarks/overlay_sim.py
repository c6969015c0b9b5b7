"""Simulate the dnaagent overlay (the real OverlayNode code) and print the paper's figures.

N overlay nodes run on a simulated network with a discrete-event clock: they join
(staggered), warm up, then a maintenance window measures the traffic each peer sends with
no lookups issued, and a lookup phase starts random lookups and times them. With
``--online-min`` peers churn: exponential online time with that mean, Poisson arrivals
keeping the size constant on average, departures crash (or leave, ``--leave-share``).

Printed: search time median/p90/p99 (ms, node lookups, start to result), lookup success
rate (the searched live node found), neighbours known of 5 (how many of its 5 XOR-closest
live nodes a node has in its routing table, against the simulator's global view),
maintenance bytes/s per peer (UDP payload sent, plus the 64-byte signature the simulator
skips on each datagram the agent would sign), events per CPU-second (simulated events /
CPU time of the event loop).

Examples::

    python benchmarks/overlay_sim.py --nodes 1000
    python benchmarks/overlay_sim.py --nodes 500 --online-min 30 --json
    python benchmarks/overlay_sim.py --nodes 1000 --loss 0.2 --latency planetlab

Targets: 1,000 nodes without churn: median <= 150 ms, p99 <= 400 ms; 10,000 nodes:
median <= 200 ms; mean online 60 min: median <= 1.5 x no churn; 4.9 of 5 neighbours at
30 min; success >= 99.9 % at 30 min, >= 99 % with 20 % loss; <= 100 B/s per peer at 1,000
nodes; >= 50,000 events per CPU-second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _common  # noqa: F401  (import path)
from _common import Progress, dump_json

from dnaagent.sim.network import DEFAULT_PLANETLAB
from dnaagent.sim.scenario import ScenarioConfig, ScenarioResult, run_scenario

#: Keys printed by --json that the issue names (the rest of the result follows them).
JSON_KEYS = (
    "search_ms_median",
    "search_ms_p99",
    "success_rate",
    "neighbours_known_of_5",
    "maintenance_bytes_per_s",
    "events_per_cpu_s",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    d = ScenarioConfig()
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Times are simulated seconds. The run is reproducible from --seed.",
    )
    p.add_argument("--nodes", type=int, default=d.nodes, help="overlay size (default %(default)s)")
    p.add_argument(
        "--online-min",
        type=float,
        default=None,
        metavar="M",
        help="mean online time of a peer in minutes (churn); no churn when omitted",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=d.duration,
        metavar="S",
        help="length of the lookup phase in simulated seconds (default %(default)s)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=d.warmup,
        metavar="S",
        help="simulated seconds between the last join and the measurements; churn runs "
        "during it (default %(default)s)",
    )
    p.add_argument(
        "--maintenance-window",
        type=float,
        default=d.maintenance_window,
        metavar="S",
        help="simulated seconds without issued lookups over which maintenance traffic is "
        "measured (default %(default)s)",
    )
    p.add_argument(
        "--join-spread",
        type=float,
        default=None,
        metavar="S",
        help="spread the initial joins over this many seconds (default 0.1 s per node)",
    )
    p.add_argument("--loss", type=float, default=0.0, metavar="P", help="message loss probability")
    p.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    p.add_argument(
        "--latency",
        choices=("exp", "planetlab"),
        default="exp",
        help="one-way delay: Exp(mean 50 ms) per message as in the paper, or RTT/2 "
        "from the 490-node PlanetLab matrix with +-10%% jitter (default %(default)s)",
    )
    p.add_argument(
        "--planetlab",
        type=Path,
        default=DEFAULT_PLANETLAB,
        metavar="PATH",
        help="the planetlab_490x18.tar.xz archive (default: ../shared/data/)",
    )
    p.add_argument(
        "--lookup-rate",
        type=float,
        default=d.lookup_rate,
        metavar="R",
        help="lookups started per simulated second, network-wide (default %(default)s)",
    )
    p.add_argument(
        "--key-share",
        type=float,
        default=d.key_share,
        metavar="F",
        help="share of lookups for random keys instead of live node IDs (default %(default)s)",
    )
    p.add_argument(
        "--leave-share",
        type=float,
        default=d.leave_share,
        metavar="F",
        help="share of churn departures that leave gracefully; the rest crash "
        "(default %(default)s)",
    )
    p.add_argument(
        "--no-signature-bytes",
        action="store_true",
        help="count only the bytes the simulator sends (without the 64-byte signature "
        "each signed datagram of the real agent carries)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    if args.nodes < 2:
        p.error("--nodes must be at least 2")
    if not 0 <= args.loss < 1:
        p.error("--loss must be in [0, 1)")
    if args.online_min is not None and args.online_min <= 0:
        p.error("--online-min must be positive")
    return args


def config_from(args: argparse.Namespace) -> ScenarioConfig:
    """Build the scenario configuration from parsed arguments."""
    return ScenarioConfig(
        nodes=args.nodes,
        online_min=args.online_min,
        duration=args.duration,
        warmup=args.warmup,
        maintenance_window=args.maintenance_window,
        join_spread=args.join_spread,
        loss=args.loss,
        seed=args.seed,
        latency=args.latency,
        planetlab_path=args.planetlab,
        lookup_rate=args.lookup_rate,
        key_share=args.key_share,
        leave_share=args.leave_share,
        count_signatures=not args.no_signature_bytes,
    )


def run(config: ScenarioConfig, quiet: bool = False, label: str = "") -> ScenarioResult:
    """Run one scenario with a progress bar on stderr (in simulated seconds)."""
    bar = Progress(
        config.total_time(), desc=label or f"{config.nodes} nodes", unit="sim s", enabled=not quiet
    )

    def progress(phase: str, now: float, total: float) -> None:
        bar.update_to(now, phase)

    try:
        return run_scenario(config, progress)
    finally:
        bar.close()


def report(r: ScenarioResult) -> str:
    """Return the human-readable summary of a result."""
    churn = f"mean online {r.online_min:g} min" if r.online_min else "no churn"
    lines = [
        f"overlay simulation: {r.nodes} nodes, {churn}, loss {r.loss:g}, latency {r.latency}, "
        f"seed {r.seed}",
        f"  search time (node lookups, ms): median {r.search_ms_median:.1f}  "
        f"p90 {r.search_ms_p90:.1f}  p99 {r.search_ms_p99:.1f}  mean {r.search_ms_mean:.1f}",
        f"  success rate: {100 * r.success_rate:.2f} % ({r.node_lookups_ok} of "
        f"{r.node_lookups} node lookups; {r.lookups_not_counted} not counted: origin or "
        f"target left)",
        f"  key lookups: {r.key_lookups}, median {r.key_lookup_ms_median:.1f} ms, "
        f"{100 * r.key_closest_recall:.2f} % of the true k closest found",
        f"  neighbours known: {r.neighbours_known_of_5:.3f} of 5 (among its 5 closest "
        f"table entries: {r.neighbours_view_of_5:.3f})",
        f"  maintenance traffic: {r.maintenance_bytes_per_s:.1f} B/s per peer "
        f"({r.maintenance_msgs_per_s:.3f} messages/s); with lookups "
        f"{r.lookup_phase_bytes_per_s:.1f} B/s",
        f"  events per CPU-second: {r.events_per_cpu_s:,.0f} ({r.events:,} events in "
        f"{r.cpu_s:.1f} s CPU; {r.sim_s:,.0f} s simulated, {r.wall_s:.1f} s wall)",
    ]
    if r.arrivals or r.departures:
        lines.append(
            f"  churn: {r.arrivals} arrivals, {r.departures} departures, "
            f"{r.live_nodes_end} live at the end"
        )
    if r.errors:
        lines.append(f"  WARNING: {r.errors} simulated calls raised (see the log)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    args = parse_args(argv)
    result = run(config_from(args), quiet=args.quiet)
    if args.json:
        d = result.as_dict()
        out = {k: d[k] for k in JSON_KEYS}
        out.update({k: v for k, v in d.items() if k not in out})
        dump_json(out)
    else:
        print(report(result))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
