"""AgentX PDU codec: exact bytes, round trips in both byte orders, framing, strict errors, fuzz."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnaagent.errors import DnaAgentError
from dnaagent.snmp.agentx import pdu as P
from dnaagent.snmp.agentx.pdu import SearchRange, VarBind, VarType

subids = st.integers(0, 2**32 - 1)
oids = st.one_of(
    st.lists(subids, max_size=12).map(tuple),
    st.tuples(st.integers(1, 255), st.lists(subids, max_size=8)).map(
        lambda t: (1, 3, 6, 1, t[0], *t[1])
    ),
)
octets = st.binary(max_size=40)
contexts = st.one_of(st.none(), octets)


def _value_for(t: VarType) -> st.SearchStrategy:
    if t == VarType.INTEGER:
        return st.integers(-(2**31), 2**31 - 1)
    if t in (VarType.COUNTER32, VarType.GAUGE32, VarType.TIME_TICKS):
        return st.integers(0, 2**32 - 1)
    if t == VarType.COUNTER64:
        return st.integers(0, 2**64 - 1)
    if t in (VarType.OCTET_STRING, VarType.OPAQUE):
        return octets
    if t == VarType.IP_ADDRESS:
        return st.binary(min_size=4, max_size=4)
    if t == VarType.OBJECT_IDENTIFIER:
        return oids
    return st.none()


varbinds = st.sampled_from(list(VarType)).flatmap(
    lambda t: st.builds(VarBind, oids, st.just(int(t)), _value_for(t))
)
vblists = st.lists(varbinds, max_size=5)
ranges = st.lists(st.builds(SearchRange, oids, oids, st.booleans()), max_size=5)
header = {
    "session_id": st.integers(0, 2**32 - 1),
    "transaction_id": st.integers(0, 2**32 - 1),
    "packet_id": st.integers(0, 2**32 - 1),
}


def _register(cls: type) -> st.SearchStrategy:
    def build(subtree: tuple[int, ...], rs: int, upper: int, **kw: object) -> P.Pdu:
        rs = rs % (len(subtree) + 1)
        return cls(subtree=subtree, range_subid=rs, upper_bound=upper if rs else None, **kw)

    extra = {"timeout": st.integers(0, 255)} if cls is P.RegisterPdu else {}
    return st.builds(
        build,
        oids,
        st.integers(0, 255),
        subids,
        priority=st.integers(0, 255),
        context=contexts,
        flags=st.sampled_from([0, P.INSTANCE_REGISTRATION]),
        **extra,
        **header,
    )


pdus = st.one_of(
    st.builds(P.OpenPdu, timeout=st.integers(0, 255), id=oids, descr=octets, **header),
    st.builds(P.ClosePdu, reason=st.sampled_from(list(P.CloseReason)), **header),
    _register(P.RegisterPdu),
    _register(P.UnregisterPdu),
    st.builds(P.GetPdu, ranges=ranges, context=contexts, **header),
    st.builds(P.GetNextPdu, ranges=ranges, context=contexts, **header),
    st.builds(
        P.GetBulkPdu,
        non_repeaters=st.integers(0, 65535),
        max_repetitions=st.integers(0, 65535),
        ranges=ranges,
        context=contexts,
        **header,
    ),
    st.builds(P.TestSetPdu, varbinds=vblists, context=contexts, **header),
    st.builds(P.CommitSetPdu, **header),
    st.builds(P.UndoSetPdu, **header),
    st.builds(P.CleanupSetPdu, **header),
    st.builds(P.NotifyPdu, varbinds=vblists, context=contexts, **header),
    st.builds(P.PingPdu, context=contexts, **header),
    st.builds(
        P.IndexAllocatePdu,
        varbinds=vblists,
        context=contexts,
        flags=st.sampled_from([0, P.NEW_INDEX, P.ANY_INDEX]),
        **header,
    ),
    st.builds(P.IndexDeallocatePdu, varbinds=vblists, context=contexts, **header),
    st.builds(P.AddAgentCapsPdu, id=oids, descr=octets, context=contexts, **header),
    st.builds(P.RemoveAgentCapsPdu, id=oids, context=contexts, **header),
    st.builds(
        P.ResponsePdu,
        sys_uptime=subids,
        error=st.sampled_from(list(P.ResponseError)),
        index=st.integers(0, 65535),
        varbinds=vblists,
        **header,
    ),
)


@given(pdus, st.booleans())
def test_every_pdu_round_trips_in_both_byte_orders(pdu: P.Pdu, big: bool) -> None:
    """decode(encode(p)) == p for every PDU type, network or host byte order."""
    raw = P.encode(pdu, big_endian=big)
    assert len(raw) % 4 == 0
    assert bool(raw[2] & P.NETWORK_BYTE_ORDER) == big
    assert P.decode(raw) == pdu
    assert P.encode(P.decode(raw), big_endian=big) == raw


def test_open_pdu_exact_bytes() -> None:
    """An Open PDU is laid out as RFC 2741 §6.2.1 draws it, with prefix compression."""
    raw = P.encode(P.OpenPdu(packet_id=7, timeout=5, id=(1, 3, 6, 1, 4, 1, 8072), descr=b"abcde"))
    expected = (
        bytes([1, P.PduType.OPEN, P.NETWORK_BYTE_ORDER, 0])
        + struct.pack(">IIII", 0, 0, 7, 28)
        + bytes([5, 0, 0, 0])  # o.timeout + reserved
        + bytes([2, 4, 0, 0])  # n_subid=2, prefix=4 (1.3.6.1.4), include=0
        + struct.pack(">II", 1, 8072)
        + struct.pack(">I", 5)
        + b"abcde\0\0\0"  # padded to a multiple of 4
    )
    assert raw == expected


def test_get_response_exact_little_endian_bytes() -> None:
    """A host-byte-order Response carries no NETWORK_BYTE_ORDER flag and reverses integers."""
    response = P.ResponsePdu(
        session_id=1,
        transaction_id=2,
        packet_id=3,
        varbinds=[VarBind((1, 2), VarType.INTEGER, -2), VarBind((2,), VarType.END_OF_MIB_VIEW)],
    )
    raw = P.encode(response, big_endian=False)
    assert raw[:4] == bytes([1, 18, 0, 0])
    assert raw[4:20] == struct.pack("<IIII", 1, 2, 3, len(raw) - 20)
    body = raw[20:]
    assert body[:8] == struct.pack("<IHH", 0, 0, 0)
    assert body[8:12] == struct.pack("<HH", 2, 0)
    assert body[12:16] == bytes([2, 0, 0, 0]) and body[16:24] == struct.pack("<II", 1, 2)
    assert body[24:28] == struct.pack("<i", -2)
    assert body[28:32] == struct.pack("<HH", 130, 0)
    assert P.decode(raw) == response


def test_search_range_include_and_null_end() -> None:
    """The include byte sits in the start OID; an empty end OID is four zero bytes."""
    raw = P.encode(P.GetNextPdu(ranges=[SearchRange((1, 3, 6, 1, 2, 1), (), True)]))
    assert raw[20:24] == bytes([1, 2, 1, 0])  # n_subid 1, prefix 2, include 1
    assert raw[28:32] == bytes(4)
    assert P.decode(raw).ranges == [SearchRange((1, 3, 6, 1, 2, 1), (), True)]


def test_prefix_only_and_unprefixable_oids() -> None:
    """1.3.6.1.x is just a prefix; 1.3.6.1.0 and 1.3.6.1.256 are not compressed."""
    for oid, head in (
        ((1, 3, 6, 1, 4), bytes([0, 4, 0, 0])),
        ((1, 3, 6, 1, 0), bytes([5, 0, 0, 0])),
        ((1, 3, 6, 1, 256, 1), bytes([6, 0, 0, 0])),
    ):
        raw = P.encode(P.RemoveAgentCapsPdu(id=oid))
        assert raw[20:24] == head
        assert P.decode(raw).id == oid


def test_context_sets_the_flag_and_precedes_the_payload() -> None:
    """NON_DEFAULT_CONTEXT is set exactly when a context is given."""
    raw = P.encode(P.PingPdu(context=b"ctx"))
    assert raw[2] & P.NON_DEFAULT_CONTEXT
    assert raw[20:28] == struct.pack(">I", 3) + b"ctx\0"
    assert P.decode(raw).context == b"ctx"
    assert not P.encode(P.PingPdu())[2] & P.NON_DEFAULT_CONTEXT
    with pytest.raises(ValueError):
        P.encode(P.ResponsePdu(context=b"x"))


def test_encode_rejects_out_of_range_fields() -> None:
    """Values that do not fit their field raise ValueError instead of wrapping."""
    bad = [
        P.ResponsePdu(varbinds=[VarBind((1,), VarType.INTEGER, 2**31)]),
        P.ResponsePdu(varbinds=[VarBind((1,), VarType.COUNTER32, -1)]),
        P.ResponsePdu(varbinds=[VarBind((1,), VarType.IP_ADDRESS, b"\1\2\3")]),
        P.ResponsePdu(varbinds=[VarBind((1,), 99, None)]),
        P.ResponsePdu(varbinds=[VarBind(tuple(range(129)), VarType.NULL)]),
        P.ResponsePdu(varbinds=[VarBind((2**32,), VarType.NULL)]),
        P.RegisterPdu(subtree=(1, 2), range_subid=3, upper_bound=5),
        P.RegisterPdu(subtree=(1, 2), range_subid=1),
        P.ResponsePdu(error=70000),
    ]
    for pdu in bad:
        with pytest.raises(ValueError):
            P.encode(pdu)


def _valid() -> bytes:
    return P.encode(
        P.ResponsePdu(
            packet_id=9,
            varbinds=[
                VarBind((1, 3, 6, 1, 4, 1, 1), VarType.OCTET_STRING, b"hello"),
                VarBind((1, 3, 6, 1, 4, 1, 2), VarType.IP_ADDRESS, b"\x7f\0\0\1"),
            ],
        )
    )


def _patch(raw: bytes, at: int, new: bytes) -> bytes:
    return raw[:at] + new + raw[at + len(new) :]


@pytest.mark.parametrize(
    ("mutate", "problem", "header_kept"),
    [
        (lambda r: r[:10], "truncated AgentX header", False),
        (lambda r: _patch(r, 0, b"\2"), "version 2", False),
        (lambda r: _patch(r, 16, struct.pack(">I", 6)), "multiple of 4", False),
        (lambda r: r[:-4], "header says", False),
        (lambda r: _patch(r, 1, b"\x63"), "unknown AgentX PDU type 99", True),
        (lambda r: _patch(r, 28, struct.pack(">H", 3)), "unknown VarBind type 3", True),
        (lambda r: _patch(r, 34, b"\2"), "include byte", True),
        (lambda r: _patch(r, 44, struct.pack(">I", 1000)), "longer than the PDU", True),
        (
            lambda r: _patch(r, 2, bytes([P.NETWORK_BYTE_ORDER | P.NON_DEFAULT_CONTEXT])),
            "has no context",
            True,
        ),
    ],
)
def test_malformed_input_raises_a_typed_error(mutate, problem: str, header_kept: bool) -> None:
    """Each kind of damage raises AgentxParseError naming it; the header is kept when sound."""
    with pytest.raises(P.AgentxParseError, match=problem) as info:
        P.decode(mutate(_valid()))
    assert isinstance(info.value, DnaAgentError) and isinstance(info.value, ValueError)
    assert (info.value.header is not None) == header_kept


def test_strict_payload_rules() -> None:
    """Leftover bytes, a 3-byte IpAddress, an OID over 128 sub-identifiers are all refused."""
    raw = P.encode(P.PingPdu())
    extra = _patch(raw, 16, struct.pack(">I", 4)) + b"\0\0\0\0"
    with pytest.raises(P.AgentxParseError, match="left over"):
        P.decode(extra)
    ip3 = P.encode(P.ResponsePdu(varbinds=[VarBind((1,), VarType.OCTET_STRING, b"abc")]))
    ip3 = _patch(ip3, 28, struct.pack(">H", VarType.IP_ADDRESS))
    with pytest.raises(P.AgentxParseError, match="IpAddress of 3"):
        P.decode(ip3)
    long_oid = P.encode(P.RemoveAgentCapsPdu(id=(1, 3, 6, 1, 4) + (1,) * 123))
    long_oid = _patch(long_oid, 20, bytes([124]))  # 124 subids + prefix: 129 in all
    long_oid = long_oid + b"\0\0\0\0"
    long_oid = _patch(long_oid, 16, struct.pack(">I", len(long_oid) - 20))
    with pytest.raises(P.AgentxParseError, match="128"):
        P.decode(long_oid)
    bad_close = _patch(P.encode(P.ClosePdu()), 20, b"\x09")
    with pytest.raises(P.AgentxParseError, match="Close reason"):
        P.decode(bad_close)


def test_framer_splits_and_joins_pdus_at_every_boundary() -> None:
    """Feeding a stream of three PDUs in two pieces, cut anywhere, yields the three PDUs."""
    stream = (
        P.encode(P.PingPdu(packet_id=1))
        + P.encode(P.GetPdu(packet_id=2, ranges=[SearchRange((1, 3, 6, 1, 4, 1, 5))]), False)
        + _valid()
    )
    for cut in range(len(stream) + 1):
        framer = P.Framer()
        frames = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert [P.decode_body(raw, P.HEADER_SIZE, h).packet_id for h, raw in frames] == [1, 2, 9]
        assert len(framer) == 0


def test_framer_refuses_oversized_and_broken_headers() -> None:
    """A payload over the limit or a bad version is fatal to the stream (no header)."""
    framer = P.Framer(max_payload=64)
    with pytest.raises(P.AgentxParseError, match="larger than") as info:
        framer.feed(_patch(_valid(), 16, struct.pack(">I", 1024)))
    assert info.value.header is None
    with pytest.raises(P.AgentxParseError, match="version"):
        P.Framer().feed(b"\x09" + bytes(19))


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_raise_parse_errors(data: bytes) -> None:
    """Arbitrary bytes decode to a PDU or raise AgentxParseError, never anything else."""
    for raw in (data, bytes([1]) + data[1:]):
        try:
            P.decode(raw)
        except P.AgentxParseError:
            pass
        try:
            P.Framer().feed(raw)
        except P.AgentxParseError:
            pass


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(pdus, st.booleans(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255))))
def test_fuzz_mutated_valid_pdus_only_raise_parse_errors(pdu, big, flips) -> None:
    """Valid PDUs with bytes overwritten (keeping a plausible header) never crash the decoder."""
    raw = bytearray(P.encode(pdu, big_endian=big))
    for at, value in flips:
        raw[at % len(raw)] = value
    raw[0] = 1
    try:
        decoded = P.decode(bytes(raw))
    except P.AgentxParseError:
        return
    assert isinstance(decoded, P.Pdu)
