"""NotificationService with a fake sender and a fake clock."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred

from dnaagent.mediator.interface import Status, TestResult
from dnaagent.mediator.triggers import TEST_FAILED, TEST_RECOVERED, Event, Triggers
from dnaagent.snmp import mib
from dnaagent.snmp.notify import varbinds as vb
from dnaagent.snmp.notify.queue import ACKED, DROPPED, PENDING, SENT
from dnaagent.snmp.notify.sender import NotAcknowledged, SendError, engine_id_for
from dnaagent.snmp.notify.service import NotificationService, backoff
from dnaagent.snmp.notify.settings import NotifySection
from dnaagent.snmp.notify.targets import Target
from dnaagent.snmp.tree import Kind, Value

INFORM_A = "v2c:public@192.0.2.1:162"
INFORM_B = "v3:ops:SHA-256:authkey1:AES:privkey1@[2001:db8::2]:162"
TRAP_C = "v2c:public@192.0.2.3:162"
KEY_A = "inform v2c community@192.0.2.1:162"
KEY_B = "inform v3 ops@[2001:db8::2]:162"
KEY_C = "trap v2c community@192.0.2.3:162"


@dataclass
class Call:
    """One send() the service made."""

    target: Target
    varbinds: list[vb.VarBind]
    deferred: Deferred[None]

    @property
    def sequence(self) -> int:
        """The notification's sequence number (dnaNotifySequence.0)."""
        return dict(self.varbinds)[vb.NOTIFY_SEQUENCE].value


@dataclass
class FakeSender:
    """Records sends; the test decides when each is acknowledged or fails."""

    calls: list[Call] = field(default_factory=list)
    prepared: bool = False
    closed: bool = False

    def send(self, target: Target, varbinds: Sequence[vb.VarBind]) -> Deferred[None]:
        """Record the call and return its Deferred, unfired."""
        d: Deferred[None] = Deferred()
        self.calls.append(Call(target, list(varbinds), d))
        return d

    def prepare(self) -> None:
        """Remember that the service prepared the sender."""
        self.prepared = True

    def close(self) -> None:
        """Remember that the service closed the sender."""
        self.closed = True

    def to(self, key: str) -> list[Call]:
        """The calls made to one target."""
        return [c for c in self.calls if c.target.key == key]


def event(kind: str = TEST_FAILED, test: str = "PingGateway", n: int = 0) -> Event:
    """An event about one local test."""
    status = Status.ERROR if kind == TEST_FAILED else Status.OK
    result = TestResult("local", test, status, f"message {n}", {"n": n}, 1_700_000_000.0 + n, 0.5)
    previous = Status.OK if kind == TEST_FAILED else Status.ERROR
    return Event(kind, result, previous, f"local.{test} event {n}", {"n": n})


def make(
    tmp_path: Path,
    clock: task.Clock,
    sender: FakeSender,
    triggers: Triggers | None = None,
    **settings: object,
) -> NotificationService:
    """A started service with no jitter unless the test sets it."""
    values: dict[str, object] = {
        "inform_targets": [INFORM_A],
        "retry_initial": 5.0,
        "retry_max": 60.0,
        "retry_jitter": 0.0,
        "inform_timeout": 2.0,
    }
    values.update(settings)
    service = NotificationService(
        NotifySection(**values),  # type: ignore[arg-type]
        clock,
        triggers or Triggers(),
        str(tmp_path),
        sender=sender,
        uptime=lambda: 12.5,
        engine_id=bytes.fromhex("80001f8804646e6174657374"),
    )
    service.startService()
    return service


