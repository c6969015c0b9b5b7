"""Reproduce the paper's overlay figures (Section 5, Figs. 2-5) with the simulator.

* Fig. 2 -- search time vs overlay size, without churn and with mean online time 60 min;
* Fig. 3 -- neighbours known of 5 vs mean online time (10-120 min), 100 and 500 nodes;
* Fig. 4 -- maintenance traffic per peer vs overlay size, without churn and at 60 min;
* Fig. 5 -- maintenance traffic per peer vs mean online time (30-120 min).

Figs. 2 and 4 come from the same runs (one per size and churn level), Figs. 3 and 5 from
the same runs (one per size and online time). Each point is one seeded run of
``dnaagent.sim.scenario`` (see ``benchmarks/overlay_sim.py``); with ``--seeds R`` each
point is run R times and plotted as mean with a 95 % confidence interval, as in the paper.
Writes ``docs/figures/overlay_fig{2,3,4,5}.{png,csv}`` and shows a progress bar.

    python benchmarks/overlay_figures.py            # full sweep (sizes up to 10,000)
    python benchmarks/overlay_figures.py --quick    # small version, a few minutes
    python benchmarks/overlay_figures.py --jobs 2   # run points in parallel processes
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (import path)
from _common import FIGURES, Progress, clean_json, have_matplotlib

from dnaagent.sim.scenario import ScenarioConfig, run_scenario

FULL_SIZES = (100, 300, 1000, 3000, 10000)
#: From this size on, the full sweep runs shorter phases (see :func:`phases`).
LARGE = 10000
QUICK_SIZES = (100, 200, 400)
FULL_ONLINE = (10, 20, 30, 45, 60, 90, 120)
QUICK_ONLINE = (10, 30, 60, 120)
FULL_CHURN_SIZES = (100, 500)
QUICK_CHURN_SIZES = (100,)
#: Mean online time of the churn curves of Figs. 2 and 4 (minutes).
CHURN_MIN = 60.0


@dataclass(frozen=True)
class Point:
    """One simulation run of a sweep."""

    sweep: str  # "size" (Figs. 2, 4) or "churn" (Figs. 3, 5)
    nodes: int
    online_min: float | None
    seed: int

    def key(self) -> str:
        """Return a file-name-safe identifier of the point."""
        m = "none" if self.online_min is None else f"{self.online_min:g}"
        return f"{self.sweep}-n{self.nodes}-m{m}-s{self.seed}"


def phases(quick: bool, nodes: int) -> dict[str, float]:
    """Return the simulated phase lengths of a run (shorter with --quick)."""
    if quick:
        return dict(warmup=600.0, maintenance_window=1200.0, duration=120.0, lookup_rate=4.0)
    if nodes >= LARGE:
        # The full phases would take about 1.5 h of CPU at 10,000 nodes: a shorter
        # warm-up and a 10-minute maintenance window (without the hourly bucket
        # refresh, so its traffic reads lower than the other sizes').
        return dict(warmup=300.0, maintenance_window=600.0, duration=120.0, lookup_rate=5.0)
    return dict(warmup=1800.0, maintenance_window=3600.0, duration=300.0, lookup_rate=5.0)


def run_point(point: Point, quick: bool, latency: str) -> dict[str, Any]:
    """Run one point (in a worker process) and return its result as a dict."""
    cfg = ScenarioConfig(
        nodes=point.nodes,
        online_min=point.online_min,
        seed=point.seed,
        latency=latency,
        **phases(quick, point.nodes),  # type: ignore[arg-type]
    )
    result = run_scenario(cfg).as_dict()
    result["sweep"] = point.sweep
    return result


def points(args: argparse.Namespace) -> list[Point]:
    """Return every run the figures need, largest last (so partial sweeps draw early)."""
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    online = QUICK_ONLINE if args.quick else FULL_ONLINE
    churn_sizes = QUICK_CHURN_SIZES if args.quick else FULL_CHURN_SIZES
    seeds = range(1, args.seeds + 1)
    out = []
    for n in sorted(sizes):
        for m in (None, CHURN_MIN):
            if m is not None and n > args.max_churn_size:
                continue
            out.extend(Point("size", n, m, s) for s in seeds)
    for n in churn_sizes:
        for m in online:
            out.extend(Point("churn", n, float(m), s) for s in seeds)
    return sorted(out, key=lambda p: (p.nodes, p.sweep))


def mean_ci(values: Iterable[float]) -> tuple[float, float]:
    """Return the mean and the half-width of its 95 % confidence interval."""
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return math.nan, math.nan
    m = statistics.fmean(v)
    if len(v) < 2:
        return m, 0.0
    # Student t quantiles for small samples, normal beyond.
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}
    q = t.get(len(v), 1.96)
    return m, q * statistics.stdev(v) / math.sqrt(len(v))


CSV_FIELDS = (
    "nodes",
    "online_min",
    "seed",
    "search_ms_median",
    "search_ms_p90",
    "search_ms_p99",
    "search_ms_mean",
    "success_rate",
    "node_lookups",
    "neighbours_known_of_5",
    "neighbours_view_of_5",
    "maintenance_bytes_per_s",
    "maintenance_msgs_per_s",
    "lookup_phase_bytes_per_s",
    "key_closest_recall",
    "arrivals",
    "departures",
    "events_per_cpu_s",
    "wall_s",
)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the per-run rows of one figure."""
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in sorted(rows, key=lambda r: (r["nodes"], r["online_min"] or 0, r["seed"])):
            r = dict(r)
            if r["online_min"] is None:
                r["online_min"] = "none"
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def curve(
    rows: list[dict[str, Any]], x: str, y: str, where: dict[str, Any]
) -> tuple[list[float], list[float], list[float]]:
    """Group ``rows`` matching ``where`` by ``x``; return x, mean of ``y``, CI half-width."""
    groups: dict[float, list[float]] = {}
    for r in rows:
        if all(r.get(k) == v for k, v in where.items()):
            groups.setdefault(r[x], []).append(r[y])
    xs = sorted(groups)
    stats = [mean_ci(groups[k]) for k in xs]
    return xs, [s[0] for s in stats], [s[1] for s in stats]


