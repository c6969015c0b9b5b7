"""AgentX (RFC 2741) PDUs: pure encode and decode, no I/O.

Every PDU is a dataclass (:class:`OpenPdu`, :class:`GetPdu`, ...,
:class:`ResponsePdu`) with the header fields ``session_id``,
``transaction_id``, ``packet_id`` and ``flags`` (only the registration and
index flags; the byte-order and context flags follow from how it is encoded
and from ``context``). :func:`encode` turns one into bytes, in network byte
order unless asked otherwise; :func:`decode` reads one complete PDU in either
byte order and checks it strictly: any malformed input raises
:class:`AgentxParseError` and nothing else. :class:`Framer` cuts a byte
stream into complete PDUs (a read may hold part of one, or several).

Encodings (RFC 2741 §5): an OBJECT IDENTIFIER is ``n_subid, prefix, include,
reserved`` then ``n_subid`` 32-bit sub-identifiers, where a non-zero prefix
stands for ``1.3.6.1.<prefix>``; an OCTET STRING is a 32-bit length then the
octets padded with zeros to a multiple of four; a SearchRange is a start OID
(whose include byte matters) and an end OID (empty: no end).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from dnaagent.errors import DnaAgentError

OID = tuple[int, ...]

#: Size of the fixed header that starts every PDU.
HEADER_SIZE = 20
#: Largest payload :class:`Framer` accepts by default (bytes).
MAX_PAYLOAD = 1 << 20
#: Most sub-identifiers in an OBJECT IDENTIFIER (RFC 2578 §3.5).
MAX_SUBIDS = 128

# h.flags bits (RFC 2741 §6.1).
INSTANCE_REGISTRATION = 0x01
NEW_INDEX = 0x02
ANY_INDEX = 0x04
NON_DEFAULT_CONTEXT = 0x08
NETWORK_BYTE_ORDER = 0x10
_CARRIED_FLAGS = INSTANCE_REGISTRATION | NEW_INDEX | ANY_INDEX

_INTERNET = (1, 3, 6, 1)


class AgentxParseError(DnaAgentError, ValueError):
    """Bytes that are not a well-formed AgentX PDU.

    ``header`` is the decoded :class:`Header` when the fixed header itself was
    sound (the PDU can then be answered with a parseError Response and the
    stream goes on); None when the stream cannot be trusted any more.
    """

    def __init__(self, problem: str, header: Header | None = None) -> None:
        super().__init__(problem)
        self.header = header


class PduType(enum.IntEnum):
    """h.type values (RFC 2741 §6.1)."""

    OPEN = 1
    CLOSE = 2
    REGISTER = 3
    UNREGISTER = 4
    GET = 5
    GETNEXT = 6
    GETBULK = 7
    TESTSET = 8
    COMMITSET = 9
    UNDOSET = 10
    CLEANUPSET = 11
    NOTIFY = 12
    PING = 13
    INDEXALLOCATE = 14
    INDEXDEALLOCATE = 15
    ADDAGENTCAPS = 16
    REMOVEAGENTCAPS = 17
    RESPONSE = 18


class VarType(enum.IntEnum):
    """v.type values of a VarBind (RFC 2741 §5.4)."""

    INTEGER = 2
    OCTET_STRING = 4
    NULL = 5
    OBJECT_IDENTIFIER = 6
    IP_ADDRESS = 64
    COUNTER32 = 65
    GAUGE32 = 66
    TIME_TICKS = 67
    OPAQUE = 68
    COUNTER64 = 70
    NO_SUCH_OBJECT = 128
    NO_SUCH_INSTANCE = 129
    END_OF_MIB_VIEW = 130


class CloseReason(enum.IntEnum):
    """c.reason values of a Close PDU (RFC 2741 §6.2.2)."""

    OTHER = 1
    PARSE_ERROR = 2
    PROTOCOL_ERROR = 3
    TIMEOUTS = 4
    SHUTDOWN = 5
    BY_MANAGER = 6


class ResponseError(enum.IntEnum):
    """res.error values: the SNMP error-status codes and AgentX's own (RFC 2741 §6.2.16)."""

    NO_ERROR = 0
    TOO_BIG = 1
    NO_SUCH_NAME = 2
    BAD_VALUE = 3
    READ_ONLY = 4
    GEN_ERR = 5
    NO_ACCESS = 6
    WRONG_TYPE = 7
    WRONG_LENGTH = 8
    WRONG_ENCODING = 9
    WRONG_VALUE = 10
    NO_CREATION = 11
    INCONSISTENT_VALUE = 12
    RESOURCE_UNAVAILABLE = 13
    COMMIT_FAILED = 14
    UNDO_FAILED = 15
    AUTHORIZATION_ERROR = 16
    NOT_WRITABLE = 17
    INCONSISTENT_NAME = 18
    OPEN_FAILED = 256
    NOT_OPEN = 257
    INDEX_WRONG_TYPE = 258
    INDEX_ALREADY_ALLOCATED = 259
    INDEX_NONE_AVAILABLE = 260
    INDEX_NOT_ALLOCATED = 261
    UNSUPPORTED_CONTEXT = 262
    DUPLICATE_REGISTRATION = 263
    UNKNOWN_REGISTRATION = 264
    UNKNOWN_AGENT_CAPS = 265
    PARSE_ERROR = 266
    REQUEST_DENIED = 267
    PROCESSING_ERROR = 268


