"""Trace campaigns in the agent: create, join, probe, commit, export.

:class:`CampaignService` is the agent's part of DTS. An operator creates a campaign
(its target list is split into chunks stored in the overlay DHT, see
:mod:`dnaagent.dts.dhtstore`) and joins it on any number of agents. A joined agent runs
a :class:`CampaignRunner`: it claims a chunk, probes its targets with Doubletree,
renews its lease while probing, commits PC and PD, and goes on until no chunk is left
for it; while none is free it looks again every ``poll_interval`` (chunks of failed
monitors become free when their lease expires). Nothing is probed before an operator
joins a campaign.

Every probe goes through :class:`PacedProbe`: the agent's deny list (the
``[distributed]`` deny list, special ranges included) and the campaign's, a token
bucket of ``probe_rate``/``probe_burst`` and at most ``target_per_minute`` probes to
one target.

The prober is pluggable (``monitor_factory``); the default is the real Paris
traceroute prober of :mod:`dnaagent.dts.realprober`. Whatever it is, it has
``probe_chunk(campaign, chunk, targets, global_stop, denied) -> Deferred[list[TraceRecord]]``.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from dnaagent.dts.dhtstore import AsyncDht, DhtPlane
from dnaagent.dts.doubletree import NO_REPLY, Reply
from dnaagent.dts.export import TraceRecord, atlas_json, write_csv
from dnaagent.dts.plane import CampaignError, Lease
from dnaagent.dts.settings import DtsSection
from dnaagent.guard.limits import TargetCap, TokenBucket

MonitorFactory = Callable[[str, "PacedProbe"], Any]


class PacedProbe:
    """``probe(destination, ttl) -> Deferred[Reply]`` within the deny list and rate limits.

    A denied destination is never probed: the call fails at once with ``ProbeDenied``
    (the trace stops with the reason ``denied``) and is counted in ``refused``.
    Otherwise the call waits for a token of the probe bucket and for room under the
    per-target cap, then calls ``inner``.
    """

    def __init__(
        self,
        inner: Callable[[str, int], Any],
        clock: Any,
        *,
        rate: float,
        burst: int,
        target_per_minute: int,
        deny: Callable[[str], str | None] = lambda t: None,
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.bucket = TokenBucket(rate, burst, clock.seconds())
        self.cap: TargetCap[str] = TargetCap(target_per_minute, 60.0)
        self.deny = deny
        self.sent = 0
        self.refused = 0
        self.waited = 0

    def probe(self, destination: str, ttl: int) -> defer.Deferred[Reply]:
        """Probe ``destination`` at ``ttl`` when the limits allow it."""
        why = self.deny(destination)
        if why is not None:
            self.refused += 1
            try:
                from dnaagent.measure.paris import ProbeDenied
            except ImportError:
                return defer.succeed(NO_REPLY)
            return defer.fail(ProbeDenied(why))
        return defer.ensureDeferred(self._paced(destination, ttl))

    __call__ = probe

    async def _paced(self, destination: str, ttl: int) -> Reply:
        while True:
            now = self.clock.seconds()
            wait = self.bucket.wait(now)
            if wait <= 0 and self.cap.take(destination, now, 1):
                self.bucket.take(now)
                break
            self.waited += 1
            await task.deferLater(self.clock, max(wait, 0.05 if wait <= 0 else wait), lambda: None)
        self.sent += 1
        return await defer.maybeDeferred(self.inner, destination, ttl)


class CampaignRunner:
    """One joined campaign on this agent: claim, probe, renew, commit, until done."""

    log = Logger()

    def __init__(
        self,
        plane: DhtPlane,
        monitor: Any,
        name: str,
        clock: Any,
        section: DtsSection,
        src_addr: str = "",
    ) -> None:
        self.plane = plane
        self.monitor = monitor
        self.name = name
        self.clock = clock
        self.section = section
        self.src_addr = src_addr
        self.state = "starting"
        self.chunks_done = 0
        self.chunks_lost = 0
        self.records = 0
        self.errors = 0
        self.last_error = ""
        self.working: set[int] = set()
        self._stopped = False
        self._sleeps: set[defer.Deferred[Any]] = set()
        self._renewers: set[task.LoopingCall] = set()
        self._sources: dict[str, str] = {}
        self._alive: task.LoopingCall | None = None
        self.finished: defer.Deferred[None] = defer.Deferred()

    def start(self) -> None:
        """Join the campaign and claim chunks one after the other."""
        d = defer.ensureDeferred(self._begin())
        d.addErrback(self._failed)

    async def _begin(self) -> None:
        await self.plane.join(self.name, self.src_addr)
        interval = max(self.plane.lease_seconds / 3.0, 0.5)
        self._alive = task.LoopingCall(self._heartbeat)
        self._alive.clock = self.clock
        self._alive.start(interval, now=False).addErrback(self._failed)
        self.state = "running"
        await self._loop()
        self._stop_heartbeat()
        if self.state == "running":
            self.state = "finished"
        if not self.finished.called:
            self.finished.callback(None)

    def _failed(self, failure: Any) -> None:
        self.errors += 1
        self.last_error = failure.getErrorMessage()
        self.state = "failed"
        self.log.failure("trace campaign {c} stopped", failure, c=self.plane.campaign)
        self._stop_heartbeat()
        if not self.finished.called:
            self.finished.callback(None)

    def _heartbeat(self) -> defer.Deferred[None]:
        d = defer.ensureDeferred(self.plane.alive(self.name))
        d.addErrback(lambda f: self._note(f, "heartbeat"))
        return d

    def _stop_heartbeat(self) -> None:
        if self._alive is not None and self._alive.running:
            self._alive.stop()

    def _note(self, failure: Any, what: str) -> None:
        self.errors += 1
        self.last_error = f"{what}: {failure.getErrorMessage()}"
        self.log.warn(
            "trace campaign {c}: {what} failed: {why}",
            c=self.plane.campaign,
            what=what,
            why=failure.getErrorMessage(),
        )

    def order(self) -> list[int]:
        """Chunks in the order this monitor tries them (spread monitors over chunks)."""
        count = self.plane.chunk_count
        digest = hashlib.sha1(self.name.encode()).digest()
        start = int.from_bytes(digest[:4], "big") % max(count, 1)
        return [
            (start + i) % count for i in range(count) if (start + i) % count not in self.working
        ]

    async def _sleep(self, seconds: float) -> None:
        d = task.deferLater(self.clock, seconds, lambda: None)
        self._sleeps.add(d)
        try:
            await d
        except defer.CancelledError:
            pass
        finally:
            self._sleeps.discard(d)

    async def _loop(self) -> None:
        while not self._stopped:
            try:
                lease = await self.plane.claim(self.name, self.order())
            except Exception as e:  # noqa: BLE001 (overlay errors: keep trying)
                self._note(_Failure(e), "claim")
                await self._sleep(self.section.poll_interval)
                continue
            if lease is None:
                if not self.working and await self._done():
                    return
                await self._sleep(self.section.poll_interval)
                continue
            self.working.add(lease.chunk)
            try:
                await self._work(lease)
            except defer.CancelledError:
                return  # stopped while probing: the lease runs out
            except Exception as e:  # noqa: BLE001 (a lost chunk is offered again later)
                self.chunks_lost += 1
                self._note(_Failure(e), f"chunk {lease.chunk}")
                await self._sleep(self.section.poll_interval)
            finally:
                self.working.discard(lease.chunk)

    async def _done(self) -> bool:
        if self.plane.policy == "any":
            return await self.plane.complete()
        return await self.plane.complete([self.name])

    async def _work(self, lease: Lease) -> None:
        holder = {"lease": lease}

        def renew() -> defer.Deferred[None]:
            async def go() -> None:
                holder["lease"] = await self.plane.renew(holder["lease"])

            return defer.ensureDeferred(go()).addErrback(lambda f: self._note(f, "renew"))

        renewer = task.LoopingCall(renew)
        renewer.clock = self.clock
        renewer.start(max(self.plane.lease_seconds / 3.0, 0.5), now=False)
        self._renewers.add(renewer)
        try:
            stop_set = await self.plane.stop_set(lease.chunk)
            targets = await self.plane.targets(lease.chunk)
            probing = defer.maybeDeferred(
                self.monitor.probe_chunk,
                self.plane.campaign,
                lease.chunk,
                targets,
                stop_set,
                self.plane.is_denied,
            )
            self._sleeps.add(probing)
            try:
                records = await probing
            finally:
                self._sleeps.discard(probing)
        finally:
            self._renewers.discard(renewer)
            if renewer.running:
                renewer.stop()
        if self._stopped:
            return  # stopping: the lease runs out and another monitor takes the chunk
        out = []
        for r in records:
            record = _as_dict(r)
            # The source the routing table picks for each destination (the monitor has
            # one address per family, or more when multihomed).
            if record.get("src_addr") in ("0.0.0.0", "::", "", None):
                dst = str(record.get("dst_addr", ""))
                if dst not in self._sources:
                    if len(self._sources) > 10_000:
                        self._sources.clear()
                    self._sources[dst] = source_for(dst)
                record["src_addr"] = self._sources[dst]
            out.append(record)
        await self.plane.commit(holder["lease"], stop_set, out)
        self.chunks_done += 1
        self.records += len(records)

    def stop(self) -> None:
        """Stop claiming; a chunk being probed is abandoned (its lease runs out)."""
        self._stopped = True
        self.state = "stopped" if self.state in ("starting", "running") else self.state
        self._stop_heartbeat()
        for renewer in list(self._renewers):
            if renewer.running:
                renewer.stop()
        for d in list(self._sleeps):
            d.cancel()

    def info(self) -> dict[str, Any]:
        """What this agent does in the campaign."""
        return {
            "campaign": self.plane.campaign,
            "monitor": self.name,
            "state": self.state,
            "working": sorted(self.working),
            "chunks_done": self.chunks_done,
            "chunks_lost": self.chunks_lost,
            "records": self.records,
            "probes_sent": getattr(self.monitor, "probes_sent", None),
            "errors": self.errors,
            "last_error": self.last_error,
        }


class _Failure:
    """Enough of a Failure for :meth:`CampaignRunner._note`."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def getErrorMessage(self) -> str:  # noqa: N802 (Twisted's name)
        return str(self.exc) or type(self.exc).__name__


