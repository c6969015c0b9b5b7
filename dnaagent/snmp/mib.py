"""OIDs of DNA-AGENT-MIB and the encodings its instances use.

``mibs/DNA-AGENT-MIB.txt`` is the source of truth; every constant here is
checked against ``snmptranslate`` by ``tests/integration/test_mib.py``, so
the MIB and the code cannot drift apart. :data:`OBJECTS` maps each MIB name
to its OID (the test and the documentation use it).

The module also holds the instance-index and value encodings shared by the
updaters, the write handlers and the notification code: string indexes
(length-prefixed, RFC 2578 §7.7), DateAndTime (RFC 2579) and the status
enumeration.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable

from dnaagent.snmp.tree import OID

# The root arc. The project has no IANA Private Enterprise Number: the MIB
# sits under experimental (1.3.6.1.3). Moving it is a change of this line and
# of the MODULE-IDENTITY value in the MIB; everything below is relative.
DNA_AGENT: OID = (1, 3, 6, 1, 3, 4001)

DNA_NOTIFICATIONS: OID = DNA_AGENT + (0,)
DNA_OBJECTS: OID = DNA_AGENT + (1,)
DNA_CONFORMANCE: OID = DNA_AGENT + (2,)

DNA_INFO: OID = DNA_OBJECTS + (1,)
DNA_TESTS: OID = DNA_OBJECTS + (2,)
DNA_RESULTS: OID = DNA_OBJECTS + (3,)
DNA_PEERS: OID = DNA_OBJECTS + (4,)
DNA_OVERLAY: OID = DNA_OBJECTS + (5,)
DNA_PREDICTIONS: OID = DNA_OBJECTS + (6,)
DNA_TRACES: OID = DNA_OBJECTS + (7,)
DNA_NOTIFY_OBJECTS: OID = DNA_OBJECTS + (8,)

# dnaInfo scalars (instances end in .0)
DNA_VERSION: OID = DNA_INFO + (1,)
DNA_NODE_ID: OID = DNA_INFO + (2,)
DNA_UPTIME: OID = DNA_INFO + (3,)
DNA_OVERLAY_SIZE: OID = DNA_INFO + (4,)
DNA_PEER_COUNT: OID = DNA_INFO + (5,)
DNA_RUNS_COMPLETED: OID = DNA_INFO + (6,)

# dnaTestTable, INDEX { dnaTestModule, dnaTestName }
DNA_TEST_TABLE: OID = DNA_TESTS + (1,)
DNA_TEST_ENTRY: OID = DNA_TEST_TABLE + (1,)
DNA_TEST_MODULE: OID = DNA_TEST_ENTRY + (1,)
DNA_TEST_NAME: OID = DNA_TEST_ENTRY + (2,)
DNA_TEST_DESCRIPTION: OID = DNA_TEST_ENTRY + (3,)
DNA_TEST_DEFAULT: OID = DNA_TEST_ENTRY + (4,)
DNA_TEST_ENABLED: OID = DNA_TEST_ENTRY + (5,)
DNA_TEST_INTERVAL: OID = DNA_TEST_ENTRY + (6,)
DNA_TEST_DEPENDENCIES: OID = DNA_TEST_ENTRY + (7,)
DNA_TEST_RUN: OID = DNA_TEST_ENTRY + (8,)

# dnaResultTable, INDEX { dnaTestModule, dnaTestName }
DNA_RESULT_TABLE: OID = DNA_RESULTS + (1,)
DNA_RESULT_ENTRY: OID = DNA_RESULT_TABLE + (1,)
DNA_RESULT_STATUS: OID = DNA_RESULT_ENTRY + (1,)
DNA_RESULT_MESSAGE: OID = DNA_RESULT_ENTRY + (2,)
DNA_RESULT_TIME: OID = DNA_RESULT_ENTRY + (3,)
DNA_RESULT_DURATION: OID = DNA_RESULT_ENTRY + (4,)
DNA_RESULT_ORIGIN: OID = DNA_RESULT_ENTRY + (5,)
DNA_RESULT_COUNT: OID = DNA_RESULT_ENTRY + (6,)
DNA_RESULT_ERRORS: OID = DNA_RESULT_ENTRY + (7,)

# dnaPeerTable, INDEX { dnaPeerIndex } (rank by XOR distance, from 1)
DNA_PEER_TABLE: OID = DNA_PEERS + (1,)
DNA_PEER_ENTRY: OID = DNA_PEER_TABLE + (1,)
DNA_PEER_INDEX: OID = DNA_PEER_ENTRY + (1,)
DNA_PEER_ADDRESS_TYPE: OID = DNA_PEER_ENTRY + (2,)
DNA_PEER_ADDRESS: OID = DNA_PEER_ENTRY + (3,)
DNA_PEER_PORT: OID = DNA_PEER_ENTRY + (4,)
DNA_PEER_RTT: OID = DNA_PEER_ENTRY + (5,)
DNA_PEER_LAST_SEEN: OID = DNA_PEER_ENTRY + (6,)
DNA_PEER_ID: OID = DNA_PEER_ENTRY + (7,)

# dnaOverlay scalars
DNA_OVERLAY_MESSAGES_IN: OID = DNA_OVERLAY + (1,)
DNA_OVERLAY_MESSAGES_OUT: OID = DNA_OVERLAY + (2,)
DNA_OVERLAY_BYTES_IN: OID = DNA_OVERLAY + (3,)
DNA_OVERLAY_BYTES_OUT: OID = DNA_OVERLAY + (4,)
DNA_OVERLAY_INVALID_DROPPED: OID = DNA_OVERLAY + (5,)
DNA_OVERLAY_PEERS_BANNED: OID = DNA_OVERLAY + (6,)
DNA_OVERLAY_BANNED_PEERS: OID = DNA_OVERLAY + (7,)

# dnaXbac scalars (prediction service); dnaXbacPredictTarget is read-write
DNA_XBAC: OID = DNA_PREDICTIONS + (1,)
DNA_XBAC_ROLE: OID = DNA_XBAC + (1,)
DNA_XBAC_GROUP: OID = DNA_XBAC + (2,)
DNA_XBAC_MEMBERS: OID = DNA_XBAC + (3,)
DNA_XBAC_CLUSTERS: OID = DNA_XBAC + (4,)
DNA_XBAC_MEASUREMENTS: OID = DNA_XBAC + (5,)
DNA_XBAC_PREDICTIONS_ANSWERED: OID = DNA_XBAC + (6,)
DNA_XBAC_PREDICTIONS_UNANSWERED: OID = DNA_XBAC + (7,)
DNA_XBAC_PREDICT_TARGET: OID = DNA_XBAC + (8,)

# dnaPredictionTable, INDEX { dnaPredictionIndex }
DNA_PREDICTION_TABLE: OID = DNA_PREDICTIONS + (2,)
DNA_PREDICTION_ENTRY: OID = DNA_PREDICTION_TABLE + (1,)
DNA_PREDICTION_INDEX: OID = DNA_PREDICTION_ENTRY + (1,)
DNA_PREDICTION_TARGET_TYPE: OID = DNA_PREDICTION_ENTRY + (2,)
DNA_PREDICTION_TARGET: OID = DNA_PREDICTION_ENTRY + (3,)
DNA_PREDICTION_STATUS: OID = DNA_PREDICTION_ENTRY + (4,)
DNA_PREDICTION_RTT: OID = DNA_PREDICTION_ENTRY + (5,)
DNA_PREDICTION_LOW: OID = DNA_PREDICTION_ENTRY + (6,)
DNA_PREDICTION_HIGH: OID = DNA_PREDICTION_ENTRY + (7,)
DNA_PREDICTION_BASIS: OID = DNA_PREDICTION_ENTRY + (8,)
DNA_PREDICTION_SERIES: OID = DNA_PREDICTION_ENTRY + (9,)
DNA_PREDICTION_MEASUREMENTS: OID = DNA_PREDICTION_ENTRY + (10,)
DNA_PREDICTION_TIME: OID = DNA_PREDICTION_ENTRY + (11,)

# accessible-for-notify objects (scalars: varbind instances end in .0)
DNA_NOTIFY_TEST: OID = DNA_NOTIFY_OBJECTS + (1,)
DNA_NOTIFY_MESSAGE: OID = DNA_NOTIFY_OBJECTS + (2,)
DNA_NOTIFY_PREVIOUS_STATUS: OID = DNA_NOTIFY_OBJECTS + (3,)
DNA_NOTIFY_TARGET: OID = DNA_NOTIFY_OBJECTS + (4,)
DNA_NOTIFY_FAULT_LOCATION: OID = DNA_NOTIFY_OBJECTS + (5,)
DNA_NOTIFY_THRESHOLD_DETAIL: OID = DNA_NOTIFY_OBJECTS + (6,)
DNA_NOTIFY_THRESHOLD_VALUE: OID = DNA_NOTIFY_OBJECTS + (7,)
DNA_NOTIFY_THRESHOLD_LIMIT: OID = DNA_NOTIFY_OBJECTS + (8,)
DNA_NOTIFY_SEQUENCE: OID = DNA_NOTIFY_OBJECTS + (9,)
DNA_NOTIFY_DETAILS: OID = DNA_NOTIFY_OBJECTS + (10,)

# NOTIFICATION-TYPEs (the snmpTrapOID.0 values)
DNA_TEST_FAILED: OID = DNA_NOTIFICATIONS + (1,)
DNA_TEST_RECOVERED: OID = DNA_NOTIFICATIONS + (2,)
DNA_FAULT_LOCALIZED: OID = DNA_NOTIFICATIONS + (3,)
DNA_THRESHOLD_CROSSED: OID = DNA_NOTIFICATIONS + (4,)

# Conformance
DNA_COMPLIANCES: OID = DNA_CONFORMANCE + (1,)
DNA_GROUPS: OID = DNA_CONFORMANCE + (2,)
DNA_COMPLIANCE: OID = DNA_COMPLIANCES + (1,)
DNA_INFO_GROUP: OID = DNA_GROUPS + (1,)
DNA_TEST_GROUP: OID = DNA_GROUPS + (2,)
DNA_RESULT_GROUP: OID = DNA_GROUPS + (3,)
DNA_PEER_GROUP: OID = DNA_GROUPS + (4,)
DNA_OVERLAY_GROUP: OID = DNA_GROUPS + (5,)
DNA_CONTROL_GROUP: OID = DNA_GROUPS + (6,)
DNA_NOTIFY_OBJECTS_GROUP: OID = DNA_GROUPS + (7,)
DNA_NOTIFICATION_GROUP: OID = DNA_GROUPS + (8,)
DNA_PREDICTION_GROUP: OID = DNA_GROUPS + (9,)
DNA_PREDICTION_REQUEST_GROUP: OID = DNA_GROUPS + (10,)

# SNMPv2-MIB objects the agent serves or sends
SYSTEM: OID = (1, 3, 6, 1, 2, 1, 1)
SYS_DESCR: OID = SYSTEM + (1,)
SYS_OBJECT_ID: OID = SYSTEM + (2,)
SYS_UP_TIME: OID = SYSTEM + (3,)
SYS_CONTACT: OID = SYSTEM + (4,)
SYS_NAME: OID = SYSTEM + (5,)
SYS_LOCATION: OID = SYSTEM + (6,)
SNMP_TRAP_OID: OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1)

OBJECTS: dict[str, OID] = {
    "dnaAgent": DNA_AGENT,
    "dnaNotifications": DNA_NOTIFICATIONS,
    "dnaObjects": DNA_OBJECTS,
    "dnaConformance": DNA_CONFORMANCE,
    "dnaInfo": DNA_INFO,
    "dnaTests": DNA_TESTS,
    "dnaResults": DNA_RESULTS,
    "dnaPeers": DNA_PEERS,
    "dnaOverlay": DNA_OVERLAY,
    "dnaPredictions": DNA_PREDICTIONS,
    "dnaTraces": DNA_TRACES,
    "dnaNotifyObjects": DNA_NOTIFY_OBJECTS,
    "dnaVersion": DNA_VERSION,
    "dnaNodeId": DNA_NODE_ID,
    "dnaUptime": DNA_UPTIME,
    "dnaOverlaySize": DNA_OVERLAY_SIZE,
    "dnaPeerCount": DNA_PEER_COUNT,
    "dnaRunsCompleted": DNA_RUNS_COMPLETED,
    "dnaTestTable": DNA_TEST_TABLE,
    "dnaTestEntry": DNA_TEST_ENTRY,
    "dnaTestModule": DNA_TEST_MODULE,
    "dnaTestName": DNA_TEST_NAME,
    "dnaTestDescription": DNA_TEST_DESCRIPTION,
    "dnaTestDefault": DNA_TEST_DEFAULT,
    "dnaTestEnabled": DNA_TEST_ENABLED,
    "dnaTestInterval": DNA_TEST_INTERVAL,
    "dnaTestDependencies": DNA_TEST_DEPENDENCIES,
    "dnaTestRun": DNA_TEST_RUN,
    "dnaResultTable": DNA_RESULT_TABLE,
    "dnaResultEntry": DNA_RESULT_ENTRY,
    "dnaResultStatus": DNA_RESULT_STATUS,
    "dnaResultMessage": DNA_RESULT_MESSAGE,
    "dnaResultTime": DNA_RESULT_TIME,
    "dnaResultDuration": DNA_RESULT_DURATION,
    "dnaResultOrigin": DNA_RESULT_ORIGIN,
    "dnaResultCount": DNA_RESULT_COUNT,
    "dnaResultErrors": DNA_RESULT_ERRORS,
    "dnaPeerTable": DNA_PEER_TABLE,
    "dnaPeerEntry": DNA_PEER_ENTRY,
    "dnaPeerIndex": DNA_PEER_INDEX,
    "dnaPeerId": DNA_PEER_ID,
    "dnaPeerAddressType": DNA_PEER_ADDRESS_TYPE,
    "dnaPeerAddress": DNA_PEER_ADDRESS,
    "dnaPeerPort": DNA_PEER_PORT,
    "dnaPeerRtt": DNA_PEER_RTT,
    "dnaPeerLastSeen": DNA_PEER_LAST_SEEN,
    "dnaOverlayMessagesIn": DNA_OVERLAY_MESSAGES_IN,
    "dnaOverlayMessagesOut": DNA_OVERLAY_MESSAGES_OUT,
    "dnaOverlayBytesIn": DNA_OVERLAY_BYTES_IN,
    "dnaOverlayBytesOut": DNA_OVERLAY_BYTES_OUT,
    "dnaOverlayInvalidDropped": DNA_OVERLAY_INVALID_DROPPED,
    "dnaOverlayPeersBanned": DNA_OVERLAY_PEERS_BANNED,
    "dnaOverlayBannedPeers": DNA_OVERLAY_BANNED_PEERS,
    "dnaXbac": DNA_XBAC,
    "dnaXbacRole": DNA_XBAC_ROLE,
    "dnaXbacGroup": DNA_XBAC_GROUP,
    "dnaXbacMembers": DNA_XBAC_MEMBERS,
    "dnaXbacClusters": DNA_XBAC_CLUSTERS,
    "dnaXbacMeasurements": DNA_XBAC_MEASUREMENTS,
    "dnaXbacPredictionsAnswered": DNA_XBAC_PREDICTIONS_ANSWERED,
    "dnaXbacPredictionsUnanswered": DNA_XBAC_PREDICTIONS_UNANSWERED,
    "dnaXbacPredictTarget": DNA_XBAC_PREDICT_TARGET,
    "dnaPredictionTable": DNA_PREDICTION_TABLE,
    "dnaPredictionEntry": DNA_PREDICTION_ENTRY,
    "dnaPredictionIndex": DNA_PREDICTION_INDEX,
    "dnaPredictionTargetType": DNA_PREDICTION_TARGET_TYPE,
    "dnaPredictionTarget": DNA_PREDICTION_TARGET,
    "dnaPredictionStatus": DNA_PREDICTION_STATUS,
    "dnaPredictionRtt": DNA_PREDICTION_RTT,
    "dnaPredictionLow": DNA_PREDICTION_LOW,
    "dnaPredictionHigh": DNA_PREDICTION_HIGH,
    "dnaPredictionBasis": DNA_PREDICTION_BASIS,
    "dnaPredictionSeries": DNA_PREDICTION_SERIES,
    "dnaPredictionMeasurements": DNA_PREDICTION_MEASUREMENTS,
    "dnaPredictionTime": DNA_PREDICTION_TIME,
    "dnaNotifyTest": DNA_NOTIFY_TEST,
    "dnaNotifyMessage": DNA_NOTIFY_MESSAGE,
    "dnaNotifyPreviousStatus": DNA_NOTIFY_PREVIOUS_STATUS,
    "dnaNotifyTarget": DNA_NOTIFY_TARGET,
    "dnaNotifyFaultLocation": DNA_NOTIFY_FAULT_LOCATION,
    "dnaNotifyThresholdDetail": DNA_NOTIFY_THRESHOLD_DETAIL,
    "dnaNotifyThresholdValue": DNA_NOTIFY_THRESHOLD_VALUE,
    "dnaNotifyThresholdLimit": DNA_NOTIFY_THRESHOLD_LIMIT,
    "dnaNotifySequence": DNA_NOTIFY_SEQUENCE,
    "dnaNotifyDetails": DNA_NOTIFY_DETAILS,
    "dnaTestFailed": DNA_TEST_FAILED,
    "dnaTestRecovered": DNA_TEST_RECOVERED,
    "dnaFaultLocalized": DNA_FAULT_LOCALIZED,
    "dnaThresholdCrossed": DNA_THRESHOLD_CROSSED,
    "dnaCompliances": DNA_COMPLIANCES,
    "dnaGroups": DNA_GROUPS,
    "dnaCompliance": DNA_COMPLIANCE,
    "dnaInfoGroup": DNA_INFO_GROUP,
    "dnaTestGroup": DNA_TEST_GROUP,
    "dnaResultGroup": DNA_RESULT_GROUP,
    "dnaPeerGroup": DNA_PEER_GROUP,
    "dnaOverlayGroup": DNA_OVERLAY_GROUP,
    "dnaControlGroup": DNA_CONTROL_GROUP,
    "dnaNotifyObjectsGroup": DNA_NOTIFY_OBJECTS_GROUP,
    "dnaNotificationGroup": DNA_NOTIFICATION_GROUP,
    "dnaPredictionGroup": DNA_PREDICTION_GROUP,
    "dnaPredictionRequestGroup": DNA_PREDICTION_REQUEST_GROUP,
}

# DnaTestStatus values, keyed by dnaagent.mediator.interface.Status values.
STATUS_CODES: dict[str, int] = {"ok": 1, "warning": 2, "error": 3, "skipped": 4}

# dnaTestRun values
RUN_IDLE = 1
RUN_RUN = 2
RUN_RUNNING = 3

# dnaXbacRole values, keyed by the prediction engine's role names
XBAC_ROLES: dict[str, int] = {"none": 1, "member": 2, "backup": 3, "leader": 4}

# dnaPredictionStatus values
PREDICTION_PREDICTED = 1
PREDICTION_NO_BASIS = 2

# TruthValue
TRUE = 1
FALSE = 2

# InetAddressType
INET_UNKNOWN = 0
INET_IPV4 = 1
INET_IPV6 = 2

# SIZE limits of the index strings in the MIB
MODULE_NAME_MAX = 32
TEST_NAME_MAX = 64
DISPLAY_STRING_MAX = 255
NODE_ID_LENGTH = 20

MIB_NAME = "DNA-AGENT-MIB"


def mib_dir() -> str:
    """The directory holding DNA-AGENT-MIB.txt and the IETF MIBs it imports.

    The installed package carries them in ``dnaagent/snmp/mibs``; a source
    checkout has them in ``mibs/`` at the top.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (
        os.path.join(here, "mibs"),
        os.path.join(os.path.dirname(os.path.dirname(here)), "mibs"),
    ):
        if os.path.isfile(os.path.join(candidate, "DNA-AGENT-MIB.txt")):
            return candidate
    raise FileNotFoundError("DNA-AGENT-MIB.txt is not installed with dnaagent")


