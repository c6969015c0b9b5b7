"""DHT gets in the simulator: latency and requests per get, narrow start on and off.

A value lookup whose closest candidate already lies within the key's replica set
asks one node first (the lowest-RTT one near the key) and widens to ``alpha`` only
when that node has no value or is late (``narrow_value_lookups``, on by default).
This benchmark measures what that costs and saves: for each setting, the same
overlay (same seed) joins and warms up, ``--keys`` values are put from random
nodes, then ``--gets`` gets of them are issued from random nodes, one every
``--gap`` simulated seconds. Printed per setting: gets that returned the value,
gets answered from the getter's own store (no lookup, not in the times), median and
p90 time of the other gets (ms, simulated), FIND_VALUE requests per value lookup, and
the share of lookups that started narrow.

Examples::

    python benchmarks/overlay_gets.py --nodes 100
    python benchmarks/overlay_gets.py --nodes 100 --latency planetlab
    python benchmarks/overlay_gets.py --nodes 1000 --loss 0.2 --json
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from dataclasses import asdict, dataclass
from typing import Any

import _common  # noqa: F401  (import path)
from _common import dump_json

from dnaagent.sim.scenario import Scenario, ScenarioConfig


@dataclass
class GetsResult:
    """The figures of one setting."""

    narrow: bool
    nodes: int
    gets: int
    gets_ok: int
    local: int
    get_ms_median: float
    get_ms_p90: float
    value_lookups: int
    requests_per_lookup: float
    narrow_share: float


def measure(args: argparse.Namespace, narrow: bool) -> GetsResult:
    """Build the overlay, put the values, run the gets; return the figures."""
    config = ScenarioConfig(
        nodes=args.nodes,
        seed=args.seed,
        latency=args.latency,
        loss=args.loss,
        warmup=args.warmup,
        maintenance_window=0,
        duration=0,
        overlay={"narrow_value_lookups": narrow},
    )
    sim = Scenario(config)
    sim.run()  # join and warm up (no lookups: duration 0)
    rng = random.Random(f"{args.seed}/gets")
    keys = [rng.randbytes(20) for _ in range(args.keys)]
    value = {k: b"value-" + k[:8] for k in keys}
    clock = sim.clock

    def live_node() -> Any:
        return sim.live[rng.randrange(len(sim.live))].node

    for k in keys:
        live_node().put(k, value[k])
    clock.run_until(clock.seconds() + 60)

    def totals() -> tuple[int, int, int]:
        c = [p.node.counters for p in sim.live]
        return (
            sum(x["value_lookups"] for x in c),
            sum(x["value_lookup_requests"] for x in c),
            sum(x["value_lookups_narrow"] for x in c),
        )

    before = totals()
    times: list[float] = []
    finished = [0]
    ok = [0]
    local = [0]

    def get(node: Any, key: bytes) -> None:
        start = clock.seconds()
        here = bool(node.store.get(key, start))
        local[0] += here

        def done(values: Any) -> None:
            finished[0] += 1
            if isinstance(values, list) and value[key] in values:
                ok[0] += 1
                if not here:
                    times.append((clock.seconds() - start) * 1000.0)

        node.get(key).addBoth(done)

    for i in range(args.gets):
        clock.schedule(i * args.gap, get, live_node(), keys[i % len(keys)])
    clock.run_until(clock.seconds() + args.gets * args.gap + 60)
    after = totals()
    lookups = after[0] - before[0]
    times.sort()
    return GetsResult(
        narrow=narrow,
        nodes=args.nodes,
        gets=finished[0],
        gets_ok=ok[0],
        local=local[0],
        get_ms_median=statistics.median(times) if times else float("nan"),
        get_ms_p90=times[int(0.9 * (len(times) - 1))] if times else float("nan"),
        value_lookups=lookups,
        requests_per_lookup=(after[1] - before[1]) / lookups if lookups else float("nan"),
        narrow_share=(after[2] - before[2]) / lookups if lookups else float("nan"),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Times are simulated. The run is reproducible from --seed.",
    )
    p.add_argument("--nodes", type=int, default=100, help="overlay size (default %(default)s)")
    p.add_argument("--keys", type=int, default=100, help="values put (default %(default)s)")
    p.add_argument("--gets", type=int, default=500, help="gets issued (default %(default)s)")
    p.add_argument(
        "--gap",
        type=float,
        default=0.2,
        help="simulated seconds between gets (default %(default)s)",
    )
    p.add_argument(
        "--latency",
        choices=("exp", "planetlab"),
        default="exp",
        help="Exp(50 ms) per message, or the PlanetLab RTT matrix (default %(default)s)",
    )
    p.add_argument("--loss", type=float, default=0.0, metavar="P", help="message loss probability")
    p.add_argument(
        "--warmup",
        type=float,
        default=300.0,
        help="simulated seconds after the joins (default 300)",
    )
    p.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    p.add_argument("--only", choices=("on", "off"), help="measure one setting only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if not 2 <= args.nodes <= 20000:
        p.error("--nodes must be from 2 to 20000")
    if args.keys < 1 or args.gets < 1 or args.gap <= 0 or args.warmup < 0:
        p.error("--keys, --gets and --gap must be positive, --warmup not negative")
    if not 0 <= args.loss < 1:
        p.error("--loss must be in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure both settings and print them side by side."""
    args = parse_args(argv)
    settings = [True, False] if args.only is None else [args.only == "on"]
    results = []
    for narrow in settings:
        label = "narrow" if narrow else "alpha"
        print(f"{args.nodes} nodes, {label} start ...", file=sys.stderr, flush=True)
        results.append(measure(args, narrow))
    if args.json:
        dump_json({("narrow" if r.narrow else "alpha"): asdict(r) for r in results})
        return 0
    print(
        f"{'start':8}{'gets ok':>12}{'local':>7}{'median ms':>11}{'p90 ms':>9}"
        f"{'requests/lookup':>17}{'narrow':>8}"
    )
    for r in results:
        print(
            f"{'narrow' if r.narrow else 'alpha':8}{r.gets_ok:>7}/{r.gets:<4}{r.local:7}"
            f"{r.get_ms_median:11.1f}{r.get_ms_p90:9.1f}{r.requests_per_lookup:17.2f}"
            f"{r.narrow_share:8.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
