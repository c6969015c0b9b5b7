"""DTS results: one record per traced destination; RIPE Atlas JSON and CSV export.

A :class:`TraceRecord` carries what the DTS data engine adds to raw answers: start and
end timestamps, both stop reasons, the monitor name and the chunk ID. Only probed hops
are in a record: hops Doubletree skipped (known from the stop sets) are absent.

RIPE Atlas traceroute JSON (one object per record, the documented result format)::

    {"af": 4, "dst_addr": ..., "dst_name": ..., "src_addr": ..., "from": ...,
     "msm_id": ..., "prb_id": ..., "timestamp": ..., "endtime": ..., "type": "traceroute",
     "proto": "UDP", "paris_id": ..., "size": ..., "msm_name": "Traceroute",
     "result": [{"hop": n, "result": [{"from": ip, "rtt": ms, "size": .., "ttl": ..,
                                       "err": ..}]}],
     "dts": {"campaign", "chunk", "monitor", "start_ttl", "forward_stop", ...}}

A silent hop is ``{"x": "*"}``. The ``dts`` member is an extension Atlas readers ignore.
A reply carries ``err`` only when the answer was an ICMP destination unreachable other
than the destination's own port unreachable that ends a UDP trace, written as the RIPE
Atlas traceroute result format (https://atlas.ripe.net/docs/apis/result-format/)
writes it: ``"N"`` network unreachable, ``"H"`` host (destination) unreachable, ``"A"``
administratively prohibited, ``"P"`` protocol unreachable, ``"p"`` port unreachable,
``"h"`` beyond scope (ICMPv6), any other code as its number
(:func:`dnaagent.measure.paris.atlas_err` maps the IPv4 and ICMPv6 codes). The CSV
export has the same value in its last column, ``err`` (empty when there is none).

A record's hops are ``(ttl, address, rtt, reached, reply_ttl, err)``. Records written
before ``err`` existed have five-element hops: they load with ``err`` ``None``, and a
hop without ``err`` is stored with five elements still, so older agents read new
records (they ignore a sixth element; elements after the sixth are ignored here).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dnaagent.dts.doubletree import DoubletreeTrace, Reply

#: One probed hop: (ttl, address or None, rtt ms or None, reached, reply ttl or None,
#: Atlas ``err`` or None). Five-element hops (no ``err``) are accepted everywhere.
Hop = tuple[int, str | None, float | None, bool, int | None, str | int | None]
#: A hop of a record written before ``err`` existed.
OldHop = tuple[int, str | None, float | None, bool, int | None]

#: The ``err`` letters of the RIPE Atlas traceroute result format.
ATLAS_ERR_LETTERS = frozenset("NHAPph")

#: Size in bytes of the simulated/UDP probe packets reported in exports.
DEFAULT_PROBE_SIZE = 48

#: Probe firmware declared in Atlas exports (the current traceroute result format).
ATLAS_FIRMWARE = 5080

CSV_FIELDS = (
    "campaign",
    "chunk",
    "monitor",
    "src_addr",
    "dst_addr",
    "timestamp",
    "endtime",
    "start_ttl",
    "forward_stop",
    "backward_stop",
    "hop",
    "from",
    "rtt",
    "reached",
    "err",
)


@dataclass
class TraceRecord:
    """One destination traced by one monitor in one chunk."""

    campaign: str
    chunk: int
    monitor: str
    src_addr: str
    dst_addr: str
    timestamp: float
    endtime: float
    start_ttl: int
    forward_stop: str
    backward_stop: str
    #: (ttl, address or None, rtt ms or None, reached, reply ttl or None, err or None),
    #: by TTL (see :data:`Hop`; five-element hops without ``err`` are accepted too).
    hops: list[Hop | OldHop] = field(default_factory=list)

    @property
    def probes(self) -> int:
        """Probes sent for this destination."""
        return len(self.hops)

    @classmethod
    def from_trace(
        cls,
        trace: DoubletreeTrace,
        *,
        campaign: str,
        chunk: int,
        monitor: str,
        src_addr: str,
        timestamp: float,
        endtime: float,
    ) -> TraceRecord:
        """Build a record from a finished :class:`DoubletreeTrace`."""
        hops: list[Hop | OldHop] = []
        for ttl, r in sorted(trace.hops.items()):
            hops.append((ttl, r.address, r.rtt, r.reached, r.reply_ttl, r.err))
        return cls(
            campaign=campaign,
            chunk=chunk,
            monitor=monitor,
            src_addr=src_addr,
            dst_addr=trace.destination,
            timestamp=timestamp,
            endtime=endtime,
            start_ttl=trace.start_ttl,
            forward_stop=trace.forward_stop.value if trace.forward_stop else "",
            backward_stop=trace.backward_stop.value if trace.backward_stop else "",
            hops=hops,
        )

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping (what the PD value holds)."""
        return {
            "campaign": self.campaign,
            "chunk": self.chunk,
            "monitor": self.monitor,
            "src_addr": self.src_addr,
            "dst_addr": self.dst_addr,
            "timestamp": self.timestamp,
            "endtime": self.endtime,
            "start_ttl": self.start_ttl,
            "forward_stop": self.forward_stop,
            "backward_stop": self.backward_stop,
            "hops": [_stored_hop(h) for h in self.hops],
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> TraceRecord:
        """Inverse of :meth:`to_dict`; ``ValueError`` when malformed."""
        try:
            hops: list[Hop | OldHop] = [_loaded_hop(h) for h in obj["hops"]]
            return cls(
                campaign=str(obj["campaign"]),
                chunk=int(obj["chunk"]),
                monitor=str(obj["monitor"]),
                src_addr=str(obj["src_addr"]),
                dst_addr=str(obj["dst_addr"]),
                timestamp=float(obj["timestamp"]),
                endtime=float(obj["endtime"]),
                start_ttl=int(obj["start_ttl"]),
                forward_stop=str(obj["forward_stop"]),
                backward_stop=str(obj["backward_stop"]),
                hops=hops,
            )
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"malformed trace record: {exc}") from exc

    def replies(self) -> dict[int, Reply]:
        """The hops as :class:`Reply` objects by TTL.

        A hop with an ``err`` that did not reach the destination is ``unreachable``.
        (A probe the local host refused to send has no ``err`` and comes back silent.)
        """
        out = {}
        for h in self.hops:
            err = _hop_err(h)
            reached = bool(h[3])
            out[h[0]] = Reply(h[1], reached, h[2], h[4], err is not None and not reached, err)
        return out


