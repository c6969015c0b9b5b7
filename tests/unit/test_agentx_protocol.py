"""The AgentX subagent protocol on an in-memory transport with a fake clock.

A fake master reads what the protocol writes (decoded with the PDU codec)
and answers; every test checks the PDUs on the wire, not internals.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from dnaagent.snmp.agentx import pdu as P
from dnaagent.snmp.agentx.pdu import ResponseError, SearchRange, VarBind, VarType
from dnaagent.snmp.agentx.protocol import (
    AgentxNotConnectedError,
    AgentxProtocol,
    AgentxResponseError,
    AgentxTimeoutError,
    RequestHandler,
)
from dnaagent.snmp.tree import OID, Kind, MibTree, Value
from dnaagent.snmp.writable import WRONG_VALUE, Writables

A: OID = (1, 3, 6, 1, 4, 1, 99, 1)
B: OID = (1, 3, 6, 1, 4, 1, 99, 3)
GAP: OID = (1, 3, 6, 1, 4, 1, 99, 2)


def sample_tree() -> MibTree:
    """Instances in two registered subtrees (A, B) and in an unregistered gap between them."""
    tree = MibTree()
    tree.set(A + (1, 0), Value.octets("name"))
    for i in (1, 2, 3):
        tree.set(A + (2, 1, 1, i), Value.integer(i))
        tree.set(A + (2, 1, 2, i), Value.counter64(2**40 + i))
    tree.set(GAP + (1, 0), Value.integer(99))
    tree.set(B + (1, 0), Value.ipaddress(b"\x7f\0\0\1"))
    tree.set(B + (2, 0), Value.oid((1, 3, 6)))
    return tree


class Recorder:
    """A write handler that records its calls; fails where told to."""

    def __init__(self, name: str, calls: list, test_status: int = 0, commit_status: int = 0):
        self.name = name
        self.calls = calls
        self.test_status = test_status
        self.commit_status = commit_status
        self.raise_on: str | None = None

    def test(self, oid: OID, value: Value) -> int:
        """Record and answer the test phase."""
        self.calls.append(("test", self.name, value.value))
        if self.raise_on == "test":
            raise RuntimeError("boom")
        return self.test_status

    def commit(self, oid: OID, value: Value) -> int:
        """Record and answer the commit phase."""
        self.calls.append(("commit", self.name, value.value))
        if self.raise_on == "commit":
            raise RuntimeError("boom")
        return self.commit_status

    def undo(self, oid: OID, value: Value) -> None:
        """Record the undo phase."""
        self.calls.append(("undo", self.name, value.value))


class Master:
    """The master side of one connection: decode what the subagent wrote, answer it."""

    def __init__(self, proto: AgentxProtocol, transport: StringTransport) -> None:
        self.proto = proto
        self.transport = transport
        self.framer = P.Framer()

    def read(self) -> list[P.Pdu]:
        """Every PDU the subagent wrote since the last read."""
        data = self.transport.value()
        self.transport.clear()
        return [P.decode(raw) for _, raw in self.framer.feed(data)]

    def one(self) -> P.Pdu:
        """Exactly one PDU written since the last read."""
        pdus = self.read()
        assert len(pdus) == 1, pdus
        return pdus[0]

    def send(self, pdu: P.Pdu, big: bool = True) -> None:
        """Write a PDU to the subagent."""
        self.proto.dataReceived(P.encode(pdu, big))

    def answer(self, request: P.Pdu, error: int = 0, session: int | None = None) -> None:
        """Answer a subagent request with a Response."""
        self.send(
            P.ResponsePdu(
                session_id=request.session_id if session is None else session,
                packet_id=request.packet_id,
                error=error,
            )
        )

    def ask(self, request: P.Pdu, big: bool = True) -> P.ResponsePdu:
        """Send a request in the session and return the subagent's Response."""
        request.session_id = self.proto.session_id or 0
        self.send(request, big)
        response = self.one()
        assert isinstance(response, P.ResponsePdu)
        assert response.packet_id == request.packet_id
        return response


def connect(
    tree: MibTree | None = None,
    writables: Writables | None = None,
    subtrees: tuple[OID, ...] = (A, B),
    context: bytes | None = None,
    ping_interval: float = 0.0,
) -> tuple[AgentxProtocol, Master, task.Clock]:
    """A protocol connected to an in-memory transport, before the Open is answered."""
    clock = task.Clock()
    handler = RequestHandler(tree or sample_tree(), writables, subtrees, context=context)
    proto = AgentxProtocol(
        handler,
        clock,
        description="dnaagent test",
        agent_oid=A,
        timeout=7,
        priority=100,
        request_timeout=3.0,
        ping_interval=ping_interval,
    )
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, Master(proto, transport), clock


