"""Passive RTT: parsing synthesized sock_diag records, filtering, rate limits, polling."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY, MarshalDiag, inet_diag_msg
from twisted.internet import defer, task

from dnaagent.measure.passive import (
    DiagRecord,
    KernelReading,
    PassiveRtt,
    PassiveSample,
    check_record,
    record_of,
)


def _words(address: str) -> tuple[int, int, int, int]:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return (struct.unpack(">I", ip.packed)[0], 0, 0, 0)
    return struct.unpack(">4I", ip.packed)  # type: ignore[return-value]


def diag_bytes(
    src: str,
    dst: str,
    *,
    state: int = 1,
    sport: int = 40000,
    dport: int = 443,
    info: dict | None = None,
    family: int | None = None,
) -> bytes:
    """One inet_diag message as the kernel would send it."""
    m = inet_diag_msg()
    m["header"]["type"] = SOCK_DIAG_BY_FAMILY
    m["header"]["flags"] = 2
    m["header"]["sequence_number"] = 1
    fam = family if family is not None else (socket.AF_INET6 if ":" in dst else socket.AF_INET)
    m["idiag_family"] = fam
    m["idiag_state"] = state
    m["idiag_src"] = _words(src)
    m["idiag_dst"] = _words(dst)
    m["idiag_sport"] = sport
    m["idiag_dport"] = dport
    if info is not None:
        m["attrs"] = [("INET_DIAG_INFO", info)]
    m.encode()
    return bytes(m.data)


def decode(data: bytes) -> list[DiagRecord | None]:
    """Decode with pyroute2's own marshal, then take our record of each message."""
    return [record_of(msg) for msg in MarshalDiag().parse(data)]


def info(rtt: int = 23000, rttvar: int = 4000, state: int = 1) -> dict:
    """A tcp_info attribute."""
    return {"tcpi_state": state, "tcpi_rtt": rtt, "tcpi_rttvar": rttvar}


def test_ipv4_record_parses_into_a_sample() -> None:
    """Addresses, ports and the kernel's RTT (µs -> s) come through."""
    (rec,) = decode(diag_bytes("192.0.2.1", "198.51.100.2", info=info()))
    assert rec == DiagRecord(2, 1, "192.0.2.1", 40000, "198.51.100.2", 443, 1, 23000, 4000)
    out = check_record(rec)
    assert out == PassiveSample("198.51.100.2", 0.023, 0.004, "192.0.2.1", 40000, 443)


def test_ipv6_and_mapped_ipv4() -> None:
    """IPv6 destinations parse; an IPv4-mapped destination is the IPv4 host."""
    (rec,) = decode(diag_bytes("2001:db8::1", "2001:db8::2", info=info(1500)))
    assert check_record(rec).destination == "2001:db8::2"  # type: ignore[union-attr]
    (rec,) = decode(diag_bytes("::ffff:192.0.2.1", "::ffff:203.0.113.9", info=info()))
    assert check_record(rec).destination == "203.0.113.9"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"info": None}, "no_info"),
        ({"state": 6, "info": info()}, "state"),  # TIME_WAIT
        ({"info": info(state=7)}, "state"),
        ({"info": info(rtt=0)}, "rtt_range"),  # no RTT sample yet
        ({"info": info(rtt=0xFFFFFFFF)}, "rtt_range"),
        ({"info": info(rttvar=0xFFFFFFFF)}, "rtt_range"),
        ({"dport": 0, "info": info()}, "malformed"),
        ({"dst": "127.0.0.1", "info": info()}, "loopback"),
        ({"dst": "::1", "src": "::1", "info": info()}, "loopback"),
        ({"dst": "169.254.1.1", "info": info()}, "link_local"),
        ({"dst": "fe80::1", "src": "fe80::2", "info": info()}, "link_local"),
        ({"dst": "0.0.0.0", "info": info()}, "unspecified"),
        ({"dst": "224.0.0.1", "info": info()}, "multicast"),
    ],
)
def test_odd_records_are_dropped_with_a_reason(kwargs, reason) -> None:
    """Each odd or unwanted record names why it is dropped."""
    args = {"src": "192.0.2.1", "dst": "198.51.100.2", **kwargs}
    (rec,) = decode(diag_bytes(args.pop("src"), args.pop("dst"), **args))
    assert check_record(rec) == reason


def test_unknown_family_is_dropped() -> None:
    """A family other than IPv4/IPv6 in a record is refused."""
    rec = DiagRecord(99, 1, "192.0.2.1", 1, "198.51.100.2", 2, 1, 1000, 10)
    assert check_record(rec) == "family"
    bad = DiagRecord(2, 1, "192.0.2.1", 1, "not-an-address", 2, 1, 1000, 10)
    assert check_record(bad) == "malformed"


