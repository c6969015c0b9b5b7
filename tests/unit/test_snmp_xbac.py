"""The MIB's prediction subtree: scalars, the table of recent answers, asking by SET."""

from __future__ import annotations

from twisted.internet import task

from dnaagent.snmp import mib
from dnaagent.snmp.tree import MibTree, Value
from dnaagent.snmp.writable import (
    NO_CREATION,
    NO_ERROR,
    RESOURCE_UNAVAILABLE,
    WRONG_LENGTH,
    WRONG_TYPE,
    WRONG_VALUE,
)
from dnaagent.snmp.xbac_mib import TARGET_INSTANCE, PredictTargetHandler, update_predictions
from dnaagent.xbac.service import XbacService
from dnaagent.xbac.settings import XbacSection


class Agent:
    """The attributes the MIB code reads."""

    def __init__(self, xbac) -> None:
        self.xbac = xbac


def service() -> XbacService:
    """A prediction service on a fake clock, a group of one."""
    clock = task.Clock()
    clock.advance(1_700_000_000)
    return XbacService(XbacSection(horizon=0.0), clock)


def test_scalars_follow_the_service() -> None:
    """Role, members and counters are written; the request scalar starts empty."""
    xbac = service()
    tree = MibTree()
    xbac.add_measurement("192.0.2.7", [10.0, 11.0])
    update_predictions(tree, Agent(xbac))
    assert tree.get(mib.DNA_XBAC_ROLE + (0,)) == Value.integer(mib.XBAC_ROLES["leader"])
    assert tree.get(mib.DNA_XBAC_MEMBERS + (0,)) == Value.gauge32(1)
    assert tree.get(mib.DNA_XBAC_MEASUREMENTS + (0,)) == Value.counter64(2)
    assert tree.get(mib.DNA_XBAC_PREDICTIONS_ANSWERED + (0,)) == Value.counter64(0)
    assert tree.get(TARGET_INSTANCE) == Value.octets(b"")


def test_set_asks_and_the_answer_becomes_a_row() -> None:
    """SET of an address: a noBasis row first, then a predicted row with µs values."""
    xbac = service()
    tree = MibTree()
    agent = Agent(xbac)
    update_predictions(tree, agent)
    h = PredictTargetHandler(agent, tree)
    v = Value.octets(b"192.0.2.7")
    assert h.test(TARGET_INSTANCE, v) == NO_ERROR
    assert h.commit(TARGET_INSTANCE, v) == NO_ERROR
    assert tree.get(TARGET_INSTANCE) == v
    assert tree.get(mib.DNA_PREDICTION_STATUS + (1,)) == Value.integer(mib.PREDICTION_NO_BASIS)
    assert tree.get(mib.DNA_PREDICTION_TARGET + (1,)) == Value.octets(bytes([192, 0, 2, 7]))
    assert tree.get(mib.DNA_PREDICTION_RTT + (1,)) == Value.gauge32(0)
    xbac.add_measurement("192.0.2.7", [20.0] * 12)
    assert h.commit(TARGET_INSTANCE, v) == NO_ERROR
    assert tree.get(mib.DNA_PREDICTION_STATUS + (2,)) == Value.integer(mib.PREDICTION_PREDICTED)
    assert tree.get(mib.DNA_PREDICTION_RTT + (2,)) == Value.gauge32(20_000)
    assert tree.get(mib.DNA_PREDICTION_BASIS + (2,)) == Value.octets(b"series")
    assert tree.get(mib.DNA_PREDICTION_MEASUREMENTS + (2,)) == Value.gauge32(12)
    assert tree.get(mib.DNA_XBAC_PREDICTIONS_ANSWERED + (0,)) == Value.counter64(1)
    assert tree.get(mib.DNA_XBAC_PREDICTIONS_UNANSWERED + (0,)) == Value.counter64(1)


def test_bad_sets_are_refused_without_side_effects() -> None:
    """Wrong instance, type, length or address: the matching error, nothing asked."""
    xbac = service()
    tree = MibTree()
    h = PredictTargetHandler(Agent(xbac), tree)
    assert h.test(mib.DNA_XBAC_PREDICT_TARGET + (1,), Value.octets(b"192.0.2.1")) == NO_CREATION
    assert h.test(TARGET_INSTANCE, Value.integer(1)) == WRONG_TYPE
    assert h.test(TARGET_INSTANCE, Value.octets(b"1" * 65)) == WRONG_LENGTH
    for bad in (b"not-an-address", b"224.0.0.1", b"\xff\xfe", b""):
        assert h.test(TARGET_INSTANCE, Value.octets(bad)) == WRONG_VALUE
    assert h.test(TARGET_INSTANCE, Value.octets(b"192.0.2.1")) == NO_ERROR
    assert h.asked == 0 and not xbac.recent
    off = PredictTargetHandler(Agent(None), tree)
    assert off.test(TARGET_INSTANCE, Value.octets(b"192.0.2.1")) == RESOURCE_UNAVAILABLE


def test_undo_restores_the_previous_address() -> None:
    """Undo puts the address written before back (the prediction stays asked)."""
    xbac = service()
    tree = MibTree()
    agent = Agent(xbac)
    update_predictions(tree, agent)
    h = PredictTargetHandler(agent, tree)
    h.commit(TARGET_INSTANCE, Value.octets(b"2001:db8::1"))
    assert tree.get(mib.DNA_PREDICTION_TARGET_TYPE + (1,)) == Value.integer(mib.INET_IPV6)
    h.undo(TARGET_INSTANCE, Value.octets(b"2001:db8::1"))
    assert tree.get(TARGET_INSTANCE) == Value.octets(b"")


def test_service_off_empties_the_subtree() -> None:
    """Without the service the subtree is empty."""
    tree = MibTree()
    tree.set(mib.DNA_XBAC_ROLE + (0,), Value.integer(4))
    update_predictions(tree, Agent(None))
    assert list(tree.walk(mib.DNA_PREDICTIONS)) == []
