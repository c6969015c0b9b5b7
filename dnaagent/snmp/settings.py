"""The ``[snmp]`` configuration section: the embedded SNMP agent.

By default the agent answers SNMPv2c reads with the community ``public`` on
UDP 127.0.0.1:1161 and nothing else. An empty ``community`` turns SNMPv2c
off. SNMPv3 users are strings an operator writes in TOML::

    [snmp]
    listen = ["127.0.0.1", "::1"]
    port = 1161
    community = ""
    users = ["nms:SHA-256:auth pass phrase:AES:priv pass phrase:rw"]

A user is ``NAME:AUTH:AUTHKEY:PRIV:PRIVKEY[:ACCESS]``: authentication and
privacy are both required (authPriv), ACCESS is ``ro`` (the default) or
``rw`` (may also start tests through DNA-AGENT-MIB::dnaTestRun). Pass
phrases are at least 8 characters and cannot contain a colon.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dnaagent.schema import between, ip_addresses, key, port

# Authentication protocols by the names Net-SNMP's -a option uses.
AUTH_PROTOCOLS = ("SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512")
# Privacy protocols by the names Net-SNMP's -x option uses (AES-192/256: the
# key extension of draft-blumenthal-aes-usm, which Net-SNMP implements).
PRIV_PROTOCOLS = ("AES", "AES-128", "AES-192", "AES-256")
ACCESS_LEVELS = ("ro", "rw")
MIN_KEY_LENGTH = 8

_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,32}$")


@dataclass(frozen=True)
class UserSpec:
    """One SNMPv3 USM user of the embedded agent."""

    name: str
    auth: str
    auth_key: str
    priv: str
    priv_key: str
    writable: bool

    def __repr__(self) -> str:
        # Never show keys in logs or tracebacks.
        return f"UserSpec({self.name!r}, {self.auth}, {self.priv}, writable={self.writable})"


def parse_user(text: str) -> UserSpec:
    """Parse ``NAME:AUTH:AUTHKEY:PRIV:PRIVKEY[:ACCESS]``; ValueError says what is wrong."""
    parts = text.split(":")
    if len(parts) not in (5, 6):
        raise ValueError(
            "an SNMPv3 user is NAME:AUTH:AUTHKEY:PRIV:PRIVKEY[:ro|rw] "
            f"(5 or 6 fields separated by ':', not {len(parts)})"
        )
    name, auth, auth_key, priv, priv_key = parts[:5]
    access = parts[5] if len(parts) == 6 else "ro"
    if not _NAME.match(name):
        raise ValueError(f"user name {name!r} must be 1 to 32 letters, digits or ._@-")
    auth = auth.upper()
    priv = priv.upper()
    if auth not in AUTH_PROTOCOLS:
        raise ValueError(
            f"user {name}: authentication {auth!r} must be one of {', '.join(AUTH_PROTOCOLS)}"
        )
    if priv not in PRIV_PROTOCOLS:
        raise ValueError(
            f"user {name}: privacy {priv!r} must be one of {', '.join(PRIV_PROTOCOLS)}"
        )
    for what, secret in (("authentication", auth_key), ("privacy", priv_key)):
        if len(secret) < MIN_KEY_LENGTH:
            raise ValueError(
                f"user {name}: the {what} pass phrase needs at least {MIN_KEY_LENGTH} characters"
            )
    if access not in ACCESS_LEVELS:
        raise ValueError(f"user {name}: access {access!r} must be ro or rw")
    return UserSpec(name, auth, auth_key, priv, priv_key, access == "rw")


def _check_users(value: list[str]) -> str | None:
    seen: set[str] = set()
    for item in value:
        try:
            user = parse_user(item)
        except ValueError as e:
            return str(e)
        if user.name in seen:
            return f"user {user.name} is listed twice"
        seen.add(user.name)
    return None


def _check_community(value: str) -> str | None:
    if len(value.encode("utf-8")) > 32:
        return "must be at most 32 octets (empty: SNMPv2c off)"
    if ":" in value or any(ord(c) < 0x20 for c in value):
        return "must not contain ':' or control characters"
    return None


def _check_engine_id(value: str) -> str | None:
    if not value:
        return None
    text = value.lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{10,64}", text) or len(text) % 2:
        return "must be 5 to 32 octets in hex (empty: generated once and kept in the state dir)"
    return None


def _check_listen(value: list[str]) -> str | None:
    if not value:
        return "needs at least one address (turn the agent off with snmp.enabled = false)"
    return ip_addresses(value)


@dataclass
class SnmpSection:
    """The embedded SNMP agent (DNA-AGENT-MIB)."""

    enabled: bool = key(True, "serve DNA-AGENT-MIB with the embedded SNMP agent")
    listen: list[str] = key(
        ["127.0.0.1"], "IPv4/IPv6 addresses the SNMP agent listens on", _check_listen
    )
    port: int = key(1161, "UDP port of the SNMP agent (161 is the standard port)", port)
    community: str = key(
        "public", "SNMPv2c read-only community (empty: SNMPv2c off)", _check_community
    )
    users: list[str] = key(
        [],
        "SNMPv3 users NAME:AUTH:AUTHKEY:PRIV:PRIVKEY[:ro|rw] (AUTH SHA/SHA-224/SHA-256/"
        "SHA-384/SHA-512, PRIV AES/AES-192/AES-256; rw may start tests)",
        _check_users,
    )
    engine_id: str = key(
        "",
        "SNMPv3 engine ID in hex (empty: generated once, kept in the state dir)",
        _check_engine_id,
    )
    sys_name: str = key("", "sysName.0 (empty: the host name)")
    sys_contact: str = key("", "sysContact.0")
    sys_location: str = key("", "sysLocation.0")
    update_interval: float = key(
        5.0, "seconds between refreshes of uptime, counters and peers", between(0.2, 3600)
    )

    def parsed_users(self) -> list[UserSpec]:
        """The SNMPv3 users, parsed (the check has validated them)."""
        return [parse_user(u) for u in self.users]
