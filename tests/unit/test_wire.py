"""Byte-level tests of the overlay wire codec (dnaagent.wire)."""

from __future__ import annotations

import hashlib
import random

import msgpack
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from dnaagent import wire
from dnaagent.errors import DnaAgentError
from dnaagent.overlay.identity import Identity
from dnaagent.overlay.node import BAN_REASONS
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


# --------------------------------------------------------------------------
# MACs from X25519 pair keys (FLAG_MAC)

CAROL = Identity.generate()
_P = 2**255 - 19
#: Seeds of Ed25519 keys whose X25519 form is checked against ``cryptography``.
SEEDS = [bytes(32), bytes(range(32)), b"\xff" * 32] + [
    hashlib.sha256(b"seed %d" % i).digest() for i in range(5)
]


def _y(y: int, sign: bool = False) -> bytes:
    """The 32-byte Edwards encoding of ``y`` (top bit: the sign of x)."""
    return (y | (1 << 255 if sign else 0)).to_bytes(32, "little")


def _encode_mac(
    sender: Identity,
    receiver: Identity,
    mtype: int,
    body: object,
    txid: int = 7,
    role: int = 0,
    key: bytes | None = None,
) -> bytes:
    """A datagram from ``sender`` with a MAC for ``receiver`` (the pair key unless ``key``)."""
    if key is None:
        key = sender.pair_keys.key_for(receiver.public_key)
    return wire.encode(
        mtype,
        txid,
        sender.node_id,
        sender.public_key,
        role,
        body,
        sender.signer,
        key,
        receiver.node_id,
    )


def _mac_reason(data: bytes, keys: wire.PairKeys | None, verify: bool = True) -> str:
    with pytest.raises(WireError) as info:
        wire.decode(data, verify=verify, keys=keys)
    return info.value.reason


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s[:2].hex())
def test_montgomery_public_is_the_x25519_key_of_the_same_scalar(seed: bytes) -> None:
    """The Edwards-to-Montgomery map gives the X25519 public key of sha512(seed)[:32]."""
    ed = Ed25519PrivateKey.from_private_bytes(seed)
    ed_public = ed.public_key().public_bytes_raw()
    x_public = X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])
    expected = x_public.public_key().public_bytes_raw()
    assert wire.montgomery_public(ed_public) == expected
    # The top bit (the sign of x) is not part of u: -A has the same u as A.
    flipped = ed_public[:31] + bytes((ed_public[31] ^ 0x80,))
    assert wire.montgomery_public(flipped) == expected


def test_montgomery_public_refuses_what_has_no_u() -> None:
    """Non-canonical y (>= p), y == 1 and wrong lengths give None; y == 0 maps to u == 1."""
    assert _y(_P) == b"\xed" + b"\xff" * 30 + b"\x7f"
    for y in (_P, _P + 1, _P + 18, 2**255 - 1):
        assert wire.montgomery_public(_y(y)) is None, y
        assert wire.montgomery_public(_y(y, sign=True)) is None, y
    assert wire.montgomery_public(b"\xff" * 32) is None
    assert wire.montgomery_public(_y(1)) is None
    assert wire.montgomery_public(_y(1, sign=True)) is None
    for size in (0, 31, 33, 64):
        assert wire.montgomery_public(bytes(size)) is None
    assert wire.montgomery_public(ALICE.public_key[:31]) is None
    # Canonical values just below p still map: u = (1 + y) / (1 - y).
    assert wire.montgomery_public(_y(0)) == (1).to_bytes(32, "little")
    assert wire.montgomery_public(_y(_P - 1)) == bytes(32)
    u = int.from_bytes(wire.montgomery_public(_y(2)) or b"", "little")
    assert u * (1 - 2) % _P == (1 + 2) % _P


