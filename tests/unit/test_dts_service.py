"""The campaign service: monitors claim, probe (paced), renew, commit; a failed monitor's
chunk is probed again after its lease; export; rate limits and deny list."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from dnaagent.dts.dhtstore import DhtPlane, MemoryDht
from dnaagent.dts.doubletree import DoubletreeTrace, Reply
from dnaagent.dts.export import TraceRecord
from dnaagent.dts.plane import CampaignError
from dnaagent.dts.service import CampaignService, PacedProbe
from dnaagent.dts.settings import DtsSection
from dnaagent.dts.simprober import ReplayProber, SimPath
from dnaagent.dts.stopsets import GlobalStopSet, LocalStopSet

# A tree: every monitor reaches 203.0.113.0/24 hosts through 198.51.100.1 then
# .2 (hosts .1-.4) or .3 (hosts .5-.8).
PATHS = {
    f"203.0.113.{i}": SimPath(("198.51.100.1", "198.51.100.2" if i <= 4 else "198.51.100.3"), 3)
    for i in range(1, 9)
}
TARGETS = list(PATHS)


class ReplayMonitor:
    """Doubletree over the service's paced probes (the asynchronous monitor interface)."""

    def __init__(self, name: str, probe: PacedProbe, clock: Clock, start_ttl: int = 2) -> None:
        self.name = name
        self.probe = probe
        self.clock = clock
        self.start_ttl = start_ttl
        self.local = LocalStopSet()
        self.src_addr = "192.0.2.1"
        self.probes_sent = 0
        self.hang = False

    async def _trace(self, destination: str, global_stop: GlobalStopSet) -> DoubletreeTrace:
        trace = DoubletreeTrace(
            destination, self.start_ttl, local_stop=self.local, global_stop=global_stop
        )
        ttl = trace.next_ttl()
        while ttl is not None:
            if self.hang:
                await defer.Deferred()  # a monitor that died: never answers
            reply = await self.probe.probe(destination, ttl)
            self.probes_sent += 1
            ttl = trace.record(ttl, reply)
        for interface in trace.interfaces():
            self.local.add(interface)
            global_stop.add(interface, destination)
        return trace

    def probe_chunk(
        self,
        campaign: str,
        chunk: int,
        targets: list[str],
        global_stop: GlobalStopSet,
        denied: Any = None,
    ) -> defer.Deferred[list[TraceRecord]]:
        async def run() -> list[TraceRecord]:
            out = []
            for t in targets:
                if denied is not None and denied(t):
                    continue
                start = self.clock.seconds()
                trace = await self._trace(t, global_stop)
                out.append(
                    TraceRecord.from_trace(
                        trace,
                        campaign=campaign,
                        chunk=chunk,
                        monitor=self.name,
                        src_addr=self.src_addr,
                        timestamp=start,
                        endtime=self.clock.seconds(),
                    )
                )
            return out

        return defer.ensureDeferred(run())


class Fleet:
    """Monitors sharing one DHT and one clock."""

    def __init__(self, n: int, denied: str = "", **section: Any) -> None:
        self.denied = denied
        self.clock = Clock()
        self.clock.advance(10_000)
        self.dht = MemoryDht(self.clock)
        self.monitors: dict[str, ReplayMonitor] = {}
        section.setdefault("probe_rate", 100.0)
        section.setdefault("poll_interval", 1.0)
        self.section = DtsSection(**section)
        self.services = [self._service(f"m{i}") for i in range(n)]

    def _service(self, name: str) -> CampaignService:
        def factory(monitor: str, probe: PacedProbe) -> ReplayMonitor:
            m = ReplayMonitor(monitor, probe, self.clock)
            self.monitors[monitor] = m
            return m

        replay = ReplayProber(PATHS)
        return CampaignService(
            self.section,
            self.clock,
            self.dht,
            name=name,
            deny=lambda t: "in the deny list" if t == self.denied else None,
            monitor_factory=factory,
            probe=replay,
        )

    def run(self, coro: Any) -> Any:
        d = defer.ensureDeferred(coro)
        out: list[Any] = []
        d.addBoth(out.append)
        self.advance_until(lambda: bool(out), 60)
        if hasattr(out[0], "raiseException"):
            out[0].raiseException()
        return out[0]

    def advance_until(self, done: Any, seconds: float) -> None:
        for _ in range(int(seconds / 0.1)):
            if done():
                return
            self.clock.advance(0.1)
        assert done(), f"not done within {seconds} s of simulated time"


