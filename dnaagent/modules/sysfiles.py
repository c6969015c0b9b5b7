"""Parsers of the resolver configuration and the hosts file.

Pure functions of a file's text: they say what is in it and which lines are
wrong, with line numbers, so the tests that use them can report both.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class BadLine:
    """A line of a configuration file that could not be understood."""

    number: int
    text: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.problem}"


@dataclass(frozen=True)
class HostsEntry:
    """One well-formed line of a hosts file: an address and its names."""

    number: int
    address: str
    names: tuple[str, ...]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address in ``text`` (an IPv6 ``%scope`` allowed), else None."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0] if ":" in text else text)
    except ValueError:
        return None


def parse_resolv_conf(text: str) -> tuple[list[str], list[BadLine]]:
    """The ``nameserver`` addresses of a resolv.conf, in order, without duplicates."""
    servers: list[str] = []
    bad: list[BadLine] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words or words[0] != "nameserver":
            continue
        if len(words) < 2:
            bad.append(BadLine(number, line, "nameserver without an address"))
            continue
        if _address(words[1]) is None:
            bad.append(BadLine(number, line, f"{words[1]!r} is not an IP address"))
            continue
        if words[1] not in servers:
            servers.append(words[1])
    return servers, bad


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def valid_hostname(name: str) -> bool:
    """True for a syntactically valid host name (labels of letters, digits, - and _)."""
    if len(name) > 253:
        return False
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    return all(_LABEL.match(label) for label in labels)


def parse_hosts(text: str) -> tuple[list[HostsEntry], list[BadLine]]:
    """The entries of a hosts file and its bad lines.

    Each line is an IP address followed by one or more host names; ``#``
    starts a comment.
    """
    entries: list[HostsEntry] = []
    bad: list[BadLine] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if _address(words[0]) is None:
            bad.append(BadLine(number, line, f"{words[0]!r} is not an IP address"))
            continue
        if len(words) < 2:
            bad.append(BadLine(number, line, f"{words[0]} has no host name"))
            continue
        wrong = [name for name in words[1:] if not valid_hostname(name)]
        if wrong:
            bad.append(BadLine(number, line, f"{wrong[0]!r} is not a valid host name"))
            continue
        entries.append(HostsEntry(number, words[0], tuple(words[1:])))
    return entries, bad
