"""Paris traceroute packets: checksums, constant flow, parsing hand-built ICMP answers."""

from __future__ import annotations

import socket
import struct

import pytest

from dnaagent.dts.doubletree import ReplyKind
from dnaagent.measure.paris import (
    IP_RECVERR,
    MARKER,
    IcmpAnswer,
    NotAnAnswer,
    atlas_err,
    checksum,
    echo_payload,
    icmp_echo,
    parse_extended_err,
    parse_icmp4,
    parse_icmp_message,
    parse_quoted4,
    parse_quoted6,
    payload_seq,
    probe_payload,
    udp_datagram,
)

MON4, R3_4, DST4 = "192.0.2.10", "198.51.100.10", "203.0.113.2"
MON6, R3_6, DST6 = "2001:db8:a::2", "2001:db8:c::2", "2001:db8:d::2"


def ones_sum(data: bytes) -> int:
    """One's-complement 16-bit sum, written out word by word (the reference)."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4_header(src: str, dst: str, proto: int, ttl: int, payload_len: int) -> bytes:
    """A 20-byte IPv4 header (checksum left 0: receivers here do not check it)."""
    return struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + payload_len,
        0x1234,
        0,
        ttl,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )


def ipv6_header(src: str, dst: str, next_header: int, hop_limit: int, payload_len: int) -> bytes:
    """A 40-byte IPv6 header."""
    return (
        struct.pack("!IHBB", 6 << 28, payload_len, next_header, hop_limit)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
    )


def test_checksum_rfc1071_example() -> None:
    """The worked example of RFC 1071 section 3: sum 0xddf2, checksum 0x220d."""
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D
    assert checksum(b"\x01") == (~0x0100) & 0xFFFF


def test_payload_words_add_up_to_ones_complement_zero() -> None:
    """Sequence word and its complement always sum to 0xFFFF; the marker follows."""
    for seq in (0, 1, 0x1234, 0xFFFF):
        payload = probe_payload(seq)
        assert payload[4:] == MARKER
        assert struct.unpack("!HH", payload[:4]) == (seq, 0xFFFF - seq)
        assert payload_seq(payload) == seq
    with pytest.raises(ValueError):
        probe_payload(0x10000)


def test_payload_seq_rejects_foreign_payloads() -> None:
    """Payloads of other programs are not taken for ours."""
    assert payload_seq(b"\x00\x05\x00\x05dnaparis") is None
    assert payload_seq(b"\x00\x05\xff\xfaSOMEONE!") is None
    assert payload_seq(b"\x00\x05") is None
    # a router quoting only the first 4 payload bytes still gives the sequence
    assert payload_seq(b"\x00\x05\xff\xfa") == 5


@pytest.mark.parametrize(("src", "dst"), [(MON4, DST4), (MON6, DST6)])
def test_udp_checksum_is_valid_and_constant(src: str, dst: str) -> None:
    """The UDP checksum verifies as a receiver checks it and never changes with seq."""
    values = set()
    for seq in (0, 7, 300, 0xFFFE):
        data = udp_datagram(src, dst, 40000, 33434, probe_payload(seq))
        sport, dport, length, value = struct.unpack_from("!HHHH", data)
        assert (sport, dport, length) == (40000, 33434, 8 + 12)
        s, d = (
            socket.inet_pton(socket.AF_INET if ":" not in src else socket.AF_INET6, src),
            (socket.inet_pton(socket.AF_INET if ":" not in dst else socket.AF_INET6, dst)),
        )
        if len(s) == 4:
            pseudo = s + d + struct.pack("!BBH", 0, 17, length)
        else:
            pseudo = s + d + struct.pack("!I3xB", length, 17)
        assert ones_sum(pseudo + data) == 0xFFFF  # a valid checksum
        values.add(value)
    assert len(values) == 1


def test_icmp_echo_v4_checksum_constant() -> None:
    """ICMP echo requests: identifier fixed, sequence varies, checksum does not."""
    values = set()
    for seq in (1, 2, 999):
        data = icmp_echo(0xBEEF, seq)
        kind, code, value, ident, got_seq = struct.unpack_from("!BBHHH", data)
        assert (kind, code, ident, got_seq) == (8, 0, 0xBEEF, seq)
        assert ones_sum(data) == 0xFFFF
        assert struct.unpack_from("!HH", data, 8) == (0xFFFF - seq, 0)
        values.add(value)
    assert len(values) == 1


def test_icmp_echo_v6_checksum_with_pseudo_header() -> None:
    """ICMPv6 echo requests: checksum over the pseudo-header, constant across seq."""
    values = set()
    for seq in (3, 4, 60000):
        data = icmp_echo(0x0102, seq, v6=True, src=MON6, dst=DST6)
        assert data[0] == 128
        pseudo = (
            socket.inet_pton(socket.AF_INET6, MON6)
            + socket.inet_pton(socket.AF_INET6, DST6)
            + struct.pack("!I3xB", len(data), 58)
        )
        assert ones_sum(pseudo + data) == 0xFFFF
        values.add(struct.unpack_from("!H", data, 2)[0])
    assert len(values) == 1
    assert icmp_echo(1, 1, v6=True)[2:4] == b"\x00\x00"  # left to the raw socket


def time_exceeded4(quoted_payload: bytes, *, sport: int = 40000, dport: int = 33434) -> bytes:
    """An IPv4 time exceeded from r3 quoting a UDP probe to DST4, built field by field."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(quoted_payload), 0xABCD) + quoted_payload
    quoted = ipv4_header(MON4, DST4, 17, 1, len(udp)) + udp
    icmp = struct.pack("!BBHI", 11, 0, 0, 0) + quoted
    return ipv4_header(R3_4, MON4, 1, 62, len(icmp)) + icmp


