"""Group storage: consistent-hashing placement, backup on the next member, redistribution."""

from __future__ import annotations

import hashlib

import pytest

from dnaagent.xbac.storage import Entry, GroupStore, Ring, key_position, member_position


def nid(i: int) -> bytes:
    """A well-spread 20-byte member id."""
    return hashlib.sha1(f"member-{i}".encode()).digest()


def entry(kind: str, ident: str, value: object = 1, version: float = 0.0) -> Entry:
    """An entry that expires far in the future."""
    return Entry(kind, ident, value, version, 1e9)


def test_owner_is_the_successor_and_backup_the_next_member() -> None:
    """The owner is the first member at or after the key; the backup the one after it."""
    members = [nid(i) for i in range(6)]
    ring = Ring(members)
    ordered = sorted(members, key=member_position)
    for i in range(200):
        key = ("h", f"192.0.2.{i}")
        pos = key_position(*key)
        after = [m for m in ordered if member_position(m) >= pos]
        expect = after[0] if after else ordered[0]
        assert ring.owner_of(key) == expect
        j = ordered.index(expect)
        assert ring.backup_of(key) == ordered[(j + 1) % len(ordered)]
        assert ring.backup_of(key) != ring.owner_of(key)


def test_single_member_has_no_backup_and_keys_spread() -> None:
    """One member owns everything with no backup; with many, every member owns something."""
    assert Ring([nid(0)]).backup(123) is None
    assert Ring([]).owner(5) is None
    ring = Ring([nid(i) for i in range(8)])
    owners = {ring.owner_of(("c", str(i))) for i in range(400)}
    assert len(owners) == 8


def test_unknown_kind_is_refused() -> None:
    """Only host, group and cluster entries exist."""
    with pytest.raises(ValueError):
        key_position("x", "1")


def test_newer_versions_win() -> None:
    """An older write never replaces a newer one, in primary and in backup tables."""
    s = GroupStore()
    assert s.put(entry("h", "a", 1, version=5.0))
    assert not s.put(entry("h", "a", 2, version=4.0))
    assert s.get(("h", "a"), 0.0).value == 1  # type: ignore[union-attr]
    assert s.put_backup(entry("g", "b", 1, version=2.0))
    assert not s.put_backup(entry("g", "b", 9, version=1.0))
    assert s.backup[("g", "b")].value == 1
    assert not s.delete(("h", "a"), version=1.0)
    assert s.delete(("h", "a"), version=6.0)


def test_rebalance_on_join_hands_entries_to_the_new_owner() -> None:
    """When a member joins, each entry moves to exactly its new owner, nothing is lost."""
    old = [nid(i) for i in range(4)]
    ring = Ring(old)
    stores = {m: GroupStore() for m in old}
    keys = [("h", f"198.51.100.{i}") for i in range(120)]
    for k in keys:
        stores[ring.owner_of(k)].put(entry(*k))  # type: ignore[index]
    new = nid(99)
    ring2 = Ring([*old, new])
    stores[new] = GroupStore()
    moved: dict[bytes, list[Entry]] = {}
    for m in old:
        for to, es in stores[m].rebalance(ring2, m, 0.0, 100.0).items():
            moved.setdefault(to, []).extend(es)
    assert set(moved) <= {new}
    for e in moved.get(new, []):
        stores[new].put(e)
    for k in keys:
        holders = [m for m, s in stores.items() if k in s.primary]
        assert holders == [ring2.owner_of(k)]
    assert any(ring2.owner_of(k) == new for k in keys)


def test_failure_promotes_the_backup_copy() -> None:
    """When an owner fails, the member after it holds the backup and promotes it."""
    members = [nid(i) for i in range(5)]
    ring = Ring(members)
    stores = {m: GroupStore() for m in members}
    keys = [("c", str(i)) for i in range(100)]
    for k in keys:
        stores[ring.owner_of(k)].put(entry(*k))  # type: ignore[index]
    for m in members:
        for b, es in stores[m].by_backup(ring, m).items():
            for e in es:
                stores[b].put_backup(Entry(e.kind, e.ident, e.value, e.version, 50.0))
    for k in keys:
        assert k in stores[ring.backup_of(k)].backup  # type: ignore[index]
    dead = members[2]
    ring2 = Ring([m for m in members if m != dead])
    for m in ring2.members:
        stores[m].rebalance(ring2, m, 10.0, 100.0)
    for k in keys:
        holders = [m for m in ring2.members if k in stores[m].primary]
        assert holders == [ring2.owner_of(k)]


def test_expired_backup_is_promoted_only_by_the_owner() -> None:
    """An expired backup copy becomes primary where the local member owns it, else it goes."""
    a, b = nid(1), nid(2)
    ring = Ring([a, b])
    k_a = next(("h", str(i)) for i in range(100) if ring.owner_of(("h", str(i))) == a)
    k_b = next(("h", str(i)) for i in range(100) if ring.owner_of(("h", str(i))) == b)
    s = GroupStore()
    s.put_backup(Entry(*k_a, 7, 0.0, 5.0))
    s.put_backup(Entry(*k_b, 8, 0.0, 5.0))
    s.put(Entry("g", "x", 1, 0.0, 4.0))
    assert s.expire(4.5, ring, a) == []
    assert ("g", "x") not in s.primary and s.expired == 1
    promoted = s.expire(6.0, ring, a)
    assert [e.key for e in promoted] == [k_a]
    assert k_a in s.primary and k_b not in s.primary and not s.backup
    assert s.counts()["primary_h"] == 1
