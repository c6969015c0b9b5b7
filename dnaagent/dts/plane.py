"""The DTS control plane (PT, PC) and data plane (PD) behind a key-value interface.

A campaign lives entirely in a key-value store under the keys of
:mod:`dnaagent.dts.chunks`: a campaign record (chunk count, chunk size, claim policy,
lease length, deny list), and per chunk its targets (PT), its global stop set (PC), its
probing data (PD) and its lease record. Monitors never talk to each other: they claim a
chunk, read its PT and PC, probe, and commit PD and the new PC pairs when the chunk is
done (data of a chunk in progress is lost if the monitor fails, as in the paper).

Claim policies:

* ``"each"`` -- every monitor probes every chunk (Doubletree's setting: the global stop
  set of a chunk helps the monitors that come to it later). ``max_holders`` bounds how
  many monitors hold a chunk at once (``None``: no bound).
* ``"any"`` -- one monitor per chunk is enough (a divided target list).

A lease expires ``lease_seconds`` after it was taken or renewed; an expired lease no
longer counts, so the chunk of a failed monitor is offered again.

:class:`KeyValueStore` is the whole storage interface: synchronous ``get``/``put`` of
bytes. :class:`MemoryStore` implements it in memory; an adapter over the overlay DHT
(a local replica written through with STORE and refreshed with FIND_VALUE) satisfies
it too. The read-modify-write of shared values is not atomic on a DHT: two monitors that
commit the same chunk at the same instant may lose one another's PC pairs, which costs
probes later, never correctness (PD values are kept per monitor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from dnaagent.dts.chunks import (
    TargetChunk,
    campaign_key,
    check_campaign_id,
    chunk_key,
    split,
)
from dnaagent.dts.stopsets import GlobalStopSet

POLICIES = ("each", "any")


class KeyValueStore(Protocol):
    """Byte values under 20-byte keys (the DHT abstraction of the DTS paper)."""

    def get(self, key: bytes) -> bytes | None:
        """The value under ``key``, or ``None``."""
        ...

    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        ...


class MemoryStore:
    """A :class:`KeyValueStore` in a dict; counts gets and puts."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.gets = 0
        self.puts = 0

    def get(self, key: bytes) -> bytes | None:
        """The value under ``key``, or ``None``."""
        self.gets += 1
        return self.values.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        self.puts += 1
        self.values[key] = value


class CampaignError(ValueError):
    """A campaign is missing, malformed, or asked something impossible."""


@dataclass(frozen=True)
class Lease:
    """A monitor's claim on a chunk until ``expires`` (clock seconds)."""

    campaign: str
    chunk: int
    monitor: str
    expires: float


def _clock_fn(clock: Any) -> Callable[[], float]:
    seconds = getattr(clock, "seconds", None)
    if callable(seconds):
        return seconds
    if callable(clock):
        return clock
    raise TypeError("clock must be callable or have seconds() (an IReactorTime)")


def _unpack(data: bytes | None, what: str) -> dict[str, Any]:
    if data is None:
        raise CampaignError(f"{what} is missing")
    try:
        obj = msgpack.unpackb(data)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CampaignError(f"{what} is not msgpack: {exc}") from exc
    if not isinstance(obj, dict):
        raise CampaignError(f"{what} must be a map")
    return obj


