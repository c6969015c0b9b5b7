"""Paris traceroute probes: TTL-limited UDP and ICMP echo probes with a constant flow.

Load balancers pick a path per flow, from the first words of the transport header; a
classic traceroute changes them with every probe (UDP destination port, ICMP sequence)
and so draws a path that may not exist. Paris traceroute (Augustin et al., IMC 2006)
keeps every field a balancer may hash constant across the TTLs of one destination:

* **UDP**: fixed source port (one socket per address family) and destination port
  (``dst_port``, 33434 by default), and a constant UDP checksum: the payload starts
  with the probe's sequence number ``s`` then ``0xFFFF - s``, whose one's-complement
  sum is the same for every ``s``, then the marker ``b"dnaparis"``;
* **ICMP echo**: fixed identifier and a constant checksum: the sequence number ``s``
  varies and the first payload word is ``0xFFFF - s``, then a zero word and the same
  marker.

A probe is found again from the packet quoted in the ICMP answer: the quoted
destination and ports (UDP) or identifier (ICMP) must be ours; the sequence number
comes from the quoted echo header (ICMP) or the quoted payload (UDP). A router that
quotes only 8 bytes of UDP still matches when exactly one probe to that destination is
in flight, which is what a Doubletree trace does (one probe at a time per destination).

Modes (``mode``):

``raw`` (root, or ``CAP_NET_RAW``)
    UDP probes from an ordinary UDP socket whose TTL / hop limit is set before each
    send, ICMP echo requests built here and sent on a raw ICMP / ICMPv6 socket; every
    answer (time exceeded, destination unreachable, echo reply) is read from that raw
    socket with its IP TTL / hop limit.
``dgram`` (any user)
    UDP sockets with ``IP_RECVERR`` / ``IPV6_RECVERR``: the kernel queues the ICMP
    errors on the socket's error queue (``recvmsg(MSG_ERRQUEUE)``: the offender's
    address, the ICMP type and code, the quoted payload); ICMP probes on unprivileged
    ICMP sockets (``SOCK_DGRAM, IPPROTO_ICMP``), which need the user's group within
    ``net.ipv4.ping_group_range``; the kernel then sets the identifier (the socket's
    port) and the checksum, which stay constant as well. Answers carry no reply TTL.
``auto``
    ``raw`` when a raw socket can be opened, else ``dgram``.

``socket_factory`` (``socket.socket`` by default) opens the sockets; tests give fakes.
Everything runs on the reactor thread: non-blocking sockets registered with
``reactor.addReader``; nothing blocks. (An error queue makes the socket signal
``EPOLLERR``, which Twisted's epoll reactor takes for a lost connection: the reader
drains the queue and registers itself again.)

Interface::

    prober = Prober(reactor, protocol="udp", mode="auto", rate=100.0, burst=10,
                    timeout=2.0, deny=None, dst_port=33434)
    d = prober.probe("192.0.2.7", ttl=3)         # Deferred[Reply]
    prober.counters   # sent, answered, timeouts, denied, unmatched, send_errors, ...
    prober.close()

``probe(destination, ttl, timeout=None, protocol=None)`` fires with a
:class:`~dnaagent.dts.doubletree.Reply` (responder, RTT in ms, reply TTL when known,
``kind``: time exceeded / destination reached / unreachable / no reply, and ``err``:
the ICMP destination unreachable code as RIPE Atlas writes it, see :func:`atlas_err`,
``None`` for a probe the local host refused to send, no ICMP message being behind
it); it fails at
once with :class:`ProbeDenied` when ``deny(destination)`` is true (counted) and with
``ValueError`` for a destination that is not an IP literal or a TTL outside 1-255.
Counters: ``sent``, ``answered``, ``timeouts``, ``denied``, ``send_errors`` (the local
host refused to send: the probe fires as unreachable with no responder), ``unmatched``
(ICMP answers matching no probe in flight, or malformed: dropped), ``ignored_icmp``
(ICMP of other types a raw socket sees, such as echo requests).
Probes wait for a token of the rate limit (``rate`` per second, ``burst`` at once);
their timeout runs from the moment they are sent. Many probes may be in flight at once.

``python -m dnaagent.measure.paris --json DEST`` runs probes or a Doubletree trace from
the command line and prints what was sent and answered (see ``--help``).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import random
import socket
import struct
import sys
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from dnaagent.dts.doubletree import NO_REPLY, Reply
from dnaagent.errors import DnaAgentError
from dnaagent.guard.limits import TokenBucket
from dnaagent.measure import same_address

UDP = "udp"
ICMP = "icmp"
PROTOCOLS = (UDP, ICMP)
MODES = ("auto", "raw", "dgram")

#: Default UDP destination port (traceroute's first port).
DEFAULT_DST_PORT = 33434
#: Default probes per second and how many may go at once.
DEFAULT_RATE = 100.0
DEFAULT_BURST = 10
#: Default seconds to wait for an answer.
DEFAULT_TIMEOUT = 2.0

#: Marker after the two sequence words of every probe payload.
MARKER = b"dnaparis"
PAYLOAD_SIZE = 4 + len(MARKER)

# Linux socket options and constants missing from Python's socket module.
IP_RECVERR = 11
IP_RECVTTL = 12
IPV6_RECVERR = 25
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
_EXTENDED_ERR = struct.Struct("=IBBBBII")

ICMP4_ECHO_REPLY = 0
ICMP4_UNREACH = 3
ICMP4_ECHO = 8
ICMP4_TIME_EXCEEDED = 11
ICMP6_UNREACH = 1
ICMP6_TIME_EXCEEDED = 3
ICMP6_ECHO = 128
ICMP6_ECHO_REPLY = 129

PROTO_ICMP = 1
PROTO_UDP = 17
PROTO_ICMP6 = 58

_RECV_SIZE = 2048


class ProbeError(DnaAgentError):
    """Root of the errors of the Paris prober."""


class ProbeDenied(ProbeError, PermissionError):
    """The destination is on the deny list: no probe was sent."""


class ProbeUnavailable(ProbeError, OSError):
    """The sockets this mode needs could not be opened (no privilege, no ping group)."""


class NotAnAnswer(ValueError):
    """An ICMP message of a type that answers no probe (echo request, redirect...)."""


# -- pure packet functions --------------------------------------------------------------


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def probe_payload(seq: int) -> bytes:
    """The payload of probe ``seq``: ``seq``, ``0xFFFF - seq``, the marker.

    The two words always add up to ``0xFFFF`` (one's-complement zero), so the checksum
    of a packet carrying this payload does not depend on ``seq``.
    """
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"sequence number {seq} is not a 16-bit value")
    return struct.pack("!HH", seq, 0xFFFF - seq) + MARKER


def echo_payload(seq: int) -> bytes:
    """The payload of echo request ``seq``: ``0xFFFF - seq``, a zero word, the marker.

    The echo header already holds ``seq``; the first payload word cancels it in the
    checksum.
    """
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"sequence number {seq} is not a 16-bit value")
    return struct.pack("!HH", 0xFFFF - seq, 0) + MARKER


def payload_seq(payload: bytes) -> int | None:
    """The sequence number in a (quoted) probe payload, or ``None`` if it is not ours."""
    if len(payload) < 4:
        return None
    seq, complement = struct.unpack_from("!HH", payload)
    if seq + complement != 0xFFFF:
        return None
    if len(payload) >= PAYLOAD_SIZE and payload[4:PAYLOAD_SIZE] != MARKER:
        return None
    return seq


def _pseudo_header(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version != d.version:
        raise ValueError(f"{src} and {dst} are not of one address family")
    if s.version == 4:
        return s.packed + d.packed + struct.pack("!BBH", 0, proto, length)
    return s.packed + d.packed + struct.pack("!IxxxB", length, proto)


def udp_datagram(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header and ``payload`` with the checksum the kernel would compute."""
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    proto = PROTO_UDP
    value = checksum(_pseudo_header(src, dst, proto, length) + header + payload)
    return struct.pack("!HHHH", sport, dport, length, value or 0xFFFF) + payload


def icmp_echo(
    ident: int, seq: int, *, v6: bool = False, src: str | None = None, dst: str | None = None
) -> bytes:
    """An ICMP (``v6``: ICMPv6) echo request carrying :func:`probe_payload`.

    The ICMPv6 checksum covers a pseudo-header: it is computed when ``src`` and ``dst``
    are given, else left 0 (a raw ICMPv6 socket computes it on sending).
    """
    kind = ICMP6_ECHO if v6 else ICMP4_ECHO
    payload = echo_payload(seq)
    body = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    if v6:
        if src is None or dst is None:
            return body
        value = checksum(_pseudo_header(src, dst, PROTO_ICMP6, len(body)) + body)
    else:
        value = checksum(body)
    return body[:2] + struct.pack("!H", value) + body[4:]


@dataclass(frozen=True)
class Quoted:
    """The probe an ICMP error quotes: protocol, addresses and what identifies it."""

    proto: int
    src: str
    dst: str
    #: UDP ports, or the ICMP echo identifier in ``sport`` (``dport`` None).
    sport: int | None = None
    dport: int | None = None
    #: The probe's sequence number (echo sequence, or from the UDP payload).
    seq: int | None = None
    checksum: int | None = None


@dataclass(frozen=True)
class IcmpAnswer:
    """An ICMP message that may answer one of our probes."""

    responder: str
    icmp_type: int
    code: int
    v6: bool
    reply_ttl: int | None = None
    #: The probe quoted by an error message (None for an echo reply).
    quoted: Quoted | None = None
    #: Identifier and sequence number of an echo reply.
    ident: int | None = None
    seq: int | None = None

    @property
    def is_echo_reply(self) -> bool:
        """Whether this is an echo reply."""
        return self.icmp_type == (ICMP6_ECHO_REPLY if self.v6 else ICMP4_ECHO_REPLY)

    def reply(self, rtt: float | None) -> Reply:
        """The :class:`Reply` this answer means.

        A port unreachable ends the trace as reached (whoever sent it); its ``err`` is
        ``None`` when it is the expected end of a UDP trace (the probed destination
        itself answered a UDP probe) and ``"p"`` otherwise (another address answered,
        or the quoted probe was an echo request). Any other destination unreachable is
        ``unreachable`` with ``err`` from :func:`atlas_err`.
        """
        if self.is_echo_reply:
            return Reply(self.responder, reached=True, rtt=rtt, reply_ttl=self.reply_ttl)
        if self.icmp_type == (ICMP6_TIME_EXCEEDED if self.v6 else ICMP4_TIME_EXCEEDED):
            return Reply(self.responder, rtt=rtt, reply_ttl=self.reply_ttl)
        err = atlas_err(self.icmp_type, self.code, v6=self.v6)
        if err == "p":
            quoted = self.quoted
            if (
                quoted is not None
                and quoted.proto == PROTO_UDP
                and same_address(self.responder, quoted.dst)
            ):
                err = None
            return Reply(self.responder, reached=True, rtt=rtt, reply_ttl=self.reply_ttl, err=err)
        return Reply(self.responder, rtt=rtt, reply_ttl=self.reply_ttl, unreachable=True, err=err)


#: RIPE Atlas ``err`` letters of ICMP destination unreachable (type 3) codes.
ATLAS_ERR4: dict[int, str] = {0: "N", 1: "H", 2: "P", 3: "p", 13: "A"}
#: RIPE Atlas ``err`` letters of ICMPv6 destination unreachable (type 1) codes.
ATLAS_ERR6: dict[int, str] = {0: "N", 1: "A", 2: "h", 3: "H", 4: "p"}


def atlas_err(icmp_type: int, code: int, *, v6: bool) -> str | int | None:
    """The RIPE Atlas ``err`` value of an ICMP destination unreachable; ``None`` otherwise.

    RIPE Atlas, Measurement Result Format, traceroute results
    (https://atlas.ripe.net/docs/apis/result-format/), a reply's member ``"err"``:
    "(optional) error ICMP: "N" (network unreachable,), "H" (destination
    unreachable), "A" (administratively prohibited), "P" (protocol unreachable), "p"
    (port unreachable) "h" (beyond scope, from fw 4650) (string)"; codes it has no
    letter for are written as the number (RIPE's description of the same field:
    "Unrecognized error codes are represented as integers").

    IPv4, type 3: code 0 ``"N"``, 1 ``"H"``, 2 ``"P"``, 3 ``"p"``, 13 (communication
    administratively prohibited, RFC 1812) ``"A"``, any other code its number (9 and 10,
    network / host administratively prohibited of RFC 1122, included: Atlas probes
    write them as numbers too; so is 4, fragmentation needed, for which a probe writes
    ``mtu`` instead, a member these results do not have).
    IPv6, type 1 (RFC 4443): code 0 no route ``"N"``, 1 administratively prohibited
    ``"A"``, 2 beyond scope of source address ``"h"``, 3 address unreachable ``"H"``, 4
    port unreachable ``"p"``, any other (5 source address failed policy, 6 reject
    route...) its number.
    """
    if icmp_type != (ICMP6_UNREACH if v6 else ICMP4_UNREACH):
        return None
    if not 0 <= code <= 255:
        raise ValueError(f"ICMP code {code} is not a byte")
    return (ATLAS_ERR6 if v6 else ATLAS_ERR4).get(code, code)


def _quoted_transport(proto: int, src: str, dst: str, data: bytes) -> Quoted:
    if proto == PROTO_UDP:
        if len(data) < 8:
            raise ValueError("quoted UDP header is truncated")
        sport, dport, _length, value = struct.unpack_from("!HHHH", data)
        return Quoted(proto, src, dst, sport, dport, payload_seq(data[8:]), value)
    if proto in (PROTO_ICMP, PROTO_ICMP6):
        if len(data) < 8:
            raise ValueError("quoted ICMP header is truncated")
        kind, _code, value, ident, seq = struct.unpack_from("!BBHHH", data)
        if kind not in (ICMP4_ECHO, ICMP6_ECHO):
            raise ValueError(f"quoted ICMP message of type {kind} is not an echo request")
        return Quoted(proto, src, dst, ident, None, seq, value)
    raise ValueError(f"quoted protocol {proto} is neither UDP nor ICMP")


def parse_quoted4(data: bytes) -> Quoted:
    """The probe quoted by an ICMPv4 error (its IPv4 header and what follows)."""
    if len(data) < 20 or data[0] >> 4 != 4:
        raise ValueError("quoted packet is not IPv4")
    ihl = (data[0] & 0x0F) * 4
    if ihl < 20 or len(data) < ihl:
        raise ValueError("quoted IPv4 header is truncated")
    proto = data[9]
    src = socket.inet_ntop(socket.AF_INET, data[12:16])
    dst = socket.inet_ntop(socket.AF_INET, data[16:20])
    return _quoted_transport(proto, src, dst, data[ihl:])


def parse_quoted6(data: bytes) -> Quoted:
    """The probe quoted by an ICMPv6 error (its IPv6 header and what follows)."""
    if len(data) < 40 or data[0] >> 4 != 6:
        raise ValueError("quoted packet is not IPv6")
    proto = data[6]
    src = socket.inet_ntop(socket.AF_INET6, data[8:24])
    dst = socket.inet_ntop(socket.AF_INET6, data[24:40])
    return _quoted_transport(proto, src, dst, data[40:])


def parse_icmp4(packet: bytes) -> IcmpAnswer:
    """An IPv4 packet carrying ICMP, as a raw ICMP socket reads it; ``ValueError`` if bad."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise ValueError("not an IPv4 packet")
    ihl = (packet[0] & 0x0F) * 4
    if packet[9] != PROTO_ICMP:
        raise NotAnAnswer("not an ICMP packet")
    if ihl < 20 or len(packet) < ihl + 8:
        raise ValueError("truncated ICMP packet")
    responder = socket.inet_ntop(socket.AF_INET, packet[12:16])
    return parse_icmp_message(packet[ihl:], responder, packet[8], v6=False)


def parse_icmp_message(
    message: bytes, responder: str, reply_ttl: int | None, *, v6: bool
) -> IcmpAnswer:
    """An ICMP or ICMPv6 message (from its type byte); ``ValueError`` if not an answer."""
    if len(message) < 8:
        raise ValueError("ICMP message is truncated")
    kind, code = message[0], message[1]
    echo_reply = ICMP6_ECHO_REPLY if v6 else ICMP4_ECHO_REPLY
    errors = (ICMP6_UNREACH, ICMP6_TIME_EXCEEDED) if v6 else (ICMP4_UNREACH, ICMP4_TIME_EXCEEDED)
    if kind == echo_reply:
        ident, seq = struct.unpack_from("!HH", message, 4)
        return IcmpAnswer(responder, kind, code, v6, reply_ttl, None, ident, seq)
    if kind in errors:
        quoted = (parse_quoted6 if v6 else parse_quoted4)(message[8:])
        return IcmpAnswer(responder, kind, code, v6, reply_ttl, quoted)
    raise NotAnAnswer(f"ICMP type {kind} answers no probe")


@dataclass(frozen=True)
class QueuedError:
    """One entry of a socket's error queue (``IP_RECVERR``)."""

    origin: int
    icmp_type: int
    code: int
    offender: str | None


def parse_extended_err(data: bytes, v6: bool) -> QueuedError:
    """A ``struct sock_extended_err`` and the offender address that follows it."""
    if len(data) < _EXTENDED_ERR.size:
        raise ValueError("extended error is truncated")
    _errno, origin, kind, code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(data)
    rest = data[_EXTENDED_ERR.size :]
    offender = None
    if v6 and len(rest) >= 24 and struct.unpack_from("=H", rest)[0] == socket.AF_INET6:
        offender = socket.inet_ntop(socket.AF_INET6, rest[8:24])
    elif not v6 and len(rest) >= 8 and struct.unpack_from("=H", rest)[0] == socket.AF_INET:
        offender = socket.inet_ntop(socket.AF_INET, rest[4:8])
    return QueuedError(origin, kind, code, offender)


# -- the prober ---------------------------------------------------------------------------


@implementer(IReadDescriptor)
class _Reader:
    """A socket registered with the reactor; ``handler`` drains it when it is ready."""

    def __init__(self, reactor: Any, sock: socket.socket, handler: Callable[[], bool]) -> None:
        self.reactor = reactor
        self.sock = sock
        self.handler = handler
        self.closed = False
        reactor.addReader(self)

    def fileno(self) -> int:
        return -1 if self.closed else self.sock.fileno()

    def logPrefix(self) -> str:  # noqa: N802 (Twisted's name)
        return "paris"

    def doRead(self) -> None:  # noqa: N802 (Twisted's name)
        self.handler()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        # EPOLLERR (a queued ICMP error) looks like a lost connection to the reactor,
        # which has just unregistered us: drain the queue and register again.
        if self.closed:
            return
        progressed = self.handler()
        if self.closed:
            return
        if progressed:
            self.reactor.addReader(self)
        else:
            self.reactor.callLater(0.05, self._again)

    def _again(self) -> None:
        if not self.closed:
            self.reactor.addReader(self)

    def close(self) -> None:
        if not self.closed:
            self.reactor.removeReader(self)
            self.closed = True
            self.sock.close()


@dataclass
class _Pending:
    protocol: str
    destination: str
    ttl: int
    seq: int
    timeout: float
    deferred: defer.Deferred[Reply]
    sent_at: float | None = None
    timer: Any = None


@dataclass(frozen=True)
class SentProbe:
    """What one sent probe was (kept when ``keep_log`` is set): its flow identifier."""

    protocol: str
    destination: str
    ttl: int
    seq: int
    flow: dict[str, int]


@dataclass
class _FamilySockets:
    v6: bool
    udp: socket.socket | None = None
    icmp: socket.socket | None = None
    udp_port: int = 0
    icmp_ident: int = 0
    readers: list[_Reader] = field(default_factory=list)


def _family(destination: str) -> bool:
    return ipaddress.ip_address(destination).version == 6


def _source_for(destination: str) -> str:
    """The source address the routing table picks for ``destination`` (nothing sent)."""
    v6 = _family(destination)
    with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((destination, DEFAULT_DST_PORT))
        return str(s.getsockname()[0])


class Prober:
    """Paris traceroute probes over the reactor (see the module docstring)."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        *,
        protocol: str = UDP,
        mode: str = "auto",
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        timeout: float = DEFAULT_TIMEOUT,
        deny: Callable[[str], bool] | None = None,
        dst_port: int = DEFAULT_DST_PORT,
        keep_log: bool = False,
        socket_factory: Callable[..., Any] = socket.socket,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 1 <= dst_port <= 0xFFFF:
            raise ValueError(f"dst_port {dst_port} is not a port number")
        self.reactor = reactor
        self.protocol = protocol
        self._socket = socket_factory
        self.mode = _resolve_mode(mode, socket_factory)
        self.timeout = timeout
        self.deny = deny
        self.dst_port = dst_port
        self.bucket = TokenBucket(rate, burst, reactor.seconds())
        self.counters: Counter[str] = Counter()
        self.sent_log: list[SentProbe] | None = [] if keep_log else None
        self._families: dict[bool, _FamilySockets] = {}
        self._queue: deque[_Pending] = deque()
        self._pump_call: Any = None
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._next_seq = random.randrange(0x10000)
        self._closed = False
        #: The most probes in flight (sent or waiting for the rate limit) at once.
        self.peak_in_flight = 0

    # -- public -------------------------------------------------------------------------

    def probe(
        self,
        destination: str,
        ttl: int,
        timeout: float | None = None,
        protocol: str | None = None,
    ) -> defer.Deferred[Reply]:
        """Send one probe to ``destination`` with IP TTL ``ttl``; fire with its :class:`Reply`."""
        protocol = protocol or self.protocol
        try:
            address = ipaddress.ip_address(destination)
        except ValueError:
            return defer.fail(ValueError(f"{destination!r} is not an IP address"))
        mapped = getattr(address, "ipv4_mapped", None)
        destination = str(mapped or address)  # ::ffff:a.b.c.d is probed as IPv4
        if protocol not in PROTOCOLS:
            return defer.fail(ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}"))
        if not 1 <= ttl <= 255:
            return defer.fail(ValueError(f"TTL {ttl} is not within 1-255"))
        if self._closed:
            return defer.fail(ProbeError("the prober is closed"))
        if self.deny is not None and self.deny(destination):
            self.counters["denied"] += 1
            return defer.fail(ProbeDenied(f"{destination} is on the deny list"))
        try:
            self._sockets(_family(destination), protocol)
        except ProbeUnavailable as e:
            return defer.fail(e)
        pending = _Pending(
            protocol,
            destination,
            ttl,
            self._allocate_seq(protocol),
            timeout or self.timeout,
            defer.Deferred(),
        )
        self._pending[(protocol, pending.seq)] = pending
        self.peak_in_flight = max(self.peak_in_flight, len(self._pending))
        self._queue.append(pending)
        self._pump()
        return pending.deferred

    def flow(self, destination: str, protocol: str | None = None) -> dict[str, int]:
        """The flow identifier of probes to ``destination``: ports or identifier, checksum.

        The checksum is what every probe to ``destination`` carries (computed here from
        the source address routing picks; a probe's sequence number does not change it).
        """
        protocol = protocol or self.protocol
        v6 = _family(destination)
        fam = self._sockets(v6, protocol)
        try:
            src = _source_for(destination)
        except OSError:  # no route: the identifiers without the checksum
            src = None
        if src is None:
            if protocol == UDP:
                return {"src_port": fam.udp_port, "dst_port": self.dst_port}
            return {"ident": fam.icmp_ident}
        if protocol == UDP:
            data = udp_datagram(src, destination, fam.udp_port, self.dst_port, probe_payload(0))
            return {
                "src_port": fam.udp_port,
                "dst_port": self.dst_port,
                "checksum": struct.unpack_from("!H", data, 6)[0],
            }
        data = icmp_echo(fam.icmp_ident, 0, v6=v6, src=src, dst=destination)
        return {"ident": fam.icmp_ident, "checksum": struct.unpack_from("!H", data, 2)[0]}

    @property
    def in_flight(self) -> int:
        """Probes sent or waiting to be sent, not yet answered or timed out."""
        return len(self._pending)

    def close(self) -> None:
        """Close every socket; probes still waiting fire with no reply."""
        self._closed = True
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        for pending in list(self._pending.values()):
            self._resolve(pending, NO_REPLY)
        self._queue.clear()
        for fam in self._families.values():
            for reader in fam.readers:
                reader.close()
            for sock in (fam.udp, fam.icmp):
                if sock is not None:
                    sock.close()
        self._families.clear()

    # -- sockets ------------------------------------------------------------------------

    def _sockets(self, v6: bool, protocol: str) -> _FamilySockets:
        fam = self._families.get(v6)
        if fam is None:
            fam = self._families[v6] = _FamilySockets(v6)
        try:
            if protocol == UDP and fam.udp is None:
                self._open_udp(fam)
            if fam.icmp is None and (protocol == ICMP or self.mode == "raw"):
                self._open_icmp(fam)
        except OSError as e:
            raise ProbeUnavailable(
                f"cannot open the {'IPv6' if v6 else 'IPv4'} {protocol} probe sockets "
                f"in {self.mode} mode: {e}"
            ) from e
        return fam

    def _open_udp(self, fam: _FamilySockets) -> None:
        af = socket.AF_INET6 if fam.v6 else socket.AF_INET
        sock = self._socket(af, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind(("::" if fam.v6 else "0.0.0.0", 0))
            if self.mode == "dgram":
                if fam.v6:
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        except OSError:
            sock.close()
            raise
        fam.udp = sock
        fam.udp_port = sock.getsockname()[1]
        fam.readers.append(_Reader(self.reactor, sock, lambda: self._drain_udp(fam)))

    def _open_icmp(self, fam: _FamilySockets) -> None:
        af = socket.AF_INET6 if fam.v6 else socket.AF_INET
        proto = socket.IPPROTO_ICMPV6 if fam.v6 else socket.IPPROTO_ICMP
        kind = socket.SOCK_RAW if self.mode == "raw" else socket.SOCK_DGRAM
        sock = self._socket(af, kind, proto)
        sock.setblocking(False)
        try:
            if fam.v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            elif kind == socket.SOCK_DGRAM:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            if kind == socket.SOCK_DGRAM:
                sock.bind(("::" if fam.v6 else "0.0.0.0", 0))
                sock.setsockopt(
                    socket.IPPROTO_IPV6 if fam.v6 else socket.IPPROTO_IP,
                    IPV6_RECVERR if fam.v6 else IP_RECVERR,
                    1,
                )
                fam.icmp_ident = sock.getsockname()[1]
            else:
                fam.icmp_ident = (os.getpid() ^ random.randrange(0x10000)) & 0xFFFF
        except OSError:
            sock.close()
            raise
        fam.icmp = sock
        fam.readers.append(_Reader(self.reactor, sock, lambda: self._drain_icmp(fam)))

    # -- sending ------------------------------------------------------------------------

    def _allocate_seq(self, protocol: str) -> int:
        for _ in range(0x10000):
            seq = self._next_seq
            self._next_seq = (self._next_seq + 1) & 0xFFFF
            if (protocol, seq) not in self._pending:
                return seq
        raise ProbeError("65536 probes are in flight")

    def _pump(self) -> None:
        self._pump_call = None
        now = self.reactor.seconds()
        while self._queue and self.bucket.take(now):
            self._send(self._queue.popleft())
        if self._queue and not self._closed:
            wait = max(self.bucket.wait(now), 0.001)
            self._pump_call = self.reactor.callLater(wait, self._pump)

    def _send(self, pending: _Pending) -> None:
        v6 = _family(pending.destination)
        fam = self._families[v6]
        level = socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP
        option = socket.IPV6_UNICAST_HOPS if v6 else socket.IP_TTL
        if pending.protocol == UDP:
            sock = fam.udp
            data = probe_payload(pending.seq)
            address: tuple[Any, ...] = (pending.destination, self.dst_port)
        else:
            sock = fam.icmp
            data = icmp_echo(fam.icmp_ident, pending.seq, v6=v6)
            address = (pending.destination, 0)
        assert sock is not None
        for attempt in (1, 2):
            try:
                sock.setsockopt(level, option, pending.ttl)
                sock.sendto(data, address)
                break
            except OSError as e:
                # With IP_RECVERR an earlier ICMP error may be reported by this send:
                # drain the queue and try once more.
                if attempt == 1 and e.errno not in (errno.EPERM, errno.EACCES):
                    (self._drain_udp if sock is fam.udp else self._drain_icmp)(fam)
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    continue
                self.counters["send_errors"] += 1
                self.log.info(
                    "probe to {dst} (TTL {ttl}) not sent: {err}",
                    dst=pending.destination,
                    ttl=pending.ttl,
                    err=e,
                )
                # No ICMP message and no responder: err stays None (the Atlas "err"
                # member describes an ICMP answer from "from").
                self._resolve(pending, Reply(None, unreachable=True))
                return
        pending.sent_at = self.reactor.seconds()
        self.counters["sent"] += 1
        if self.sent_log is not None:
            self.sent_log.append(
                SentProbe(
                    pending.protocol,
                    pending.destination,
                    pending.ttl,
                    pending.seq,
                    {"src_port": fam.udp_port, "dst_port": self.dst_port}
                    if pending.protocol == UDP
                    else {"ident": fam.icmp_ident},
                )
            )
        pending.timer = self.reactor.callLater(pending.timeout, self._timed_out, pending)

    def _timed_out(self, pending: _Pending) -> None:
        pending.timer = None
        self.counters["timeouts"] += 1
        self._resolve(pending, NO_REPLY)

    def _resolve(self, pending: _Pending, reply: Reply) -> None:
        if self._pending.get((pending.protocol, pending.seq)) is pending:
            del self._pending[(pending.protocol, pending.seq)]
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        if not pending.deferred.called:
            pending.deferred.callback(reply)

    # -- receiving ----------------------------------------------------------------------

    def _rtt(self, pending: _Pending) -> float | None:
        if pending.sent_at is None:
            return None
        return max(0.0, (self.reactor.seconds() - pending.sent_at) * 1000.0)

    def _answer(self, answer: IcmpAnswer, fam: _FamilySockets) -> None:
        """Match an answer to its probe; count it as unmatched otherwise."""
        pending = self.match(answer, fam.udp_port, fam.icmp_ident)
        if pending is None:
            self.counters["unmatched"] += 1
            return
        self.counters["answered"] += 1
        self._resolve(pending, answer.reply(self._rtt(pending)))

    def match(self, answer: IcmpAnswer, udp_port: int, icmp_ident: int) -> _Pending | None:
        """The probe in flight that ``answer`` answers, or ``None``."""
        if answer.is_echo_reply:
            if answer.ident != icmp_ident or answer.seq is None:
                return None
            pending = self._pending.get((ICMP, answer.seq))
            if pending is None or pending.sent_at is None:
                return None
            if ipaddress.ip_address(pending.destination) != ipaddress.ip_address(answer.responder):
                return None
            return pending
        quoted = answer.quoted
        if quoted is None:
            return None
        if quoted.proto == PROTO_UDP:
            if quoted.sport != udp_port or quoted.dport != self.dst_port:
                return None
            protocol = UDP
        else:
            if quoted.sport != icmp_ident:
                return None
            protocol = ICMP
        return self._find(protocol, quoted.dst, quoted.seq)

    def _find(self, protocol: str, destination: str, seq: int | None) -> _Pending | None:
        try:
            dst = str(ipaddress.ip_address(destination))
        except ValueError:
            return None
        if seq is not None:
            pending = self._pending.get((protocol, seq))
            if pending is not None and pending.destination == dst and pending.sent_at is not None:
                return pending
            return None
        candidates = [
            p
            for p in self._pending.values()
            if p.protocol == protocol and p.destination == dst and p.sent_at is not None
        ]
        return candidates[0] if len(candidates) == 1 else None

    def _drain_icmp(self, fam: _FamilySockets) -> bool:
        """Read every answer waiting on the ICMP socket; whether anything was read."""
        sock = fam.icmp
        if sock is None:
            return False
        got = False
        if self.mode == "dgram":
            got = self._drain_errors(fam, sock, ICMP)
        while not self._closed:
            try:
                data, ancillary, _flags, address = sock.recvmsg(_RECV_SIZE, 256)
            except (BlockingIOError, InterruptedError):
                return got
            except OSError as e:
                self.log.debug("ICMP socket read failed: {err}", err=e)
                return got
            got = True
            try:
                if not fam.v6 and self.mode == "raw":
                    answer = parse_icmp4(data)
                else:
                    answer = parse_icmp_message(
                        data, _strip_scope(address[0]), _ttl_from(ancillary), v6=fam.v6
                    )
            except NotAnAnswer:
                self.counters["ignored_icmp"] += 1
                continue
            except ValueError:
                self.counters["unmatched"] += 1
                continue
            self._answer(answer, fam)
        return got

    def _drain_udp(self, fam: _FamilySockets) -> bool:
        """Drain the UDP socket: its error queue (``dgram``) and stray datagrams."""
        sock = fam.udp
        if sock is None:
            return False
        got = self._drain_errors(fam, sock, UDP) if self.mode == "dgram" else False
        # Answers fire Deferreds whose callbacks may close the prober meanwhile.
        while not self._closed:
            try:
                sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return got
            except OSError as e:
                # a pending socket error (sk_err) reported by a normal read, reported once
                if e.errno == errno.EBADF or self.mode != "dgram":
                    return got
                got = self._drain_errors(fam, sock, UDP) or got
                continue
            got = True
            self.counters["stray_datagrams"] += 1
        return got

    def _drain_errors(self, fam: _FamilySockets, sock: socket.socket, protocol: str) -> bool:
        got = False
        level = socket.IPPROTO_IPV6 if fam.v6 else socket.IPPROTO_IP
        kind = IPV6_RECVERR if fam.v6 else IP_RECVERR
        while not self._closed:
            try:
                data, ancillary, _flags, address = sock.recvmsg(
                    _RECV_SIZE, 512, socket.MSG_ERRQUEUE
                )
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self.log.debug("error queue read failed: {err}", err=e)
                break
            got = True
            queued = None
            for cmsg_level, cmsg_type, cmsg_data in ancillary:
                if cmsg_level == level and cmsg_type == kind:
                    try:
                        queued = parse_extended_err(cmsg_data, fam.v6)
                    except ValueError:
                        queued = None
            answer = _queued_answer(
                queued, fam, protocol, data, address, self.dst_port, fam.udp_port
            )
            if answer is None:
                self.counters["unmatched"] += 1
                continue
            self._answer(answer, fam)
        if not self._closed:
            try:
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError:
                pass
        return got


def _queued_answer(
    queued: QueuedError | None,
    fam: _FamilySockets,
    protocol: str,
    data: bytes,
    address: Any,
    dst_port: int,
    udp_port: int,
) -> IcmpAnswer | None:
    """An error-queue entry as the :class:`IcmpAnswer` a raw socket would have read."""
    origin = SO_EE_ORIGIN_ICMP6 if fam.v6 else SO_EE_ORIGIN_ICMP
    if queued is None or queued.origin != origin or queued.offender is None:
        return None
    if not isinstance(address, tuple) or not address:
        return None
    dst = _strip_scope(str(address[0]))
    src = "::" if fam.v6 else "0.0.0.0"
    proto = PROTO_ICMP6 if fam.v6 else PROTO_ICMP
    if protocol == UDP:
        quoted = Quoted(PROTO_UDP, src, dst, udp_port, dst_port, payload_seq(data))
    else:
        try:
            quoted = _quoted_transport(proto, src, dst, data)
        except ValueError:
            return None
        quoted = Quoted(proto, src, dst, fam.icmp_ident, None, quoted.seq, quoted.checksum)
    return IcmpAnswer(
        _strip_scope(queued.offender), queued.icmp_type, queued.code, fam.v6, None, quoted
    )


def _strip_scope(address: str) -> str:
    return address.split("%", 1)[0]


def _ttl_from(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if (level, kind) in (
            (socket.IPPROTO_IP, socket.IP_TTL),
            (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT),
        ) and len(data) >= 4:
            return int(struct.unpack("=i", data[:4])[0])
    return None


def _resolve_mode(mode: str, socket_factory: Callable[..., Any] = socket.socket) -> str:
    if mode != "auto":
        return mode
    try:
        socket_factory(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except OSError:
        return "dgram"
    return "raw"


# -- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dnaagent.measure.paris",
        description="Paris traceroute probes towards DEST: every TTL from 1 (classic), "
        "or one Doubletree trace with --start-ttl and stop sets.",
    )
    parser.add_argument("destinations", metavar="DEST", nargs="+", help="IP addresses")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=UDP, help="probe protocol")
    parser.add_argument(
        "--mode", choices=MODES, default="auto", help="raw sockets (root) or dgram (any user)"
    )
    parser.add_argument("--max-ttl", type=int, default=16, help="highest TTL (default 16)")
    parser.add_argument("--gap-limit", type=int, default=3, help="silent hops before giving up")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per probe")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="probes per second")
    parser.add_argument(
        "--start-ttl", type=int, default=1, help="Doubletree's start hop h (1: classic)"
    )
    parser.add_argument(
        "--local-stop", action="append", default=[], metavar="ADDR", help="local stop set"
    )
    parser.add_argument(
        "--global-stop",
        action="append",
        default=[],
        metavar="ADDR,DEST",
        help="a global stop set pair (interface,destination)",
    )
    parser.add_argument(
        "--chunk",
        action="store_true",
        help="trace the destinations as one DTS chunk (AsyncMonitor.probe_chunk: shared "
        "stop sets, --concurrency destinations at once); hop kinds then come from the "
        "chunk's records",
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="destinations traced at once with --chunk"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Trace the destinations given on the command line; print the results."""
    from twisted.internet import task

    from dnaagent.dts.realprober import AsyncMonitor
    from dnaagent.dts.stopsets import GlobalStopSet, LocalStopSet

    args = _parser().parse_args(argv)
    pairs = []
    for text in args.global_stop:
        interface, _, destination = text.partition(",")
        if not destination:
            print(f"--global-stop {text!r}: expected ADDR,DEST", file=sys.stderr)
            return 2
        pairs.append((interface, destination))
    if args.concurrency < 1:
        print("--concurrency must be at least 1", file=sys.stderr)
        return 2
    output: dict[str, Any] = {}

    async def run(_reactor: Any) -> None:
        try:
            prober = Prober(
                _reactor,
                protocol=args.protocol,
                mode=args.mode,
                rate=args.rate,
                timeout=args.timeout,
                keep_log=True,
            )
        except ValueError as e:
            output["error"] = str(e)
            return
        monitor = AsyncMonitor(
            "cli",
            prober,
            args.start_ttl,
            max_ttl=args.max_ttl,
            gap_limit=args.gap_limit,
            clock=_reactor.seconds,
            local=LocalStopSet(args.local_stop),
            concurrency=args.concurrency,
        )
        output.update({"mode": prober.mode, "protocol": args.protocol, "traces": []})

        def describe(
            destination: str, forward: str, backward: str, hops: list[tuple[int, Reply]]
        ) -> dict[str, Any]:
            return {
                "destination": destination,
                "flow": prober.flow(destination),
                "forward_stop": forward,
                "backward_stop": backward,
                "hops": [
                    {
                        "ttl": ttl,
                        "from": r.address,
                        "kind": r.kind.value,
                        "rtt": r.rtt,
                        "reply_ttl": r.reply_ttl,
                        "err": r.err,
                    }
                    for ttl, r in hops
                ],
            }

        try:
            if args.chunk:
                stop = GlobalStopSet(0, pairs)
                records = await monitor.probe_chunk("cli", 0, args.destinations, stop)
                for record in records:
                    output["traces"].append(
                        describe(
                            record.dst_addr,
                            record.forward_stop,
                            record.backward_stop,
                            sorted(record.replies().items()),
                        )
                    )
            for destination in [] if args.chunk else args.destinations:
                trace = await monitor.trace(destination, GlobalStopSet(0, pairs))
                output["traces"].append(
                    describe(
                        destination,
                        trace.forward_stop.value if trace.forward_stop else "",
                        trace.backward_stop.value if trace.backward_stop else "",
                        sorted(trace.hops.items()),
                    )
                )
        except (ProbeError, ValueError) as e:
            output["error"] = str(e)
        finally:
            output["sent"] = [
                {"destination": p.destination, "ttl": p.ttl, "seq": p.seq, **p.flow}
                for p in prober.sent_log or []
            ]
            output["counters"] = dict(prober.counters)
            output["peak_in_flight"] = prober.peak_in_flight
            prober.close()

    def report() -> int:
        if args.json:
            print(json.dumps(output), flush=True)
            return 1 if "error" in output else 0
        for trace in output.get("traces", []):
            print(f"{trace['destination']} ({output['protocol']}, {output['mode']}):")
            for hop in trace["hops"]:
                rtt = f"{hop['rtt']:.3f} ms" if hop["rtt"] is not None else ""
                err = "" if hop.get("err") is None else f"  !{hop['err']}"
                print(f"  {hop['ttl']:2d}  {hop['from'] or '*'}  {hop['kind']}  {rtt}{err}")
            print(f"  stops: forwards {trace['forward_stop']}, backwards {trace['backward_stop']}")
        if "error" in output:
            print(f"error: {output['error']}", file=sys.stderr)
        sys.stdout.flush()
        return 1 if "error" in output else 0

    async def run_and_report(_reactor: Any) -> None:
        await run(_reactor)
        code = report()
        if code:
            raise SystemExit(code)

    task.react(lambda r: defer.Deferred.fromCoroutine(run_and_report(r)), [])
    return 0  # not reached: react() exits


if __name__ == "__main__":
    sys.exit(main())
