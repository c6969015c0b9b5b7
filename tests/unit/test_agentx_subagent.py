"""The AgentX subagent service: addresses, connection, backoff, reconnection, stop.

The master is a fake endpoint: each ``connect`` is answered by the test,
either with a failure or with a protocol connected to a StringTransport,
and time is a ``task.Clock``.
"""

from __future__ import annotations

import dataclasses

import pytest
from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from dnaagent.snmp.agentx import pdu as P
from dnaagent.snmp.agentx.protocol import AgentxNotConnectedError, AgentxProtocol
from dnaagent.snmp.agentx.settings import AgentxSection, MasterAddress, parse_master
from dnaagent.snmp.agentx.subagent import (
    CONNECTING,
    OPEN,
    STOPPED,
    WAITING,
    AgentxSubagent,
    master_endpoint,
)
from dnaagent.snmp.tree import MibTree, Value

ROOT = (1, 3, 6, 1, 4, 1, 99)


class FakeEndpoint:
    """Records connection attempts; the test answers each one."""

    def __init__(self) -> None:
        self.attempts: list[tuple[object, defer.Deferred]] = []

    def connect(self, factory) -> defer.Deferred:
        """Remember the attempt; nothing happens until the test says so."""
        d: defer.Deferred = defer.Deferred()
        self.attempts.append((factory, d))
        return d

    def refuse(self) -> None:
        """Fail the last attempt as if nobody listened."""
        self.attempts[-1][1].errback(Failure(ConnectionRefusedError()))

    def accept(self) -> tuple[AgentxProtocol, StringTransport]:
        """Connect the last attempt to an in-memory transport."""
        factory, d = self.attempts[-1]
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        d.callback(proto)
        return proto, transport


def read(transport: StringTransport) -> list[P.Pdu]:
    """The PDUs written to ``transport`` since the last read."""
    data = transport.value()
    transport.clear()
    return [P.decode(raw) for _, raw in P.Framer().feed(data)]


def handshake(proto: AgentxProtocol, transport: StringTransport, session: int = 9) -> None:
    """Answer the Open and every Register."""
    (open_pdu,) = read(transport)
    proto.dataReceived(P.encode(P.ResponsePdu(session_id=session, packet_id=open_pdu.packet_id)))
    for register in read(transport):
        proto.dataReceived(
            P.encode(P.ResponsePdu(session_id=session, packet_id=register.packet_id))
        )


def make(**overrides) -> tuple[AgentxSubagent, FakeEndpoint, task.Clock]:
    """A subagent on a fake endpoint and clock."""
    section = dataclasses.replace(
        AgentxSection(enabled=True, reconnect_interval=1.0, reconnect_max=8.0, ping_interval=0),
        **overrides,
    )
    tree = MibTree()
    tree.set(ROOT + (1, 0), Value.integer(1))
    endpoint = FakeEndpoint()
    clock = task.Clock()
    service = AgentxSubagent(section, clock, tree, default_subtree=ROOT, endpoint=endpoint)
    return service, endpoint, clock


def test_master_addresses_in_net_snmp_syntax() -> None:
    """agentXSocket forms parse; malformed ones are refused with the reason."""
    assert parse_master("unix:/var/agentx/master") == MasterAddress(
        "unix", path="/var/agentx/master"
    )
    assert parse_master("/run/agentx.sock") == MasterAddress("unix", path="/run/agentx.sock")
    assert parse_master("tcp:127.0.0.1:7050") == MasterAddress("tcp", host="127.0.0.1", port=7050)
    assert parse_master("tcp:localhost") == MasterAddress("tcp", host="localhost", port=705)
    assert parse_master("127.0.0.1:1705") == MasterAddress("tcp", host="127.0.0.1", port=1705)
    assert parse_master("tcp6:[::1]:705") == MasterAddress("tcp6", host="::1", port=705)
    assert str(parse_master("tcp6:[::1]")) == "tcp6:[::1]:705"
    for bad in ("unix:relative", "tcp:host:99999", "udp:1.2.3.4:705", "nothing", "tcp6:::1"):
        with pytest.raises(ValueError):
            parse_master(bad)


def test_section_defaults_and_checks() -> None:
    """Off by default; keys are checked; subtrees fall back to the MIB root."""
    section = AgentxSection()
    assert section.enabled is False and section.master == "unix:/var/agentx/master"
    assert section.subtree_oids(ROOT) == [ROOT]
    assert AgentxSection(subtrees=["1.3.6.1.3.1", ".1.3.6.1.3.2"]).subtree_oids(ROOT) == [
        (1, 3, 6, 1, 3, 1),
        (1, 3, 6, 1, 3, 2),
    ]
    checks = {f.name: f.metadata["check"] for f in dataclasses.fields(AgentxSection)}
    assert checks["master"]("tcp:127.0.0.1:705") is None
    assert "unknown transport" in checks["master"]("udp:x:1")
    assert checks["subtrees"](["1.3.x"]) is not None
    assert checks["priority"](0) is not None and checks["timeout"](256) is not None


