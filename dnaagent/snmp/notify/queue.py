"""The notification queue: every notification is in SQLite before it is sent.

A notification (its kind and variable bindings) is one row; each of its
targets has a *delivery* row with a state:

``pending``
    not yet sent (trap) or not yet acknowledged (inform);
``sent``
    a trap that went out (traps are sent once: there is no acknowledgement);
``acked``
    an inform the target acknowledged;
``dropped``
    given up: pushed out by the bounds below, a trap whose sending failed, or
    a target removed from the configuration.

Informs are delivered **in order per target**: only the oldest pending inform
of a target (its *head*) is ever due, so the next one waits until the head is
acknowledged or dropped. Pending traps are all due at once.

Bounds and drop policy: a target holds at most ``max_pending_per_target``
pending deliveries and the queue at most ``max_pending_total``; a new
notification that would exceed a bound first drops the **oldest** pending
delivery (of that target, resp. of the whole queue): the newest notification
describes the present state best. Every drop is counted per target in the
persisted ``dropped`` counter and logged.

Durability: the database is in WAL mode with ``synchronous=FULL`` and every
change is one committed transaction, so a notification that
:meth:`NotificationQueue.enqueue` returned survives a crash, ``kill -9`` and a
power cut. Finished rows are kept for the last :data:`KEEP_DONE`
notifications and then pruned; counters are kept forever.

All calls are synchronous and short; the agent calls them from the reactor
thread.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from dnaagent.errors import StoreError
from dnaagent.snmp.notify import varbinds as vb
from dnaagent.snmp.notify.targets import INFORM, TRAP

SCHEMA_VERSION = 1

PENDING = "pending"
SENT = "sent"
ACKED = "acked"
DROPPED = "dropped"
STATES = (PENDING, SENT, ACKED, DROPPED)

# Notifications whose deliveries are all finished are pruned beyond this many.
KEEP_DONE = 1000

COUNTERS = ("queued", "sent", "acked", "retried", "dropped")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    kind TEXT NOT NULL,
    varbinds TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('trap', 'inform')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'acked', 'dropped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (target, notification_id)
);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries(state, target, notification_id);
CREATE INDEX IF NOT EXISTS deliveries_notification ON deliveries(notification_id);
CREATE TABLE IF NOT EXISTS counters (
    target TEXT PRIMARY KEY,
    queued INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    acked INTEGER NOT NULL DEFAULT 0,
    retried INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Delivery:
    """One notification on its way to one target."""

    notification_id: int
    target: str
    mode: str
    state: str
    attempts: int
    next_attempt: float
    created: float
    kind: str
    varbinds: list[vb.VarBind]


@dataclass(frozen=True)
class Dropped:
    """A delivery the bounds pushed out (returned so that callers can log it)."""

    notification_id: int
    target: str
    reason: str


class NotificationQueue:
    """Notifications and their deliveries in an SQLite database file.

    ``max_pending_per_target`` and ``max_pending_total`` bound the pending
    deliveries; see the module docstring for the drop policy. Finished
    notifications are kept for the newest ``keep_done``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_pending_per_target: int = 10_000,
        max_pending_total: int = 100_000,
        keep_done: int = KEEP_DONE,
    ) -> None:
        if max_pending_per_target < 1 or max_pending_total < 1:
            raise ValueError("queue bounds must be at least 1")
        self.path = os.fspath(path)
        self.max_pending_per_target = max_pending_per_target
        self.max_pending_total = max_pending_total
        self.keep_done = keep_done
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open notification queue {self.path}: {e}") from e
        self._pending: dict[str, int] = {}
        for target, count in self._db.execute(
            "SELECT target, COUNT(*) FROM deliveries WHERE state = ? GROUP BY target", (PENDING,)
        ):
            self._pending[target] = count

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif row[0] != str(SCHEMA_VERSION):
            raise StoreError(
                f"notification queue {self.path} has schema version {row[0]}, "
                f"this agent knows {SCHEMA_VERSION}"
            )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"notification queue {self.path}: {e}") from e
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._db.execute("ROLLBACK")
            raise StoreError(f"notification queue {self.path}: {e}") from e

    def close(self) -> None:
        """Close the database; pending deliveries stay in it."""
        self._db.close()

    # -- writing -----------------------------------------------------------

    def enqueue(
        self,
        kind: str,
        varbinds: Sequence[vb.VarBind],
        targets: Iterable[tuple[str, str]],
        now: float,
    ) -> tuple[int, list[Dropped]]:
        """Store a notification for ``targets`` (pairs of target key and mode).

        Returns the notification's id (its sequence number) and the
        deliveries the bounds dropped to make room. The notification is
        committed to disk when this returns.
        """
        targets = list(targets)
        for _, mode in targets:
            if mode not in (TRAP, INFORM):
                raise ValueError(f"unknown delivery mode {mode!r}")
        dropped: list[Dropped] = []
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO notifications (created, kind, varbinds) VALUES (?, ?, ?)",
                (now, kind, vb.dumps(varbinds)),
            )
            nid = cur.lastrowid
            assert nid is not None
            for target, mode in targets:
                while self._pending.get(target, 0) >= self.max_pending_per_target:
                    dropped.append(self._drop_oldest(db, now, target, "target queue full"))
                db.execute(
                    "INSERT INTO deliveries (notification_id, target, mode, state, attempts,"
                    " next_attempt, updated) VALUES (?, ?, ?, ?, 0, ?, ?)",
                    (nid, target, mode, PENDING, now, now),
                )
                self._pending[target] = self._pending.get(target, 0) + 1
                self._count(db, target, "queued")
            while sum(self._pending.values()) > self.max_pending_total:
                dropped.append(self._drop_oldest(db, now, None, "queue full"))
            self._prune(db, nid)
        return nid, dropped

    def _drop_oldest(
        self, db: sqlite3.Connection, now: float, target: str | None, reason: str
    ) -> Dropped:
        if target is None:
            row = db.execute(
                "SELECT notification_id, target FROM deliveries WHERE state = ?"
                " ORDER BY notification_id LIMIT 1",
                (PENDING,),
            ).fetchone()
        else:
            row = db.execute(
                "SELECT notification_id, target FROM deliveries WHERE state = ? AND target = ?"
                " ORDER BY notification_id LIMIT 1",
                (PENDING, target),
            ).fetchone()
        if row is None:  # the in-memory count was wrong: believe the database
            raise StoreError(f"notification queue {self.path}: pending count out of step")
        self._finish(db, row[0], row[1], DROPPED, now)
        self._count(db, row[1], "dropped")
        return Dropped(row[0], row[1], reason)

    def _finish(
        self, db: sqlite3.Connection, nid: int, target: str, state: str, now: float
    ) -> bool:
        cur = db.execute(
            "UPDATE deliveries SET state = ?, updated = ? WHERE notification_id = ?"
            " AND target = ? AND state = ?",
            (state, now, nid, target, PENDING),
        )
        if cur.rowcount:
            left = self._pending.get(target, 0) - 1
            if left > 0:
                self._pending[target] = left
            else:
                self._pending.pop(target, None)
            return True
        return False

    @staticmethod
    def _count(db: sqlite3.Connection, target: str, counter: str, n: int = 1) -> None:
        assert counter in COUNTERS
        db.execute(
            f"INSERT INTO counters (target, {counter}) VALUES (?, ?)"
            f" ON CONFLICT(target) DO UPDATE SET {counter} = {counter} + excluded.{counter}",
            (target, n),
        )

    def _prune(self, db: sqlite3.Connection, newest: int) -> None:
        db.execute(
            "DELETE FROM notifications WHERE id <= ? AND NOT EXISTS (SELECT 1 FROM deliveries"
            " WHERE notification_id = notifications.id AND state = ?)",
            (newest - self.keep_done, PENDING),
        )

    def record_attempt(self, nid: int, target: str, now: float, next_attempt: float) -> int:
        """Record that an inform is being sent; returns the attempt number.

        Committed *before* the inform leaves, so that after a crash the
        inform is sent again no earlier than ``next_attempt``... and no later
        than the next start (see :meth:`reschedule_all`). Returns 0 when the
        delivery is no longer pending.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT attempts FROM deliveries WHERE notification_id = ? AND target = ?"
                " AND state = ?",
                (nid, target, PENDING),
            ).fetchone()
            if row is None:
                return 0
            attempts = row[0] + 1
            db.execute(
                "UPDATE deliveries SET attempts = ?, next_attempt = ?, updated = ?"
                " WHERE notification_id = ? AND target = ?",
                (attempts, next_attempt, now, nid, target),
            )
            self._count(db, target, "sent")
            if attempts > 1:
                self._count(db, target, "retried")
        return attempts

    def reschedule(self, nid: int, target: str, next_attempt: float) -> None:
        """Set when a pending delivery is next due (after a failed attempt)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET next_attempt = ? WHERE notification_id = ? AND target = ?"
                " AND state = ?",
                (next_attempt, nid, target, PENDING),
            )

    def reschedule_all(self, now: float) -> int:
        """Make every pending delivery due at ``now`` (at start); returns how many."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE deliveries SET next_attempt = ? WHERE state = ?", (now, PENDING)
            )
        return cur.rowcount

    def mark_acked(self, nid: int, target: str, now: float) -> bool:
        """An inform was acknowledged; False when it was no longer pending."""
        with self._transaction() as db:
            done = self._finish(db, nid, target, ACKED, now)
            if done:
                self._count(db, target, "acked")
        return done

    def mark_sent(self, nid: int, target: str, now: float) -> bool:
        """A trap went out; False when it was no longer pending."""
        with self._transaction() as db:
            done = self._finish(db, nid, target, SENT, now)
            if done:
                self._count(db, target, "sent")
        return done

    def mark_dropped(self, nid: int, target: str, now: float) -> bool:
        """Give up a delivery (counted as dropped); False when it was not pending."""
        with self._transaction() as db:
            done = self._finish(db, nid, target, DROPPED, now)
            if done:
                self._count(db, target, "dropped")
        return done

    def drop_targets_except(self, keep: Iterable[str], now: float) -> dict[str, int]:
        """Drop the pending deliveries of targets not in ``keep``.

        Used at start when targets were removed from the configuration;
        returns the number dropped per target.
        """
        keep = set(keep)
        gone: dict[str, int] = {}
        with self._transaction() as db:
            for target in [t for t in self._pending if t not in keep]:
                n = self._pending.pop(target)
                db.execute(
                    "UPDATE deliveries SET state = ?, updated = ? WHERE target = ? AND state = ?",
                    (DROPPED, now, target, PENDING),
                )
                self._count(db, target, "dropped", n)
                gone[target] = n
        return gone

    # -- reading -----------------------------------------------------------

    def _deliveries(self, where: str, args: tuple[object, ...], limit: int = -1) -> list[Delivery]:
        rows = self._db.execute(
            "SELECT d.notification_id, d.target, d.mode, d.state, d.attempts, d.next_attempt,"
            " n.created, n.kind, n.varbinds FROM deliveries d"
            " JOIN notifications n ON n.id = d.notification_id"
            f" WHERE {where} ORDER BY d.notification_id, d.target LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [
            Delivery(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], vb.loads(r[8])) for r in rows
        ]

    def heads(self, trap_batch: int = 100) -> list[Delivery]:
        """What may be sent, whatever the time: the oldest pending inform of
        each inform target and up to ``trap_batch`` pending traps of each
        trap sink, oldest first."""
        heads: list[Delivery] = []
        for target in sorted(self._pending):
            where = "d.target = ? AND d.state = 'pending'"
            first = self._deliveries(where, (target,), 1)
            if first and first[0].mode == TRAP and trap_batch > 1:
                first = self._deliveries(where, (target,), trap_batch)
            heads.extend(first)
        heads.sort(key=lambda d: (d.notification_id, d.target))
        return heads

    def due(self, now: float) -> list[Delivery]:
        """The heads whose ``next_attempt`` has come."""
        return [d for d in self.heads() if d.next_attempt <= now]

    def next_due(self) -> float | None:
        """The earliest ``next_attempt`` of a head, or None when nothing is pending."""
        heads = self.heads()
        return min((d.next_attempt for d in heads), default=None)

    def deliveries(self, target: str | None = None, state: str | None = None) -> list[Delivery]:
        """Kept deliveries, oldest first, optionally of one target and state."""
        clauses, args = ["1"], []
        if target is not None:
            clauses.append("d.target = ?")
            args.append(target)
        if state is not None:
            clauses.append("d.state = ?")
            args.append(state)
        return self._deliveries(" AND ".join(clauses), tuple(args))

    def pending(self, target: str | None = None) -> int:
        """Pending deliveries of one target, or of all."""
        if target is not None:
            return self._pending.get(target, 0)
        return sum(self._pending.values())

    def counters(self) -> dict[str, dict[str, int]]:
        """Per target: queued, sent, acked, retried, dropped (persisted) and pending."""
        out: dict[str, dict[str, int]] = {}
        for row in self._db.execute(f"SELECT target, {', '.join(COUNTERS)} FROM counters"):
            out[row[0]] = dict(zip(COUNTERS, row[1:], strict=True))
            out[row[0]]["pending"] = self._pending.get(row[0], 0)
        return out
