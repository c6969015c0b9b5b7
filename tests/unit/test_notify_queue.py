"""The notification queue: order per target, bounds, drop policy, durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnaagent.errors import StoreError
from dnaagent.snmp.notify import varbinds as vb
from dnaagent.snmp.notify.queue import ACKED, DROPPED, KEEP_DONE, PENDING, SENT, NotificationQueue
from dnaagent.snmp.tree import Kind, Value

A = "inform v2c community@192.0.2.1:162"
B = "inform v2c community@192.0.2.2:162"
T = "trap v2c community@192.0.2.3:162"


def vbs(n: int) -> list[vb.VarBind]:
    """Small variable bindings that tell notifications apart."""
    return [
        (vb.SYS_UPTIME, Value.timeticks(n)),
        (vb.SNMP_TRAP_OID, Value.oid(vb.NOTIFICATION_OIDS["test-failed"])),
        (vb.NOTIFY_MESSAGE, Value.octets(f"n{n}")),
    ]


def open_queue(path: Path, **bounds: int) -> NotificationQueue:
    """A queue in ``path`` with optional bounds."""
    return NotificationQueue(path / "n.sqlite", **bounds)


def test_wal_and_full_sync(tmp_path: Path) -> None:
    """The database is in WAL mode; the queue's connection syncs fully."""
    q = open_queue(tmp_path)
    assert q._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert sqlite3.connect(tmp_path / "n.sqlite").execute("PRAGMA journal_mode").fetchone() == (
        "wal",
    )


def test_enqueue_stores_before_anything_is_sent(tmp_path: Path) -> None:
    """A notification is pending for each target with its variable bindings."""
    q = open_queue(tmp_path)
    nid, dropped = q.enqueue("test-failed", vbs(1), [(A, "inform"), (T, "trap")], now=100.0)
    assert dropped == []
    rows = q.deliveries()
    assert [(d.notification_id, d.target, d.mode, d.state) for d in rows] == [
        (nid, A, "inform", PENDING),
        (nid, T, "trap", PENDING),
    ]
    assert rows[0].varbinds == vbs(1)
    assert rows[0].created == 100.0 and rows[0].next_attempt == 100.0
    assert q.pending() == 2 and q.pending(A) == 1


def test_informs_are_head_of_line_per_target(tmp_path: Path) -> None:
    """Only a target's oldest pending inform is a head; traps are all heads."""
    q = open_queue(tmp_path)
    ids = [
        q.enqueue("k", vbs(i), [(A, "inform"), (B, "inform"), (T, "trap")], 0)[0] for i in range(3)
    ]
    heads = q.heads()
    assert [(d.notification_id, d.target) for d in heads] == [
        (ids[0], A),
        (ids[0], B),
        (ids[0], T),
        (ids[1], T),
        (ids[2], T),
    ]
    # The head of A is acknowledged: A's next inform becomes its head, B waits.
    assert q.mark_acked(ids[0], A, 1.0)
    assert [(d.notification_id, d.target) for d in q.heads() if d.mode == "inform"] == [
        (ids[0], B),
        (ids[1], A),
    ]


def test_due_respects_next_attempt(tmp_path: Path) -> None:
    """A rescheduled head is not due before its time, and the next inform waits behind it."""
    q = open_queue(tmp_path)
    first = q.enqueue("k", vbs(1), [(A, "inform")], 0)[0]
    q.enqueue("k", vbs(2), [(A, "inform")], 0)
    assert q.record_attempt(first, A, 0.0, 10.0) == 1
    assert q.due(9.9) == []
    assert q.next_due() == 10.0
    assert [d.notification_id for d in q.due(10.0)] == [first]
    assert q.record_attempt(first, A, 10.0, 30.0) == 2
    q.reschedule(first, A, 20.0)
    assert q.next_due() == 20.0


