"""The ``[notifications]`` configuration section.

Nothing is sent until a trap sink or an inform target is configured. Target
strings are described in :mod:`dnaagent.snmp.notify.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dnaagent.schema import between, key
from dnaagent.snmp.notify.targets import INFORM, TRAP, check_targets

EVENT_KINDS = ("test-failed", "test-recovered", "fault-localized", "threshold-crossed")


def event_kinds(v: list[str]) -> str | None:
    """A check that every item names a trigger event kind."""
    for item in v:
        if item not in EVENT_KINDS:
            return f"{item!r} is not an event kind (known: {', '.join(EVENT_KINDS)})"
    return None


def engine_id(v: Any) -> str | None:
    """A check for an SNMP engine ID in hex (5 to 32 octets, RFC 3411), or empty."""
    if v == "":
        return None
    text = v[2:] if v.lower().startswith("0x") else v
    try:
        octets = bytes.fromhex(text)
    except ValueError:
        return f"must be hexadecimal digits (e.g. 0x80001f8804...), not {v!r}"
    if not 5 <= len(octets) <= 32:
        return f"must be 5 to 32 octets long, not {len(octets)}"
    return None


def parse_engine_id(v: str) -> bytes | None:
    """The octets of a checked engine ID setting, or None when empty."""
    if not v:
        return None
    return bytes.fromhex(v[2:] if v.lower().startswith("0x") else v)


@dataclass
class NotifySection:
    """SNMP traps and informs raised by trigger events."""

    trap_sinks: list[str] = key(
        [],
        "receivers of traps (sent once), e.g. v2c:public@192.0.2.5:162 or "
        "v3:USER:SHA-256:AUTHKEY:AES:PRIVKEY@[2001:db8::5]:162",
        check_targets(TRAP),
    )
    inform_targets: list[str] = key(
        [],
        "receivers of informs (retried until acknowledged, in order), same syntax as trap_sinks",
        check_targets(INFORM),
    )
    events: list[str] = key(
        list(EVENT_KINDS), "trigger events that become notifications", event_kinds
    )
    engine_id: str = key(
        "",
        "SNMPv3 engine ID of the notification sender in hex "
        "(empty: generated at first start and kept in the state directory)",
        engine_id,
    )
    inform_timeout: float = key(
        5.0, "seconds to wait for the acknowledgement of one inform", between(0.1, 120)
    )
    retry_initial: float = key(
        5.0, "seconds before the first retry of an unacknowledged inform", between(0.1, 3600)
    )
    retry_max: float = key(
        300.0, "longest wait between two retries (the wait doubles up to it)", between(1, 86400)
    )
    retry_jitter: float = key(
        0.1, "random share of each retry wait added or taken away", between(0, 0.5)
    )
    max_pending_per_target: int = key(
        10_000,
        "most unacknowledged notifications kept per target (beyond: the oldest is dropped)",
        between(1, 10_000_000),
    )
    max_pending_total: int = key(
        100_000,
        "most unacknowledged notifications kept in all (beyond: the oldest is dropped)",
        between(1, 100_000_000),
    )
