"""Probes the peer-side handlers run: port checks and the throughput stream.

* :func:`check_port` connects to a TCP port (``open``, ``closed`` when
  refused, ``filtered`` on timeout) or sends one empty datagram to a UDP port
  (``closed`` when the host answers port-unreachable, else ``open|filtered``).
* :class:`ThroughputSender` sends a TCP stream at a bounded rate for a
  bounded time; :class:`ThroughputReceiver` counts what arrives per second.

Everything takes the reactor by injection.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()

_CHUNK = b"\x00" * 65536


class _Probe(protocol.Protocol):
    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        """The port is open: say so and hang up."""
        self.factory.done("open")  # type: ignore[attr-defined]
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]


class _ProbeFactory(protocol.ClientFactory):
    protocol = _Probe

    def __init__(self) -> None:
        self.deferred: defer.Deferred[str] = defer.Deferred()

    def done(self, state: str) -> None:
        if not self.deferred.called:
            self.deferred.callback(state)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        from twisted.internet import error

        if reason.check(error.ConnectionRefusedError):
            self.done("closed")
        elif reason.check(error.TimeoutError, error.UserError):
            self.done("filtered")
        else:
            self.done(f"error: {reason.getErrorMessage()}")


class _UdpProbe(protocol.DatagramProtocol):
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.deferred: defer.Deferred[str] = defer.Deferred()

    def startProtocol(self) -> None:  # noqa: N802 (Twisted's name)
        """Connect and send one empty datagram."""
        transport: Any = self.transport
        try:
            transport.connect(self.host, self.port)
            transport.write(b"")
        except OSError as e:
            log.failure("UDP probe to {h}:{p} failed", h=self.host, p=self.port)
            self.finish(f"error: {e.strerror or e}")

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        """Something answered: the port is open."""
        self.finish("open")

    def connectionRefused(self) -> None:  # noqa: N802 (Twisted's name)
        """Port unreachable came back."""
        self.finish("closed")

    def finish(self, state: str) -> None:
        if not self.deferred.called:
            self.deferred.callback(state)


def check_port(
    reactor: Any, host: str, proto: str, port: int, timeout: float
) -> defer.Deferred[str]:
    """Probe ``proto/port`` on ``host``; fires with its state (never fails)."""
    if proto == "tcp":
        factory = _ProbeFactory()
        connector = reactor.connectTCP(host, port, factory, timeout=timeout)
        d = factory.deferred

        def disconnect(state: str) -> str:
            connector.disconnect()
            return state

        return d.addCallback(disconnect)
    probe = _UdpProbe(host, port)
    interface = "::" if ipaddress.ip_address(host).version == 6 else "0.0.0.0"
    try:
        listening = reactor.listenUDP(0, probe, interface=interface)
    except OSError as e:
        log.failure("cannot open a UDP port for a probe")
        return defer.succeed(f"error: {e}")
    timer = reactor.callLater(timeout, probe.finish, "open|filtered")

    def stop(state: str) -> str:
        if timer.active():
            timer.cancel()
        listening.stopListening()
        return state

    return probe.deferred.addCallback(stop)


# -- throughput ---------------------------------------------------------------


@implementer(IPushProducer)
class _Sender(protocol.Protocol):
    """Writes at most ``rate`` bytes per second while TCP lets it."""

    def __init__(self, owner: ThroughputSender) -> None:
        self.owner = owner
        self.paused = False

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        """Start the paced stream."""
        assert self.transport is not None
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self.owner.started(self)

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """The send buffer is full."""
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """The send buffer drained."""
        self.paused = False

    def stopProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """The connection is going away."""
        self.paused = True

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        """The stream ended."""
        self.owner.lost(reason)


class ThroughputSender(protocol.ClientFactory):
    """Sends to ``host:port`` for ``seconds`` at most ``rate_mbit`` Mbit/s.

    :meth:`run` fires with ``{"sent_bytes", "seconds", "error"}``.
    """

    TICK = 0.01

    def __init__(self, reactor: Any, host: str, port: int, seconds: float, rate_mbit: float):
        self.reactor = reactor
        self.host = host
        self.port = port
        self.seconds = seconds
        self.rate = rate_mbit * 1e6 / 8
        self.sent = 0
        self.start_time = 0.0
        self.proto: _Sender | None = None
        self.loop: task.LoopingCall | None = None
        self.deferred: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.error: str | None = None

    def buildProtocol(self, addr: Any) -> _Sender:  # noqa: N802 (Twisted's name)
        """One paced stream."""
        return _Sender(self)

    def run(self) -> defer.Deferred[dict[str, Any]]:
        """Connect and send; see the class docstring."""
        self.reactor.connectTCP(self.host, self.port, self, timeout=5)
        return self.deferred

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        """Could not reach the receiver."""
        self.error = f"cannot connect to {self.host}:{self.port}: {reason.getErrorMessage()}"
        self._finish()

    def started(self, proto: _Sender) -> None:
        """Connected: write every tick."""
        self.proto = proto
        self.start_time = self.reactor.seconds()
        self.loop = task.LoopingCall(self._tick)
        self.loop.clock = self.reactor
        self.loop.start(self.TICK, now=True).addErrback(
            lambda f: log.failure("throughput sender failed", f)
        )

    def _tick(self) -> None:
        proto = self.proto
        transport: Any = proto.transport if proto is not None else None
        if proto is None or transport is None:
            return
        elapsed = self.reactor.seconds() - self.start_time
        if elapsed >= self.seconds:
            self._stop_loop()
            # A registered producer keeps the connection open: unregister first.
            transport.unregisterProducer()
            transport.loseConnection()
            self.reactor.callLater(10.0, self._abort)
            return
        allowed = int(self.rate * (elapsed + self.TICK)) - self.sent
        while allowed > 0 and not proto.paused:
            n = min(allowed, len(_CHUNK))
            transport.write(_CHUNK[:n])
            self.sent += n
            allowed -= n

    def _abort(self) -> None:
        """The stream did not drain within 10 s of its end: drop it."""
        proto = self.proto
        if not self.deferred.called and proto is not None and proto.transport is not None:
            self.error = "the stream did not drain; connection aborted"
            proto.transport.abortConnection()  # type: ignore[attr-defined]

    def _stop_loop(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def lost(self, reason: Failure) -> None:
        """The connection closed (normally after ``seconds``)."""
        self._stop_loop()
        elapsed = self.reactor.seconds() - self.start_time
        if elapsed < self.seconds - 0.5 and self.error is None:
            self.error = f"the receiver closed the stream after {elapsed:.1f} s"
        self._finish()

    def _finish(self) -> None:
        if not self.deferred.called:
            elapsed = self.reactor.seconds() - self.start_time if self.start_time else 0.0
            self.deferred.callback(
                {"sent_bytes": self.sent, "seconds": round(elapsed, 3), "error": self.error}
            )


class _Counter(protocol.Protocol):
    def __init__(self, owner: ThroughputReceiver) -> None:
        self.owner = owner

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        """Count the bytes in the second they arrived in."""
        self.owner.received(len(data))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        """The sender finished."""
        self.owner.ended()


@dataclass
class ThroughputReport:
    """What a receiver measured: bytes per second and the averages."""

    per_second: list[int] = field(default_factory=list)
    total_bytes: int = 0
    duration: float = 0.0

    def mbit(self, skip_first: bool = True) -> float:
        """Average rate in Mbit/s, without the first (slow-start) second when longer than 2 s."""
        seconds = self.per_second[:-1] if len(self.per_second) > 1 else self.per_second
        # The last bucket is a partial second.
        if skip_first and len(seconds) > 2:
            seconds = seconds[1:]
        if not seconds:
            return self.total_bytes * 8 / 1e6 / self.duration if self.duration > 0 else 0.0
        return sum(seconds) * 8 / 1e6 / len(seconds)

    def per_second_mbit(self) -> list[float]:
        """Mbit/s of each second."""
        return [round(b * 8 / 1e6, 3) for b in self.per_second]


class ThroughputReceiver(protocol.Factory):
    """Accepts one stream on an ephemeral port and counts it per second."""

    MAX_SECONDS = 64

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.port: Any = None
        self.first: float | None = None
        self.last = 0.0
        self.report = ThroughputReport()
        self.done: defer.Deferred[ThroughputReport] = defer.Deferred()
        self.connected = False

    def listen(self, interface: str = "::") -> int:
        """Listen on an ephemeral TCP port of ``interface``; return the port number."""
        self.port = self.reactor.listenTCP(0, self, interface=interface)
        return int(self.port.getHost().port)

    def buildProtocol(self, addr: Any) -> _Counter | None:  # noqa: N802 (Twisted's name)
        """Accept only the first stream."""
        if self.connected:
            return None
        self.connected = True
        return _Counter(self)

    def received(self, n: int) -> None:
        """Add ``n`` bytes to the current second."""
        now = self.reactor.seconds()
        if self.first is None:
            self.first = now
        index = int(now - self.first)
        if index >= self.MAX_SECONDS:
            return
        while len(self.report.per_second) <= index:
            self.report.per_second.append(0)
        self.report.per_second[index] += n
        self.report.total_bytes += n
        self.last = now

    def ended(self) -> None:
        """The stream is over."""
        self.report.duration = (self.last - self.first) if self.first is not None else 0.0
        self.close()
        if not self.done.called:
            self.done.callback(self.report)

    def close(self) -> None:
        """Stop listening."""
        if self.port is not None:
            port, self.port = self.port, None
            port.stopListening()
