"""The simulator's global view: which nodes are live, and which are closest to a key.

A real node only knows its routing table; the simulator knows every live node and can
say which ones are truly the XOR-closest to any key. The scenario compares the two
(the paper's Fig. 3 "neighbours known", and whether a lookup found the right nodes).

The live IDs are kept sorted as integers. Nodes sharing the ``b`` leading bits with a
key form one contiguous run of that order, and every node inside that run is closer (in
XOR distance) to the key than any node outside it; so the ``k`` closest nodes are found
by widening the run around the key until it holds ``k`` nodes and sorting just that run,
instead of scanning every node.
"""

from __future__ import annotations

import bisect
import math

__all__ = ["GlobalView"]


class GlobalView:
    """The set of live node IDs (160-bit integers) with exact k-closest queries."""

    def __init__(self, bits: int = 160) -> None:
        self.bits = bits
        self._ids: list[int] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, node_id: object) -> bool:
        if not isinstance(node_id, int):
            return False
        i = bisect.bisect_left(self._ids, node_id)
        return i < len(self._ids) and self._ids[i] == node_id

    def add(self, node_id: int) -> None:
        """Mark ``node_id`` live (no effect if it already is)."""
        i = bisect.bisect_left(self._ids, node_id)
        if i == len(self._ids) or self._ids[i] != node_id:
            self._ids.insert(i, node_id)

    def remove(self, node_id: int) -> None:
        """Mark ``node_id`` gone (no effect if it is not live)."""
        i = bisect.bisect_left(self._ids, node_id)
        if i < len(self._ids) and self._ids[i] == node_id:
            del self._ids[i]

    def ids(self) -> list[int]:
        """Return the live IDs in increasing order (a copy)."""
        return list(self._ids)

    def closest(self, key: int, k: int, exclude: int | None = None) -> list[int]:
        """Return the ``k`` live IDs closest to ``key`` by XOR distance, closest first.

        :param exclude: an ID to leave out (a node asking for its own neighbours).
        """
        ids = self._ids
        n = len(ids)
        if k <= 0 or n == 0:
            return []
        # Start from the prefix length at which a run holds about k nodes.
        shift = self.bits - max(0, int(math.log2(max(1.0, n / (k + 1)))))
        while True:
            lo = (key >> shift) << shift
            i = bisect.bisect_left(ids, lo)
            j = bisect.bisect_left(ids, lo + (1 << shift))
            count = j - i
            if exclude is not None and lo <= exclude < lo + (1 << shift) and exclude in self:
                count -= 1
            if count >= k or shift >= self.bits:
                break
            shift += 1
        run = [x for x in ids[i:j] if x != exclude]
        run.sort(key=key.__xor__)
        return run[:k]