def test_pair_keys_are_symmetric_and_per_pair() -> None:
    """Both nodes of a pair derive the same 32-byte key; a third node gets another one."""
    ab = ALICE.pair_keys.key_for(BOB.public_key)
    ba = BOB.pair_keys.key_for(ALICE.public_key)
    assert ab == ba
    assert type(ab) is bytes and len(ab) == 32
    ac = ALICE.pair_keys.key_for(CAROL.public_key)
    assert ac == CAROL.pair_keys.key_for(ALICE.public_key)
    bc = BOB.pair_keys.key_for(CAROL.public_key)
    assert len({ab, ac, bc}) == 3
    assert ALICE.pair_keys.tag == ALICE.node_id[: wire.RECIPIENT_TAG_BYTES]


def test_pair_keys_come_from_the_x25519_secret_of_both_private_keys() -> None:
    """The raw X25519 secrets agree, and holding only the public keys is not enough."""
    a_seed, b_seed = SEEDS[3], SEEDS[4]
    a = Identity.from_private_key(Ed25519PrivateKey.from_private_bytes(a_seed))
    b = Identity.from_private_key(Ed25519PrivateKey.from_private_bytes(b_seed))

    def secret(seed: bytes, peer: Identity) -> bytes:
        private = X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])
        u = wire.montgomery_public(peer.public_key)
        assert u is not None
        return private.exchange(X25519PublicKey.from_public_bytes(u))

    assert secret(a_seed, b) == secret(b_seed, a)
    assert a.pair_keys.key_for(b.public_key) == b.pair_keys.key_for(a.public_key)
    # Someone claiming a's public key with another private key derives another key.
    impostor = wire.PairKeys(a.node_id, a.public_key, Ed25519PrivateKey.generate())
    assert impostor.key_for(b.public_key) != a.pair_keys.key_for(b.public_key)


