"""The overlay's message envelope and its codec.

Every agent-to-agent datagram is one envelope::

    +---------+-------+------------------------------------------+---------------+
    | version | flags | msgpack [type, txid, sender_id,          | authenticator |
    | 1 byte  | 1 byte|          public_key, role, body]         | 0/64/20 bytes |
    +---------+-------+------------------------------------------+---------------+

``version`` is :data:`PROTOCOL_VERSION`. ``flags`` says how the datagram is
authenticated, by a trailer over everything before it:

* bit 0 (:data:`FLAG_SIGNED`): a 64-byte Ed25519 signature, which anyone can check;
* bit 1 (:data:`FLAG_MAC`): 20 bytes for one receiver, the first 4 bytes of its
  node ID and a 16-byte keyed BLAKE2b MAC. The MAC key belongs to the pair of
  nodes alone: both derive it from an X25519 exchange of their Ed25519 keys
  (:class:`PairKeys`), the receiver from the public key in the envelope, without
  any handshake. A node uses it once it knows the receiver's public key (it has
  had a message from it): checking a MAC costs about a microsecond, checking a
  signature about 150;
* neither: unsigned (simulations; refused unless ``verify=False``).

The sender's node ID must equal :func:`node_id_for_key` of its public key, so an ID
cannot be claimed without holding the matching private key.

:func:`encode` and :func:`decode` are pure functions. :func:`decode` checks the
size, every field's type and range and each message type's body, the ID and the
signature; anything wrong raises :class:`WireError` whose ``reason`` (one of
:data:`REASONS`) lets the caller count drops per reason. Nothing else escapes
from :func:`decode`, whatever the bytes.

Bodies per message type (``K`` is a 20-byte key or node ID)::

    PING, PONG, STORED, LEAVE, ANNOUNCE    None
    FIND_NODE, FIND_VALUE                  K (the target)
    NODES                                  [ipv4_records, ipv6_records]  (see pack_contacts)
    VALUE                                  [[value, ttl_seconds], ...]
    STORE                                  [K, value, ttl_seconds]
    APP_REQUEST                            [name, body]  (body: nested msgpack data)
    APP_REPLY                              body
    ERROR                                  [code, text]
    INTRODUCE                              [host, port]  (host packed: 4 or 16 bytes)
    HERE                                   None

INTRODUCE and HERE are notices, not requests: a node answering FIND_NODE for an
ID it knows tells that node who is looking for it (INTRODUCE, with the asker's
address and the request's transaction ID), and the searched node greets the
asker directly (HERE, same transaction ID). The asker's lookup then ends one
one-way delay earlier than through its own request to the searched node.

Signing costs tens of microseconds and verification more; a simulator of
thousands of nodes passes :class:`NullSigner`, :class:`PairKeys` without a private
key and ``verify=False`` to run the same code paths without the cryptography (its
MACs are zeros, of the real size).
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any, Protocol

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from dnaagent.errors import DnaAgentError

PROTOCOL_VERSION = 1
#: Largest datagram sent or accepted: well below the IPv6 minimum-MTU-safe
#: UDP payload limits of common paths once fragmentation is allowed, and small
#: enough that a hostile sender cannot make a decoder allocate much.
MAX_DATAGRAM = 8192
ID_BYTES = 20
ID_BITS = ID_BYTES * 8
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
#: A MAC trailer: the receiver's node ID prefix, then the MAC.
RECIPIENT_TAG_BYTES = 4
MAC_BYTES = 16
MAC_TRAILER_BYTES = RECIPIENT_TAG_BYTES + MAC_BYTES
MAX_TXID = 2**32 - 1
MAX_TTL = 7 * 86400
MAX_NAME = 64
MAX_ERROR_TEXT = 200
MAX_DEPTH = 16

FLAG_SIGNED = 0x01
FLAG_MAC = 0x02

ROLE_CORE = 0
ROLE_STUB = 1
ROLES = (ROLE_CORE, ROLE_STUB)

PING = 1
PONG = 2
FIND_NODE = 3
NODES = 4
FIND_VALUE = 5
VALUE = 6
STORE = 7
STORED = 8
LEAVE = 9
APP_REQUEST = 10
APP_REPLY = 11
ERROR = 12
ANNOUNCE = 13
INTRODUCE = 14
HERE = 15

TYPE_NAMES = {
    PING: "PING",
    PONG: "PONG",
    FIND_NODE: "FIND_NODE",
    NODES: "NODES",
    FIND_VALUE: "FIND_VALUE",
    VALUE: "VALUE",
    STORE: "STORE",
    STORED: "STORED",
    LEAVE: "LEAVE",
    APP_REQUEST: "APP_REQUEST",
    APP_REPLY: "APP_REPLY",
    ERROR: "ERROR",
    ANNOUNCE: "ANNOUNCE",
    INTRODUCE: "INTRODUCE",
    HERE: "HERE",
}
#: Message types that answer a request (matched by transaction id).
REPLY_TYPES = frozenset({PONG, NODES, VALUE, STORED, APP_REPLY, ERROR})
#: Message types that ask for a reply.
REQUEST_TYPES = frozenset({PING, FIND_NODE, FIND_VALUE, STORE, APP_REQUEST})

# Error codes carried by ERROR replies.
ERR_UNKNOWN_HANDLER = 1
ERR_HANDLER_FAILED = 2
ERR_TOO_LARGE = 3
ERR_REFUSED = 4
ERR_NOT_SERVED = 5

#: Every reason a :class:`WireError` may carry.
REASONS = (
    "too_large",
    "too_short",
    "bad_version",
    "bad_flags",
    "malformed",
    "bad_type",
    "bad_field",
    "bad_body",
    "id_mismatch",
    "unsigned",
    "bad_signature",
    "not_for_me",
)

_V4_RECORD = struct.Struct(">20s4sH")
_V6_RECORD = struct.Struct(">20s16sH")
MAX_CONTACTS = 64


class WireError(DnaAgentError, ValueError):
    """A datagram or message that does not follow the wire format.

    ``reason`` is one of :data:`REASONS`; callers count drops by it.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def node_id_for_key(public_key: bytes) -> bytes:
    """Return the 160-bit node ID of a raw Ed25519 public key.

    The ID is the first 160 bits of SHA-256 of the 32 raw key bytes (SHA-1 is
    avoided on purpose: only its length is wanted, not its weaknesses).
    """
    return hashlib.sha256(public_key).digest()[:ID_BYTES]


