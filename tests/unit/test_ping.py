"""The ICMP ping primitive, driven by a fake socket and a fake reactor."""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from dnaagent.measure.ping import (
    Pinger,
    PingResult,
    checksum,
    echo_request,
    parse_echo_reply,
)
from tests.fakes.host import FakePinger


class ReadingClock(Clock):
    """A Clock that also records readers, as a reactor would poll them."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: list[Any] = []

    def addReader(self, reader: Any) -> None:  # noqa: N802
        """Remember a reader."""
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:  # noqa: N802
        """Forget a reader."""
        self.readers.remove(reader)


class FakeIcmpSocket:
    """Records datagrams sent; hands out queued datagrams on recvfrom."""

    def __init__(self, family: int, kind: int, proto: int) -> None:
        self.family = family
        self.kind = kind
        self.proto = proto
        self.sent: list[tuple[bytes, tuple[Any, ...]]] = []
        self.inbox: list[tuple[bytes, tuple[Any, ...]]] = []
        self.closed = False
        self.send_error: OSError | None = None

    def setblocking(self, flag: bool) -> None:
        """Non-blocking is all we support."""
        assert flag is False

    def sendto(self, data: bytes, address: tuple[Any, ...]) -> int:
        """Record the datagram, or fail as told."""
        if self.send_error is not None:
            raise self.send_error
        self.sent.append((data, address))
        return len(data)

    def recvfrom(self, size: int) -> tuple[bytes, tuple[Any, ...]]:
        """The next queued datagram, else EAGAIN."""
        if not self.inbox:
            raise BlockingIOError(errno.EAGAIN, "no data")
        return self.inbox.pop(0)

    def fileno(self) -> int:
        """A made-up descriptor."""
        return 99

    def close(self) -> None:
        """Mark closed."""
        self.closed = True


class SocketFactory:
    """Creates fake sockets; refuses the kinds listed in ``refuse``."""

    def __init__(self, refuse: tuple[int, ...] = ()) -> None:
        self.refuse = refuse
        self.made: list[FakeIcmpSocket] = []

    def __call__(self, family: int, kind: int, proto: int) -> FakeIcmpSocket:
        if kind in self.refuse:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        sock = FakeIcmpSocket(family, kind, proto)
        self.made.append(sock)
        return sock


def reply(request: bytes, version: int = 4, identifier: int | None = None) -> bytes:
    """The echo reply a host would send to ``request``."""
    kind = 0 if version == 4 else 129
    _, code, _, ident, seq = struct.unpack("!BBHHH", request[:8])
    ident = ident if identifier is None else identifier
    return struct.pack("!BBHHH", kind, code, 0, ident, seq) + request[8:]


def fired(d: defer.Deferred[Any]) -> list[Any]:
    """Collect what ``d`` fires with."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_checksum_of_known_packet() -> None:
    """The RFC 1071 checksum: a packet with its checksum in place sums to zero."""
    packet = echo_request(4, 0x1234, 7, b"abc")
    assert checksum(packet) == 0
    assert struct.unpack("!BBHHH", packet[:8])[3:] == (0x1234, 7)


def test_icmpv6_request_leaves_checksum_to_the_kernel() -> None:
    """ICMPv6 requests carry type 128 and a zero checksum."""
    packet = echo_request(6, 1, 2)
    assert packet[0] == 128 and packet[2:4] == b"\x00\x00"


def test_parse_echo_reply_strips_ipv4_header_and_ignores_requests() -> None:
    """Raw IPv4 datagrams start with an IP header; echo requests are not replies."""
    body = reply(echo_request(4, 5, 6))
    header = bytes([0x45]) + bytes(19)
    assert parse_echo_reply(4, header + body, has_ip_header=True) == (5, 6)
    assert parse_echo_reply(4, body, has_ip_header=False) == (5, 6)
    assert parse_echo_reply(4, echo_request(4, 5, 6), has_ip_header=False) is None
    assert parse_echo_reply(6, reply(echo_request(6, 5, 6), 6), has_ip_header=False) == (5, 6)
    assert parse_echo_reply(4, b"\x00", has_ip_header=False) is None


def test_datagram_socket_reply_fires_with_rtt() -> None:
    """A reply from the pinged address fires the result with its round-trip time."""
    clock = ReadingClock()
    factory = SocketFactory()
    pinger = Pinger(clock, socket_factory=factory, fallback=FakePinger())
    out = fired(pinger.ping("127.0.0.1", 1.0))
    (sock,) = factory.made
    assert sock.kind == socket.SOCK_DGRAM and clock.readers
    data, target = sock.sent[0]
    assert target == ("127.0.0.1", 0)
    clock.advance(0.002)
    sock.inbox.append((reply(data, identifier=4242), ("127.0.0.1", 0)))
    clock.readers[0].doRead()
    assert out == [PingResult("127.0.0.1", True, rtt_ms=2.0)]
    assert sock.closed and not clock.readers


