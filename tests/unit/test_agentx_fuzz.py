"""100,000 malformed AgentX packets through the protocol: no crash, bounded time.

Seeded and reproducible. 90,000 packets keep a sound header (so the
session survives) and carry a damaged payload: bytes overwritten,
truncated or extended, types changed; they arrive in one stream cut at
random places. 10,000 more break the framing itself (version, length,
size); each goes to a fresh connection, which must close cleanly.
"""

from __future__ import annotations

import random
import struct
import time

from twisted.internet import task
from twisted.internet.testing import StringTransport

from dnaagent.snmp.agentx import pdu as P
from dnaagent.snmp.agentx.pdu import SearchRange, VarBind, VarType
from dnaagent.snmp.agentx.protocol import (
    MAX_BULK_VARBINDS,
    AgentxProtocol,
    RequestHandler,
)
from dnaagent.snmp.tree import MibTree, Value
from dnaagent.snmp.writable import Writables

ROOT = (1, 3, 6, 1, 4, 1, 99)
SESSION = 42
TIME_LIMIT = 60.0


class AcceptAll:
    """A write handler that accepts everything."""

    def test(self, oid, value) -> int:
        """Accept."""
        return 0

    def commit(self, oid, value) -> int:
        """Accept."""
        return 0

    def undo(self, oid, value) -> None:
        """Nothing to take back."""