def test_pair_keys_survive_a_restart_from_the_key_file() -> None:
    """The key is derived from the stored Ed25519 key alone (no state of its own)."""
    private = serialization.load_pem_private_key(ALICE.private_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    again = Identity.from_private_key(private)
    assert again.pair_keys.key_for(BOB.public_key) == BOB.pair_keys.key_for(ALICE.public_key)


def test_pair_keys_are_cached_and_the_cache_is_bounded() -> None:
    """A second call returns the cached key; the cache never holds more than ``limit``."""
    first = ALICE.pair_keys.key_for(CAROL.public_key)
    assert ALICE.pair_keys.key_for(CAROL.public_key) is first
    private = Ed25519PrivateKey.from_private_bytes(SEEDS[5])
    public = private.public_key().public_bytes_raw()
    keys = wire.PairKeys(wire.node_id_for_key(public), public, private, limit=2)
    peers = [ALICE, BOB, CAROL, ALICE]
    got = []
    for peer in peers:
        got.append(keys.key_for(peer.public_key))
        assert len(keys._keys) <= 2
    assert got[0] == got[3]
    assert len(set(got[:3])) == 3
    me = Identity.from_private_key(private)
    assert [me.pair_keys.key_for(p.public_key) for p in peers] == got


@pytest.mark.parametrize(
    "public",
    [_y(0), _y(0, sign=True), _y(_P - 1), _y(1), _y(_P), b"\xff" * 32],
    ids=["y=0 (u=1, order 4)", "y=0 signed", "y=-1 (u=0)", "y=1", "y=p", "all ff"],
)
def test_pair_keys_refuse_small_order_and_non_canonical_keys(public: bytes) -> None:
    """No key is agreed with a public key of small order or without a u coordinate."""
    with pytest.raises(WireError) as info:
        ALICE.pair_keys.key_for(public)
    assert info.value.reason == "bad_signature"
    # Nor is such a key cached.
    assert public not in ALICE.pair_keys._keys


def test_mac_from_a_small_order_key_is_a_bad_signature() -> None:
    """A MAC datagram whose sender key is of small order is refused (not a crash)."""
    public = _y(0)
    sender = wire.node_id_for_key(public)
    data = wire.encode(
        wire.PING, 1, sender, public, 0, None, wire.NullSigner(), bytes(32), BOB.node_id
    )
    assert _mac_reason(data, BOB.pair_keys) == "bad_signature"


def test_unsigned_identity_has_no_pair_keys() -> None:
    """Without a private key (simulations) no key is computed: key_for returns b""."""
    ident = Identity.unsigned(random.Random(1))
    assert not ident.pair_keys.crypto
    assert ALICE.pair_keys.crypto
    assert ident.pair_keys.key_for(ALICE.public_key) == b""
    assert ident.pair_keys.key_for(_y(0)) == b""  # nothing is checked either


@pytest.mark.parametrize("mtype", sorted(BODIES), ids=lambda t: wire.TYPE_NAMES[t])
def test_round_trip_mac(mtype: int) -> None:
    """Every message type survives encode/decode with a MAC for the receiver."""
    data = _encode_mac(ALICE, BOB, mtype, BODIES[mtype], txid=2**32 - 1, role=wire.ROLE_STUB)
    assert data[0] == wire.PROTOCOL_VERSION
    assert data[1] == wire.FLAG_MAC
    msg = wire.decode(data, keys=BOB.pair_keys)
    assert msg == Message(
        mtype, 2**32 - 1, ALICE.node_id, ALICE.public_key, wire.ROLE_STUB, BODIES[mtype]
    )
    # Layout: the same msgpack envelope, then the recipient tag and the MAC.
    inner = msgpack.unpackb(data[2 : -wire.MAC_TRAILER_BYTES])
    assert inner == [mtype, 2**32 - 1, ALICE.node_id, ALICE.public_key, 1, BODIES[mtype]]
    assert wire.MAC_TRAILER_BYTES == 20
    assert data[-20:-16] == BOB.node_id[:4] == BOB.pair_keys.tag
    key = BOB.pair_keys.key_for(ALICE.public_key)
    assert data[-16:] == hashlib.blake2b(data[:-16], key=key, digest_size=16).digest()
    assert data[-16:] == wire.mac(key, data[:-16])
    signed = _encode(ALICE, mtype, BODIES[mtype], txid=2**32 - 1, role=wire.ROLE_STUB)
    assert len(signed) - len(data) == 44
    assert data[2:-20] == signed[2:-64]
    # The MAC is deterministic, and the receiver answers with the same key.
    assert _encode_mac(ALICE, BOB, mtype, BODIES[mtype], 2**32 - 1, wire.ROLE_STUB) == data
    back = _encode_mac(BOB, ALICE, mtype, BODIES[mtype])
    assert wire.decode(back, keys=ALICE.pair_keys).sender_id == BOB.node_id


def test_keys_do_not_change_signed_or_unsigned_decoding() -> None:
    """Signed datagrams still verify with keys given; unsigned ones are still refused."""
    signed = _encode(ALICE, wire.PING, None)
    assert wire.decode(signed, keys=BOB.pair_keys).sender_id == ALICE.node_id
    unsigned = _encode(Identity.unsigned(random.Random(2)), wire.PING, None)
    assert _mac_reason(unsigned, BOB.pair_keys) == "unsigned"


def test_encode_mac_needs_the_recipient() -> None:
    """A MAC without (at least 4 bytes of) the recipient's ID cannot be encoded."""
    key = ALICE.pair_keys.key_for(BOB.public_key)
    for recipient in (b"", BOB.node_id[:3]):
        with pytest.raises(ValueError):
            wire.encode(
                wire.PING, 1, ALICE.node_id, ALICE.public_key, 0, None, ALICE.signer, key, recipient
            )


def test_tampered_mac_datagrams() -> None:
    """A flipped byte in the body or MAC fails the check; in the tag it is not for BOB."""
    data = _encode_mac(ALICE, BOB, wire.STORE, [KEY, b"value", 10])
    assert wire.decode(data, keys=BOB.pair_keys).body == [KEY, b"value", 10]

    body = bytearray(data)
    body[bytes(body).index(b"value")] ^= 1
    assert wire.decode(bytes(body), verify=False, keys=BOB.pair_keys).body[1] == b"walue"
    assert _mac_reason(bytes(body), BOB.pair_keys) == "bad_signature"

    for i in range(1, wire.MAC_BYTES + 1):
        bad_mac = bytearray(data)
        bad_mac[-i] ^= 0x80
        assert _mac_reason(bytes(bad_mac), BOB.pair_keys) == "bad_signature", i

    for i in range(wire.RECIPIENT_TAG_BYTES):
        bad_tag = bytearray(data)
        bad_tag[-wire.MAC_TRAILER_BYTES + i] ^= 1
        assert _mac_reason(bytes(bad_tag), BOB.pair_keys) == "not_for_me", i
        # Even without checking MACs, a datagram for another node is not taken.
        assert _mac_reason(bytes(bad_tag), BOB.pair_keys, verify=False) == "not_for_me", i

    # The MAC cannot be stripped into an unsigned or signed datagram either.
    assert _reason(bytes((1, 0)) + data[2:]) == "unsigned"
    assert _reason(bytes((1, wire.FLAG_SIGNED)) + data[2:]) in ("malformed", "too_short")


def test_mac_datagram_at_the_wrong_node() -> None:
    """A MAC for BOB is not_for_me at CAROL and at a node without keys."""
    data = _encode_mac(ALICE, BOB, wire.PING, None)
    assert _mac_reason(data, CAROL.pair_keys) == "not_for_me"
    assert _mac_reason(data, CAROL.pair_keys, verify=False) == "not_for_me"
    assert _mac_reason(data, None) == "not_for_me"
    # Without verification and without keys, it is taken as it is (simulations).
    msg = wire.decode(data, verify=False)
    assert msg == Message(wire.PING, 7, ALICE.node_id, ALICE.public_key, 0, None)
    # BOB's answer to ALICE, sent back to BOB, is not for BOB.
    answer = _encode_mac(BOB, ALICE, wire.PONG, None)
    assert _mac_reason(answer, BOB.pair_keys) == "not_for_me"
    assert wire.decode(answer, keys=ALICE.pair_keys).type == wire.PONG


def test_mac_with_the_wrong_pair_key() -> None:
    """A MAC tagged for BOB but made with another pair's key is a bad signature."""
    ac = ALICE.pair_keys.key_for(CAROL.public_key)
    data = _encode_mac(ALICE, BOB, wire.PING, None, key=ac)
    assert data[-20:-16] == BOB.node_id[:4]
    assert _mac_reason(data, BOB.pair_keys) == "bad_signature"
    # CAROL could check that MAC, but the tag says it is not hers.
    assert _mac_reason(data, CAROL.pair_keys) == "not_for_me"
    # An impostor with ALICE's public key but another private key cannot make one.
    impostor = wire.PairKeys(ALICE.node_id, ALICE.public_key, Ed25519PrivateKey.generate())
    forged = _encode_mac(ALICE, BOB, wire.PING, None, key=impostor.key_for(BOB.public_key))
    assert _mac_reason(forged, BOB.pair_keys) == "bad_signature"
    # Nor with the sender and receiver swapped (BOB's key for itself).
    swapped = _encode_mac(ALICE, BOB, wire.PING, None, key=BOB.pair_keys.key_for(BOB.public_key))
    assert _mac_reason(swapped, BOB.pair_keys) == "bad_signature"
    # A zero MAC (what an unsigned simulation node sends) is refused by a real node.
    zeros = _encode_mac(ALICE, BOB, wire.PING, None, key=b"")
    assert zeros[-16:] == bytes(16)
    assert _mac_reason(zeros, BOB.pair_keys) == "bad_signature"


def test_mac_header_and_size_checks() -> None:
    """Both flags together are bad_flags; a MAC datagram without room for its trailer is short."""
    data = _encode_mac(ALICE, BOB, wire.PING, None)
    for flags in (wire.FLAG_SIGNED | wire.FLAG_MAC, 0x06, 0x82):
        assert _mac_reason(data[:1] + bytes((flags,)) + data[2:], BOB.pair_keys) == "bad_flags"
    head = bytes((wire.PROTOCOL_VERSION, wire.FLAG_MAC))
    for size in range(3, 3 + wire.MAC_TRAILER_BYTES):
        short = head + bytes(size - 2)
        assert _mac_reason(short, BOB.pair_keys) == "too_short", size
        assert _mac_reason(short, None, verify=False) == "too_short", size
    assert _mac_reason(head, BOB.pair_keys) == "too_short"
    # The smallest datagram with room: one byte of envelope (nil), then the trailer.
    smallest = head + b"\xc0" + BOB.pair_keys.tag + bytes(wire.MAC_BYTES)
    assert _mac_reason(smallest, BOB.pair_keys) == "malformed"
    assert _mac_reason(smallest, CAROL.pair_keys) == "not_for_me"
    # A truncated MAC datagram is not for BOB or fails the check, never more.
    for cut in range(3 + wire.MAC_TRAILER_BYTES, len(data)):
        assert _mac_reason(data[:cut], BOB.pair_keys) in ("not_for_me", "malformed"), cut


def test_mac_of_unsigned_identities_in_simulations() -> None:
    """Unsigned nodes send zero MACs of the real size; only verify=False takes them."""
    alice = Identity.unsigned(random.Random(11))
    bob = Identity.unsigned(random.Random(12))
    key = alice.pair_keys.key_for(bob.public_key)
    assert key == b""
    assert wire.mac(key, b"anything") == bytes(wire.MAC_BYTES)
    data = _encode_mac(alice, bob, wire.FIND_NODE, KEY)
    assert data[1] == wire.FLAG_MAC
    assert data[-16:] == bytes(16) and data[-20:-16] == bob.node_id[:4]
    assert len(data) == len(_encode(alice, wire.FIND_NODE, KEY)) + wire.MAC_TRAILER_BYTES
    msg = wire.decode(data, verify=False, keys=bob.pair_keys)
    assert msg == Message(wire.FIND_NODE, 7, alice.node_id, alice.public_key, 0, KEY)
    assert _mac_reason(data, bob.pair_keys) == "unsigned"
    assert _mac_reason(data, alice.pair_keys, verify=False) == "not_for_me"
    # A real node checking it refuses the zero MAC.
    to_alice = _encode_mac(bob, ALICE, wire.PING, None)
    assert _mac_reason(to_alice, ALICE.pair_keys) == "bad_signature"


def test_not_for_me_is_a_reason_but_no_ban() -> None:
    """A MAC meant for a previous owner of an address is dropped, its sender not banned."""
    assert "not_for_me" in wire.REASONS
    assert "not_for_me" not in BAN_REASONS
    assert "bad_signature" in BAN_REASONS
    assert BAN_REASONS <= set(wire.REASONS)


def test_only_matching_macs_put_a_pair_key_in_the_cache() -> None:
    """Forged MACs from many made-up keys cannot flush the receiver's key cache."""
    receiver = Identity.generate()
    keys = receiver.pair_keys
    for _ in range(5):
        stranger = Identity.generate()
        forged = _encode_mac(stranger, receiver, wire.PING, None, key=bytes(range(32)))
        assert _mac_reason(forged, keys) == "bad_signature"
    assert len(keys._keys) == 0
    good = _encode_mac(ALICE, receiver, wire.PING, None)
    assert wire.decode(good, keys=keys).sender_id == ALICE.node_id
    assert list(keys._keys) == [ALICE.public_key]
