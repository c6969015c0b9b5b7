"""The AgentX subagent service: stays connected to the master agent (snmpd).

:class:`AgentxSubagent` connects to the configured master (unix socket or
TCP), opens a session, registers the subtrees and answers from the tree.
When the connection fails or drops (snmpd restarted, Ping unanswered) it
tries again after a delay that doubles up to ``reconnect_max``, and
registers again. It logs one line per change of state (not one per failed
attempt) and counts what happened in :attr:`AgentxSubagent.counters`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnaagent.snmp import mib
from dnaagent.snmp.agentx import pdu as P
from dnaagent.snmp.agentx.protocol import (
    AgentxNotConnectedError,
    AgentxProtocol,
    Counters,
    RequestHandler,
)
from dnaagent.snmp.agentx.settings import AgentxSection, MasterAddress
from dnaagent.snmp.tree import OID, MibTree, Value, format_oid
from dnaagent.snmp.writable import Writables

#: States of :class:`AgentxSubagent`.
STOPPED = "stopped"
CONNECTING = "connecting"
OPEN = "open"
WAITING = "waiting"


def master_endpoint(reactor: Any, address: MasterAddress, timeout: float) -> IStreamClientEndpoint:
    """A client endpoint for the master agent's address."""
    if address.kind == "unix":
        return UNIXClientEndpoint(reactor, address.path, timeout=timeout)
    if address.kind == "tcp6":
        return TCP6ClientEndpoint(reactor, address.host, address.port, timeout=timeout)
    return TCP4ClientEndpoint(reactor, address.host, address.port, timeout=timeout)


