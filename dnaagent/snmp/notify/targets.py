"""Where notifications go: trap sinks and inform targets written as strings.

A target is one line of text so that it fits a TOML list and a command-line
option::

    v2c:COMMUNITY@HOST[:PORT]
    v3:USER:AUTH:AUTHKEY:PRIV:PRIVKEY@HOST[:PORT]

``HOST`` is an IPv4 literal or an IPv6 literal in brackets (``[2001:db8::5]``);
``PORT`` defaults to 162. ``AUTH`` is one of SHA-224, SHA-256, SHA-384,
SHA-512 and ``PRIV`` one of AES (AES-128), AES-192, AES-256: SNMPv3 targets
are always authPriv. Keys are pass phrases of at least 8 characters. A
``:``, ``@``, ``,`` or ``%`` inside a community, user name or key is written
percent-encoded (``%3A``, ``%40``, ``%2C``, ``%25``).

Whether a target receives traps or informs depends on the list it is in
(``trap_sinks`` or ``inform_targets``), not on its text.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from dnaagent.schema import Check

DEFAULT_PORT = 162

TRAP = "trap"
INFORM = "inform"

# Names accepted in target strings, as Net-SNMP spells them.
AUTH_PROTOCOLS = ("SHA-224", "SHA-256", "SHA-384", "SHA-512")
PRIV_PROTOCOLS = ("AES", "AES-192", "AES-256")

MIN_KEY_LENGTH = 8

_ADDRESS = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[^:\[\]]+))(?::(?P<port>[0-9]+))?$")


class TargetError(ValueError):
    """A target string that cannot be used; the message says why."""


@dataclass(frozen=True)
class Target:
    """One receiver of notifications, parsed and checked.

    ``key`` names the target without its secrets; it is what the queue stores
    and what counters and logs show.
    """

    mode: str
    version: str
    host: str
    port: int
    community: str = field(default="", repr=False)
    user: str = ""
    auth_protocol: str = ""
    auth_key: str = field(default="", repr=False)
    priv_protocol: str = ""
    priv_key: str = field(default="", repr=False)

    @property
    def family(self) -> int:
        """4 or 6: the IP version of the host address."""
        return ipaddress.ip_address(self.host).version

    @property
    def address(self) -> str:
        """``host:port`` with brackets around an IPv6 host."""
        host = f"[{self.host}]" if self.family == 6 else self.host
        return f"{host}:{self.port}"

    @property
    def key(self) -> str:
        """A stable name without secrets, e.g. ``inform v3 ops@[2001:db8::5]:162``."""
        who = self.user if self.version == "v3" else "community"
        return f"{self.mode} {self.version} {who}@{self.address}"

    def __str__(self) -> str:
        return self.key


def _decode(text: str, what: str) -> str:
    value = unquote(text, errors="strict")
    if not value:
        raise TargetError(f"the {what} is empty")
    return value


def _parse_address(text: str) -> tuple[str, int]:
    m = _ADDRESS.match(text)
    if m is None:
        raise TargetError(f"{text!r} is not HOST[:PORT] (IPv6 hosts go in brackets)")
    host = m.group("v6") or m.group("v4")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise TargetError(f"{host!r} is not an IPv4 or IPv6 address") from None
    if m.group("v4") and addr.version == 6:
        raise TargetError(f"IPv6 address {host} must be written in brackets: [{host}]")
    if m.group("v6") and addr.version == 4:
        raise TargetError(f"IPv4 address {host} must be written without brackets")
    port = int(m.group("port")) if m.group("port") else DEFAULT_PORT
    if not 1 <= port <= 65535:
        raise TargetError(f"port {port} is not between 1 and 65535")
    return addr.compressed, port


def parse_target(text: str, mode: str) -> Target:
    """Parse one target string for ``mode`` (``"trap"`` or ``"inform"``).

    Raises :class:`TargetError` with a sentence naming what is wrong; the
    message never repeats a key or a community.
    """
    if mode not in (TRAP, INFORM):
        raise ValueError(f"mode must be {TRAP!r} or {INFORM!r}")
    credentials, at, address = text.strip().rpartition("@")
    if not at:
        raise TargetError("missing '@HOST[:PORT]'")
    host, port = _parse_address(address)
    version, _, rest = credentials.partition(":")
    if version == "v2c":
        if ":" in rest:
            raise TargetError("a v2c target is v2c:COMMUNITY@HOST[:PORT] (':' is written %3A)")
        return Target(mode, "v2c", host, port, community=_decode(rest, "community"))
    if version == "v3":
        parts = rest.split(":")
        if len(parts) != 5:
            raise TargetError(
                "a v3 target is v3:USER:AUTH:AUTHKEY:PRIV:PRIVKEY@HOST[:PORT] "
                f"(found {len(parts)} fields after 'v3:', expected 5)"
            )
        user, auth, auth_key, priv, priv_key = parts
        auth = auth.upper()
        priv = priv.upper()
        if auth not in AUTH_PROTOCOLS:
            raise TargetError(f"authentication {auth!r} is not one of {', '.join(AUTH_PROTOCOLS)}")
        if priv not in PRIV_PROTOCOLS:
            raise TargetError(f"privacy {priv!r} is not one of {', '.join(PRIV_PROTOCOLS)}")
        user = _decode(user, "user name")
        auth_key = _decode(auth_key, "authentication key")
        priv_key = _decode(priv_key, "privacy key")
        for what, k in (("authentication key", auth_key), ("privacy key", priv_key)):
            if len(k) < MIN_KEY_LENGTH:
                raise TargetError(f"the {what} is shorter than {MIN_KEY_LENGTH} characters")
        return Target(
            mode,
            "v3",
            host,
            port,
            user=user,
            auth_protocol=auth,
            auth_key=auth_key,
            priv_protocol=priv,
            priv_key=priv_key,
        )
    raise TargetError(f"a target starts with 'v2c:' or 'v3:', not {version + ':'!r}")


def _redacted(text: str) -> str:
    """The target text with its secrets replaced, for error messages."""
    credentials, at, address = text.strip().rpartition("@")
    if not at:
        return "<target without '@'>"
    version, _, rest = credentials.partition(":")
    if version == "v3":
        parts = rest.split(":")
        if len(parts) == 5:
            return f"v3:{parts[0]}:{parts[1]}:***:{parts[3]}:***@{address}"
        return f"v3:***@{address}"
    return f"{version}:***@{address}"


def parse_targets(texts: list[str], mode: str) -> list[Target]:
    """Parse a list of target strings; duplicates are an error.

    The :class:`TargetError` names the entry (with its secrets hidden) and its
    position in the list.
    """
    targets: list[Target] = []
    seen: set[str] = set()
    for i, text in enumerate(texts, 1):
        try:
            target = parse_target(text, mode)
        except TargetError as e:
            raise TargetError(f"entry {i} ({_redacted(text)}): {e}") from None
        if target.key in seen:
            raise TargetError(f"entry {i} ({_redacted(text)}): {target.key} is listed twice")
        seen.add(target.key)
        targets.append(target)
    return targets


def check_targets(mode: str) -> Check:
    """A configuration check (see :mod:`dnaagent.schema`) for a list of targets."""

    def check(texts: list[str]) -> str | None:
        try:
            parse_targets(texts, mode)
        except TargetError as e:
            return str(e)
        return None

    return check
