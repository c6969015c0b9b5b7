"""The figure scripts keep their results when matplotlib is missing: CSV, no PNG, a hint."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make ``import matplotlib`` fail, as on a machine without the bench extra."""
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # type: ignore[arg-type]
    yield


def test_have_matplotlib_says_what_to_install(
    no_matplotlib: None, capsys: pytest.CaptureFixture[str]
) -> None:
    common = _load("_common")
    assert common.have_matplotlib("some_script") is False
    err = capsys.readouterr().err
    assert "some_script" in err and "pip install 'dnaagent[bench]'" in err


def test_overlay_figures_without_matplotlib_writes_csv(
    no_matplotlib: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A (tiny) sweep runs to the end and writes the four CSV files; no PNG, exit 0."""
    figs = _load("overlay_figures")
    monkeypatch.setattr(
        figs,
        "points",
        lambda args: [figs.Point("size", 12, None, 1), figs.Point("churn", 12, 30.0, 1)],
    )
    monkeypatch.setattr(
        figs,
        "phases",
        lambda quick, nodes: dict(
            warmup=30.0, maintenance_window=60.0, duration=20.0, lookup_rate=2.0
        ),
    )
    assert figs.main(["--quick", "--quiet", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "no PNG is written" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"overlay_fig{n}.csv" for n in (2, 3, 4, 5)
    ]
    for n in (2, 3, 4, 5):
        assert f"overlay_fig{n}.csv" in captured.out
    with (tmp_path / "overlay_fig2.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["nodes"] == "12" and row["online_min"] == "none"
    assert float(row["success_rate"]) > 0
    with (tmp_path / "overlay_fig3.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["online_min"] == "30"


def test_xbac_accuracy_figures_without_matplotlib_write_csv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    xa = _load("xbac_accuracy")
    monkeypatch.setattr(xa, "FIGURES", tmp_path)
    result = {
        "warm": {"_errors": {"xbac": [0.0, 0.1, 0.3], "none": []}},
        "cold": {"_errors": {"vivaldi": [0.2, 0.4]}},
    }
    xa.write_figures(result, plots=False)
    assert [p.name for p in tmp_path.iterdir()] == ["xbac_accuracy.csv"]
    lines = (tmp_path / "xbac_accuracy.csv").read_text().splitlines()
    assert lines[0] == "setting,method,quantile,relative_error"
    assert len(lines) == 1 + 2 * 101  # two non-empty curves, 101 quantiles each
    assert "warm,xbac,1.00,0.3000" in lines and "cold,vivaldi,0.00,0.2000" in lines