class Signer(Protocol):
    """Signs outgoing envelopes."""

    signs: bool

    def sign(self, data: bytes) -> bytes:
        """Return the signature of ``data`` (empty when not signing)."""
        ...


class Ed25519Signer:
    """Signs envelopes with a node's Ed25519 private key."""

    signs = True

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data)


class NullSigner:
    """Leaves envelopes unsigned (simulations; peers must not verify)."""

    signs = False

    def sign(self, data: bytes) -> bytes:
        """Return no signature."""
        return b""


#: The field prime of Curve25519.
_P25519 = 2**255 - 19
#: BLAKE2b personalisation of the pair-key derivation (16 bytes).
_PAIR_PERSON = b"dnaagent pairkey"


def montgomery_public(ed25519_public: bytes) -> bytes | None:
    """Return the X25519 public key of a raw Ed25519 public key, or ``None``.

    The birational map from the Edwards to the Montgomery form of Curve25519,
    ``u = (1 + y) / (1 - y) mod p``. ``None`` for a non-canonical ``y`` or the
    point with ``y = 1`` (whose ``u`` would be 0).
    """
    if len(ed25519_public) != PUBLIC_KEY_BYTES:
        return None
    y = int.from_bytes(ed25519_public, "little") & ((1 << 255) - 1)
    if y >= _P25519 or y == 1:
        return None
    u = (1 + y) * pow(1 - y, -1, _P25519) % _P25519
    return u.to_bytes(32, "little")


