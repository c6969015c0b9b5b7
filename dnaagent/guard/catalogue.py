"""The catalogue: which requests a peer may make, with which parameters.

A request from a peer is a kind (``ping``, ``traceroute``, ``dns``,
``portcheck``, ``throughput``, ``relay``, ``echo``, ``run``) and a body, a msgpack
map. :func:`validate` checks the body field by field against the kind's
bounds and returns a normalised :class:`Request`, or raises
:class:`Refused` with a reason code and a sentence. Targets are IP literals
only (a peer never resolves a name on a requester's behalf), and the kinds
that send traffic to the requester's own services (``portcheck``,
``throughput``) can only aim at the requester's own address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dnaagent.errors import DnaAgentError

#: Bounds of the catalogue (the same for every agent: they are part of the protocol).
PING_MAX_COUNT = 5
PING_MAX_TIMEOUT = 5.0
TRACEROUTE_MAX_HOPS = 32
TRACEROUTE_MAX_TIMEOUT = 3.0
PORTCHECK_MAX_PORTS = 16
PORTCHECK_MAX_TIMEOUT = 5.0
THROUGHPUT_MAX_SECONDS = 30
ECHO_MAX_BYTES = 256
DNS_RDTYPES = ("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT")
#: Kinds a relay may forward (never another relay: no chains).
RELAYABLE = ("echo", "ping", "dns")

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_PORT_SPEC = re.compile(r"^(tcp|udp)/(\d{1,5})$")


class Refused(DnaAgentError, PermissionError):
    """A peer's request is not served; ``reason`` is a short code, the text says why.

    Reason codes: ``unknown_kind``, ``bad_parameter``, ``denied_target``,
    ``peer_rate``, ``target_rate``, ``busy``, ``untrusted_module``.
    """

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(f"refused ({reason}): {text}")
        self.reason = reason
        self.text = text


@dataclass(frozen=True)
class Request:
    """A validated request: its kind, its target and its normalised parameters.

    ``target`` is the IP address the request sends probes to ("" when it
    sends none to a chosen host, as a DNS query to the peer's own resolver);
    ``probes`` is how many packets or connections it sends there, the unit
    of the per-target cap.
    """

    kind: str
    target: str
    probes: int
    params: Mapping[str, Any] = field(default_factory=dict)


def _bad(text: str) -> Refused:
    return Refused("bad_parameter", text)


def _fields(kind: str, body: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict:
    if not isinstance(body, Mapping):
        raise _bad(f"the body of a {kind} request must be a map")
    if not all(isinstance(k, str) for k in body):
        raise _bad("parameter names must be strings")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise _bad(
            f"unknown parameter(s) {', '.join(unknown)} for {kind}; "
            f"it takes: {', '.join(allowed) or 'nothing'}"
        )
    missing = [k for k in required if k not in body]
    if missing:
        raise _bad(f"{kind} needs {', '.join(missing)}")
    return dict(body)


def _int(body: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer")
    if not lo <= value <= hi:
        raise _bad(f"{name} must be between {lo} and {hi}, not {value}")
    return value


def _float(body: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{name} must be a number")
    value = float(value)
    if not lo <= value <= hi:  # also refuses NaN
        raise _bad(f"{name} must be between {lo:g} and {hi:g}, not {value:g}")
    return value


def ip_literal(value: Any, name: str = "target") -> str:
    """The canonical text of an IPv4 or IPv6 literal, or :class:`Refused`."""
    if not isinstance(value, str) or len(value) > 45:
        raise _bad(f"{name} must be an IP address literal")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _bad(f"{name} must be an IP address literal, not {value!r}") from None


def dns_name(value: Any) -> str:
    """A syntactically valid domain name (no trailing dot), or :class:`Refused`."""
    if not isinstance(value, str) or not 0 < len(value) <= 253:
        raise _bad("name must be a domain name of at most 253 characters")
    name = value.rstrip(".")
    if not name or not all(_LABEL.match(label) for label in name.split(".")):
        raise _bad(f"{value!r} is not a valid domain name")
    return name


def port_spec(value: Any) -> tuple[str, int]:
    """``"tcp/80"`` or ``"udp/53"`` as ``("tcp", 80)``, or :class:`Refused`."""
    match = _PORT_SPEC.match(value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise _bad(f"ports are written tcp/PORT or udp/PORT (1-65535), not {value!r}")
    return match.group(1), int(match.group(2))


def _ping(body: Any, requester: str, max_rate_mbit: float) -> Request:
    b = _fields("ping", body, ("target", "count", "timeout"), ("target",))
    count = _int(b, "count", 3, 1, PING_MAX_COUNT)
    timeout = _float(b, "timeout", 2.0, 0.1, PING_MAX_TIMEOUT)
    target = ip_literal(b["target"])
    return Request("ping", target, count, {"count": count, "timeout": timeout})


def _traceroute(body: Any, requester: str, max_rate_mbit: float) -> Request:
    b = _fields("traceroute", body, ("target", "max_hops", "timeout"), ("target",))
    hops = _int(b, "max_hops", 16, 1, TRACEROUTE_MAX_HOPS)
    timeout = _float(b, "timeout", 1.0, 0.1, TRACEROUTE_MAX_TIMEOUT)
    target = ip_literal(b["target"])
    return Request("traceroute", target, hops, {"max_hops": hops, "timeout": timeout})


def _dns(body: Any, requester: str, max_rate_mbit: float) -> Request:
    b = _fields("dns", body, ("name", "rdtype"), ("name",))
    rdtype = b.get("rdtype", "A")
    if rdtype not in DNS_RDTYPES:
        raise _bad(f"rdtype must be one of {', '.join(DNS_RDTYPES)}")
    return Request("dns", "", 1, {"name": dns_name(b["name"]), "rdtype": rdtype})


def _portcheck(body: Any, requester: str, max_rate_mbit: float) -> Request:
    b = _fields("portcheck", body, ("ports", "timeout"), ("ports",))
    ports = b["ports"]
    if not isinstance(ports, list | tuple) or not 0 < len(ports) <= PORTCHECK_MAX_PORTS:
        raise _bad(f"ports must be a list of 1 to {PORTCHECK_MAX_PORTS} tcp/PORT or udp/PORT")
    parsed = list(dict.fromkeys(port_spec(p) for p in ports))
    timeout = _float(b, "timeout", 2.0, 0.1, PORTCHECK_MAX_TIMEOUT)
    target = ip_literal(requester, "the requester's address")
    return Request(
        "portcheck",
        target,
        len(parsed),
        {"ports": [f"{proto}/{port}" for proto, port in parsed], "timeout": timeout},
    )


def _throughput(body: Any, requester: str, max_rate_mbit: float) -> Request:
    b = _fields("throughput", body, ("port", "seconds", "rate_mbit"), ("port",))
    port = _int(b, "port", 0, 1, 65535)
    seconds = _int(b, "seconds", 5, 1, THROUGHPUT_MAX_SECONDS)
    rate = _float(b, "rate_mbit", max_rate_mbit, 0.01, max_rate_mbit)
    target = ip_literal(requester, "the requester's address")
    return Request("throughput", target, 1, {"port": port, "seconds": seconds, "rate_mbit": rate})


def _echo(body: Any, requester: str, max_rate_mbit: float) -> Request:
    b = _fields("echo", body, ("data",), ())
    data = b.get("data", b"")
    if not isinstance(data, bytes | str) or len(data) > ECHO_MAX_BYTES:
        raise _bad(f"data must be at most {ECHO_MAX_BYTES} bytes")
    return Request("echo", "", 0, {"data": data})


def _relay(body: Any, requester: str, max_rate_mbit: float) -> Request:
    b = _fields("relay", body, ("to", "kind", "body"), ("to", "kind"))
    to = b["to"]
    if isinstance(to, bytes) and len(to) == 20:
        dest: Any = to
    elif (
        isinstance(to, list | tuple)
        and len(to) == 2
        and isinstance(to[1], int)
        and not isinstance(to[1], bool)
        and 1 <= to[1] <= 65535
    ):
        dest = (ip_literal(to[0], "to"), to[1])
    else:
        raise _bad("to must be a 20-byte node ID or [address, port]")
    kind = b["kind"]
    if kind not in RELAYABLE:
        raise _bad(f"a relay forwards only {', '.join(RELAYABLE)}, not {kind!r}")
    inner = b.get("body", {})
    # The final peer validates the inner request again; checking it here
    # keeps malformed requests from costing a datagram.
    KINDS[kind](inner, requester, max_rate_mbit)
    return Request("relay", "", 0, {"to": dest, "kind": kind, "body": inner})


_MODULE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TEST = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
RUN_MAX_PARAMS = 8
RUN_MAX_VALUE = 256
#: Modules a peer may never ask to run: they make requests to other agents themselves.
NOT_RUNNABLE = ("distributed",)


def _run(body: Any, requester: str, max_rate_mbit: float) -> Request:
    b = _fields("run", body, ("module", "test", "params"), ("module", "test"))
    module, test, params = b["module"], b["test"], b.get("params", {})
    if not isinstance(module, str) or not _MODULE.match(module) or module in NOT_RUNNABLE:
        raise _bad(f"module must be a signed test module's name, not {module!r}")
    if not isinstance(test, str) or not _TEST.match(test):
        raise _bad("test must be a test name")
    if (
        not isinstance(params, Mapping)
        or len(params) > RUN_MAX_PARAMS
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= RUN_MAX_VALUE
            for k, v in params.items()
        )
    ):
        raise _bad(f"params must map at most {RUN_MAX_PARAMS} names to short strings")
    return Request("run", "", 0, {"module": module, "test": test, "params": dict(params)})


Validator = Callable[[Any, str, float], Request]

KINDS: dict[str, Validator] = {
    "ping": _ping,
    "traceroute": _traceroute,
    "dns": _dns,
    "portcheck": _portcheck,
    "throughput": _throughput,
    "echo": _echo,
    "relay": _relay,
    "run": _run,
}

#: One sentence per kind, with its bounds (``dnactl`` and the docs show it).
CATALOGUE: dict[str, str] = {
    "ping": f"ping TARGET: <= {PING_MAX_COUNT} echo requests, timeout <= {PING_MAX_TIMEOUT:g} s",
    "traceroute": f"traceroute TARGET: max_hops <= {TRACEROUTE_MAX_HOPS}, one probe per hop",
    "dns": f"one query of type {'/'.join(DNS_RDTYPES)} to the peer's own resolver",
    "portcheck": f"connect to <= {PORTCHECK_MAX_PORTS} of the requester's own ports (tcp/udp)",
    "throughput": f"send TCP to the requester for <= {THROUGHPUT_MAX_SECONDS} s at a bounded rate",
    "echo": f"answer up to {ECHO_MAX_BYTES} bytes back (reachability through a relay)",
    "relay": f"forward one {'/'.join(RELAYABLE)} request to another agent",
    "run": "run one test of a signed module (fetched from the requester if missing)",
}


def validate(kind: Any, body: Any, requester: str, max_rate_mbit: float = 100.0) -> Request:
    """Check a peer's request of ``kind`` against the catalogue.

    ``requester`` is the IP address the request came from (the only target
    of ``portcheck`` and ``throughput``); ``max_rate_mbit`` is this agent's
    ceiling for throughput tests. Raises :class:`Refused`.
    """
    validator = KINDS.get(kind) if isinstance(kind, str) else None
    if validator is None:
        raise Refused(
            "unknown_kind",
            f"{kind!r} is not in the catalogue; allowed: {', '.join(KINDS)}",
        )
    return validator(body, requester, max_rate_mbit)
