"""The ``[notifications]`` configuration section.

Nothing is sent until a trap sink or an inform target is configured. Target
strings are described in :mod:`dnaagent.snmp.notify.targets`. The SNMPv3
engine ID of notifications is the agent's own (``[snmp] engine_id``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dnaagent.schema import between, key
from dnaagent.snmp.notify.targets import INFORM, TRAP, check_targets

EVENT_KINDS = ("test-failed", "test-recovered", "fault-localized", "threshold-crossed")


def event_kinds(v: list[str]) -> str | None:
    """A check that every item names a trigger event kind."""
    for item in v:
        if item not in EVENT_KINDS:
            return f"{item!r} is not an event kind (known: {', '.join(EVENT_KINDS)})"
    return None


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
