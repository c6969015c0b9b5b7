"""The DTS planes (PT, PC, PD, leases) stored in the overlay DHT.

The overlay DHT is not the replace-in-place store :class:`~dnaagent.dts.plane.Plane`
assumes: a key holds a *set* of values, each with its own TTL; a value stored again
keeps its place and gets a later expiry; nothing is ever deleted or replaced; a read may
miss values that have not reached the nodes it asks yet; one value is at most
``max_value_size`` bytes (2 KiB) and one VALUE answer carries about 8 KiB. So
:class:`DhtPlane` does not read-modify-write shared values. Every write is a new small
value, and every reader merges all the values of a key (a grow-only set):

======================  ======================================================================
key string (SHA-1)      values
======================  ======================================================================
``dts/campaign/<c>``    the campaign record; ``grow`` values when chunks are added
``dts/deny/<c>``        ``deny`` values (targets refused from then on)
``dts/monitors/<c>``    ``member`` (joined, long TTL) and ``alive`` (TTL one lease) per monitor
``dts/pt/<c>/<n>``      PT: the chunk's targets (:class:`TargetChunk`), ``add``/``remove``
``dts/pc/<c>/<n>``      PC: :class:`GlobalStopSet` deltas, one or more per commit (union)
``dts/pd/<c>/<n>``      PD manifests: ``{m, c, parts, records, probes, t}`` per commit
``dts/pd/<c>/<n>/<id>/<i>``  PD part ``i`` of commit ``id``: a list of trace records
``dts/lease/<c>/<n>``   ``lease`` values (TTL = lease length), ``done`` values (long TTL)
======================  ======================================================================

The chunk keys are :func:`~dnaagent.dts.chunks.chunk_key` of plane ``pt``, ``pc``,
``pd`` and ``lease``, as for :class:`Plane`.

**Leases are DHT TTLs.** A claim stores ``{"k": "lease", "m": monitor, "t": time}`` with
a TTL of one lease; renewing stores the *same* value again, which extends its expiry at
every node that gets it. A monitor that dies stops renewing and its value vanishes from
every node after at most one lease, whatever the clocks of the nodes say (TTLs are
relative). A claim is *read, write, read back*: the chunk is free (no live lease of
another monitor, not done), the lease is stored, and the values read back decide: among
the live leases of monitors that have not finished the chunk, the earliest ``(t, m)``
holds it (under ``each`` with ``max_holders`` the first ``max_holders``). A monitor that
loses goes on to the next chunk. Two monitors whose writes cross before either reaches
the other both win; the chunk is then probed twice, which wastes probes but not data:
readers deduplicate PD (under ``any`` the first commit of each destination is kept,
under ``each`` the first per monitor and destination).

**Commits** store the new PC pairs (split to fit the value limit), the PD parts, the PD
manifest naming them (only once every part is stored), then a ``done`` value. PC values
are only ever added to, so concurrent commits lose nothing. A reader that misses a part
reports it (``missing_parts``) rather than failing.

**Lifetime.** Everything but leases and ``alive`` values lives ``record_ttl`` seconds
(default 7 days, the wire maximum); the overlay node republishes the values it stored
every ``republish_interval`` until then, so records outlive the campaign.

Limits: the overlay keeps at most ``max_values_per_key`` (32) values per key at a node,
so one chunk takes at most about 30 lease renewals within one store expiry pass, 30
PD commits, and a campaign about 30 add/deny operations; refused writes raise and are
reported. A read that finds values on a node that has only some of them (an eventually
consistent DHT) sees a subset: fewer stop-set pairs (more probes later), a chunk that
looks free (a duplicate claim), never wrong data.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgpack
from twisted.internet import defer

from dnaagent.dts.chunks import TargetChunk, campaign_key, check_campaign_id, chunk_key, split
from dnaagent.dts.export import TraceRecord
from dnaagent.dts.plane import POLICIES, CampaignError, Lease, _clock_fn
from dnaagent.dts.stopsets import GlobalStopSet

#: Longest TTL the overlay accepts (seconds), used for records that outlive a campaign.
RECORD_TTL = 7 * 86400
#: Bytes of one value we write (the overlay refuses more than 2048; room for framing).
VALUE_LIMIT = 1800
#: Most PD parts a manifest may name (a chunk of 40 targets at 64 hops needs far fewer).
MAX_PARTS = 256


class AsyncDht(Protocol):
    """What :class:`DhtPlane` needs of the overlay: ``OverlayNode`` satisfies it."""

    def get(self, key: bytes) -> defer.Deferred[list[bytes]]:
        """Every value under ``key`` (those the lookup found)."""
        ...

    def put(self, key: bytes, value: bytes, ttl: float | None = None) -> defer.Deferred[int]:
        """Add ``value`` to ``key`` for ``ttl`` seconds; fires with the nodes that stored it."""
        ...


class MemoryDht:
    """The overlay's storage semantics in one dict, for tests and the simulator.

    A key holds a set of values with expiries; storing a value again extends its
    expiry; ``max_value_size`` and ``max_values_per_key`` are enforced like the
    overlay's store. ``visible`` (optional) filters what a reader sees, to test partial
    reads.
    """

    def __init__(
        self, clock: Any, *, max_value_size: int = 2048, max_values_per_key: int = 32
    ) -> None:
        self._now = _clock_fn(clock)
        self.max_value_size = max_value_size
        self.max_values_per_key = max_values_per_key
        self.values: dict[bytes, dict[bytes, float]] = {}
        self.gets = 0
        self.puts = 0
        self.visible: Callable[[bytes, bytes], bool] | None = None

    def get(self, key: bytes) -> defer.Deferred[list[bytes]]:
        """Live values of ``key``, newest expiry first."""
        self.gets += 1
        now = self._now()
        live = [(v, e) for v, e in self.values.get(key, {}).items() if e > now]
        live.sort(key=lambda item: -item[1])
        out = [v for v, _ in live if self.visible is None or self.visible(key, v)]
        return defer.succeed(out)

    def put(self, key: bytes, value: bytes, ttl: float | None = None) -> defer.Deferred[int]:
        """Store ``value`` under ``key``; fails like the overlay when a limit is hit."""
        from dnaagent.overlay.errors import StoreRefused

        self.puts += 1
        if len(value) > self.max_value_size:
            return defer.fail(StoreRefused("value_too_large"))
        now = self._now()
        values = self.values.setdefault(key, {})
        for v in [v for v, e in values.items() if e <= now]:
            del values[v]
        expires = now + (RECORD_TTL if ttl is None else max(1, int(ttl)))
        if value not in values and len(values) >= self.max_values_per_key:
            return defer.fail(StoreRefused("too_many_values_for_key"))
        values[value] = max(expires, values.get(value, 0.0))
        return defer.succeed(1)


def _key(name: str) -> bytes:
    return hashlib.sha1(name.encode()).digest()


def deny_key(campaign: str) -> bytes:
    """Key of the campaign's deny values."""
    return _key(f"dts/deny/{check_campaign_id(campaign)}")


