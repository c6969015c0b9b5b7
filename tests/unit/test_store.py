"""The results store: durability, latest results, history, retention."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from dnaagent.errors import StoreError
from dnaagent.mediator.interface import Status, TestResult
from dnaagent.mediator.store import ResultsStore


def result(
    test: str = "NICStatus", status: Status = Status.OK, started: float = 1000.0, **details
) -> TestResult:
    """A result of the local module with the given fields."""
    return TestResult("local", test, status, f"{test} {status.value}", details, started, 0.01)


def test_add_and_read_back(tmp_path) -> None:
    """A stored result reads back equal, details included."""
    store = ResultsStore(tmp_path / "r.sqlite")
    r = result(rtt_ms=0.5, addresses=["192.0.2.1"])
    store.add(r)
    assert store.history() == [r]
    assert store.latest() == [r]


def test_wal_mode_is_on(tmp_path) -> None:
    """The database is in WAL mode (readers do not block the writer)."""
    ResultsStore(tmp_path / "r.sqlite")
    db = sqlite3.connect(tmp_path / "r.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_latest_keeps_one_row_per_test_and_counts(tmp_path) -> None:
    """latest() has the newest result per test; counters count results and errors."""
    store = ResultsStore(tmp_path / "r.sqlite")
    store.add(result("A", Status.OK, 1))
    store.add(result("A", Status.ERROR, 2))
    store.add(result("B", Status.OK, 3))
    latest = {r.test: r for r in store.latest()}
    assert latest["A"].status is Status.ERROR and latest["A"].started == 2
    assert store.counters()[("local", "A")] == (2, 1)


def test_history_filters_and_limit(tmp_path) -> None:
    """history() filters by time, module and test, and returns the newest N oldest first."""
    store = ResultsStore(tmp_path / "r.sqlite")
    for i in range(10):
        store.add(result("A" if i % 2 else "B", started=100 + i))
    assert [r.started for r in store.history(since=105)] == [105, 106, 107, 108, 109]
    assert {r.test for r in store.history(test="A")} == {"A"}
    assert [r.started for r in store.history(limit=3)] == [107, 108, 109]
    assert store.history(module="other") == []


def test_prune_by_age_and_rows_keeps_latest(tmp_path) -> None:
    """Pruning drops old history but the latest result of each test stays."""
    store = ResultsStore(tmp_path / "r.sqlite", retention_days=1, max_rows=100)
    store.add(result("Old", started=0))
    for i in range(150):
        store.add(result("New", started=200_000 + i))
    store.prune(200_200)
    assert store.count() == 100
    assert "Old" in {r.test for r in store.latest()}
    assert all(r.test == "New" for r in store.history(limit=1000))


def test_survives_reopen(tmp_path) -> None:
    """Results are there after closing and opening the store again."""
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path)
    store.add(result())
    store.close()
    assert ResultsStore(path).count() == 1


def test_acknowledged_results_survive_sigkill(tmp_path) -> None:
    """A process killed with SIGKILL right after add() returned loses nothing."""
    path = tmp_path / "r.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from dnaagent.mediator.interface import Status, TestResult
        from dnaagent.mediator.store import ResultsStore
        store = ResultsStore({str(path)!r})
        for i in range(50):
            store.add(TestResult("local", "T%d" % i, Status.OK, "m", {{}}, float(i), 0.0))
        sys.stdout.write("acked\\n"); sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout == "acked\n"
    assert os.path.exists(str(path) + "-wal")  # killed before any checkpoint
    assert ResultsStore(path).count() == 50


def test_unreadable_details_do_not_break_reading(tmp_path) -> None:
    """A corrupt details column is shown as such rather than failing the read."""
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path)
    store.add(result())
    db = sqlite3.connect(path)
    db.execute("UPDATE results SET details='{not json'")
    db.commit()
    assert store.history()[0].details == {"unreadable": "{not json"}


def test_newer_schema_is_refused(tmp_path) -> None:
    """A store written by a newer version is not touched."""
    path = tmp_path / "r.sqlite"
    ResultsStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        ResultsStore(path)


def test_unopenable_path_is_a_store_error(tmp_path) -> None:
    """A path that cannot be a database gives a StoreError naming it."""
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(StoreError, match="dir.sqlite"):
        ResultsStore(tmp_path / "dir.sqlite")
