"""Export round trip: RIPE Atlas traceroute JSON read back, CSV rows, PD records."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from dnaagent.dts.doubletree import DoubletreeTrace, Reply, ReplyKind, StopReason, run_trace
from dnaagent.dts.export import CSV_FIELDS, TraceRecord, atlas_json, to_atlas, write_csv
from dnaagent.dts.simprober import DEFAULT_DATA, RTRACK_ARCHIVE, ReplayProber, SimPath


def _record() -> TraceRecord:
    """A trace with a silent hop, a backwards part and the destination."""
    paths = {"192.0.2.9": SimPath(("10.0.0.1", None, "10.0.0.3"), 4)}
    t = run_trace(DoubletreeTrace("192.0.2.9", 2), ReplayProber(paths))
    return _to_record(t, chunk=3, src_addr="198.51.100.7", timestamp=1_700_000_000.5)


def _to_record(trace: DoubletreeTrace, **fields: Any) -> TraceRecord:
    """``TraceRecord.from_trace`` of campaign c1, monitor m1; ``fields`` for the rest."""
    timestamp = fields.pop("timestamp")
    return TraceRecord.from_trace(
        trace,
        campaign="c1",
        monitor="m1",
        timestamp=timestamp,
        endtime=fields.pop("endtime", timestamp + 0.5),
        **fields,
    )


def read_atlas_traceroute(obj: dict[str, Any]) -> dict[str, Any]:
    """A small reader of the RIPE Atlas traceroute result format (hop -> answers)."""
    assert obj["type"] == "traceroute"
    hops = {}
    for hop in obj["result"]:
        answers = [a for a in hop["result"] if "from" in a]
        hops[int(hop["hop"])] = [(a["from"], a.get("rtt")) for a in answers]
    return {
        "dst": obj["dst_addr"],
        "src": obj["src_addr"],
        "prb": obj["prb_id"],
        "msm": obj["msm_id"],
        "ts": obj["timestamp"],
        "af": obj["af"],
        "hops": hops,
    }


def test_atlas_json_round_trip() -> None:
    """The JSON export reads back to the same hops, addresses and identifiers."""
    rec = _record()
    objs = json.loads(atlas_json([rec], msm_id=5001, prb_ids={"m1": 7}))
    got = read_atlas_traceroute(objs[0])
    assert got["dst"] == "192.0.2.9" and got["src"] == "198.51.100.7"
    assert (got["prb"], got["msm"], got["ts"], got["af"]) == (7, 5001, 1_700_000_000, 4)
    assert sorted(got["hops"]) == [1, 2, 3, 4]
    assert got["hops"][2] == [] and got["hops"][3][0][0] == "10.0.0.3"
    assert got["hops"][4][0][0] == "192.0.2.9"
    dts = objs[0]["dts"]
    assert dts["chunk"] == 3 and dts["forward_stop"] == "destination_reached"
    assert dts["backward_stop"] == "ttl_one_reached"


def test_sagan_reads_the_export() -> None:
    """ripe.atlas.sagan parses the export as a traceroute result."""
    sagan = pytest.importorskip("ripe.atlas.sagan", reason="ripe.atlas.sagan not installed")
    obj = to_atlas(_record(), msm_id=5001, prb_id=7)
    result = sagan.TracerouteResult(obj)
    assert not result.is_malformed
    assert result.destination_address == "192.0.2.9"
    assert result.probe_id == 7 and result.measurement_id == 5001
    assert result.destination_ip_responded
    assert [h.index for h in result.hops] == [1, 2, 3, 4]
    assert result.hops[0].packets[0].origin == "10.0.0.1"


def test_csv_and_pd_record_round_trip() -> None:
    """CSV has one row per probed hop; to_dict/from_dict keep everything."""
    rec = _record()
    buf = io.StringIO()
    assert write_csv([rec], buf) == 4
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert sorted(r["from"] for r in rows) == sorted(["10.0.0.1", "*", "10.0.0.3", "192.0.2.9"])
    assert {r["monitor"] for r in rows} == {"m1"} and rows[0]["chunk"] == "3"
    assert TraceRecord.from_dict(rec.to_dict()) == rec
    with pytest.raises(ValueError):
        TraceRecord.from_dict({"hops": 1})


def test_rtrack_parses() -> None:
    """The RTrack archive yields 5 vantage points with thousands of paths each."""
    if not (Path(DEFAULT_DATA) / RTRACK_ARCHIVE).exists():
        pytest.skip(f"evaluation data absent: {DEFAULT_DATA / RTRACK_ARCHIVE}")
    import tarfile

    from dnaagent.dts.simprober import parse_rtrack

    with tarfile.open(Path(DEFAULT_DATA) / RTRACK_ARCHIVE) as tar:
        member = next(m for m in tar if m.name.endswith("AS109_29-05.traces"))
        paths = parse_rtrack(tar.extractfile(member).read().decode())  # type: ignore[union-attr]
    assert len(paths) > 5000
    reached = [p for p in paths.values() if p.dest_ttl is not None]
    assert reached and all(len(p.hops) < p.dest_ttl for p in reached)


# -- the ICMP unreachable code of a hop (RIPE Atlas "err") ---------------------------------


def _err_record() -> TraceRecord:
    """A trace from h = 2 ending at a router's network unreachable ("N"); backwards
    probing meets a prohibited answer ("A") and a code without a letter (9)."""
    trace = DoubletreeTrace("203.0.113.70", 3)
    answers = {
        3: Reply("198.51.100.2", rtt=1.25, reply_ttl=253),
        4: Reply("198.51.100.9", rtt=2.5, reply_ttl=252, unreachable=True, err="N"),
        2: Reply("198.51.100.5", rtt=0.75, reply_ttl=254, unreachable=True, err="A"),
        1: Reply("198.51.100.1", rtt=0.5, reply_ttl=255, unreachable=True, err=9),
    }
    run_trace(trace, lambda _dst, ttl: answers[ttl])
    assert trace.forward_stop is StopReason.UNREACHABLE
    return _to_record(
        trace, chunk=0, src_addr="192.0.2.10", timestamp=1_700_000_100.0, endtime=1_700_000_102.0
    )


def test_record_carries_err_through_dict_and_replies() -> None:
    """from_trace keeps err; the PD value has 6-element hops only where err is set;
    from_dict and replies() give it back (unreachable where not reached)."""
    rec = _err_record()
    assert [h[5] for h in rec.hops] == [9, "A", None, "N"]
    stored = rec.to_dict()["hops"]
    assert [len(h) for h in stored] == [6, 6, 5, 6]
    assert stored[3] == [4, "198.51.100.9", 2.5, False, 252, "N"]
    back = TraceRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec
    replies = back.replies()
    assert replies[4] == Reply("198.51.100.9", False, 2.5, 252, True, "N")
    assert replies[4].kind is ReplyKind.UNREACHABLE
    assert replies[3].kind is ReplyKind.TIME_EXCEEDED and replies[3].err is None
    assert replies[1].err == 9


def test_old_five_element_hops_still_load() -> None:
    """A record an older agent wrote (5-element hops) loads with err None and exports
    as before; a mix of old and new hops loads too."""
    old = _record().to_dict()
    old["hops"] = [h[:5] for h in old["hops"]]
    assert {len(h) for h in old["hops"]} == {5}
    rec = TraceRecord.from_dict(old)
    assert all(len(h) == 6 and h[5] is None for h in rec.hops)
    assert rec.to_dict() == old  # written back the way older agents read it
    assert all(r.err is None for r in rec.replies().values())
    mixed = dict(old, hops=[*old["hops"][:2], [*old["hops"][2][:5], "H"], *old["hops"][3:]])
    assert [h[5] for h in TraceRecord.from_dict(mixed).hops] == [None, None, "H", None]
    # a later agent's extra hop elements are ignored, as older agents ignore err
    later = dict(old, hops=[[*h[:5], "N", "later", 7] for h in old["hops"]])
    assert [h[5] for h in TraceRecord.from_dict(later).hops] == ["N"] * 4
    # in-memory records built with 5-tuples (older callers) export too
    five = TraceRecord(**{**vars(rec), "hops": [h[:5] for h in rec.hops]})
    assert to_atlas(five, msm_id=1, prb_id=1) == to_atlas(rec, msm_id=1, prb_id=1)
    assert five.replies() == rec.replies() and five.to_dict() == old


@pytest.mark.parametrize(
    "bad",
    [[1, None, None, False, None, "X"], [1, None, None, False, None, 256],
     [1, None, None, False, None, True], [1, None, None, False, None, "NH"],
     [1, None, None, False], "hop"],
)  # fmt: skip
def test_malformed_err_is_refused(bad: Any) -> None:
    """An err that is no Atlas letter nor a byte, or a hop of the wrong size: ValueError."""
    obj = _record().to_dict()
    obj["hops"] = [*obj["hops"], bad]
    with pytest.raises(ValueError, match="malformed trace record"):
        TraceRecord.from_dict(obj)


def test_atlas_json_has_err_in_the_reply() -> None:
    """The Atlas reply object of an unreachable hop has its err; others have none."""
    obj = json.loads(atlas_json([_err_record()], msm_id=9, prb_ids={"m1": 2}))[0]
    replies = {h["hop"]: h["result"][0] for h in obj["result"]}
    assert replies[4] == {"from": "198.51.100.9", "size": 48, "rtt": 2.5, "ttl": 252, "err": "N"}
    assert replies[2]["err"] == "A" and replies[1]["err"] == 9  # a number stays a number
    assert "err" not in replies[3]
    assert "err" not in json.dumps(to_atlas(_record(), msm_id=1, prb_id=1)["result"])


def test_sagan_reads_err() -> None:
    """ripe.atlas.sagan takes the err of the export as the packet's ICMP error."""
    sagan = pytest.importorskip("ripe.atlas.sagan", reason="ripe.atlas.sagan not installed")
    result = sagan.TracerouteResult(to_atlas(_err_record(), msm_id=9, prb_id=2))
    assert not result.is_malformed
    packets = {h.index: h.packets[0] for h in result.hops}
    assert packets[4].is_error and packets[4].error_message == "Network unreachable"
    assert packets[2].error_message == "Administratively prohibited"
    assert not packets[3].is_error
    assert packets[4].origin == "198.51.100.9"