def test_parse_time_exceeded_v4_udp() -> None:
    """Responder, reply TTL, quoted ports, checksum and sequence from the payload."""
    answer = parse_icmp4(time_exceeded4(probe_payload(77)))
    assert (answer.responder, answer.icmp_type, answer.code, answer.reply_ttl) == (
        R3_4,
        11,
        0,
        62,
    )
    q = answer.quoted
    assert q is not None
    assert (q.proto, q.src, q.dst, q.sport, q.dport, q.seq, q.checksum) == (
        17,
        MON4,
        DST4,
        40000,
        33434,
        77,
        0xABCD,
    )
    reply = answer.reply(4.5)
    assert reply.kind is ReplyKind.TIME_EXCEEDED
    assert (reply.address, reply.rtt, reply.reply_ttl) == (R3_4, 4.5, 62)


def test_parse_time_exceeded_v4_quoting_8_bytes() -> None:
    """An RFC 792 router quotes the UDP header only: no sequence, the rest parsed."""
    answer = parse_icmp4(time_exceeded4(b""))
    assert answer.quoted is not None and answer.quoted.seq is None
    assert answer.quoted.dport == 33434


def test_port_unreachable_is_destination_other_unreachable_is_not() -> None:
    """Port unreachable (v4 3/3, v6 1/4) means reached; host unreachable stops."""
    udp = struct.pack("!HHHH", 40000, 33434, 20, 0) + probe_payload(1)
    quoted = ipv4_header(MON4, DST4, 17, 1, len(udp)) + udp
    port = parse_icmp_message(struct.pack("!BBHI", 3, 3, 0, 0) + quoted, DST4, 61, v6=False)
    assert port.reply(1.0).kind is ReplyKind.DESTINATION
    host = parse_icmp_message(struct.pack("!BBHI", 3, 1, 0, 0) + quoted, R3_4, 61, v6=False)
    assert host.reply(1.0).kind is ReplyKind.UNREACHABLE
    quoted6 = ipv6_header(MON6, DST6, 17, 1, len(udp)) + udp
    port6 = parse_icmp_message(struct.pack("!BBHI", 1, 4, 0, 0) + quoted6, DST6, 61, v6=True)
    assert port6.reply(None).reached
    admin6 = parse_icmp_message(struct.pack("!BBHI", 1, 1, 0, 0) + quoted6, R3_6, 61, v6=True)
    assert admin6.reply(None).unreachable


# The RIPE Atlas traceroute result format, a reply's "err": "N" network unreachable,
# "H" destination (host) unreachable, "A" administratively prohibited, "P" protocol
# unreachable, "p" port unreachable, "h" beyond scope; other codes as numbers.
ATLAS_V4 = [(0, "N"), (1, "H"), (2, "P"), (3, "p"), (13, "A")] + [
    (code, code) for code in (4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 255)
]
ATLAS_V6 = [(0, "N"), (1, "A"), (2, "h"), (3, "H"), (4, "p"), (5, 5), (6, 6), (7, 7), (200, 200)]