def _as_dict(record: Any) -> dict[str, Any]:
    return record.to_dict() if isinstance(record, TraceRecord) else dict(record)


def msm_id(campaign: str) -> int:
    """A stable positive measurement ID for a campaign's Atlas export."""
    return int.from_bytes(hashlib.sha1(campaign.encode()).digest()[:4], "big") & 0x7FFFFFFF


def default_monitor_factory(section: DtsSection, clock: Any) -> MonitorFactory:
    """Monitors driving Doubletree over the paced probes (:class:`AsyncMonitor`)."""

    def make(name: str, probe: PacedProbe) -> Any:
        try:
            from dnaagent.dts.realprober import AsyncMonitor
        except ImportError as e:
            raise CampaignError(f"real probes are not available in this build: {e}") from None
        return AsyncMonitor(
            name,
            probe,
            section.start_hop,
            max_ttl=section.max_ttl,
            gap_limit=section.gap_limit,
            clock=clock.seconds,
            concurrency=section.concurrency,
        )

    return make


class CampaignService(Service):
    """Trace campaigns of this agent (see the module docstring).

    ``dht`` is the overlay node (or any :class:`AsyncDht`); ``deny`` returns why a target
    may not be probed (``None``: it may); ``probe`` is the raw ``probe(destination, ttl)``
    the monitors use through :class:`PacedProbe` when ``monitor_factory`` wants it.
    """

    log = Logger()

    def __init__(
        self,
        section: DtsSection,
        clock: Any,
        dht: AsyncDht | None,
        *,
        name: str = "",
        deny: Callable[[str], str | None] = lambda t: None,
        monitor_factory: MonitorFactory | None = None,
        probe: Callable[[str, int], Any] | None = None,
    ) -> None:
        self.section = section
        self.clock = clock
        self.dht = dht
        self.monitor_name = section.monitor or name or f"m{random.getrandbits(32):08x}"
        self.deny = deny
        self.monitor_factory = monitor_factory or default_monitor_factory(section, clock)
        self.paced = PacedProbe(
            probe or (lambda d, t: defer.succeed(NO_REPLY)),
            clock,
            rate=section.probe_rate,
            burst=section.probe_burst,
            target_per_minute=section.target_per_minute,
            deny=deny,
        )
        self.runners: dict[str, CampaignRunner] = {}
        self.src_addr = ""
        self.closers: list[Callable[[], Any]] = []

    def _dht(self) -> AsyncDht:
        if self.dht is None:
            raise CampaignError("the overlay is off: campaigns live in the overlay DHT")
        return self.dht

    def _deny_check(self, target: str) -> bool:
        return self.deny(target) is not None

    async def plane(self, campaign: str) -> DhtPlane:
        """The stored campaign."""
        return await DhtPlane.open(self._dht(), campaign, self.clock, deny_check=self._deny_check)

    async def create(
        self,
        campaign: str,
        targets: Sequence[str],
        *,
        chunk_size: int | None = None,
        policy: str | None = None,
        lease_seconds: float | None = None,
        max_holders: int | None = None,
    ) -> dict[str, Any]:
        """Store a new campaign; bad targets are refused with the reasons."""
        refused = {t: why for t in targets if (why := self.deny(t)) is not None}
        if refused:
            first = next(iter(refused.items()))
            raise CampaignError(
                f"{len(refused)} target(s) may not be probed, e.g. {first[0]}: {first[1]}"
            )
        plane = await DhtPlane.create(
            self._dht(),
            campaign,
            targets,
            self.clock,
            chunk_size=chunk_size or self.section.chunk_size,
            policy=policy or self.section.policy,
            lease_seconds=lease_seconds or self.section.lease_seconds,
            max_holders=max_holders,
            creator=self.monitor_name,
            deny_check=self._deny_check,
        )
        return {
            "campaign": campaign,
            "chunks": plane.chunk_count,
            "targets": len(dict.fromkeys(targets)),
            "policy": plane.policy,
            "lease_seconds": plane.lease_seconds,
        }

    async def join(self, campaign: str) -> dict[str, Any]:
        """Start probing ``campaign`` here (again if an earlier run ended)."""
        runner = self.runners.get(campaign)
        if runner is not None and runner.state in ("starting", "running"):
            return runner.info()
        plane = await self.plane(campaign)
        monitor = self.monitor_factory(self.monitor_name, self.paced)
        runner = CampaignRunner(
            plane, monitor, self.monitor_name, self.clock, self.section, self.src_addr
        )
        self.runners[campaign] = runner
        runner.start()
        self.log.info("joined trace campaign {c} as {m}", c=campaign, m=self.monitor_name)
        return runner.info()

    def leave(self, campaign: str) -> bool:
        """Stop probing ``campaign`` here; whether it was joined."""
        runner = self.runners.get(campaign)
        if runner is None:
            return False
        runner.stop()
        return True

    async def status(self, campaign: str) -> dict[str, Any]:
        """The campaign's state in the DHT, and this agent's part in it."""
        plane = await self.plane(campaign)
        out = await plane.status()
        runner = self.runners.get(campaign)
        out["local"] = runner.info() if runner is not None else None
        out["malformed_values"] = plane.malformed
        return out

    async def add(self, campaign: str, targets: Sequence[str]) -> dict[str, Any]:
        """Add targets (refused ones are reported, not added)."""
        refused = {t: why for t in targets if (why := self.deny(t)) is not None}
        plane = await self.plane(campaign)
        changed = await plane.add_targets([t for t in targets if t not in refused])
        return {"campaign": campaign, "chunks_changed": changed, "refused": refused}

    async def remove(self, campaign: str, targets: Sequence[str]) -> dict[str, Any]:
        """Remove targets; which were found."""
        plane = await self.plane(campaign)
        found = [t for t in targets if await plane.remove_target(t)]
        return {"campaign": campaign, "removed": found}

    async def deny_targets(self, campaign: str, targets: Sequence[str]) -> dict[str, Any]:
        """Blacklist targets for the rest of the campaign."""
        plane = await self.plane(campaign)
        for t in targets:
            await plane.deny(t)
        return {"campaign": campaign, "denied": sorted(plane.denied)}

    async def export(self, campaign: str, fmt: str) -> dict[str, Any]:
        """Deduplicated records as RIPE Atlas JSON (a list) or CSV (text)."""
        if fmt not in ("atlas", "csv"):
            raise CampaignError(f"format must be atlas or csv, not {fmt!r}")
        plane = await self.plane(campaign)
        records, counts = await plane.records()
        records.sort(key=lambda r: (r.chunk, r.monitor, r.dst_addr, r.timestamp))
        monitors = sorted({r.monitor for r in records})
        prb_ids = {m: i + 1 for i, m in enumerate(monitors)}
        out: dict[str, Any] = {
            "campaign": campaign,
            "format": fmt,
            "records": len(records),
            "monitors": prb_ids,
            **counts,
        }
        if fmt == "atlas":
            import json

            out["data"] = json.loads(atlas_json(records, msm_id=msm_id(campaign), prb_ids=prb_ids))
        else:
            buf = io.StringIO()
            write_csv(records, buf)
            out["data"] = buf.getvalue()
        return out

    def local(self) -> dict[str, Any]:
        """Campaigns joined on this agent."""
        return {
            "monitor": self.monitor_name,
            "campaigns": [r.info() for r in self.runners.values()],
            "probes_sent": self.paced.sent,
            "probes_refused": self.paced.refused,
        }

    def stopService(self) -> Any:  # noqa: N802 (Twisted's name)
        """Stop every runner."""
        for runner in self.runners.values():
            runner.stop()
        for close in self.closers:
            try:
                close()
            except Exception:  # noqa: BLE001 (stopping anyway)
                self.log.failure("closing the prober failed")
        return super().stopService()