def test_real_endpoints_for_each_transport() -> None:
    """unix, tcp and tcp6 addresses build the matching Twisted client endpoints."""
    clock = task.Clock()
    names = [
        type(master_endpoint(clock, parse_master(text), 3)).__name__
        for text in ("unix:/x", "tcp:127.0.0.1:705", "tcp6:[::1]:705")
    ]
    assert names == ["UNIXClientEndpoint", "TCP4ClientEndpoint", "TCP6ClientEndpoint"]


def test_registers_the_mib_root_by_default() -> None:
    """Without configured subtrees the subagent registers DNA-AGENT-MIB's root."""
    from dnaagent.snmp import mib

    service = AgentxSubagent(AgentxSection(), task.Clock(), MibTree())
    assert service.subtrees == [mib.DNA_AGENT] and service.agent_oid == mib.DNA_AGENT


def test_backoff_doubles_up_to_the_maximum_and_logs_once() -> None:
    """Refused connections are retried after 1, 2, 4, 8, 8 s; the same problem is logged once."""
    service, endpoint, clock = make()
    with capturedLogs() as logs:
        service.startService()
        assert service.state == CONNECTING and len(endpoint.attempts) == 1
        delays = []
        for _ in range(5):
            endpoint.refuse()
            assert service.state == WAITING
            before = len(endpoint.attempts)
            waited = 0.0
            while len(endpoint.attempts) == before:
                clock.advance(0.5)
                waited += 0.5
            delays.append(waited)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    problems = [e for e in logs if "retrying" in e.get("log_format", "")]
    assert len(problems) == 1 and "refused" in problems[0]["problem"]
    assert service.counters.connect_failures == 5


def test_open_session_then_reconnect_and_register_again() -> None:
    """A lost session is reconnected after reconnect_interval and its subtree registered again."""
    service, endpoint, clock = make()
    service.startService()
    proto, transport = endpoint.accept()
    opened: list = []
    service.when_open().addCallback(opened.append)
    with capturedLogs() as logs:
        handshake(proto, transport)
    assert service.state == OPEN and service.is_open and opened == [proto]
    assert any("open with master" in e.get("log_format", "") for e in logs)
    with capturedLogs() as logs:
        proto.connectionLost(Failure(ConnectionDone()))
    assert service.state == WAITING and not service.is_open
    assert [e["log_format"] for e in logs if "lost" in e.get("log_format", "")]
    clock.advance(1.0)
    assert len(endpoint.attempts) == 2
    proto2, transport2 = endpoint.accept()
    (open_pdu,) = read(transport2)
    assert isinstance(open_pdu, P.OpenPdu)
    proto2.dataReceived(P.encode(P.ResponsePdu(session_id=10, packet_id=open_pdu.packet_id)))
    (register,) = read(transport2)
    assert isinstance(register, P.RegisterPdu) and register.subtree == ROOT
    assert register.session_id == 10
    proto2.dataReceived(P.encode(P.ResponsePdu(session_id=10, packet_id=register.packet_id)))
    assert service.is_open and service.protocol is proto2
    assert service.counters.sessions == 2


def test_refused_open_is_retried_with_backoff() -> None:
    """A master that refuses the Open is retried later, not hammered."""
    service, endpoint, clock = make()
    service.startService()
    proto, transport = endpoint.accept()
    (open_pdu,) = read(transport)
    proto.dataReceived(
        P.encode(P.ResponsePdu(packet_id=open_pdu.packet_id, error=P.ResponseError.OPEN_FAILED))
    )
    assert transport.disconnecting
    proto.connectionLost(Failure(ConnectionDone()))
    assert service.state == WAITING and service.failures == 1
    clock.advance(0.9)
    assert len(endpoint.attempts) == 1
    clock.advance(0.1)
    assert len(endpoint.attempts) == 2


def test_stop_closes_the_session_and_stops_retrying() -> None:
    """stopService sends Close, fires when the connection is gone, and never reconnects."""
    service, endpoint, clock = make()
    service.startService()
    proto, transport = endpoint.accept()
    handshake(proto, transport)
    stopped: list = []
    service.stopService().addCallback(stopped.append)
    (close,) = read(transport)
    assert isinstance(close, P.ClosePdu)
    proto.dataReceived(P.encode(P.ResponsePdu(session_id=9, packet_id=close.packet_id)))
    assert transport.disconnecting
    proto.connectionLost(Failure(ConnectionDone()))
    assert stopped == [None] and service.state == STOPPED
    clock.advance(100)
    assert len(endpoint.attempts) == 1


def test_stop_while_waiting_cancels_the_retry() -> None:
    """Stopping during the backoff wait leaves no timer behind."""
    service, endpoint, clock = make()
    service.startService()
    endpoint.refuse()
    assert clock.getDelayedCalls()
    service.stopService()
    assert not clock.getDelayedCalls()


def test_notify_needs_a_session() -> None:
    """send_notify fails at once without a session and goes through the protocol with one."""
    service, endpoint, _ = make()
    failures: list = []
    service.send_notify([]).addErrback(failures.append)
    assert failures[0].check(AgentxNotConnectedError)
    service.startService()
    proto, transport = endpoint.accept()
    handshake(proto, transport)
    service.send_notify([(ROOT + (1, 0), Value.integer(3))])
    (notify,) = read(transport)
    assert isinstance(notify, P.NotifyPdu) and notify.varbinds[0].value == 3