@pytest.mark.parametrize(("code", "err"), ATLAS_V4)
def test_atlas_err_of_icmp4_unreachable_codes(code: int, err: object) -> None:
    """IPv4 destination unreachable (type 3): letters for 0, 1, 2, 3, 13; numbers else."""
    assert atlas_err(3, code, v6=False) == err
    assert atlas_err(11, code, v6=False) is None  # time exceeded carries no err
    assert atlas_err(1, code, v6=False) is None  # type 1 is not unreachable in ICMPv4


@pytest.mark.parametrize(("code", "err"), ATLAS_V6)
def test_atlas_err_of_icmp6_unreachable_codes(code: int, err: object) -> None:
    """ICMPv6 destination unreachable (type 1): 0 N, 1 A, 2 h, 3 H, 4 p; numbers else."""
    assert atlas_err(1, code, v6=True) == err
    assert atlas_err(3, code, v6=True) is None  # ICMPv6 type 3 is time exceeded


def _unreach4(code: int, responder: str, proto: int = 17) -> IcmpAnswer:
    if proto == 17:
        body = struct.pack("!HHHH", 40000, 33434, 20, 0) + probe_payload(1)
    else:
        body = icmp_echo(0x4242, 1)
    quoted = ipv4_header(MON4, DST4, proto, 1, len(body)) + body
    message = struct.pack("!BBHI", 3, code, 0, 0) + quoted
    return parse_icmp_message(message, responder, 61, v6=False)


def _unreach6(code: int, responder: str, proto: int = 17) -> IcmpAnswer:
    if proto == 17:
        body = struct.pack("!HHHH", 40000, 33434, 20, 0) + probe_payload(1)
    else:
        body = icmp_echo(0x4242, 1, v6=True, src=MON6, dst=DST6)
    quoted = ipv6_header(MON6, DST6, proto, 1, len(body)) + body
    message = struct.pack("!BBHI", 1, code, 0, 0) + quoted
    return parse_icmp_message(message, responder, 61, v6=True)


@pytest.mark.parametrize(("code", "err"), [c for c in ATLAS_V4 if c[0] != 3])
def test_unreachable_reply_carries_the_v4_code(code: int, err: object) -> None:
    """A router's unreachable: the reply is unreachable (stops forwards) with its err."""
    for proto in (17, 1):
        reply = _unreach4(code, R3_4, proto).reply(1.5)
        assert reply.kind is ReplyKind.UNREACHABLE
        assert (reply.address, reply.rtt, reply.reply_ttl, reply.err) == (R3_4, 1.5, 61, err)


@pytest.mark.parametrize(("code", "err"), [c for c in ATLAS_V6 if c[0] != 4])
def test_unreachable_reply_carries_the_v6_code(code: int, err: object) -> None:
    """The same for ICMPv6."""
    for proto in (17, 58):
        reply = _unreach6(code, R3_6, proto).reply(None)
        assert reply.kind is ReplyKind.UNREACHABLE and reply.unreachable
        assert (reply.address, reply.err) == (R3_6, err)


def test_port_unreachable_err_only_when_not_the_expected_end() -> None:
    """The destination's own port unreachable to a UDP probe has no err; from another
    address, or quoting an echo request, it is "p" (still the end of the trace)."""
    for unreach, dst, router, icmp in ((_unreach4, DST4, R3_4, 1), (_unreach6, DST6, R3_6, 58)):
        port = 4 if unreach is _unreach6 else 3
        own = unreach(port, dst).reply(1.0)
        assert own.kind is ReplyKind.DESTINATION and own.err is None
        other = unreach(port, router).reply(1.0)
        assert other.kind is ReplyKind.DESTINATION and other.err == "p"
        echo = unreach(port, dst, icmp).reply(1.0)
        assert echo.reached and echo.err == "p"
    # the same address written differently is the destination
    v6 = _unreach6(4, "2001:db8:d:0:0:0:0:2").reply(1.0)
    assert v6.err is None