def test_three_monitors_complete_a_campaign_and_export() -> None:
    fleet = Fleet(3)
    a = fleet.services[0]
    created = fleet.run(a.create("c1", TARGETS, chunk_size=2, lease_seconds=30))
    assert created == {
        "campaign": "c1",
        "chunks": 4,
        "targets": 8,
        "policy": "any",
        "lease_seconds": 30.0,
    }
    for s in fleet.services:
        fleet.run(s.join("c1"))
    fleet.advance_until(
        lambda: all(s.runners["c1"].state == "finished" for s in fleet.services), 120
    )
    status = fleet.run(a.status("c1"))
    assert status["complete"] and status["chunks_done"] == 4 and status["chunks_pending"] == 0
    assert set(status["monitors"]) == {"m0", "m1", "m2"}
    # Every monitor did some work (claims spread by the order) and the records add up.
    assert sum(s.runners["c1"].records for s in fleet.services) == 8
    out = fleet.run(fleet.services[2].export("c1", "atlas"))
    assert out["records"] == 8 and out["duplicates"] == 0
    assert sorted(r["dst_addr"] for r in out["data"]) == sorted(TARGETS)
    hops = {h["result"][0].get("from") for r in out["data"] for h in r["result"]}
    assert {"198.51.100.1", "198.51.100.2", "198.51.100.3"} <= hops
    assert all(r["type"] == "traceroute" and r["dts"]["campaign"] == "c1" for r in out["data"])
    json.dumps(out)  # the API can send it
    text = fleet.run(a.export("c1", "csv"))["data"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["dst_addr"] for r in rows} == set(TARGETS)


def test_failed_monitor_chunk_is_probed_again_after_its_lease() -> None:
    fleet = Fleet(2)
    a, b = fleet.services
    fleet.run(a.create("c1", TARGETS[:4], chunk_size=2, lease_seconds=20))
    fleet.run(b.join("c1"))
    # b holds a chunk, then dies in the middle of it (no renewals, no answers).
    fleet.advance_until(lambda: bool(b.runners["c1"].working), 10)
    lost = next(iter(b.runners["c1"].working))
    fleet.monitors["m1"].hang = True
    fleet.clock.advance(0.5)
    b.runners["c1"].stop()
    fleet.run(a.join("c1"))
    fleet.advance_until(lambda: a.runners["c1"].state == "finished", 200)
    status = fleet.run(a.status("c1"))
    assert status["complete"]
    chunk = status["chunks"][lost]
    assert chunk["done"] == ["m0"]  # re-claimed after m1's lease ran out
    assert status["monitors"]["m1"]["alive"] is False
    out = fleet.run(a.export("c1", "atlas"))
    assert sorted(r["dst_addr"] for r in out["data"]) == TARGETS[:4]


def test_rate_limit_paces_probes_in_clock_time() -> None:
    clock = Clock()
    replay = ReplayProber(PATHS)
    paced = PacedProbe(replay, clock, rate=2.0, burst=1, target_per_minute=1000)
    fired: list[Reply] = []
    for ttl in range(1, 6):
        paced.probe("203.0.113.1", ttl).addCallback(fired.append)
    assert len(fired) == 1

    def steps(seconds: float) -> None:
        for _ in range(int(seconds / 0.05)):
            clock.advance(0.05)

    steps(0.9)
    assert len(fired) == 2  # 2 per second, one at a time
    steps(0.2)
    assert len(fired) == 3
    steps(1.0)
    assert len(fired) == 5 and replay.sent == 5
    # Per-target cap: 3 probes a minute to one target.
    capped = PacedProbe(replay, clock, rate=100.0, burst=100, target_per_minute=3)
    got: list[Reply] = []
    for ttl in range(1, 6):
        capped.probe("203.0.113.5", ttl).addCallback(got.append)
    assert len(got) == 3
    steps(59)
    assert len(got) == 3
    steps(2)
    assert len(got) == 5


