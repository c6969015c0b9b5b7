"""One DNS query to one given server over UDP, as a Deferred.

The query is built and parsed with dnspython and sent from an ephemeral UDP
port the reactor listens on. Only a reply from the queried server that
answers our question (same id, same question) counts. The query is sent
again once halfway through the timeout, since a single lost datagram should
not make a healthy resolver look dead.

Every query fires with a :class:`DnsResult`, never with a failure, except
when the caller cancels it; cancelling closes the port.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any, Protocol

import dns.exception
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel

from dnaagent.measure import same_address


@dataclass(frozen=True)
class DnsResult:
    """What a server answered to one query."""

    server: str
    name: str
    rdtype: str
    rcode: str | None = None
    answers: tuple[str, ...] = ()
    rtt_ms: float | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        """True when the server sent a reply (whatever its rcode)."""
        return self.rcode is not None

    @property
    def noerror(self) -> bool:
        """True when the server answered NOERROR."""
        return self.rcode == "NOERROR"

    def describe(self) -> str:
        """A short sentence about the outcome."""
        if self.rcode is None:
            return f"{self.server} did not answer {self.name} {self.rdtype} ({self.error})"
        if self.answers:
            shown = ", ".join(self.answers[:3]) + (" ..." if len(self.answers) > 3 else "")
            return f"{self.server} answered {self.rcode} for {self.name} {self.rdtype}: {shown}"
        return f"{self.server} answered {self.rcode} for {self.name} {self.rdtype}"


class DnsClientAPI(Protocol):
    """Anything that can send a DNS query to a chosen server."""

    def query(
        self, server: str, name: str, rdtype: str, timeout: float
    ) -> defer.Deferred[DnsResult]:
        """Ask ``server`` for ``name``/``rdtype``."""


def build_query(name: str, rdtype: str) -> dns.message.Message:
    """A recursive query for ``name`` (``.`` is the root) of type ``rdtype``."""
    return dns.message.make_query(name, dns.rdatatype.from_text(rdtype), use_edns=0, payload=1232)


def reverse_name(address: str) -> str:
    """The PTR name of an address (``2.2.0.192.in-addr.arpa.``)."""
    return dns.reversename.from_address(address.split("%")[0]).to_text()


def read_reply(query: dns.message.Message, wire: bytes) -> dns.message.Message | None:
    """The reply in ``wire`` if it answers ``query``, else None."""
    try:
        reply = dns.message.from_wire(wire, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError):
        return None
    if not query.is_response(reply):
        return None
    return reply


class _QueryProtocol(DatagramProtocol):
    """Sends one query from its own port and waits for the matching reply."""

    log = Logger()
    noisy = False

    def __init__(
        self,
        reactor: Any,
        server: tuple[Any, ...],
        query: dns.message.Message,
        result: DnsResult,
        timeout: float,
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.query = query
        self.wire = query.to_wire()
        self.result = result
        self.timeout = timeout
        self.done = False
        self.deferred: defer.Deferred[DnsResult] = defer.Deferred(lambda _d: self._cancel())
        self.sent = 0.0
        self.timers: list[Any] = []
        self.port: Any = None
        self.handle: Any = None

    def startProtocol(self) -> None:  # noqa: N802 (Twisted's name)
        """Send the query, schedule one retry and the timeout."""
        self.sent = self.reactor.seconds()
        self.handle = self.transport.getHandle()  # type: ignore[union-attr]
        try:
            # A connected socket hears ICMP port unreachable: a dead server is
            # then reported at once instead of after the timeout.
            transport: Any = self.transport
            transport.connect(self.server[0], self.server[1])
        except (OSError, ValueError) as e:
            self.log.failure("cannot connect to {s}", s=self.server[0], level=LogLevel.debug)
            self.finish(_replace(self.result, error=str(e)))
            return
        self.send()
        self.timers = [
            self.reactor.callLater(self.timeout / 2, self.send),
            self.reactor.callLater(self.timeout, self.expire),
        ]

    def send(self) -> None:
        """Write the query to the server."""
        if self.transport is None:
            return
        try:
            transport: Any = self.transport
            transport.write(self.wire)
        except OSError as e:
            self.log.failure(
                "sending a DNS query to {s} failed", s=self.server[0], level=LogLevel.debug
            )
            self.finish(_replace(self.result, error=e.strerror or str(e)))

    def datagramReceived(self, data: bytes, addr: tuple[Any, ...]) -> None:  # noqa: N802
        """Accept the reply of our server to our question, ignore anything else."""
        if not same_address(addr[0], self.server[0]) or addr[1] != self.server[1]:
            return
        reply = read_reply(self.query, data)
        if reply is None:
            return
        answers = tuple(rdata.to_text() for rrset in reply.answer for rdata in rrset)
        rtt = max(0.0, (self.reactor.seconds() - self.sent) * 1000.0)
        self.finish(
            _replace(
                self.result,
                rcode=dns.rcode.to_text(reply.rcode()),
                answers=answers,
                rtt_ms=round(rtt, 3),
            )
        )

    def connectionRefused(self) -> None:  # noqa: N802 (Twisted's name)
        """The server's host said no one listens on port 53."""
        self.finish(_replace(self.result, error="connection refused (no DNS server on that port)"))

    def stopProtocol(self) -> None:  # noqa: N802 (Twisted's name)
        """The port closed; if we did not close it, say why it closed.

        On a connected UDP socket an ICMP error (port or host unreachable)
        wakes the reactor with an error event, and the epoll reactor closes
        the port; the socket's pending error says what happened.
        """
        if self.done:
            return
        self.port = None
        problem = "the UDP port closed"
        try:
            code = self.handle.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except (OSError, AttributeError):
            self.log.failure("reading the socket error failed", level=LogLevel.debug)
            code = 0
        if code == errno.ECONNREFUSED:
            problem = "connection refused (no DNS server on that port)"
        elif code:
            problem = os.strerror(code)
        self.finish(_replace(self.result, error=problem))

    def expire(self) -> None:
        """No reply in time."""
        self.finish(_replace(self.result, error=f"no reply within {self.timeout:g} s"))

    def finish(self, result: DnsResult) -> None:
        """Fire the Deferred once and release the port."""
        if self.done:
            return
        self.done = True
        self.stop()
        self.deferred.callback(result)

    def _cancel(self) -> None:
        self.done = True
        self.stop()

    def stop(self) -> None:
        """Cancel the timers and stop listening."""
        for timer in self.timers:
            if timer.active():
                timer.cancel()
        self.timers = []
        if self.port is not None:
            port, self.port = self.port, None
            port.stopListening()