class Header(NamedTuple):
    """The fixed 20-byte header of a PDU, as read from the wire."""

    version: int
    type: int
    flags: int
    session_id: int
    transaction_id: int
    packet_id: int
    payload_length: int

    @property
    def big_endian(self) -> bool:
        """True when the PDU's integers are in network byte order."""
        return bool(self.flags & NETWORK_BYTE_ORDER)


@dataclass(frozen=True, slots=True)
class SearchRange:
    """A range of OIDs to search: from ``start`` (included when ``include``) up to ``end``.

    An empty ``end`` means no upper bound.
    """

    start: OID
    end: OID = ()
    include: bool = False


@dataclass(frozen=True, slots=True)
class VarBind:
    """One variable binding: name, :class:`VarType` and value.

    The value is an ``int`` for the integer types, ``bytes`` for OCTET
    STRING, Opaque and IpAddress (four bytes), an OID tuple for OBJECT
    IDENTIFIER, and None for Null and the three exceptions.
    """

    oid: OID
    type: int
    value: Any = None


@dataclass(kw_only=True)
class Pdu:
    """Fields every AgentX PDU has (the header); subclasses add their payload."""

    TYPE: ClassVar[PduType]
    #: Whether this PDU type may carry a non-default context.
    HAS_CONTEXT: ClassVar[bool] = False

    session_id: int = 0
    transaction_id: int = 0
    packet_id: int = 0
    #: INSTANCE_REGISTRATION, NEW_INDEX and ANY_INDEX bits.
    flags: int = 0
    #: The non-default context (only on types with HAS_CONTEXT), else None.
    context: bytes | None = None


@dataclass(kw_only=True)
class OpenPdu(Pdu):
    """agentx-Open-PDU: a subagent asks for a session (§6.2.1)."""

    TYPE = PduType.OPEN
    timeout: int = 0
    id: OID = ()
    descr: bytes = b""


@dataclass(kw_only=True)
class ClosePdu(Pdu):
    """agentx-Close-PDU: either side ends the session (§6.2.2)."""

    TYPE = PduType.CLOSE
    reason: int = CloseReason.SHUTDOWN


@dataclass(kw_only=True)
class RegisterPdu(Pdu):
    """agentx-Register-PDU: a subagent claims a subtree (§6.2.3).

    With ``range_subid`` non-zero, sub-identifier number ``range_subid`` (from
    1) of ``subtree`` ranges up to ``upper_bound``.
    """

    TYPE = PduType.REGISTER
    HAS_CONTEXT = True
    timeout: int = 0
    priority: int = 127
    range_subid: int = 0
    subtree: OID = ()
    upper_bound: int | None = None


