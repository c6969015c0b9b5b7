"""The SNMPv2c fast path: BER codec checked against pyasn1/pysnmp, request semantics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import rfc1902
from pysnmp.proto.api import v2c

from dnaagent.snmp.fastpath import (
    FastResponder,
    Malformed,
    decode_oid,
    encode_oid,
    encode_value,
    parse,
)
from dnaagent.snmp.tree import MibTree, Value

SYSTEM = (1, 3, 6, 1, 2, 1, 1)
ROOT = (1, 3, 6, 1, 3, 4001)

oids = st.tuples(st.integers(0, 2), st.integers(0, 39)).flatmap(
    lambda head: st.lists(st.integers(0, 2**32 - 1), max_size=20).map(
        lambda rest: head + tuple(rest)
    )
)


@given(oids)
def test_oid_round_trip_matches_pyasn1(oid: tuple[int, ...]) -> None:
    """encode_oid equals pyasn1's encoding and decode_oid inverts it."""
    ours = (
        b"\x06" + bytes([len(encode_oid(oid))]) + encode_oid(oid)
        if len(encode_oid(oid)) < 128
        else None
    )
    if ours is not None:
        assert ours == encoder.encode(rfc1902.ObjectIdentifier(oid))
    assert decode_oid(encode_oid(oid)) == oid


@given(st.integers(-(2**31), 2**31 - 1))
def test_integer_encoding_is_minimal_and_decodes(v: int) -> None:
    """Integer32 values are minimal two's complement (X.690 8.3.2) and pyasn1 reads them back."""
    ours = encode_value(Value.integer(v))
    decoded, rest = decoder.decode(ours, asn1Spec=rfc1902.Integer32())
    assert rest == b"" and int(decoded) == v
    body = ours[2:]
    if len(body) > 1:  # the first nine bits are never all equal
        assert not (body[0] == 0 and body[1] < 0x80) and not (body[0] == 0xFF and body[1] >= 0x80)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=300))
def test_application_types_match_pyasn1(c64: int, u32: int, data: bytes) -> None:
    """Counter64, Counter32, Gauge32, TimeTicks and OCTET STRING encode as pyasn1 does."""
    assert encode_value(Value.counter64(c64)) == encoder.encode(rfc1902.Counter64(c64))
    assert encode_value(Value.counter32(u32)) == encoder.encode(rfc1902.Counter32(u32))
    assert encode_value(Value.gauge32(u32)) == encoder.encode(rfc1902.Gauge32(u32))
    assert encode_value(Value(Value.timeticks(0).kind, u32)) == encoder.encode(
        rfc1902.TimeTicks(u32)
    )
    assert encode_value(Value.octets(data)) == encoder.encode(rfc1902.OctetString(data))


def request(
    pdu_cls: type, oids_: list[tuple[int, ...]], community: bytes = b"c", **bulk: int
) -> bytes:
    """A request message built by pysnmp."""
    pdu = pdu_cls()
    api = v2c.apiBulkPDU if bulk else v2c.apiPDU
    api.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, 12345)
    if bulk:
        v2c.apiBulkPDU.set_non_repeaters(pdu, bulk["non_repeaters"])
        v2c.apiBulkPDU.set_max_repetitions(pdu, bulk["max_repetitions"])
    v2c.apiPDU.set_varbinds(pdu, [(o, v2c.null) for o in oids_])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


def answer(responder: FastResponder, data: bytes) -> list[tuple[tuple[int, ...], object]]:
    """Decode the responder's reply with pysnmp and return its varbinds."""
    reply = responder.respond(data)
    assert reply is not None
    msg, rest = decoder.decode(reply, asn1Spec=v2c.Message())
    assert rest == b""
    pdu = v2c.apiMessage.get_pdu(msg)
    assert v2c.apiPDU.get_request_id(pdu) == 12345
    assert v2c.apiPDU.get_error_status(pdu) == 0
    return [(tuple(o), v) for o, v in v2c.apiPDU.get_varbinds(pdu)]