def plot(
    out_dir: Path, size_rows: list[dict[str, Any]], churn_rows: list[dict[str, Any]], latency: str
) -> list[Path]:
    """Draw Figs. 2-5 as PNG files; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    note = "Exp(50 ms) per message" if latency == "exp" else "PlanetLab RTT/2"
    written = []

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    # Fig. 2: search time vs size
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, label, style in ((None, "no churn", "o-"), (CHURN_MIN, "mean online 60 min", "s--")):
        xs, ys, es = curve(size_rows, "nodes", "search_ms_median", {"online_min": m})
        if xs:
            ax.errorbar(xs, ys, yerr=es, fmt=style, capsize=3, label=f"median, {label}")
        xs, ys, es = curve(size_rows, "nodes", "search_ms_mean", {"online_min": m})
        if xs:
            ax.errorbar(xs, ys, yerr=es, fmt=style, alpha=0.45, capsize=3, label=f"mean, {label}")
    ax.set_xscale("log")
    ax.set_xlabel("overlay size (nodes)")
    ax.set_ylabel("search time (ms)")
    ax.set_title(f"Fig. 2: search time vs size ({note})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "overlay_fig2.png")

    # Fig. 3: neighbours known vs online time
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, style in zip(
        sorted({r["nodes"] for r in churn_rows}), ("o-", "s--", "^-."), strict=False
    ):
        xs, ys, es = curve(churn_rows, "online_min", "neighbours_known_of_5", {"nodes": n})
        ax.errorbar(xs, ys, yerr=es, fmt=style, capsize=3, label=f"{n} nodes: in table")
        xs, ys, es = curve(churn_rows, "online_min", "neighbours_view_of_5", {"nodes": n})
        ax.errorbar(
            xs,
            ys,
            yerr=es,
            fmt=style,
            alpha=0.45,
            capsize=3,
            label=f"{n} nodes: among 5 closest entries",
        )
    ax.axhline(4.5, color="grey", lw=0.8, ls=":", label="paper: > 4.5 at 30 min")
    ax.set_ylim(top=5.05)
    ax.set_xlabel("mean online time (min)")
    ax.set_ylabel("neighbours known (of 5)")
    ax.set_title("Fig. 3: correctness of the 5 closest neighbours")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "overlay_fig3.png")

    # Fig. 4: maintenance traffic vs size
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, label, style in ((None, "no churn", "o-"), (CHURN_MIN, "mean online 60 min", "s--")):
        xs, ys, es = curve(size_rows, "nodes", "maintenance_bytes_per_s", {"online_min": m})
        if xs:
            ax.errorbar(xs, ys, yerr=es, fmt=style, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("overlay size (nodes)")
    ax.set_ylabel("maintenance traffic per peer (B/s)")
    ax.set_title("Fig. 4: maintenance traffic vs size")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "overlay_fig4.png")

    # Fig. 5: maintenance traffic vs online time
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, style in zip(
        sorted({r["nodes"] for r in churn_rows}), ("o-", "s--", "^-."), strict=False
    ):
        rows = [r for r in churn_rows if r["online_min"] >= 30]
        xs, ys, es = curve(rows, "online_min", "maintenance_bytes_per_s", {"nodes": n})
        ax.errorbar(xs, ys, yerr=es, fmt=style, capsize=3, label=f"{n} nodes")
    ax.set_xlabel("mean online time (min)")
    ax.set_ylabel("maintenance traffic per peer (B/s)")
    ax.set_title("Fig. 5: maintenance traffic vs churn")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "overlay_fig5.png")
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (100-400 nodes), fewer online times, shorter phases",
    )
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        metavar="N",
        help=f"overlay sizes of Figs. 2 and 4 (default {' '.join(map(str, FULL_SIZES))})",
    )
    p.add_argument(
        "--max-churn-size",
        type=int,
        default=3000,
        metavar="N",
        help="largest size of the 60-min churn curves of Figs. 2 and 4; the 10,000-node "
        "point with churn takes about an hour of CPU (default %(default)s)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="R",
        help="runs per point (mean and 95%% CI when > 1; default %(default)s)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="J",
        help="points run in parallel processes (default %(default)s)",
    )
    p.add_argument(
        "--latency",
        choices=("exp", "planetlab"),
        default="exp",
        help="delay model (default %(default)s: Exp(50 ms) as in the paper)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=FIGURES,
        metavar="DIR",
        help="where PNG and CSV go (default docs/figures)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each point's result as JSON here and reuse it on the next "
        "run (resume an interrupted sweep)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        p.error("--seeds and --jobs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the sweeps, write CSV and PNG, print where they are."""
    args = parse_args(argv)
    plots = have_matplotlib("overlay_figures")
    todo = points(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    results: dict[Point, dict[str, Any]] = {}
    pending = []
    for pt in todo:
        cached = args.cache / f"{pt.key()}.json" if args.cache else None
        if cached is not None and cached.exists():
            results[pt] = json.loads(cached.read_text())
        else:
            pending.append(pt)
    # Progress in units of simulated node-events, roughly proportional to work: nodes.
    weight = {pt: pt.nodes * (2 if pt.online_min else 1) for pt in pending}
    bar = Progress(
        sum(weight.values()) or 1, desc="overlay figures", unit="node-runs", enabled=not args.quiet
    )
    done_weight = 0
    start = time.monotonic()

    def finished(pt: Point, res: dict[str, Any]) -> None:
        nonlocal done_weight
        results[pt] = res
        if args.cache is not None:
            (args.cache / f"{pt.key()}.json").write_text(json.dumps(clean_json(res)))
        done_weight += weight[pt]
        bar.update_to(done_weight, f"{pt.key()} {time.monotonic() - start:.0f}s")

    try:
        if args.jobs == 1:
            for pt in pending:
                bar.set_description(f"overlay figures: {pt.key()}")
                finished(pt, run_point(pt, args.quick, args.latency))
        else:
            with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                futures = {
                    pool.submit(run_point, pt, args.quick, args.latency): pt
                    for pt in sorted(pending, key=lambda p: -weight[p])
                }
                for fut in as_completed(futures):
                    finished(futures[fut], fut.result())
    finally:
        bar.close()
    size_rows = [r for pt, r in results.items() if pt.sweep == "size"]
    churn_rows = [r for pt, r in results.items() if pt.sweep == "churn"]
    write_csv(args.out / "overlay_fig2.csv", size_rows)
    write_csv(args.out / "overlay_fig4.csv", size_rows)
    write_csv(args.out / "overlay_fig3.csv", churn_rows)
    write_csv(args.out / "overlay_fig5.csv", [r for r in churn_rows if r["online_min"] >= 30])
    if plots:
        for path in plot(args.out, size_rows, churn_rows, args.latency):
            print(os.path.relpath(path))
            print(os.path.relpath(path.with_suffix(".csv")))
    else:
        for n in (2, 3, 4, 5):
            print(os.path.relpath(args.out / f"overlay_fig{n}.csv"))
    errors = sum(r.get("errors", 0) for r in results.values())
    if errors:
        print(f"WARNING: {errors} simulated calls raised", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
