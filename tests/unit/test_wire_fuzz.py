"""Hypothesis fuzz of the wire decoder: whatever the bytes, only WireError escapes."""

from __future__ import annotations

import random

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnaagent import wire
from dnaagent.overlay.identity import Identity
from dnaagent.wire import Message, WireError

SIGNED = Identity.generate()
UNSIGNED = Identity.unsigned(random.Random(11))
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_VALID = [
    wire.encode(wire.FIND_NODE, 5, SIGNED.node_id, SIGNED.public_key, 0, b"k" * 20, SIGNED.signer),
    wire.encode(
        wire.NODES,
        6,
        UNSIGNED.node_id,
        UNSIGNED.public_key,
        0,
        wire.pack_contacts([wire.contact_record(b"\x05" * 20, ("192.0.2.1", 4001))]),
        UNSIGNED.signer,
    ),
    wire.encode(
        wire.APP_REQUEST, 7, SIGNED.node_id, SIGNED.public_key, 1, ["n", {"a": [1]}], SIGNED.signer
    ),
]


def _decode_both(data: bytes) -> None:
    for verify in (True, False):
        try:
            msg = wire.decode(data, verify=verify)
        except WireError as e:
            assert e.reason in wire.REASONS
        else:
            assert isinstance(msg, Message)
            assert wire.node_id_for_key(msg.public_key) == msg.sender_id


@FUZZ
@given(st.binary(max_size=9000))
def test_random_bytes(data: bytes) -> None:
    """Arbitrary bytes decode to a valid Message or raise WireError, nothing else."""
    _decode_both(data)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_behind_a_valid_header(payload: bytes) -> None:
    """Arbitrary bytes after a valid version/flags header never escape as other errors."""
    _decode_both(b"\x01\x00" + payload)
    _decode_both(b"\x01\x01" + payload)


@FUZZ
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.integers(0, 10_000),
)
def test_mutated_valid_datagrams(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    """Byte changes and truncations of valid datagrams are caught."""
    data = bytearray(base)
    for pos, value in flips:
        data[pos % len(data)] = value
    _decode_both(bytes(data[: max(cut, 1)]))
    _decode_both(bytes(data))


_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.binary(max_size=40)
)
_data = st.recursive(
    _leaf,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=30,
)


@FUZZ
@given(
    st.integers(0, 20),
    st.integers(-5, 2**33),
    st.one_of(st.just(UNSIGNED.node_id), st.binary(max_size=24)),
    st.one_of(st.just(UNSIGNED.public_key), st.binary(max_size=40)),
    st.integers(-2, 3),
    _data,
)
def test_structured_envelopes(
    mtype: int, txid: int, sender: bytes, key: bytes, role: int, body: object
) -> None:
    """Well-formed msgpack with arbitrary field values is validated, never crashes."""
    try:
        inner = msgpack.packb([mtype, txid, sender, key, role, body], use_bin_type=True)
    except (OverflowError, ValueError):
        return
    _decode_both(b"\x01\x00" + inner)