@dataclass(kw_only=True)
class UnregisterPdu(Pdu):
    """agentx-Unregister-PDU: a subagent gives a subtree up (§6.2.4)."""

    TYPE = PduType.UNREGISTER
    HAS_CONTEXT = True
    priority: int = 127
    range_subid: int = 0
    subtree: OID = ()
    upper_bound: int | None = None


@dataclass(kw_only=True)
class GetPdu(Pdu):
    """agentx-Get-PDU: the master asks for exact instances (§6.2.5)."""

    TYPE = PduType.GET
    HAS_CONTEXT = True
    ranges: list[SearchRange] = field(default_factory=list)


@dataclass(kw_only=True)
class GetNextPdu(Pdu):
    """agentx-GetNext-PDU: the master asks for the next instance in each range (§6.2.6)."""

    TYPE = PduType.GETNEXT
    HAS_CONTEXT = True
    ranges: list[SearchRange] = field(default_factory=list)


@dataclass(kw_only=True)
class GetBulkPdu(Pdu):
    """agentx-GetBulk-PDU (§6.2.7)."""

    TYPE = PduType.GETBULK
    HAS_CONTEXT = True
    non_repeaters: int = 0
    max_repetitions: int = 0
    ranges: list[SearchRange] = field(default_factory=list)


@dataclass(kw_only=True)
class TestSetPdu(Pdu):
    """agentx-TestSet-PDU: first phase of a SET (§6.2.8)."""

    __test__ = False  # not a pytest test class despite its name
    TYPE = PduType.TESTSET
    HAS_CONTEXT = True
    varbinds: list[VarBind] = field(default_factory=list)


@dataclass(kw_only=True)
class CommitSetPdu(Pdu):
    """agentx-CommitSet-PDU (§6.2.9)."""

    TYPE = PduType.COMMITSET


@dataclass(kw_only=True)
class UndoSetPdu(Pdu):
    """agentx-UndoSet-PDU (§6.2.9)."""

    TYPE = PduType.UNDOSET


@dataclass(kw_only=True)
class CleanupSetPdu(Pdu):
    """agentx-CleanupSet-PDU; it has no Response (§6.2.9, §7.2.4.4)."""

    TYPE = PduType.CLEANUPSET


@dataclass(kw_only=True)
class NotifyPdu(Pdu):
    """agentx-Notify-PDU: a subagent asks the master to send a notification (§6.2.10)."""

    TYPE = PduType.NOTIFY
    HAS_CONTEXT = True
    varbinds: list[VarBind] = field(default_factory=list)


@dataclass(kw_only=True)
class PingPdu(Pdu):
    """agentx-Ping-PDU: a subagent checks that the master still answers (§6.2.11)."""

    TYPE = PduType.PING
    HAS_CONTEXT = True


@dataclass(kw_only=True)
class IndexAllocatePdu(Pdu):
    """agentx-IndexAllocate-PDU (§6.2.12)."""

    TYPE = PduType.INDEXALLOCATE
    HAS_CONTEXT = True
    varbinds: list[VarBind] = field(default_factory=list)


@dataclass(kw_only=True)
class IndexDeallocatePdu(Pdu):
    """agentx-IndexDeallocate-PDU (§6.2.13)."""

    TYPE = PduType.INDEXDEALLOCATE
    HAS_CONTEXT = True
    varbinds: list[VarBind] = field(default_factory=list)


@dataclass(kw_only=True)
class AddAgentCapsPdu(Pdu):
    """agentx-AddAgentCaps-PDU (§6.2.14)."""

    TYPE = PduType.ADDAGENTCAPS
    HAS_CONTEXT = True
    id: OID = ()
    descr: bytes = b""