def test_time_exceeded_and_echo_replies_carry_no_err() -> None:
    """Only destination unreachable has an err."""
    assert parse_icmp4(time_exceeded4(probe_payload(3))).reply(1.0).err is None
    body = struct.pack("!BBHHH", 0, 0, 0, 0x1111, 5) + echo_payload(5)
    echo = parse_icmp4(ipv4_header(DST4, MON4, 1, 60, len(body)) + body)
    assert echo.reply(1.0).err is None


def test_parse_icmp6_time_exceeded_quoting_echo() -> None:
    """An ICMPv6 time exceeded quoting our echo request: identifier and sequence."""
    echo = icmp_echo(0x4242, 9, v6=True, src=MON6, dst=DST6)
    quoted = ipv6_header(MON6, DST6, 58, 1, len(echo)) + echo
    answer = parse_icmp_message(struct.pack("!BBHI", 3, 0, 0, 0) + quoted, R3_6, 63, v6=True)
    q = answer.quoted
    assert q is not None and (q.proto, q.dst, q.sport, q.seq) == (58, DST6, 0x4242, 9)
    assert answer.reply(2.0).kind is ReplyKind.TIME_EXCEEDED


def test_parse_echo_replies() -> None:
    """Echo replies carry identifier and sequence; they mean the destination answered."""
    body = struct.pack("!BBHHH", 0, 0, 0, 0x1111, 5) + echo_payload(5)
    packet = ipv4_header(DST4, MON4, 1, 60, len(body)) + body
    answer = parse_icmp4(packet)
    assert answer.is_echo_reply and (answer.ident, answer.seq) == (0x1111, 5)
    assert answer.reply(3.0).kind is ReplyKind.DESTINATION
    body6 = struct.pack("!BBHHH", 129, 0, 0, 0x2222, 6) + echo_payload(6)
    answer6 = parse_icmp_message(body6, DST6, 59, v6=True)
    assert answer6.is_echo_reply and (answer6.ident, answer6.seq, answer6.reply_ttl) == (
        0x2222,
        6,
        59,
    )


def test_malformed_and_foreign_messages() -> None:
    """Truncated packets raise ValueError; other ICMP types raise NotAnAnswer."""
    with pytest.raises(ValueError):
        parse_icmp4(b"\x45\x00")
    with pytest.raises(ValueError):
        parse_icmp4(time_exceeded4(b"")[:40])  # quoted header cut short
    with pytest.raises(NotAnAnswer):
        parse_icmp_message(struct.pack("!BBHHH", 8, 0, 0, 1, 1), MON4, 64, v6=False)
    with pytest.raises(NotAnAnswer):
        parse_icmp4(ipv4_header(DST4, MON4, 6, 60, 20) + bytes(20))  # TCP
    with pytest.raises(ValueError):
        parse_quoted4(bytes(8))
    with pytest.raises(ValueError):
        parse_quoted6(bytes(39))
    tcp = ipv4_header(MON4, DST4, 6, 1, 8) + bytes(8)
    with pytest.raises(ValueError):
        parse_quoted4(tcp)


def test_parse_extended_err() -> None:
    """A sock_extended_err (native byte order) and the offender's sockaddr."""
    err4 = struct.pack("=IBBBBII", 113, 2, 11, 0, 0, 0, 0) + struct.pack(
        "=HH4s8x", socket.AF_INET, 0, socket.inet_aton(R3_4)
    )
    q = parse_extended_err(err4, v6=False)
    assert (q.origin, q.icmp_type, q.code, q.offender) == (2, 11, 0, R3_4)
    err6 = struct.pack("=IBBBBII", 113, 3, 1, 4, 0, 0, 0) + struct.pack(
        "=HHI16sI", socket.AF_INET6, 0, 0, socket.inet_pton(socket.AF_INET6, DST6), 0
    )
    q6 = parse_extended_err(err6, v6=True)
    assert (q6.origin, q6.icmp_type, q6.code, q6.offender) == (3, 1, 4, DST6)
    local = struct.pack("=IBBBBII", 90, 1, 0, 0, 0, 0, 0)
    assert parse_extended_err(local, v6=False).offender is None
    with pytest.raises(ValueError):
        parse_extended_err(b"\x00" * 8, v6=False)
    assert IP_RECVERR == 11
