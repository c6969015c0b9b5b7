"""DTS paper (Masui and Donnet, TMA 2009) Figs. 3 and 4, reproduced in simulation.

Usage: python benchmarks/dts_figures.py [--json] [--data DIR] [--seeds N]

* **Fig. 3** -- time to retrieve one chunk from the PT DHT against the number of chunks
  C = 2..512 of a 1,024-target list (16 core agents, every monitor fetches every chunk).
  This is a model of the in-memory DHT, not a measurement: a get costs a DHT routing
  phase (Chord-like, Binomial(log2 16, 1/2) overlay hops, each one RTT) and a TCP
  transfer of the paper's message size, 63 + 10240 / C bytes (handshake, slow start
  from 2 segments of 1,448 bytes, 1 MB/s), with RTTs drawn log-normally around 80 ms
  (PlanetLab-like). It shows why the paper's curve falls from C = 1 to 4 and is flat
  after: transfer dominates, then routing does.
* **Fig. 4** -- average probes of the surviving monitors when 0, 5, 10 or 15 of 16
  monitors fail after 0, 25, 50 or 75 % of their chunks, for 1, 4 and 16 chunks. Real
  DTS code (Plane, leases, Doubletree, the simulated prober) on Topology Zoo Cogentco:
  16 monitors behind random PoPs, 256 destination hosts (the paper used 16 targets;
  more targets make the averages steadier), probes at 50 ms, 0.5 s of DHT access per
  chunk; mean over ``--seeds`` draws of monitors, targets and failing monitors.

Writes docs/figures/dts_fig3.{csv,png} and docs/figures/dts_fig4.{csv,png}.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import FIGURES, dump_json

from dnaagent.dts.doubletree import choose_start_hop
from dnaagent.dts.monitor import Monitor
from dnaagent.dts.plane import MemoryStore, Plane
from dnaagent.dts.simprober import DEFAULT_DATA, ReplayProber, ZooTopology, load_zoo
from dnaagent.dts.simulate import new_clock, simulate_campaign


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def chunk_get_time(chunks: int, rng: random.Random) -> float:
    """Seconds to get one chunk of a 1,024-target list split into ``chunks``."""
    rtt = rng.lognormvariate(math.log(0.080), 0.5)
    hops = sum(rng.random() < 0.5 for _ in range(4))
    routing = sum(rng.lognormvariate(math.log(0.080), 0.5) for _ in range(hops))
    size = 63 + 10240 / chunks
    segments = math.ceil(size / 1448)
    rounds, window, sent = 0, 2, 0
    while sent < segments:
        sent += window
        window *= 2
        rounds += 1
    return routing + rtt * (1 + rounds) + size / 1e6


def fig3(seed: int) -> list[dict[str, Any]]:
    """Quartiles of the chunk get time for C = 1..512."""
    rng = random.Random(seed)
    rows = []
    for i in range(0, 10):
        c = 2**i
        samples = sorted(chunk_get_time(c, rng) for _ in range(16 * max(c, 16)))
        q = statistics.quantiles(samples, n=4)
        rows.append(
            {
                "chunks": c,
                "message_bytes": round(63 + 10240 / c),
                "p25_s": q[0],
                "median_s": q[1],
                "p75_s": q[2],
                "min_s": samples[0],
                "max_s": samples[-1],
                "samples": samples,
            }
        )
    return rows


def fig4(data: Path, seeds: int) -> list[dict[str, Any]]:
    """Average probes of survivors per (chunks, completed share, failed monitors)."""
    graph = dict(load_zoo(data, ["Cogentco"]))["Cogentco"]
    topo = ZooTopology(graph, 8)
    rows = []
    for chunks in (1, 4, 16):
        for share in (0.0, 0.25, 0.5, 0.75):
            if chunks == 1 and share > 0:
                continue
            for failed in (0, 5, 10, 15):
                values = []
                for seed in range(seeds):
                    rng = random.Random(seed)
                    pops = rng.sample(topo.nodes, 16)
                    targets = rng.sample(topo.destinations(), 256)
                    names = [f"m{i}" for i in range(16)]
                    dying = set(rng.sample(names, failed))
                    clock = new_clock()
                    plane = Plane.create(
                        MemoryStore(), "fig4", targets, clock, chunk_size=256 // chunks
                    )
                    monitors = []
                    for name, pop in zip(names, pops, strict=True):
                        paths = {d: topo.path(pop, d) for d in targets}
                        h = choose_start_hop([p.dest_ttl for p in paths.values()], 0.05)
                        monitors.append(Monitor(name, ReplayProber(paths), h, max_ttl=64))
                    fail_after = {n: int(share * chunks) for n in dying}
                    res = simulate_campaign(plane, clock, monitors, fail_after=fail_after)
                    values.append(res.survivor_mean_probes())
                rows.append(
                    {
                        "chunks": chunks,
                        "completed_share": share,
                        "failed_monitors": failed,
                        "mean_probes_alive": statistics.fmean(values),
                    }
                )
                mean = rows[-1]["mean_probes_alive"]
                log(f"fig4 chunks={chunks} share={share} failed={failed}: {mean:.0f}")
    return rows


def plot(f3: list[dict[str, Any]], f4: list[dict[str, Any]], out: Path) -> None:
    """Write the PNGs (skipped when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no PNG")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.boxplot([r["samples"] for r in f3], tick_labels=[str(r["chunks"]) for r in f3])
    ax.set_xlabel("number of chunks C (1,024 targets)")
    ax.set_ylabel("time to retrieve one chunk (s)")
    ax.set_title("DTS Fig. 3 (in-memory DHT model)")
    fig.tight_layout()
    fig.savefig(out / "dts_fig3.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), sharey=True)
    for ax, share in zip(axes, (0.0, 0.25, 0.5, 0.75), strict=True):
        # One colour per chunk count in every panel (1 chunk has no 25-75 % panels).
        for chunks, marker, color in ((1, "o", "C0"), (4, "s", "C1"), (16, "^", "C2")):
            pts = [
                (r["failed_monitors"], r["mean_probes_alive"])
                for r in f4
                if r["chunks"] == chunks and r["completed_share"] == share
            ]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    marker=marker,
                    color=color,
                    label=f"{chunks} chunk(s)",
                )
        ax.set_title(f"fail after {int(share * 100)} % of chunks")
        ax.set_xlabel("failed monitors (of 16)")
        ax.set_xticks([0, 5, 10, 15])
    axes[0].set_ylabel("mean probes per surviving monitor")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "dts_fig4.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Compute both figures, write CSV and PNG, print a summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="evaluation data directory")
    ap.add_argument("--seeds", type=int, default=3, help="draws averaged in Fig. 4")
    ap.add_argument("--out", type=Path, default=FIGURES, help="output directory")
    args = ap.parse_args(argv)
    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    f3 = fig3(1)
    with open(args.out / "dts_fig3.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["chunks", "message_bytes", "min_s", "p25_s", "median_s", "p75_s", "max_s"])
        for r in f3:
            w.writerow(
                [r["chunks"], r["message_bytes"]]
                + [f"{r[k]:.4f}" for k in ("min_s", "p25_s", "median_s", "p75_s", "max_s")]
            )
    f4 = fig4(args.data, args.seeds)
    with open(args.out / "dts_fig4.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["chunks", "completed_share", "failed_monitors", "mean_probes_alive"])
        for r in f4:
            w.writerow(
                [
                    r["chunks"],
                    r["completed_share"],
                    r["failed_monitors"],
                    f"{r['mean_probes_alive']:.1f}",
                ]
            )
    plot(f3, f4, args.out)
    summary = {
        "fig3_median_s": {r["chunks"]: round(r["median_s"], 4) for r in f3},
        "fig4": f4,
        "seconds": round(time.time() - t0, 1),
    }
    if args.json:
        dump_json(summary)
    else:
        for r in f3:
            print(f"fig3 C={r['chunks']:>3}: median {r['median_s']:.3f} s")
        for r in f4:
            print(
                f"fig4 chunks={r['chunks']:>2} share={r['completed_share']:.2f} "
                f"failed={r['failed_monitors']:>2}: {r['mean_probes_alive']:.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