def opened(**kw) -> tuple[AgentxProtocol, Master, task.Clock]:
    """A protocol whose session 42 is open with every subtree registered."""
    proto, master, clock = connect(**kw)
    master.answer(master.one(), session=42)
    for register in master.read():
        master.answer(register)
    assert proto.is_open
    return proto, master, clock


def lose(proto: AgentxProtocol) -> None:
    """Tell the protocol its connection is gone."""
    proto.connectionLost(Failure(ConnectionLost()))


# -- session -----------------------------------------------------------------


def test_open_then_register_every_subtree() -> None:
    """Open carries timeout, id and description; each subtree is registered in the new session."""
    proto, master, _ = connect(context=b"ctx")
    open_pdu = master.one()
    assert isinstance(open_pdu, P.OpenPdu)
    assert (open_pdu.timeout, open_pdu.id, open_pdu.descr) == (7, A, b"dnaagent test")
    results: list = []
    proto.opened.addBoth(results.append)
    master.answer(open_pdu, session=42)
    registers = master.read()
    assert [type(r) for r in registers] == [P.RegisterPdu, P.RegisterPdu]
    assert [r.subtree for r in registers] == [A, B]
    assert all(r.session_id == 42 and r.priority == 100 for r in registers)
    assert all(r.context == b"ctx" for r in registers)
    assert not results
    for r in registers:
        master.answer(r)
    assert results == [proto] and proto.registered == [A, B] and proto.session_id == 42


def test_open_refused_fails_and_drops_the_connection() -> None:
    """A refused Open fails ``opened`` with the master's error and aborts the connection."""
    proto, master, _ = connect()
    failures: list = []
    proto.opened.addErrback(failures.append)
    master.answer(master.one(), error=ResponseError.OPEN_FAILED)
    assert failures[0].check(AgentxResponseError)
    assert failures[0].value.error == ResponseError.OPEN_FAILED
    assert master.transport.disconnecting


def test_open_unanswered_times_out() -> None:
    """Without a Response within request_timeout, ``opened`` fails with a timeout."""
    proto, master, clock = connect()
    failures: list = []
    proto.opened.addErrback(failures.append)
    clock.advance(2.9)
    assert not failures
    clock.advance(0.2)
    assert failures[0].check(AgentxTimeoutError)
    assert proto.counters.timeouts == 1 and master.transport.disconnecting


def test_partly_refused_registration_keeps_the_rest() -> None:
    """One refused subtree is logged and counted; the session opens with the other one."""
    proto, master, _ = connect()
    master.answer(master.one(), session=5)
    first, second = master.read()
    with capturedLogs() as logs:
        master.answer(first, error=ResponseError.DUPLICATE_REGISTRATION)
        master.answer(second)
    assert proto.is_open and proto.registered == [B]
    assert proto.counters.refused == 1
    assert any("DUPLICATE_REGISTRATION" in str(e.get("why")) for e in logs)


def test_no_registration_no_session() -> None:
    """When every registration is refused the session is given up."""
    proto, master, _ = connect(subtrees=(A,))
    failures: list = []
    proto.opened.addErrback(failures.append)
    master.answer(master.one(), session=5)
    master.answer(master.one(), error=ResponseError.REQUEST_DENIED)
    assert failures and master.transport.disconnecting


def test_connection_lost_fails_waiting_requests() -> None:
    """Requests in flight fail with AgentxNotConnectedError when the connection goes."""
    proto, master, _ = opened()
    results: list = []
    proto.send_notify([VarBind((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), VarType.OBJECT_IDENTIFIER, A)])
    proto.send_notify([]).addErrback(results.append)
    lost: list = []
    proto.lost.addCallback(lost.append)
    lose(proto)
    assert results[0].check(AgentxNotConnectedError)
    assert isinstance(lost[0], ConnectionLost)
    assert not proto.is_open
    proto.send_notify([]).addErrback(results.append)
    assert results[1].check(AgentxNotConnectedError)


# -- reads -------------------------------------------------------------------


