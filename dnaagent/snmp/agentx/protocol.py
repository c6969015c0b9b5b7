"""The AgentX subagent side of one connection to a master agent.

:class:`RequestHandler` is pure: it answers the master's Get, GetNext,
GetBulk and the four SET phases from a :class:`~dnaagent.snmp.tree.MibTree`
and :class:`~dnaagent.snmp.writable.Writables`, and keeps the state of SET
transactions. :class:`AgentxProtocol` is the Twisted protocol around it: it
frames the byte stream, opens the session and registers the subtrees, keeps
the session alive with Pings, sends Notifies for callers, and closes the
session on request. It takes a clock so that tests drive it with
``task.Clock`` over a ``StringTransport``.

Search ranges follow RFC 2741 §7.2.3: a GetNext answer is the first
instance at or after (``include``) or after the start, before the end OID and
inside a registered subtree, else endOfMibView named by the start OID; a
GetBulk repeats the GetNext of its repeaters from each previous answer.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnaagent.errors import DnaAgentError
from dnaagent.snmp.agentx import pdu as P
from dnaagent.snmp.agentx.pdu import ResponseError, SearchRange, VarBind, VarType
from dnaagent.snmp.tree import OID, Kind, MibTree, Value, format_oid, is_prefix
from dnaagent.snmp.writable import Writables


class AgentxError(DnaAgentError, RuntimeError):
    """A request to the master agent failed: refused, unanswered, or the session ended."""


class AgentxResponseError(AgentxError):
    """The master answered a request with a non-zero ``res.error``."""

    def __init__(self, request: str, error: int) -> None:
        try:
            name = ResponseError(error).name
        except ValueError:
            name = str(error)
        super().__init__(f"the master refused {request}: {name}")
        self.error = error


class AgentxTimeoutError(AgentxError, TimeoutError):
    """The master did not answer a request in time."""


class AgentxNotConnectedError(AgentxError, ConnectionError):
    """There is no open session with the master agent."""


_KIND_TO_TYPE = {
    Kind.INTEGER: VarType.INTEGER,
    Kind.OCTETS: VarType.OCTET_STRING,
    Kind.OID: VarType.OBJECT_IDENTIFIER,
    Kind.IPADDRESS: VarType.IP_ADDRESS,
    Kind.COUNTER32: VarType.COUNTER32,
    Kind.GAUGE32: VarType.GAUGE32,
    Kind.TIMETICKS: VarType.TIME_TICKS,
    Kind.COUNTER64: VarType.COUNTER64,
    Kind.OPAQUE: VarType.OPAQUE,
}
_TYPE_TO_KIND = {t: k for k, t in _KIND_TO_TYPE.items()}


def varbind(oid: OID, value: Value) -> VarBind:
    """The AgentX VarBind of a tree :class:`Value`."""
    return VarBind(oid, _KIND_TO_TYPE[value.kind], value.value)


def value_of(vb: VarBind) -> Value:
    """The tree :class:`Value` of a VarBind; TypeError/ValueError for Null and exceptions."""
    kind = _TYPE_TO_KIND.get(VarType(vb.type))
    if kind is None:
        raise TypeError(f"{VarType(vb.type).name} carries no value")
    return Value(kind, vb.value)


@dataclass
class Counters:
    """What happened on AgentX sessions; the subagent service keeps one across reconnections."""

    connections: int = 0
    sessions: int = 0
    requests: int = 0
    parse_errors: int = 0
    protocol_errors: int = 0
    handler_errors: int = 0
    timeouts: int = 0
    refused: int = 0
    notifies: int = 0
    connect_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dictionary."""
        return dict(self.__dict__)


@dataclass
class _SetTransaction:
    """One SET request between its TestSet and its CleanupSet."""

    items: list[tuple[OID, Value, Any]] = field(default_factory=list)
    committed: int = 0


