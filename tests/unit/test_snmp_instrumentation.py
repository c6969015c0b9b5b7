"""MibUpdater, the dnaTestRun handler and the tree instrumentation, with a fake agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi import error as smi_error
from twisted.internet import task

from dnaagent.mediator.interface import Outcome, TestSpec
from dnaagent.mediator.mediator import Mediator
from dnaagent.mediator.store import ResultsStore
from dnaagent.snmp import mib
from dnaagent.snmp.embedded import SystemGroup, TreeInstrumController
from dnaagent.snmp.instrumentation import MibUpdater, estimate_overlay_size, peer_rows
from dnaagent.snmp.tree import MibTree, Value
from dnaagent.snmp.writable import (
    NO_CREATION,
    NO_ERROR,
    WRONG_TYPE,
    WRONG_VALUE,
    RunTestHandler,
    Writables,
)
from tests.fakes.modules import ScriptedModule, pending

START = 1_700_000_000.0


class FakeOverlay:
    """The attributes of OverlayNode the updater reads."""

    node_id = bytes([0x80]) + bytes(19)

    def __init__(self) -> None:
        self.counters = {
            "messages_in": 10,
            "messages_out": 9,
            "bytes_in": 1000,
            "bytes_out": 900,
            "dropped_bad_signature": 2,
            "dropped_replay": 1,
            "bans_total": 4,
            "banned_peers": 1,
        }

    def peers(self) -> list[dict[str, Any]]:
        return [
            {
                "node_id": "81" + "00" * 19,
                "host": "192.0.2.1",
                "port": 4001,
                "rtt_ms": 1.5,
                "last_seen_s": 3.0,
            },
            {
                "id": bytes([0x90]) + bytes(19),
                "address": ("2001:db8::1", 4002),
                "rtt": 0.02,
                "last_seen": START - 60,
            },
            {"node_id": "not hex", "host": "192.0.2.9"},
        ]


class FakeScheduler:
    """A scheduler running the demo module every 300 s."""

    modules = ["demo"]
    interval = 300.0


class FakeAgent:
    """The AgentService attributes the SNMP side reads."""

    def __init__(self, clock: task.Clock, store: ResultsStore, module: ScriptedModule) -> None:
        self.reactor = clock
        self.store = store
        self.mediator = Mediator(clock, store)
        self.mediator.register(module)
        self.scheduler: Any = None
        self.started_at = START
        self.overlay: Any = None


def demo_module() -> ScriptedModule:
    """Two tests, one failing, one optional that waits until fired."""
    return ScriptedModule(
        [
            TestSpec("NIC", "the card is up"),
            TestSpec("Gateway", "the gateway answers", ("NIC",)),
            TestSpec("Slow", "takes its time", default=False),
        ],
        {"Gateway": Outcome.error("no answer"), "Slow": pending()},
        name="demo",
    )


@pytest.fixture
def clock() -> task.Clock:
    """A clock at a fixed POSIX time."""
    c = task.Clock()
    c.advance(START)
    return c


@pytest.fixture
def agent(clock: task.Clock, tmp_path: Path) -> FakeAgent:
    """A fake agent with a real Mediator and results store."""
    store = ResultsStore(tmp_path / "results.sqlite")
    return FakeAgent(clock, store, demo_module())


def idx(module: str, test: str) -> tuple[int, ...]:
    """The table index of module.test."""
    index = mib.test_index(module, test)
    assert index is not None
    return index


def test_tables_follow_results_and_schedule(agent: FakeAgent, clock: task.Clock) -> None:
    """Test rows exist at start; result rows appear with each result, counted."""
    tree = MibTree()
    agent.scheduler = FakeScheduler()
    updater = MibUpdater(tree, agent, clock, interval=5)
    updater.start()
    nic = idx("demo", "NIC")
    assert tree.get(mib.DNA_TEST_DESCRIPTION + nic) == Value.octets("the card is up")
    assert tree.get(mib.DNA_TEST_ENABLED + nic) == Value.integer(mib.TRUE)
    assert tree.get(mib.DNA_TEST_INTERVAL + nic) == Value.gauge32(300)
    slow = idx("demo", "Slow")
    assert tree.get(mib.DNA_TEST_ENABLED + slow) == Value.integer(mib.FALSE)
    assert tree.get(mib.DNA_TEST_INTERVAL + slow) == Value.gauge32(0)
    assert tree.get(mib.DNA_TEST_DEPENDENCIES + idx("demo", "Gateway")) == Value.octets("NIC")
    assert tree.get(mib.DNA_RESULT_STATUS + nic) is None

    clock.advance(1)
    agent.mediator.run("demo")
    agent.mediator.run("demo")
    gw = idx("demo", "Gateway")
    assert tree.get(mib.DNA_RESULT_STATUS + gw) == Value.integer(3)
    assert tree.get(mib.DNA_RESULT_MESSAGE + gw) == Value.octets("no answer")
    assert tree.get(mib.DNA_RESULT_COUNT + gw) == Value.counter32(2)
    assert tree.get(mib.DNA_RESULT_ERRORS + gw) == Value.counter32(2)
    assert tree.get(mib.DNA_RESULT_ERRORS + nic) == Value.counter32(0)
    assert tree.get(mib.DNA_RESULT_TIME + nic) == Value.octets(mib.date_and_time(START + 1))
    clock.advance(5)  # runs are counted after their last result: the refresh shows them
    assert tree.get(mib.DNA_RUNS_COMPLETED + (0,)) == Value.counter32(2)
    updater.stop()


def test_info_overlay_and_peers(agent: FakeAgent, clock: task.Clock) -> None:
    """Uptime, node ID, counters and peer rows come from the overlay; refresh keeps going."""
    tree = MibTree()
    agent.overlay = FakeOverlay()
    updater = MibUpdater(tree, agent, clock, interval=5)
    updater.start()
    clock.advance(10)
    assert tree.get(mib.DNA_UPTIME + (0,)) == Value.timeticks(10)
    assert tree.get(mib.DNA_NODE_ID + (0,)) == Value.octets(FakeOverlay.node_id)
    assert tree.get(mib.DNA_PEER_COUNT + (0,)) == Value.gauge32(3)
    assert tree.get(mib.DNA_OVERLAY_INVALID_DROPPED + (0,)) == Value.counter64(3)
    assert tree.get(mib.DNA_OVERLAY_PEERS_BANNED + (0,)) == Value.counter64(4)
    assert tree.get(mib.DNA_OVERLAY_BANNED_PEERS + (0,)) == Value.gauge32(1)
    assert tree.get(mib.DNA_PEER_ADDRESS_TYPE + (1,)) == Value.integer(mib.INET_IPV4)
    assert tree.get(mib.DNA_PEER_ADDRESS + (1,)) == Value.octets(bytes([192, 0, 2, 1]))
    assert tree.get(mib.DNA_PEER_RTT + (1,)) == Value.gauge32(1500)
    assert tree.get(mib.DNA_PEER_ADDRESS_TYPE + (2,)) == Value.integer(mib.INET_IPV6)
    assert tree.get(mib.DNA_PEER_PORT + (2,)) == Value.gauge32(4002)
    assert tree.get(mib.DNA_PEER_RTT + (2,)) == Value.gauge32(20000)
    assert tree.get(mib.DNA_PEER_LAST_SEEN + (2,)) == Value.octets(mib.date_and_time(START - 60))
    assert tree.get(mib.DNA_PEER_ID + (3,)) is None  # the peer without a valid ID

    agent.overlay.peers = lambda: 1 / 0  # a broken part is logged, the others go on
    refreshes = updater.refreshes
    clock.advance(5)
    assert updater.refreshes == refreshes + 1
    assert updater.failures >= 1
    assert tree.get(mib.DNA_UPTIME + (0,)) == Value.timeticks(10)  # _info also needs peers()
    updater.stop()


def test_overlay_absent_leaves_rows_empty(agent: FakeAgent, clock: task.Clock) -> None:
    """Without an overlay the node ID is zeros and peers and counters are empty/zero."""
    tree = MibTree()
    MibUpdater(tree, agent, clock).refresh()
    assert tree.get(mib.DNA_NODE_ID + (0,)) == Value.octets(bytes(20))
    assert list(tree.walk(mib.DNA_PEER_TABLE)) == []
    assert tree.get(mib.DNA_OVERLAY_MESSAGES_IN + (0,)) == Value.counter64(0)


def test_overlay_size_estimate() -> None:
    """Evenly spread IDs around ours give about the real number of nodes."""
    own = bytes(20)
    n = 1000
    ids = [((2**160 // n) * i).to_bytes(20, "big") for i in range(1, 9)]
    assert 900 <= estimate_overlay_size(own, ids) <= 1100
    assert estimate_overlay_size(own, []) == 0
    assert peer_rows([{"node_id": "zz"}], 0.0) == {}


def test_run_handler_phases(agent: FakeAgent, clock: task.Clock) -> None:
    """test() checks row, type and value; commit() runs it; running(3) until it ends."""
    tree = MibTree()
    MibUpdater(tree, agent, clock).start()
    handler = RunTestHandler(agent, tree)
    slow = mib.DNA_TEST_RUN + idx("demo", "Slow")
    assert handler.test(slow, Value.integer(2)) == NO_ERROR
    assert handler.test(slow, Value.octets("2")) == WRONG_TYPE
    assert handler.test(slow, Value.integer(1)) == WRONG_VALUE
    assert handler.test(mib.DNA_TEST_RUN + idx("demo", "Nope"), Value.integer(2)) == NO_CREATION
    assert handler.test(mib.DNA_TEST_RUN + (200, 1), Value.integer(2)) == NO_CREATION
    assert handler.commit(slow, Value.integer(2)) == NO_ERROR
    assert tree.get(slow) == Value.integer(mib.RUN_RUNNING)
    assert [r.origin for r in agent.mediator.active] == ["snmp"]
    clock.advance(agent.mediator.default_timeout + 1)  # the pending test times out
    assert tree.get(slow) == Value.integer(mib.RUN_IDLE)
    assert tree.get(mib.DNA_RESULT_STATUS + idx("demo", "Slow")) == Value.integer(3)


def _controller(tree: MibTree, writables: Writables | None = None) -> TreeInstrumController:
    return TreeInstrumController(
        tree, SystemGroup(lambda: 12.5, name="h1"), writables or Writables()
    )


def test_controller_reads_through_the_view_check() -> None:
    """GET/GETNEXT honour acFun: not-in-view OIDs are hidden, system group served."""
    tree = MibTree()
    tree.set(mib.DNA_VERSION + (0,), Value.octets("9"))
    tree.set(mib.DNA_PEER_COUNT + (0,), Value.gauge32(1))
    hidden = mib.DNA_VERSION + (0,)

    def ac(view: str, varbind: Any, **ctx: Any) -> bool:
        return tuple(varbind[0]) == hidden

    c = _controller(tree)
    got = c.read_variables(
        (hidden, None), (mib.SYS_UP_TIME + (0,), None), (mib.SYS_NAME + (0,), None), acFun=ac
    )
    assert got[0][1] is rfc1905.noSuchObject
    assert int(got[1][1]) == 1250
    assert bytes(got[2][1]) == b"h1"
    nxt = c.read_next_variables((mib.DNA_INFO, None), (mib.DNA_PEER_COUNT + (0,), None), acFun=ac)
    assert tuple(nxt[0][0]) == mib.DNA_PEER_COUNT + (0,)  # dnaVersion skipped
    assert nxt[1][1] is rfc1905.endOfMibView


def test_controller_writes_through_handlers() -> None:
    """SET: view check, handler lookup, type conversion, test then commit."""
    tree = MibTree()
    tree.set(mib.DNA_PEER_COUNT + (0,), Value.gauge32(1))
    seen: list[tuple[str, Value]] = []

    class Handler:
        def test(self, oid: Any, value: Value) -> int:
            seen.append(("test", value))
            return NO_ERROR if value.value == 2 else WRONG_VALUE

        def commit(self, oid: Any, value: Value) -> int:
            seen.append(("commit", value))
            return NO_ERROR

        def undo(self, oid: Any, value: Value) -> None:
            seen.append(("undo", value))

    writables = Writables()
    writables.register(mib.DNA_TEST_RUN, Handler())
    c = _controller(tree, writables)
    target = mib.DNA_TEST_RUN + (1, 65, 1, 66)
    allow = lambda *a, **k: False  # noqa: E731
    c.write_variables((target, rfc1902.Integer32(2)), acFun=allow)
    assert seen == [("test", Value.integer(2)), ("commit", Value.integer(2))]
    with pytest.raises(smi_error.WrongValueError):
        c.write_variables((target, rfc1902.Integer32(3)), acFun=allow)
    with pytest.raises(smi_error.NotWritableError):
        c.write_variables((mib.DNA_PEER_COUNT + (0,), rfc1902.Gauge32(3)), acFun=allow)
    with pytest.raises(smi_error.NoAccessError):
        c.write_variables((target, rfc1902.Integer32(2)), acFun=lambda *a, **k: True)
    with pytest.raises(smi_error.NoAccessError):
        c.write_variables((target, rfc1902.Integer32(2)))  # no access check: no write