def source_for(destination: str) -> str:
    """The source address the routing table picks for ``destination`` (nothing is sent)."""
    import socket

    v6 = ":" in destination
    try:
        with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((destination, 33434))
            return str(s.getsockname()[0])
    except OSError:
        return "::" if v6 else "0.0.0.0"


def build_campaign_service(cfg: Any, reactor: Any, overlay: Any) -> CampaignService:
    """The agent's campaign service: the overlay node as DHT, the ``[distributed]`` deny
    list (special ranges included), Paris traceroute probes opened at the first join."""
    from dnaagent.guard.denylist import DenyList

    section: DtsSection = cfg.dts
    deny_list = DenyList(cfg.distributed.deny, deny_special=cfg.distributed.deny_special)
    prober: dict[str, Any] = {}

    def raw_probe(destination: str, ttl: int) -> defer.Deferred[Reply]:
        if "prober" not in prober:
            from dnaagent.measure.paris import Prober

            prober["prober"] = Prober(
                reactor,
                protocol=section.protocol,
                rate=section.probe_rate,
                burst=section.probe_burst,
                timeout=section.probe_timeout,
                deny=lambda t: deny_list.reason(t) is not None,
            )
        return prober["prober"].probe(destination, ttl)

    name = section.monitor or (overlay.node_id.hex()[:16] if overlay is not None else "")
    service = CampaignService(
        section,
        reactor,
        overlay,
        name=name,
        deny=lambda t: deny_list.reason(t),
        probe=raw_probe,
    )
    service.closers.append(lambda: prober["prober"].close() if "prober" in prober else None)
    return service


__all__ = [
    "build_campaign_service",
    "source_for",
    "CampaignRunner",
    "CampaignService",
    "PacedProbe",
    "default_monitor_factory",
    "msm_id",
]
