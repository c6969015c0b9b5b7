"""Ping: one ICMP echo request, one answer or a timeout, as a Deferred.

:class:`Pinger` sends ICMP and ICMPv6 echo requests from a socket the reactor
reads, so many pings run at once without a process each:

* an unprivileged ICMP datagram socket (``SOCK_DGRAM``/``IPPROTO_ICMP``) when
  the process's group is in ``net.ipv4.ping_group_range``; the kernel then
  picks the echo identifier and hands us only our own replies;
* otherwise a raw socket (needs root or ``CAP_NET_RAW``), filtered on our own
  identifier;
* otherwise the ``ping`` program, one process per ping (:class:`ProcessPinger`).

Every ping fires with a :class:`PingResult` (reply or not, with the reason),
never with a failure, except when the caller cancels it. Cancelling forgets
the request (and kills the ``ping`` process).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
import re
import shutil
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from dnaagent.measure import same_address
from dnaagent.measure.process import MeasurementProcess

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129

_PAYLOAD = b"dnaagent-ping\x00\x00\x00"


@dataclass(frozen=True)
class PingResult:
    """The answer to one echo request."""

    address: str
    reply: bool
    rtt_ms: float | None = None
    error: str | None = None

    def describe(self) -> str:
        """A short sentence: ``192.0.2.1 answered in 0.4 ms`` or why not."""
        if self.reply:
            return f"{self.address} answered in {self.rtt_ms:.1f} ms"
        return f"{self.address} did not answer ({self.error or 'no reply'})"


class PingerAPI(Protocol):
    """Anything that can ping: the real pingers and the test fakes."""

    def ping(
        self, address: str, timeout: float, *, interface: str | None = None
    ) -> defer.Deferred[PingResult]:
        """Send one echo request to ``address``; ``interface`` scopes link-local IPv6."""


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(version: int, identifier: int, sequence: int, payload: bytes = _PAYLOAD) -> bytes:
    """An ICMP (version 4) or ICMPv6 (version 6) echo request with its checksum.

    The ICMPv6 checksum covers a pseudo-header only the kernel knows; it fills
    it in, so it is left zero here.
    """
    kind = ICMP_ECHO_REQUEST if version == 4 else ICMP6_ECHO_REQUEST
    header = struct.pack("!BBHHH", kind, 0, 0, identifier, sequence)
    if version == 6:
        return header + payload
    total = checksum(header + payload)
    return struct.pack("!BBHHH", kind, 0, total, identifier, sequence) + payload


def parse_echo_reply(version: int, data: bytes, has_ip_header: bool) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply, or None for any other packet."""
    if has_ip_header:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < 8:
        return None
    kind, _code, _sum, identifier, sequence = struct.unpack("!BBHHH", data[:8])
    if kind != (ICMP_ECHO_REPLY if version == 4 else ICMP6_ECHO_REPLY):
        return None
    return identifier, sequence


SocketFactory = Callable[[int, int, int], Any]