def _hop_err(hop: Any) -> str | int | None:
    return hop[5] if len(hop) > 5 else None


def _stored_hop(hop: Any) -> list[Any]:
    """A hop as the PD value holds it: five elements when it has no ``err``."""
    out = list(hop[:5])
    err = _hop_err(hop)
    if err is not None:
        out.append(err)
    return out


def check_err(value: Any) -> str | int | None:
    """An Atlas ``err`` value read from a record; ``ValueError`` when it is not one."""
    if value is None or (isinstance(value, str) and value in ATLAS_ERR_LETTERS):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value
    raise ValueError(f"{value!r} is not an ICMP unreachable code (err)")


def _loaded_hop(h: Any) -> Hop:
    # Elements after the sixth (fields of later agents) are ignored, the way agents
    # older than err ignore the sixth.
    if not isinstance(h, list | tuple) or len(h) < 5:
        raise ValueError(f"a hop has at least 5 elements, not {h!r}")
    err = check_err(h[5]) if len(h) > 5 else None
    return (int(h[0]), h[1], None if h[2] is None else float(h[2]), bool(h[3]), h[4], err)


def _af(addr: str) -> int:
    try:
        return ipaddress.ip_address(addr).version
    except ValueError:
        return 4


def to_atlas(
    record: TraceRecord,
    *,
    msm_id: int,
    prb_id: int,
    paris_id: int = 1,
    size: int = DEFAULT_PROBE_SIZE,
    proto: str = "UDP",
) -> dict[str, Any]:
    """One record as a RIPE Atlas traceroute result object."""
    result = []
    for hop in record.hops:
        ttl, address, rtt, _reached, reply_ttl = hop[:5]
        err = _hop_err(hop)
        if address is None:
            hop_result: list[dict[str, Any]] = [{"x": "*"}]
        else:
            answer: dict[str, Any] = {"from": address, "size": size}
            if rtt is not None:
                answer["rtt"] = round(rtt, 3)
            if reply_ttl is not None:
                answer["ttl"] = reply_ttl
            if err is not None:
                answer["err"] = err
            hop_result = [answer]
        result.append({"hop": ttl, "result": hop_result})
    return {
        "af": _af(record.dst_addr),
        "dst_addr": record.dst_addr,
        "dst_name": record.dst_addr,
        "src_addr": record.src_addr,
        "from": record.src_addr,
        "msm_id": msm_id,
        "prb_id": prb_id,
        "msm_name": "Traceroute",
        "timestamp": int(record.timestamp),
        "endtime": int(record.endtime),
        "type": "traceroute",
        "proto": proto,
        "paris_id": paris_id,
        "size": size,
        "fw": ATLAS_FIRMWARE,
        "result": result,
        "dts": {
            "campaign": record.campaign,
            "chunk": record.chunk,
            "monitor": record.monitor,
            "start_ttl": record.start_ttl,
            "forward_stop": record.forward_stop,
            "backward_stop": record.backward_stop,
        },
    }


def atlas_json(records: Iterable[TraceRecord], *, msm_id: int, prb_ids: dict[str, int]) -> str:
    """Records as a JSON list of RIPE Atlas traceroute results (``prb_ids`` per monitor)."""
    return json.dumps(
        [to_atlas(r, msm_id=msm_id, prb_id=prb_ids.get(r.monitor, 0)) for r in records],
        indent=None,
    )


def write_csv(records: Iterable[TraceRecord], stream: io.TextIOBase | Any) -> int:
    """Write one CSV row per probed hop (header first); returns the rows written."""
    writer = csv.writer(stream)
    writer.writerow(CSV_FIELDS)
    rows = 0
    for r in records:
        for hop in r.hops:
            ttl, address, rtt, reached, _reply_ttl = hop[:5]
            err = _hop_err(hop)
            writer.writerow(
                [
                    r.campaign,
                    r.chunk,
                    r.monitor,
                    r.src_addr,
                    r.dst_addr,
                    f"{r.timestamp:.3f}",
                    f"{r.endtime:.3f}",
                    r.start_ttl,
                    r.forward_stop,
                    r.backward_stop,
                    ttl,
                    address or "*",
                    "" if rtt is None else f"{rtt:.3f}",
                    int(reached),
                    "" if err is None else err,
                ]
            )
            rows += 1
    return rows
