"""The DHT-get benchmark of the simulator runs and its narrow start saves requests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_overlay_gets_benchmark_json(capsys: pytest.CaptureFixture[str]) -> None:
    """A small run prints both settings; every get finds its value; narrow asks fewer nodes."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import overlay_gets
    finally:
        sys.path.remove(str(BENCHMARKS))
    args = ["--nodes", "40", "--keys", "10", "--gets", "40", "--warmup", "60", "--json"]
    assert overlay_gets.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    narrow, alpha = out["narrow"], out["alpha"]
    for r in (narrow, alpha):
        assert r["gets"] == 40 and r["gets_ok"] == 40 and r["value_lookups"] > 0
    assert alpha["narrow_share"] == 0 and alpha["requests_per_lookup"] >= 3
    assert narrow["narrow_share"] > 0.5
    assert narrow["requests_per_lookup"] < alpha["requests_per_lookup"]