@dataclass(kw_only=True)
class RemoveAgentCapsPdu(Pdu):
    """agentx-RemoveAgentCaps-PDU (§6.2.15)."""

    TYPE = PduType.REMOVEAGENTCAPS
    HAS_CONTEXT = True
    id: OID = ()


@dataclass(kw_only=True)
class ResponsePdu(Pdu):
    """agentx-Response-PDU (§6.2.16); ``index`` counts varbinds from 1."""

    TYPE = PduType.RESPONSE
    sys_uptime: int = 0
    error: int = 0
    index: int = 0
    varbinds: list[VarBind] = field(default_factory=list)


PDU_CLASSES: dict[int, type[Pdu]] = {
    cls.TYPE: cls
    for cls in (
        OpenPdu,
        ClosePdu,
        RegisterPdu,
        UnregisterPdu,
        GetPdu,
        GetNextPdu,
        GetBulkPdu,
        TestSetPdu,
        CommitSetPdu,
        UndoSetPdu,
        CleanupSetPdu,
        NotifyPdu,
        PingPdu,
        IndexAllocatePdu,
        IndexDeallocatePdu,
        AddAgentCapsPdu,
        RemoveAgentCapsPdu,
        ResponsePdu,
    )
}

# ---------------------------------------------------------------------------
# Encoding


_HEADER = {True: struct.Struct(">BBBBIIII"), False: struct.Struct("<BBBBIIII")}
_U32 = {True: struct.Struct(">I"), False: struct.Struct("<I")}
_I32 = {True: struct.Struct(">i"), False: struct.Struct("<i")}
_U64 = {True: struct.Struct(">Q"), False: struct.Struct("<Q")}
_U16 = {True: struct.Struct(">H"), False: struct.Struct("<H")}
_VB_HEAD = {True: struct.Struct(">HH"), False: struct.Struct("<HH")}
_RESPONSE_HEAD = {True: struct.Struct(">IHH"), False: struct.Struct("<IHH")}
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


def _encode_oid(out: bytearray, oid: Sequence[int], include: bool, big: bool) -> None:
    """Append one OBJECT IDENTIFIER, using the ``1.3.6.1.x`` prefix when it fits."""
    n = len(oid)
    if n > MAX_SUBIDS:
        raise ValueError(f"an OID has at most {MAX_SUBIDS} sub-identifiers, not {n}")
    if n >= 5 and oid[0] == 1 and oid[1] == 3 and oid[2] == 6 and oid[3] == 1 and 0 < oid[4] < 256:
        prefix = oid[4]
        sub = oid[5:]
    else:
        prefix = 0
        sub = oid
    out += bytes((len(sub), prefix, 1 if include else 0, 0))
    try:
        out += struct.pack(f"{'>' if big else '<'}{len(sub)}I", *sub)
    except struct.error as e:
        raise ValueError(f"bad sub-identifier in OID {oid!r}: {e}") from None


def _encode_octets(out: bytearray, data: bytes, big: bool) -> None:
    """Append one OCTET STRING with its length and padding."""
    n = len(data)
    out += _U32[big].pack(n)
    out += data
    out += _PAD[n & 3]


def _encode_varbind(out: bytearray, vb: VarBind, big: bool) -> None:
    """Append one VarBind."""
    t = vb.type
    out += _VB_HEAD[big].pack(t, 0)
    _encode_oid(out, vb.oid, False, big)
    v = vb.value
    try:
        if t == VarType.INTEGER:
            out += _I32[big].pack(v)
        elif t in (VarType.COUNTER32, VarType.GAUGE32, VarType.TIME_TICKS):
            out += _U32[big].pack(v)
        elif t in (VarType.OCTET_STRING, VarType.OPAQUE):
            _encode_octets(out, bytes(v), big)
        elif t == VarType.IP_ADDRESS:
            if len(v) != 4:
                raise ValueError("an IpAddress has four octets")
            _encode_octets(out, bytes(v), big)
        elif t == VarType.OBJECT_IDENTIFIER:
            _encode_oid(out, v, False, big)
        elif t == VarType.COUNTER64:
            out += _U64[big].pack(v)
        elif t not in (
            VarType.NULL,
            VarType.NO_SUCH_OBJECT,
            VarType.NO_SUCH_INSTANCE,
            VarType.END_OF_MIB_VIEW,
        ):
            raise ValueError(f"unknown VarBind type {t}")
    except (struct.error, TypeError) as e:
        raise ValueError(f"bad {VarType(t).name} value {v!r}: {e}") from None


