"""Building blocks of configuration sections.

A section is a dataclass whose fields are declared with :func:`key`: a
default, a help sentence (shown by ``--help`` and ``dnactl config
--defaults``) and an optional check returning a problem or None. Components
declare their own section next to their code and :mod:`dnaagent.config`
gathers them into the agent's configuration, so every key is validated at
start and overridable on the command line.

Field types must be one of ``bool``, ``int``, ``float``, ``str`` or
``list[str]``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import field
from typing import Any

Check = Callable[[Any], str | None]


def key(default: Any, help: str, check: Check | None = None) -> Any:
    """Declare one configuration key with its default, help text and check."""
    if isinstance(default, list):
        value = list(default)
        return field(default_factory=lambda: list(value), metadata={"help": help, "check": check})
    return field(default=default, metadata={"help": help, "check": check})


def between(lo: float, hi: float) -> Check:
    """A check that a number lies in ``[lo, hi]``."""

    def check(v: Any) -> str | None:
        if not lo <= v <= hi:
            return f"must be between {lo:g} and {hi:g}, not {v!r}"
        return None

    return check


def one_of(*choices: str) -> Check:
    """A check that a string is one of ``choices``."""

    def check(v: Any) -> str | None:
        if v not in choices:
            return f"must be one of {', '.join(choices)}, not {v!r}"
        return None

    return check


def port(v: int) -> str | None:
    """A check for a TCP/UDP port number (0 lets the system pick)."""
    if not 0 <= v <= 65535:
        return f"must be a port number from 0 to 65535, not {v}"
    return None


def ip_address(v: str) -> str | None:
    """A check for an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return f"must be an IPv4 or IPv6 address, not {v!r}"
    return None


def ip_addresses(v: list[str]) -> str | None:
    """A check that every item is an IPv4 or IPv6 address literal."""
    for item in v:
        problem = ip_address(item)
        if problem:
            return problem
    return None


def loopback(v: str) -> str | None:
    """A check for a loopback address (for services without authentication)."""
    problem = ip_address(v)
    if problem:
        return problem
    if not ipaddress.ip_address(v).is_loopback:
        return f"must be a loopback address (the control API has no authentication), not {v}"
    return None


def names(v: list[str]) -> str | None:
    """A check that no item of a list of names is empty."""
    for item in v:
        if not item.strip():
            return "must not contain empty names"
    return None