def test_get_instances_and_exceptions() -> None:
    """Get answers values, noSuchInstance beside existing instances, noSuchObject elsewhere."""
    _, master, _ = opened()
    response = master.ask(
        P.GetPdu(
            packet_id=11,
            ranges=[
                SearchRange(A + (1, 0)),
                SearchRange(A + (2, 1, 2, 3)),
                SearchRange(B + (1, 0)),
                SearchRange(A + (1, 5)),
                SearchRange(A + (9, 0)),
                SearchRange(GAP + (1, 0)),
            ],
        )
    )
    assert response.error == 0
    assert [(vb.type, vb.value) for vb in response.varbinds] == [
        (VarType.OCTET_STRING, b"name"),
        (VarType.COUNTER64, 2**40 + 3),
        (VarType.IP_ADDRESS, b"\x7f\0\0\1"),
        (VarType.NO_SUCH_INSTANCE, None),
        (VarType.NO_SUCH_OBJECT, None),
        (VarType.NO_SUCH_OBJECT, None),  # instance exists but is not registered
    ]
    assert [vb.oid for vb in response.varbinds][3] == A + (1, 5)


def test_getnext_ranges_include_end_and_registered_scope() -> None:
    """GetNext honours include, stops at the end OID, skips unregistered instances."""
    _, master, _ = opened()
    response = master.ask(
        P.GetNextPdu(
            packet_id=3,
            ranges=[
                SearchRange(A + (1, 0), (), True),  # included: itself
                SearchRange(A + (1, 0), (), False),  # next: first column
                SearchRange(A + (2, 1, 1, 3), A + (2, 1, 2)),  # end of range reached
                SearchRange(A + (2, 1, 2, 3), B + (9,)),  # skips GAP into B
                SearchRange(B + (2, 0)),  # nothing after: endOfMibView
                SearchRange(A, (), False),  # from the registration point
            ],
        ),
        big=False,
    )
    got = [(vb.oid, vb.type) for vb in response.varbinds]
    assert got == [
        (A + (1, 0), VarType.OCTET_STRING),
        (A + (2, 1, 1, 1), VarType.INTEGER),
        (A + (2, 1, 1, 3), VarType.END_OF_MIB_VIEW),
        (B + (1, 0), VarType.IP_ADDRESS),
        (B + (2, 0), VarType.END_OF_MIB_VIEW),
        (A + (1, 0), VarType.OCTET_STRING),
    ]


def test_getbulk_non_repeaters_and_repetitions() -> None:
    """GetBulk: non-repeaters once, then repeaters interleaved, stopping when all end."""
    _, master, _ = opened()
    response = master.ask(
        P.GetBulkPdu(
            packet_id=4,
            non_repeaters=1,
            max_repetitions=10,
            ranges=[
                SearchRange(A),
                SearchRange(A + (2, 1, 1), A + (2, 1, 2)),
                SearchRange(A + (2, 1, 2), A + (2, 1, 3)),
            ],
        )
    )
    got = [(vb.oid[len(A) :], vb.type == VarType.END_OF_MIB_VIEW) for vb in response.varbinds]
    assert got == [
        ((1, 0), False),
        ((2, 1, 1, 1), False),
        ((2, 1, 2, 1), False),
        ((2, 1, 1, 2), False),
        ((2, 1, 2, 2), False),
        ((2, 1, 1, 3), False),
        ((2, 1, 2, 3), False),
        ((2, 1, 1, 3), True),
        ((2, 1, 2, 3), True),
    ]
    limited = master.ask(
        P.GetBulkPdu(packet_id=5, max_repetitions=2, ranges=[SearchRange(A + (2,))])
    )
    assert [vb.oid for vb in limited.varbinds] == [A + (2, 1, 1, 1), A + (2, 1, 1, 2)]
    nothing = master.ask(P.GetBulkPdu(packet_id=6, non_repeaters=5, ranges=[SearchRange(B)]))
    assert [vb.oid for vb in nothing.varbinds] == [B + (1, 0)]


oid_parts = st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple)


