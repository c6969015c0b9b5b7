"""SNMPv2c read requests answered without pysnmp: a small, strict BER codec.

Profiling the embedded agent showed most of a GET spent in pyasn1 decoding
and encoding the message. For the common case, an SNMPv2c GetRequest,
GetNextRequest or GetBulkRequest carrying the configured community, this
module parses the message itself, reads the :class:`~dnaagent.snmp.tree.MibTree`
and builds the Response. Everything else (SNMPv1, SNMPv3, SET, a wrong
community, anything unusual or malformed) returns None and goes to pysnmp,
which counts and answers or drops it as the RFCs say.

The parser accepts only definite lengths, single-octet tags and exact
nesting; OIDs are checked as RFC 2578 says (at most 128 sub-identifiers, each
below 2**32). The fast path applies the same read view as the VACM
configuration of the pysnmp path (:data:`READ_SUBTREES`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from dnaagent.snmp.tree import OID, Kind, Value

GET, GETNEXT, RESPONSE, SET, GETBULK = 0xA0, 0xA1, 0xA2, 0xA3, 0xA5
NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW = 0x80, 0x81, 0x82

MAX_MESSAGE = 65507  # largest UDP payload over IPv4
MAX_VARBINDS = 2048  # per request (more goes to pysnmp)
MAX_BULK_VARBINDS = 1024  # per GetBulk response
MAX_OID_LENGTH = 128

_TAGS = {
    Kind.INTEGER: 0x02,
    Kind.OCTETS: 0x04,
    Kind.OID: 0x06,
    Kind.IPADDRESS: 0x40,
    Kind.COUNTER32: 0x41,
    Kind.GAUGE32: 0x42,
    Kind.TIMETICKS: 0x43,
    Kind.OPAQUE: 0x44,
    Kind.COUNTER64: 0x46,
}


class Malformed(Exception):
    """The message is not one the fast path handles (pysnmp gets it)."""


def encode_length(n: int) -> bytes:
    """BER definite length."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, body: bytes) -> bytes:
    """One BER tag-length-value."""
    return bytes((tag,)) + encode_length(len(body)) + body


