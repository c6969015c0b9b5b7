"""The pure diagnosis of DistributedPing and the location of a broken link."""

from __future__ import annotations

from dnaagent.mediator.interface import Status, TestResult
from dnaagent.mediator.triggers import Triggers
from dnaagent.modules.distributed import events
from dnaagent.modules.distributed.diagnosis import (
    HOST_DOWN,
    INCONCLUSIVE,
    LOCAL_PROBLEM,
    PATH_PROBLEM,
    REACHABLE,
    PeerView,
    diagnose_ping,
    locate,
)

T = "203.0.113.10"
FAIL = {"target": T, "sent": 3, "received": 0, "rtt_ms": [], "error": "no reply"}
OK = {"target": T, "sent": 1, "received": 1, "rtt_ms": [0.4], "error": None}


def test_reachable_from_here() -> None:
    """A host that answers here is reachable, whatever the peers say."""
    d = diagnose_ping(T, OK, [PeerView("b", True, 1.0)])
    assert (d.verdict, d.status) == (REACHABLE, Status.OK)
    assert "answers from here in 0.4 ms; 1 of 1 peers reach it" in d.message


def test_host_down() -> None:
    """Nobody reaches the host, but the peers answer us: the host is down."""
    d = diagnose_ping(T, FAIL, [PeerView("b", False), PeerView("c", False), PeerView("d", None)])
    assert (d.verdict, d.status, d.location) == (HOST_DOWN, Status.ERROR, T)
    assert d.message.startswith(f"{T} looks down") and "2 peers" in d.message


def test_local_problem() -> None:
    """Neither the host nor any peer answers: the problem is here."""
    d = diagnose_ping(T, FAIL, [PeerView("b", None, error="timeout")])
    assert d.verdict == LOCAL_PROBLEM and d.message.startswith("local problem")


def test_no_peer_is_inconclusive() -> None:
    """Without peers nothing can be told apart."""
    assert diagnose_ping(T, FAIL, []).verdict == INCONCLUSIVE


def test_path_problem_names_the_link() -> None:
    """The last hop of the failing path that a working path shares gives the broken link."""
    own = ("192.0.2.1", "198.51.100.1", None)
    working = [("198.51.100.129", "198.51.100.1", "198.51.100.65", T)]
    views = [PeerView("b", True, 1.0, path=working[0], path_reached=True), PeerView("c", False)]
    d = diagnose_ping(T, FAIL, views, own)
    assert d.verdict == PATH_PROBLEM
    assert d.location is not None and d.location.startswith(
        "between 198.51.100.1 and 198.51.100.65"
    )
    assert "1 of 2 peers reach it" in d.message and "between you and the host" in d.message
    assert d.evidence["last_hop"] == "198.51.100.1" and d.evidence["next_hop"] == "198.51.100.65"


def test_locate_when_paths_do_not_meet() -> None:
    """When the failing path shares no hop, the link after its last answering hop is named."""
    text, found = locate(T, ("192.0.2.1", None, None), [("198.51.100.1", T)])
    assert text.startswith("after 192.0.2.1 (hop 1 from here)")
    assert found["last_hop"] == "192.0.2.1"
    text, found = locate(T, (None, None), [])
    assert "first hop" in text and found["last_hop"] is None


def result(status: Status, **details) -> TestResult:
    """A DistributedPing result."""
    return TestResult("distributed", "DistributedPing", status, "m", details, 0.0, 1.0)


def test_fault_localized_event() -> None:
    """A new location fires fault-localized once, with target and location."""
    triggers = Triggers()
    events.install(triggers)
    events.install(triggers)
    seen = []
    triggers.subscribe(seen.append)
    bad = result(Status.ERROR, target=T, location="after 192.0.2.1")
    triggers.feed(None, bad)
    triggers.feed(bad, result(Status.ERROR, target=T, location="after 192.0.2.1"))
    kinds = [e.kind for e in seen]
    assert kinds.count("fault-localized") == 1 and kinds.count("test-failed") == 1
    event = next(e for e in seen if e.kind == "fault-localized")
    assert event.details == {"target": T, "location": "after 192.0.2.1"}
    assert events.FaultLocalized().evaluate(None, result(Status.OK, target=T)) is None


def test_locate_counts_a_repeated_router_once() -> None:
    """A router answering both time-exceeded and unreachable is named at its first hop."""
    text, found = locate(T, ("192.0.2.1", "192.0.2.1"), [("198.51.100.1", T)])
    assert text.startswith("after 192.0.2.1 (hop 1 from here)") and found["last_hop_ttl"] == 1
