"""The Kademlia routing table: 160 k-buckets with replacement caches.

A pure data structure: it is told what happened (a message arrived from a
peer, a request to a peer failed) and answers what to do (ping this contact to
decide whether it stays). It never sends anything itself.

Bucket ``i`` holds the contacts whose XOR distance from the local ID has its
highest set bit at position ``i`` (so bucket 159 covers half the ID space).
Each bucket keeps at most ``k`` contacts in least-recently-seen order, plus a
replacement cache of up to ``k`` recently seen peers that did not fit.

Policy:

* A peer that sends a message is moved to the tail of its bucket, or added when
  the bucket has room.
* When the bucket is full the newcomer goes to the replacement cache; if the
  least-recently-seen contact has been quiet for longer than ``liveness_age``
  the caller is asked to ping it (one check per bucket at a time). If the ping
  fails it is evicted and the best replacement takes its place.
* Replacements are chosen by measured round-trip time first, recency second
  (the "prefer low-latency neighbours" rule of the DNA paper), among peers that
  were heard from directly.
* A contact that fails ``max_failures`` requests in a row is evicted, even
  when a replacement is waiting: requests are retransmitted, so one failure
  may still be bad luck on a lossy link, and evicting the closest neighbours
  on it would cost more than a slow eviction of a dead one.
* Stub nodes are never inserted: the caller filters them by role.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from dnaagent.overlay.contact import Address, Contact
from dnaagent.wire import ID_BITS, ID_BYTES


def estimate_size(distances: Iterable[int], sample: int = 8) -> float:
    """Estimate the overlay's size from XOR distances between a node and its peers.

    With N uniform IDs, the i-th closest peer of a node lies at about
    ``i * 2**160 / N``; the estimate averages that over the ``sample`` closest
    (non-zero) distances. 0 when there are none.
    """
    ds = sorted(d for d in distances if d > 0)[:sample]
    if not ds:
        return 0.0
    space = 1 << ID_BITS
    return sum(i * space / d for i, d in enumerate(ds, start=1)) / len(ds)


class KBucket:
    """One k-bucket: contacts in least-recently-seen order and replacements."""

    __slots__ = ("contacts", "replacements", "checking", "last_touched", "_keys")

    def __init__(self, now: float) -> None:
        self.contacts: dict[bytes, Contact] = {}
        self.replacements: dict[bytes, Contact] = {}
        self.checking: bytes | None = None
        self.last_touched = now
        self._keys: list[int] | None = None

    def keys(self) -> list[int]:
        """Return the integer IDs of the contacts (cached until the members change).

        Moving a contact to the tail keeps the members, so the cache survives the
        routine updates; callers must not modify the list.
        """
        keys = self._keys
        if keys is None:
            keys = self._keys = [c.key for c in self.contacts.values()]
        return keys

    def least_recent(self) -> Contact:
        """Return the contact heard from least recently."""
        return next(iter(self.contacts.values()))


class RoutingTable:
    """Contacts of one node, organised in k-buckets by XOR distance."""

    def __init__(
        self,
        own_id: bytes,
        *,
        k: int = 20,
        max_failures: int = 2,
        liveness_age: float = 300.0,
        now: float = 0.0,
    ) -> None:
        if len(own_id) != ID_BYTES:
            raise ValueError("own_id must be 20 bytes")
        self.own_id = own_id
        self.own_key = int.from_bytes(own_id, "big")
        self.k = k
        self.max_failures = max_failures
        self.liveness_age = liveness_age
        self._created = now
        self.buckets: list[KBucket | None] = [None] * ID_BITS
        self._index: dict[bytes, Contact] = {}
        #: The same contacts by integer ID (what closest() sorts).
        self._by_key: dict[int, Contact] = {}
        #: No bucket below this index holds a contact (speeds up closest()).
        self._lowest = ID_BITS

    # ------------------------------------------------------------- queries

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def estimated_size(self, sample: int = 8) -> float:
        """Estimate the overlay's size from the own neighbourhood (:func:`estimate_size`)."""
        own = self.own_key
        return estimate_size([c.key ^ own for c in self.closest(own, sample)], sample)

    def __iter__(self) -> Iterator[Contact]:
        return iter(list(self._index.values()))

    def get(self, node_id: bytes) -> Contact | None:
        """Return the contact with ``node_id``, or ``None``."""
        return self._index.get(node_id)

    def find_address(self, address: Address) -> Contact | None:
        """Return the contact at ``address``, or ``None`` (linear: not for hot paths)."""
        for c in self._index.values():
            if c.address == address:
                return c
        return None

    def bucket_index(self, key: int) -> int:
        """Return the bucket index of an integer ID (-1 for the own ID)."""
        return (self.own_key ^ key).bit_length() - 1

    def _bucket(self, index: int, now: float) -> KBucket:
        b = self.buckets[index]
        if b is None:
            b = self.buckets[index] = KBucket(now)
        return b

    def closest(
        self, target: int, n: int, exclude: bytes | None = None, *, ordered: bool = True
    ) -> list[Contact]:
        """Return up to ``n`` contacts closest to ``target`` by XOR distance.

        Walks the buckets in distance order instead of sorting the whole table:
        the target's own bucket first, then every nearer bucket together (all
        their distances share the target's top bit), then farther buckets, until
        ``n`` contacts are collected; only those are sorted. With ``ordered=False``
        the result is the same set, unsorted when no cut was needed (enough for a
        NODES answer, whose receiver sorts anyway).
        """
        if n <= 0:
            return []
        by_key = self._by_key
        ex_key = None
        want = n
        if exclude is not None and exclude in self._index:
            ex_key = int.from_bytes(exclude, "big")
            want = n + 1
        i = (self.own_key ^ target).bit_length() - 1
        buckets = self.buckets
        lo = self._lowest
        keys: list[int] = []
        if i >= 0:
            b = buckets[i]
            if b is not None and b.contacts:
                keys.extend(b._keys or b.keys())
        if len(keys) < want:
            for j in range(lo, i):
                b = buckets[j]
                if b is not None and b.contacts:
                    keys.extend(b._keys or b.keys())
            j = i + 1 if i + 1 > lo else lo
            while len(keys) < want and j < ID_BITS:
                b = buckets[j]
                j += 1
                if b is not None and b.contacts:
                    keys.extend(b._keys or b.keys())
        if ex_key is not None and ex_key in keys:
            keys.remove(ex_key)
        if len(keys) > n:
            keys.sort(key=target.__xor__)
            del keys[n:]
        elif ordered and len(keys) > 1:
            keys.sort(key=target.__xor__)
        return [by_key[k] for k in keys]

    def stale_buckets(self, now: float, interval: float) -> list[int]:
        """Return the indexes of buckets not touched for ``interval`` seconds.

        Only buckets from the nearest non-empty one outwards count: nearer
        buckets cover ID ranges where no peer is expected.
        """
        first = next((i for i, b in enumerate(self.buckets) if b is not None and b.contacts), None)
        if first is None:
            return []
        stale = []
        for i in range(first, ID_BITS):
            b = self.buckets[i]
            last = b.last_touched if b is not None else self._created
            if now - last >= interval:
                stale.append(i)
        return stale

    def random_id_in_bucket(self, index: int, rng: random.Random) -> bytes:
        """Return a random ID that falls into bucket ``index``."""
        key = self.own_key ^ ((1 << index) | rng.getrandbits(index) if index else 1)
        return key.to_bytes(ID_BYTES, "big")

    def touch(self, key: int, now: float) -> None:
        """Record that a lookup for ``key`` just went through its bucket."""
        i = self.bucket_index(key)
        if i >= 0:
            self._bucket(i, now).last_touched = now

    # ------------------------------------------------------------- events

    def seen(
        self, node_id: bytes, address: Address, now: float, rtt: float | None = None
    ) -> Contact | None:
        """Record a message from a (core) peer.

        Returns a contact to ping for a liveness check when the peer did not
        fit into its full bucket, else ``None``. The caller reports the result
        with :meth:`seen` (answered) or :meth:`failed` (no answer), then
        :meth:`check_done`.
        """
        c = self._index.get(node_id)
        if c is not None:
            b = self.buckets[(self.own_key ^ c.key).bit_length() - 1]
            assert b is not None
            del b.contacts[node_id]
            b.contacts[node_id] = c
            c.last_seen = now
            c.failures = 0
            if address != c.address:
                c.set_address(address)
            if rtt is not None:
                c.observe(rtt)
            return None
        if node_id == self.own_id:
            return None
        c = Contact(node_id, address, now)
        if rtt is not None:
            c.observe(rtt)
        b = self._bucket((self.own_key ^ c.key).bit_length() - 1, now)
        if len(b.contacts) < self.k:
            b.contacts[node_id] = c
            b._keys = None
            self._index[node_id] = c
            self._by_key[c.key] = c
            index = (self.own_key ^ c.key).bit_length() - 1
            if index < self._lowest:
                self._lowest = index
            b.replacements.pop(node_id, None)
            return None
        old = b.replacements.pop(node_id, None)
        if old is not None and old.srtt is not None:
            c.srtt, c.rttvar = old.srtt, old.rttvar
            if rtt is not None:
                c.observe(rtt)
        b.replacements[node_id] = c
        if len(b.replacements) > self.k:
            del b.replacements[next(iter(b.replacements))]
        if b.checking is None:
            lrs = b.least_recent()
            if now - lrs.last_seen >= self.liveness_age:
                b.checking = lrs.node_id
                return lrs
        return None

    def check_done(self, node_id: bytes) -> None:
        """Record that the liveness check of ``node_id`` is over."""
        b = self.buckets[self.bucket_index(int.from_bytes(node_id, "big"))]
        if b is not None and b.checking == node_id:
            b.checking = None

    def failed(self, node_id: bytes, *, evict: bool = False) -> bool:
        """Record that ``node_id`` did not answer a request.

        Evicts it (and promotes a replacement) after ``max_failures`` failures
        in a row, or at once with ``evict``. Returns whether it was evicted.
        """
        c = self._index.get(node_id)
        if c is None:
            return False
        c.failures += 1
        b = self.buckets[(self.own_key ^ c.key).bit_length() - 1]
        assert b is not None
        if evict or c.failures >= self.max_failures:
            self._evict(b, c)
            return True
        return False

    def remove(self, node_id: bytes) -> bool:
        """Remove ``node_id`` (it left or misbehaved); returns whether it was there."""
        c = self._index.get(node_id)
        if c is None:
            for b in self.buckets:
                if b is not None and b.replacements.pop(node_id, None) is not None:
                    return True
            return False
        b = self.buckets[(self.own_key ^ c.key).bit_length() - 1]
        assert b is not None
        self._evict(b, c)
        return True

    def _evict(self, b: KBucket, c: Contact) -> None:
        del b.contacts[c.node_id]
        del self._index[c.node_id]
        del self._by_key[c.key]
        b._keys = None
        if not b.contacts and not b.replacements:
            self._lowest = next(
                (i for i, x in enumerate(self.buckets) if x is not None and x.contacts), ID_BITS
            )
        if b.checking == c.node_id:
            b.checking = None
        if b.replacements:
            best = min(
                b.replacements.values(),
                key=lambda r: (r.srtt is None, r.srtt or 0.0, -r.last_seen),
            )
            del b.replacements[best.node_id]
            best.failures = 0
            # Keep least-recently-seen order: the promoted peer goes where its
            # last contact puts it (it is usually the most recent one).
            b.contacts[best.node_id] = best
            self._index[best.node_id] = best
            self._by_key[best.key] = best
            if len(b.contacts) > 1 and best.last_seen < b.least_recent().last_seen:
                items = sorted(b.contacts.values(), key=lambda x: x.last_seen)
                b.contacts = {x.node_id: x for x in items}
