"""The results store: every test result, in SQLite (WAL) in the state dir.

A result is committed (``synchronous=FULL``) before :meth:`ResultsStore.add`
returns, so an acknowledged result survives a restart, a ``kill -9`` and a
power cut. The history is pruned by age and by row count; the latest result
of every test is kept in its own table so that it survives pruning and is
read in constant time.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnaagent.errors import StoreError
from dnaagent.mediator.interface import Status, TestResult

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    module TEXT NOT NULL,
    test TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    started REAL NOT NULL,
    duration REAL NOT NULL,
    origin TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_started ON results(started);
CREATE INDEX IF NOT EXISTS results_test ON results(module, test, started);
CREATE TABLE IF NOT EXISTS latest (
    module TEXT NOT NULL,
    test TEXT NOT NULL,
    result_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    started REAL NOT NULL,
    duration REAL NOT NULL,
    origin TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (module, test)
);
"""

_COLUMNS = "module, test, status, message, details, started, duration, origin"


def _row_to_result(row: sqlite3.Row | tuple[Any, ...]) -> TestResult:
    module, test, status, message, details, started, duration, origin = row[:8]
    try:
        parsed = json.loads(details)
    except ValueError:
        parsed = {"unreadable": details}
    return TestResult(
        module=module,
        test=test,
        status=Status(status),
        message=message,
        details=parsed if isinstance(parsed, dict) else {"value": parsed},
        started=started,
        duration=duration,
        origin=origin,
    )


class ResultsStore:
    """Test results in an SQLite database file.

    All calls are synchronous and short (one small transaction); the agent
    calls them from the reactor thread.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, retention_days: float = 30.0, max_rows: int = 200_000
    ) -> None:
        self.path = os.fspath(path)
        self.retention = retention_days * 86400.0
        self.max_rows = max_rows
        self._since_prune = 0
        try:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer dnaagent (schema {row[0]}); "
                    "refusing to touch it"
                )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open results store {self.path}: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreError(f"results store {self.path}: {e}") from e

    def add(self, result: TestResult) -> int:
        """Store ``result`` durably and return its id."""
        details = json.dumps(result.to_json()["details"], sort_keys=True)
        values = (
            result.module,
            result.test,
            result.status.value,
            result.message,
            details,
            result.started,
            result.duration,
            result.origin,
        )
        failed = 1 if result.status is Status.ERROR else 0
        with self._transaction() as db:
            cur = db.execute(
                f"INSERT INTO results({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values
            )
            rowid = int(cur.lastrowid or 0)
            db.execute(
                f"""INSERT INTO latest({_COLUMNS}, result_id, count, failures)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
                    ON CONFLICT(module, test) DO UPDATE SET
                      status=excluded.status, message=excluded.message,
                      details=excluded.details, started=excluded.started,
                      duration=excluded.duration, origin=excluded.origin,
                      result_id=excluded.result_id, count=latest.count + 1,
                      failures=latest.failures + excluded.failures""",
                (*values, rowid, failed),
            )
        self._since_prune += 1
        if self._since_prune >= 100:
            self.prune(result.started)
        return rowid

    def latest(self, module: str | None = None) -> list[TestResult]:
        """The most recent result of every test (of one module if given)."""
        query = f"SELECT {_COLUMNS} FROM latest"
        args: tuple[Any, ...] = ()
        if module is not None:
            query += " WHERE module = ?"
            args = (module,)
        query += " ORDER BY module, started, test"
        return [_row_to_result(r) for r in self._read(query, args)]

    def counters(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Per test: (results recorded, errors recorded) since the store was made."""
        rows = self._read("SELECT module, test, count, failures FROM latest", ())
        return {(m, t): (c, f) for m, t, c, f in rows}

    def history(
        self,
        *,
        since: float | None = None,
        module: str | None = None,
        test: str | None = None,
        limit: int = 1000,
    ) -> list[TestResult]:
        """Results newer than ``since``, oldest first, at most ``limit``."""
        clauses: list[str] = []
        args: list[Any] = []
        if since is not None:
            clauses.append("started >= ?")
            args.append(since)
        if module is not None:
            clauses.append("module = ?")
            args.append(module)
        if test is not None:
            clauses.append("test = ?")
            args.append(test)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        # The newest ``limit`` rows, returned oldest first.
        query = (
            f"SELECT * FROM (SELECT {_COLUMNS}, id FROM results{where} "
            "ORDER BY id DESC LIMIT ?) ORDER BY id"
        )
        args.append(max(0, int(limit)))
        return [_row_to_result(r) for r in self._read(query, tuple(args))]

    def count(self) -> int:
        """How many results the history holds."""
        return int(self._read("SELECT COUNT(*) FROM results", ())[0][0])

    def prune(self, now: float) -> int:
        """Drop history older than the retention or beyond ``max_rows``."""
        self._since_prune = 0
        with self._transaction() as db:
            removed = db.execute(
                "DELETE FROM results WHERE started < ?", (now - self.retention,)
            ).rowcount
            removed += db.execute(
                "DELETE FROM results WHERE id <= "
                "(SELECT id FROM results ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.max_rows,),
            ).rowcount
        return int(removed)

    def _read(self, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(query, args).fetchall())
        except sqlite3.Error as e:
            raise StoreError(f"results store {self.path}: {e}") from e

    def close(self) -> None:
        """Checkpoint the WAL and close the database."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._db.close()