@implementer(IReadDescriptor)
class _IcmpChannel:
    """One ICMP socket of one address family, read by the reactor while pings wait."""

    log = Logger()

    def __init__(self, reactor: Any, version: int, socket_factory: SocketFactory) -> None:
        self.reactor = reactor
        self.version = version
        self.socket_factory = socket_factory
        self.sock: Any = None
        self.raw = False
        self.identifier = random.randrange(1, 0x10000)
        self.sequence = random.randrange(0, 0x10000)
        self.pending: dict[int, tuple[str, float, defer.Deferred[PingResult], Any]] = {}

    def open(self) -> None:
        """Open a datagram ICMP socket, or a raw one; raise OSError if neither."""
        family = socket.AF_INET if self.version == 4 else socket.AF_INET6
        proto = socket.IPPROTO_ICMP if self.version == 4 else socket.IPPROTO_ICMPV6
        try:
            self.sock = self.socket_factory(family, socket.SOCK_DGRAM, proto)
            self.raw = False
        except OSError:
            self.sock = self.socket_factory(family, socket.SOCK_RAW, proto)
            self.raw = True
        self.sock.setblocking(False)
        self.reactor.addReader(self)

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self.sock is not None:
            self.reactor.removeReader(self)
            self.sock.close()
            self.sock = None

    def ping(
        self, address: str, timeout: float, interface: str | None
    ) -> defer.Deferred[PingResult]:
        """Send one echo request and wait for its reply."""
        if self.sock is None:
            self.open()
        self.sequence = (self.sequence + 1) & 0xFFFF
        seq = self.sequence
        packet = echo_request(self.version, self.identifier, seq)
        target: tuple[Any, ...]
        if self.version == 6:
            scope = socket.if_nametoindex(interface) if interface else 0
            target = (address.split("%")[0], 0, 0, scope)
        else:
            target = (address, 0)

        def cancel(d: defer.Deferred[PingResult]) -> None:
            self._forget(seq)

        d: defer.Deferred[PingResult] = defer.Deferred(cancel)
        sent = self.reactor.seconds()
        try:
            self.sock.sendto(packet, target)
        except OSError as e:
            self.log.failure("sending to {a} failed", a=address, level=LogLevel.debug)
            self._close_if_idle()
            d.callback(PingResult(address, False, error=e.strerror or str(e)))
            return d
        timer = self.reactor.callLater(timeout, self._expire, seq, timeout)
        self.pending[seq] = (address, sent, d, timer)
        return d

    def _forget(self, seq: int) -> tuple[str, float, defer.Deferred[PingResult], Any] | None:
        entry = self.pending.pop(seq, None)
        if entry is not None and entry[3].active():
            entry[3].cancel()
        self._close_if_idle()
        return entry

    def _close_if_idle(self) -> None:
        if not self.pending:
            self.close()

    def _expire(self, seq: int, timeout: float) -> None:
        entry = self.pending.pop(seq, None)
        self._close_if_idle()
        if entry is not None:
            entry[2].callback(PingResult(entry[0], False, error=f"no reply within {timeout:g} s"))

    def fileno(self) -> int:
        """The socket's descriptor (-1 once closed)."""
        return self.sock.fileno() if self.sock is not None else -1

    def logPrefix(self) -> str:  # noqa: N802 (Twisted's name)
        """Prefix of the reactor's log lines about this reader."""
        return f"ICMPv{self.version}"

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 (Twisted's name)
        """The reactor gave up on the socket: every waiting ping fails."""
        entries = list(self.pending.values())
        self.pending.clear()
        self.sock = None
        for address, _sent, d, timer in entries:
            if timer.active():
                timer.cancel()
            d.callback(PingResult(address, False, error=reason.getErrorMessage()))

    def doRead(self) -> None:  # noqa: N802 (Twisted's name)
        """Read every datagram waiting and fire the pings they answer."""
        while self.sock is not None:
            try:
                data, source = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                # An ICMP error queued on the socket (e.g. host unreachable):
                # it does not say which ping it belongs to; the timeout will.
                self.log.failure(
                    "reading the ICMPv{version} socket", version=self.version, level=LogLevel.debug
                )
                return
            parsed = parse_echo_reply(self.version, data, self.raw and self.version == 4)
            if parsed is None:
                continue
            identifier, seq = parsed
            if self.raw and identifier != self.identifier:
                continue
            entry = self.pending.get(seq)
            if entry is None or not same_address(entry[0], source[0]):
                continue
            del self.pending[seq]
            address, sent, d, timer = entry
            if timer.active():
                timer.cancel()
            rtt = max(0.0, (self.reactor.seconds() - sent) * 1000.0)
            self._close_if_idle()
            d.callback(PingResult(address, True, rtt_ms=round(rtt, 3)))


class ProcessPinger:
    """Ping by running the ``ping`` program (iputils), one process per ping."""

    log = Logger()

    def __init__(self, reactor: Any, executable: str | None = None) -> None:
        self.reactor = reactor
        self.executable = executable or shutil.which("ping") or "/bin/ping"

    def ping(
        self, address: str, timeout: float, *, interface: str | None = None
    ) -> defer.Deferred[PingResult]:
        """Run ``ping -n -c 1 -W timeout [-6] [-I interface] address``."""
        version = ipaddress.ip_address(address.split("%")[0]).version
        argv = [self.executable, "-n", "-c", "1", "-W", f"{max(timeout, 0.001):g}"]
        argv.append("-6" if version == 6 else "-4")
        if interface:
            argv += ["-I", interface]
        argv.append(address)
        proto = _PingProcess(address)

        def cancel(d: defer.Deferred[PingResult]) -> None:
            proto.kill()

        d: defer.Deferred[PingResult] = defer.Deferred(cancel)
        proto.deferred = d
        try:
            self.reactor.spawnProcess(proto, argv[0], argv, env={"LC_ALL": "C", "PATH": os.defpath})
        except OSError as e:
            self.log.failure("cannot run {exe}", exe=argv[0])
            d.callback(PingResult(address, False, error=f"cannot run {argv[0]}: {e}"))
            return d
        proto.killer = self.reactor.callLater(timeout + 2.0, proto.kill)
        return d


_TIME = re.compile(rb"time[=<]([\d.]+) ?ms")


class _PingProcess(MeasurementProcess[PingResult]):
    """Collects the output of one ``ping`` process."""

    program = "ping"
    err_limit = 8192

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def finished(self) -> PingResult:
        """A reply when ``ping`` printed a round-trip time, else the reason it gave."""
        m = _TIME.search(self.out)
        if m:
            return PingResult(self.address, True, rtt_ms=float(m.group(1)))
        return PingResult(self.address, False, error=self.last_error_line("no reply"))


class Pinger:
    """Pings over ICMP sockets read by the reactor, else with the ``ping`` program."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        *,
        socket_factory: SocketFactory = socket.socket,
        fallback: PingerAPI | None = None,
    ) -> None:
        self.reactor = reactor
        self.channels = {
            4: _IcmpChannel(reactor, 4, socket_factory),
            6: _IcmpChannel(reactor, 6, socket_factory),
        }
        self.fallback = fallback if fallback is not None else ProcessPinger(reactor)
        self.unusable: set[int] = set()

    def ping(
        self, address: str, timeout: float, *, interface: str | None = None
    ) -> defer.Deferred[PingResult]:
        """Send one echo request to ``address`` and wait at most ``timeout`` seconds."""
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return defer.succeed(PingResult(address, False, error="not an IP address"))
        if "%" in address and interface is None:
            interface = address.split("%", 1)[1]
        if ip.version in self.unusable:
            return self.fallback.ping(str(ip), timeout, interface=interface)
        try:
            return self.channels[ip.version].ping(str(ip), timeout, interface)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EACCES, errno.EPROTONOSUPPORT):
                self.log.failure("ICMPv{v} socket failed for {a}", v=ip.version, a=address)
                return defer.succeed(PingResult(str(ip), False, error=e.strerror or str(e)))
            self.log.failure(
                "no ICMPv{v} socket allowed; pinging with the ping program",
                v=ip.version,
                level=LogLevel.info,
            )
            self.unusable.add(ip.version)
            return self.fallback.ping(str(ip), timeout, interface=interface)