@settings(max_examples=300)
@given(
    st.sets(oid_parts, max_size=30),
    st.lists(oid_parts, min_size=1, max_size=3),
    oid_parts,
    st.one_of(st.just(()), oid_parts),
    st.booleans(),
)
def test_getnext_matches_a_brute_force_reference(instances, regs, start, end, include) -> None:
    """For random trees, registrations and ranges, GetNext is the first in-scope match."""
    tree = MibTree()
    for oid in instances:
        tree.set(oid, Value.integer(len(oid)))
    handler = RequestHandler(tree, subtrees=regs)

    def ok(o: OID) -> bool:
        return (
            (o >= start if include else o > start)
            and (not end or o < end)
            and any(o[: len(r)] == r for r in regs)
        )

    expected = min((o for o in instances if ok(o)), default=None)
    vb = handler.next(start, end, include)
    if expected is None:
        assert vb.type == VarType.END_OF_MIB_VIEW and vb.oid == start
    else:
        assert vb.oid == expected and vb.value == len(expected)


def test_other_context_is_unsupported() -> None:
    """A request for a context not registered is answered with unsupportedContext."""
    _, master, _ = opened(context=b"ctx")
    wrong = master.ask(P.GetPdu(packet_id=8, ranges=[SearchRange(A + (1, 0))]))
    assert wrong.error == ResponseError.UNSUPPORTED_CONTEXT
    right = master.ask(P.GetPdu(packet_id=9, context=b"ctx", ranges=[SearchRange(A + (1, 0))]))
    assert right.error == 0 and right.varbinds[0].value == b"name"


def test_request_outside_the_session_is_not_open() -> None:
    """A request carrying another session ID gets notOpen."""
    _, master, _ = opened()
    master.send(P.GetPdu(session_id=7, packet_id=1, ranges=[SearchRange(A + (1, 0))]))
    response = master.one()
    assert isinstance(response, P.ResponsePdu) and response.error == ResponseError.NOT_OPEN


# -- writes ------------------------------------------------------------------


def writable_session(**recorder_kw) -> tuple[AgentxProtocol, Master, list, dict]:
    """An open session with write handlers on A.1.0 and the A.2.1.1 column."""
    calls: list = []
    handlers = {
        "name": Recorder("name", calls),
        "col": Recorder("col", calls, **recorder_kw),
    }
    writables = Writables()
    writables.register(A + (1, 0), handlers["name"])
    writables.register(A + (2, 1, 1), handlers["col"])
    writables.register(GAP, Recorder("gap", calls))
    proto, master, _ = opened(writables=writables)
    return proto, master, calls, handlers


SET = [
    VarBind(A + (1, 0), VarType.OCTET_STRING, b"new"),
    VarBind(A + (2, 1, 1, 2), VarType.INTEGER, 20),
]


def test_set_test_commit_cleanup() -> None:
    """TestSet tests every varbind; CommitSet commits them; CleanupSet gets no Response."""
    proto, master, calls, _ = writable_session()
    assert master.ask(P.TestSetPdu(transaction_id=70, packet_id=1, varbinds=SET)).error == 0
    assert master.ask(P.CommitSetPdu(transaction_id=70, packet_id=2)).error == 0
    master.send(P.CleanupSetPdu(session_id=42, transaction_id=70, packet_id=3))
    assert master.read() == []
    assert calls == [
        ("test", "name", b"new"),
        ("test", "col", 20),
        ("commit", "name", b"new"),
        ("commit", "col", 20),
    ]
    assert proto.handler.pending_transactions() == 0


def test_set_refusals_name_the_varbind() -> None:
    """Test failures return the handler's status, wrongType or notWritable with a 1-based index."""
    _, master, calls, _ = writable_session(test_status=WRONG_VALUE)
    refused = master.ask(P.TestSetPdu(transaction_id=1, packet_id=1, varbinds=SET))
    assert (refused.error, refused.index) == (WRONG_VALUE, 2)
    null = master.ask(
        P.TestSetPdu(transaction_id=2, packet_id=2, varbinds=[VarBind(A + (1, 0), VarType.NULL)])
    )
    assert (null.error, null.index) == (ResponseError.WRONG_TYPE, 1)
    for oid in (A + (5, 0), GAP + (1, 0)):  # no handler / handler outside the registration
        vb = VarBind(oid, VarType.INTEGER, 1)
        nw = master.ask(P.TestSetPdu(transaction_id=3, packet_id=3, varbinds=[SET[0], vb]))
        assert (nw.error, nw.index) == (ResponseError.NOT_WRITABLE, 2)
    assert not any(c[1] == "gap" for c in calls)