def test_attempts_and_counters(tmp_path: Path) -> None:
    """Counters count queued, transmissions, retries, acks and drops per target."""
    q = open_queue(tmp_path)
    n1 = q.enqueue("k", vbs(1), [(A, "inform"), (T, "trap")], 0)[0]
    n2 = q.enqueue("k", vbs(2), [(A, "inform"), (T, "trap")], 0)[0]
    q.record_attempt(n1, A, 0, 5)
    q.record_attempt(n1, A, 5, 15)
    q.record_attempt(n1, A, 15, 35)
    assert q.mark_acked(n1, A, 16)
    assert not q.mark_acked(n1, A, 17)  # already acknowledged: nothing counted twice
    assert q.mark_sent(n1, T, 0)
    assert q.mark_dropped(n2, T, 0)
    c = q.counters()
    assert c[A] == {"queued": 2, "sent": 3, "acked": 1, "retried": 2, "dropped": 0, "pending": 1}
    assert c[T] == {"queued": 2, "sent": 1, "acked": 0, "retried": 0, "dropped": 1, "pending": 0}
    assert q.record_attempt(n1, A, 20, 30) == 0  # no longer pending
    states = {(d.notification_id, d.target): d.state for d in q.deliveries()}
    assert states == {(n1, A): ACKED, (n2, A): PENDING, (n1, T): SENT, (n2, T): DROPPED}


def test_per_target_bound_drops_oldest(tmp_path: Path) -> None:
    """A full target drops its oldest pending notification, counts and reports it."""
    q = open_queue(tmp_path, max_pending_per_target=3)
    ids = [q.enqueue("k", vbs(i), [(A, "inform"), (B, "inform")], 0)[0] for i in range(3)]
    n4, dropped = q.enqueue("k", vbs(4), [(A, "inform")], 0)
    assert [(d.notification_id, d.target, d.reason) for d in dropped] == [
        (ids[0], A, "target queue full")
    ]
    assert [d.notification_id for d in q.deliveries(A, PENDING)] == [ids[1], ids[2], n4]
    assert [d.notification_id for d in q.deliveries(B, PENDING)] == ids  # B untouched
    assert q.counters()[A]["dropped"] == 1 and q.counters()[B]["dropped"] == 0
    assert q.pending(A) == 3


def test_total_bound_drops_oldest_overall(tmp_path: Path) -> None:
    """Beyond the total bound the oldest pending delivery of any target goes."""
    q = open_queue(tmp_path, max_pending_per_target=100, max_pending_total=3)
    n1 = q.enqueue("k", vbs(1), [(A, "inform")], 0)[0]
    n2 = q.enqueue("k", vbs(2), [(B, "inform")], 0)[0]
    n3, dropped = q.enqueue("k", vbs(3), [(A, "inform"), (B, "inform")], 0)
    assert [(d.notification_id, d.target, d.reason) for d in dropped] == [(n1, A, "queue full")]
    assert q.pending() == 3
    assert [(d.notification_id, d.target) for d in q.deliveries(state=PENDING)] == [
        (n2, B),
        (n3, A),
        (n3, B),
    ]


def test_dropped_head_cannot_be_acknowledged(tmp_path: Path) -> None:
    """An in-flight inform pushed out by the bound stays dropped when its ack comes."""
    q = open_queue(tmp_path, max_pending_per_target=1)
    n1 = q.enqueue("k", vbs(1), [(A, "inform")], 0)[0]
    q.record_attempt(n1, A, 0, 10)
    q.enqueue("k", vbs(2), [(A, "inform")], 1)
    assert not q.mark_acked(n1, A, 2)
    assert q.counters()[A]["acked"] == 0 and q.counters()[A]["dropped"] == 1


def test_everything_survives_reopen(tmp_path: Path) -> None:
    """Pending deliveries, attempts, schedule and counters are the same after reopening."""
    q = open_queue(tmp_path)
    n1 = q.enqueue("k", vbs(1), [(A, "inform"), (T, "trap")], 0)[0]
    n2 = q.enqueue("k", vbs(2), [(A, "inform")], 0)[0]
    q.record_attempt(n1, A, 0, 42.0)
    q.mark_sent(n1, T, 0)
    before = (q.deliveries(), q.counters(), q.heads())
    q.close()
    q2 = open_queue(tmp_path)
    assert (q2.deliveries(), q2.counters(), q2.heads()) == before
    assert q2.pending(A) == 2
    assert [d.notification_id for d in q2.deliveries(A, PENDING)] == [n1, n2]
    assert q2.reschedule_all(50.0) == 2
    assert q2.next_due() == 50.0


