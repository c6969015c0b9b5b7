"""NotificationService: trigger events in, traps and informs out, nothing lost.

The service subscribes to the Mediator's triggers. Each event of a
configured kind becomes one notification, written to the
:class:`~dnaagent.snmp.notify.queue.NotificationQueue` for every trap sink
and inform target *before* anything is sent. One reactor timer drives the
queue: at each tick every due delivery is handed to the :class:`Sender`.

- A trap is sent once and recorded as ``sent`` (or ``dropped`` when the
  sending itself failed).
- An inform is recorded as attempted before it leaves, and as ``acked``
  when the target acknowledges it. Unacknowledged, it is retried after
  ``retry_initial`` seconds, doubling up to ``retry_max``, each wait varied by
  ``retry_jitter``. A target's next inform waits until the one before is
  acknowledged or dropped, so each target receives its informs in order.
- On start every pending delivery is due at once: informs left by a stopped
  or killed agent are sent again. An inform can therefore reach a manager
  twice when the agent died after sending it and before recording its
  acknowledgement, or when an acknowledgement was lost on the way: informs
  are delivered at least once. Each notification carries its sequence number
  so that duplicates can be recognised.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnaagent.mediator.triggers import Event, Triggers
from dnaagent.snmp.notify import varbinds as vb
from dnaagent.snmp.notify.queue import COUNTERS, Delivery, Dropped, NotificationQueue
from dnaagent.snmp.notify.sender import PysnmpSender, Sender, engine_id_for
from dnaagent.snmp.notify.settings import NotifySection
from dnaagent.snmp.notify.targets import INFORM, TRAP, Target, parse_targets

QUEUE_FILE = "notifications.sqlite"


def _asyncio_reactor(reactor: Any) -> bool:
    """True when ``reactor`` runs on an asyncio loop (pysnmp needs one)."""
    return isinstance(getattr(reactor, "_asyncioEventloop", None), asyncio.AbstractEventLoop)


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based), before jitter."""
    if attempt < 1:
        return 0.0
    return min(max(initial, maximum), initial * 2.0 ** min(attempt - 1, 64))