class PairKeys:
    """A node's MAC keys, one per peer, from X25519 over the nodes' Ed25519 keys.

    The node's X25519 private key is the clamped first half of SHA-512 of its
    Ed25519 seed (as for Ed25519 itself); a peer's X25519 public key is the
    Montgomery form of its Ed25519 public key (:func:`montgomery_public`). Both
    nodes of a pair so compute the same secret without any exchange of messages;
    the key is BLAKE2b of that secret and both public keys. Keys are cached
    (``limit`` peers; the cache starts over when full).

    Without a private key (simulations) no key is computed: :meth:`key_for` returns
    ``b""`` and the MACs sent are zeros of the real size.
    """

    __slots__ = ("tag", "crypto", "limit", "_public", "_private", "_keys")

    def __init__(
        self,
        node_id: bytes,
        public_key: bytes,
        private_key: Ed25519PrivateKey | None = None,
        limit: int = 4096,
    ) -> None:
        #: The recipient tag of MACs meant for this node.
        self.tag = node_id[:RECIPIENT_TAG_BYTES]
        self.crypto = private_key is not None
        self.limit = limit
        self._public = public_key
        self._private: X25519PrivateKey | None = None
        if private_key is not None:
            seed = private_key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            self._private = X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])
        self._keys: dict[bytes, bytes] = {}

    def key_for(self, peer_public: bytes, remember: bool = True) -> bytes:
        """Return the MAC key shared with the owner of ``peer_public``.

        With ``remember`` false a new key is not cached (:func:`decode` caches it only
        once a MAC made with it has matched, so that forged datagrams cannot flush
        the cache). Raises :class:`WireError` (``bad_signature``) for a public key
        no key can be agreed with (not canonical, or of small order).
        """
        key = self._keys.get(peer_public)
        if key is not None:
            return key
        if self._private is None:
            return b""
        u = montgomery_public(peer_public)
        if u is None:
            raise WireError("bad_signature", "public key cannot agree on a MAC key")
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(u))
        except ValueError:  # a small-order point: the secret would be all zeros
            raise WireError("bad_signature", "public key cannot agree on a MAC key") from None
        lo, hi = sorted((self._public, peer_public))
        key = hashlib.blake2b(shared + lo + hi, digest_size=32, person=_PAIR_PERSON).digest()
        if remember:
            self.remember(peer_public, key)
        return key

    def remember(self, peer_public: bytes, key: bytes) -> None:
        """Cache the key shared with ``peer_public`` (the cache starts over when full)."""
        keys = self._keys
        if peer_public not in keys:
            if len(keys) >= self.limit:
                keys.clear()
            keys[peer_public] = key


def mac(key: bytes, data: bytes) -> bytes:
    """Return the 16-byte MAC of ``data`` (zeros for the empty key of simulations)."""
    if not key:
        return bytes(MAC_BYTES)
    return hashlib.blake2b(data, key=key, digest_size=MAC_BYTES).digest()


class Message:
    """One decoded (or to be encoded) overlay message."""

    __slots__ = ("type", "txid", "sender_id", "public_key", "role", "body", "signed")

    def __init__(
        self,
        type: int,
        txid: int,
        sender_id: bytes,
        public_key: bytes,
        role: int,
        body: Any,
        signed: bool = False,
    ) -> None:
        self.type = type
        self.txid = txid
        self.sender_id = sender_id
        self.public_key = public_key
        self.role = role
        self.body = body
        self.signed = signed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.type == other.type
            and self.txid == other.txid
            and self.sender_id == other.sender_id
            and self.public_key == other.public_key
            and self.role == other.role
            and self.body == other.body
        )

    def __repr__(self) -> str:
        return (
            f"Message({TYPE_NAMES.get(self.type, self.type)}, txid={self.txid}, "
            f"sender={self.sender_id.hex()[:12]}, role={self.role}, body={self.body!r:.80})"
        )