@pytest.fixture
def responder() -> FastResponder:
    """A responder over a small tree: three scalars and a table column."""
    tree = MibTree()
    tree.set(ROOT + (1, 1, 1, 0), Value.octets("1.0"))
    tree.set(ROOT + (1, 1, 5, 0), Value.gauge32(7))
    tree.set(ROOT + (1, 5, 1, 0), Value.counter64(2**40))
    for i in range(1, 6):
        tree.set(ROOT + (1, 2, 1, 1, 3, i), Value.integer(i))
    tree.set((1, 3, 6, 1, 4, 1, 9), Value.integer(0))  # outside the view
    objects = frozenset({ROOT + (1, 1, 1), ROOT + (1, 1, 5), ROOT + (1, 2, 1, 1, 3)})
    return FastResponder(b"c", tree.get, tree.next, (SYSTEM, ROOT), objects)


def test_get_values_and_exceptions(responder: FastResponder) -> None:
    """GET answers values, noSuchInstance under a known object, noSuchObject elsewhere."""
    got = answer(
        responder,
        request(
            v2c.GetRequestPDU,
            [ROOT + (1, 1, 1, 0), ROOT + (1, 5, 1, 0), ROOT + (1, 1, 5, 1), (1, 3, 6, 1, 4, 1, 9)],
        ),
    )
    assert got[0][1] == rfc1902.OctetString(b"1.0")
    assert int(got[1][1]) == 2**40
    assert got[2][1].tagSet == v2c.NoSuchInstance.tagSet
    assert got[3][1].tagSet == v2c.NoSuchObject.tagSet  # in the tree but not in the view


def test_getnext_walks_in_order_and_ends(responder: FastResponder) -> None:
    """GETNEXT returns the successor inside the view and endOfMibView after the last."""
    got = answer(responder, request(v2c.GetNextRequestPDU, [ROOT, ROOT + (1, 5, 1, 0)]))
    assert got[0][0] == ROOT + (1, 1, 1, 0)
    assert got[1][1].tagSet == v2c.EndOfMibView.tagSet


def test_getbulk_repeats_and_pads_end_of_view(responder: FastResponder) -> None:
    """GETBULK: non-repeaters once, repeaters max-repetitions times, endOfMibView at the end."""
    got = answer(
        responder,
        request(
            v2c.GetBulkRequestPDU,
            [ROOT + (1, 1, 1, 0), ROOT + (1, 2, 1, 1, 3, 3), ROOT + (1, 5)],
            non_repeaters=1,
            max_repetitions=3,
        ),
    )
    names = [o for o, _ in got]
    assert names[0] == ROOT + (1, 1, 5, 0)
    assert names[1:] == [
        ROOT + (1, 2, 1, 1, 3, 4),
        ROOT + (1, 5, 1, 0),
        ROOT + (1, 2, 1, 1, 3, 5),
        ROOT + (1, 5, 1, 0),  # endOfMibView keeps the name it was asked after
        ROOT + (1, 5, 1, 0),
        ROOT + (1, 5, 1, 0),
    ]
    assert got[6][1].tagSet == v2c.EndOfMibView.tagSet
    assert got[4][1].tagSet == v2c.EndOfMibView.tagSet


def test_other_messages_go_to_pysnmp(responder: FastResponder) -> None:
    """Wrong community, SET, SNMPv1 and malformed messages are left to pysnmp (None)."""
    assert responder.respond(request(v2c.GetRequestPDU, [ROOT], community=b"public")) is None
    assert responder.respond(request(v2c.SetRequestPDU, [ROOT])) is None
    v1 = bytearray(request(v2c.GetRequestPDU, [ROOT]))
    v1[4] = 0  # version 0
    assert responder.respond(bytes(v1)) is None
    good = request(v2c.GetRequestPDU, [ROOT + (1, 1, 1, 0)])
    for cut in range(len(good)):
        assert responder.respond(good[:cut]) is None
    assert responder.respond(good + b"\x00") is None


@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    """parse() raises only Malformed on arbitrary input."""
    try:
        parse(data)
    except Malformed:
        pass


def test_oid_limits() -> None:
    """Leading 0x80 octets, sub-identifiers of 2**32 and more than 128 of them are refused."""
    with pytest.raises(Malformed):
        decode_oid(b"\x2b\x80\x01")
    with pytest.raises(Malformed):
        decode_oid(b"\x2b" + encode_oid((1, 3, 2**32))[1:])
    with pytest.raises(Malformed):
        decode_oid(encode_oid((1, 3) + (1,) * 130))
