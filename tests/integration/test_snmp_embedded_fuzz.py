"""100,000 malformed SNMP datagrams against the embedded agent: no crash.

Random bytes, and valid SNMPv2c/SNMPv3 requests with bytes flipped, cut,
inserted or lengths rewritten, are sent to a running agent on loopback. Every
thousand datagrams a valid request must still be answered (which also paces
the sender so the agent really reads what is sent); at the end the agent
process is alive and answers, and its log holds no traceback. The whole run
is bounded to 60 seconds of sending.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import pytest

from .test_snmp_embedded import COMMUNITY, net_snmp, start_agent, stop_agent, v2c

pytestmark = pytest.mark.integration

DATAGRAMS = 100_000
BATCH = 1000
TIME_LIMIT = 240.0  # a guard that ends the test, not a speed target


def _tlv(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes((tag, len(body))) + body
    n = len(body).to_bytes(2, "big")
    return bytes((tag, 0x82)) + n + body


def _oid(sub: tuple[int, ...]) -> bytes:
    out = bytearray([sub[0] * 40 + sub[1]])
    for x in sub[2:]:
        chunk = [x & 0x7F]
        x >>= 7
        while x:
            chunk.append(0x80 | (x & 0x7F))
            x >>= 7
        out.extend(reversed(chunk))
    return _tlv(0x06, bytes(out))


def v2c_request(pdu: int, oid: tuple[int, ...], request_id: int, community: bytes) -> bytes:
    """A BER SNMPv2c request (written here independently of the agent's codec)."""
    varbind = _tlv(0x30, _oid(oid) + b"\x05\x00")
    body = (
        _tlv(0x02, request_id.to_bytes(4, "big"))
        + b"\x02\x01\x00"
        + (b"\x02\x01\x0a" if pdu == 0xA5 else b"\x02\x01\x00")
        + _tlv(0x30, varbind)
    )
    return _tlv(0x30, b"\x02\x01\x01" + _tlv(0x04, community) + _tlv(pdu, body))


def v3_discovery(request_id: int) -> bytes:
    """An SNMPv3 engine-discovery GET (noAuthNoPriv, empty user)."""
    header = _tlv(
        0x30,
        _tlv(0x02, request_id.to_bytes(4, "big"))
        + b"\x02\x03\x00\xff\xe3"
        + _tlv(0x04, b"\x04")
        + b"\x02\x01\x03",
    )
    usm = _tlv(0x04, _tlv(0x30, b"\x04\x00\x02\x01\x00\x02\x01\x00\x04\x00\x04\x00\x04\x00"))
    pdu = _tlv(0xA0, b"\x02\x01\x01\x02\x01\x00\x02\x01\x00\x30\x00")
    scoped = _tlv(0x30, b"\x04\x00\x04\x00" + pdu)
    return _tlv(0x30, b"\x02\x01\x03" + header + usm + scoped)


def seeds() -> list[bytes]:
    """Valid requests of every kind the agent handles, to be mutated."""
    oids = [(1, 3, 6, 1, 2, 1, 1, 1, 0), (1, 3, 6, 1, 3, 4001, 1, 1, 1, 0), (1, 3, 6, 1, 3, 4001)]
    out = []
    for pdu in (0xA0, 0xA1, 0xA5, 0xA3):
        for oid in oids:
            for community in (COMMUNITY.encode(), b"public"):
                out.append(v2c_request(pdu, oid, 7, community))
    out.append(v3_discovery(9))
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random edits of a datagram."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif op == 2:
            buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
        elif op == 3 and len(buf) > 2:
            i = rng.randrange(len(buf))
            buf[i : i + 1] = bytes((0x84,)) + rng.randbytes(4)  # an absurd long-form length
        elif op == 4 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 5:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 40))
    return bytes(buf)


def test_hundred_thousand_malformed_datagrams(tmp_path: Path) -> None:
    """The agent survives 100,000 malformed datagrams and still answers correctly."""
    agent = start_agent(tmp_path)
    try:
        rng = random.Random(20240501)
        base = seeds()
        probe = v2c_request(0xA0, (1, 3, 6, 1, 2, 1, 1, 5, 0), 424242, COMMUNITY.encode())
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", agent.port))
        started = time.monotonic()
        sent = 0
        answered_probes = 0
        while sent < DATAGRAMS:
            for _ in range(BATCH):
                if rng.random() < 0.3:
                    datagram = rng.randbytes(rng.randint(0, 300))
                else:
                    datagram = mutate(rng, rng.choice(base))
                try:
                    sock.send(datagram)
                except OSError:
                    pass  # e.g. ECONNREFUSED from an earlier ICMP: the check below tells
                sent += 1
            # The probe may be dropped with the flood when the socket buffer
            # is full: resend it until answered (bounded).
            deadline = time.monotonic() + 10.0
            sock.settimeout(0.5)
            answered = False
            while not answered:
                assert time.monotonic() < deadline, f"the agent stopped answering after {sent}"
                sock.send(probe)
                try:
                    while not answered:  # replies to mutated valid requests may come first
                        answered = b"\x02\x04\x00\x06\x79\x32" in sock.recv(65535)
                except TimeoutError:
                    continue
            answered_probes += 1
            assert time.monotonic() - started < TIME_LIMIT, f"only {sent} sent in time"
        sock.close()
        assert answered_probes == DATAGRAMS // BATCH
        assert agent.proc.poll() is None, "the agent process died"
        done = net_snmp("snmpget", *v2c(), agent.target, "DNA-AGENT-MIB::dnaPeerCount.0")
        assert "Gauge32: 2 peers" in done.stdout, done.stdout + done.stderr
    finally:
        stop_agent(agent.proc)
    log = agent.log.read_text()
    assert "Traceback" not in log, log[-3000:]