def _encode_ranges(out: bytearray, ranges: Sequence[SearchRange], big: bool) -> None:
    for r in ranges:
        _encode_oid(out, r.start, r.include, big)
        _encode_oid(out, r.end, False, big)


def _encode_payload(pdu: Pdu, out: bytearray, big: bool) -> None:
    """Append the type-specific part of ``pdu`` (after any context)."""
    if isinstance(pdu, GetPdu | GetNextPdu):
        _encode_ranges(out, pdu.ranges, big)
    elif isinstance(pdu, ResponsePdu):
        out += _RESPONSE_HEAD[big].pack(pdu.sys_uptime, pdu.error, pdu.index)
        for vb in pdu.varbinds:
            _encode_varbind(out, vb, big)
    elif isinstance(pdu, TestSetPdu | NotifyPdu | IndexAllocatePdu | IndexDeallocatePdu):
        for vb in pdu.varbinds:
            _encode_varbind(out, vb, big)
    elif isinstance(pdu, GetBulkPdu):
        out += _U16[big].pack(pdu.non_repeaters) + _U16[big].pack(pdu.max_repetitions)
        _encode_ranges(out, pdu.ranges, big)
    elif isinstance(pdu, OpenPdu):
        out += bytes((pdu.timeout, 0, 0, 0))
        _encode_oid(out, pdu.id, False, big)
        _encode_octets(out, pdu.descr, big)
    elif isinstance(pdu, ClosePdu):
        out += bytes((pdu.reason, 0, 0, 0))
    elif isinstance(pdu, RegisterPdu | UnregisterPdu):
        if not 0 <= pdu.range_subid <= len(pdu.subtree):
            raise ValueError("range_subid must number a sub-identifier of the subtree")
        if (pdu.range_subid == 0) != (pdu.upper_bound is None):
            raise ValueError("upper_bound is given exactly when range_subid is not 0")
        timeout = pdu.timeout if isinstance(pdu, RegisterPdu) else 0
        out += bytes((timeout, pdu.priority, pdu.range_subid, 0))
        _encode_oid(out, pdu.subtree, False, big)
        if pdu.upper_bound is not None:
            out += _U32[big].pack(pdu.upper_bound)
    elif isinstance(pdu, AddAgentCapsPdu):
        _encode_oid(out, pdu.id, False, big)
        _encode_octets(out, pdu.descr, big)
    elif isinstance(pdu, RemoveAgentCapsPdu):
        _encode_oid(out, pdu.id, False, big)
    # CommitSet, UndoSet, CleanupSet and Ping have no payload of their own.


def encode(pdu: Pdu, big_endian: bool = True) -> bytes:
    """Encode one PDU (header included); ValueError if a field is out of range."""
    if pdu.context is not None and not pdu.HAS_CONTEXT:
        raise ValueError(f"a {pdu.TYPE.name} PDU has no context")
    out = bytearray(HEADER_SIZE)
    flags = pdu.flags & _CARRIED_FLAGS
    if big_endian:
        flags |= NETWORK_BYTE_ORDER
    if pdu.context is not None:
        flags |= NON_DEFAULT_CONTEXT
        _encode_octets(out, pdu.context, big_endian)
    try:
        _encode_payload(pdu, out, big_endian)
        _HEADER[big_endian].pack_into(
            out,
            0,
            1,
            pdu.TYPE,
            flags,
            0,
            pdu.session_id,
            pdu.transaction_id,
            pdu.packet_id,
            len(out) - HEADER_SIZE,
        )
    except struct.error as e:
        raise ValueError(f"cannot encode {pdu.TYPE.name}: {e}") from None
    return bytes(out)


