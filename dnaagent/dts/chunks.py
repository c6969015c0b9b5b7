"""Chunks of a campaign's target list and their DHT keys.

The target list is split into chunks without overlap. Chunk ``n`` of campaign ``c`` has
three values, one per plane, under keys derived from the same string so that the three
stay consistent (the DTS paper: "the key for a target chunk is the same as the key for
the corresponding probing information and data", here the same chunk number in three
namespaces)::

    PT (probing targets)  SHA-1("dts/pt/<c>/<n>")
    PC (probing control)  SHA-1("dts/pc/<c>/<n>")   the chunk's global stop set
    PD (probing data)     SHA-1("dts/pd/<c>/<n>")   the chunk's results, per monitor
    lease                 SHA-1("dts/lease/<c>/<n>")
    campaign              SHA-1("dts/campaign/<c>")  chunk count, deny list

SHA-1 gives 160-bit keys, the size of the overlay's Kademlia IDs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgpack

#: The planes that have one value per chunk.
PLANES = ("pt", "pc", "pd", "lease")

_CAMPAIGN_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def check_campaign_id(campaign: str) -> str:
    """Return ``campaign`` if it is a valid campaign id (1-64 of ``[A-Za-z0-9._-]``)."""
    if not isinstance(campaign, str) or not _CAMPAIGN_RE.match(campaign):
        raise ValueError(f"invalid campaign id {campaign!r}: use 1-64 letters, digits, . _ -")
    return campaign


def key_name(plane: str, campaign: str, chunk: int) -> str:
    """The string a chunk key is derived from, e.g. ``dts/pt/c1/3``."""
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}")
    if chunk < 0:
        raise ValueError(f"chunk number must be >= 0, not {chunk}")
    return f"dts/{plane}/{check_campaign_id(campaign)}/{chunk}"


def chunk_key(plane: str, campaign: str, chunk: int) -> bytes:
    """The 20-byte DHT key of chunk ``chunk`` of ``campaign`` in ``plane``."""
    return hashlib.sha1(key_name(plane, campaign, chunk).encode()).digest()


def campaign_key(campaign: str) -> bytes:
    """The 20-byte DHT key of the campaign record."""
    return hashlib.sha1(f"dts/campaign/{check_campaign_id(campaign)}".encode()).digest()


def split(targets: Sequence[str], chunk_size: int) -> list[list[str]]:
    """Split ``targets`` in order into chunks of ``chunk_size`` (the last may be shorter)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    return [list(targets[i : i + chunk_size]) for i in range(0, len(targets), chunk_size)]


def split_even(targets: Sequence[str], chunks: int) -> list[list[str]]:
    """Split ``targets`` into ``chunks`` chunks whose sizes differ by at most one."""
    if chunks < 1:
        raise ValueError(f"chunks must be at least 1, not {chunks}")
    q, r = divmod(len(targets), chunks)
    out, start = [], 0
    for i in range(chunks):
        end = start + q + (1 if i < r else 0)
        out.append(list(targets[start:end]))
        start = end
    return out


@dataclass
class TargetChunk:
    """The PT value of one chunk: its targets and the ones removed since it was made."""

    chunk: int
    targets: list[str] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)

    def active(self) -> list[str]:
        """Targets still to probe, in order."""
        return [t for t in self.targets if t not in self.removed]

    def encode(self) -> bytes:
        """msgpack ``{"chunk", "targets", "removed"}``."""
        return msgpack.packb(
            {"chunk": self.chunk, "targets": list(self.targets), "removed": sorted(self.removed)}
        )

    @classmethod
    def decode(cls, data: bytes) -> TargetChunk:
        """Parse a PT value; ``ValueError`` when malformed."""
        try:
            obj = msgpack.unpackb(data)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ValueError(f"PT value is not msgpack: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("chunk"), int):
            raise ValueError("PT value must be a map with an integer chunk")
        targets, removed = obj.get("targets"), obj.get("removed", [])
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError("PT targets must be a list of strings")
        if not isinstance(removed, list) or not all(isinstance(t, str) for t in removed):
            raise ValueError("PT removed must be a list of strings")
        return cls(obj["chunk"], targets, set(removed))
