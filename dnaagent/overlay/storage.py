"""Values stored by a node for the DHT, with expiry and limits.

A pure data structure. Each key holds a set of values; storing a value that is
already there refreshes its expiry. Limits protect the node from any one peer
and from everyone together: the size of one value, the number of values of one
key, the number of keys one peer may have stored here, and the total number
and bytes of values. A refused value raises :class:`StoreRefused` naming the
limit.
"""

from __future__ import annotations

import heapq

from dnaagent.overlay.errors import StoreRefused


class _Entry:
    __slots__ = ("expires", "peer")

    def __init__(self, expires: float, peer: bytes) -> None:
        self.expires = expires
        self.peer = peer


class ValueStore:
    """The values a node keeps for others, keyed by 20-byte keys."""

    def __init__(
        self,
        *,
        max_value_size: int = 2048,
        max_values_per_key: int = 32,
        max_keys_per_peer: int = 256,
        max_values: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.max_value_size = max_value_size
        self.max_values_per_key = max_values_per_key
        self.max_keys_per_peer = max_keys_per_peer
        self.max_values = max_values
        self.max_bytes = max_bytes
        self._data: dict[bytes, dict[bytes, _Entry]] = {}
        self._peer_keys: dict[bytes, set[bytes]] = {}
        self._expiry: list[tuple[float, bytes, bytes]] = []
        self.values = 0
        self.bytes = 0

    def __len__(self) -> int:
        """Return the number of keys held."""
        return len(self._data)

    def put(self, key: bytes, value: bytes, ttl: float, peer: bytes, now: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds on behalf of ``peer``."""
        if len(value) > self.max_value_size:
            raise StoreRefused("value_too_large")
        values = self._data.get(key)
        entry = values.get(value) if values is not None else None
        expires = now + ttl
        if entry is not None:
            if expires > entry.expires:
                entry.expires = expires
                heapq.heappush(self._expiry, (expires, key, value))
            return
        peer_keys = self._peer_keys.get(peer)
        if (
            peer_keys is not None
            and key not in peer_keys
            and len(peer_keys) >= self.max_keys_per_peer
        ):
            raise StoreRefused("too_many_keys_for_peer")
        if values is not None and len(values) >= self.max_values_per_key:
            raise StoreRefused("too_many_values_for_key")
        if self.values >= self.max_values or self.bytes + len(value) > self.max_bytes:
            raise StoreRefused("store_full")
        if values is None:
            values = self._data[key] = {}
        values[value] = _Entry(expires, peer)
        self._peer_keys.setdefault(peer, set()).add(key)
        self.values += 1
        self.bytes += len(value)
        heapq.heappush(self._expiry, (expires, key, value))

    def get(self, key: bytes, now: float) -> list[tuple[bytes, float]]:
        """Return ``(value, seconds_left)`` for each live value of ``key``, newest first."""
        values = self._data.get(key)
        if not values:
            return []
        out = [(v, e.expires - now) for v, e in values.items() if e.expires > now]
        out.sort(key=lambda item: -item[1])
        return out

    def keys(self) -> list[bytes]:
        """Return the keys held (a copy: the store may change while the caller walks it)."""
        return list(self._data)

    def expire(self, now: float) -> int:
        """Drop every value whose time is up; return how many were dropped."""
        dropped = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, key, value = heapq.heappop(heap)
            values = self._data.get(key)
            entry = values.get(value) if values is not None else None
            if entry is None or entry.expires > now:
                continue
            assert values is not None
            del values[value]
            self.values -= 1
            self.bytes -= len(value)
            dropped += 1
            if not any(e.peer == entry.peer for e in values.values()):
                keys = self._peer_keys.get(entry.peer)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._peer_keys[entry.peer]
            if not values:
                del self._data[key]
        return dropped

    def keys_of(self, peer: bytes) -> int:
        """Return how many keys ``peer`` holds values under here."""
        return len(self._peer_keys.get(peer, ()))