# --------------------------------------------------------------------------
# encoding

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def encode(
    type: int,
    txid: int,
    sender_id: bytes,
    public_key: bytes,
    role: int,
    body: Any,
    signer: Signer,
    mac_key: bytes | None = None,
    recipient: bytes = b"",
) -> bytes:
    """Return the datagram for one message, signed by ``signer``.

    With ``mac_key`` (from :meth:`PairKeys.key_for`) the datagram carries a MAC for
    the node whose ID is ``recipient`` instead of a signature.

    Raises :class:`WireError` (``too_large``) when the datagram would exceed
    :data:`MAX_DATAGRAM`, or (``bad_body``) when ``body`` cannot be packed.
    """
    try:
        inner = _packb([type, txid, sender_id, public_key, role, body])
    except (TypeError, ValueError, OverflowError) as e:
        raise WireError("bad_body", str(e)) from None
    if mac_key is not None:
        if len(recipient) < RECIPIENT_TAG_BYTES:
            raise ValueError("a MAC needs the recipient's node ID")
        head = bytes((PROTOCOL_VERSION, FLAG_MAC)) + inner + recipient[:RECIPIENT_TAG_BYTES]
        data = head + mac(mac_key, head)
    elif signer.signs:
        head = bytes((PROTOCOL_VERSION, FLAG_SIGNED)) + inner
        data = head + signer.sign(head)
    else:
        data = bytes((PROTOCOL_VERSION, 0)) + inner
    if len(data) > MAX_DATAGRAM:
        raise WireError("too_large", f"{len(data)} bytes > {MAX_DATAGRAM}")
    return data


def encode_message(message: Message, signer: Signer) -> bytes:
    """Encode a :class:`Message` (convenience wrapper of :func:`encode`)."""
    return encode(
        message.type,
        message.txid,
        message.sender_id,
        message.public_key,
        message.role,
        message.body,
        signer,
    )


# --------------------------------------------------------------------------
# decoding

# Caches shared by every node of a process (a simulator hosts thousands): the
# ID of each public key seen, and the parsed key object for verification.
_ID_CACHE: dict[bytes, bytes] = {}
_KEY_CACHE: dict[bytes, Ed25519PublicKey] = {}
_CACHE_LIMIT = 100_000


def _node_id_cached(public_key: bytes) -> bytes:
    node_id = _ID_CACHE.get(public_key)
    if node_id is None:
        if len(_ID_CACHE) >= _CACHE_LIMIT:
            _ID_CACHE.clear()
        node_id = _ID_CACHE[public_key] = node_id_for_key(public_key)
    return node_id


def _verify(public_key: bytes, signature: bytes, data: bytes) -> None:
    key = _KEY_CACHE.get(public_key)
    if key is None:
        try:
            key = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            raise WireError("bad_signature", "public key is not a valid Ed25519 key") from None
        if len(_KEY_CACHE) >= _CACHE_LIMIT:
            _KEY_CACHE.clear()
        _KEY_CACHE[public_key] = key
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise WireError("bad_signature", "signature does not match") from None


def _is_key(v: Any) -> bool:
    return type(v) is bytes and len(v) == ID_BYTES


def _is_ttl(v: Any) -> bool:
    return type(v) is int and 0 < v <= MAX_TTL


def _check_data(v: Any, depth: int = 0) -> bool:
    """Whether ``v`` is plain nested data (what application bodies may hold)."""
    t = type(v)
    if v is None or t is bool or t is int or t is float or t is str or t is bytes:
        return True
    if depth >= MAX_DEPTH:
        return False
    if t is list:
        return all(_check_data(x, depth + 1) for x in v)
    if t is dict:
        return all(type(k) in (str, bytes) and _check_data(x, depth + 1) for k, x in v.items())
    return False


def _body_none(b: Any) -> bool:
    return b is None


def _body_nodes(b: Any) -> bool:
    if type(b) is not list or len(b) != 2:
        return False
    v4, v6 = b
    if type(v4) is not bytes or type(v6) is not bytes:
        return False
    if len(v4) % _V4_RECORD.size or len(v6) % _V6_RECORD.size:
        return False
    return len(v4) // _V4_RECORD.size + len(v6) // _V6_RECORD.size <= MAX_CONTACTS


def _body_value(b: Any) -> bool:
    if type(b) is not list or not b:
        return False
    for item in b:
        if type(item) is not list or len(item) != 2:
            return False
        if type(item[0]) is not bytes or not _is_ttl(item[1]):
            return False
    return True


def _body_store(b: Any) -> bool:
    return (
        type(b) is list and len(b) == 3 and _is_key(b[0]) and type(b[1]) is bytes and _is_ttl(b[2])
    )


def _body_app_request(b: Any) -> bool:
    return (
        type(b) is list
        and len(b) == 2
        and type(b[0]) is str
        and 0 < len(b[0]) <= MAX_NAME
        and _check_data(b[1])
    )