def test_drop_removed_targets(tmp_path: Path) -> None:
    """Pending deliveries of targets no longer configured are dropped and counted."""
    q = open_queue(tmp_path)
    q.enqueue("k", vbs(1), [(A, "inform"), (B, "inform")], 0)
    q.enqueue("k", vbs(2), [(A, "inform"), (B, "inform")], 0)
    assert q.drop_targets_except([A], 1.0) == {B: 2}
    assert q.pending(B) == 0 and q.pending(A) == 2
    assert q.counters()[B]["dropped"] == 2


def test_finished_notifications_are_pruned(tmp_path: Path) -> None:
    """Only the last keep_done finished notifications are kept; pending ones always."""
    assert KEEP_DONE >= 100
    q = NotificationQueue(tmp_path / "n.sqlite", keep_done=10)
    old = q.enqueue("k", vbs(0), [(A, "inform")], 0)[0]  # stays pending
    for i in range(30):
        nid = q.enqueue("k", vbs(i), [(T, "trap")], 0)[0]
        q.mark_sent(nid, T, 0)
    last = q.enqueue("k", vbs(1), [(T, "trap")], 0)[0]
    assert [d.notification_id for d in q.deliveries(T)] == list(range(last - 9, last + 1))
    assert q.deliveries(A)[0].notification_id == old
    assert q.counters()[T]["sent"] == 30


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A queue written by a newer agent is not silently reused."""
    open_queue(tmp_path).close()
    db = sqlite3.connect(tmp_path / "n.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        open_queue(tmp_path)


def test_enqueued_notification_survives_sigkill(tmp_path: Path) -> None:
    """A process killed with SIGKILL right after enqueue() returned loses nothing."""
    path = tmp_path / "n.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal
        from dnaagent.snmp.notify.queue import NotificationQueue
        from dnaagent.snmp.notify import varbinds as vb
        from dnaagent.snmp.tree import Value
        q = NotificationQueue({str(path)!r})
        for i in range(5):
            q.enqueue("test-failed", [(vb.NOTIFY_MESSAGE, Value.octets(f"m{{i}}"))],
                      [({A!r}, "inform")], float(i))
        q.record_attempt(1, {A!r}, 0.0, 99.0)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert os.path.exists(str(path) + "-wal")  # killed before any checkpoint
    q = NotificationQueue(path)
    pending = q.deliveries(A, PENDING)
    assert [d.varbinds[0][1].value for d in pending] == [f"m{i}".encode() for i in range(5)]
    assert pending[0].attempts == 1 and pending[0].next_attempt == 99.0
    assert q.counters()[A]["queued"] == 5


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just(Kind.OCTETS), st.binary(max_size=40)),
            st.tuples(st.just(Kind.INTEGER), st.integers(-(2**31), 2**31 - 1)),
            st.tuples(st.just(Kind.GAUGE32), st.integers(0, 2**32 - 1)),
            st.tuples(st.just(Kind.COUNTER64), st.integers(0, 2**64 - 1)),
            st.tuples(st.just(Kind.TIMETICKS), st.integers(0, 2**32 - 1)),
            st.tuples(
                st.just(Kind.OID),
                st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=12).map(tuple),
            ),
            st.tuples(st.just(Kind.IPADDRESS), st.binary(min_size=4, max_size=4)),
        ),
        max_size=10,
    )
)
def test_varbinds_round_trip(values: list[tuple[Kind, object]]) -> None:
    """Variable bindings come back from their stored JSON form unchanged."""
    bindings = [((1, 3, 6, 1, 4, 1, i), Value(kind, v)) for i, (kind, v) in enumerate(values)]
    assert vb.loads(vb.dumps(bindings)) == bindings


def test_unreadable_varbinds_are_an_error() -> None:
    """Corrupt stored bindings raise ValueError, not something obscure."""
    for text in ("not json", '[["1.3", "NOPE", 1]]', '[["x.y", "Integer32", 1]]', "[[1]]"):
        with pytest.raises(ValueError, match="unreadable variable bindings"):
            vb.loads(text)