def test_csv_err_column_is_last() -> None:
    """The CSV has err as its last column: the letter or number, empty without."""
    buf = io.StringIO()
    assert write_csv([_err_record(), _record()], buf) == 8
    header, *rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert header[-1] == "err" and header[:-1] == [f for f in CSV_FIELDS if f != "err"]
    by_key = {(r[4], r[10]): r[-1] for r in rows}
    assert by_key[("203.0.113.70", "4")] == "N" and by_key[("203.0.113.70", "1")] == "9"
    assert by_key[("203.0.113.70", "3")] == ""
    assert {v for (dst, _ttl), v in by_key.items() if dst == "192.0.2.9"} == {""}


def test_records_with_and_without_err_through_the_dht_store() -> None:
    """Records of older agents (5-element hops) and new ones (err) share one chunk in the
    DHT plane and all read back."""
    from twisted.internet import defer
    from twisted.internet.task import Clock

    from dnaagent.dts.dhtstore import DhtPlane, MemoryDht
    from dnaagent.dts.stopsets import GlobalStopSet

    def run(coro: Any) -> Any:
        out: list[Any] = []
        defer.ensureDeferred(coro).addBoth(out.append)
        assert out and not hasattr(out[0], "raiseException"), out
        return out[0]

    clock = Clock()
    clock.advance(1000)
    dht = MemoryDht(clock)
    plane = run(DhtPlane.create(dht, "c1", ["192.0.2.9", "203.0.113.70"], clock, chunk_size=2))
    lease = run(plane.claim("m1"))
    old = _record().to_dict()
    old["hops"] = [h[:5] for h in old["hops"]]
    run(plane.commit(lease, GlobalStopSet(0), [old, _err_record().to_dict()]))
    records, counts = run(plane.records())
    assert counts["malformed"] == 0
    by_dst = {r.dst_addr: r for r in records}
    assert by_dst["203.0.113.70"] == _err_record()
    assert [h[5] for h in by_dst["192.0.2.9"].hops] == [None] * 4
