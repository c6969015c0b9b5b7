"""The catalogue of requests a peer may make, and its bounds."""

from __future__ import annotations

import pytest

from dnaagent.guard.catalogue import (
    PING_MAX_COUNT,
    TRACEROUTE_MAX_HOPS,
    Refused,
    validate,
)

PEER = "198.51.100.10"


def refused(kind, body, requester=PEER, max_rate=100.0) -> Refused:
    """The refusal of a request that must not pass."""
    with pytest.raises(Refused) as info:
        validate(kind, body, requester, max_rate)
    return info.value


def test_ping_defaults_and_bounds() -> None:
    """A ping has 3 echo requests by default, at most 5, and a bounded timeout."""
    req = validate("ping", {"target": "203.0.113.5"}, PEER)
    assert (req.kind, req.target, req.probes) == ("ping", "203.0.113.5", 3)
    assert validate("ping", {"target": "2001:db8::1", "count": 5}, PEER).probes == PING_MAX_COUNT
    assert refused("ping", {"target": "203.0.113.5", "count": 6}).reason == "bad_parameter"
    assert "timeout" in refused("ping", {"target": "203.0.113.5", "timeout": 5.5}).text
    assert refused("ping", {"target": "203.0.113.5", "timeout": float("nan")})
    assert refused("ping", {"target": "203.0.113.5", "count": True})


def test_targets_are_ip_literals() -> None:
    """A peer never resolves names for a requester: targets are IP literals."""
    assert "IP address" in refused("ping", {"target": "www.example.test"}).text
    assert refused("traceroute", {"target": 42}).reason == "bad_parameter"
    assert validate("ping", {"target": "2001:DB8::0001"}, PEER).target == "2001:db8::1"


def test_traceroute_max_hops() -> None:
    """Traceroute sends one probe per hop, at most 32 hops."""
    req = validate("traceroute", {"target": "203.0.113.5", "max_hops": 32}, PEER)
    assert req.probes == TRACEROUTE_MAX_HOPS
    assert refused("traceroute", {"target": "203.0.113.5", "max_hops": 33})


def test_unknown_kind_and_unknown_parameters() -> None:
    """Kinds outside the catalogue and unknown parameters are refused with a reason."""
    r = refused("shell", {"cmd": "rm -rf /"})
    assert r.reason == "unknown_kind" and "ping" in r.text
    assert refused(None, {}).reason == "unknown_kind"
    r = refused("ping", {"target": "203.0.113.5", "size": 65000})
    assert r.reason == "bad_parameter" and "size" in r.text
    assert refused("ping", ["203.0.113.5"]).reason == "bad_parameter"
    assert refused("ping", {}).text == "ping needs target"


def test_dns_query() -> None:
    """A DNS request names a valid domain and one of the common record types."""
    req = validate("dns", {"name": "www.example.test.", "rdtype": "AAAA"}, PEER)
    assert req.params == {"name": "www.example.test", "rdtype": "AAAA"} and req.target == ""
    assert refused("dns", {"name": "www.example.test", "rdtype": "ANY"})
    assert refused("dns", {"name": "bad..name"})
    assert refused("dns", {"name": "x" * 300})


def test_portcheck_aims_at_the_requester_only() -> None:
    """Port checks go to the requester's own address, at most 16 declared ports."""
    req = validate("portcheck", {"ports": ["tcp/22", "udp/53", "tcp/22"]}, PEER)
    assert req.target == PEER and req.params["ports"] == ["tcp/22", "udp/53"] and req.probes == 2
    assert refused("portcheck", {"ports": ["tcp/22"], "target": "203.0.113.5"})
    assert refused("portcheck", {"ports": ["tcp/0"]})
    assert refused("portcheck", {"ports": ["sctp/80"]})
    assert refused("portcheck", {"ports": [f"tcp/{p}" for p in range(1, 18)]})


def test_throughput_bounds() -> None:
    """Throughput: at most 30 s, at most the configured rate, back to the requester."""
    req = validate("throughput", {"port": 5001, "seconds": 30}, PEER, 50.0)
    assert req.target == PEER and req.params["rate_mbit"] == 50.0
    assert refused("throughput", {"port": 5001, "seconds": 31})
    assert refused("throughput", {"port": 5001, "rate_mbit": 51.0}, max_rate=50.0)
    assert refused("throughput", {"seconds": 5})


def test_relay_forwards_only_simple_kinds() -> None:
    """A relay forwards echo, ping or dns to one agent, never another relay."""
    req = validate("relay", {"to": [PEER, 4001], "kind": "echo", "body": {"data": b"hi"}}, PEER)
    assert req.params["to"] == (PEER, 4001)
    assert (
        validate("relay", {"to": b"\x01" * 20, "kind": "echo"}, PEER).params["to"] == b"\x01" * 20
    )
    assert "relay" in refused("relay", {"to": [PEER, 4001], "kind": "relay"}).text
    assert refused("relay", {"to": [PEER, 4001], "kind": "throughput"})
    assert refused("relay", {"to": "somewhere", "kind": "echo"})
    assert refused("relay", {"to": [PEER, 4001], "kind": "ping", "body": {"target": "x"}})
    assert refused("echo", {"data": b"x" * 257})
