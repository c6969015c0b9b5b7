"""Real UDP on loopback: DHT puts/s and gets/s of dnaagent against the ``kademlia`` package.

One process, one event loop: Twisted runs on its asyncio reactor, so the ``kademlia``
2.2.3 package (asyncio) and dnaagent's OverlayNode (Twisted) share the same loop and are
measured one after the other in the same run. Each side gets ``--nodes`` nodes on
distinct 127.0.0.1 ports (chosen by the kernel), all joined through the first node; then
``--ops`` puts and ``--ops`` gets of the same keys and values are issued from random
nodes with ``--concurrency`` operations in flight, and the rates are printed side by side
with their ratios. dnaagent signs and verifies every datagram (Ed25519) as the agent
does.

Bounded: at most ``--ops`` operations per phase and ``--time-limit`` seconds per phase;
sockets are bound to 127.0.0.1 only and closed at the end.

    pip install kademlia==2.2.3        # only for this benchmark
    python benchmarks/overlay_udp.py --nodes 100

Target (issue 3): dnaagent >= 2 x the kademlia package.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import _common  # noqa: F401  (import path)
from _common import dump_json

LOOPBACK = "127.0.0.1"


@dataclass
class PhaseResult:
    """Rates of one implementation."""

    name: str
    nodes: int
    join_s: float
    puts: int
    puts_ok: int
    puts_per_s: float
    gets: int
    gets_ok: int
    gets_per_s: float


async def drive(
    op: Callable[[int], Awaitable[bool]], count: int, concurrency: int, time_limit: float
) -> tuple[int, int, float]:
    """Run ``op(0..count-1)`` with ``concurrency`` in flight, stopping at ``time_limit``.

    :return: (operations finished, operations that succeeded, elapsed seconds).
    """
    next_i = 0
    done = ok = 0
    start = time.perf_counter()
    deadline = start + time_limit

    async def worker() -> None:
        nonlocal next_i, done, ok
        while next_i < count and time.perf_counter() < deadline:
            i = next_i
            next_i += 1
            try:
                remaining = max(0.1, deadline - time.perf_counter())
                good = await asyncio.wait_for(op(i), remaining)
            except Exception:  # noqa: BLE001 - a timeout or an error counts as failed
                good = False
            done += 1
            ok += bool(good)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, ok, time.perf_counter() - start


def workload(ops: int, nodes: int, seed: int) -> list[tuple[int, int, str, bytes]]:
    """Return (put origin, get origin, key, value) per operation, the same for both sides."""
    rng = random.Random(seed)
    out = []
    for i in range(ops):
        value = rng.randbytes(64)
        out.append((rng.randrange(nodes), rng.randrange(nodes), f"bench-key-{seed}-{i}", value))
    return out


async def bench_kademlia(args: argparse.Namespace, work: list[Any]) -> PhaseResult:
    """Measure the ``kademlia`` package (asyncio) on loopback."""
    from kademlia.network import Server

    logging.getLogger("kademlia").setLevel(logging.ERROR)
    logging.getLogger("rpcudp").setLevel(logging.ERROR)
    servers: list[Any] = []
    try:
        for _ in range(args.nodes):
            s = Server()
            await s.listen(0, interface=LOOPBACK)
            servers.append(s)
        seed = servers[0].transport.get_extra_info("sockname")[:2]
        t0 = time.perf_counter()
        for s in servers[1:]:
            await s.bootstrap([seed])
        join_s = time.perf_counter() - t0

        async def put(i: int) -> bool:
            origin, _, key, value = work[i]
            return bool(await servers[origin].set(key, value))

        async def get(i: int) -> bool:
            _, origin, key, value = work[i]
            return await servers[origin].get(key) == value

        puts, puts_ok, put_s = await drive(put, len(work), args.concurrency, args.time_limit)
        gets, gets_ok, get_s = await drive(get, puts, args.concurrency, args.time_limit)
    finally:
        for s in servers:
            s.stop()
    return PhaseResult(
        "kademlia 2.2.3",
        args.nodes,
        join_s,
        puts,
        puts_ok,
        puts / put_s,
        gets,
        gets_ok,
        gets / get_s,
    )


async def bench_dnaagent(
    args: argparse.Namespace, work: list[Any], reactor: Any, signed: bool = True
) -> PhaseResult:
    """Measure dnaagent's OverlayNode (Twisted on the asyncio reactor) on loopback.

    With ``signed`` false the nodes neither sign nor verify (as in the simulator), to
    show what the Ed25519 signatures cost.
    """
    from twisted.internet.defer import DeferredList

    from dnaagent.overlay.identity import Identity
    from dnaagent.overlay.node import OverlayNode
    from dnaagent.overlay.settings import OverlayConfig

    loop = asyncio.get_running_loop()
    config = OverlayConfig(port=0, require_signatures=signed)
    rng = random.Random(args.seed)
    nodes: list[Any] = []
    ports: list[Any] = []
    try:
        for i in range(args.nodes):
            identity = Identity.generate() if signed else Identity.unsigned(rng)
            node = OverlayNode(
                identity, reactor, config=config, rng=random.Random(args.seed * 1000 + i)
            )
            ports.append(reactor.listenUDP(0, node, interface=LOOPBACK))
            nodes.append(node)
        seed_addr = (LOOPBACK, ports[0].getHost().port)
        t0 = time.perf_counter()
        # Join in batches: a few concurrent joins, as when agents start around the same time.
        batch = 10
        for i in range(1, len(nodes), batch):
            d = DeferredList(
                [n.join([seed_addr]) for n in nodes[i : i + batch]], consumeErrors=True
            )
            await d.asFuture(loop)
        join_s = time.perf_counter() - t0
        keys = [hashlib.sha1(key.encode()).digest() for _, _, key, _ in work]

        async def put(i: int) -> bool:
            origin, _, _, value = work[i]
            stored = await nodes[origin].put(keys[i], value).asFuture(loop)
            return stored > 0

        async def get(i: int) -> bool:
            _, origin, _, value = work[i]
            values = await nodes[origin].get(keys[i]).asFuture(loop)
            return value in values

        puts, puts_ok, put_s = await drive(put, len(work), args.concurrency, args.time_limit)
        gets, gets_ok, get_s = await drive(get, puts, args.concurrency, args.time_limit)
    finally:
        for p in ports:
            await asyncio.sleep(0)
            p.stopListening()
    return PhaseResult(
        "dnaagent" if signed else "dnaagent-unsigned",
        args.nodes,
        join_s,
        puts,
        puts_ok,
        puts / put_s,
        gets,
        gets_ok,
        gets / get_s,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=100, help="nodes per side (default %(default)s)")
    p.add_argument(
        "--ops",
        type=int,
        default=1000,
        help="puts, then as many gets, per side (default %(default)s)",
    )
    p.add_argument(
        "--concurrency", type=int, default=20, help="operations in flight (default %(default)s)"
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=60.0,
        metavar="S",
        help="longest time of each put or get phase in seconds (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the workload (default %(default)s)")
    p.add_argument("--only", choices=("dnaagent", "kademlia"), help="measure one side only")
    p.add_argument(
        "--unsigned",
        action="store_true",
        help="also measure dnaagent without Ed25519 signatures (what they cost)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if not 2 <= args.nodes <= 1000:
        p.error("--nodes must be from 2 to 1000")
    if args.ops < 1 or args.concurrency < 1 or args.time_limit <= 0:
        p.error("--ops, --concurrency and --time-limit must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Install the asyncio reactor, run both measurements, print them side by side."""
    args = parse_args(argv)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    work = workload(args.ops, args.nodes, args.seed)
    results: list[PhaseResult] = []
    failure: list[BaseException] = []

    async def both() -> None:
        if args.only != "dnaagent":
            print(f"kademlia 2.2.3: {args.nodes} nodes ...", file=sys.stderr)
            results.append(await bench_kademlia(args, work))
        if args.only != "kademlia":
            print(f"dnaagent: {args.nodes} nodes ...", file=sys.stderr)
            results.append(await bench_dnaagent(args, work, reactor))
            if args.unsigned:
                print(f"dnaagent without signatures: {args.nodes} nodes ...", file=sys.stderr)
                results.append(await bench_dnaagent(args, work, reactor, signed=False))

    def start() -> None:
        d = Deferred.fromFuture(asyncio.ensure_future(both()))
        d.addErrback(lambda f: failure.append(f.value))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    # Hard stop: the whole run is bounded even if something hangs.
    limit = 4 * args.time_limit + 120 + args.nodes
    guard = reactor.callLater(limit, reactor.stop)
    reactor.run()
    if guard.active():
        guard.cancel()
    if failure:
        raise failure[0]
    by = {r.name.split()[0]: r for r in results}
    ratios: dict[str, tuple[float, float]] = {}
    if "kademlia" in by:
        base = by["kademlia"]
        for name in ("dnaagent", "dnaagent-unsigned"):
            if name in by:
                ratios[name] = (
                    by[name].puts_per_s / base.puts_per_s,
                    by[name].gets_per_s / base.gets_per_s,
                )
    if args.json:
        out: dict[str, Any] = {r.name.split()[0]: vars(r) for r in results}
        for name, (puts_ratio, gets_ratio) in ratios.items():
            suffix = "" if name == "dnaagent" else "_unsigned"
            out["puts_ratio" + suffix] = puts_ratio
            out["gets_ratio" + suffix] = gets_ratio
        dump_json(out)
        return 0
    print(f"{'':26}{'join s':>9}{'puts/s':>10}{'puts ok':>11}{'gets/s':>10}{'gets ok':>11}")
    for r in results:
        print(
            f"{r.name:26}{r.join_s:9.2f}{r.puts_per_s:10.1f}{r.puts_ok:>6}/{r.puts:<4}"
            f"{r.gets_per_s:10.1f}{r.gets_ok:>6}/{r.gets:<4}"
        )
    for name, (puts_ratio, gets_ratio) in ratios.items():
        label = f"ratio {name} / kademlia"
        print(f"{label:26}{'':9}{puts_ratio:9.2f}x{'':11}{gets_ratio:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
