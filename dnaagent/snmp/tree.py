"""The MIB as the agent serves it: a sorted cache of OID instances and values.

SNMP request handlers must answer at once, so they never compute: they read
this tree, and updaters (fed by the Mediator, the overlay, the store) write
it. Both the embedded pysnmp agent and the AgentX subagent serve the same
:class:`MibTree`; each translates :class:`Value` into its own encoding.

OIDs are tuples of non-negative ints. :meth:`MibTree.next` is the GetNext
walk in lexicographic OID order; :meth:`MibTree.replace_subtree` swaps a whole
table at once so that a walk never sees half an update.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

OID = tuple[int, ...]


class Kind(enum.Enum):
    """SMIv2 base types of instance values (RFC 2578 §7.1)."""

    INTEGER = "Integer32"
    OCTETS = "OCTET STRING"
    OID = "OBJECT IDENTIFIER"
    IPADDRESS = "IpAddress"
    COUNTER32 = "Counter32"
    GAUGE32 = "Gauge32"
    TIMETICKS = "TimeTicks"
    COUNTER64 = "Counter64"
    OPAQUE = "Opaque"


_RANGES = {
    Kind.INTEGER: (-(2**31), 2**31 - 1),
    Kind.COUNTER32: (0, 2**32 - 1),
    Kind.GAUGE32: (0, 2**32 - 1),
    Kind.TIMETICKS: (0, 2**32 - 1),
    Kind.COUNTER64: (0, 2**64 - 1),
}


@dataclass(frozen=True)
class Value:
    """A typed instance value; construct with the class methods."""

    kind: Kind
    value: Any

    def __post_init__(self) -> None:
        rng = _RANGES.get(self.kind)
        if rng is not None:
            if isinstance(self.value, bool) or not isinstance(self.value, int):
                raise TypeError(f"{self.kind.value} needs an int, not {self.value!r}")
            if not rng[0] <= self.value <= rng[1]:
                raise ValueError(f"{self.value} is out of range for {self.kind.value}")
        elif self.kind in (Kind.OCTETS, Kind.OPAQUE):
            if not isinstance(self.value, bytes):
                raise TypeError(f"{self.kind.value} needs bytes, not {type(self.value).__name__}")
        elif self.kind is Kind.OID:
            if not isinstance(self.value, tuple) or not all(
                isinstance(x, int) and 0 <= x < 2**32 for x in self.value
            ):
                raise TypeError("OBJECT IDENTIFIER needs a tuple of ints")
        elif self.kind is Kind.IPADDRESS:
            if not isinstance(self.value, bytes) or len(self.value) != 4:
                raise TypeError("IpAddress needs 4 bytes")

    @classmethod
    def integer(cls, v: int) -> Value:
        """Integer32 (also enumerations and TruthValue)."""
        return cls(Kind.INTEGER, int(v))

    @classmethod
    def octets(cls, v: str | bytes) -> Value:
        """OCTET STRING (DisplayString when given text, encoded as UTF-8)."""
        return cls(Kind.OCTETS, v.encode("utf-8") if isinstance(v, str) else bytes(v))

    @classmethod
    def oid(cls, v: Iterable[int]) -> Value:
        """OBJECT IDENTIFIER."""
        return cls(Kind.OID, tuple(v))

    @classmethod
    def ipaddress(cls, v: bytes) -> Value:
        """IpAddress (IPv4, 4 bytes)."""
        return cls(Kind.IPADDRESS, bytes(v))

    @classmethod
    def counter32(cls, v: int) -> Value:
        """Counter32; wraps at 2**32 as RFC 2578 says counters do."""
        return cls(Kind.COUNTER32, int(v) % 2**32)

    @classmethod
    def counter64(cls, v: int) -> Value:
        """Counter64; wraps at 2**64."""
        return cls(Kind.COUNTER64, int(v) % 2**64)

    @classmethod
    def gauge32(cls, v: int) -> Value:
        """Gauge32; latches at its maximum as RFC 2578 says gauges do."""
        return cls(Kind.GAUGE32, max(0, min(int(v), 2**32 - 1)))

    @classmethod
    def timeticks(cls, seconds: float) -> Value:
        """TimeTicks from seconds (hundredths, wrapping at 2**32)."""
        return cls(Kind.TIMETICKS, int(seconds * 100) % 2**32)


def parse_oid(text: str) -> OID:
    """``"1.3.6.1"`` or ``".1.3.6.1"`` into a tuple; ValueError if malformed."""
    parts = text.strip().lstrip(".").split(".")
    try:
        oid = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"not a numeric OID: {text!r}") from None
    if any(x < 0 or x >= 2**32 for x in oid) or len(oid) < 2:
        raise ValueError(f"not a valid OID: {text!r}")
    return oid


def format_oid(oid: OID) -> str:
    """The dotted form of an OID."""
    return ".".join(str(x) for x in oid)


def is_prefix(prefix: OID, oid: OID) -> bool:
    """True when ``oid`` lies in the subtree rooted at ``prefix``."""
    return oid[: len(prefix)] == prefix


def _subtree_end(prefix: OID) -> OID:
    """The smallest OID after every OID under ``prefix``."""
    return prefix[:-1] + (prefix[-1] + 1,)


class MibTree:
    """Instances and values in OID order, with GET / GETNEXT / GETBULK reads.

    Writers: :meth:`set`, :meth:`remove`, :meth:`replace_subtree`. Readers:
    :meth:`get`, :meth:`next`, :meth:`walk`. ``on_change`` listeners hear of
    every write (the AgentX subagent uses it to keep registrations).
    """

    def __init__(self) -> None:
        self._oids: list[OID] = []
        self._values: dict[OID, Value] = {}
        self.version = 0
        self._listeners: list[Callable[[MibTree], object]] = []

    def __len__(self) -> int:
        return len(self._oids)

    def set(self, oid: OID, value: Value) -> None:
        """Create or update one instance."""
        if oid not in self._values:
            bisect.insort(self._oids, oid)
        self._values[oid] = value
        self._changed()

    def remove(self, oid: OID) -> None:
        """Delete one instance (no error when absent)."""
        if self._values.pop(oid, None) is not None:
            del self._oids[bisect.bisect_left(self._oids, oid)]
            self._changed()

    def replace_subtree(self, prefix: OID, values: dict[OID, Value]) -> None:
        """Make the subtree under ``prefix`` hold exactly ``values``, at once."""
        for oid in values:
            if not is_prefix(prefix, oid) or oid == prefix:
                raise ValueError(f"{format_oid(oid)} is not under {format_oid(prefix)}")
        lo = bisect.bisect_left(self._oids, prefix)
        hi = bisect.bisect_left(self._oids, _subtree_end(prefix))
        for oid in self._oids[lo:hi]:
            del self._values[oid]
        self._oids[lo:hi] = sorted(values)
        self._values.update(values)
        self._changed()

    def get(self, oid: OID) -> Value | None:
        """The value of an exact instance, or None (noSuchInstance/noSuchObject)."""
        return self._values.get(oid)

    def next(self, oid: OID) -> tuple[OID, Value] | None:
        """The first instance strictly after ``oid``, or None (endOfMibView)."""
        i = bisect.bisect_right(self._oids, oid)
        if i == len(self._oids):
            return None
        found = self._oids[i]
        return found, self._values[found]

    def walk(self, prefix: OID = ()) -> Iterator[tuple[OID, Value]]:
        """Every instance under ``prefix`` in OID order (a snapshot)."""
        lo = bisect.bisect_left(self._oids, prefix)
        hi = bisect.bisect_left(self._oids, _subtree_end(prefix)) if prefix else len(self._oids)
        for oid in self._oids[lo:hi]:
            yield oid, self._values[oid]

    def on_change(self, listener: Callable[[MibTree], object]) -> None:
        """Call ``listener(tree)`` after every write."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        self.version += 1
        for listener in self._listeners:
            listener(self)