def string_index(text: str, max_length: int) -> OID | None:
    """The instance sub-identifiers of a variable-length string index.

    Length first, then one sub-identifier per octet (RFC 2578 §7.7). None
    when the UTF-8 form is empty or longer than the MIB allows.
    """
    data = text.encode("utf-8")
    if not 1 <= len(data) <= max_length:
        return None
    return (len(data), *data)


def test_index(module: str, test: str) -> OID | None:
    """The dnaTestTable / dnaResultTable index of ``module.test``, or None."""
    m = string_index(module, MODULE_NAME_MAX)
    t = string_index(test, TEST_NAME_MAX)
    if m is None or t is None:
        return None
    return m + t


def parse_test_index(index: OID) -> tuple[str, str] | None:
    """The (module, test) names of a test-table index, or None if malformed."""
    try:
        names = []
        rest = index
        for limit in (MODULE_NAME_MAX, TEST_NAME_MAX):
            n = rest[0]
            if not 1 <= n <= limit or len(rest) < n + 1:
                return None
            octets = rest[1 : n + 1]
            if any(not 0 <= x <= 255 for x in octets):
                return None
            names.append(bytes(octets).decode("utf-8"))
            rest = rest[n + 1 :]
    except (IndexError, UnicodeDecodeError):
        return None
    if rest:
        return None
    return names[0], names[1]


def display_string(text: str, limit: int = DISPLAY_STRING_MAX) -> bytes:
    """UTF-8 text cut to at most ``limit`` octets without splitting a character."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")


def date_and_time(epoch: float) -> bytes:
    """A DateAndTime (RFC 2579) of a POSIX time, 11 octets, in UTC."""
    t = datetime.datetime.fromtimestamp(max(0.0, epoch), tz=datetime.UTC)
    return bytes(
        [
            t.year >> 8,
            t.year & 0xFF,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            t.microsecond // 100_000,
            ord("+"),
            0,
            0,
        ]
    )


def inet_address(host: str) -> tuple[int, bytes]:
    """(InetAddressType, InetAddress) of an address literal; unknown(0) otherwise."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return INET_UNKNOWN, b""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return INET_IPV4, addr.ipv4_mapped.packed
    return (INET_IPV4 if addr.version == 4 else INET_IPV6), addr.packed


def dependencies_text(names: Iterable[str]) -> str:
    """The dnaTestDependencies form of a dependency list."""
    return ",".join(names)