#: SET transactions remembered at once; a master that never cleans up cannot grow this.
MAX_TRANSACTIONS = 64
#: Encoded VarBinds kept for reuse (the cache starts over when full).
MAX_CACHED = 100_000
#: Most VarBinds in one GetBulk answer (a GetBulk may be answered with fewer repetitions).
MAX_BULK_VARBINDS = 5000


class RequestHandler:
    """Answers the master agent's requests from a tree and write handlers (pure, no I/O).

    ``subtrees`` are the registered subtrees: instances outside them are
    never read or written. ``context`` is the only context answered (None:
    the default context).
    """

    log = Logger()

    def __init__(
        self,
        tree: MibTree,
        writables: Writables | None = None,
        subtrees: Iterable[OID] = (),
        context: bytes | None = None,
        counters: Counters | None = None,
    ) -> None:
        self.tree = tree
        self.writables = writables
        self.context = context
        self.counters = counters if counters is not None else Counters()
        self._subtrees: list[OID] = []
        self.subtrees = list(subtrees)
        self._transactions: OrderedDict[tuple[int, int], _SetTransaction] = OrderedDict()
        self._cache: dict[OID, tuple[Value, bytes]] = {}

    @property
    def subtrees(self) -> list[OID]:
        """The registered subtrees in OID order (nested ones folded into their parent)."""
        return list(self._subtrees)

    @subtrees.setter
    def subtrees(self, value: Iterable[OID]) -> None:
        kept: list[OID] = []
        for oid in sorted(set(value)):
            if not oid:
                raise ValueError("cannot register the empty OID")
            if kept and is_prefix(kept[-1], oid):
                continue
            kept.append(oid)
        self._subtrees = kept

    # -- scope -------------------------------------------------------------

    def in_scope(self, oid: OID) -> bool:
        """True when ``oid`` lies in a registered subtree."""
        for s in self._subtrees:
            if oid[: len(s)] == s:
                return True
        return False

    def _next_scope_start(self, oid: OID) -> OID | None:
        """The first registered subtree that starts after ``oid``."""
        i = bisect.bisect_right(self._subtrees, oid)
        return self._subtrees[i] if i < len(self._subtrees) else None

    # -- reads -------------------------------------------------------------

    def get(self, oid: OID) -> VarBind:
        """The answer to a Get of ``oid``: the instance, noSuchInstance or noSuchObject."""
        if self.in_scope(oid):
            value = self.tree.get(oid)
            if value is not None:
                return VarBind(oid, _KIND_TO_TYPE[value.kind], value.value)
            parent = oid[:-1]
            if self.in_scope(parent):
                found = self.tree.next(parent)
                if found is not None and found[0][: len(parent)] == parent:
                    return VarBind(oid, VarType.NO_SUCH_INSTANCE)
        return VarBind(oid, VarType.NO_SUCH_OBJECT)

    def next(self, start: OID, end: OID = (), include: bool = False) -> VarBind:
        """The answer to one GetNext search range (RFC 2741 §7.2.3.2)."""
        found = self.find_next(start, end, include)
        if found is None:
            return VarBind(start, VarType.END_OF_MIB_VIEW)
        oid, value = found
        return VarBind(oid, _KIND_TO_TYPE[value.kind], value.value)

    def find_next(
        self, start: OID, end: OID = (), include: bool = False
    ) -> tuple[OID, Value] | None:
        """The first registered instance at/after ``start`` and before ``end``, or None."""
        tree = self.tree
        cur = start
        inclusive = include
        while True:
            found: tuple[OID, Value] | None = None
            if inclusive and self.in_scope(cur):
                value = tree.get(cur)
                if value is not None:
                    found = (cur, value)
            if found is None:
                found = tree.next(cur)
                if found is None:
                    return None
            oid = found[0]
            if end and oid >= end:
                return None
            if self.in_scope(oid):
                return found
            jump = self._next_scope_start(oid)
            if jump is None:
                return None
            cur, inclusive = jump, True

    def bulk(
        self, ranges: Sequence[SearchRange], non_repeaters: int, max_repetitions: int
    ) -> list[VarBind]:
        """The answer to a GetBulk (RFC 2741 §7.2.3.3).

        The non-repeaters are answered once; then each repetition answers
        every repeater from the previous answer of the same repeater, until
        ``max_repetitions``, until every repeater is at endOfMibView, or
        until the answer holds :data:`MAX_BULK_VARBINDS` VarBinds.
        """
        n = min(non_repeaters, len(ranges))
        out = [self.next(r.start, r.end, r.include) for r in ranges[:n]]
        repeaters = list(ranges[n:])
        if not repeaters:
            return out
        cursors = [(r.start, r.include) for r in repeaters]
        repetitions = min(max_repetitions, max(1, (MAX_BULK_VARBINDS - n) // len(repeaters)))
        for _ in range(repetitions):
            done = True
            for i, r in enumerate(repeaters):
                start, include = cursors[i]
                vb = self.next(start, r.end, include)
                out.append(vb)
                if vb.type != VarType.END_OF_MIB_VIEW:
                    done = False
                    cursors[i] = (vb.oid, False)
            if done:
                break
        return out

    # -- encoded answers (the common requests, without building PDU objects) --

    def _encoded(self, oid: OID, value: Value) -> bytes:
        """The encoded VarBind of an instance, cached while its Value object is unchanged."""
        cached = self._cache.get(oid)
        if cached is not None and cached[0] is value:
            return cached[1]
        encoded = P.encode_varbind(VarBind(oid, _KIND_TO_TYPE[value.kind], value.value))
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[oid] = (value, encoded)
        return encoded

    def answer_encoded(self, header: P.Header, raw: bytes) -> bytes | None:
        """The encoded Response to a Get or GetNext in ``raw``, or None to decode it fully.

        Only requests in the default context are answered here; anything
        not plainly well-formed goes to the full decoder, which reports it.
        """
        ranges = P.scan_ranges(raw, P.HEADER_SIZE, len(raw), header.big_endian)
        if ranges is None:
            return None
        self.counters.requests += 1
        tree = self.tree
        parts: list[bytes] = []
        if header.type == P.PduType.GET:
            for r in ranges:
                oid = r.start
                value = tree.get(oid) if self.in_scope(oid) else None
                if value is not None:
                    parts.append(self._encoded(oid, value))
                else:
                    parts.append(P.encode_varbind(self.get(oid)))
        else:
            for r in ranges:
                found = self.find_next(r.start, r.end, r.include)
                if found is None:
                    parts.append(P.encode_varbind(VarBind(r.start, VarType.END_OF_MIB_VIEW)))
                else:
                    parts.append(self._encoded(*found))
        return P.encode_response(
            header.session_id, header.transaction_id, header.packet_id, b"".join(parts)
        )

    # -- dispatch ----------------------------------------------------------

    def handle(self, request: P.Pdu) -> P.ResponsePdu | None:
        """The Response to one request from the master, or None when none is due."""
        self.counters.requests += 1
        if isinstance(request, P.CleanupSetPdu):
            self._transactions.pop((request.session_id, request.transaction_id), None)
            return None
        response = P.ResponsePdu(
            session_id=request.session_id,
            transaction_id=request.transaction_id,
            packet_id=request.packet_id,
        )
        if request.HAS_CONTEXT and request.context != self.context:
            response.error = ResponseError.UNSUPPORTED_CONTEXT
            return response
        if isinstance(request, P.GetPdu):
            response.varbinds = [self.get(r.start) for r in request.ranges]
        elif isinstance(request, P.GetNextPdu):
            response.varbinds = [self.next(r.start, r.end, r.include) for r in request.ranges]
        elif isinstance(request, P.GetBulkPdu):
            response.varbinds = self.bulk(
                request.ranges, request.non_repeaters, request.max_repetitions
            )
        elif isinstance(request, P.TestSetPdu):
            response.error, response.index = self._test(request)
        elif isinstance(request, P.CommitSetPdu):
            response.error, response.index = self._commit(request)
        elif isinstance(request, P.UndoSetPdu):
            response.error, response.index = self._undo(request)
        else:
            self.counters.protocol_errors += 1
            return None
        return response

    # -- writes ------------------------------------------------------------

    def _test(self, request: P.TestSetPdu) -> tuple[int, int]:
        tx = _SetTransaction()
        self._transactions[(request.session_id, request.transaction_id)] = tx
        while len(self._transactions) > MAX_TRANSACTIONS:
            self._transactions.popitem(last=False)
        for index, vb in enumerate(request.varbinds, 1):
            handler = None
            if self.writables is not None and self.in_scope(vb.oid):
                handler = self.writables.find(vb.oid)
            if handler is None:
                return ResponseError.NOT_WRITABLE, index
            try:
                value = value_of(vb)
            except (TypeError, ValueError):
                return ResponseError.WRONG_TYPE, index
            try:
                status = int(handler.test(vb.oid, value))
            except Exception:
                self.counters.handler_errors += 1
                self.log.failure("write handler test of {oid} failed", oid=format_oid(vb.oid))
                return ResponseError.GEN_ERR, index
            if status:
                return status, index
            tx.items.append((vb.oid, value, handler))
        return ResponseError.NO_ERROR, 0

    def _commit(self, request: P.CommitSetPdu) -> tuple[int, int]:
        tx = self._transactions.get((request.session_id, request.transaction_id))
        if tx is None:
            return ResponseError.PROCESSING_ERROR, 0
        for index, (oid, value, handler) in enumerate(tx.items, 1):
            try:
                status = int(handler.commit(oid, value))
            except Exception:
                self.counters.handler_errors += 1
                self.log.failure("write handler commit of {oid} failed", oid=format_oid(oid))
                status = ResponseError.COMMIT_FAILED
            if status:
                return status, index
            tx.committed = index
        return ResponseError.NO_ERROR, 0

    def _undo(self, request: P.UndoSetPdu) -> tuple[int, int]:
        tx = self._transactions.get((request.session_id, request.transaction_id))
        if tx is None:
            return ResponseError.PROCESSING_ERROR, 0
        error, error_index = ResponseError.NO_ERROR, 0
        for index in range(tx.committed, 0, -1):
            oid, value, handler = tx.items[index - 1]
            try:
                handler.undo(oid, value)
            except Exception:
                self.counters.handler_errors += 1
                self.log.failure("write handler undo of {oid} failed", oid=format_oid(oid))
                error, error_index = ResponseError.UNDO_FAILED, index
        tx.committed = 0
        return error, error_index

    def pending_transactions(self) -> int:
        """SET transactions between TestSet and CleanupSet."""
        return len(self._transactions)


#: Requests from the master that get a Response (CleanupSet gets none).
_ANSWERED = frozenset(
    (
        P.PduType.GET,
        P.PduType.GETNEXT,
        P.PduType.GETBULK,
        P.PduType.TESTSET,
        P.PduType.COMMITSET,
        P.PduType.UNDOSET,
    )
)


#: Problems of the master's input logged per connection; the rest are only counted.
WARNINGS_PER_CONNECTION = 5


@dataclass
class _Pending:
    what: str
    deferred: defer.Deferred[P.ResponsePdu]
    timer: IDelayedCall | None


class AgentxProtocol(Protocol):
    """One AgentX session: Open, Register, answer requests, Ping, Notify, Close.

    :attr:`opened` fires with the protocol once the session is open and at
    least one subtree is registered, or fails (refused, timed out, lost).
    :attr:`lost` fires with the exception that ended the connection.
    """

    log = Logger()

    def __init__(
        self,
        handler: RequestHandler,
        clock: IReactorTime,
        *,
        description: str = "dnaagent",
        agent_oid: OID = (),
        timeout: int = 0,
        priority: int = 127,
        request_timeout: float = 10.0,
        ping_interval: float = 0.0,
        max_payload: int = P.MAX_PAYLOAD,
    ) -> None:
        self.handler = handler
        self.clock = clock
        self.description = description
        self.agent_oid = agent_oid
        self.timeout = timeout
        self.priority = priority
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.counters = handler.counters
        self.session_id: int | None = None
        self.registered: list[OID] = []
        self.opened: defer.Deferred[AgentxProtocol] = defer.Deferred()
        self.lost: defer.Deferred[BaseException] = defer.Deferred()
        self._framer = P.Framer(max_payload)
        self._pending: dict[int, _Pending] = {}
        self._next_packet = 0
        self._broken = False
        self._connected = False
        self._pinger: LoopingCall | None = None
        self._warnings = 0
        self._eager = False

    # -- connection --------------------------------------------------------

    def connectionMade(self) -> None:
        """Open the session, then register every subtree."""
        self._connected = True
        self._eager = all(
            hasattr(self.transport, name)
            for name in ("socket", "_tempDataLen", "dataBuffer", "offset", "connected")
        )
        self.counters.connections += 1
        d = self._request(
            P.OpenPdu(
                timeout=self.timeout,
                id=self.agent_oid,
                descr=self.description.encode("utf-8"),
            ),
            "Open",
        )
        d.addCallback(self._on_open)
        d.addCallbacks(self._on_registered, self._on_open_failed)

    def _on_open(self, response: P.ResponsePdu) -> defer.Deferred[list[Any]]:
        self.session_id = response.session_id
        self.counters.sessions += 1
        requests = [
            self._request(
                P.RegisterPdu(
                    priority=self.priority, subtree=subtree, context=self.handler.context
                ),
                f"Register {format_oid(subtree)}",
            )
            for subtree in self.handler.subtrees
        ]
        return defer.DeferredList(requests, consumeErrors=True)

    def _on_registered(self, results: list[tuple[bool, Any]]) -> None:
        registered = []
        for subtree, (ok, result) in zip(self.handler.subtrees, results, strict=True):
            if ok:
                registered.append(subtree)
            else:
                self.log.error(
                    "AgentX master did not register {subtree}: {why}",
                    subtree=format_oid(subtree),
                    why=result.getErrorMessage(),
                )
        self.registered = registered
        if not registered:
            self._fail_open(Failure(AgentxError("the master registered no subtree")))
            return
        if self.ping_interval > 0:
            self._pinger = LoopingCall(self._ping)
            self._pinger.clock = self.clock
            self._pinger.start(self.ping_interval, now=False).addErrback(
                lambda f: self.log.failure("AgentX ping loop failed", f)
            )
        if not self.opened.called:
            self.opened.callback(self)

    def _on_open_failed(self, failure: Failure) -> None:
        self._fail_open(failure)

    def _fail_open(self, failure: Failure) -> None:
        if not self.opened.called:
            self.opened.errback(failure)
        self._drop()

    def _drop(self) -> None:
        """End the connection at once (it cannot be trusted or is not wanted)."""
        if self.transport is None or not self._connected:
            return
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        """Fail every request still waiting, stop pinging, tell :attr:`lost`."""
        self._connected = False
        self._broken = True
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if p.timer is not None and p.timer.active():
                p.timer.cancel()
            p.deferred.errback(AgentxNotConnectedError(f"connection lost before {p.what} answered"))
        if not self.opened.called:
            self.opened.errback(
                AgentxNotConnectedError("connection lost before the session opened")
            )
        self.session_id = None
        if not self.lost.called:
            self.lost.callback(reason.value)

    # -- input ---------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Frame the stream and handle each PDU; a broken stream ends the connection."""
        if self._broken:
            return
        try:
            frames = self._framer.feed(data)
        except P.AgentxParseError as e:
            self.counters.parse_errors += 1
            self._broken = True
            self.log.warn(
                "AgentX stream from the master is unreadable ({problem}); closing", problem=str(e)
            )
            if self.session_id is not None:
                self._send(P.ClosePdu(reason=P.CloseReason.PARSE_ERROR, session_id=self.session_id))
            self._drop()
            return
        for header, raw in frames:
            if self._broken:
                return
            if (
                (header.type == P.PduType.GET or header.type == P.PduType.GETNEXT)
                and header.session_id == self.session_id
                and not header.flags & P.NON_DEFAULT_CONTEXT
                and self.handler.context is None
            ):
                try:
                    answer = self.handler.answer_encoded(header, raw)
                except Exception:
                    self.counters.handler_errors += 1
                    self.log.failure("AgentX {pdu_type} not answered", pdu_type=header.type)
                    answer = None
                if answer is not None:
                    self._write(answer)
                    continue
            try:
                request = P.decode_body(raw, P.HEADER_SIZE, header)
            except P.AgentxParseError as e:
                self._on_bad_pdu(header, e)
                continue
            try:
                self._on_pdu(request)
            except Exception:
                self.counters.handler_errors += 1
                self.log.failure("AgentX {pdu_type} PDU not handled", pdu_type=request.TYPE.name)
                if request.TYPE in _ANSWERED:
                    self._send(
                        P.ResponsePdu(
                            session_id=request.session_id,
                            transaction_id=request.transaction_id,
                            packet_id=request.packet_id,
                            error=ResponseError.PROCESSING_ERROR,
                        )
                    )

    def _on_bad_pdu(self, header: P.Header, error: P.AgentxParseError) -> None:
        self.counters.parse_errors += 1
        self._warn("malformed AgentX PDU from the master: {problem}", str(error))
        if header.type == P.PduType.RESPONSE:
            p = self._pending.pop(header.packet_id, None)
            if p is not None:
                self._settle(p, Failure(AgentxError(f"unreadable answer to {p.what}: {error}")))
        elif header.type in _ANSWERED:
            self._send(
                P.ResponsePdu(
                    session_id=header.session_id,
                    transaction_id=header.transaction_id,
                    packet_id=header.packet_id,
                    error=ResponseError.PARSE_ERROR,
                )
            )

    def _warn(self, fmt: str, problem: str) -> None:
        """Log a problem of the master's input, at most :data:`WARNINGS_PER_CONNECTION` times."""
        self._warnings += 1
        if self._warnings <= WARNINGS_PER_CONNECTION:
            self.log.warn(fmt, problem=problem)
            if self._warnings == WARNINGS_PER_CONNECTION:
                self.log.warn("further problems of this AgentX connection are only counted")

    def _on_pdu(self, request: P.Pdu) -> None:
        if isinstance(request, P.ResponsePdu):
            p = self._pending.pop(request.packet_id, None)
            if p is None:
                self.counters.protocol_errors += 1
                return
            if request.error:
                self.counters.refused += 1
                self._settle(p, Failure(AgentxResponseError(p.what, request.error)))
            else:
                self._settle(p, request)
            return
        if isinstance(request, P.ClosePdu):
            try:
                reason = P.CloseReason(request.reason).name
            except ValueError:
                reason = str(request.reason)
            self.log.info("AgentX master closed the session ({reason})", reason=reason)
            self._broken = True
            self._drop()
            return
        if self.session_id is None or request.session_id != self.session_id:
            self.counters.protocol_errors += 1
            if request.TYPE in _ANSWERED:
                self._send(
                    P.ResponsePdu(
                        session_id=request.session_id,
                        transaction_id=request.transaction_id,
                        packet_id=request.packet_id,
                        error=ResponseError.NOT_OPEN,
                    )
                )
            return
        response = self.handler.handle(request)
        if response is not None:
            self._send(response)
        elif not isinstance(request, P.CleanupSetPdu):
            self._warn(
                "AgentX master sent a {problem} PDU, which subagents do not answer",
                request.TYPE.name,
            )

    # -- output --------------------------------------------------------------

    def _send(self, message: P.Pdu) -> None:
        if self.transport is not None and self._connected:
            self._write(P.encode(message))

    def _write(self, data: bytes) -> None:
        """Write ``data``, straight to the socket when nothing is waiting before it.

        The master waits for each answer before it sends the next request,
        so the latency of one answer bounds the request rate. Twisted's
        transports write on the next turn of the reactor; when their buffer
        is empty, sending at once saves that turn. Whatever the socket does
        not take goes through ``transport.write`` as usual, which also
        reports errors.
        """
        t: Any = self.transport
        if self._eager:
            try:
                idle = (
                    not t._tempDataLen
                    and t.offset == len(t.dataBuffer)
                    and t.connected
                    and not t.disconnecting
                )
            except AttributeError:
                self._eager = False
                idle = False
            if idle:
                try:
                    sent = t.socket.send(data)
                except OSError:
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
        t.write(data)

    def _request(self, message: P.Pdu, what: str) -> defer.Deferred[P.ResponsePdu]:
        """Send a request of the subagent; the Deferred fires with the master's Response."""
        if not self._connected or (self._broken and not isinstance(message, P.ClosePdu)):
            return defer.fail(AgentxNotConnectedError(f"no session for {what}"))
        self._next_packet = (self._next_packet + 1) & 0xFFFFFFFF
        message.packet_id = self._next_packet
        message.session_id = self.session_id or 0
        d: defer.Deferred[P.ResponsePdu] = defer.Deferred()
        pending = _Pending(what, d, None)
        pending.timer = self.clock.callLater(
            self.request_timeout, self._timed_out, self._next_packet
        )
        self._pending[self._next_packet] = pending
        self._send(message)
        return d

    def _timed_out(self, packet_id: int) -> None:
        p = self._pending.pop(packet_id, None)
        if p is None:
            return
        p.timer = None
        self.counters.timeouts += 1
        self._settle(
            p,
            Failure(AgentxTimeoutError(f"no answer to {p.what} in {self.request_timeout:g} s")),
        )

    @staticmethod
    def _settle(p: _Pending, result: P.ResponsePdu | Failure) -> None:
        if p.timer is not None and p.timer.active():
            p.timer.cancel()
        if isinstance(result, Failure):
            p.deferred.errback(result)
        else:
            p.deferred.callback(result)

    def _ping(self) -> None:
        d = self._request(P.PingPdu(context=self.handler.context), "Ping")

        def failed(failure: Failure) -> None:
            if failure.check(AgentxTimeoutError):
                self.log.warn(
                    "AgentX master did not answer a Ping in {timeout:g} s; dropping the session",
                    timeout=self.request_timeout,
                )
                self._drop()
            elif not failure.check(AgentxNotConnectedError):
                self.log.warn("AgentX Ping failed: {why}", why=failure.getErrorMessage())

        d.addErrback(failed)

    def send_notify(
        self,
        varbinds: Sequence[VarBind | tuple[OID, Value]],
        context: bytes | None = None,
    ) -> defer.Deferred[P.ResponsePdu]:
        """Ask the master to send a notification; fires with its Response.

        ``varbinds`` start with ``snmpTrapOID.0`` (optionally preceded by
        ``sysUpTime.0``) as RFC 2741 §6.2.10 says; each is a VarBind or an
        ``(oid, Value)`` pair. Fails with :class:`AgentxError` when the
        master refuses, does not answer, or there is no session.
        """
        if self.session_id is None:
            return defer.fail(AgentxNotConnectedError("no AgentX session to send a Notify on"))
        converted = [vb if isinstance(vb, VarBind) else varbind(*vb) for vb in varbinds]
        self.counters.notifies += 1
        return self._request(
            P.NotifyPdu(varbinds=converted, context=context or self.handler.context), "Notify"
        )

    def close(self, reason: int = P.CloseReason.SHUTDOWN) -> defer.Deferred[None]:
        """Close the session and the connection; fires once the connection is gone."""
        if not self._connected:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        self.lost.addBoth(lambda _: done.callback(None) if not done.called else None)
        if self.session_id is None:
            self._drop()
            return done
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()

        def hang_up(_: object) -> None:
            if self.transport is not None:
                self.transport.loseConnection()

        self._request(P.ClosePdu(reason=reason), "Close").addBoth(hang_up)
        return done

    @property
    def is_open(self) -> bool:
        """True while the session is open and registered."""
        return self._connected and self.opened.called and self.session_id is not None