def _body_error(b: Any) -> bool:
    return (
        type(b) is list
        and len(b) == 2
        and type(b[0]) is int
        and 0 <= b[0] <= 255
        and type(b[1]) is str
        and len(b[1]) <= MAX_ERROR_TEXT
    )


def _body_introduce(b: Any) -> bool:
    return (
        type(b) is list
        and len(b) == 2
        and type(b[0]) is bytes
        and len(b[0]) in (4, 16)
        and type(b[1]) is int
        and 0 < b[1] < 65536
    )


_BODY_CHECKS = {
    PING: _body_none,
    PONG: _body_none,
    FIND_NODE: _is_key,
    NODES: _body_nodes,
    FIND_VALUE: _is_key,
    VALUE: _body_value,
    STORE: _body_store,
    STORED: _body_none,
    LEAVE: _body_none,
    APP_REQUEST: _body_app_request,
    APP_REPLY: _check_data,
    ERROR: _body_error,
    ANNOUNCE: _body_none,
    INTRODUCE: _body_introduce,
    HERE: _body_none,
}


def decode(data: bytes, *, verify: bool = True, keys: PairKeys | None = None) -> Message:
    """Parse and validate one datagram.

    With ``verify`` (the default) the datagram must be signed and the
    signature must match the sender's public key, or it must carry a MAC that
    ``keys`` (the receiver's :class:`PairKeys`) confirms; ``verify=False`` skips
    both checks (simulations with :class:`NullSigner`). A MAC meant for another
    node (recipient tag) is refused as ``not_for_me``. The sender's ID must
    always match its key. Raises :class:`WireError` and nothing else.
    """
    n = len(data)
    if n > MAX_DATAGRAM:
        raise WireError("too_large", f"{n} bytes > {MAX_DATAGRAM}")
    if n < 3:
        raise WireError("too_short", f"{n} bytes")
    if data[0] != PROTOCOL_VERSION:
        raise WireError("bad_version", f"version {data[0]}")
    flags = data[1]
    signed = flags == FLAG_SIGNED
    if flags == FLAG_MAC:
        if n < 3 + MAC_TRAILER_BYTES:
            raise WireError("too_short", "datagram without room for a MAC")
        tag = data[-MAC_TRAILER_BYTES:-MAC_BYTES]
        if keys is not None:
            if tag != keys.tag:
                raise WireError("not_for_me", "MAC for another node")
        elif verify:
            raise WireError("not_for_me", "MAC but no keys to check it")
        inner = data[2:-MAC_TRAILER_BYTES]
    elif signed:
        if n < 3 + SIGNATURE_BYTES:
            raise WireError("too_short", "signed datagram without room for a signature")
        inner = data[2:-SIGNATURE_BYTES]
    elif flags:
        raise WireError("bad_flags", f"flags {flags:#x}")
    else:
        if verify:
            raise WireError("unsigned", "signatures are required")
        inner = data[2:]
    try:
        fields = msgpack.unpackb(inner, raw=False, strict_map_key=True, max_ext_len=0)
    except Exception as e:  # msgpack raises several types; all mean the same here
        raise WireError("malformed", f"{type(e).__name__}: {e}") from None
    if type(fields) is not list or len(fields) != 6:
        raise WireError("malformed", "envelope is not a list of 6 fields")
    mtype, txid, sender_id, public_key, role, body = fields
    check = _BODY_CHECKS.get(mtype) if type(mtype) is int else None
    if check is None:
        raise WireError("bad_type", f"message type {mtype!r}")
    if type(txid) is not int or not 0 <= txid <= MAX_TXID:
        raise WireError("bad_field", "transaction id")
    if not _is_key(sender_id):
        raise WireError("bad_field", "sender id")
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        raise WireError("bad_field", "public key")
    if role not in ROLES or type(role) is not int:
        raise WireError("bad_field", "role")
    if not check(body):
        raise WireError("bad_body", f"{TYPE_NAMES[mtype]} body")
    if _node_id_cached(public_key) != sender_id:
        raise WireError("id_mismatch", "sender id is not the hash of its public key")
    if verify:
        if signed:
            _verify(public_key, data[-SIGNATURE_BYTES:], data[:-SIGNATURE_BYTES])
        elif keys is not None:  # a MAC (unsigned datagrams were refused above)
            key = keys.key_for(public_key, remember=False)
            if not key:
                raise WireError("unsigned", "no key to check a MAC with")
            if not hmac.compare_digest(mac(key, data[:-MAC_BYTES]), data[-MAC_BYTES:]):
                raise WireError("bad_signature", "MAC does not match")
            keys.remember(public_key, key)
    return Message(mtype, txid, sender_id, public_key, role, body, flags != 0)