def encode_integer(v: int) -> bytes:
    """The content octets of a signed INTEGER (two's complement, minimal)."""
    return v.to_bytes(max(1, (v + (v < 0)).bit_length() // 8 + 1), "big", signed=True)


def encode_unsigned(v: int) -> bytes:
    """The content octets of an unsigned application integer (Counter32, ...)."""
    return v.to_bytes(v.bit_length() // 8 + 1, "big")


def encode_oid(oid: OID) -> bytes:
    """The content octets of an OBJECT IDENTIFIER."""
    if len(oid) < 2:
        raise ValueError("an OID has at least two sub-identifiers")
    out = bytearray()
    for sub in (oid[0] * 40 + oid[1], *oid[2:]):
        if sub < 0x80:
            out.append(sub)
            continue
        chunk = []
        while sub:
            chunk.append(sub & 0x7F)
            sub >>= 7
        chunk.reverse()
        out.extend(b | 0x80 for b in chunk[:-1])
        out.append(chunk[-1])
    return bytes(out)


def decode_oid(data: bytes) -> OID:
    """An OBJECT IDENTIFIER from its content octets; Malformed if invalid."""
    if not data or data[-1] & 0x80:
        raise Malformed("bad OID")
    subs: list[int] = []
    sub = 0
    start = True
    for b in data:
        if start and b == 0x80:
            raise Malformed("OID sub-identifier with a leading zero octet")
        sub = (sub << 7) | (b & 0x7F)
        if b & 0x80:
            start = False
            continue
        subs.append(sub)
        sub = 0
        start = True
    first = subs[0]
    head = (first // 40, first % 40) if first < 80 else (2, first - 80)
    oid = head + tuple(subs[1:])
    if len(oid) > MAX_OID_LENGTH or any(x >= 2**32 for x in oid):
        raise Malformed("OID out of range")
    return oid


def encode_value(value: Value) -> bytes:
    """The TLV of a tree value."""
    kind, v = value.kind, value.value
    tag = _TAGS[kind]
    if kind is Kind.INTEGER:
        return tlv(tag, encode_integer(v))
    if kind in (Kind.OCTETS, Kind.OPAQUE, Kind.IPADDRESS):
        return tlv(tag, v)
    if kind is Kind.OID:
        return tlv(tag, encode_oid(v))
    return tlv(tag, encode_unsigned(v))


def _read(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``pos``; Malformed if bad."""
    if pos + 2 > end:
        raise Malformed("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise Malformed("multi-octet tag")
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 3 or pos + k > end:
            raise Malformed("bad length")
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise Malformed("truncated")
    return tag, pos, pos + n


def _integer(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    tag, s, e = _read(buf, pos, end)
    if tag != 0x02 or not 1 <= e - s <= 4:
        raise Malformed("expected a 32-bit INTEGER")
    return int.from_bytes(buf[s:e], "big", signed=True), e


class Request:
    """A parsed SNMPv2c read request."""

    __slots__ = ("community", "pdu_type", "request_id", "non_repeaters", "max_repetitions", "oids")

    def __init__(
        self,
        community: bytes,
        pdu_type: int,
        request_id: bytes,
        non_repeaters: int,
        max_repetitions: int,
        oids: list[OID],
    ) -> None:
        self.community = community
        self.pdu_type = pdu_type
        self.request_id = request_id
        self.non_repeaters = non_repeaters
        self.max_repetitions = max_repetitions
        self.oids = oids


def parse(buf: bytes) -> Request:
    """Parse an SNMPv2c Get/GetNext/GetBulk message; Malformed for anything else."""
    end = len(buf)
    tag, s, e = _read(buf, 0, end)
    if tag != 0x30 or e != end:
        raise Malformed("not a message")
    version, pos = _integer(buf, s, e)
    if version != 1:
        raise Malformed("not SNMPv2c")
    tag, cs, ce = _read(buf, pos, e)
    if tag != 0x04:
        raise Malformed("no community")
    community = buf[cs:ce]
    pdu_type, ps, pe = _read(buf, ce, e)
    if pe != e or pdu_type not in (GET, GETNEXT, GETBULK):
        raise Malformed("not a read request")
    tag, rs, re = _read(buf, ps, pe)
    if tag != 0x02 or not 1 <= re - rs <= 4:
        raise Malformed("bad request-id")
    request_id = buf[ps:re]
    second, pos = _integer(buf, re, pe)
    third, pos = _integer(buf, pos, pe)
    tag, ls, le = _read(buf, pos, pe)
    if tag != 0x30 or le != pe:
        raise Malformed("bad varbind list")
    oids: list[OID] = []
    pos = ls
    while pos < le:
        tag, vs, ve = _read(buf, pos, le)
        if tag != 0x30:
            raise Malformed("bad varbind")
        tag, os_, oe = _read(buf, vs, ve)
        if tag != 0x06:
            raise Malformed("varbind without an OID")
        oids.append(decode_oid(buf[os_:oe]))
        _, _, value_end = _read(buf, oe, ve)
        if value_end != ve:
            raise Malformed("trailing octets in a varbind")
        pos = ve
        if len(oids) > MAX_VARBINDS:
            raise Malformed("too many varbinds")
    if pdu_type == GETBULK:
        return Request(community, pdu_type, request_id, max(0, second), max(0, third), oids)
    if second or third:
        raise Malformed("error-status in a request")
    return Request(community, pdu_type, request_id, 0, 0, oids)


Reader = Callable[[OID], "Value | None"]
NextReader = Callable[[OID], "tuple[OID, Value] | None"]


class FastResponder:
    """Answers SNMPv2c reads for one community from ``get``/``next`` readers.

    ``subtrees`` is the read view; ``objects`` tells noSuchInstance (a known
    object) from noSuchObject. :meth:`respond` returns the response message,
    or None when pysnmp must handle the datagram.
    """

    def __init__(
        self,
        community: bytes,
        get: Reader,
        next_: NextReader,
        subtrees: tuple[OID, ...],
        objects: frozenset[OID],
    ) -> None:
        self.community = community
        self.get = get
        self.next = next_
        self.subtrees = subtrees
        self.objects = objects
        self.answered = 0
        self._encoded: dict[OID, tuple[Value, bytes]] = {}

    def _in_view(self, oid: OID) -> bool:
        for s in self.subtrees:
            if oid[: len(s)] == s:
                return True
        return False

    def _varbind(self, oid: OID, value: Value) -> bytes:
        cached = self._encoded.get(oid)
        if cached is not None and cached[0] is value:
            return cached[1]
        body = tlv(0x06, encode_oid(oid)) + encode_value(value)
        vb = tlv(0x30, body)
        if len(self._encoded) > 100_000:
            self._encoded.clear()
        self._encoded[oid] = (value, vb)
        return vb

    @staticmethod
    def _exception(oid: OID, tag: int) -> bytes:
        return tlv(0x30, tlv(0x06, encode_oid(oid)) + bytes((tag, 0)))

    def _get_one(self, oid: OID) -> bytes:
        value = self.get(oid) if self._in_view(oid) else None
        if value is not None:
            return self._varbind(oid, value)
        if self._in_view(oid) and any(oid[:k] in self.objects for k in range(len(oid) - 1, 6, -1)):
            return self._exception(oid, NO_SUCH_INSTANCE)
        return self._exception(oid, NO_SUCH_OBJECT)

    def _next_one(self, oid: OID) -> tuple[OID, bytes, bool]:
        """(the OID reached, its varbind, whether it is endOfMibView)."""
        cursor = oid
        while True:
            found = self.next(cursor)
            if found is None:
                return oid, self._exception(oid, END_OF_MIB_VIEW), True
            cursor, value = found
            if self._in_view(cursor):
                return cursor, self._varbind(cursor, value), False

    def respond(self, datagram: bytes) -> bytes | None:
        """The Response message for ``datagram``, or None (pysnmp handles it)."""
        try:
            req = parse(datagram)
        except (Malformed, IndexError, ValueError):
            return None
        if not hmac.compare_digest(req.community, self.community):
            return None  # pysnmp counts snmpInBadCommunityNames
        if req.pdu_type == GET:
            varbinds = [self._get_one(oid) for oid in req.oids]
        elif req.pdu_type == GETNEXT:
            varbinds = [self._next_one(oid)[1] for oid in req.oids]
        else:
            varbinds = self._bulk(req)
        body = b"".join(varbinds)
        message = self._message(req, body)
        if len(message) > MAX_MESSAGE:
            if req.pdu_type != GETBULK:
                return None  # pysnmp answers tooBig
            while varbinds and len(message) > MAX_MESSAGE:
                del varbinds[len(varbinds) // 2 :]
                message = self._message(req, b"".join(varbinds))
        self.answered += 1
        return message

    def _bulk(self, req: Request) -> list[bytes]:
        n = min(req.non_repeaters, len(req.oids))
        out = [self._next_one(oid)[1] for oid in req.oids[:n]]
        cursors = list(req.oids[n:])
        if not cursors:
            return out
        repetitions = min(req.max_repetitions, max(1, (MAX_BULK_VARBINDS - n) // len(cursors)))
        done = [False] * len(cursors)
        size = sum(len(v) for v in out)
        for _ in range(repetitions):
            for i, oid in enumerate(cursors):
                if done[i]:
                    out.append(self._exception(oid, END_OF_MIB_VIEW))
                    continue
                reached, vb, end = self._next_one(oid)
                cursors[i] = reached
                done[i] = end
                out.append(vb)
                size += len(vb)
            if all(done) or size > MAX_MESSAGE:
                break
        return out

    def _message(self, req: Request, varbinds: bytes) -> bytes:
        pdu = req.request_id + b"\x02\x01\x00\x02\x01\x00" + tlv(0x30, varbinds)
        return tlv(0x30, b"\x02\x01\x01" + tlv(0x04, req.community) + tlv(RESPONSE, pdu))