# ---------------------------------------------------------------------------
# Decoding


class _Reader:
    """Reads the payload of one PDU, raising AgentxParseError past its end."""

    __slots__ = ("data", "pos", "end", "big", "e", "header")

    def __init__(self, data: bytes, pos: int, end: int, header: Header) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.header = header
        self.big = header.big_endian
        self.e = ">" if self.big else "<"

    def fail(self, problem: str) -> AgentxParseError:
        return AgentxParseError(problem, self.header)

    def take(self, n: int) -> int:
        """Reserve ``n`` bytes; return where they start."""
        p = self.pos
        if p + n > self.end:
            raise self.fail(f"truncated {PduType(self.header.type).name} PDU")
        self.pos = p + n
        return p

    def u8x4(self) -> bytes:
        p = self.take(4)
        return self.data[p : p + 4]

    def u16(self) -> int:
        return _U16[self.big].unpack_from(self.data, self.take(2))[0]

    def u32(self) -> int:
        return _U32[self.big].unpack_from(self.data, self.take(4))[0]

    def i32(self) -> int:
        return _I32[self.big].unpack_from(self.data, self.take(4))[0]

    def u64(self) -> int:
        return _U64[self.big].unpack_from(self.data, self.take(8))[0]

    def oid(self) -> tuple[OID, bool]:
        """One OBJECT IDENTIFIER and its include flag."""
        n, prefix, include, _ = self.u8x4()
        if include > 1:
            raise self.fail(f"include byte must be 0 or 1, not {include}")
        p = self.take(4 * n)
        sub = struct.unpack_from(f"{self.e}{n}I", self.data, p) if n else ()
        if prefix:
            if n + 5 > MAX_SUBIDS:
                raise self.fail("OID longer than 128 sub-identifiers")
            return (1, 3, 6, 1, prefix, *sub), bool(include)
        if n > MAX_SUBIDS:
            raise self.fail("OID longer than 128 sub-identifiers")
        return sub, bool(include)

    def octets(self) -> bytes:
        n = self.u32()
        if n > self.end - self.pos:
            raise self.fail("OCTET STRING longer than the PDU")
        p = self.take((n + 3) & ~3)
        return bytes(self.data[p : p + n])

    def varbind(self) -> VarBind:
        t, _ = _VB_HEAD[self.big].unpack_from(self.data, self.take(4))
        name, _ = self.oid()
        if t == VarType.INTEGER:
            return VarBind(name, t, self.i32())
        if t == VarType.OCTET_STRING or t == VarType.OPAQUE:
            return VarBind(name, t, self.octets())
        if t == VarType.COUNTER32 or t == VarType.GAUGE32 or t == VarType.TIME_TICKS:
            return VarBind(name, t, self.u32())
        if t == VarType.OBJECT_IDENTIFIER:
            return VarBind(name, t, self.oid()[0])
        if t == VarType.IP_ADDRESS:
            v = self.octets()
            if len(v) != 4:
                raise self.fail(f"IpAddress of {len(v)} octets")
            return VarBind(name, t, v)
        if t == VarType.COUNTER64:
            return VarBind(name, t, self.u64())
        if t in _NO_VALUE:
            return VarBind(name, t, None)
        raise self.fail(f"unknown VarBind type {t}")

    def varbinds(self) -> list[VarBind]:
        out = []
        while self.pos < self.end:
            out.append(self.varbind())
        return out

    def ranges(self) -> list[SearchRange]:
        out = []
        while self.pos < self.end:
            start, include = self.oid()
            end, _ = self.oid()
            out.append(SearchRange(start, end, include))
        return out


_NO_VALUE = frozenset(
    (VarType.NULL, VarType.NO_SUCH_OBJECT, VarType.NO_SUCH_INSTANCE, VarType.END_OF_MIB_VIEW)
)


