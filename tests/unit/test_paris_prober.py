"""The Paris prober over fake sockets and a task.Clock reactor: sending, matching, limits."""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

import pytest
from twisted.internet import task

from dnaagent.dts.doubletree import NO_REPLY, Reply, ReplyKind
from dnaagent.measure.paris import (
    IP_RECVERR,
    IPV6_RECVERR,
    ProbeDenied,
    Prober,
    ProbeUnavailable,
    checksum,
    echo_payload,
    probe_payload,
    udp_datagram,
)

from .test_paris_packets import (
    DST4,
    DST6,
    MON4,
    MON6,
    R3_4,
    R3_6,
    ipv4_header,
    ipv6_header,
)

UDP_PORT = 40000
PING_IDENT = 777


class FakeSocket:
    """A socket that records what is sent and returns queued datagrams."""

    def __init__(self, family: int, kind: int, proto: int = 0) -> None:
        self.family, self.kind, self.proto = family, kind, proto
        self.options: dict[tuple[int, int], int] = {}
        self.sent: list[tuple[bytes, Any, int | None]] = []
        self.inbox: list[tuple[bytes, list[Any], Any]] = []
        self.errqueue: list[tuple[bytes, list[Any], Any]] = []
        self.send_errors: list[int] = []
        self.closed = False
        self.port = 0

    def setblocking(self, flag: bool) -> None:
        assert flag is False

    def setsockopt(self, level: int, name: int, value: int) -> None:
        self.options[(level, name)] = value

    def getsockopt(self, level: int, name: int) -> int:
        return 0

    def bind(self, address: Any) -> None:
        self.port = PING_IDENT if self.kind == socket.SOCK_DGRAM and self.proto else UDP_PORT

    def getsockname(self) -> Any:
        return ("::" if self.family == socket.AF_INET6 else "0.0.0.0", self.port)

    def fileno(self) -> int:
        return 1000 + id(self) % 1000

    def ttl(self) -> int | None:
        for (_level, name), value in self.options.items():
            if name in (socket.IP_TTL, socket.IPV6_UNICAST_HOPS):
                return value
        return None

    def sendto(self, data: bytes, address: Any) -> int:
        if self.send_errors:
            raise OSError(self.send_errors.pop(0), "fake send error")
        self.sent.append((data, address, self.ttl()))
        return len(data)

    def recvmsg(self, size: int, ancsize: int = 0, flags: int = 0) -> Any:
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        queue = self.errqueue if flags & socket.MSG_ERRQUEUE else self.inbox
        if not queue:
            raise BlockingIOError(errno.EAGAIN, "empty")
        data, ancillary, address = queue.pop(0)
        return data, ancillary, 0, address

    def recv(self, size: int) -> bytes:
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if not self.inbox:
            raise BlockingIOError(errno.EAGAIN, "empty")
        return self.inbox.pop(0)[0]

    def close(self) -> None:
        self.closed = True


class FakeReactor(task.Clock):
    """A task.Clock that also keeps readers."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: set[Any] = set()

    def addReader(self, reader: Any) -> None:  # noqa: N802 (Twisted's name)
        self.readers.add(reader)

    def removeReader(self, reader: Any) -> None:  # noqa: N802 (Twisted's name)
        self.readers.discard(reader)


class Sockets:
    """The socket factory: remembers every fake socket it made."""

    def __init__(self, raw_allowed: bool = True, ping_allowed: bool = True) -> None:
        self.made: list[FakeSocket] = []
        self.raw_allowed = raw_allowed
        self.ping_allowed = ping_allowed

    def __call__(self, family: int, kind: int, proto: int = 0) -> FakeSocket:
        if kind == socket.SOCK_RAW and not self.raw_allowed:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        if kind == socket.SOCK_DGRAM and proto and not self.ping_allowed:
            raise PermissionError(errno.EACCES, "Permission denied")
        sock = FakeSocket(family, kind, proto)
        self.made.append(sock)
        return sock

    def find(self, family: int, kind: int, proto: int = 0) -> FakeSocket:
        """The one socket of that kind."""
        (sock,) = [s for s in self.made if (s.family, s.kind, s.proto) == (family, kind, proto)]
        return sock


def make(
    mode: str = "raw", protocol: str = "udp", **kw: Any
) -> tuple[Prober, FakeReactor, Sockets]:
    """A prober over fake sockets."""
    reactor = FakeReactor()
    sockets = Sockets()
    prober = Prober(reactor, mode=mode, protocol=protocol, socket_factory=sockets, **kw)
    return prober, reactor, sockets


def read_all(reactor: FakeReactor) -> None:
    """Let every registered reader read, as the reactor would."""
    for reader in list(reactor.readers):
        reader.doRead()


def results(d: Any) -> list[Any]:
    """The result (or failure) a Deferred fired with, if any."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def time_exceeded4(payload: bytes, responder: str = R3_4, sport: int = UDP_PORT) -> bytes:
    """A time exceeded quoting a UDP probe to DST4 with ``payload``."""
    udp = udp_datagram(MON4, DST4, sport, 33434, payload)
    quoted = ipv4_header(MON4, DST4, 17, 1, len(udp)) + udp
    icmp = struct.pack("!BBHI", 11, 0, 0, 0) + quoted
    return ipv4_header(responder, MON4, 1, 62, len(icmp)) + icmp


