"""Byte-level tests of the overlay wire codec (dnaagent.wire)."""

from __future__ import annotations

import hashlib
import random

import msgpack
import pytest

from dnaagent import wire
from dnaagent.errors import DnaAgentError
from dnaagent.overlay.identity import Identity
from dnaagent.wire import Message, WireError

ALICE = Identity.generate()
BOB = Identity.generate()
KEY = bytes(range(20))

BODIES = {
    wire.PING: None,
    wire.PONG: None,
    wire.FIND_NODE: KEY,
    wire.NODES: wire.pack_contacts(
        [
            wire.contact_record(b"\x01" * 20, ("192.0.2.7", 4001)),
            wire.contact_record(b"\x02" * 20, ("2001:db8::5", 4002)),
        ]
    ),
    wire.FIND_VALUE: KEY,
    wire.VALUE: [[b"v1", 60], [b"", 1]],
    wire.STORE: [KEY, b"value", 3600],
    wire.STORED: None,
    wire.LEAVE: None,
    wire.APP_REQUEST: ["xbac.ping", {"target": "192.0.2.1", "count": 3, "raw": b"\x00"}],
    wire.APP_REPLY: [1, 2.5, "three", None, True, {"k": [b"x"]}],
    wire.ERROR: [wire.ERR_UNKNOWN_HANDLER, "unknown handler 'x'"],
    wire.ANNOUNCE: None,
    wire.INTRODUCE: [bytes([192, 0, 2, 9]), 4001],
    wire.HERE: None,
}


def _encode(identity: Identity, mtype: int, body: object, txid: int = 7, role: int = 0) -> bytes:
    return wire.encode(
        mtype, txid, identity.node_id, identity.public_key, role, body, identity.signer
    )


def _reason(data: bytes, verify: bool = True) -> str:
    with pytest.raises(WireError) as info:
        wire.decode(data, verify=verify)
    return info.value.reason


@pytest.mark.parametrize("mtype", sorted(BODIES), ids=lambda t: wire.TYPE_NAMES[t])
def test_round_trip_signed(mtype: int) -> None:
    """Every message type survives encode/decode with a valid signature."""
    data = _encode(ALICE, mtype, BODIES[mtype], txid=2**32 - 1, role=wire.ROLE_STUB)
    assert data[0] == wire.PROTOCOL_VERSION
    assert data[1] == wire.FLAG_SIGNED
    msg = wire.decode(data)
    assert msg == Message(
        mtype, 2**32 - 1, ALICE.node_id, ALICE.public_key, wire.ROLE_STUB, BODIES[mtype]
    )
    assert msg.signed
    # The bytes are reproducible (Ed25519 is deterministic).
    assert wire.encode_message(msg, ALICE.signer) == data


def test_byte_layout() -> None:
    """The envelope is version, flags, a msgpack list of 6 fields, then 64 signature bytes."""
    data = _encode(ALICE, wire.PING, None, txid=9)
    inner = msgpack.unpackb(data[2:-64])
    assert inner == [wire.PING, 9, ALICE.node_id, ALICE.public_key, 0, None]
    assert len(data) == 2 + len(msgpack.packb(inner)) + 64


def test_unsigned_needs_verify_off() -> None:
    """Unsigned datagrams (simulations) decode only with verify=False."""
    ident = Identity.unsigned(random.Random(3))
    data = _encode(ident, wire.FIND_NODE, KEY)
    assert data[1] == 0
    assert _reason(data) == "unsigned"
    msg = wire.decode(data, verify=False)
    assert msg.body == KEY and not msg.signed


def test_node_id_is_truncated_sha256_of_key() -> None:
    """The node ID is the first 160 bits of SHA-256 of the raw public key."""
    assert ALICE.node_id == hashlib.sha256(ALICE.public_key).digest()[:20]
    assert len(ALICE.node_id) == wire.ID_BYTES


def test_tampered_signature_and_body() -> None:
    """Flipping one byte of the body or of the signature fails verification."""
    data = bytearray(_encode(ALICE, wire.STORE, [KEY, b"value", 10]))
    body = bytearray(data)
    idx = bytes(body).index(b"value")
    body[idx] ^= 1
    assert _reason(bytes(body)) == "bad_signature"
    data[-1] ^= 1
    assert _reason(bytes(data)) == "bad_signature"