def test_commit_failure_then_undo_in_reverse_order() -> None:
    """A failed commit reports its index; UndoSet undoes only what was committed."""
    _, master, calls, _ = writable_session(commit_status=ResponseError.COMMIT_FAILED)
    varbinds = [SET[0], SET[1], VarBind(A + (1, 0), VarType.OCTET_STRING, b"again")]
    assert master.ask(P.TestSetPdu(transaction_id=9, packet_id=1, varbinds=varbinds)).error == 0
    commit = master.ask(P.CommitSetPdu(transaction_id=9, packet_id=2))
    assert (commit.error, commit.index) == (ResponseError.COMMIT_FAILED, 2)
    calls.clear()
    assert master.ask(P.UndoSetPdu(transaction_id=9, packet_id=3)).error == 0
    assert calls == [("undo", "name", b"new")]


def test_handler_exceptions_become_errors_and_are_logged() -> None:
    """A raising handler yields genErr (test) or commitFailed (commit), logged and counted."""
    proto, master, _, handlers = writable_session()
    handlers["col"].raise_on = "test"
    with capturedLogs() as logs:
        r = master.ask(P.TestSetPdu(transaction_id=1, packet_id=1, varbinds=SET))
    assert (r.error, r.index) == (ResponseError.GEN_ERR, 2)
    assert any(e.get("log_failure") is not None for e in logs)
    handlers["col"].raise_on = "commit"
    master.ask(P.TestSetPdu(transaction_id=2, packet_id=2, varbinds=SET))
    with capturedLogs():
        c = master.ask(P.CommitSetPdu(transaction_id=2, packet_id=3))
    assert (c.error, c.index) == (ResponseError.COMMIT_FAILED, 2)
    assert proto.counters.handler_errors == 2


def test_commit_without_test_is_a_processing_error() -> None:
    """CommitSet or UndoSet of an unknown transaction gets processingError."""
    _, master, _, _ = writable_session()
    assert master.ask(P.CommitSetPdu(transaction_id=5, packet_id=1)).error == 268
    assert master.ask(P.UndoSetPdu(transaction_id=5, packet_id=2)).error == 268


def test_transactions_are_bounded() -> None:
    """A master that never cleans up cannot make the subagent remember unbounded state."""
    proto, master, _, _ = writable_session()
    for i in range(200):
        master.ask(P.TestSetPdu(transaction_id=i, packet_id=i, varbinds=SET[:1]))
    assert proto.handler.pending_transactions() == 64


# -- keepalive, notify, close --------------------------------------------------


def test_ping_keeps_the_session_and_a_silent_master_is_dropped() -> None:
    """Pings go out every interval; one unanswered for request_timeout drops the connection."""
    proto, master, clock = opened(ping_interval=10.0)
    clock.advance(10)
    ping = master.one()
    assert isinstance(ping, P.PingPdu) and ping.session_id == 42
    master.answer(ping)
    clock.advance(5)
    assert not master.transport.disconnecting
    clock.advance(5)
    assert isinstance(master.one(), P.PingPdu)
    with capturedLogs() as logs:
        clock.advance(3)
    assert master.transport.disconnecting
    assert any("did not answer a Ping" in e.get("log_format", "") for e in logs)


def test_notify_sends_varbinds_and_reports_the_answer() -> None:
    """send_notify encodes VarBinds and (oid, Value) pairs; the Deferred follows the Response."""
    proto, master, _ = opened()
    trap_oid = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
    results: list = []
    proto.send_notify(
        [VarBind(trap_oid, VarType.OBJECT_IDENTIFIER, A + (0, 1)), (A + (1, 0), Value.octets("x"))]
    ).addBoth(results.append)
    notify = master.one()
    assert isinstance(notify, P.NotifyPdu) and notify.session_id == 42
    assert notify.varbinds[1] == VarBind(A + (1, 0), VarType.OCTET_STRING, b"x")
    master.answer(notify)
    assert isinstance(results[0], P.ResponsePdu)
    proto.send_notify([]).addErrback(results.append)
    master.answer(master.one(), error=ResponseError.PROCESSING_ERROR)
    assert results[1].check(AgentxResponseError)


def test_close_sends_close_then_disconnects() -> None:
    """close() sends Close(shutdown), waits for the Response, then loses the connection."""
    proto, master, _ = opened()
    done: list = []
    proto.close().addCallback(done.append)
    close = master.one()
    assert isinstance(close, P.ClosePdu) and close.reason == P.CloseReason.SHUTDOWN
    assert not master.transport.disconnecting
    master.answer(close)
    assert master.transport.disconnecting and not done
    lose(proto)
    assert done == [None]