def _replace(result: DnsResult, **changes: Any) -> DnsResult:
    values = dict(result.__dict__)
    values.update(changes)
    return DnsResult(**values)


class UdpDnsClient:
    """Sends DNS queries over UDP from an ephemeral port of the reactor."""

    log = Logger()

    def __init__(self, reactor: Any, port: int = 53) -> None:
        self.reactor = reactor
        self.port = port

    def query(
        self, server: str, name: str, rdtype: str, timeout: float
    ) -> defer.Deferred[DnsResult]:
        """Ask ``server`` (an IP address, ``%scope`` allowed for IPv6) for ``name``."""
        result = DnsResult(server=server, name=name, rdtype=rdtype)
        host, _, scope = server.partition("%")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return defer.succeed(_replace(result, error="not an IP address"))
        try:
            query = build_query(name, rdtype)
        except (dns.exception.DNSException, ValueError) as e:
            self.log.failure("bad DNS query {n} {t}", n=name, t=rdtype, level=LogLevel.debug)
            return defer.succeed(_replace(result, error=f"bad query: {e}"))
        target: tuple[Any, ...]
        if ip.version == 6:
            target = (server if scope else host, self.port)
            interface = "::"
        else:
            target = (host, self.port)
            interface = "0.0.0.0"
        proto = _QueryProtocol(self.reactor, target, query, result, timeout)
        try:
            port = self.reactor.listenUDP(0, proto, interface=interface)
        except OSError as e:
            self.log.failure("cannot open a UDP port for DNS", level=LogLevel.warn)
            return defer.succeed(_replace(result, error=f"cannot open a UDP port: {e}"))
        if proto.done:
            port.stopListening()
        else:
            proto.port = port
        return proto.deferred