def test_signature_of_another_key() -> None:
    """A datagram signed by BOB but carrying ALICE's ID and key is rejected."""
    head = bytes((1, 1)) + msgpack.packb([1, 1, ALICE.node_id, ALICE.public_key, 0, None])
    assert _reason(head + BOB.signer.sign(head)) == "bad_signature"


def test_id_not_matching_key() -> None:
    """Claiming an ID that is not the hash of the key is an id_mismatch, even unsigned."""
    data = wire.encode(wire.PING, 1, BOB.node_id, ALICE.public_key, 0, None, ALICE.signer)
    assert _reason(data) == "id_mismatch"
    ident = Identity.unsigned(random.Random(1))
    data = wire.encode(wire.PING, 1, b"\0" * 20, ident.public_key, 0, None, ident.signer)
    assert _reason(data, verify=False) == "id_mismatch"


def test_size_limits() -> None:
    """Datagrams above MAX_DATAGRAM are refused on both sides."""
    with pytest.raises(WireError) as info:
        _encode(ALICE, wire.APP_REPLY, b"x" * wire.MAX_DATAGRAM)
    assert info.value.reason == "too_large"
    assert _reason(b"\x01\x00" + b"\x90" * wire.MAX_DATAGRAM) == "too_large"
    assert _reason(b"") == "too_short"
    assert _reason(b"\x01\x01" + b"\x90") == "too_short"


def test_header_checks() -> None:
    """Unknown versions and flags are refused before anything is parsed."""
    data = _encode(ALICE, wire.PING, None)
    assert _reason(b"\x02" + data[1:]) == "bad_version"
    assert _reason(data[:1] + b"\x03" + data[2:]) == "bad_flags"


def _raw(fields: object) -> bytes:
    return b"\x01\x00" + msgpack.packb(fields)


GOOD = Identity.unsigned(random.Random(5))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([wire.PING, 1, GOOD.node_id, GOOD.public_key, 0], "malformed"),
        ({"type": 1}, "malformed"),
        ([99, 1, GOOD.node_id, GOOD.public_key, 0, None], "bad_type"),
        ([True, 1, GOOD.node_id, GOOD.public_key, 0, None], "bad_type"),
        ([wire.PING, -1, GOOD.node_id, GOOD.public_key, 0, None], "bad_field"),
        ([wire.PING, 2**32, GOOD.node_id, GOOD.public_key, 0, None], "bad_field"),
        ([wire.PING, 1.0, GOOD.node_id, GOOD.public_key, 0, None], "bad_field"),
        ([wire.PING, 1, GOOD.node_id[:19], GOOD.public_key, 0, None], "bad_field"),
        ([wire.PING, 1, GOOD.node_id.hex(), GOOD.public_key, 0, None], "bad_field"),
        ([wire.PING, 1, GOOD.node_id, GOOD.public_key[:31], 0, None], "bad_field"),
        ([wire.PING, 1, GOOD.node_id, GOOD.public_key, 2, None], "bad_field"),
        ([wire.PING, 1, GOOD.node_id, GOOD.public_key, True, None], "bad_field"),
        ([wire.PING, 1, GOOD.node_id, GOOD.public_key, 0, 0], "bad_body"),
        ([wire.FIND_NODE, 1, GOOD.node_id, GOOD.public_key, 0, b"short"], "bad_body"),
        ([wire.NODES, 1, GOOD.node_id, GOOD.public_key, 0, [b"x" * 25, b""]], "bad_body"),
        ([wire.NODES, 1, GOOD.node_id, GOOD.public_key, 0, [b"x" * 26 * 65, b""]], "bad_body"),
        ([wire.VALUE, 1, GOOD.node_id, GOOD.public_key, 0, []], "bad_body"),
        ([wire.VALUE, 1, GOOD.node_id, GOOD.public_key, 0, [[b"v", 0]]], "bad_body"),
        ([wire.STORE, 1, GOOD.node_id, GOOD.public_key, 0, [KEY, "text", 5]], "bad_body"),
        ([wire.STORE, 1, GOOD.node_id, GOOD.public_key, 0, [KEY, b"v", 10**9]], "bad_body"),
        ([wire.APP_REQUEST, 1, GOOD.node_id, GOOD.public_key, 0, ["", 1]], "bad_body"),
        ([wire.APP_REQUEST, 1, GOOD.node_id, GOOD.public_key, 0, ["n" * 65, 1]], "bad_body"),
        ([wire.ERROR, 1, GOOD.node_id, GOOD.public_key, 0, [300, "x"]], "bad_body"),
        ([wire.ERROR, 1, GOOD.node_id, GOOD.public_key, 0, [1, "x" * 201]], "bad_body"),
        ([wire.INTRODUCE, 1, GOOD.node_id, GOOD.public_key, 0, [b"\x01" * 5, 1]], "bad_body"),
        ([wire.INTRODUCE, 1, GOOD.node_id, GOOD.public_key, 0, [b"\x01" * 4, 0]], "bad_body"),
        ([wire.INTRODUCE, 1, GOOD.node_id, GOOD.public_key, 0, [b"\x01" * 16, 70000]], "bad_body"),
        ([wire.HERE, 1, GOOD.node_id, GOOD.public_key, 0, 1], "bad_body"),
    ],
)
def test_field_validation(fields: object, reason: str) -> None:
    """Each field is checked for type and range; bodies are checked per message type."""
    assert _reason(_raw(fields), verify=False) == reason