def monitors_key(campaign: str) -> bytes:
    """Key of the campaign's member and alive values."""
    return _key(f"dts/monitors/{check_campaign_id(campaign)}")


def part_key(campaign: str, chunk: int, commit: str, part: int) -> bytes:
    """Key of one PD part of one commit."""
    return _key(f"dts/pd/{check_campaign_id(campaign)}/{chunk}/{commit}/{part}")


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _maps(values: Iterable[bytes]) -> list[dict[str, Any]]:
    """Decode values, dropping the ones that are not msgpack maps (counted by callers)."""
    out = []
    for v in values:
        try:
            obj = msgpack.unpackb(v)
        except Exception:  # noqa: BLE001 (msgpack raises several unrelated types)
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def pack_parts(items: Sequence[Any], limit: int = VALUE_LIMIT) -> list[bytes]:
    """Pack ``items`` into msgpack lists of at most ``limit`` bytes each.

    An item that does not fit alone raises ``CampaignError`` (callers make items small).
    """
    parts: list[bytes] = []
    current: list[Any] = []
    for item in items:
        trial = _pack([*current, item])
        if len(trial) <= limit:
            current.append(item)
            continue
        if not current:
            raise CampaignError(f"one item of {len(_pack([item]))} bytes exceeds {limit}")
        parts.append(_pack(current))
        current = [item]
        if len(_pack(current)) > limit:
            raise CampaignError(f"one item of {len(_pack(current))} bytes exceeds {limit}")
    if current:
        parts.append(_pack(current))
    return parts


