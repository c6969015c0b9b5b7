"""XBAC agents in one process: real overlay nodes on an in-memory network, simulated time.

Every agent is a real :class:`~dnaagent.overlay.node.OverlayNode` with a real
:class:`~dnaagent.xbac.node.XbacNode` on top; datagrams travel through
:class:`tests.fakes.datagram.MemoryNetwork` on a :class:`~dnaagent.sim.clock.SimClock`, and
``measure`` answers from a deterministic latency model (sites: hosts of one site are a few
ms apart, sites are far apart) after the simulated RTT. Nothing depends on wall-clock time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from dnaagent.overlay import Identity, OverlayConfig, OverlayNode
from dnaagent.sim.clock import SimClock
from dnaagent.xbac.node import XbacNode
from dnaagent.xbac.params import XbacParams
from tests.fakes.datagram import MemoryNetwork

PORT = 4001

RttFn = Callable[[str, str], float]


class SiteLatency:
    """RTTs from site coordinates: hosts of a site are ``local`` apart, sites by a table.

    ``sites`` maps a site name to (x, y) in milliseconds on a plane; the RTT between two
    sites is their distance plus ``base``; inside a site it is ``local`` plus a small,
    deterministic per-pair offset. ``noisy`` hosts answer with a pseudo-random factor
    (their measurements are inconsistent, thesis §6.1).
    """

    def __init__(self, sites: dict[str, tuple[float, float]], seed: int = 0) -> None:
        self.sites = sites
        self.site_of: dict[str, str] = {}
        self.noisy: set[str] = set()
        self.local = 0.002
        self.base = 0.005
        self._rng = random.Random(seed)

    def place(self, host: str, site: str) -> None:
        """Put ``host`` at ``site``."""
        self.site_of[host] = site

    def rtt(self, a: str, b: str) -> float:
        """Round-trip time in seconds between hosts ``a`` and ``b``."""
        sa, sb = self.site_of[a], self.site_of[b]
        if sa == sb:
            v = self.local + 0.0001 * ((hash((min(a, b), max(a, b))) & 0xF) / 16)
        else:
            (xa, ya), (xb, yb) = self.sites[sa], self.sites[sb]
            v = self.base + ((xa - xb) ** 2 + (ya - yb) ** 2) ** 0.5 / 1000.0
        if a in self.noisy or b in self.noisy:
            v *= self._rng.uniform(0.6, 1.6)
        return v


class Lab:
    """A set of XBAC agents on one simulated network."""

    def __init__(
        self,
        latency: SiteLatency,
        params: XbacParams | None = None,
        seed: int = 1,
        loss: float = 0.0,
    ) -> None:
        self.clock = SimClock(strict=True)
        self.latency = latency
        self.params = params or XbacParams()
        self.net = MemoryNetwork(self.clock, delay=0.002, loss=loss, seed=seed)  # type: ignore[arg-type]
        self.rng = random.Random(seed)
        self.config = OverlayConfig(require_signatures=False, rpc_timeout=2.0, app_timeout=3.0)
        self.agents: dict[str, XbacNode] = {}
        self.overlays: dict[str, OverlayNode] = {}
        self.down: set[str] = set()
        self.failures: list[Failure] = []

    def measure_from(self, host: str) -> Callable[[str], Deferred[float]]:
        """The measure function of ``host``: the model's RTT, delivered after that RTT."""

        def measure(target: str) -> Deferred[float]:
            d: Deferred[float] = Deferred()
            if target not in self.latency.site_of or target in self.down:
                self.clock.callLater(2.0, d.errback, TimeoutError(target))
                return d
            v = self.latency.rtt(host, target)
            self.clock.callLater(v, d.callback, v)
            return d

        return measure

    def add(self, host: str, site: str, start: bool = True) -> XbacNode:
        """Create the agent of ``host`` at ``site``; join the overlay and start XBAC."""
        self.latency.place(host, site)
        overlay = OverlayNode(
            Identity.unsigned(self.rng),
            self.clock,  # type: ignore[arg-type]
            config=self.config,
            rng=random.Random(self.rng.random()),
        )
        self.net.listen((host, PORT), overlay)
        agent = XbacNode(
            overlay,
            self.clock,
            self.measure_from(host),
            self.params,
            host_id=host,
            rng=random.Random(self.rng.random()),
        )
        seeds = [(h, PORT) for h in self.overlays if h not in self.down][:3]
        self.overlays[host] = overlay
        self.agents[host] = agent
        if start:
            self.wait(overlay.join(seeds) if seeds else _done(), 30.0, allow_fail=True)
            self.wait(agent.start(), 120.0)
        return agent

    def run(self, seconds: float) -> None:
        """Advance simulated time."""
        self.clock.run_until(self.clock.seconds() + seconds)

    def wait(self, d: Deferred[Any], seconds: float, allow_fail: bool = False) -> Any:
        """Run until ``d`` fires (at most ``seconds``); return its result."""
        box: list[Any] = []
        d.addBoth(box.append)
        end = self.clock.seconds() + seconds
        while not box and self.clock.seconds() < end:
            t = self.clock.next_time()
            if t is None or t > end:
                self.clock.run_until(end)
                break
            self.clock.run_until(t)
        assert box, "operation did not finish in time"
        r = box[0]
        if isinstance(r, Failure):
            if allow_fail:
                return None
            r.raiseException()
        return r

    def leave(self, host: str) -> None:
        """The agent leaves with notice (XBAC hand-over, then the overlay)."""
        self.agents[host].stop(graceful=True)
        self.run(1.0)
        self.overlays[host].leave()
        self.down.add(host)

    def crash(self, host: str) -> None:
        """The agent disappears without notice."""
        self.net.crash((host, PORT))
        self.agents[host].stop(graceful=False)
        self.down.add(host)

    def live(self) -> dict[str, XbacNode]:
        """Agents still running."""
        return {h: a for h, a in self.agents.items() if h not in self.down}


def _done() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    d.callback(None)
    return d