def _tree() -> MibTree:
    tree = MibTree()
    values = {ROOT + (1, 0): Value.octets("x")}
    for i in range(1, 301):
        values[ROOT + (2, 1, 1, i)] = Value.integer(i)
        values[ROOT + (2, 1, 2, i)] = Value.counter64(i)
        values[ROOT + (2, 1, 3, i)] = Value.octets(f"row {i}")
        values[ROOT + (2, 1, 4, i)] = Value.ipaddress(bytes([10, 0, i // 256, i % 256]))
    tree.replace_subtree(ROOT, values)
    return tree


def _open_protocol(tree: MibTree) -> tuple[AgentxProtocol, StringTransport]:
    writables = Writables()
    writables.register(ROOT + (1, 0), AcceptAll())
    proto = AgentxProtocol(RequestHandler(tree, writables, [ROOT]), task.Clock())
    transport = StringTransport()
    proto.makeConnection(transport)
    framer = P.Framer()
    ((_, raw),) = framer.feed(transport.value())
    transport.clear()
    proto.dataReceived(
        P.encode(P.ResponsePdu(session_id=SESSION, packet_id=P.decode(raw).packet_id))
    )
    ((_, raw),) = framer.feed(transport.value())
    transport.clear()
    proto.dataReceived(
        P.encode(P.ResponsePdu(session_id=SESSION, packet_id=P.decode(raw).packet_id))
    )
    transport.clear()
    assert proto.is_open
    return proto, transport


def _seeds() -> list[bytes]:
    """Valid requests a master could send, in both byte orders."""
    requests: list[P.Pdu] = [
        P.GetPdu(ranges=[SearchRange(ROOT + (1, 0)), SearchRange(ROOT + (2, 1, 3, 7))]),
        P.GetNextPdu(ranges=[SearchRange(ROOT, ROOT + (3,), True)]),
        P.GetBulkPdu(non_repeaters=1, max_repetitions=20, ranges=[SearchRange(ROOT)] * 3),
        P.TestSetPdu(varbinds=[VarBind(ROOT + (1, 0), VarType.OCTET_STRING, b"hello")]),
        P.TestSetPdu(varbinds=[VarBind(ROOT + (1, 0), VarType.IP_ADDRESS, b"\1\2\3\4")]),
        P.CommitSetPdu(),
        P.UndoSetPdu(),
        P.CleanupSetPdu(),
        P.GetPdu(context=b"ctx", ranges=[SearchRange(ROOT + (1, 0))]),
        P.ResponsePdu(varbinds=[VarBind(ROOT, VarType.COUNTER64, 5)]),
        P.ClosePdu(),
    ]
    out = []
    for big in (True, False):
        for r in requests:
            r.session_id = SESSION
            out.append(P.encode(r, big))
    return out


def _damage(rng: random.Random, raw: bytes, big: bool) -> bytes:
    """Keep a sound header, damage the payload."""
    body = bytearray(raw[20:])
    how = rng.randrange(5)
    if how == 0 and body:
        for _ in range(rng.randint(1, 6)):
            body[rng.randrange(len(body))] = rng.randrange(256)
    elif how == 1:
        body = body[: rng.randrange(len(body) + 1) & ~3]
    elif how == 2:
        body += bytes(rng.randrange(256) for _ in range(4 * rng.randint(1, 4)))
    elif how == 3 and len(body) >= 4:
        at = rng.randrange(len(body) // 4) * 4
        body[at : at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\x7f\0\0\0"])
    else:
        body = bytearray(rng.randbytes(4 * rng.randint(0, 16)))
    header = bytearray(raw[:20])
    if rng.random() < 0.1:
        header[1] = rng.randrange(256)  # unknown or unexpected type
    if rng.random() < 0.1:
        header[2] ^= P.NON_DEFAULT_CONTEXT
    header[0] = 1
    header[16:20] = struct.pack(">I" if header[2] & P.NETWORK_BYTE_ORDER else "<I", len(body))
    return bytes(header) + bytes(body)


def _break_framing(rng: random.Random, raw: bytes) -> bytes:
    """Damage the header so that the stream cannot be followed."""
    header = bytearray(raw[:20])
    how = rng.randrange(3)
    if how == 0:
        header[0] = rng.choice([0, 2, 3, 255])
    elif how == 1:
        header[16:20] = struct.pack(">I", rng.randrange(1, 2**32) | 1)  # not a multiple of 4
        header[2] |= P.NETWORK_BYTE_ORDER
    else:
        header[16:20] = struct.pack(">I", (P.MAX_PAYLOAD + 4 + rng.randrange(2**20)) & ~3)
        header[2] |= P.NETWORK_BYTE_ORDER
    return bytes(header) + raw[20:]


def test_100000_malformed_packets_do_not_crash_the_subagent() -> None:
    """Damaged PDUs are answered or dropped and counted; the session keeps working."""
    rng = random.Random(2741)
    seeds = _seeds()
    tree = _tree()
    proto, transport = _open_protocol(tree)
    counters = [proto.counters]
    started = time.monotonic()
    stream = bytearray()
    sent = 0
    for _ in range(90_000):
        raw = rng.choice(seeds)
        stream += _damage(rng, raw, bool(raw[2] & P.NETWORK_BYTE_ORDER))
        sent += 1
        if len(stream) > 4096 or rng.random() < 0.05:
            cut = rng.randrange(len(stream) + 1)
            proto.dataReceived(bytes(stream[:cut]))
            del stream[:cut]
        if len(transport.value()) > 1 << 20:
            transport.clear()
        if proto.transport.disconnecting or not proto.is_open:
            # A damaged Close from the master ends the session: that is allowed; start over.
            proto, transport = _open_protocol(tree)
            counters.append(proto.counters)
            stream.clear()
    proto.dataReceived(bytes(stream))
    transport.clear()
    refused = sum(c.parse_errors + c.protocol_errors for c in counters)
    assert refused > 50_000, refused  # the rest stayed well-formed after damage
    if not proto.is_open:
        proto, transport = _open_protocol(tree)

    # The session still answers a valid request correctly.
    proto.dataReceived(
        P.encode(P.GetPdu(session_id=SESSION, packet_id=1, ranges=[SearchRange(ROOT + (1, 0))]))
    )
    ((_, raw),) = P.Framer().feed(transport.value())
    answer = P.decode(raw)
    assert isinstance(answer, P.ResponsePdu) and answer.varbinds[0].value == b"x"

    # Broken framing: each connection closes, nothing raises.
    for _ in range(10_000):
        fresh, fresh_transport = _open_protocol(tree)
        fresh.dataReceived(_break_framing(rng, rng.choice(seeds)))
        sent += 1
        assert fresh_transport.disconnecting
        assert fresh.counters.parse_errors == 1
    elapsed = time.monotonic() - started
    assert sent == 100_000
    assert elapsed < TIME_LIMIT, f"{elapsed:.1f} s"


def test_huge_getbulk_is_capped() -> None:
    """A GetBulk asking for 65535 repetitions of many repeaters gets a bounded answer."""
    proto, transport = _open_protocol(_tree())
    request = P.GetBulkPdu(
        session_id=SESSION, packet_id=5, max_repetitions=65535, ranges=[SearchRange(ROOT)] * 8
    )
    proto.dataReceived(P.encode(request))
    ((_, raw),) = P.Framer().feed(transport.value())
    answer = P.decode(raw)
    assert 0 < len(answer.varbinds) <= MAX_BULK_VARBINDS