def decode_header(data: bytes | bytearray, offset: int = 0) -> Header:
    """Read and check the fixed header at ``offset`` (at least 20 bytes must be there)."""
    if len(data) - offset < HEADER_SIZE:
        raise AgentxParseError("truncated AgentX header")
    version = data[offset]
    if version != 1:
        raise AgentxParseError(f"AgentX version {version} (only version 1 exists)")
    big = bool(data[offset + 2] & NETWORK_BYTE_ORDER)
    _, pdu_type, flags, _, session_id, transaction_id, packet_id, length = _HEADER[big].unpack_from(
        data, offset
    )
    header = Header(version, pdu_type, flags, session_id, transaction_id, packet_id, length)
    if header.payload_length & 3:
        raise AgentxParseError(f"payload length {header.payload_length} is not a multiple of 4")
    return header


def decode(data: bytes) -> Pdu:
    """Decode exactly one PDU, header included; AgentxParseError if it is malformed."""
    header = decode_header(data)
    if len(data) != HEADER_SIZE + header.payload_length:
        raise AgentxParseError(
            f"{len(data) - HEADER_SIZE} payload bytes but the header says {header.payload_length}"
        )
    return decode_body(data, HEADER_SIZE, header)


def decode_body(data: bytes, offset: int, header: Header) -> Pdu:
    """Decode the payload that follows ``header`` at ``offset``."""
    cls = PDU_CLASSES.get(header.type)
    if cls is None:
        raise AgentxParseError(f"unknown AgentX PDU type {header.type}", header)
    r = _Reader(data, offset, offset + header.payload_length, header)
    context = None
    if header.flags & NON_DEFAULT_CONTEXT:
        if not cls.HAS_CONTEXT:
            raise r.fail(f"a {cls.TYPE.name} PDU has no context")
        context = r.octets()
    common: dict[str, Any] = {
        "session_id": header.session_id,
        "transaction_id": header.transaction_id,
        "packet_id": header.packet_id,
        "flags": header.flags & _CARRIED_FLAGS,
        "context": context,
    }
    pdu: Pdu
    if cls is GetPdu or cls is GetNextPdu:
        pdu = cls(ranges=r.ranges(), **common)  # type: ignore[call-arg]
    elif cls is ResponsePdu:
        uptime = r.u32()
        error = r.u16()
        index = r.u16()
        pdu = ResponsePdu(
            sys_uptime=uptime, error=error, index=index, varbinds=r.varbinds(), **common
        )
    elif cls in (TestSetPdu, NotifyPdu, IndexAllocatePdu, IndexDeallocatePdu):
        pdu = cls(varbinds=r.varbinds(), **common)  # type: ignore[call-arg]
    elif cls is GetBulkPdu:
        non_repeaters = r.u16()
        max_repetitions = r.u16()
        pdu = GetBulkPdu(
            non_repeaters=non_repeaters,
            max_repetitions=max_repetitions,
            ranges=r.ranges(),
            **common,
        )
    elif cls is OpenPdu:
        timeout = r.u8x4()[0]
        oid, _ = r.oid()
        pdu = OpenPdu(timeout=timeout, id=oid, descr=r.octets(), **common)
    elif cls is ClosePdu:
        reason = r.u8x4()[0]
        if reason not in CloseReason._value2member_map_:
            raise r.fail(f"unknown Close reason {reason}")
        pdu = ClosePdu(reason=reason, **common)
    elif cls is RegisterPdu or cls is UnregisterPdu:
        timeout, priority, range_subid, _ = r.u8x4()
        subtree, _ = r.oid()
        if range_subid > len(subtree):
            raise r.fail(f"range_subid {range_subid} beyond a subtree of {len(subtree)}")
        upper = r.u32() if range_subid else None
        extra: dict[str, Any] = {"timeout": timeout} if cls is RegisterPdu else {}
        pdu = cls(  # type: ignore[call-arg]
            priority=priority,
            range_subid=range_subid,
            subtree=subtree,
            upper_bound=upper,
            **extra,
            **common,
        )
    elif cls is AddAgentCapsPdu:
        oid, _ = r.oid()
        pdu = AddAgentCapsPdu(id=oid, descr=r.octets(), **common)
    elif cls is RemoveAgentCapsPdu:
        oid, _ = r.oid()
        pdu = RemoveAgentCapsPdu(id=oid, **common)
    else:
        pdu = cls(**common)
    if r.pos != r.end:
        raise r.fail(f"{r.end - r.pos} bytes left over after a {cls.TYPE.name} PDU")
    return pdu