def test_master_close_ends_the_connection() -> None:
    """A Close from the master drops the connection."""
    proto, master, _ = opened()
    master.send(P.ClosePdu(session_id=42, reason=P.CloseReason.BY_MANAGER))
    assert master.transport.disconnecting


# -- malformed input -----------------------------------------------------------


def test_malformed_request_gets_parse_error_and_the_session_goes_on() -> None:
    """A request with a sound header but a bad body is answered parseError; the next works."""
    proto, master, _ = opened()
    raw = bytearray(P.encode(P.GetPdu(session_id=42, packet_id=77, ranges=[SearchRange(A)])))
    raw[22] = 7  # include byte of the start OID
    proto.dataReceived(bytes(raw))
    bad = master.one()
    assert isinstance(bad, P.ResponsePdu)
    assert (bad.packet_id, bad.error) == (77, ResponseError.PARSE_ERROR)
    good = master.ask(P.GetPdu(packet_id=78, ranges=[SearchRange(A + (1, 0))]))
    assert good.varbinds[0].value == b"name"
    assert proto.counters.parse_errors == 1


def test_unreadable_stream_closes_with_parse_error() -> None:
    """A header that breaks framing sends Close(parseError), aborts, and ignores what follows."""
    proto, master, _ = opened()
    proto.dataReceived(b"\x02" + bytes(19))
    close = master.one()
    assert isinstance(close, P.ClosePdu) and close.reason == P.CloseReason.PARSE_ERROR
    assert master.transport.disconnecting
    proto.dataReceived(P.encode(P.GetPdu(session_id=42, ranges=[SearchRange(A)])))
    assert master.read() == []


def test_oversized_payload_is_refused_before_it_is_buffered() -> None:
    """A header announcing more than the payload limit ends the connection at once."""
    proto, master, _ = opened()
    proto.dataReceived(bytes([1, 5, 0x10, 0]) + struct.pack(">IIII", 42, 0, 1, 1 << 30))
    assert master.transport.disconnecting


def test_unexpected_response_is_counted() -> None:
    """A Response to nothing asked is ignored and counted."""
    proto, master, _ = opened()
    master.send(P.ResponsePdu(session_id=42, packet_id=999))
    assert master.read() == [] and proto.counters.protocol_errors == 1


@pytest.mark.parametrize("big", [True, False])
def test_requests_in_either_byte_order_are_answered(big: bool) -> None:
    """Requests in network or host byte order get the same answer."""
    _, master, _ = opened()
    r = master.ask(P.GetPdu(packet_id=1, ranges=[SearchRange(B + (2, 0))]), big=big)
    assert r.varbinds[0] == VarBind(B + (2, 0), VarType.OBJECT_IDENTIFIER, (1, 3, 6))


def test_value_kinds_map_to_agentx_types() -> None:
    """Every tree Kind is served with its AgentX type, and SET values come back as tree Values."""
    from dnaagent.snmp.agentx.protocol import value_of, varbind

    samples = [
        Value.integer(-5),
        Value.octets("t"),
        Value.oid((1, 2)),
        Value.ipaddress(b"\1\2\3\4"),
        Value.counter32(7),
        Value.gauge32(8),
        Value.timeticks(1),
        Value.counter64(2**63),
        Value(Kind.OPAQUE, b"\x9f"),
    ]
    for v in samples:
        vb = varbind((1, 1), v)
        assert P.decode(P.encode(P.ResponsePdu(varbinds=[vb]))).varbinds == [vb]
        assert value_of(vb) == v


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(oid_parts, st.one_of(st.just(()), oid_parts), st.booleans()),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
    st.booleans(),
)
def test_encoded_answers_equal_the_decoded_path(ranges, getnext, big) -> None:
    """The quick Get/GetNext answer is byte for byte the Response of the full path."""
    tree = MibTree()
    for oid in [(1, 1), (1, 2, 3), (2, 0), (2, 4, 1), (3, 3)]:
        tree.set(oid, Value.integer(sum(oid)))
    handler = RequestHandler(tree, subtrees=[(1,), (2, 4)])
    cls = P.GetNextPdu if getnext else P.GetPdu
    request = cls(
        session_id=3, transaction_id=4, packet_id=5, ranges=[SearchRange(*r) for r in ranges]
    )
    raw = P.encode(request, big)
    header = P.decode_header(raw)
    assert handler.answer_encoded(header, raw) == P.encode(handler.handle(P.decode(raw)))
