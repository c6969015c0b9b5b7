"""Group storage: entries placed on members by consistent hashing (thesis §4.3.2, §4.7).

A group stores three kinds of entries: HostId -> ClusterId mappings (kind ``"h"``),
GroupId -> ClusterId mappings (``"g"``) and cluster data (``"c"``). Each entry has a
position on a 160-bit ring (SHA-1 of its kind and identifier); each member has a position
too (its overlay node ID). The **owner** of an entry is the first member at or after the
entry's position, going round the ring; its **backup** is the member after the owner. The
owner keeps the primary copy, the backup member a copy that expires unless refreshed: when
it expires, the holder promotes it if it now owns the entry (the owner failed) and drops it
otherwise (thesis §4.7). When the membership changes, :meth:`GroupStore.rebalance` says what
to hand over to whom and promotes the copies the local member now owns.

Everything here is pure: no clock, no network; callers pass ``now``.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Entry kinds: host -> cluster, group -> cluster, cluster data.
KINDS = ("h", "g", "c")

Key = tuple[str, str]


def key_position(kind: str, ident: str) -> int:
    """Ring position of an entry: SHA-1 of ``kind:ident`` as a 160-bit integer."""
    if kind not in KINDS:
        raise ValueError(f"unknown entry kind {kind!r}")
    digest = hashlib.sha1(f"{kind}:{ident}".encode()).digest()
    return int.from_bytes(digest, "big")


def member_position(node_id: bytes) -> int:
    """Ring position of a member: its node ID as an integer."""
    return int.from_bytes(node_id, "big")


class Ring:
    """The members of a group in ring order; ``owner``/``backup`` of a position."""

    def __init__(self, members: Iterable[bytes]) -> None:
        ids = sorted(set(members), key=member_position)
        self.members: list[bytes] = ids
        self._pos = [member_position(m) for m in ids]

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.members

    def _index(self, position: int) -> int:
        i = bisect.bisect_left(self._pos, position)
        return i % len(self._pos)

    def owner(self, position: int) -> bytes | None:
        """The member responsible for ``position`` (its successor on the ring)."""
        if not self.members:
            return None
        return self.members[self._index(position)]

    def backup(self, position: int) -> bytes | None:
        """The member after the owner, who keeps the backup copy (None with one member)."""
        if len(self.members) < 2:
            return None
        return self.members[(self._index(position) + 1) % len(self.members)]

    def owner_of(self, key: Key) -> bytes | None:
        """The owner of entry ``key``."""
        return self.owner(key_position(*key))

    def backup_of(self, key: Key) -> bytes | None:
        """The backup member of entry ``key``."""
        return self.backup(key_position(*key))


@dataclass
class Entry:
    """One stored item: its key, value, version (the writer's time) and expiry."""

    kind: str
    ident: str
    value: Any
    version: float
    expires: float

    @property
    def key(self) -> Key:
        """``(kind, ident)``."""
        return (self.kind, self.ident)


class GroupStore:
    """The entries one member keeps: primary copies it owns and backup copies of others'."""

    def __init__(self) -> None:
        self.primary: dict[Key, Entry] = {}
        self.backup: dict[Key, Entry] = {}
        self.promoted = 0
        self.dropped = 0
        self.expired = 0

    # -- writes -------------------------------------------------------------------

    def put(self, entry: Entry) -> bool:
        """Keep ``entry`` as a primary copy unless a newer version is held; return whether kept."""
        old = self.primary.get(entry.key)
        if old is not None and old.version > entry.version:
            return False
        self.primary[entry.key] = entry
        self.backup.pop(entry.key, None)
        return True

    def put_backup(self, entry: Entry) -> bool:
        """Keep ``entry`` as a backup copy (a newer one replaces it); return whether kept."""
        if entry.key in self.primary:
            return False
        old = self.backup.get(entry.key)
        if old is not None and old.version > entry.version:
            return False
        self.backup[entry.key] = entry
        return True

    def delete(self, key: Key, version: float | None = None) -> bool:
        """Remove ``key`` (primary and backup) unless it was written after ``version``."""
        found = False
        for table in (self.primary, self.backup):
            e = table.get(key)
            if e is not None and (version is None or e.version <= version):
                del table[key]
                found = True
        return found

    def get(self, key: Key, now: float) -> Entry | None:
        """The primary entry for ``key`` if it has not expired."""
        e = self.primary.get(key)
        if e is None or e.expires <= now:
            return None
        return e

    # -- maintenance --------------------------------------------------------------

    def expire(self, now: float, ring: Ring, self_id: bytes) -> list[Entry]:
        """Drop expired primaries; promote or drop expired backups. Return the promoted ones.

        A backup copy that expired was not refreshed: either its owner failed (then the
        local member owns it now and promotes it) or a member closer to it joined (then it
        is obsolete).
        """
        for key in [k for k, e in self.primary.items() if e.expires <= now]:
            del self.primary[key]
            self.expired += 1
        promoted: list[Entry] = []
        for key in [k for k, e in self.backup.items() if e.expires <= now]:
            e = self.backup.pop(key)
            if ring.owner_of(key) == self_id:
                promoted.append(e)
            else:
                self.dropped += 1
        for e in promoted:
            self.primary[e.key] = e
            self.promoted += 1
        return promoted

    def rebalance(
        self, ring: Ring, self_id: bytes, now: float, entry_ttl: float
    ) -> dict[bytes, list[Entry]]:
        """Adapt to a new membership; return the primary entries to hand to each new owner.

        Primaries the local member no longer owns leave the primary table (kept as backup
        copies when the local member is now their backup). Backup copies of entries the
        local member now owns are promoted (their owner left or failed) with a fresh expiry.
        """
        out: dict[bytes, list[Entry]] = {}
        for key in list(self.primary):
            owner = ring.owner_of(key)
            if owner == self_id or owner is None:
                continue
            e = self.primary.pop(key)
            out.setdefault(owner, []).append(e)
            if ring.backup_of(key) == self_id:
                self.backup[key] = e
        for key in list(self.backup):
            if ring.owner_of(key) == self_id:
                e = self.backup.pop(key)
                e.expires = max(e.expires, now + entry_ttl)
                self.primary[key] = e
                self.promoted += 1
            elif self_id not in (ring.owner_of(key), ring.backup_of(key)):
                # Neither owner nor backup any more: the new backup gets a copy from the owner.
                del self.backup[key]
                self.dropped += 1
        return out

    def by_backup(self, ring: Ring, self_id: bytes) -> dict[bytes, list[Entry]]:
        """The local primaries grouped by the member that must keep their backup copy."""
        out: dict[bytes, list[Entry]] = {}
        for key, e in self.primary.items():
            b = ring.backup_of(key)
            if b is not None and b != self_id:
                out.setdefault(b, []).append(e)
        return out

    def counts(self) -> dict[str, int]:
        """Numbers of primary entries per kind and of backup copies."""
        c = {f"primary_{k}": 0 for k in KINDS}
        for kind, _ in self.primary:
            c[f"primary_{kind}"] += 1
        c["backup"] = len(self.backup)
        return c
