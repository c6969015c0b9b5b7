"""What a notification carries: trigger events turned into variable bindings.

Every notification starts with ``sysUpTime.0`` and ``snmpTrapOID.0`` (RFC
3416 §4.2.6), followed by the objects of its NOTIFICATION-TYPE in
DNA-AGENT-MIB. Variable bindings are :class:`~dnaagent.snmp.tree.Value`
pairs, and are stored in the notification queue as JSON (:func:`dumps`,
:func:`loads`).

The sequence number of a notification (its row id in the queue) is added
when it is sent, as the last binding, so that a manager can recognise an
inform it receives twice (see docs/snmp.md, "Notifications").
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Sequence
from typing import Any

from dnaagent.mediator.interface import Status
from dnaagent.mediator.triggers import Event
from dnaagent.snmp.tree import OID, Kind, Value, format_oid, parse_oid

VarBind = tuple[OID, Value]

SYS_UPTIME: OID = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SNMP_TRAP_OID: OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)

# DNA-AGENT-MIB (provisional until dnaagent.snmp.mib lands): the agent's
# enterprise subtree, its notifications and the objects they carry.
DNA_AGENT: OID = (1, 3, 6, 1, 4, 1, 99999, 1)
DNA_NOTIFICATIONS: OID = DNA_AGENT + (0,)
NOTIFICATION_OIDS: dict[str, OID] = {
    "test-failed": DNA_NOTIFICATIONS + (1,),
    "test-recovered": DNA_NOTIFICATIONS + (2,),
    "fault-localized": DNA_NOTIFICATIONS + (3,),
    "threshold-crossed": DNA_NOTIFICATIONS + (4,),
}
DNA_NOTIFY_OBJECTS: OID = DNA_AGENT + (9,)
NOTIFY_MODULE: OID = DNA_NOTIFY_OBJECTS + (1, 0)
NOTIFY_TEST: OID = DNA_NOTIFY_OBJECTS + (2, 0)
NOTIFY_STATUS: OID = DNA_NOTIFY_OBJECTS + (3, 0)
NOTIFY_PREVIOUS_STATUS: OID = DNA_NOTIFY_OBJECTS + (4, 0)
NOTIFY_MESSAGE: OID = DNA_NOTIFY_OBJECTS + (5, 0)
NOTIFY_TIME: OID = DNA_NOTIFY_OBJECTS + (6, 0)
NOTIFY_DETAILS: OID = DNA_NOTIFY_OBJECTS + (7, 0)
NOTIFY_SEQUENCE: OID = DNA_NOTIFY_OBJECTS + (8, 0)

# DnaTestStatus textual convention: unknown(0) for "no previous result".
STATUS_CODES: dict[Status | None, int] = {
    None: 0,
    Status.OK: 1,
    Status.WARNING: 2,
    Status.ERROR: 3,
    Status.SKIPPED: 4,
}

# DisplayString is at most 255 octets (RFC 2579); details are cut harder.
MAX_TEXT = 255


def _text(value: str, limit: int = MAX_TEXT) -> Value:
    raw = value.encode("utf-8")
    if len(raw) > limit:
        raw = raw[: limit - 3].decode("utf-8", "ignore").encode("utf-8") + b"..."
    return Value(Kind.OCTETS, raw)


def date_and_time(epoch: float) -> Value:
    """A DateAndTime (RFC 2579) of a Unix time, in UTC (11 octets)."""
    t = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    raw = (
        t.year.to_bytes(2, "big")
        + bytes([t.month, t.day, t.hour, t.minute, t.second, t.microsecond // 100_000])
        + b"+\x00\x00"
    )
    return Value(Kind.OCTETS, raw)


def event_varbinds(event: Event, uptime: float) -> list[VarBind]:
    """The variable bindings of the notification raised by ``event``.

    ``uptime`` is the agent's uptime in seconds (sysUpTime.0). Raises
    KeyError for an event kind that has no NOTIFICATION-TYPE.
    """
    result = event.result
    details = json.dumps(dict(event.details), sort_keys=True, default=str) if event.details else ""
    return [
        (SYS_UPTIME, Value.timeticks(uptime)),
        (SNMP_TRAP_OID, Value.oid(NOTIFICATION_OIDS[event.kind])),
        (NOTIFY_MODULE, _text(result.module)),
        (NOTIFY_TEST, _text(result.test)),
        (NOTIFY_STATUS, Value.integer(STATUS_CODES[result.status])),
        (NOTIFY_PREVIOUS_STATUS, Value.integer(STATUS_CODES[event.previous_status])),
        (NOTIFY_MESSAGE, _text(event.message)),
        (NOTIFY_TIME, date_and_time(result.started + result.duration)),
        (NOTIFY_DETAILS, _text(details)),
    ]


def with_sequence(varbinds: Sequence[VarBind], sequence: int) -> list[VarBind]:
    """The bindings followed by the notification's sequence number (Unsigned32)."""
    return [*varbinds, (NOTIFY_SEQUENCE, Value(Kind.GAUGE32, sequence % 2**32))]


def _encode_value(value: Value) -> Any:
    if value.kind in (Kind.OCTETS, Kind.OPAQUE, Kind.IPADDRESS):
        return base64.b64encode(value.value).decode("ascii")
    if value.kind is Kind.OID:
        return format_oid(value.value)
    return value.value


def _decode_value(kind: Kind, raw: Any) -> Value:
    if kind in (Kind.OCTETS, Kind.OPAQUE, Kind.IPADDRESS):
        return Value(kind, base64.b64decode(raw, validate=True))
    if kind is Kind.OID:
        return Value(kind, parse_oid(raw))
    return Value(kind, int(raw))


def dumps(varbinds: Sequence[VarBind]) -> str:
    """Variable bindings as JSON text: ``[[oid, type, value], ...]``."""
    return json.dumps(
        [[format_oid(oid), value.kind.value, _encode_value(value)] for oid, value in varbinds],
        separators=(",", ":"),
    )


def loads(text: str) -> list[VarBind]:
    """Variable bindings from :func:`dumps` output; ValueError when malformed."""
    try:
        rows = json.loads(text)
        return [(parse_oid(oid), _decode_value(Kind(kind), raw)) for oid, kind, raw in rows]
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"unreadable variable bindings: {e}") from None
