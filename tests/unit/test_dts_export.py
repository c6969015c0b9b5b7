"""Export round trip: RIPE Atlas traceroute JSON read back, CSV rows, PD records."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from dnaagent.dts.doubletree import DoubletreeTrace, run_trace
from dnaagent.dts.export import TraceRecord, atlas_json, to_atlas, write_csv
from dnaagent.dts.simprober import DEFAULT_DATA, RTRACK_ARCHIVE, ReplayProber, SimPath


def _record() -> TraceRecord:
    """A trace with a silent hop, a backwards part and the destination."""
    paths = {"192.0.2.9": SimPath(("10.0.0.1", None, "10.0.0.3"), 4)}
    t = run_trace(DoubletreeTrace("192.0.2.9", 2), ReplayProber(paths))
    return TraceRecord.from_trace(
        t,
        campaign="c1",
        chunk=3,
        monitor="m1",
        src_addr="198.51.100.7",
        timestamp=1_700_000_000.5,
        endtime=1_700_000_001.0,
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
