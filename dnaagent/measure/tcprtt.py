"""TCP connect RTT: the time from SYN to the peer's answer, for hosts that drop ICMP.

:class:`TcpRtt` starts a non-blocking ``connect()`` and lets the reactor tell it
when the socket becomes writable: the kernel has then seen the SYN/ACK
(connected) or a RST (refused). Both are answers and both take one round trip,
so a refused port measures the RTT as well as an open one. The connection is
closed at once; nothing is sent over it.

Every measurement fires with a :class:`TcpRttResult`, never with a failure
(except when the caller cancels it, which closes the socket).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer


@dataclass(frozen=True)
class TcpRttResult:
    """The answer to one connect attempt."""

    address: str
    port: int
    reply: bool
    rtt_ms: float | None = None
    #: True when the peer answered with a RST (port closed): still a round trip.
    refused: bool = False
    error: str | None = None

    def describe(self) -> str:
        """A short sentence: ``192.0.2.1:80 answered in 0.4 ms (refused)`` or why not."""
        where = (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else f"{self.address}:{self.port}"
        )
        if self.reply:
            kind = " (refused)" if self.refused else ""
            return f"{where} answered in {self.rtt_ms:.1f} ms{kind}"
        return f"{where} did not answer ({self.error or 'no answer'})"


SocketFactory = Callable[[int, int, int], Any]


@implementer(IWriteDescriptor)
class _Connect:
    """One pending non-blocking connect, watched by the reactor for writability."""

    def __init__(
        self,
        reactor: Any,
        sock: Any,
        address: str,
        port: int,
        timeout: float,
        timer: Callable[[], float],
    ) -> None:
        self.reactor = reactor
        self.sock = sock
        self.address = address
        self.port = port
        self.timer = timer
        self.started = 0.0
        self.done = False
        self.deferred: defer.Deferred[TcpRttResult] = defer.Deferred(self._cancel)
        self.expiry = reactor.callLater(timeout, self._timeout)

    def fileno(self) -> int:
        """The socket's descriptor (-1 once closed)."""
        try:
            return int(self.sock.fileno())
        except OSError:
            return -1

    def logPrefix(self) -> str:  # noqa: N802 (Twisted's name)
        """Name in Twisted's logs."""
        return "TcpRtt"

    def doWrite(self) -> None:  # noqa: N802 (Twisted's name)
        """The socket is writable: the connect finished one way or the other."""
        self._settle()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 (Twisted's name)
        """The reactor saw an error or hang-up on the socket (a RST does that too)."""
        self._settle()

    def _settle(self) -> None:
        if self.done:
            return
        elapsed = (self.timer() - self.started) * 1000.0
        try:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as e:
            code = e.errno or errno.EIO
        if code == 0:
            self._finish(TcpRttResult(self.address, self.port, True, rtt_ms=elapsed))
        elif code == errno.ECONNREFUSED:
            self._finish(TcpRttResult(self.address, self.port, True, rtt_ms=elapsed, refused=True))
        else:
            reason = errno.errorcode.get(code, str(code))
            self._finish(TcpRttResult(self.address, self.port, False, error=reason))

    def _timeout(self) -> None:
        self._finish(TcpRttResult(self.address, self.port, False, error="timeout"), expired=True)

    def _cancel(self, _: defer.Deferred[TcpRttResult]) -> None:
        self._close(expired=False)

    def _close(self, expired: bool) -> None:
        if self.done:
            return
        self.done = True
        if not expired and self.expiry.active():
            self.expiry.cancel()
        self.reactor.removeWriter(self)
        try:
            self.sock.close()
        except OSError:
            pass

    def _finish(self, result: TcpRttResult, expired: bool = False) -> None:
        if self.done:
            return
        self._close(expired)
        self.deferred.callback(result)


class TcpRtt:
    """Connect-time RTT measurements through the reactor.

    ``timer`` is the high-resolution clock the RTT is measured with (the reactor's
    clock only schedules the timeouts).
    """

    def __init__(
        self,
        reactor: Any,
        *,
        socket_factory: SocketFactory = socket.socket,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.reactor = reactor
        self.socket_factory = socket_factory
        self.timer = timer

    def measure(self, address: str, port: int, timeout: float) -> defer.Deferred[TcpRttResult]:
        """Connect to ``address:port`` and fire with the time until the peer's answer."""
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return defer.succeed(TcpRttResult(address, port, False, error="not an IP address"))
        if not 1 <= port <= 65535:
            return defer.succeed(TcpRttResult(str(ip), port, False, error="bad port"))
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        try:
            sock = self.socket_factory(family, socket.SOCK_STREAM, 0)
        except OSError as e:
            return defer.succeed(TcpRttResult(str(ip), port, False, error=e.strerror or str(e)))
        try:
            sock.setblocking(False)
            target: tuple[Any, ...] = (address, port) if ip.version == 4 else (address, port, 0, 0)
            pending = _Connect(self.reactor, sock, str(ip), port, timeout, self.timer)
            pending.started = self.timer()
            code = sock.connect_ex(target)
        except OSError as e:
            sock.close()
            return defer.succeed(TcpRttResult(str(ip), port, False, error=e.strerror or str(e)))
        if code == errno.EINPROGRESS:
            self.reactor.addWriter(pending)
        elif code == 0:  # connected at once (loopback may do that)
            elapsed = (self.timer() - pending.started) * 1000.0
            pending._finish(TcpRttResult(str(ip), port, True, rtt_ms=elapsed))
        elif code == errno.ECONNREFUSED:
            elapsed = (self.timer() - pending.started) * 1000.0
            pending._finish(TcpRttResult(str(ip), port, True, rtt_ms=elapsed, refused=True))
        else:
            pending._finish(
                TcpRttResult(str(ip), port, False, error=errno.errorcode.get(code, str(code)))
            )
        return pending.deferred