def _record_fragments(record: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """A record, or fragments of it (same identity, hops split) when it is too large."""
    if len(_pack([record])) <= limit:
        return [record]
    hops = list(record.get("hops", []))
    if len(hops) <= 1:
        raise CampaignError("a trace record exceeds the DHT value limit")
    half = len(hops) // 2
    out = []
    for part in (hops[:half], hops[half:]):
        out.extend(_record_fragments({**record, "hops": part}, limit))
    return out


def _stop_set_parts(chunk: int, pairs: Iterable[tuple[str, str]], limit: int) -> list[bytes]:
    """PC deltas of ``chunk`` holding ``pairs``, each encoding at most ``limit`` bytes."""
    out: list[bytes] = []
    current = GlobalStopSet(chunk)
    for interface, destination in sorted(pairs, key=lambda p: (p[1], p[0])):
        trial = current.copy()
        trial.merge([(interface, destination)])
        if len(trial.encode()) > limit and len(current):
            out.append(current.encode())
            current = GlobalStopSet(chunk)
        current.merge([(interface, destination)])
    if len(current):
        out.append(current.encode())
    return out


def _record_like(item: Any) -> bool:
    """A PD item with a destination and hops ``[[ttl, ...], ...]`` (what readers need)."""
    if not isinstance(item, dict) or not isinstance(item.get("dst_addr"), str):
        return False
    hops = item.get("hops", [])
    return isinstance(hops, list) and all(
        isinstance(h, list) and h and isinstance(h[0], int) for h in hops
    )


def merge_chunk(chunk: int, values: Iterable[dict[str, Any]]) -> TargetChunk | None:
    """The PT of a chunk from its base value and its ``add``/``remove`` values."""
    base: TargetChunk | None = None
    changes = []
    for obj in values:
        if obj.get("k") in ("add", "remove"):
            targets = obj.get("targets")
            if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
                seq = obj.get("s", 0)
                changes.append(
                    (
                        float(obj.get("t", 0.0)),
                        seq if isinstance(seq, int) else 0,
                        obj["k"],
                        targets,
                    )
                )
        elif "targets" in obj and isinstance(obj.get("chunk"), int):
            try:
                candidate = TargetChunk.decode(_pack(obj))
            except ValueError:
                continue
            if candidate.chunk == chunk and (
                base is None or len(candidate.targets) > len(base.targets)
            ):
                base = candidate
    if base is None:
        return None
    for _, _, kind, targets in sorted(changes, key=lambda c: (c[0], c[1], c[2])):
        for t in targets:
            if kind == "add":
                if t not in base.targets:
                    base.targets.append(t)
                base.removed.discard(t)
            else:
                base.removed.add(t)
    return base


class DhtPlane:
    """One campaign's planes in the overlay DHT; every method returns a Deferred.

    ``dht`` is an :class:`AsyncDht` (an ``OverlayNode`` or :class:`MemoryDht`),
    ``clock`` a callable or ``IReactorTime``, ``deny_check`` the agent's deny list hook.
    Build one with :meth:`create` (new campaign) or :meth:`open` (existing one).
    """

    def __init__(
        self,
        dht: AsyncDht,
        campaign: str,
        clock: Any,
        record: dict[str, Any],
        *,
        deny_check: Callable[[str], bool] | None = None,
        value_limit: int = VALUE_LIMIT,
    ) -> None:
        self.dht = dht
        self.campaign = check_campaign_id(campaign)
        self._now = _clock_fn(clock)
        self._record = record
        self.denied: set[str] = set()
        self.deny_check = deny_check
        self.value_limit = value_limit
        self.record_ttl = int(record.get("record_ttl", RECORD_TTL))
        self.malformed = 0
        self._seq = 0

    # -- creation ----------------------------------------------------------------------

    @classmethod
    async def create(
        cls,
        dht: AsyncDht,
        campaign: str,
        targets: Sequence[str],
        clock: Any,
        *,
        chunk_size: int,
        policy: str = "any",
        lease_seconds: float = 600.0,
        max_holders: int | None = None,
        record_ttl: int = RECORD_TTL,
        creator: str = "",
        deny_check: Callable[[str], bool] | None = None,
        value_limit: int = VALUE_LIMIT,
    ) -> DhtPlane:
        """Store a new campaign: its record and the PT of every chunk."""
        check_campaign_id(campaign)
        if policy not in POLICIES:
            raise CampaignError(f"policy must be one of {POLICIES}, not {policy!r}")
        if not 1 <= lease_seconds <= RECORD_TTL:
            raise CampaignError(f"lease_seconds must be between 1 and {RECORD_TTL}")
        if max_holders is not None and max_holders < 1:
            raise CampaignError("max_holders must be at least 1")
        if not 60 <= record_ttl <= RECORD_TTL:
            raise CampaignError(f"record_ttl must be between 60 and {RECORD_TTL} seconds")
        if chunk_size < 1:
            raise CampaignError("chunk_size must be at least 1")
        if _maps(await dht.get(campaign_key(campaign))):
            raise CampaignError(f"campaign {campaign!r} already exists")
        unique = list(dict.fromkeys(targets))
        parts = split(unique, chunk_size) if unique else [[]]
        encoded = [TargetChunk(n, part).encode() for n, part in enumerate(parts)]
        biggest = max(len(e) for e in encoded)
        if biggest > value_limit:
            raise CampaignError(
                f"a chunk of {chunk_size} targets takes {biggest} bytes, more than a DHT value "
                f"({value_limit}); use a smaller chunk size"
            )
        now = float(_clock_fn(clock)())
        record = {
            "k": "campaign",
            "chunks": len(parts),
            "chunk_size": chunk_size,
            "policy": policy,
            "lease_seconds": float(int(lease_seconds)),
            "max_holders": max_holders or 0,
            "record_ttl": int(record_ttl),
            "created": now,
            "creator": creator,
        }
        plane = cls(dht, campaign, clock, record, deny_check=deny_check, value_limit=value_limit)
        for n, value in enumerate(encoded):
            await plane._put(chunk_key("pt", campaign, n), value)
        await plane._put(campaign_key(campaign), _pack(record))
        return plane

    @classmethod
    async def open(
        cls,
        dht: AsyncDht,
        campaign: str,
        clock: Any,
        *,
        deny_check: Callable[[str], bool] | None = None,
        value_limit: int = VALUE_LIMIT,
    ) -> DhtPlane:
        """The campaign as stored; ``CampaignError`` when it is not found."""
        check_campaign_id(campaign)
        record = cls._merge_record(_maps(await dht.get(campaign_key(campaign))))
        if record is None:
            raise CampaignError(f"campaign {campaign!r} not found in the DHT")
        plane = cls(dht, campaign, clock, record, deny_check=deny_check, value_limit=value_limit)
        await plane.refresh()
        return plane

    @staticmethod
    def _merge_record(values: list[dict[str, Any]]) -> dict[str, Any] | None:
        base = None
        grown = 0
        for obj in values:
            if obj.get("k") == "campaign" and obj.get("policy") in POLICIES:
                if base is None or float(obj.get("created", 0)) < float(base.get("created", 0)):
                    base = dict(obj)
            elif obj.get("k") == "grow" and isinstance(obj.get("chunks"), int):
                grown = max(grown, obj["chunks"])
        if base is None:
            return None
        base["chunks"] = max(int(base["chunks"]), grown)
        return base

    async def _put(self, key: bytes, value: bytes, ttl: float | None = None) -> int:
        stored = await self.dht.put(key, value, self.record_ttl if ttl is None else ttl)
        if not stored:
            raise CampaignError("no overlay node stored the value (is the overlay joined?)")
        return int(stored)

    async def _values(self, key: bytes) -> list[dict[str, Any]]:
        raw = await self.dht.get(key)
        maps = _maps(raw)
        self.malformed += len(raw) - len(maps)
        return maps

    async def refresh(self) -> None:
        """Read the campaign record (chunk count) and deny list again."""
        record = self._merge_record(await self._values(campaign_key(self.campaign)))
        if record is not None:
            self._record = record
        denied: set[str] = set()
        for obj in await self._values(deny_key(self.campaign)):
            if obj.get("k") == "deny" and isinstance(obj.get("targets"), list):
                denied.update(t for t in obj["targets"] if isinstance(t, str))
        self.denied = denied

    # -- record fields -------------------------------------------------------------------

    @property
    def chunk_count(self) -> int:
        """Number of chunks (as last read)."""
        return int(self._record["chunks"])

    @property
    def policy(self) -> str:
        """``"each"`` or ``"any"``."""
        return str(self._record["policy"])

    @property
    def lease_seconds(self) -> float:
        """Length of a lease (seconds)."""
        return float(self._record["lease_seconds"])

    @property
    def record(self) -> dict[str, Any]:
        """The merged campaign record."""
        return dict(self._record)

    # -- targets -------------------------------------------------------------------------

    def _change(self, kind: str, targets: list[str]) -> bytes:
        """An ``add``/``remove`` PT value; ``s`` orders changes made in the same second."""
        self._seq += 1
        return _pack({"k": kind, "targets": targets, "t": self._now(), "s": self._seq})

    async def chunk(self, n: int) -> TargetChunk:
        """The merged PT of chunk ``n``."""
        self._check_chunk(n)
        merged = merge_chunk(n, await self._values(chunk_key("pt", self.campaign, n)))
        if merged is None:
            raise CampaignError(f"PT of chunk {n} not found in the DHT (not propagated yet?)")
        return merged

    def is_denied(self, target: str) -> bool:
        """On the campaign's deny list (as last read) or refused by the hook."""
        if target in self.denied:
            return True
        return self.deny_check is not None and bool(self.deny_check(target))

    async def targets(self, n: int) -> list[str]:
        """Targets of chunk ``n`` to probe (not removed, not denied)."""
        return [t for t in (await self.chunk(n)).active() if not self.is_denied(t)]

    async def add_targets(self, targets: Iterable[str]) -> list[int]:
        """Add targets while the campaign runs (fill the last chunk, then new chunks)."""
        await self.refresh()
        present: set[str] = set()
        chunks = [await self.chunk(n) for n in range(self.chunk_count)]
        for c in chunks:
            present.update(c.active())
        new = [t for t in dict.fromkeys(targets) if t not in present and t not in self.denied]
        if not new:
            return []
        size = int(self._record["chunk_size"])
        now = self._now()
        changed: list[int] = []
        # A target removed earlier comes back in its own chunk.
        for c in chunks:
            back = [t for t in new if t in c.removed]
            if back:
                await self._put(
                    chunk_key("pt", self.campaign, c.chunk),
                    self._change("add", back),
                )
                changed.append(c.chunk)
                new = [t for t in new if t not in back]
        last = chunks[-1]
        room = size - len(last.targets)
        if room > 0 and new:
            await self._put(
                chunk_key("pt", self.campaign, last.chunk),
                self._change("add", new[:room]),
            )
            changed.append(last.chunk)
            new = new[room:]
        n = self.chunk_count
        for part in split(new, size) if new else []:
            await self._put(chunk_key("pt", self.campaign, n), TargetChunk(n, part).encode())
            changed.append(n)
            n += 1
        if n != self.chunk_count:
            await self._put(
                campaign_key(self.campaign), _pack({"k": "grow", "chunks": n, "t": now})
            )
            self._record["chunks"] = n
        return sorted(set(changed))

    async def remove_target(self, target: str) -> bool:
        """Mark ``target`` removed in its chunk(s); whether it was there."""
        await self.refresh()
        found = False
        for n in range(self.chunk_count):
            if target in (await self.chunk(n)).active():
                await self._put(
                    chunk_key("pt", self.campaign, n),
                    self._change("remove", [target]),
                )
                found = True
        return found

    async def deny(self, target: str) -> bool:
        """Blacklist ``target``: refused from now on, removed from its chunk."""
        await self._put(
            deny_key(self.campaign), _pack({"k": "deny", "targets": [target], "t": self._now()})
        )
        self.denied.add(target)
        return await self.remove_target(target)

    # -- monitors ------------------------------------------------------------------------

    async def join(self, monitor: str, src_addr: str = "") -> None:
        """Record ``monitor`` as a member of the campaign, alive for one lease."""
        await self._put(
            monitors_key(self.campaign),
            _pack({"k": "member", "m": monitor, "src": src_addr}),
        )
        await self.alive(monitor)

    async def alive(self, monitor: str) -> None:
        """Say ``monitor`` is still alive (store its alive value again)."""
        await self._put(
            monitors_key(self.campaign),
            _pack({"k": "alive", "m": monitor}),
            ttl=self.lease_seconds,
        )

    async def monitors(self) -> dict[str, dict[str, Any]]:
        """Members: ``{name: {"src", "alive"}}``."""
        out: dict[str, dict[str, Any]] = {}
        alive = set()
        for obj in await self._values(monitors_key(self.campaign)):
            m = obj.get("m")
            if not isinstance(m, str):
                continue
            if obj.get("k") == "member":
                out.setdefault(m, {"src": str(obj.get("src", "")), "alive": False})
            elif obj.get("k") == "alive":
                alive.add(m)
        for m in alive:
            out.setdefault(m, {"src": "", "alive": False})["alive"] = True
        return out

    # -- leases --------------------------------------------------------------------------

    async def _lease_state(self, n: int) -> tuple[list[tuple[float, str]], set[str]]:
        """Live lease values ``(t, monitor)`` (earliest per monitor) and monitors done."""
        leases: dict[str, float] = {}
        done: set[str] = set()
        for obj in await self._values(chunk_key("lease", self.campaign, n)):
            m = obj.get("m")
            if not isinstance(m, str):
                continue
            if obj.get("k") == "done":
                done.add(m)
            elif obj.get("k") == "lease":
                t = float(obj.get("t", 0.0))
                leases[m] = min(t, leases.get(m, t))
        return sorted((t, m) for m, t in leases.items()), done

    def _holders(self, leases: list[tuple[float, str]], done: set[str]) -> list[str]:
        """Monitors holding the chunk, in precedence order."""
        return [m for _, m in leases if m not in done]

    def _available(self, holders: list[str], done: set[str], monitor: str) -> bool:
        others = [m for m in holders if m != monitor]
        if self.policy == "any":
            return not done and not others
        if monitor in done:
            return False
        cap = int(self._record["max_holders"])
        return cap == 0 or len(others) < cap

    def _wins(self, holders: list[str], monitor: str) -> bool:
        if monitor not in holders:
            return False  # the write did not reach what we read: try elsewhere
        rank = holders.index(monitor)
        if self.policy == "any":
            return rank == 0
        cap = int(self._record["max_holders"])
        return cap == 0 or rank < cap

    async def claim(self, monitor: str, order: Sequence[int] | None = None) -> Lease | None:
        """Lease the first chunk available to ``monitor`` in ``order``, or ``None``.

        Read, write, read back: see the module docstring.
        """
        await self.refresh()
        for n in order if order is not None else range(self.chunk_count):
            if not 0 <= n < self.chunk_count:
                continue
            leases, done = await self._lease_state(n)
            if not self._available(self._holders(leases, done), done, monitor):
                continue
            now = self._now()
            value = _pack({"k": "lease", "m": monitor, "t": now})
            await self._put(chunk_key("lease", self.campaign, n), value, ttl=self.lease_seconds)
            leases, done = await self._lease_state(n)
            holders = self._holders(leases, done)
            if self.policy == "any" and done:
                continue
            if self._wins(holders, monitor):
                return _DhtLease(self.campaign, n, monitor, now + self.lease_seconds, value)
        return None

    async def renew(self, lease: Lease) -> Lease:
        """Store the lease value again: its TTL starts over at every node storing it."""
        value = getattr(lease, "value", None)
        if value is None:
            raise CampaignError("not a lease of this plane")
        await self._put(
            chunk_key("lease", self.campaign, lease.chunk), value, ttl=self.lease_seconds
        )
        return _DhtLease(
            lease.campaign, lease.chunk, lease.monitor, self._now() + self.lease_seconds, value
        )

    async def commit(
        self, lease: Lease, stop_set: GlobalStopSet, records: Sequence[dict[str, Any]]
    ) -> bool:
        """Commit a finished chunk: PC pairs, PD parts and manifest, then ``done``.

        Returns whether the lease was still valid by the local clock; the data is kept
        either way.
        """
        n = lease.chunk
        now = self._now()
        try:
            gone = (await self.chunk(n)).removed | self.denied
        except CampaignError:
            gone = set(self.denied)  # PT not readable now: the data is committed anyway
        pairs = [p for p in stop_set.pending if p[1] not in gone]
        for value in _stop_set_parts(n, pairs, self.value_limit):
            await self._put(chunk_key("pc", self.campaign, n), value)
        stop_set.pending.clear()
        commit_id = hashlib.sha1(
            f"{lease.monitor}/{now}/{os.urandom(8).hex()}".encode()
        ).hexdigest()[:20]
        items: list[dict[str, Any]] = []
        for r in records:
            items.extend(_record_fragments(dict(r), self.value_limit - 16))
        parts = pack_parts(items, self.value_limit)
        for i, part in enumerate(parts):
            await self._put(part_key(self.campaign, n, commit_id, i), part)
        probes = sum(len(r.get("hops", [])) for r in records)
        manifest = {
            "k": "pd",
            "m": lease.monitor,
            "c": commit_id,
            "parts": len(parts),
            "records": len(records),
            "probes": probes,
            "t": now,
        }
        await self._put(chunk_key("pd", self.campaign, n), _pack(manifest))
        await self._put(
            chunk_key("lease", self.campaign, n),
            _pack({"k": "done", "m": lease.monitor, "c": commit_id, "t": now}),
        )
        return now < lease.expires

    # -- data and status -----------------------------------------------------------------

    async def stop_set(self, n: int) -> GlobalStopSet:
        """The union of every PC delta of chunk ``n`` read (removed targets dropped)."""
        self._check_chunk(n)
        out = GlobalStopSet(n)
        for raw in await self.dht.get(chunk_key("pc", self.campaign, n)):
            try:
                out.merge(GlobalStopSet.decode(raw).pairs())
            except ValueError:
                self.malformed += 1
        gone = (await self.chunk(n)).removed | self.denied
        for target in gone:
            out.discard_destination(target)
        return out

    async def manifests(self, n: int) -> list[dict[str, Any]]:
        """PD manifests of chunk ``n``, in commit order (time, monitor)."""
        out = []
        seen = set()
        for obj in await self._values(chunk_key("pd", self.campaign, n)):
            if obj.get("k") != "pd" or not isinstance(obj.get("m"), str):
                continue
            parts = obj.get("parts")
            if not isinstance(obj.get("c"), str) or not isinstance(parts, int):
                self.malformed += 1
                continue
            if not 0 <= parts <= MAX_PARTS:
                self.malformed += 1  # more parts than any chunk can need: not read
                continue
            if obj["c"] in seen:
                continue
            seen.add(obj["c"])
            out.append(obj)
        out.sort(key=lambda o: (float(o.get("t", 0.0)), o["m"]))
        return out

    async def data(self, n: int) -> dict[str, Any]:
        """Records of chunk ``n``, deduplicated; ``{"records", "duplicates", "missing_parts"}``.

        Under ``any`` the first commit's record of each destination is kept, under
        ``each`` the first per (monitor, destination). Fragments of one record (a record
        split to fit a value) are joined.
        """
        kept: dict[tuple[str, ...], dict[str, Any]] = {}
        duplicates = 0
        missing = 0
        for manifest in await self.manifests(n):
            commit: dict[tuple[str, ...], dict[str, Any]] = {}
            for i in range(manifest["parts"]):
                raw = await self.dht.get(part_key(self.campaign, n, manifest["c"], i))
                items = None
                for value in raw:
                    try:
                        obj = msgpack.unpackb(value)
                    except Exception:  # noqa: BLE001
                        continue
                    if isinstance(obj, list):
                        items = obj
                        break
                if items is None:
                    missing += 1
                    continue
                for item in items:
                    if not _record_like(item):
                        self.malformed += 1
                        continue
                    ident: tuple[str, ...] = (
                        str(item.get("monitor")),
                        str(item["dst_addr"]),
                        str(item.get("timestamp")),
                    )
                    if ident in commit:
                        commit[ident]["hops"] = sorted(
                            commit[ident]["hops"] + list(item.get("hops", [])), key=lambda h: h[0]
                        )
                    else:
                        commit[ident] = {**item, "hops": list(item.get("hops", []))}
            for key, record in commit.items():
                dedup = (key[1],) if self.policy == "any" else (key[0], key[1])
                if dedup in kept:
                    duplicates += 1
                    continue
                kept[dedup] = record
        return {"records": list(kept.values()), "duplicates": duplicates, "missing_parts": missing}

    async def records(self) -> tuple[list[TraceRecord], dict[str, int]]:
        """Every chunk's deduplicated records and counters (duplicates, missing, malformed)."""
        await self.refresh()
        out: list[TraceRecord] = []
        counts = {"duplicates": 0, "missing_parts": 0, "malformed": 0}
        for n in range(self.chunk_count):
            d = await self.data(n)
            counts["duplicates"] += d["duplicates"]
            counts["missing_parts"] += d["missing_parts"]
            for obj in d["records"]:
                try:
                    out.append(TraceRecord.from_dict(obj))
                except ValueError:
                    counts["malformed"] += 1
        counts["malformed"] += self.malformed
        return out, counts

    async def chunk_status(self, n: int) -> dict[str, Any]:
        """One chunk: targets, monitors done, live holders, commits, probes."""
        leases, done = await self._lease_state(n)
        manifests = await self.manifests(n)
        try:
            targets = len(await self.targets(n))
        except CampaignError:
            targets = -1
        return {
            "chunk": n,
            "targets": targets,
            "done": sorted(done),
            "holders": self._holders(leases, done),
            "commits": len(manifests),
            "probes": sum(int(m.get("probes", 0)) for m in manifests),
        }

    async def status(self) -> dict[str, Any]:
        """The campaign: chunks done/claimed/pending, monitors, probes, deny list."""
        await self.refresh()
        chunks = [await self.chunk_status(n) for n in range(self.chunk_count)]
        monitors = await self.monitors()
        alive = [m for m, info in monitors.items() if info["alive"]]
        if self.policy == "any":
            done = sum(1 for c in chunks if c["done"])
        else:
            done = sum(1 for c in chunks if alive and set(alive) <= set(c["done"]))
        claimed = sum(
            1 for c in chunks if c["holders"] and not (self.policy == "any" and c["done"])
        )
        return {
            "campaign": self.campaign,
            "policy": self.policy,
            "chunk_size": int(self._record["chunk_size"]),
            "lease_seconds": self.lease_seconds,
            "created": float(self._record.get("created", 0.0)),
            "creator": str(self._record.get("creator", "")),
            "chunk_count": self.chunk_count,
            "chunks_done": done,
            "chunks_claimed": claimed,
            "chunks_pending": max(0, self.chunk_count - done - claimed),
            "complete": done == self.chunk_count,
            "targets": sum(max(c["targets"], 0) for c in chunks),
            "probes": sum(c["probes"] for c in chunks),
            "monitors": monitors,
            "denied": sorted(self.denied),
            "chunks": chunks,
        }

    async def complete(self, monitors: Iterable[str] = ()) -> bool:
        """Every chunk done (``any``) or done by all of ``monitors`` (``each``)."""
        await self.refresh()
        wanted = set(monitors)
        for n in range(self.chunk_count):
            _, done = await self._lease_state(n)
            if self.policy == "any" and not done:
                return False
            if self.policy == "each" and not wanted <= done:
                return False
        return True

    def _check_chunk(self, n: int) -> None:
        if not 0 <= n < self.chunk_count:
            raise CampaignError(f"chunk {n} out of range 0..{self.chunk_count - 1}")


class _DhtLease(Lease):
    """A :class:`Lease` that remembers the exact value stored (renewals store it again)."""

    def __init__(self, campaign: str, chunk: int, monitor: str, expires: float, value: bytes):
        super().__init__(campaign, chunk, monitor, expires)
        object.__setattr__(self, "value", value)


__all__ = [
    "AsyncDht",
    "DhtPlane",
    "MemoryDht",
    "RECORD_TTL",
    "VALUE_LIMIT",
    "deny_key",
    "merge_chunk",
    "monitors_key",
    "pack_parts",
    "part_key",
]
