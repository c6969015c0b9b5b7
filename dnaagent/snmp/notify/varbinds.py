"""What a notification carries: trigger events turned into variable bindings.

Every notification starts with ``sysUpTime.0`` and ``snmpTrapOID.0`` (RFC
3416 §4.2.6), followed by the objects of its NOTIFICATION-TYPE in
DNA-AGENT-MIB (OIDs from :mod:`dnaagent.snmp.mib`). Variable bindings are
:class:`~dnaagent.snmp.tree.Value` pairs, stored in the notification queue
as JSON (:func:`dumps`, :func:`loads`).

The sequence number of a notification (dnaNotifySequence, its row id in the
queue) is filled in when it is sent, so that a manager can recognise an
inform it receives twice (see docs/snmp.md, "Notifications").
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

from dnaagent.mediator.interface import Status
from dnaagent.mediator.triggers import Event
from dnaagent.snmp import mib
from dnaagent.snmp.tree import OID, Kind, Value, format_oid, parse_oid

VarBind = tuple[OID, Value]

SYS_UPTIME: OID = mib.SYS_UP_TIME + (0,)
SNMP_TRAP_OID: OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)

NOTIFICATION_OIDS: dict[str, OID] = {
    "test-failed": mib.DNA_TEST_FAILED,
    "test-recovered": mib.DNA_TEST_RECOVERED,
    "fault-localized": mib.DNA_FAULT_LOCALIZED,
    "threshold-crossed": mib.DNA_THRESHOLD_CROSSED,
}

# Instances of the accessible-for-notify scalars.
NOTIFY_TEST: OID = mib.DNA_NOTIFY_TEST + (0,)
NOTIFY_MESSAGE: OID = mib.DNA_NOTIFY_MESSAGE + (0,)
NOTIFY_PREVIOUS_STATUS: OID = mib.DNA_NOTIFY_PREVIOUS_STATUS + (0,)
NOTIFY_TARGET: OID = mib.DNA_NOTIFY_TARGET + (0,)
NOTIFY_FAULT_LOCATION: OID = mib.DNA_NOTIFY_FAULT_LOCATION + (0,)
NOTIFY_THRESHOLD_DETAIL: OID = mib.DNA_NOTIFY_THRESHOLD_DETAIL + (0,)
NOTIFY_THRESHOLD_VALUE: OID = mib.DNA_NOTIFY_THRESHOLD_VALUE + (0,)
NOTIFY_THRESHOLD_LIMIT: OID = mib.DNA_NOTIFY_THRESHOLD_LIMIT + (0,)
NOTIFY_SEQUENCE: OID = mib.DNA_NOTIFY_SEQUENCE + (0,)
NOTIFY_DETAILS: OID = mib.DNA_NOTIFY_DETAILS + (0,)

# DnaTestStatus has no "unknown": a test without a previous result had not
# run, which is what skipped(4) says.
NO_PREVIOUS_STATUS = mib.STATUS_CODES["skipped"]

_LIMIT = re.compile(r"(<=|>=|<|>) (\S+)$")


def _text(value: str) -> Value:
    return Value(Kind.OCTETS, mib.display_string(value))


def _status(status: Status | None) -> Value:
    if status is None:
        return Value.integer(NO_PREVIOUS_STATUS)
    return Value.integer(mib.STATUS_CODES[status.value])


def date_and_time(epoch: float) -> Value:
    """A DateAndTime (RFC 2579) of a Unix time, in UTC (11 octets)."""
    return Value(Kind.OCTETS, mib.date_and_time(epoch))


def _details(event: Event) -> str:
    if not event.details:
        return ""
    return json.dumps(dict(event.details), sort_keys=True, default=str)


def _threshold_limit(event: Event) -> str:
    """The limit with its comparison (``> 5``), from the details or the message."""
    comparison = event.details.get("comparison")
    limit = event.details.get("limit", "")
    if comparison:
        return f"{comparison} {limit}"
    m = _LIMIT.search(event.message)
    return f"{m.group(1)} {m.group(2)}" if m else str(limit)


def _objects(event: Event) -> list[VarBind]:
    """The bindings of the OBJECTS clause of the event's NOTIFICATION-TYPE."""
    result = event.result
    name = f"{result.module}.{result.test}"
    details = event.details
    sequence: VarBind = (NOTIFY_SEQUENCE, Value(Kind.GAUGE32, 0))
    if event.kind in ("test-failed", "test-recovered"):
        index = mib.test_index(result.module, result.test)
        row: list[VarBind] = []
        if index is not None:  # names too long for the result table have no row
            row = [
                (mib.DNA_RESULT_STATUS + index, _status(result.status)),
                (mib.DNA_RESULT_MESSAGE + index, _text(result.message)),
                (mib.DNA_RESULT_TIME + index, date_and_time(result.started)),
            ]
        return [
            (NOTIFY_TEST, _text(name)),
            *row,
            (NOTIFY_PREVIOUS_STATUS, _status(event.previous_status)),
            sequence,
            (NOTIFY_MESSAGE, _text(event.message)),
        ]
    if event.kind == "threshold-crossed":
        return [
            (NOTIFY_TEST, _text(name)),
            (NOTIFY_THRESHOLD_DETAIL, _text(str(details.get("detail", "")))),
            (NOTIFY_THRESHOLD_VALUE, _text(str(details.get("value", "")))),
            (NOTIFY_THRESHOLD_LIMIT, _text(_threshold_limit(event))),
            (NOTIFY_MESSAGE, _text(event.message)),
            sequence,
        ]
    if event.kind == "fault-localized":
        return [
            (NOTIFY_TEST, _text(name)),
            (NOTIFY_TARGET, _text(str(details.get("target", "")))),
            (NOTIFY_FAULT_LOCATION, _text(str(details.get("location", "")))),
            (NOTIFY_MESSAGE, _text(event.message)),
            sequence,
        ]
    raise KeyError(event.kind)


def event_varbinds(event: Event, uptime: float) -> list[VarBind]:
    """The variable bindings of the notification raised by ``event``.

    ``uptime`` is the agent's uptime in seconds (sysUpTime.0). After
    sysUpTime.0 and snmpTrapOID.0 come the OBJECTS of the NOTIFICATION-TYPE
    in their order, then dnaNotifyDetails (and, for test-failed and
    test-recovered, dnaNotifyMessage before it). dnaNotifySequence is 0
    until :func:`with_sequence` fills it in. Raises KeyError for an event
    kind that has no NOTIFICATION-TYPE.
    """
    return [
        (SYS_UPTIME, Value.timeticks(uptime)),
        (SNMP_TRAP_OID, Value.oid(NOTIFICATION_OIDS[event.kind])),
        *_objects(event),
        (NOTIFY_DETAILS, _text(_details(event))),
    ]


def with_sequence(varbinds: Sequence[VarBind], sequence: int) -> list[VarBind]:
    """The bindings with dnaNotifySequence.0 set to ``sequence`` (appended if absent)."""
    value = Value(Kind.GAUGE32, sequence % 2**32)
    out = [(oid, value if oid == NOTIFY_SEQUENCE else v) for oid, v in varbinds]
    if not any(oid == NOTIFY_SEQUENCE for oid, _ in varbinds):
        out.append((NOTIFY_SEQUENCE, value))
    return out


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
