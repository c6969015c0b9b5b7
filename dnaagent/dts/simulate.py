"""A whole DTS campaign in simulated time: monitors, chunks, leases, failures.

:func:`simulate_campaign` runs monitors over a :class:`~dnaagent.dts.plane.Plane` with
one simulated clock. A probe takes ``probe_time`` seconds and every chunk costs
``dht_time`` seconds of DHT access; a monitor reads a chunk's global stop set when it
claims the chunk and commits the new pairs when the chunk is done, so monitors working
on the same chunk at the same time cannot use each other's pairs (the effect behind the
DTS paper's Fig. 4). Monitor ``i`` of ``M`` starts at chunk ``i * C // M`` and goes
round the chunks. A monitor set to fail stops for good when it has completed its share
of chunks: the chunk it would start next is never probed by it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from dnaagent.dts.monitor import Monitor
from dnaagent.dts.plane import Plane


@dataclass
class CampaignResult:
    """What a simulated campaign measured."""

    probes: dict[str, int] = field(default_factory=dict)
    chunks_done: dict[str, int] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    interfaces: set[str] = field(default_factory=set)
    links: set[tuple[str, str]] = field(default_factory=set)
    duration: float = 0.0

    def survivor_mean_probes(self) -> float:
        """Average probes of the monitors that did not fail."""
        alive = [p for m, p in self.probes.items() if m not in self.failed]
        return sum(alive) / len(alive) if alive else 0.0


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate_campaign(
    plane: Plane,
    clock: _Clock | None,
    monitors: Sequence[Monitor],
    *,
    fail_after: dict[str, int] | None = None,
    probe_time: float = 0.05,
    dht_time: float = 0.5,
    keep_records: bool = False,
) -> CampaignResult:
    """Run ``monitors`` on ``plane`` until each has done every chunk it can.

    ``clock`` must be the clock the plane was created with (see :func:`new_clock`);
    ``fail_after`` maps a monitor name to the number of chunks after which it fails.
    """
    if clock is None:
        raise ValueError("simulate_campaign needs the plane's clock (new_clock())")
    fail_after = fail_after or {}
    result = CampaignResult()
    count = plane.chunk_count
    orders = {
        m.name: [(i * count // len(monitors) + k) % count for k in range(count)]
        for i, m in enumerate(monitors)
    }
    by_name = {m.name: m for m in monitors}
    for m in monitors:
        m.clock = clock
        result.probes[m.name] = 0
        result.chunks_done[m.name] = 0
    queue: list[tuple[float, int, str, str, object]] = []
    seq = 0
    for m in monitors:
        queue.append((0.0, seq, "claim", m.name, None))
        seq += 1
    heapq.heapify(queue)
    waiting: list[str] = []
    while queue:
        t, _, action, name, payload = heapq.heappop(queue)
        clock.now = t
        monitor = by_name[name]
        if action == "commit":
            lease, stop_set, records = payload  # type: ignore[misc]
            plane.commit(lease, stop_set, [r.to_dict() for r in records] if keep_records else [])
            result.chunks_done[name] += 1
            for r in records:
                replies = r.replies()
                for ttl, reply in replies.items():
                    if reply.address is not None and not reply.reached:
                        result.interfaces.add(reply.address)
                        nxt = replies.get(ttl + 1)
                        if nxt is not None and nxt.address is not None and not nxt.reached:
                            result.links.add((reply.address, nxt.address))
            heapq.heappush(queue, (t, seq, "claim", name, None))
            seq += 1
            for w in waiting:
                heapq.heappush(queue, (t, seq, "claim", w, None))
                seq += 1
            waiting.clear()
            continue
        if name in fail_after and result.chunks_done[name] >= fail_after[name]:
            result.failed.add(name)
            continue
        lease = plane.claim(name, orders[name])
        if lease is None:
            if (
                any(name not in c["done"] for c in plane.status()["chunks"])
                and plane.policy == "each"
            ):
                waiting.append(name)
            continue
        stop_set = plane.stop_set(lease.chunk)
        before = monitor.probes_sent
        records = monitor.probe_chunk(
            plane.campaign, lease.chunk, plane.targets(lease.chunk), stop_set, plane.is_denied
        )
        spent = monitor.probes_sent - before
        result.probes[name] += spent
        end = t + dht_time + spent * probe_time
        heapq.heappush(queue, (end, seq, "commit", name, (lease, stop_set, records)))
        seq += 1
        result.duration = max(result.duration, end)
    return result


def new_clock() -> _Clock:
    """A settable clock (``clock.now``) to create the plane with."""
    return _Clock()