def test_backoff_doubles_up_to_the_maximum() -> None:
    """The wait after attempt n is initial * 2**(n-1), capped."""
    assert [backoff(n, 5.0, 60.0) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert backoff(1000, 5.0, 60.0) == 60.0
    assert backoff(3, 10.0, 1.0) == 10.0  # a maximum below the initial wait is the initial


def test_event_becomes_notification_with_varbinds(tmp_path: Path) -> None:
    """A trigger event is queued and sent with sysUpTime, snmpTrapOID and its objects."""
    clock, sender, triggers = task.Clock(), FakeSender(), Triggers()
    service = make(tmp_path, clock, sender, triggers)
    for subscriber in triggers._subscribers:
        subscriber(event(n=7))
    assert service.queue.pending(KEY_A) == 1  # persisted before sending
    assert sender.calls == []
    clock.advance(0)
    (call,) = sender.calls
    index = mib.test_index("local", "PingGateway")
    assert index is not None
    assert call.varbinds == [
        (vb.SYS_UPTIME, Value.timeticks(12.5)),
        (vb.SNMP_TRAP_OID, Value.oid(mib.DNA_TEST_FAILED)),
        (vb.NOTIFY_TEST, Value.octets("local.PingGateway")),
        (mib.DNA_RESULT_STATUS + index, Value.integer(3)),
        (mib.DNA_RESULT_MESSAGE + index, Value.octets("message 7")),
        (mib.DNA_RESULT_TIME + index, vb.date_and_time(1_700_000_007.0)),
        (vb.NOTIFY_PREVIOUS_STATUS, Value.integer(1)),
        (vb.NOTIFY_SEQUENCE, Value(Kind.GAUGE32, 1)),
        (vb.NOTIFY_MESSAGE, Value.octets("local.PingGateway event 7")),
        (vb.NOTIFY_DETAILS, Value.octets('{"n": 7}')),
    ]
    assert call.sequence == 1
    # The stored bindings hold sequence 0; the sent ones their number.
    (stored,) = service.queue.deliveries()
    assert dict(stored.varbinds)[vb.NOTIFY_SEQUENCE] == Value(Kind.GAUGE32, 0)


def test_threshold_and_fault_notifications() -> None:
    """threshold-crossed and fault-localized carry the objects of their NOTIFICATION-TYPE."""
    result = TestResult("local", "PingOwnIP", Status.OK, "ok", {"rtt_ms": 7.5}, 5.0, 0.1)
    crossed = Event(
        "threshold-crossed",
        result,
        Status.OK,
        "local.PingOwnIP: rtt_ms = 7.5 > 5",
        {"detail": "rtt_ms", "value": 7.5, "limit": 5.0},
    )
    bindings = vb.event_varbinds(crossed, 1.0)
    assert [oid for oid, _ in bindings] == [
        vb.SYS_UPTIME,
        vb.SNMP_TRAP_OID,
        vb.NOTIFY_TEST,
        vb.NOTIFY_THRESHOLD_DETAIL,
        vb.NOTIFY_THRESHOLD_VALUE,
        vb.NOTIFY_THRESHOLD_LIMIT,
        vb.NOTIFY_MESSAGE,
        vb.NOTIFY_SEQUENCE,
        vb.NOTIFY_DETAILS,
    ]
    values = dict(bindings)
    assert values[vb.SNMP_TRAP_OID] == Value.oid(mib.DNA_THRESHOLD_CROSSED)
    assert values[vb.NOTIFY_THRESHOLD_DETAIL] == Value.octets("rtt_ms")
    assert values[vb.NOTIFY_THRESHOLD_VALUE] == Value.octets("7.5")
    assert values[vb.NOTIFY_THRESHOLD_LIMIT] == Value.octets("> 5")
    fault = Event(
        "fault-localized",
        result,
        None,
        "the fault is between you and 192.0.2.9",
        {"target": "192.0.2.9", "location": "beyond 198.51.100.1"},
    )
    values = dict(vb.event_varbinds(fault, 1.0))
    assert values[vb.SNMP_TRAP_OID] == Value.oid(mib.DNA_FAULT_LOCALIZED)
    assert values[vb.NOTIFY_TARGET] == Value.octets("192.0.2.9")
    assert values[vb.NOTIFY_FAULT_LOCATION] == Value.octets("beyond 198.51.100.1")
    first = Event("test-failed", result, None, "first run failed")
    assert dict(vb.event_varbinds(first, 0))[vb.NOTIFY_PREVIOUS_STATUS] == Value.integer(4)


def test_date_and_time_is_utc_rfc2579() -> None:
    """DateAndTime has year, month, day, h, m, s, deci-seconds and a +00:00 zone."""
    raw = vb.date_and_time(1_700_000_007.5).value
    assert raw == bytes([0x07, 0xE7, 11, 14, 22, 13, 27, 5]) + b"+\x00\x00"


def test_long_text_is_cut_to_a_displaystring() -> None:
    """Messages longer than 255 octets are cut on a character boundary."""
    e = event()
    long = Event(e.kind, e.result, e.previous_status, "é" * 300)
    value = dict(vb.event_varbinds(long, 0))[vb.NOTIFY_MESSAGE].value
    assert 254 <= len(value) <= 255
    value.decode("utf-8")


def test_trap_is_sent_once(tmp_path: Path) -> None:
    """A trap goes out once and is recorded as sent; no retry, even without an answer."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender, inform_targets=[], trap_sinks=[TRAP_C])
    nid = service.enqueue("test-failed", vb.event_varbinds(event(), 1))
    clock.advance(0)
    (call,) = sender.calls
    call.deferred.callback(None)
    clock.advance(3600)
    assert len(sender.calls) == 1
    assert [(d.notification_id, d.state) for d in service.queue.deliveries(KEY_C)] == [(nid, SENT)]
    assert service.counters()[KEY_C]["sent"] == 1


def test_failed_trap_is_dropped_and_counted(tmp_path: Path) -> None:
    """A trap whose sending fails is not retried; the drop is counted."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender, inform_targets=[], trap_sinks=[TRAP_C])
    service.enqueue("test-failed", vb.event_varbinds(event(), 1))
    clock.advance(0)
    sender.calls[0].deferred.errback(SendError("network unreachable"))
    clock.advance(3600)
    assert len(sender.calls) == 1
    assert service.queue.deliveries(KEY_C)[0].state == DROPPED
    assert service.counters()[KEY_C]["dropped"] == 1


def test_inform_retry_schedule(tmp_path: Path) -> None:
    """Unacknowledged informs are retried after 5, 10, 20, 40, 60, 60 s until acked."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender)
    service.enqueue("test-failed", vb.event_varbinds(event(), 1))
    clock.advance(0)
    sent_at = [clock.seconds()]
    for _ in range(6):
        sender.calls[-1].deferred.errback(NotAcknowledged("no ack"))
        before = len(sender.calls)
        while len(sender.calls) == before:
            clock.advance(0.5)
        sent_at.append(clock.seconds())
    assert [b - a for a, b in zip(sent_at, sent_at[1:], strict=False)] == [5, 10, 20, 40, 60, 60]
    assert {c.sequence for c in sender.calls} == {1}
    sender.calls[-1].deferred.callback(None)
    clock.advance(600)
    assert len(sender.calls) == 7
    c = service.counters()[KEY_A]
    assert (c["sent"], c["retried"], c["acked"], c["pending"]) == (7, 6, 1, 0)


def test_jitter_stays_within_bounds(tmp_path: Path) -> None:
    """With jitter 0.5 each retry wait lies within ±50 % of the doubling schedule."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender, retry_jitter=0.5)
    service._rng = random.Random(4)
    service.enqueue("test-failed", vb.event_varbinds(event(), 1))
    clock.advance(0)
    waits = []
    for attempt in range(1, 6):
        start = clock.seconds()
        sender.calls[-1].deferred.errback(NotAcknowledged("no ack"))
        while len(sender.calls) == attempt:
            clock.advance(0.25)
        waits.append(clock.seconds() - start)
    for attempt, wait in enumerate(waits, 1):
        base = backoff(attempt, 5.0, 60.0)
        assert 0.5 * base <= wait <= 1.5 * base + 0.25
    assert len(set(waits)) > 1


def test_informs_keep_their_order_per_target(tmp_path: Path) -> None:
    """A target's next inform waits for the previous ack; another target is not held up."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender, inform_targets=[INFORM_A, INFORM_B])
    ids = [service.enqueue("test-failed", vb.event_varbinds(event(n=i), 1)) for i in range(3)]
    clock.advance(0)
    assert [(c.target.key, c.sequence) for c in sender.calls] == [(KEY_A, ids[0]), (KEY_B, ids[0])]
    # A does not answer; B acknowledges and gets its next inform at once.
    sender.to(KEY_B)[0].deferred.callback(None)
    clock.advance(0)
    assert [c.sequence for c in sender.to(KEY_B)] == [ids[0], ids[1]]
    sender.to(KEY_A)[0].deferred.errback(NotAcknowledged("no ack"))
    clock.advance(4.9)
    assert [c.sequence for c in sender.to(KEY_A)] == [ids[0]]
    clock.advance(0.1)
    assert [c.sequence for c in sender.to(KEY_A)] == [ids[0], ids[0]]  # the same one again
    sender.to(KEY_A)[-1].deferred.callback(None)
    clock.advance(0)
    sender.to(KEY_A)[-1].deferred.callback(None)
    clock.advance(0)
    sender.to(KEY_A)[-1].deferred.callback(None)
    clock.advance(0)
    assert [c.sequence for c in sender.to(KEY_A)] == [ids[0], ids[0], ids[1], ids[2]]
    assert service.queue.pending(KEY_A) == 0


def test_manager_down_for_an_hour(tmp_path: Path) -> None:
    """Informs raised while the manager is down all arrive, in order, once it is back."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender, retry_max=300.0)
    manager_up = False
    acked: list[int] = []

    def answer() -> None:
        for c in sender.calls:
            if not c.deferred.called:
                if manager_up:
                    acked.append(c.sequence)
                    c.deferred.callback(None)
                else:
                    c.deferred.errback(NotAcknowledged("no ack"))

    for minute in range(60):
        service.enqueue("test-failed", vb.event_varbinds(event(n=minute), minute * 60))
        for _ in range(60):
            clock.advance(1)
            answer()
    manager_up = True
    for _ in range(400):
        clock.advance(1)
        answer()
    assert acked == list(range(1, 61))
    # While down, the head was retried at most every 300 s: about 12 + 8 attempts.
    assert len(sender.calls) - 60 < 25
    assert service.counters()[KEY_A]["pending"] == 0


def test_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    """With the target full, new notifications push out the oldest; the count shows it."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender, max_pending_per_target=3)
    ids = [service.enqueue("test-failed", vb.event_varbinds(event(n=i), 1)) for i in range(5)]
    assert [d.notification_id for d in service.queue.deliveries(KEY_A, PENDING)] == ids[2:]
    assert service.counters()[KEY_A]["dropped"] == 2
    clock.advance(0)
    assert [c.sequence for c in sender.calls] == [ids[2]]


def test_stop_leaves_pending_informs_and_restart_resends(tmp_path: Path) -> None:
    """Stopping keeps unacknowledged informs; the next start sends them again first."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender)
    ids = [service.enqueue("test-failed", vb.event_varbinds(event(n=i), 1)) for i in range(3)]
    clock.advance(0)
    sender.calls[0].deferred.callback(None)
    clock.advance(0)
    assert [c.sequence for c in sender.calls] == [ids[0], ids[1]]
    service.stopService()  # ids[1] is in flight, never acknowledged
    assert sender.prepared and sender.closed
    assert clock.getDelayedCalls() == []

    clock2, sender2 = task.Clock(), FakeSender()
    clock2.advance(10_000)
    service2 = make(tmp_path, clock2, sender2)
    clock2.advance(0)
    assert [c.sequence for c in sender2.calls] == [ids[1]]
    sender2.calls[0].deferred.callback(None)
    clock2.advance(0)
    sender2.calls[1].deferred.callback(None)
    clock2.advance(0)
    assert [c.sequence for c in sender2.calls] == [ids[1], ids[2]]
    c = service2.counters()[KEY_A]
    assert (c["queued"], c["acked"], c["pending"]) == (3, 3, 0)


def test_results_after_stop_are_ignored(tmp_path: Path) -> None:
    """An acknowledgement arriving after stop changes nothing (the inform stays pending)."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender)
    service.enqueue("test-failed", vb.event_varbinds(event(), 1))
    clock.advance(0)
    d = sender.calls[0].deferred
    service.stopService()
    assert d.called  # cancelled by stop
    service2 = make(tmp_path, task.Clock(), FakeSender())
    assert service2.queue.pending(KEY_A) == 1


def test_removed_target_is_dropped_at_start(tmp_path: Path) -> None:
    """Pending informs of a target removed from the configuration are dropped and counted."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender, inform_targets=[INFORM_A, INFORM_B])
    service.enqueue("test-failed", vb.event_varbinds(event(), 1))
    service.stopService()
    service2 = make(tmp_path, task.Clock(), FakeSender(), inform_targets=[INFORM_A])
    assert service2.queue.pending(KEY_B) == 0
    assert service2.counters()[KEY_B]["dropped"] == 1
    assert service2.queue.pending(KEY_A) == 1


def test_event_kinds_filter_and_no_targets(tmp_path: Path) -> None:
    """Only configured kinds are queued; with no target nothing is stored."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path / "a", clock, sender, events=[TEST_FAILED])
    assert service.on_event(event(TEST_RECOVERED)) is None
    assert service.on_event(event(TEST_FAILED)) == 1
    idle = make(tmp_path / "b", task.Clock(), FakeSender(), inform_targets=[])
    assert idle.on_event(event()) is None
    assert idle.queue.pending() == 0
    assert (idle.events_seen, idle.events_ignored) == (1, 1)


def test_triggers_feed_reaches_the_queue(tmp_path: Path) -> None:
    """A failing result fed to the Mediator's triggers ends up as a sent inform."""
    clock, sender, triggers = task.Clock(), FakeSender(), Triggers()
    service = make(tmp_path, clock, sender, triggers)
    ok = TestResult("local", "NICStatus", Status.OK, "up", {}, 1.0, 0.1)
    bad = TestResult("local", "NICStatus", Status.ERROR, "down", {}, 2.0, 0.1)
    triggers.feed(ok, bad)
    clock.advance(0)
    (call,) = sender.calls
    assert dict(call.varbinds)[vb.NOTIFY_TEST] == Value.octets("local.NICStatus")
    service.stopService()
    assert triggers._subscribers == []


def test_sender_raising_is_a_failed_attempt(tmp_path: Path) -> None:
    """A sender that raises instead of failing its Deferred does not stop the queue."""

    class Raising(FakeSender):
        def send(self, target: Target, varbinds: Sequence[vb.VarBind]) -> Deferred[None]:
            """Fail the first call synchronously, then behave."""
            if not self.calls:
                self.calls.append(Call(target, list(varbinds), Deferred()))
                raise OSError("socket trouble")
            return super().send(target, varbinds)

    clock, sender = task.Clock(), Raising()
    service = make(tmp_path, clock, sender)
    service.enqueue("test-failed", vb.event_varbinds(event(), 1))
    clock.advance(0)
    clock.advance(5)
    assert len(sender.calls) == 2
    sender.calls[1].deferred.callback(None)
    assert service.queue.deliveries(KEY_A)[0].state == ACKED


def test_status_shape(tmp_path: Path) -> None:
    """status() lists targets with counters and the engine ID, without secrets."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender, inform_targets=[INFORM_B], trap_sinks=[TRAP_C])
    service.enqueue("test-failed", vb.event_varbinds(event(), 1))
    status = service.status()
    assert status["engine_id"] == "80001f8804646e6174657374"
    assert status["pending"] == 2
    assert {t["key"] for t in status["targets"]} == {KEY_B, KEY_C}
    assert "authkey1" not in repr(status) and "privkey1" not in repr(status)
    assert status["counters"][KEY_B]["queued"] == 1


def test_engine_id_is_shared_with_the_embedded_agent(tmp_path: Path) -> None:
    """Without one given, the engine ID is the embedded agent's, made when missing."""
    first = engine_id_for(str(tmp_path))
    assert first[:5] == bytes([0x80, 0, 0, 0, 5]) and len(first) == 17
    assert engine_id_for(str(tmp_path)) == first
    state = json.loads((tmp_path / "snmp-engine.json").read_text())
    assert state == {"engine_id": first.hex(), "boots": 0}
    (tmp_path / "snmp-engine.json").write_text('{"engine_id": "8000000005aabbccdd", "boots": 7}')
    assert engine_id_for(str(tmp_path)) == bytes.fromhex("8000000005aabbccdd")
    (tmp_path / "snmp-engine.json").write_text("garbage")
    assert engine_id_for(str(tmp_path)) not in (first, bytes.fromhex("8000000005aabbccdd"))


@pytest.mark.parametrize("kind", ["test-failed", "test-recovered", "threshold-crossed"])
def test_every_trigger_kind_has_a_notification(kind: str) -> None:
    """Each event kind of the triggers maps onto a NOTIFICATION-TYPE OID."""
    assert vb.event_varbinds(event(kind), 0)[1][1] == Value.oid(vb.NOTIFICATION_OIDS[kind])


def test_send_that_never_ends_is_abandoned(tmp_path: Path) -> None:
    """A send whose Deferred never fires is cancelled and retried, not stuck forever."""
    clock, sender = task.Clock(), FakeSender()
    service = make(tmp_path, clock, sender)  # inform_timeout 2 s: guard after 14 s
    service.enqueue("test-failed", vb.event_varbinds(event(), 1))
    clock.advance(0)
    clock.advance(13.9)
    assert len(sender.calls) == 1
    clock.advance(0.1)
    assert sender.calls[0].deferred.called  # cancelled by the guard
    clock.advance(5)
    assert len(sender.calls) == 2
    sender.calls[1].deferred.callback(None)
    assert service.counters()[KEY_A]["acked"] == 1


def test_without_asyncio_reactor_notifications_wait(tmp_path: Path) -> None:
    """With the pysnmp sender but no asyncio reactor, nothing is sent and nothing lost."""
    clock = task.Clock()
    service = NotificationService(
        NotifySection(inform_targets=[INFORM_A]),
        clock,
        Triggers(),
        str(tmp_path),
        engine_id=bytes.fromhex("80001f8804646e6174657374"),
    )
    service.startService()
    assert service.on_event(event()) == 1
    clock.advance(3600)
    assert clock.getDelayedCalls() == []
    assert service.queue.pending(KEY_A) == 1
    assert service.counters()[KEY_A]["sent"] == 0
    service.stopService()
