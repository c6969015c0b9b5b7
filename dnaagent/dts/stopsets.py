"""Doubletree's stop sets.

* The **local stop set** of a monitor: the interfaces it has seen. Backwards probing
  stops at one of them, because routes from one source form a tree: the path from the
  monitor to a known interface is known. It never leaves the monitor.
* The **global stop set**: (interface, destination) pairs. Forwards probing towards a
  destination stops at an interface already seen on a path to that destination, because
  routes to one destination form a tree. It is shared between monitors; DTS keeps it in
  the probing-control (PC) DHT, one value per chunk of targets: the pairs whose
  destination is in that chunk (:class:`GlobalStopSet` is one such partition).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgpack

#: Largest encoded PC value accepted (bytes).
MAX_ENCODED = 8 * 1024 * 1024


class LocalStopSet:
    """The interfaces one monitor has seen."""

    def __init__(self, interfaces: Iterable[str] = ()) -> None:
        self._set: set[str] = set(interfaces)

    def __contains__(self, interface: object) -> bool:
        return interface in self._set

    def __len__(self) -> int:
        return len(self._set)

    def __iter__(self) -> Iterator[str]:
        return iter(self._set)

    def add(self, interface: str) -> None:
        """Remember one interface."""
        self._set.add(interface)

    def update(self, interfaces: Iterable[str]) -> None:
        """Remember several interfaces."""
        self._set.update(interfaces)


class GlobalStopSet:
    """(interface, destination) pairs of one chunk (the PC value of chunk ``chunk``).

    Pairs are kept per destination. :meth:`add` records a pair and also remembers it in
    :attr:`pending`, the pairs not yet committed to the DHT; :meth:`merge` folds in pairs
    read back from the DHT (committed by any monitor) without marking them pending.
    """

    def __init__(self, chunk: int = 0, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.chunk = chunk
        self._by_dst: dict[str, set[str]] = {}
        self.pending: set[tuple[str, str]] = set()
        self.merge(pairs)

    def contains(self, interface: str, destination: str) -> bool:
        """Whether ``interface`` was seen on a path towards ``destination``."""
        known = self._by_dst.get(destination)
        return known is not None and interface in known

    def add(self, interface: str, destination: str) -> None:
        """Record a pair found by this monitor (pending until committed)."""
        known = self._by_dst.setdefault(destination, set())
        if interface not in known:
            known.add(interface)
            self.pending.add((interface, destination))

    def merge(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Fold in pairs already committed by someone."""
        for interface, destination in pairs:
            self._by_dst.setdefault(destination, set()).add(interface)

    def discard_destination(self, destination: str) -> None:
        """Forget every pair of a destination (removed or denied target)."""
        self._by_dst.pop(destination, None)
        self.pending = {p for p in self.pending if p[1] != destination}

    def pairs(self) -> Iterator[tuple[str, str]]:
        """Every pair, destinations and interfaces in sorted order."""
        for destination in sorted(self._by_dst):
            for interface in sorted(self._by_dst[destination]):
                yield interface, destination

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_dst.values())

    def copy(self) -> GlobalStopSet:
        """An independent snapshot (pending pairs not carried over)."""
        return GlobalStopSet(self.chunk, self.pairs())

    def encode(self) -> bytes:
        """The PC value: msgpack ``{"chunk": n, "pairs": {destination: [interface, ...]}}``."""
        return msgpack.packb(
            {"chunk": self.chunk, "pairs": {d: sorted(i) for d, i in sorted(self._by_dst.items())}}
        )

    @classmethod
    def decode(cls, data: bytes) -> GlobalStopSet:
        """Parse a PC value; ``ValueError`` when it is malformed."""
        if len(data) > MAX_ENCODED:
            raise ValueError(f"PC value of {len(data)} bytes is too large")
        try:
            obj = msgpack.unpackb(data)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ValueError(f"PC value is not msgpack: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("chunk"), int):
            raise ValueError("PC value must be a map with an integer chunk")
        pairs = obj.get("pairs")
        if not isinstance(pairs, dict):
            raise ValueError("PC value must hold a map of pairs")
        out = cls(obj["chunk"])
        for destination, interfaces in pairs.items():
            if not isinstance(destination, str) or not isinstance(interfaces, list):
                raise ValueError("PC pairs must map a destination to a list of interfaces")
            if not all(isinstance(i, str) for i in interfaces):
                raise ValueError("PC interfaces must be strings")
            out.merge((i, destination) for i in interfaces)
        return out