def scan_ranges(data: bytes, pos: int, end: int, big: bool) -> list[SearchRange] | None:
    """The SearchRangeList in ``data[pos:end]``, or None if it is not plainly well-formed.

    A quick reader for the requests a master sends most (Get, GetNext);
    on None the caller decodes with :func:`decode_body`, which names the
    problem.
    """
    e = ">" if big else "<"
    out = []
    unpack = struct.unpack_from
    while pos < end:
        oids = []
        include = 0
        for k in (0, 1):
            if pos + 4 > end:
                return None
            n = data[pos]
            prefix = data[pos + 1]
            if k == 0:
                include = data[pos + 2]
                if include > 1:
                    return None
            elif data[pos + 2] > 1:
                return None
            pos += 4
            if pos + 4 * n > end or n > MAX_SUBIDS - 5:
                return None
            sub = unpack(f"{e}{n}I", data, pos) if n else ()
            pos += 4 * n
            oids.append((1, 3, 6, 1, prefix, *sub) if prefix else sub)
        out.append(SearchRange(oids[0], oids[1], bool(include)))
    return out


def encode_varbind(vb: VarBind, big_endian: bool = True) -> bytes:
    """One encoded VarBind (to cache, or to splice into :func:`encode_response`)."""
    out = bytearray()
    _encode_varbind(out, vb, big_endian)
    return bytes(out)


def encode_response(
    session_id: int,
    transaction_id: int,
    packet_id: int,
    varbinds: bytes,
    error: int = 0,
    index: int = 0,
) -> bytes:
    """A Response in network byte order around already encoded VarBinds."""
    return (
        _HEADER[True].pack(
            1,
            PduType.RESPONSE,
            NETWORK_BYTE_ORDER,
            0,
            session_id,
            transaction_id,
            packet_id,
            8 + len(varbinds),
        )
        + _RESPONSE_HEAD[True].pack(0, error, index)
        + varbinds
    )


class Framer:
    """Cuts a byte stream into complete PDUs.

    :meth:`feed` returns the raw bytes of every PDU completed by ``data``
    (possibly none); a header that cannot be sound (wrong version, payload not
    a multiple of four or larger than ``max_payload``) raises
    :class:`AgentxParseError` with ``header`` None: the stream cannot be
    resynchronised and the connection should be closed.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()

    def __len__(self) -> int:
        """Bytes waiting for the rest of their PDU."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[Header, bytes]]:
        """Add ``data``; return each complete PDU as (header, whole PDU bytes)."""
        buf = self._buf
        if not buf and len(data) >= HEADER_SIZE:
            # The usual case: one read holds exactly one PDU.
            header = decode_header(data)
            length = header.payload_length
            if length == len(data) - HEADER_SIZE and length <= self.max_payload:
                return [(header, bytes(data))]
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= HEADER_SIZE:
            header = decode_header(buf, pos)
            if header.payload_length > self.max_payload:
                raise AgentxParseError(
                    f"payload of {header.payload_length} bytes is larger than the "
                    f"{self.max_payload} accepted"
                )
            end = pos + HEADER_SIZE + header.payload_length
            if end > n:
                break
            out.append((header, bytes(buf[pos:end])))
            pos = end
        if pos:
            del buf[:pos]
        return out