def test_own_and_local_addresses_only_when_configured() -> None:
    """Own addresses and loopback are kept only with include_local."""
    (rec,) = decode(diag_bytes("192.0.2.1", "192.0.2.1", info=info()))
    assert check_record(rec, frozenset({"192.0.2.1"})) == "own"
    assert isinstance(check_record(rec, frozenset({"192.0.2.1"}), True), PassiveSample)
    (lo,) = decode(diag_bytes("127.0.0.1", "127.0.0.1", info=info(50)))
    assert check_record(lo, include_local=True).rtt == pytest.approx(50e-6)  # type: ignore[union-attr]


def test_record_of_a_broken_message_is_none() -> None:
    """Something that is not a diag message gives None, not an exception."""
    assert record_of({"idiag_family": 2}) is None
    assert record_of(object()) is None


class Sink:
    """Collects what the poller feeds."""

    def __init__(self) -> None:
        self.got: list[tuple[str, float, float]] = []

    def __call__(self, host: str, rtt: float, t: float) -> None:
        self.got.append((host, rtt, t))


def reading(*records: DiagRecord, skipped: int = 0) -> KernelReading:
    """A kernel reading made of synthesized records."""
    return KernelReading(list(records), skipped, 0, frozenset({"192.0.2.1"}))


def rec(dst: str, rtt_us: int) -> DiagRecord:
    """An established connection from 192.0.2.1 to ``dst``."""
    return DiagRecord(2, 1, "192.0.2.1", 40000, dst, 443, 1, rtt_us, 100)


def sync(f, *args):
    """Run the reader at once (instead of in a thread)."""
    return defer.maybeDeferred(f, *args)


def test_poll_feeds_smallest_rtt_per_destination_and_rate_limits() -> None:
    """One sample per destination per reading (the smallest), then the per-destination limit."""
    clock = task.Clock()
    sink = Sink()
    readings = [
        reading(rec("198.51.100.2", 30000), rec("198.51.100.2", 20000), rec("203.0.113.5", 5000)),
        reading(rec("198.51.100.2", 25000)),
        reading(rec("198.51.100.2", 26000), rec("127.0.0.1", 10)),
    ]
    p = PassiveRtt(
        clock,
        sink,
        interval=30,
        per_destination=60,
        reader=lambda n: readings.pop(0),
        in_thread=sync,
    )
    p.start()
    assert sink.got == [("198.51.100.2", 0.02, 0.0), ("203.0.113.5", 0.005, 0.0)]
    clock.advance(30)  # 30 s after: rate-limited
    assert len(sink.got) == 2 and p.counters["rate_limited"] == 1
    clock.advance(30)  # 60 s after: fed again; loopback dropped and counted
    assert sink.got[-1] == ("198.51.100.2", 0.026, 60.0)
    assert p.counters["dropped_loopback"] == 1
    assert p.counters["polls"] == 3 and p.counters["fed"] == 3
    p.stop()


def test_a_slow_reading_is_not_doubled_and_a_failure_is_counted() -> None:
    """While a reading runs no second one starts; a failing reader is counted, polling goes on."""
    clock = task.Clock()
    pending: list[defer.Deferred] = []

    def in_thread(f, n):
        pending.append(defer.Deferred())
        return pending[-1]

    p = PassiveRtt(clock, Sink(), interval=10, reader=lambda n: None, in_thread=in_thread)
    p.start()
    clock.advance(25)
    assert len(pending) == 1
    assert p.poll() is None and p.counters["overrun"] == 1
    pending[0].errback(OSError("netlink says no"))
    assert p.counters["errors"] == 1
    clock.advance(10)
    assert len(pending) == 2  # the loop survived the failure
    p.stop()


def test_limits_from_the_reading_are_counted() -> None:
    """Sockets beyond max_sockets are counted, and the limit is passed to the reader."""
    asked: list[int] = []

    def reader(n: int) -> KernelReading:
        asked.append(n)
        return reading(skipped=7)

    p = PassiveRtt(task.Clock(), Sink(), max_sockets=5, reader=reader, in_thread=sync)
    p.poll()
    assert asked == [5] and p.counters["sockets_skipped"] == 7


def test_a_failing_sink_does_not_stop_the_poller() -> None:
    """An exception in the sink is counted; the other destinations are still fed."""
    got: list[str] = []

    def sink(host: str, rtt: float, t: float) -> None:
        if host == "198.51.100.2":
            raise ValueError("boom")
        got.append(host)

    p = PassiveRtt(task.Clock(), sink, reader=lambda n: None, in_thread=sync)
    assert p.feed([rec("198.51.100.2", 1000), rec("203.0.113.5", 1000)]) == 1
    assert got == ["203.0.113.5"] and p.counters["errors"] == 1
