"""XBAC prediction accuracy on the Seattle RTT matrices: warm and cold pairs against baselines.

Replays the 688 time slices of the 99-node Seattle data set (one 99x99 RTT matrix per
slice, seconds, 10 ms resolution) through the real grouping, clustering and prediction code.

* warm: one-step prediction of sampled pairs with their own history, frames 400-687; each
  pair's series is fed frame by frame, every frame is predicted before it is fed.
  Baseline: the last value.
* cold: every host measures a random share of the others (``--measured``); the groups are
  bootstrapped with Meridian and the grouping criterion on frames 0-399, the clusters are
  built from the members' series; requests go from a host to one it never measured (in
  either direction) at random frames 400-687. Baseline: Vivaldi (2-D + height, c_c = c_e =
  0.25) trained on the same measurements.

Usage::

    python benchmarks/xbac_accuracy.py [--data ../shared/data/seattle_99x688.tar.xz]
        [--json] [--pairs 1000] [--seed 1] [--figures]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from _common import FIGURES, ROOT, have_matplotlib

from dnaagent.xbac.group import GroupingParams, assign_groups
from dnaagent.xbac.predictor import XbacPredictor
from dnaagent.xbac.vivaldi import Vivaldi

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "seattle_99x688.tar.xz"
FIRST_EVAL = 400


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def load(path: Path) -> np.ndarray:
    """The RTT matrices as an array (slice, source, target), read straight from the archive."""
    mats: dict[int, np.ndarray] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            match = re.search(r"_(\d+)$", m.name)
            if not m.isfile() or match is None:
                continue
            f = tf.extractfile(m)
            assert f is not None
            mats[int(match.group(1))] = np.loadtxt(io.StringIO(f.read().decode()))
    return np.stack([mats[k] for k in sorted(mats)])


def stats(errors: list[float], requests: int, abs_errors: list[float]) -> dict[str, float]:
    """Relative error summary, mean absolute error (ms) and coverage."""
    e = np.asarray(errors)
    if e.size == 0:
        nan = float("nan")
        return dict(
            rel_err_mean=nan,
            rel_err_median=nan,
            rel_err_p90=nan,
            abs_err_ms=nan,
            coverage=0.0,
            answered=0,
        )
    return dict(
        rel_err_mean=float(e.mean()),
        rel_err_median=float(np.median(e)),
        rel_err_p90=float(np.quantile(e, 0.9)),
        abs_err_ms=1000.0 * float(np.mean(abs_errors)),
        coverage=e.size / requests if requests else 0.0,
        answered=int(e.size),
    )


def warm(A: np.ndarray, pairs: int, seed: int) -> dict:
    """One-step prediction for ``pairs`` sampled pairs, frames 400..end, against the last value."""
    T, N, _ = A.shape
    rng = random.Random(seed)
    allp = [(i, j) for i in range(N) for j in range(N) if i != j]
    chosen = rng.sample(allp, min(pairs, len(allp)))
    pred = XbacPredictor(seed=seed)
    e, ea, b, ba = [], [], [], []
    requests = 0
    t0 = time.monotonic()
    for k, (i, j) in enumerate(chosen):
        s = A[:, i, j]
        for t in range(T):
            a = float(s[t])
            if t >= FIRST_EVAL and a > 0:
                requests += 1
                p = pred.predict_rtt(i, j, float(t))
                if p is not None:
                    e.append(abs(p.value - a) / a)
                    ea.append(abs(p.value - a))
                last = pred.series[(i, j)].last_value if (i, j) in pred.series else None
                if last is not None:
                    b.append(abs(last - a) / a)
                    ba.append(abs(last - a))
            if a > 0:
                pred.add_measurement(i, j, a, float(t))
        if (k + 1) % 100 == 0:
            log(f"warm: {k + 1}/{len(chosen)} pairs, {time.monotonic() - t0:.0f} s")
    out = stats(e, requests, ea)
    out["baseline"] = stats(b, requests, ba)
    out["_errors"] = {"XBAC": e, "last value": b}
    out["pairs"] = len(chosen)
    out["requests"] = requests
    return out


def cold(
    A: np.ndarray,
    requests: int,
    seed: int,
    measured: float,
    stride: int,
    grouping: GroupingParams,
) -> dict:
    """Cold requests answered from groups and clusters, against Vivaldi on the same measurements."""
    T, N, _ = A.shape
    rng = random.Random(seed + 1)
    hist = np.median(A[:FIRST_EVAL], axis=0)
    sym = (hist + hist.T) / 2.0
    order = list(range(N))
    rng.shuffle(order)
    t0 = time.monotonic()
    groups = assign_groups(order, lambda a, b: float(sym[a, b]), grouping)
    sizes = sorted(
        (sum(1 for g in groups.values() if g == x) for x in set(groups.values())), reverse=True
    )
    log(
        f"cold: {len(set(groups.values()))} groups (largest {sizes[:5]}), "
        f"{time.monotonic() - t0:.1f} s"
    )
    plan = {
        i: set(rng.sample([j for j in range(N) if j != i], max(1, int(measured * (N - 1)))))
        for i in range(N)
    }
    pairs = [(i, j) for i in range(N) for j in sorted(plan[i])]
    pred = XbacPredictor(seed=seed)
    pred.set_groups(groups)
    viv = Vivaldi(seed=seed)
    cand = [
        (i, j)
        for i in range(N)
        for j in range(N)
        if i != j and j not in plan[i] and i not in plan[j]
    ]
    reqs = sorted((rng.randrange(FIRST_EVAL, T), *rng.choice(cand)) for _ in range(requests))
    log(f"cold: {len(pairs)} measured pairs, {len(cand)} cold pairs, {len(reqs)} requests")
    e, ea, b, ba, o, oa, bs, bsa = [], [], [], [], [], [], [], []
    sources: dict[str, int] = {}
    answered_req = 0
    ri = 0
    vorder = list(pairs)
    for t in range(T):
        while ri < len(reqs) and reqs[ri][0] == t:
            _, i, j = reqs[ri]
            ri += 1
            a = float(A[t, i, j])
            if a <= 0:
                continue
            answered_req += 1
            p = pred.predict_rtt(i, j, float(t))
            if p is not None:
                e.append(abs(p.value - a) / a)
                ea.append(abs(p.value - a))
                sources[p.source] = sources.get(p.source, 0) + 1
            ref = float(np.median(A[max(0, t - 30) : t, i, j]))
            o.append(abs(ref - a) / a)
            oa.append(abs(ref - a))
            v = viv.distance(i, j)
            b.append(abs(v - a) / a)
            ba.append(abs(v - a))
            if p is not None:
                bs.append(abs(v - a) / a)
                bsa.append(abs(v - a))
        for i, j in pairs:
            a = float(A[t, i, j])
            if a > 0:
                pred.add_measurement(i, j, a, float(t))
        if t % stride == 0:
            rng.shuffle(vorder)
            for i, j in vorder:
                a = float(A[t, i, j])
                if a > 0:
                    viv.update(i, j, a)
        if t == FIRST_EVAL - 1 or (t >= FIRST_EVAL and (t - FIRST_EVAL) % 96 == 95):
            m, s = pred.recluster(float(t), span=200.0, points=8)
            n = sum(len(tb.clusters) for tb in pred.tables.values())
            log(
                f"cold: frame {t}: {m} merges, {s} splits, {n} clusters, "
                f"{time.monotonic() - t0:.0f} s"
            )
    out = stats(e, answered_req, ea)
    out["baseline"] = stats(b, answered_req, ba)
    out["_errors"] = {"XBAC": e, "Vivaldi": b}
    out["baseline_on_answered"] = stats(bs, len(bs), bsa)
    out["own_history_median"] = stats(o, answered_req, oa)
    out["requests"] = answered_req
    out["sources"] = sources
    out["groups"] = len(set(groups.values()))
    out["largest_groups"] = sizes[:5]
    out["grouping"] = {
        "relative": grouping.relative,
        "absolute": grouping.absolute,
        "leader_distance": grouping.leader_distance,
        "tolerance": grouping.tolerance,
    }
    out["measured_share"] = measured
    return out


def write_figures(result: dict, plots: bool = True) -> None:
    """CDF of the relative errors per setting and method: docs/figures/xbac_accuracy.{png,csv}.

    With ``plots`` false (matplotlib missing) only the CSV is written.
    """
    FIGURES.mkdir(parents=True, exist_ok=True)
    qs = np.linspace(0.0, 1.0, 101)
    rows = ["setting,method,quantile,relative_error"]
    curves: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name in ("warm", "cold"):
        curves[name] = []
        for method, errs in result[name]["_errors"].items():
            e = np.sort(np.asarray(errs))
            if e.size == 0:
                continue
            curves[name].append((method, e))
            quant = np.quantile(e, qs)
            rows += [f"{name},{method},{q:.2f},{v:.4f}" for q, v in zip(qs, quant, strict=True)]
    (FIGURES / "xbac_accuracy.csv").write_text("\n".join(rows) + "\n")
    if not plots:
        log(f"wrote {FIGURES / 'xbac_accuracy.csv'} (no PNG without matplotlib)")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("warm", "cold"), strict=True):
        for method, e in curves[name]:
            ax.plot(e, np.arange(1, e.size + 1) / e.size, label=f"{method} (n={e.size})")
        ax.set_xlim(0, 2)
        if name == "warm":
            ax.set_ylim(0.75, 1.0)  # most one-step answers are exact: show the tail
        ax.set_xlabel("relative error |predicted - measured| / measured")
        ax.set_ylabel("share of answered requests")
        ax.set_title(f"{name} pairs (Seattle, 99 nodes)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(FIGURES / "xbac_accuracy.png", dpi=100)
    log(f"wrote {FIGURES / 'xbac_accuracy.png'} and .csv")


def main(argv: list[str] | None = None) -> int:
    """Run both settings and print the figures (or one JSON object with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="seattle_99x688.tar.xz")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--pairs", type=int, default=1000, help="warm pairs (default 1000)")
    ap.add_argument("--cold-requests", type=int, default=3000, help="cold requests (default 3000)")
    ap.add_argument(
        "--measured",
        type=float,
        default=0.3,
        help="share of the other hosts each host measures (cold, default 0.3)",
    )
    ap.add_argument(
        "--vivaldi-stride",
        type=int,
        default=4,
        help="Vivaldi trains on every n-th frame's measurements (default 4)",
    )
    ap.add_argument(
        "--relative", type=float, default=0.05, help="grouping: relative threshold (0.05)"
    )
    ap.add_argument(
        "--absolute", type=float, default=0.020, help="grouping: absolute threshold, s (0.020)"
    )
    ap.add_argument(
        "--leader-distance", type=float, default=0.020, help="grouping: to the leader, s (0.020)"
    )
    ap.add_argument(
        "--tolerance",
        type=float,
        default=0.010,
        help="grouping: differences up to this (s) always pass (default 0.010, "
        "the data's resolution)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--figures", action="store_true", help="write docs/figures/xbac_accuracy.png and .csv"
    )
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"error: data file not found: {args.data} (pass --data PATH)", file=sys.stderr)
        return 2
    plots = have_matplotlib("xbac_accuracy") if args.figures else False
    t0 = time.monotonic()
    A = load(args.data)
    log(f"loaded {A.shape} in {time.monotonic() - t0:.1f} s")
    result = {
        "warm": warm(A, args.pairs, args.seed),
        "cold": cold(
            A,
            args.cold_requests,
            args.seed,
            args.measured,
            args.vivaldi_stride,
            GroupingParams(
                relative=args.relative,
                absolute=args.absolute,
                leader_distance=args.leader_distance,
                tolerance=args.tolerance,
            ),
        ),
        "seconds": round(time.monotonic() - t0, 1),
    }
    if args.figures:
        write_figures(result, plots)
    for name in ("warm", "cold"):
        result[name].pop("_errors")
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    for name in ("warm", "cold"):
        r = result[name]
        base = "last value" if name == "warm" else "Vivaldi"
        print(f"{name} ({r['requests']} requests)")
        for label, s in (("XBAC", r), (base, r["baseline"])):
            print(
                f"  {label:11s} rel err mean {s['rel_err_mean']:.3f}  median "
                f"{s['rel_err_median']:.3f}  p90 {s['rel_err_p90']:.3f}  "
                f"abs err {s['abs_err_ms']:.1f} ms  coverage {s['coverage']:.1%}"
            )
    s = result["cold"]["baseline_on_answered"]
    print(
        f"  (Vivaldi on the requests XBAC answered: rel err mean {s['rel_err_mean']:.3f} "
        f"median {s['rel_err_median']:.3f} p90 {s['rel_err_p90']:.3f})"
    )
    s = result["cold"]["own_history_median"]
    print(
        f"  (reference, if the requester had measured: median of its last 30 values: "
        f"rel err mean {s['rel_err_mean']:.3f} median {s['rel_err_median']:.3f} "
        f"p90 {s['rel_err_p90']:.3f})"
    )
    print(f"cold answers by source: {result['cold']['sources']}; {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