def test_nested_application_body_depth_is_bounded() -> None:
    """Application bodies may nest, but not without bound."""
    body: object = 1
    for _ in range(wire.MAX_DEPTH + 2):
        body = [body]
    fields = [wire.APP_REPLY, 1, GOOD.node_id, GOOD.public_key, 0, body]
    assert _reason(_raw(fields), verify=False) == "bad_body"


def test_extension_types_are_malformed() -> None:
    """msgpack extension types (including timestamps) are not part of the protocol."""
    inner = msgpack.packb([wire.APP_REPLY, 1, GOOD.node_id, GOOD.public_key, 0, None])
    inner = inner[:-1] + b"\xd6\xff\x00\x00\x00\x00"  # body = Timestamp(0)
    assert _reason(b"\x01\x00" + inner, verify=False) == "malformed"


def test_wire_error_types() -> None:
    """WireError is a DnaAgentError and a ValueError, with a reason from REASONS."""
    err = WireError("malformed", "x")
    assert isinstance(err, DnaAgentError) and isinstance(err, ValueError)
    assert err.reason in wire.REASONS


def test_contacts_round_trip_ipv4_and_ipv6() -> None:
    """NODES records keep IDs, IPv4/IPv6 hosts and ports; scopes are dropped."""
    contacts = [
        (b"\x01" * 20, ("198.51.100.1", 1)),
        (b"\x02" * 20, ("2001:db8::1", 65535)),
        (b"\x03" * 20, ("203.0.113.9", 4001)),
        (b"\x04" * 20, ("fe80::1%eth0", 4001)),
    ]
    body = wire.pack_contacts([wire.contact_record(i, a) for i, a in contacts])
    assert len(body[0]) == 2 * 26 and len(body[1]) == 2 * 38
    decoded = sorted(wire.iter_contacts(body))
    expected = sorted(contacts[:3] + [(b"\x04" * 20, ("fe80::1", 4001))])
    assert decoded == expected
    with pytest.raises(WireError):
        wire.pack_host("not-an-ip")


def test_link_local_addresses_are_recognised() -> None:
    """fe80::/10 is link-local (its zone is dropped when packed); others are not."""
    assert wire.pack_host("fe80::1%eth0") == wire.pack_host("fe80::1")
    assert wire.is_link_local(wire.pack_host("fe80::1%eth0"))
    assert wire.is_link_local(wire.pack_host("febf::1"))
    assert not wire.is_link_local(wire.pack_host("fec0::1"))
    assert not wire.is_link_local(wire.pack_host("2001:db8::1"))
    assert not wire.is_link_local(wire.pack_host("192.0.2.1"))