def test_deny_list_refuses_targets() -> None:
    fleet = Fleet(1, denied="203.0.113.2")
    s = fleet.services[0]
    with pytest.raises(CampaignError, match="may not be probed"):
        fleet.run(s.create("c1", ["203.0.113.1", "203.0.113.2"]))
    out = fleet.run(s.create("c2", ["203.0.113.1"], chunk_size=2))
    assert out["chunks"] == 1
    added = fleet.run(s.add("c2", ["203.0.113.2", "203.0.113.5"]))
    assert added["refused"] == {"203.0.113.2": "in the deny list"}
    denied = fleet.run(s.deny_targets("c2", ["203.0.113.5"]))
    assert denied["denied"] == ["203.0.113.5"]
    # The paced prober refuses a denied destination without sending anything.
    failures: list[Any] = []
    s.paced.probe("203.0.113.2", 1).addErrback(failures.append)
    assert s.paced.refused == 1 and len(failures) == 1
    fleet.run(s.join("c2"))
    fleet.advance_until(lambda: s.runners["c2"].state == "finished", 60)
    out = fleet.run(s.export("c2", "atlas"))
    assert [r["dst_addr"] for r in out["data"]] == ["203.0.113.1"]


def test_no_overlay_and_unknown_campaign() -> None:
    fleet = Fleet(1)
    s = CampaignService(DtsSection(), fleet.clock, None, name="x")
    with pytest.raises(CampaignError, match="overlay is off"):
        fleet.run(s.status("c1"))
    with pytest.raises(CampaignError, match="not found"):
        fleet.run(fleet.services[0].join("nope"))
    with pytest.raises(CampaignError, match="format"):
        fleet.run(fleet.services[0].export("nope", "xml"))
    assert fleet.run(DhtPlane.create(fleet.dht, "c9", ["192.0.2.9"], fleet.clock, chunk_size=1))


def test_default_factory_drives_the_async_monitor_with_denials() -> None:
    """The agent's own monitor (AsyncMonitor over PacedProbe): a campaign completes, and a
    target the agent's deny list refuses while the campaign runs is never probed."""
    from dnaagent.dts.realprober import AsyncMonitor

    clock = Clock()
    clock.advance(10_000)
    dht = MemoryDht(clock)
    refused: set[str] = set()
    replay = ReplayProber(PATHS)
    section = DtsSection(probe_rate=50.0, poll_interval=1.0, start_hop=2, concurrency=2)
    s = CampaignService(
        section,
        clock,
        dht,
        name="real",
        deny=lambda t: "refused" if t in refused else None,
        probe=replay,
    )
    fleet = Fleet(0)
    fleet.clock = clock
    fleet.run(s.create("c1", TARGETS, chunk_size=4, lease_seconds=30))
    refused.add("203.0.113.8")  # denied after the campaign was made
    fleet.run(s.join("c1"))
    assert isinstance(s.runners["c1"].monitor, AsyncMonitor)
    fleet.advance_until(lambda: s.runners["c1"].state == "finished", 120)
    out = fleet.run(s.export("c1", "atlas"))
    assert sorted(r["dst_addr"] for r in out["data"]) == TARGETS[:7]
    assert all(r["dts"]["forward_stop"] == "destination_reached" for r in out["data"])
    assert s.runners["c1"].monitor.probes_sent == replay.sent == s.paced.sent