# --------------------------------------------------------------------------
# contact lists (NODES bodies)

_HOST_CACHE: dict[bytes, str] = {}
_PACKED_CACHE: dict[str, bytes] = {}


def pack_host(host: str) -> bytes:
    """Return the packed (4- or 16-byte) form of an IP address string.

    A scope (``fe80::1%eth0``) is dropped: it has no meaning for other hosts,
    and nodes do not relay link-local contacts (see :func:`is_link_local`).
    Raises :class:`WireError` (``bad_field``) for anything but an IP address.
    """
    packed = _PACKED_CACHE.get(host)
    if packed is None:
        bare = host.split("%", 1)[0]
        try:
            if ":" in bare:
                packed = socket.inet_pton(socket.AF_INET6, bare)
            else:
                packed = socket.inet_pton(socket.AF_INET, bare)
        except (OSError, ValueError):
            raise WireError("bad_field", f"not an IP address: {host!r}") from None
        if len(_PACKED_CACHE) >= _CACHE_LIMIT:
            _PACKED_CACHE.clear()
        _PACKED_CACHE[host] = packed
    return packed


def is_link_local(packed: bytes) -> bool:
    """Return whether a packed IPv6 address is link-local (``fe80::/10``).

    Such an address needs its zone (``%eth0``), which :func:`pack_host` drops:
    it is valid only on the link it was seen on and is not relayed to others.
    """
    return len(packed) == 16 and packed[0] == 0xFE and packed[1] & 0xC0 == 0x80


def unpack_host(packed: bytes) -> str:
    """Return the text form of a packed IPv4 or IPv6 address."""
    host = _HOST_CACHE.get(packed)
    if host is None:
        family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
        host = socket.inet_ntop(family, packed)
        if len(_HOST_CACHE) >= _CACHE_LIMIT:
            _HOST_CACHE.clear()
        _HOST_CACHE[packed] = host
    return host


def contact_record(node_id: bytes, address: tuple[str, int]) -> tuple[bool, bytes]:
    """Return ``(is_ipv6, record)``: one contact's fixed-size NODES record."""
    packed = pack_host(address[0])
    if len(packed) == 4:
        return False, _V4_RECORD.pack(node_id, packed, address[1])
    return True, _V6_RECORD.pack(node_id, packed, address[1])


def pack_contacts(records: Iterable[tuple[bool, bytes]]) -> list[bytes]:
    """Return a NODES body from records made by :func:`contact_record`."""
    v4: list[bytes] = []
    v6: list[bytes] = []
    for is_v6, record in records:
        (v6 if is_v6 else v4).append(record)
    return [b"".join(v4), b"".join(v6)]


def nodes_body(v4_records: list[bytes], v6_records: list[bytes]) -> list[bytes]:
    """Return a NODES body from already separated IPv4 and IPv6 records."""
    return [b"".join(v4_records), b"".join(v6_records)]


def iter_records(body: list[bytes]) -> Iterator[tuple[bytes, bytes, int]]:
    """Yield ``(node_id, packed_host, port)`` for each contact of a NODES body.

    The host stays packed (see :func:`unpack_host`): most contacts of an answer
    are never used, so their address is not converted.
    """
    if body[1]:
        return chain(_V4_RECORD.iter_unpack(body[0]), _V6_RECORD.iter_unpack(body[1]))
    return _V4_RECORD.iter_unpack(body[0])


def iter_contacts(body: list[bytes]) -> Iterator[tuple[bytes, tuple[str, int]]]:
    """Yield ``(node_id, (host, port))`` for each contact of a NODES body."""
    for node_id, packed, port in iter_records(body):
        yield node_id, (unpack_host(packed), port)