def test_raw_udp_v4_probe_and_time_exceeded() -> None:
    """The probe leaves with the TTL asked; the matching answer fires the Deferred."""
    prober, reactor, sockets = make()
    out = results(prober.probe(DST4, 3))
    udp = sockets.find(socket.AF_INET, socket.SOCK_DGRAM)
    raw = sockets.find(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ((data, address, ttl),) = udp.sent
    assert address == (DST4, 33434) and ttl == 3
    seq = struct.unpack_from("!H", data)[0]
    assert data == probe_payload(seq)
    reactor.advance(0.004)
    raw.inbox.append((time_exceeded4(data), [], (R3_4, 0)))
    read_all(reactor)
    (reply,) = out
    assert reply.kind is ReplyKind.TIME_EXCEEDED
    assert (reply.address, reply.reply_ttl) == (R3_4, 62)
    assert reply.rtt == pytest.approx(4.0)
    assert prober.counters["sent"] == 1 and prober.counters["answered"] == 1
    assert prober.in_flight == 0
    reactor.advance(10)  # the timeout was cancelled
    assert prober.counters["timeouts"] == 0


def test_flow_is_constant_across_ttls() -> None:
    """Source port, destination port and the UDP checksum never change per destination."""
    prober, reactor, sockets = make()
    for ttl in range(1, 8):
        prober.probe(DST4, ttl)
    udp = sockets.find(socket.AF_INET, socket.SOCK_DGRAM)
    assert [t for _, _, t in udp.sent] == list(range(1, 8))
    assert {a for _, a, _ in udp.sent} == {(DST4, 33434)}
    sums = {udp_datagram(MON4, DST4, UDP_PORT, 33434, d)[6:8] for d, _, _ in udp.sent}
    assert len(sums) == 1
    assert len({d for d, _, _ in udp.sent}) == 7  # sequence numbers differ


def test_raw_icmp_v4_constant_identifier_and_checksum() -> None:
    """Echo requests on the raw socket: one identifier, one checksum, TTL per probe."""
    prober, reactor, sockets = make(protocol="icmp")
    for ttl in (1, 2, 3):
        prober.probe(DST4, ttl)
    raw = sockets.find(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    headers = [struct.unpack_from("!BBHHH", d) for d, _, _ in raw.sent]
    assert {h[0] for h in headers} == {8}
    assert len({h[2] for h in headers}) == 1 and len({h[3] for h in headers}) == 1
    assert len({h[4] for h in headers}) == 3
    assert [t for _, _, t in raw.sent] == [1, 2, 3]
    assert all(checksum(d) == 0 for d, _, _ in raw.sent)


def test_raw_icmp_v6_echo_reply_with_hop_limit() -> None:
    """An ICMPv6 echo reply (no IP header on a raw ICMPv6 socket) reaches the destination."""
    prober, reactor, sockets = make(protocol="icmp")
    out = results(prober.probe(DST6, 5))
    raw = sockets.find(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    ((data, address, ttl),) = raw.sent
    assert ttl == 5 and address[0] == DST6
    _kind, _code, _sum, ident, seq = struct.unpack_from("!BBHHH", data)
    reply = struct.pack("!BBHHH", 129, 0, 0, ident, seq) + echo_payload(seq)
    hop = [(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("=i", 60))]
    raw.inbox.append((reply, hop, (DST6, 0, 0, 0)))
    read_all(reactor)
    assert out[0] == Reply(DST6, reached=True, rtt=0.0, reply_ttl=60)


def test_raw_icmp_v6_time_exceeded_from_router() -> None:
    """A router's ICMPv6 time exceeded quoting our echo request."""
    prober, reactor, sockets = make(protocol="icmp")
    out = results(prober.probe(DST6, 2))
    raw = sockets.find(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    data = raw.sent[0][0]
    quoted = ipv6_header(MON6, DST6, 58, 1, len(data)) + data
    raw.inbox.append((struct.pack("!BBHI", 3, 0, 0, 0) + quoted, [], (R3_6, 0, 0, 0)))
    read_all(reactor)
    assert out[0].address == R3_6 and out[0].kind is ReplyKind.TIME_EXCEEDED


def test_unmatched_answers_are_dropped_and_counted() -> None:
    """Other ports, unknown sequence numbers and junk match nothing; the probe times out."""
    prober, reactor, sockets = make(timeout=1.0)
    out = results(prober.probe(DST4, 3))
    raw = sockets.find(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    raw.inbox.append((time_exceeded4(probe_payload(1), sport=UDP_PORT + 1), [], None))
    seq = struct.unpack_from("!H", sockets.find(socket.AF_INET, socket.SOCK_DGRAM).sent[0][0])[0]
    raw.inbox.append((time_exceeded4(probe_payload((seq + 1) & 0xFFFF)), [], None))
    raw.inbox.append((b"\x45junk", [], None))
    echo_request = struct.pack("!BBHHH", 8, 0, 0, 1, 1)
    raw.inbox.append((ipv4_header(MON4, DST4, 1, 64, 8) + echo_request, [], None))
    read_all(reactor)
    assert out == []
    assert prober.counters["unmatched"] == 3
    assert prober.counters["ignored_icmp"] == 1
    reactor.advance(1.0)
    assert out == [NO_REPLY]
    assert prober.counters["timeouts"] == 1
    # a late answer finds nothing in flight
    raw.inbox.append((time_exceeded4(probe_payload(seq)), [], None))
    read_all(reactor)
    assert prober.counters["unmatched"] == 4


def test_short_quote_matches_only_a_lone_probe() -> None:
    """Without the quoted payload, the probe is found only if it is alone in flight."""
    prober, reactor, sockets = make()
    first = results(prober.probe(DST4, 1))
    raw = sockets.find(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    raw.inbox.append((time_exceeded4(b""), [], None))
    read_all(reactor)
    assert first[0].address == R3_4
    a, b = results(prober.probe(DST4, 2)), results(prober.probe(DST4, 3))
    raw.inbox.append((time_exceeded4(b""), [], None))
    read_all(reactor)
    assert a == [] and b == [] and prober.counters["unmatched"] == 1


def errqueue_entry(origin: int, kind: int, code: int, offender: str) -> list[Any]:
    """The ancillary data of one error-queue message."""
    err = struct.pack("=IBBBBII", 113, origin, kind, code, 0, 0, 0)
    if ":" in offender:
        addr = struct.pack(
            "=HHI16sI", socket.AF_INET6, 0, 0, socket.inet_pton(socket.AF_INET6, offender), 0
        )
        return [(socket.IPPROTO_IPV6, IPV6_RECVERR, err + addr)]
    addr = struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(offender))
    return [(socket.IPPROTO_IP, IP_RECVERR, err + addr)]


def test_dgram_udp_v4_error_queue() -> None:
    """Unprivileged UDP: IP_RECVERR set; time exceeded and port unreachable from the queue."""
    prober, reactor, sockets = make(mode="dgram")
    hop = results(prober.probe(DST4, 3))
    end = results(prober.probe("203.0.113.9", 5))
    udp = sockets.find(socket.AF_INET, socket.SOCK_DGRAM)
    assert udp.options[(socket.IPPROTO_IP, IP_RECVERR)] == 1
    assert not [s for s in sockets.made if s.kind == socket.SOCK_RAW]
    (d1, _, _), (d2, _, _) = udp.sent
    udp.errqueue.append((d1, errqueue_entry(2, 11, 0, R3_4), (DST4, 33434)))
    udp.errqueue.append((d2, errqueue_entry(2, 3, 3, "203.0.113.9"), ("203.0.113.9", 33434)))
    udp.errqueue.append((d1, errqueue_entry(1, 0, 0, R3_4), (DST4, 33434)))  # local: dropped
    reader = next(iter(reactor.readers))
    reactor.removeReader(reader)  # EPOLLERR: the reactor drops the reader ...
    reader.connectionLost(None)  # ... and says so; the reader drains and registers again
    assert reader in reactor.readers
    assert hop[0] == Reply(R3_4, rtt=0.0)
    assert end[0].kind is ReplyKind.DESTINATION and end[0].address == "203.0.113.9"
    assert prober.counters["unmatched"] == 1


def test_dgram_error_queue_keeps_the_unreachable_code() -> None:
    """Unreachable codes from the error queue reach the Reply as RIPE Atlas err values:
    IPv4 host unreachable "H", prohibited (13) "A", ICMPv6 no route "N", admin "A",
    a code without a letter as its number; the destination's port unreachable none."""
    prober, reactor, sockets = make(mode="dgram")
    dsts4 = ["203.0.113.70", "203.0.113.33", "203.0.113.99", "203.0.113.9"]
    dsts6 = ["2001:db8:d:1::1", "2001:db8:d:2::1"]
    out = {d: results(prober.probe(d, 3)) for d in dsts4 + dsts6}
    udp4 = sockets.find(socket.AF_INET, socket.SOCK_DGRAM)
    udp6 = sockets.find(socket.AF_INET6, socket.SOCK_DGRAM)
    sent4 = {a[0]: d for d, a, _ttl in udp4.sent}
    sent6 = {a[0]: d for d, a, _ttl in udp6.sent}
    for dst, kind, code, offender in (
        ("203.0.113.70", 3, 1, R3_4),
        ("203.0.113.33", 3, 13, R3_4),
        ("203.0.113.99", 3, 9, R3_4),
        ("203.0.113.9", 3, 3, "203.0.113.9"),
    ):
        udp4.errqueue.append((sent4[dst], errqueue_entry(2, kind, code, offender), (dst, 33434)))
    for dst, code in (("2001:db8:d:1::1", 0), ("2001:db8:d:2::1", 1)):
        udp6.errqueue.append((sent6[dst], errqueue_entry(3, 1, code, R3_6), (dst, 33434, 0, 0)))
    read_all(reactor)
    got = {d: (r[0].kind, r[0].address, r[0].err) for d, r in out.items()}
    assert got == {
        "203.0.113.70": (ReplyKind.UNREACHABLE, R3_4, "H"),
        "203.0.113.33": (ReplyKind.UNREACHABLE, R3_4, "A"),
        "203.0.113.99": (ReplyKind.UNREACHABLE, R3_4, 9),
        "203.0.113.9": (ReplyKind.DESTINATION, "203.0.113.9", None),
        "2001:db8:d:1::1": (ReplyKind.UNREACHABLE, R3_6, "N"),
        "2001:db8:d:2::1": (ReplyKind.UNREACHABLE, R3_6, "A"),
    }


def test_dgram_icmp_v6_ping_socket() -> None:
    """Unprivileged ICMPv6: a ping socket; errors from its queue, echo replies read."""
    prober, reactor, sockets = make(mode="dgram", protocol="icmp")
    hop = results(prober.probe(DST6, 2))
    end = results(prober.probe(DST6, 4))
    ping = sockets.find(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    assert ping.options[(socket.IPPROTO_IPV6, IPV6_RECVERR)] == 1
    (d1, _, _), (d2, _, _) = ping.sent
    seq2 = struct.unpack_from("!H", d2, 6)[0]
    ping.errqueue.append((d1, errqueue_entry(3, 3, 0, R3_6), (DST6, 0, 0, 0)))
    reply = struct.pack("!BBHHH", 129, 0, 0, PING_IDENT, seq2) + echo_payload(seq2)
    ping.inbox.append((reply, [], (DST6, 0, 0, 0)))
    read_all(reactor)
    assert hop[0].address == R3_6 and hop[0].kind is ReplyKind.TIME_EXCEEDED
    assert end[0].kind is ReplyKind.DESTINATION
    assert struct.unpack_from("!H", d1, 4)[0] == struct.unpack_from("!H", d2, 4)[0]


def test_deny_list_refuses_at_once() -> None:
    """A denied destination fails with ProbeDenied, is counted, and sends nothing."""
    prober, reactor, sockets = make(deny=lambda d: d.startswith("203.0.113."))
    out = results(prober.probe(DST4, 1))
    assert out[0].check(ProbeDenied)
    assert prober.counters["denied"] == 1 and prober.counters["sent"] == 0
    assert all(not s.sent for s in sockets.made)
    out[0].trap(ProbeDenied)


def test_bad_input_is_refused() -> None:
    """Not an IP address, TTL out of range, unknown protocol: ValueError, nothing sent."""
    prober, _reactor, _sockets = make()
    for d in (
        prober.probe("example.org", 3),
        prober.probe(DST4, 0),
        prober.probe(DST4, 256),
        prober.probe(DST4, 3, protocol="tcp"),
    ):
        (failure,) = results(d)
        failure.trap(ValueError)
    assert prober.counters["sent"] == 0
    with pytest.raises(ValueError):
        Prober(FakeReactor(), protocol="tcp", socket_factory=Sockets())
    with pytest.raises(ValueError):
        Prober(FakeReactor(), rate=0, socket_factory=Sockets())


def test_rate_limit_paces_probes() -> None:
    """rate 10/s with burst 2: two at once, then one every 0.1 s."""
    prober, reactor, sockets = make(rate=10.0, burst=2)
    for ttl in range(1, 7):
        prober.probe(DST4, ttl)
    udp = sockets.find(socket.AF_INET, socket.SOCK_DGRAM)
    assert len(udp.sent) == 2
    reactor.advance(0.1)
    assert len(udp.sent) == 3
    reactor.advance(0.25)
    assert len(udp.sent) == 5
    reactor.advance(1.0)
    assert [t for _, _, t in udp.sent] == [1, 2, 3, 4, 5, 6]


def test_timeout_runs_from_sending() -> None:
    """A probe delayed by the rate limit gets its whole timeout after it leaves."""
    prober, reactor, sockets = make(rate=1.0, burst=1, timeout=0.5)
    first = results(prober.probe(DST4, 1))
    second = results(prober.probe(DST4, 2, timeout=2.0))
    reactor.advance(0.5)
    assert first == [NO_REPLY] and second == []
    reactor.advance(0.5)  # second leaves at t=1
    reactor.advance(1.9)
    assert second == []
    reactor.advance(0.1)
    assert second == [NO_REPLY]
    assert prober.counters["timeouts"] == 2


def test_send_errors_become_unreachable() -> None:
    """A send refused twice (after draining the error queue) fires as unreachable."""
    prober, reactor, sockets = make(mode="dgram")
    prober.probe(DST4, 1)  # opens the socket
    udp = sockets.find(socket.AF_INET, socket.SOCK_DGRAM)
    udp.send_errors = [errno.EHOSTUNREACH, errno.ENETUNREACH]
    out = results(prober.probe(DST4, 2))
    assert out == [Reply(None, unreachable=True)]
    assert out[0].kind is ReplyKind.UNREACHABLE
    assert out[0].err is None  # no ICMP message behind it: no Atlas err
    assert prober.counters["send_errors"] == 1
    # one stale error only: the retry goes through
    udp.send_errors = [errno.ECONNREFUSED]
    later = results(prober.probe(DST4, 3))
    assert later == [] and udp.sent[-1][2] == 3


def test_unprivileged_icmp_unavailable() -> None:
    """Without a ping group, ICMP probes fail with ProbeUnavailable (clear message)."""
    reactor = FakeReactor()
    prober = Prober(
        reactor,
        mode="auto",
        protocol="icmp",
        socket_factory=Sockets(raw_allowed=False, ping_allowed=False),
    )
    assert prober.mode == "dgram"
    (failure,) = results(prober.probe(DST4, 1))
    assert failure.check(ProbeUnavailable)
    assert "dgram" in str(failure.value)


def test_close_fires_pending_probes() -> None:
    """close() closes the sockets and fires what is still in flight with no reply."""
    prober, reactor, sockets = make(rate=1.0, burst=1)
    sent = results(prober.probe(DST4, 1))
    queued = results(prober.probe(DST4, 2))
    prober.close()
    assert sent == [NO_REPLY] and queued == [NO_REPLY]
    assert all(s.closed for s in sockets.made) and not reactor.readers
    assert not reactor.getDelayedCalls()
    (failure,) = results(prober.probe(DST4, 3))
    failure.trap(Exception)


def test_closing_from_an_answer_callback_stops_reading() -> None:
    """A trace that ends (and closes the prober) inside a read leaves the loop cleanly."""
    prober, reactor, sockets = make(mode="dgram")
    d = prober.probe(DST4, 1)
    udp = sockets.find(socket.AF_INET, socket.SOCK_DGRAM)
    data = udp.sent[0][0]
    udp.errqueue.append((data, errqueue_entry(2, 11, 0, R3_4), (DST4, 33434)))
    udp.errqueue.append((data, errqueue_entry(2, 11, 0, R3_4), (DST4, 33434)))
    d.addCallback(lambda reply: prober.close() or reply)
    (reader,) = reactor.readers
    reactor.removeReader(reader)
    reader.connectionLost(None)  # would spin on the closed socket before
    assert udp.closed and not reactor.readers
    assert results(d)[0].address == R3_4


def test_ipv4_mapped_destination_is_probed_as_ipv4() -> None:
    """::ffff:203.0.113.2 goes out of the IPv4 socket to 203.0.113.2."""
    prober, _reactor, sockets = make()
    prober.probe("::ffff:" + DST4, 2)
    udp = sockets.find(socket.AF_INET, socket.SOCK_DGRAM)
    assert udp.sent[0][1] == (DST4, 33434)
    assert not [s for s in sockets.made if s.family == socket.AF_INET6]
