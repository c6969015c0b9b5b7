"""The ``[agentx]`` configuration section and the master-agent address syntax.

Addresses follow Net-SNMP's ``agentXSocket`` syntax so that the same text
goes into ``snmpd.conf`` and ``dnaagent.toml``: ``unix:/var/agentx/master``
(or a bare absolute path), ``tcp:127.0.0.1:705`` (or ``127.0.0.1:705``),
``tcp6:[::1]:705``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnaagent import schema
from dnaagent.schema import key
from dnaagent.snmp.tree import OID, parse_oid

#: Where Net-SNMP's snmpd listens for subagents unless told otherwise.
DEFAULT_MASTER = "unix:/var/agentx/master"
#: The IANA-assigned AgentX TCP port.
AGENTX_PORT = 705


@dataclass(frozen=True)
class MasterAddress:
    """Where the master agent listens: a unix socket ``path`` or a TCP ``host``/``port``."""

    kind: str  # "unix", "tcp" or "tcp6"
    path: str = ""
    host: str = ""
    port: int = AGENTX_PORT

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "tcp6":
            return f"tcp6:[{self.host}]:{self.port}"
        return f"tcp:{self.host}:{self.port}"


def parse_master(text: str) -> MasterAddress:
    """Parse an ``agentXSocket``-style address; ValueError with the reason if malformed."""
    t = text.strip()
    if t.startswith("/"):
        return MasterAddress("unix", path=t)
    scheme, sep, rest = t.partition(":")
    if not sep:
        raise ValueError(f"{text!r} is not unix:PATH, tcp:HOST:PORT or tcp6:[HOST]:PORT")
    scheme = scheme.lower()
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"unix socket path must be absolute, not {rest!r}")
        return MasterAddress("unix", path=rest)
    if scheme == "tcp6" or rest.startswith("["):
        if not rest.startswith("["):
            raise ValueError(f"write an IPv6 master as tcp6:[HOST]:PORT, not {text!r}")
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
        return MasterAddress("tcp6", host=host, port=_port(port_text, text))
    if scheme == "tcp":
        host, _, port_text = rest.rpartition(":")
        if not host:
            host, port_text = port_text, ""
        return MasterAddress("tcp", host=host, port=_port(port_text, text))
    if scheme and rest.isdigit():  # HOST:PORT without a scheme
        return MasterAddress("tcp", host=scheme, port=_port(rest, text))
    raise ValueError(f"unknown transport {scheme!r} in {text!r} (unix, tcp or tcp6)")


def _port(text: str, whole: str) -> int:
    if not text:
        return AGENTX_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r} in {whole!r}")
    return int(text)


def _check_master(v: str) -> str | None:
    try:
        parse_master(v)
    except ValueError as e:
        return str(e)
    return None


def _check_subtrees(v: list[str]) -> str | None:
    for item in v:
        try:
            parse_oid(item)
        except ValueError as e:
            return str(e)
    return None


@dataclass
class AgentxSection:
    """dnaagent as an AgentX subagent of a running snmpd (RFC 2741)."""

    enabled: bool = key(False, "serve the MIB through a master agent (snmpd) over AgentX")
    master: str = key(
        DEFAULT_MASTER,
        "master agent address: unix:/PATH, tcp:HOST:PORT or tcp6:[HOST]:PORT",
        _check_master,
    )
    subtrees: list[str] = key(
        [], "OIDs registered with the master (empty: the DNA-AGENT-MIB root)", _check_subtrees
    )
    context: str = key("", "SNMP context of the registrations (empty: the default context)")
    priority: int = key(
        127, "registration priority; the lower value wins an overlap", schema.between(1, 255)
    )
    timeout: int = key(
        5,
        "seconds the master waits for one answer of this subagent (0: the master's default)",
        schema.between(0, 255),
    )
    request_timeout: float = key(
        10.0,
        "seconds to wait for the master's Response to Open, Register, Ping or Notify",
        schema.between(0.1, 600),
    )
    ping_interval: float = key(
        15.0,
        "seconds between two Pings that check the master still answers (0: no Ping)",
        schema.between(0, 3600),
    )
    reconnect_interval: float = key(
        1.0, "seconds before the first reconnection attempt", schema.between(0.05, 3600)
    )
    reconnect_max: float = key(
        60.0,
        "longest wait between two reconnection attempts (backoff)",
        schema.between(0.05, 86400),
    )
    description: str = key("dnaagent", "description sent to the master in the Open PDU")

    def master_address(self) -> MasterAddress:
        """The parsed :attr:`master` address."""
        return parse_master(self.master)

    def subtree_oids(self, default: OID) -> list[OID]:
        """The configured subtrees as OIDs, or ``[default]`` when none is configured."""
        return [parse_oid(s) for s in self.subtrees] or [default]
