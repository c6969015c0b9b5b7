"""Parsing the output of ``traceroute -n -q 1``."""

from __future__ import annotations

from dnaagent.measure.traceroute import parse_traceroute

OUTPUT = """traceroute to 203.0.113.5 (203.0.113.5), 16 hops max, 60 byte packets
 1  192.0.2.1  0.050 ms
 2  *
 3  203.0.113.5  0.101 ms !H
"""


def test_parse_hops_and_silent_hops() -> None:
    """Each hop gets its TTL, address (None for '*') and delay; reaching the target is seen."""
    result = parse_traceroute("203.0.113.5", OUTPUT)
    assert result.addresses() == ["192.0.2.1", None, "203.0.113.5"]
    assert result.reached and result.hops[0].rtt_ms == 0.05
    assert result.describe() == "192.0.2.1 > * > 203.0.113.5 (reached)"
    assert result.hops[2].to_json() == [3, "203.0.113.5", 0.101]


def test_parse_unreached_and_garbage() -> None:
    """A path that stops, junk lines and out-of-range TTLs are handled."""
    text = " 1  2001:db8::1  0.2 ms\n 2  *\n 99  192.0.2.9  1 ms\nnonsense\n 1  192.0.2.7 1 ms\n"
    result = parse_traceroute("2001:db8::5", text)
    assert result.addresses() == ["2001:db8::1", None] and not result.reached