class Plane:
    """One campaign's control and data planes over a :class:`KeyValueStore`.

    ``clock`` is a callable returning seconds or an ``IReactorTime``; ``deny_check`` an
    optional hook (for example the agent's deny list) consulted besides the campaign's
    own deny list before a target is probed.
    """

    def __init__(
        self,
        store: KeyValueStore,
        campaign: str,
        clock: Any,
        deny_check: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self.campaign = check_campaign_id(campaign)
        self._now = _clock_fn(clock)
        self.deny_check = deny_check
        self._record = _unpack(store.get(campaign_key(campaign)), f"campaign {campaign!r}")

    # -- creation and the campaign record -------------------------------------------------

    @classmethod
    def create(
        cls,
        store: KeyValueStore,
        campaign: str,
        targets: Sequence[str],
        clock: Any,
        *,
        chunk_size: int,
        policy: str = "each",
        lease_seconds: float = 600.0,
        max_holders: int | None = None,
        deny_check: Callable[[str], bool] | None = None,
    ) -> Plane:
        """Split ``targets`` into chunks of ``chunk_size`` and store PT, empty PC, PD."""
        check_campaign_id(campaign)
        if policy not in POLICIES:
            raise CampaignError(f"policy must be one of {POLICIES}, not {policy!r}")
        if lease_seconds <= 0:
            raise CampaignError("lease_seconds must be positive")
        if max_holders is not None and max_holders < 1:
            raise CampaignError("max_holders must be at least 1")
        if store.get(campaign_key(campaign)) is not None:
            raise CampaignError(f"campaign {campaign!r} already exists")
        unique = list(dict.fromkeys(targets))
        parts = split(unique, chunk_size) if unique else [[]]
        record = {
            "chunks": len(parts),
            "chunk_size": chunk_size,
            "policy": policy,
            "lease_seconds": float(lease_seconds),
            "max_holders": max_holders or 0,
            "denied": [],
            "created": float(_clock_fn(clock)()),
        }
        for n, part in enumerate(parts):
            cls._init_chunk(store, campaign, n, part)
        store.put(campaign_key(campaign), msgpack.packb(record))
        return cls(store, campaign, clock, deny_check)

    @staticmethod
    def _init_chunk(store: KeyValueStore, campaign: str, n: int, targets: list[str]) -> None:
        store.put(chunk_key("pt", campaign, n), TargetChunk(n, targets).encode())
        store.put(chunk_key("pc", campaign, n), GlobalStopSet(n).encode())
        store.put(chunk_key("pd", campaign, n), msgpack.packb({}))
        store.put(chunk_key("lease", campaign, n), msgpack.packb({"holders": {}, "done": []}))

    def _save_record(self) -> None:
        self.store.put(campaign_key(self.campaign), msgpack.packb(self._record))

    def refresh(self) -> None:
        """Read the campaign record again (chunk count, deny list)."""
        self._record = _unpack(self.store.get(campaign_key(self.campaign)), "campaign")

    @property
    def chunk_count(self) -> int:
        """Number of chunks."""
        return int(self._record["chunks"])

    @property
    def policy(self) -> str:
        """``"each"`` or ``"any"``."""
        return str(self._record["policy"])

    # -- targets ------------------------------------------------------------------------

    def chunk(self, n: int) -> TargetChunk:
        """The PT value of chunk ``n``."""
        self._check_chunk(n)
        data = self.store.get(chunk_key("pt", self.campaign, n))
        if data is None:
            raise CampaignError(f"PT of chunk {n} is missing")
        try:
            return TargetChunk.decode(data)
        except ValueError as exc:
            raise CampaignError(str(exc)) from exc

    def targets(self, n: int) -> list[str]:
        """Targets of chunk ``n`` still to probe (not removed, not denied)."""
        return [t for t in self.chunk(n).active() if not self.is_denied(t)]

    def is_denied(self, target: str) -> bool:
        """Whether ``target`` is on the campaign's deny list or refused by the hook."""
        if target in self._record["denied"]:
            return True
        return self.deny_check is not None and bool(self.deny_check(target))

    def add_targets(self, targets: Iterable[str]) -> list[int]:
        """Add targets while the campaign runs; returns the chunks that changed.

        The last chunk is filled up to the chunk size, then new chunks are made. A target
        already present (and not removed) or denied is skipped.
        """
        self.refresh()
        present: set[str] = set()
        for n in range(self.chunk_count):
            present.update(self.chunk(n).active())
        new = [
            t
            for t in dict.fromkeys(targets)
            if t not in present and t not in self._record["denied"]
        ]
        if not new:
            return []
        size = int(self._record["chunk_size"])
        changed: list[int] = []
        last_n = self.chunk_count - 1
        last = self.chunk(last_n)
        room = size - len(last.targets)
        if room > 0:
            last.targets.extend(new[:room])
            for t in new[:room]:
                last.removed.discard(t)
            self.store.put(chunk_key("pt", self.campaign, last_n), last.encode())
            changed.append(last_n)
            new = new[room:]
        for part in split(new, size) if new else []:
            n = int(self._record["chunks"])
            self._init_chunk(self.store, self.campaign, n, part)
            self._record["chunks"] = n + 1
            changed.append(n)
        self._save_record()
        return changed

    def remove_target(self, target: str) -> bool:
        """Remove ``target`` from its chunk and its pairs from the PC; whether it was there."""
        found = False
        for n in range(self.chunk_count):
            chunk = self.chunk(n)
            if target in chunk.targets and target not in chunk.removed:
                chunk.removed.add(target)
                self.store.put(chunk_key("pt", self.campaign, n), chunk.encode())
                pc = self.stop_set(n)
                pc.discard_destination(target)
                self.store.put(chunk_key("pc", self.campaign, n), pc.encode())
                found = True
        return found

    def deny(self, target: str) -> None:
        """Blacklist ``target``: remove it and refuse it from now on (also if added again)."""
        self.refresh()
        if target not in self._record["denied"]:
            self._record["denied"].append(target)
            self._save_record()
        self.remove_target(target)

    # -- probing control ----------------------------------------------------------------

    def stop_set(self, n: int) -> GlobalStopSet:
        """The global stop set (PC) of chunk ``n`` as committed so far."""
        self._check_chunk(n)
        data = self.store.get(chunk_key("pc", self.campaign, n))
        if data is None:
            return GlobalStopSet(n)
        try:
            return GlobalStopSet.decode(data)
        except ValueError as exc:
            raise CampaignError(str(exc)) from exc

    def _lease_record(self, n: int) -> dict[str, Any]:
        rec = _unpack(self.store.get(chunk_key("lease", self.campaign, n)), f"lease of chunk {n}")
        rec.setdefault("holders", {})
        rec.setdefault("done", [])
        return rec

    def _put_lease_record(self, n: int, rec: dict[str, Any]) -> None:
        self.store.put(chunk_key("lease", self.campaign, n), msgpack.packb(rec))

    def _available(self, rec: dict[str, Any], monitor: str, now: float) -> bool:
        live = {m for m, exp in rec["holders"].items() if exp > now and m != monitor}
        if self.policy == "any":
            return not rec["done"] and not live
        if monitor in rec["done"]:
            return False
        cap = int(self._record["max_holders"])
        return cap == 0 or len(live) < cap

    def claim(self, monitor: str, order: Sequence[int] | None = None) -> Lease | None:
        """Lease the first available chunk for ``monitor`` (in ``order``), or ``None``."""
        self.refresh()
        now = self._now()
        for n in order if order is not None else range(self.chunk_count):
            if not 0 <= n < self.chunk_count:
                continue
            rec = self._lease_record(n)
            if self._available(rec, monitor, now):
                expires = now + float(self._record["lease_seconds"])
                rec["holders"] = {m: e for m, e in rec["holders"].items() if e > now}
                rec["holders"][monitor] = expires
                self._put_lease_record(n, rec)
                return Lease(self.campaign, n, monitor, expires)
        return None

    def renew(self, lease: Lease) -> Lease:
        """Extend a lease still held; ``CampaignError`` if it expired."""
        now = self._now()
        rec = self._lease_record(lease.chunk)
        if rec["holders"].get(lease.monitor, 0.0) <= now:
            raise CampaignError(f"lease of chunk {lease.chunk} by {lease.monitor} expired")
        expires = now + float(self._record["lease_seconds"])
        rec["holders"][lease.monitor] = expires
        self._put_lease_record(lease.chunk, rec)
        return Lease(lease.campaign, lease.chunk, lease.monitor, expires)

    def commit(
        self, lease: Lease, stop_set: GlobalStopSet, records: Sequence[dict[str, Any]]
    ) -> bool:
        """Commit a finished chunk: PC gains the new pairs, PD the monitor's records.

        Returns whether the lease was still valid; the data is kept either way (it was
        measured), and the chunk counts as done by this monitor.
        """
        n = lease.chunk
        now = self._now()
        pc = self.stop_set(n)
        denied = set(self._record["denied"])
        pc.merge(p for p in stop_set.pending if p[1] not in denied)
        self.store.put(chunk_key("pc", self.campaign, n), pc.encode())
        stop_set.pending.clear()
        pd = _unpack(self.store.get(chunk_key("pd", self.campaign, n)), f"PD of chunk {n}")
        pd.setdefault(lease.monitor, []).extend(records)
        self.store.put(chunk_key("pd", self.campaign, n), msgpack.packb(pd))
        rec = self._lease_record(n)
        valid = rec["holders"].pop(lease.monitor, 0.0) > now
        if lease.monitor not in rec["done"]:
            rec["done"].append(lease.monitor)
        self._put_lease_record(n, rec)
        return valid

    # -- probing data and status --------------------------------------------------------

    def data(self, n: int) -> dict[str, list[dict[str, Any]]]:
        """The PD value of chunk ``n``: records per monitor."""
        self._check_chunk(n)
        return _unpack(self.store.get(chunk_key("pd", self.campaign, n)), f"PD of chunk {n}")

    def status(self) -> dict[str, Any]:
        """Per chunk: targets, monitors done, live holders; and the deny list."""
        self.refresh()
        now = self._now()
        chunks = []
        for n in range(self.chunk_count):
            rec = self._lease_record(n)
            chunks.append(
                {
                    "chunk": n,
                    "targets": len(self.targets(n)),
                    "done": sorted(rec["done"]),
                    "holders": sorted(m for m, e in rec["holders"].items() if e > now),
                }
            )
        return {
            "campaign": self.campaign,
            "policy": self.policy,
            "chunks": chunks,
            "denied": list(self._record["denied"]),
        }

    def complete(self, monitors: Iterable[str] = ()) -> bool:
        """Whether every chunk is done (``"any"``) or done by all of ``monitors`` (``"each"``)."""
        wanted = set(monitors)
        for n in range(self.chunk_count):
            done = set(self._lease_record(n)["done"])
            if self.policy == "any" and not done:
                return False
            if self.policy == "each" and not wanted <= done:
                return False
        return True

    def _check_chunk(self, n: int) -> None:
        if not 0 <= n < self.chunk_count:
            raise CampaignError(f"chunk {n} out of range 0..{self.chunk_count - 1}")