class NotificationService(Service):
    """Turns trigger events into persisted, retried SNMP notifications.

    ``section`` is the ``[notifications]`` configuration, ``triggers`` the
    Mediator's :class:`~dnaagent.mediator.triggers.Triggers`, ``state_dir``
    where the queue lives. ``sender`` replaces the pysnmp sender (tests);
    ``uptime`` returns the agent's uptime in seconds for sysUpTime.0
    (default: seconds since this service was made); ``engine_id`` is the
    agent's SNMP engine ID (default: the one the embedded agent keeps in the
    state directory, made there when missing);
    ``rng`` draws the retry jitter.
    """

    log = Logger()

    def __init__(
        self,
        section: NotifySection,
        reactor: Any,
        triggers: Triggers,
        state_dir: str,
        *,
        sender: Sender | None = None,
        uptime: Callable[[], float] | None = None,
        engine_id: bytes | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.section = section
        self.reactor = reactor
        self.triggers = triggers
        self.state_dir = state_dir
        self.targets: dict[str, Target] = {
            t.key: t
            for t in parse_targets(section.trap_sinks, TRAP)
            + parse_targets(section.inform_targets, INFORM)
        }
        os.makedirs(state_dir, mode=0o750, exist_ok=True)
        self.queue = NotificationQueue(
            os.path.join(state_dir, QUEUE_FILE),
            max_pending_per_target=section.max_pending_per_target,
            max_pending_total=section.max_pending_total,
        )
        self.engine_id = engine_id or engine_id_for(state_dir)
        self._sender = sender
        made = reactor.seconds()
        self._uptime = uptime or (lambda: reactor.seconds() - made)
        self._rng = rng or random.Random()
        self._timer: DelayedCall | None = None
        self._busy_targets: set[str] = set()
        self._in_flight: dict[tuple[int, str], Deferred[None]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._can_send = True
        self.events_seen = 0
        self.events_ignored = 0

    @property
    def sender(self) -> Sender:
        """The sender in use (the pysnmp one is made on first use)."""
        if self._sender is None:
            self._sender = PysnmpSender(self.engine_id, self.section.inform_timeout)
        return self._sender

    # -- service -----------------------------------------------------------

    def startService(self) -> None:
        """Forget removed targets, make pending deliveries due, listen to triggers."""
        super().startService()
        now = self.reactor.seconds()
        for target, n in self.queue.drop_targets_except(self.targets, now).items():
            self.log.warn(
                "{n} pending notifications for {target} dropped: the target is no longer "
                "configured",
                n=n,
                target=target,
            )
        waiting = self.queue.reschedule_all(now)
        if waiting:
            self.log.info("{n} notifications are waiting to be delivered", n=waiting)
        self._unsubscribe = self.triggers.subscribe(self.on_event)
        if self.targets and self._sender is None and not _asyncio_reactor(self.reactor):
            self._can_send = False
            self.log.error(
                "SNMP notifications need Twisted's asyncio reactor (twistd -r asyncio); "
                "they are kept in the queue and sent after a start with it"
            )
        elif self.targets:
            try:
                self.sender.prepare()
            except Exception:
                self.log.failure("preparing the SNMP notification sender failed")
        self._schedule()
        if self.targets:
            self.log.info("notifications to {targets}", targets=", ".join(sorted(self.targets)))

    def stopService(self) -> None:
        """Stop sending; pending informs stay in the queue for the next start."""
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for d in list(self._in_flight.values()):
            d.cancel()
        self._in_flight.clear()
        self._busy_targets.clear()
        if self._sender is not None:
            self._sender.close()
        self.queue.close()

    # -- events in ---------------------------------------------------------

    def on_event(self, event: Event) -> int | None:
        """Queue the notification of ``event``; returns its sequence number.

        Returns None when the event's kind is not configured or no target is.
        """
        self.events_seen += 1
        if event.kind not in self.section.events or not self.targets:
            self.events_ignored += 1
            return None
        varbinds = vb.event_varbinds(event, self._uptime())
        return self.enqueue(event.kind, varbinds)

    def enqueue(self, kind: str, varbinds: list[vb.VarBind]) -> int:
        """Persist a notification for every target and schedule its sending."""
        now = self.reactor.seconds()
        nid, dropped = self.queue.enqueue(
            kind, varbinds, [(t.key, t.mode) for t in self.targets.values()], now
        )
        for drop in dropped:
            self._log_drop(drop)
        self._schedule(now)
        return nid

    def _log_drop(self, drop: Dropped) -> None:
        self.log.warn(
            "notification {nid} for {target} dropped ({reason}); "
            "the target's dropped counter says how many so far",
            nid=drop.notification_id,
            target=drop.target,
            reason=drop.reason,
        )

    # -- the timer ---------------------------------------------------------

    def _schedule(self, at: float | None = None) -> None:
        """Make the one timer fire at the earliest due delivery (or ``at``)."""
        if not self.running or not self._can_send:
            return
        try:
            when = self._next_due() if at is None else at
        except Exception:
            self.log.failure("reading the notification queue failed")
            when = self.reactor.seconds() + self.section.retry_initial
        if when is None:
            return
        delay = max(0.0, when - self.reactor.seconds())
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self.reactor.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self.reactor.callLater(delay, self._tick)

    def _waiting(self, delivery: Delivery) -> bool:
        """True when a delivery cannot start now whatever the time."""
        if (delivery.notification_id, delivery.target) in self._in_flight:
            return True
        return delivery.mode == INFORM and delivery.target in self._busy_targets

    def _next_due(self) -> float | None:
        return min(
            (d.next_attempt for d in self.queue.heads() if not self._waiting(d)), default=None
        )

    def _tick(self) -> None:
        self._timer = None
        try:
            now = self.reactor.seconds()
            for delivery in self.queue.due(now):
                self._start(delivery, now)
        except Exception:
            self.log.failure("sending due notifications failed")
            self._timer = self.reactor.callLater(self.section.retry_initial, self._tick)
            return
        self._schedule()

    def _delay(self, attempt: int) -> float:
        base = backoff(attempt, self.section.retry_initial, self.section.retry_max)
        jitter = self.section.retry_jitter
        return base * (1.0 + jitter * self._rng.uniform(-1.0, 1.0))

    def _start(self, delivery: Delivery, now: float) -> None:
        key = (delivery.notification_id, delivery.target)
        target = self.targets.get(delivery.target)
        if target is None or self._waiting(delivery):
            return
        if target.mode == INFORM:
            # Provisional: if the agent dies now, the inform is due again
            # at the next start; if the send hangs, after timeout + backoff.
            attempt = delivery.attempts + 1
            provisional = now + self.section.inform_timeout + self._delay(attempt)
            attempt = self.queue.record_attempt(
                delivery.notification_id, delivery.target, now, provisional
            )
            if not attempt:
                return
            self._busy_targets.add(delivery.target)
        else:
            attempt = 1
        varbinds = vb.with_sequence(delivery.varbinds, delivery.notification_id)
        try:
            d = self.sender.send(target, varbinds)
        except Exception as e:
            d = Deferred()
            d.errback(Failure(e))
        # The sender has its own timeout; this one only guards against a
        # send that never ends, which would hold up the target for good.
        d.addTimeout(self.section.inform_timeout * 2 + 10, self.reactor)
        self._in_flight[key] = d
        d.addCallbacks(
            self._succeeded,
            self._failed,
            callbackArgs=(delivery, attempt),
            errbackArgs=(delivery, attempt),
        )
        d.addErrback(self._bug, delivery)
        d.addBoth(self._done, delivery)

    def _succeeded(self, _: object, delivery: Delivery, attempt: int) -> None:
        if not self.running:
            return
        now = self.reactor.seconds()
        if delivery.mode == INFORM:
            if self.queue.mark_acked(delivery.notification_id, delivery.target, now):
                self.log.debug(
                    "notification {nid} acknowledged by {target} (attempt {attempt})",
                    nid=delivery.notification_id,
                    target=delivery.target,
                    attempt=attempt,
                )
        else:
            self.queue.mark_sent(delivery.notification_id, delivery.target, now)

    def _failed(self, failure: Failure, delivery: Delivery, attempt: int) -> None:
        if not self.running:
            return
        now = self.reactor.seconds()
        if delivery.mode == INFORM:
            wait = self._delay(attempt)
            self.queue.reschedule(delivery.notification_id, delivery.target, now + wait)
            self.log.info(
                "notification {nid} to {target}: attempt {attempt} failed ({why}); "
                "next in {wait:.1f} s",
                nid=delivery.notification_id,
                target=delivery.target,
                attempt=attempt,
                why=failure.getErrorMessage(),
                wait=wait,
            )
        else:
            self.queue.mark_dropped(delivery.notification_id, delivery.target, now)
            self.log.warn(
                "notification {nid} to {target} could not be sent, dropped: {why}",
                nid=delivery.notification_id,
                target=delivery.target,
                why=failure.getErrorMessage(),
            )

    def _bug(self, failure: Failure, delivery: Delivery) -> None:
        self.log.failure(
            "recording the delivery of notification {nid} to {target} failed",
            failure,
            nid=delivery.notification_id,
            target=delivery.target,
        )

    def _done(self, _: object, delivery: Delivery) -> None:
        self._in_flight.pop((delivery.notification_id, delivery.target), None)
        if delivery.mode == INFORM:
            self._busy_targets.discard(delivery.target)
        self._schedule()

    # -- what the MIB and dnactl read --------------------------------------

    def counters(self) -> dict[str, dict[str, int]]:
        """Per target key: queued, sent, acked, retried, dropped and pending.

        Every configured target appears, with zeros before its first
        notification; targets removed from the configuration keep their rows.
        """
        out = {key: dict.fromkeys((*COUNTERS, "pending"), 0) for key in self.targets}
        out.update(self.queue.counters())
        return out

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for ``dnactl status`` and the control API."""
        counters = self.counters()
        return {
            "engine_id": self.engine_id.hex(),
            "targets": [
                {
                    "key": t.key,
                    "mode": t.mode,
                    "version": t.version,
                    "address": t.address,
                    **counters.get(t.key, {}),
                }
                for t in self.targets.values()
            ],
            "pending": self.queue.pending(),
            "next_attempt": self._next_due(),
            "counters": counters,
            "events_seen": self.events_seen,
            "events_ignored": self.events_ignored,
        }
