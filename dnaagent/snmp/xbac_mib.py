"""The prediction subtree of DNA-AGENT-MIB (dnaPredictions): updater and write handler.

* :func:`update_predictions` writes the dnaXbac scalars (role, group, members,
  clusters, measurements, predictions answered and unanswered) and the
  dnaPredictionTable of recent answers from the agent's
  :class:`~dnaagent.xbac.service.XbacService`; the periodic MIB refresh calls
  it, and so does every prediction asked through SNMP.
* :class:`PredictTargetHandler` serves ``SET dnaXbacPredictTarget.0 = "ADDRESS"``:
  the test phase checks the address, the commit asks the service for a
  prediction; its answer becomes the newest row of dnaPredictionTable.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from dnaagent.snmp import mib
from dnaagent.snmp.tree import OID, Kind, MibTree, Value
from dnaagent.snmp.writable import (
    COMMIT_FAILED,
    NO_CREATION,
    NO_ERROR,
    RESOURCE_UNAVAILABLE,
    WRONG_LENGTH,
    WRONG_TYPE,
    WRONG_VALUE,
)

#: SIZE of dnaXbacPredictTarget.
TARGET_MAX = 64
U32_MAX = 0xFFFFFFFF

TARGET_INSTANCE: OID = mib.DNA_XBAC_PREDICT_TARGET + (0,)


def _micros(seconds: float) -> int:
    return max(0, min(U32_MAX, round(seconds * 1e6)))


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(0, value)


def prediction_rows(answers: Any) -> dict[OID, Value]:
    """dnaPredictionTable rows of the service's recent answers."""
    rows: dict[OID, Value] = {}
    for a in answers:
        index: OID = (a.index,)
        kind, raw = mib.inet_address(a.target)
        p = a.prediction
        rows[mib.DNA_PREDICTION_TARGET_TYPE + index] = Value.integer(kind)
        rows[mib.DNA_PREDICTION_TARGET + index] = Value.octets(raw)
        rows[mib.DNA_PREDICTION_STATUS + index] = Value.integer(
            mib.PREDICTION_PREDICTED if p is not None else mib.PREDICTION_NO_BASIS
        )
        rows[mib.DNA_PREDICTION_RTT + index] = Value.gauge32(_micros(p.value) if p else 0)
        rows[mib.DNA_PREDICTION_LOW + index] = Value.gauge32(_micros(p.low) if p else 0)
        rows[mib.DNA_PREDICTION_HIGH + index] = Value.gauge32(_micros(p.high) if p else 0)
        rows[mib.DNA_PREDICTION_BASIS + index] = Value.octets(
            mib.display_string(p.source) if p else b""
        )
        rows[mib.DNA_PREDICTION_SERIES + index] = Value.gauge32(
            min(_count(p.series), U32_MAX) if p else 0
        )
        rows[mib.DNA_PREDICTION_MEASUREMENTS + index] = Value.gauge32(
            min(_count(p.samples), U32_MAX) if p else 0
        )
        rows[mib.DNA_PREDICTION_TIME + index] = Value.octets(mib.date_and_time(a.time))
    return rows


def update_predictions(tree: MibTree, agent: Any) -> None:
    """Rewrite the dnaPredictions subtree from ``agent.xbac`` (empty when it is off)."""
    xbac = getattr(agent, "xbac", None)
    if xbac is None:
        tree.replace_subtree(mib.DNA_PREDICTIONS, {})
        return
    st = xbac.status()
    target = tree.get(TARGET_INSTANCE)
    values: dict[OID, Value] = {
        mib.DNA_XBAC_ROLE + (0,): Value.integer(mib.XBAC_ROLES.get(str(st["role"]), 1)),
        mib.DNA_XBAC_GROUP + (0,): Value.octets(mib.display_string(st["group"])),
        mib.DNA_XBAC_MEMBERS + (0,): Value.gauge32(min(_count(st["members"]), U32_MAX)),
        mib.DNA_XBAC_CLUSTERS + (0,): Value.gauge32(min(_count(st["clusters"]), U32_MAX)),
        mib.DNA_XBAC_MEASUREMENTS + (0,): Value.counter64(_count(st["measurements"])),
        mib.DNA_XBAC_PREDICTIONS_ANSWERED + (0,): Value.counter64(
            _count(st["predictions_answered"])
        ),
        mib.DNA_XBAC_PREDICTIONS_UNANSWERED + (0,): Value.counter64(
            _count(st["predictions_unanswered"])
        ),
        TARGET_INSTANCE: target if target is not None else Value.octets(b""),
    }
    values.update(prediction_rows(xbac.recent))
    tree.replace_subtree(mib.DNA_PREDICTIONS, values)


class PredictTargetHandler:
    """``dnaXbacPredictTarget.0 = "ADDRESS"``: ask the prediction service.

    test: the instance must be ``.0`` (noCreation), the value an OCTET STRING
    (wrongType) of at most 64 octets (wrongLength) holding a host address
    (wrongValue); the service must run (resourceUnavailable). commit: remember
    the address, ask for the prediction and refresh the subtree when it answers.
    A prediction cannot be taken back: undo only restores the previous address.
    """

    log = Logger()

    def __init__(self, agent: Any, tree: MibTree) -> None:
        self.agent = agent
        self.tree = tree
        self.asked = 0
        self._previous: Value | None = None

    def _address(self, value: Value) -> str | None:
        from dnaagent.xbac.service import XbacInputError, normalize_address

        try:
            text = bytes(value.value).decode("ascii")
            return normalize_address(text)
        except (UnicodeDecodeError, XbacInputError, TypeError, ValueError):
            return None

    def test(self, oid: OID, value: Value) -> int:
        """Check instance, type, length, address and that the service runs."""
        if oid != TARGET_INSTANCE:
            return NO_CREATION
        if value.kind is not Kind.OCTETS:
            return WRONG_TYPE
        if len(value.value) > TARGET_MAX:
            return WRONG_LENGTH
        if self._address(value) is None:
            return WRONG_VALUE
        if getattr(self.agent, "xbac", None) is None:
            return RESOURCE_UNAVAILABLE
        return NO_ERROR

    def commit(self, oid: OID, value: Value) -> int:
        """Ask for the prediction; the answer lands in dnaPredictionTable."""
        address = self._address(value)
        xbac = getattr(self.agent, "xbac", None)
        if address is None or xbac is None:
            return COMMIT_FAILED
        self._previous = self.tree.get(TARGET_INSTANCE)
        self.tree.set(TARGET_INSTANCE, Value.octets(address.encode("ascii")))
        try:
            d = xbac.predict_rtt(address)
        except Exception:
            self.log.failure("prediction to {a} asked by SNMP failed", a=address)
            return COMMIT_FAILED
        self.asked += 1
        d.addCallback(lambda _: update_predictions(self.tree, self.agent))
        d.addErrback(lambda f: self.log.failure("prediction to {a} failed", f, a=address))
        return NO_ERROR

    def undo(self, oid: OID, value: Value) -> None:
        """Restore the previous address (the prediction itself goes on)."""
        if self._previous is not None:
            self.tree.set(TARGET_INSTANCE, self._previous)