def test_reply_from_another_address_is_ignored_then_timeout() -> None:
    """A reply with our sequence but from elsewhere does not count; the timeout fires."""
    clock = ReadingClock()
    factory = SocketFactory()
    pinger = Pinger(clock, socket_factory=factory, fallback=FakePinger())
    out = fired(pinger.ping("192.0.2.1", 0.5))
    sock = factory.made[0]
    sock.inbox.append((reply(sock.sent[0][0]), ("192.0.2.99", 0)))
    clock.readers[0].doRead()
    assert out == []
    clock.advance(0.5)
    assert out == [PingResult("192.0.2.1", False, error="no reply within 0.5 s")]
    assert sock.closed


def test_raw_socket_fallback_filters_on_identifier() -> None:
    """Without datagram ICMP sockets a raw one is used and foreign identifiers ignored."""
    clock = ReadingClock()
    factory = SocketFactory(refuse=(socket.SOCK_DGRAM,))
    pinger = Pinger(clock, socket_factory=factory, fallback=FakePinger())
    out = fired(pinger.ping("127.0.0.1", 1.0))
    sock = factory.made[0]
    assert sock.kind == socket.SOCK_RAW
    request = sock.sent[0][0]
    ident = struct.unpack("!H", request[4:6])[0]
    header = bytes([0x45]) + bytes(19)
    other = (ident + 1) & 0xFFFF
    sock.inbox.append((header + reply(request, identifier=other), ("127.0.0.1", 0)))
    sock.inbox.append((header + reply(request), ("127.0.0.1", 0)))
    clock.readers[0].doRead()
    assert len(out) == 1 and out[0].reply


def test_ipv6_link_local_is_sent_with_scope() -> None:
    """A link-local IPv6 target is sent with the interface's scope id."""
    clock = ReadingClock()
    factory = SocketFactory()
    pinger = Pinger(clock, socket_factory=factory, fallback=FakePinger())
    pinger.ping("fe80::1", 1.0, interface="lo")
    assert factory.made[0].family == socket.AF_INET6
    assert factory.made[0].sent[0][1] == ("fe80::1", 0, 0, socket.if_nametoindex("lo"))


def test_cancel_forgets_the_request_and_closes() -> None:
    """Cancelling a ping fails it with CancelledError and releases the socket."""
    clock = ReadingClock()
    factory = SocketFactory()
    pinger = Pinger(clock, socket_factory=factory, fallback=FakePinger())
    d = pinger.ping("127.0.0.1", 5.0)
    d.cancel()
    out = fired(d)
    assert out[0].check(defer.CancelledError)
    assert factory.made[0].closed and not clock.getDelayedCalls()


def test_send_error_is_a_result_not_a_failure() -> None:
    """An immediate send error (no route) is reported in the result."""
    clock = ReadingClock()
    factory = SocketFactory()

    def make(*args: int) -> FakeIcmpSocket:
        sock = factory(*args)
        sock.send_error = OSError(errno.ENETUNREACH, "Network is unreachable")
        return sock

    pinger = Pinger(clock, socket_factory=make, fallback=FakePinger())
    out = fired(pinger.ping("198.51.100.1", 1.0))
    assert out == [PingResult("198.51.100.1", False, error="Network is unreachable")]


def test_no_icmp_socket_falls_back_to_the_other_pinger() -> None:
    """When neither socket kind is allowed the fallback pinger is used, from then on too."""
    clock = ReadingClock()
    fallback = FakePinger().answer("127.0.0.1")
    factory = SocketFactory(refuse=(socket.SOCK_DGRAM, socket.SOCK_RAW))
    pinger = Pinger(clock, socket_factory=factory, fallback=fallback)
    assert fired(pinger.ping("127.0.0.1", 1.0))[0].reply
    assert fired(pinger.ping("127.0.0.1", 1.0))[0].reply
    assert fallback.sent == [("127.0.0.1", None), ("127.0.0.1", None)]
    assert fired(pinger.ping("not-an-address", 1.0))[0].error == "not an IP address"


def _can_ping_loopback() -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
            return True
        except OSError:
            continue
    return False


@pytest.mark.skipif(not _can_ping_loopback(), reason="no ICMP socket allowed here")
def test_real_ping_of_loopback() -> None:
    """A real echo to 127.0.0.1 through the real reactor answers (loopback only)."""
    from twisted.internet import reactor as real_reactor

    pinger = Pinger(real_reactor)
    channel = pinger.channels[4]
    d = pinger.ping("127.0.0.1", 1.0)
    # Poll the socket by hand instead of running the reactor in a unit test.
    import select

    for _ in range(100):
        if d.called:
            break
        select.select([channel.fileno()], [], [], 0.01)
        channel.doRead()
    result = fired(d)
    assert result and result[0].reply, result
    assert channel.sock is None
