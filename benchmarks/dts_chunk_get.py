"""Time to retrieve one chunk from the overlay DHT vs the number of chunks (DTS Fig. 3).

Usage: python benchmarks/dts_chunk_get.py [--json] [--nodes N] [--gets G] [--seed S]

``benchmarks/dts_figures.py`` draws Fig. 3 from a model of the paper's DHT. This script
measures it on the real code instead: ``N`` overlay nodes (``OverlayNode``, the agent's
own Kademlia) on the simulator's network with PlanetLab round-trip times
(``planetlab_490x18``, slice 1, ±10 % jitter), a campaign of 1,024 targets stored with
``DhtPlane.create`` for each chunk count C, then ``G`` reads of a random chunk's PT
(``DhtPlane.chunk``) from random nodes, timed on the simulated clock.

Only C ≥ 16 can be stored: one DHT value holds at most 2 KiB, so a chunk holds at most
about a hundred targets (the paper's larger chunks were TCP transfers). A read that the
reading node answers from its own store (it is among the k closest) takes no time; the
share of those is reported apart, and the times are of the reads that went to the network.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from typing import Any, cast

from _common import FIGURES, dump_json

from dnaagent.dts.chunks import chunk_key
from dnaagent.dts.dhtstore import DhtPlane
from dnaagent.overlay import Identity, OverlayConfig, OverlayNode
from dnaagent.sim.clock import SimClock
from dnaagent.sim.network import DEFAULT_PLANETLAB, MatrixLatency, SimNetwork, load_planetlab

TARGETS = 1024
CHUNK_COUNTS = (16, 32, 64, 128, 256, 512)


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def wait(clock: SimClock, d: Any, limit: float = 120.0) -> Any:
    """Advance simulated time until ``d`` fires; its result (a failure raises)."""
    out: list[Any] = []
    d.addBoth(out.append)
    end = clock.seconds() + limit
    while not out and clock.seconds() < end:
        clock.advance(0.005)
    if not out:
        raise RuntimeError("timed out in simulated time")
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def run(nodes: int, gets: int, seed: int) -> list[dict[str, Any]]:
    """Build the overlay, store one campaign per chunk count, time the reads."""
    from twisted.internet import defer

    rng = random.Random(seed)
    clock = SimClock()
    net = SimNetwork(clock, rng, MatrixLatency(random.Random(seed), load_planetlab()))
    config = OverlayConfig(require_signatures=False)
    overlay: list[OverlayNode] = []
    addresses: list[tuple[str, int]] = []
    for i in range(nodes):
        node = OverlayNode(
            Identity.unsigned(rng), cast(Any, clock), config=config, rng=random.Random(i)
        )
        transport = net.attach(node)
        node.makeConnection(cast(Any, transport))
        if overlay:
            wait(clock, node.join([addresses[rng.randrange(len(overlay))]]))
        overlay.append(node)
        addresses.append(transport.address)
    clock.advance(30)
    log(f"{nodes} nodes joined (simulated {clock.seconds():.0f} s)")
    targets = [f"2001:db8::{i:x}" for i in range(1, TARGETS + 1)]
    rows = []
    for i, chunks in enumerate(CHUNK_COUNTS):
        name = f"fig3-{chunks}"
        # A different creator per campaign: one publisher may keep at most 256 keys at
        # any one node (the overlay's max_keys_per_peer).
        wait(
            clock,
            defer.ensureDeferred(
                DhtPlane.create(overlay[i], name, targets, clock, chunk_size=TARGETS // chunks)
            ),
            600,
        )
        times: list[float] = []
        local = 0
        for _ in range(gets):
            reader = overlay[rng.randrange(nodes)]
            n = rng.randrange(chunks)
            key = chunk_key("pt", name, n)
            if reader.store.get(key, clock.seconds()):
                local += 1
            plane = DhtPlane(reader, name, clock, {"chunks": chunks, "policy": "any"})
            start = clock.seconds()
            got = wait(clock, defer.ensureDeferred(plane.chunk(n)))
            if len(got.targets) != TARGETS // chunks:
                raise RuntimeError(f"chunk {n} of {name}: {len(got.targets)} targets")
            elapsed = clock.seconds() - start
            if elapsed > 0:
                times.append(elapsed)
        times.sort()
        row = {
            "chunks": chunks,
            "targets_per_chunk": TARGETS // chunks,
            "gets": gets,
            "local_share": local / gets,
            "median_s": round(statistics.median(times), 4) if times else 0.0,
            "p90_s": round(times[int(0.9 * (len(times) - 1))], 4) if times else 0.0,
            "mean_s": round(statistics.fmean(times), 4) if times else 0.0,
        }
        rows.append(row)
        log(
            f"C={chunks}: median {row['median_s']:.3f} s, p90 {row['p90_s']:.3f} s "
            f"over {len(times)} network reads ({row['local_share']:.0%} local)"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--nodes", type=int, default=200, help="overlay nodes (200)")
    ap.add_argument("--gets", type=int, default=200, help="reads per chunk count (200)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (1)")
    ap.add_argument("--csv", action="store_true", help=f"write {FIGURES}/dts_fig3_overlay.csv")
    args = ap.parse_args(argv)
    if not DEFAULT_PLANETLAB.exists():
        log(f"missing {DEFAULT_PLANETLAB}")
        return 2
    rows = run(args.nodes, args.gets, args.seed)
    if args.csv:
        import csv

        with open(FIGURES / "dts_fig3_overlay.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if args.json:
        dump_json({"nodes": args.nodes, "targets": TARGETS, "rows": rows})
    else:
        print("chunks  per-chunk  local  median_s  p90_s")
        for r in rows:
            print(
                f"{r['chunks']:>6}  {r['targets_per_chunk']:>9}  {r['local_share']:>5.0%}  "
                f"{r['median_s']:>8.3f}  {r['p90_s']:>5.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