class AgentxSubagent(Service):
    """Serve ``tree`` (and SETs through ``writables``) as a subagent of an AgentX master.

    ``default_subtree`` (DNA-AGENT-MIB's root unless given) is registered when
    the section names no subtree; it also identifies the subagent in the
    Open PDU. ``endpoint`` replaces the
    one built from ``section.master`` (tests).
    """

    log = Logger()

    def __init__(
        self,
        section: AgentxSection,
        reactor: Any,
        tree: MibTree,
        writables: Writables | None = None,
        *,
        default_subtree: OID | None = None,
        endpoint: IStreamClientEndpoint | None = None,
    ) -> None:
        self.section = section
        self.reactor = reactor
        self.address = section.master_address()
        if default_subtree is None:
            default_subtree = mib.DNA_AGENT
        self.subtrees = section.subtree_oids(default_subtree)
        self.counters = Counters()
        self.handler = RequestHandler(
            tree,
            writables,
            self.subtrees,
            context=section.context.encode("utf-8") or None,
            counters=self.counters,
        )
        self.endpoint = endpoint or master_endpoint(reactor, self.address, section.request_timeout)
        self.agent_oid = default_subtree
        self.state = STOPPED
        self.protocol: AgentxProtocol | None = None
        self.failures = 0
        self._retry: IDelayedCall | None = None
        self._connecting: defer.Deferred[Any] | None = None
        self._last_problem: str | None = None
        self._waiters: list[defer.Deferred[AgentxProtocol]] = []

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        """Start connecting to the master."""
        super().startService()
        self.log.info(
            "AgentX subagent: master {master}, subtrees {subtrees}",
            master=str(self.address),
            subtrees=", ".join(format_oid(s) for s in self.subtrees),
        )
        self._connect()

    def stopService(self) -> defer.Deferred[None]:
        """Close the session (or give up connecting) and stop retrying."""
        super().stopService()
        self._set_state(STOPPED)
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        proto, self.protocol = self.protocol, None
        for waiter in self._waiters:
            waiter.errback(AgentxNotConnectedError("the AgentX subagent stopped"))
        self._waiters = []
        if proto is None:
            return defer.succeed(None)
        d = proto.close()
        timer = self.reactor.callLater(self.section.request_timeout, proto._drop)
        d.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return d

    # -- state -----------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state

    def _connect(self) -> None:
        self._retry = None
        if not self.running:
            return
        self._set_state(CONNECTING)
        factory = Factory.forProtocol(self._build_protocol)
        factory.noisy = False
        d = self.endpoint.connect(factory)
        self._connecting = d
        d.addCallbacks(self._connected, self._connect_failed)

    def _build_protocol(self) -> AgentxProtocol:
        s = self.section
        return AgentxProtocol(
            self.handler,
            self.reactor,
            description=s.description,
            agent_oid=self.agent_oid,
            timeout=s.timeout,
            priority=s.priority,
            request_timeout=s.request_timeout,
            ping_interval=s.ping_interval,
        )

    def _connected(self, proto: AgentxProtocol) -> None:
        self._connecting = None
        if not self.running:
            proto._drop()
            return
        self.protocol = proto
        proto.opened.addCallbacks(self._opened, self._open_failed, errbackArgs=(proto,))
        proto.lost.addCallback(self._lost, proto)

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if not self.running:
            return
        self._problem(
            f"cannot connect to AgentX master {self.address}: {failure.getErrorMessage()}"
        )
        self._schedule()

    def _opened(self, proto: AgentxProtocol) -> None:
        self.failures = 0
        self._last_problem = None
        self._set_state(OPEN)
        self.log.info(
            "AgentX session {session} open with master {master}; registered {subtrees}",
            session=proto.session_id,
            master=str(self.address),
            subtrees=", ".join(format_oid(s) for s in proto.registered),
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(proto)

    def _open_failed(self, failure: Failure, proto: AgentxProtocol) -> None:
        """The session did not open; the connection is dropped and :meth:`_lost` retries."""
        proto._drop()
        if self.running:
            self._problem(
                f"no AgentX session with master {self.address}: {failure.getErrorMessage()}"
            )

    def _lost(self, reason: BaseException, proto: AgentxProtocol) -> None:
        if self.protocol is proto:
            self.protocol = None
        if not self.running:
            return
        if self.state == OPEN:
            self.log.warn(
                "AgentX session with master {master} lost ({why}); reconnecting",
                master=str(self.address),
                why=str(reason) or type(reason).__name__,
            )
        self._schedule()

    def _problem(self, text: str) -> None:
        """Count a failed attempt; log ``text`` unless it is the problem logged last."""
        self.failures += 1
        self.counters.connect_failures += 1
        if text != self._last_problem:
            self._last_problem = text
            self.log.warn("{problem}; retrying with backoff", problem=text)

    def _schedule(self) -> None:
        """Try again after the backoff delay of the failures so far."""
        if self._retry is not None and self._retry.active():
            return
        self._set_state(WAITING)
        self._retry = self.reactor.callLater(self.retry_delay(self.failures), self._connect)

    def retry_delay(self, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` failures in a row."""
        s = self.section
        return min(s.reconnect_max, s.reconnect_interval * 2 ** max(0, failures - 1))

    # -- API -------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while a session is open with the master."""
        return self.protocol is not None and self.protocol.is_open

    def when_open(self) -> defer.Deferred[AgentxProtocol]:
        """Fires with the protocol as soon as a session is open (at once if one is)."""
        if self.is_open and self.protocol is not None:
            return defer.succeed(self.protocol)
        d: defer.Deferred[AgentxProtocol] = defer.Deferred()
        self._waiters.append(d)
        return d

    def send_notify(
        self,
        varbinds: Sequence[P.VarBind | tuple[OID, Value]],
        context: bytes | None = None,
    ) -> defer.Deferred[P.ResponsePdu]:
        """Send a Notify through the master (see :meth:`AgentxProtocol.send_notify`).

        Fails at once with :class:`AgentxNotConnectedError` when no session is open.
        """
        if self.protocol is None or not self.protocol.is_open:
            return defer.fail(AgentxNotConnectedError("no AgentX session with the master"))
        return self.protocol.send_notify(varbinds, context)
