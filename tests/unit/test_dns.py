"""The DNS query primitive, over an in-memory UDP transport and a Clock."""

from __future__ import annotations

import errno
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
from twisted.internet import defer
from twisted.internet.task import Clock

from dnaagent.measure.dns import DnsResult, UdpDnsClient, build_query, read_reply, reverse_name


class FakeUdpSocket:
    """Stands for the OS socket behind a port: only its pending error."""

    def __init__(self) -> None:
        self.error = 0

    def getsockopt(self, level: int, option: int) -> int:
        """The pending socket error."""
        return self.error


class FakeUdpPort:
    """A connected in-memory UDP port: records writes, delivers datagrams."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.written: list[bytes] = []
        self.peer: tuple[str, int] | None = None
        self.listening = True
        self.handle = FakeUdpSocket()

    def connect(self, host: str, port: int) -> None:
        """Remember the peer."""
        self.peer = (host, port)

    def write(self, data: bytes, addr: Any = None) -> None:
        """Record a datagram."""
        self.written.append(data)

    def getHandle(self) -> FakeUdpSocket:  # noqa: N802
        """The fake socket."""
        return self.handle

    def stopListening(self) -> None:  # noqa: N802
        """Close, as the reactor would: the protocol stops."""
        if self.listening:
            self.listening = False
            self.protocol.doStop()


class UdpClock(Clock):
    """A Clock that can also "listen" on UDP, handing out FakeUdpPorts."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[FakeUdpPort] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "") -> FakeUdpPort:  # noqa: N802
        """Make a port and start the protocol on it."""
        udp = FakeUdpPort(protocol)
        self.ports.append(udp)
        protocol.makeConnection(udp)
        return udp


def answer_to(wire: bytes, rcode: int = dns.rcode.NOERROR, *records: str) -> bytes:
    """The server's reply to the query in ``wire``."""
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for text in records:
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", text))
    return response.to_wire()


def fired(d: defer.Deferred[Any]) -> list[Any]:
    """Collect what ``d`` fires with."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_build_query_root_ns_and_reverse_name() -> None:
    """'.' asks for the root; reverse names follow in-addr.arpa / ip6.arpa."""
    q = build_query(".", "NS")
    assert q.question[0].name.to_text() == "."
    assert q.flags & dns.flags.RD
    assert reverse_name("192.0.2.10") == "10.2.0.192.in-addr.arpa."
    assert reverse_name("2001:db8::1").endswith(".8.b.d.0.1.0.0.2.ip6.arpa.")


def test_read_reply_accepts_only_the_matching_response() -> None:
    """A reply to another query (other id) or garbage is not ours."""
    q = build_query("example.test", "A")
    other = build_query("example.test", "A")
    assert read_reply(q, answer_to(q.to_wire())) is not None
    if other.id != q.id:
        assert read_reply(q, answer_to(other.to_wire())) is None
    assert read_reply(q, b"\x00\x01garbage") is None


def test_query_answered_by_the_server() -> None:
    """The server's NOERROR reply fires the result with answers and rtt."""
    clock = UdpClock()
    out = fired(UdpDnsClient(clock).query("192.0.2.53", "www.example.test", "A", 2.0))
    (port,) = clock.ports
    assert port.peer == ("192.0.2.53", 53)
    clock.advance(0.004)
    port.protocol.datagramReceived(
        answer_to(port.written[0], dns.rcode.NOERROR, "192.0.2.80"), ("192.0.2.53", 53)
    )
    assert out == [
        DnsResult(
            "192.0.2.53",
            "www.example.test",
            "A",
            rcode="NOERROR",
            answers=("192.0.2.80",),
            rtt_ms=4.0,
        )
    ]
    assert not port.listening and not clock.getDelayedCalls()


def test_reply_from_another_host_is_ignored() -> None:
    """Only the queried server may answer."""
    clock = UdpClock()
    out = fired(UdpDnsClient(clock).query("192.0.2.53", ".", "NS", 2.0))
    port = clock.ports[0]
    port.protocol.datagramReceived(answer_to(port.written[0]), ("192.0.2.66", 53))
    assert out == []


def test_query_is_resent_once_then_times_out() -> None:
    """Halfway through the timeout the query is sent again; then the result says no reply."""
    clock = UdpClock()
    out = fired(UdpDnsClient(clock).query("192.0.2.53", ".", "NS", 2.0))
    port = clock.ports[0]
    clock.advance(1.0)
    assert len(port.written) == 2 and port.written[0] == port.written[1]
    clock.advance(1.0)
    assert out[0].rcode is None and out[0].error == "no reply within 2 s"
    assert not port.listening


def test_cancel_closes_the_port() -> None:
    """Cancelling fails with CancelledError and stops listening."""
    clock = UdpClock()
    d = UdpDnsClient(clock).query("192.0.2.53", ".", "NS", 2.0)
    d.cancel()
    assert fired(d)[0].check(defer.CancelledError)
    assert not clock.ports[0].listening and not clock.getDelayedCalls()


def test_port_closed_by_an_icmp_error_reports_connection_refused() -> None:
    """A port the reactor closes because of ECONNREFUSED says so at once."""
    clock = UdpClock()
    out = fired(UdpDnsClient(clock).query("192.0.2.53", ".", "NS", 2.0))
    port = clock.ports[0]
    port.handle.error = errno.ECONNREFUSED
    port.stopListening()
    assert out[0].error == "connection refused (no DNS server on that port)"
    assert not clock.getDelayedCalls()


def test_bad_server_address() -> None:
    """A server that is not an IP address is a result with an error, no port opened."""
    clock = UdpClock()
    out = fired(UdpDnsClient(clock).query("dns.example", ".", "NS", 2.0))
    assert out[0].error == "not an IP address" and clock.ports == []
