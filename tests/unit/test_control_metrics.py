"""The OpenMetrics collector against a real agent service, overlay node and queue."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus
from twisted.internet import task

from dnaagent import __version__, config
from dnaagent.control.metrics import AgentCollector, make_registry
from dnaagent.mediator.interface import Outcome
from dnaagent.service import AgentService
from tests.fakes.modules import ScriptedModule, paper_like_specs
from tests.unit.test_notify_service import FakeSender
from tests.unit.test_overlay_node import Net

TRAP_SINK = "v2c:public@192.0.2.5:162"  # never reached: the sender is a fake


def samples(text: str, openmetrics: bool = False) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition as {(name, sorted labels): value}."""
    parse = parse_openmetrics if openmetrics else parse_prometheus
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parse(text)
        for s in family.samples
    }


def key(module: str, test: str) -> tuple:
    """The label tuple of one test."""
    return (("module", module), ("test", test))


@pytest.fixture
def clock():
    """A clock at a plausible POSIX time."""
    c = task.Clock()
    c.advance(1_700_000_000)
    return c


@pytest.fixture
def agent(tmp_path, clock):
    """An AgentService with a scripted module, a trap sink with a fake sender, no sockets."""
    cfg = config.load(
        None,
        {
            "agent.state_dir": str(tmp_path / "state"),
            "control.enabled": "false",
            "overlay.enabled": "false",
            "snmp.enabled": "false",
            "notifications.trap_sinks": TRAP_SINK,
        },
    )
    module = ScriptedModule(paper_like_specs(), {"Link": Outcome.error("no carrier")})
    svc = AgentService(cfg, clock, modules=[module])
    svc.prepare()
    assert svc.notifications is not None
    svc.notifications._sender = FakeSender()
    svc.startService()
    svc.started_at = clock.seconds() - 125.0
    yield svc
    svc.stopService()


def run_fake(agent: AgentService, clock: task.Clock) -> None:
    """Run the scripted module once and let its results land."""
    assert agent.mediator is not None
    done: list = []
    agent.mediator.run("fake", None, {}, origin="control").addBoth(done.append)
    for _ in range(20):
        clock.advance(0.1)
    assert done and isinstance(done[0], list), done


def test_figures_equal_the_agent_state(agent, clock) -> None:
    """Uptime, runs, per-test status, durations and counts equal the agent's own figures."""
    run_fake(agent, clock)
    run_fake(agent, clock)
    text = generate_latest(make_registry(agent)).decode()
    got = samples(text)
    assert got[("dnaagent_uptime_seconds", ())] == pytest.approx(125.0 + 4.0, abs=0.01)
    assert got[("dnaagent_module_runs_completed_total", ())] == agent.mediator.runs_completed == 2
    assert got[("dnaagent_results_stored", ())] == agent.store.count() == 10
    counters = agent.store.counters()
    for r in agent.mediator.latest():
        k = key(r.module, r.test)
        assert got[("dnaagent_test_results_total", k)] == counters[(r.module, r.test)][0]
        assert got[("dnaagent_test_errors_total", k)] == counters[(r.module, r.test)][1]
        assert got[("dnaagent_test_last_duration_seconds", k)] == pytest.approx(r.duration)
        assert got[("dnaagent_test_last_run_timestamp_seconds", k)] == pytest.approx(r.started)
        for status in ("ok", "warning", "error", "skipped"):
            state = (("dnaagent_test_status", status), *k)
            assert got[("dnaagent_test_status", tuple(sorted(state)))] == (
                1.0 if r.status.value == status else 0.0
            )
    assert got[("dnaagent_test_status_code", key("fake", "Link"))] == 3
    assert got[("dnaagent_test_status_code", key("fake", "NIC"))] == 1
    assert got[("dnaagent_test_status_code", key("fake", "Address"))] == 4
    assert got[("dnaagent_test_errors_total", key("fake", "Link"))] == 2
    # The test table lists every test, run or not.
    assert got[("dnaagent_test_default", key("fake", "Extra"))] == 0
    assert got[("dnaagent_test_running", key("fake", "NIC"))] == 0
    assert got[("dnaagent_overlay_enabled", ())] == 0
    assert got[("dnaagent_metrics_collect_errors_total", ())] == 0
    info = [k for k in got if k[0] == "dnaagent_agent_info"]
    assert dict(info[0][1]) == {"version": __version__}


def test_notification_queue_figures(agent, clock) -> None:
    """Pending and queued notifications per target come from the persisted queue."""
    run_fake(agent, clock)  # Link fails: one test-failed event, one trap queued
    service = agent.notifications
    got = samples(generate_latest(make_registry(agent)).decode())
    target = (("target", service.targets[next(iter(service.targets))].key),)
    counters = service.queue.counters()[target[0][1]]
    assert counters["queued"] >= 1
    assert got[("dnaagent_notifications_queued_total", target)] == counters["queued"]
    assert got[("dnaagent_notifications_pending", target)] == service.queue.pending(target[0][1])
    assert got[("dnaagent_notifications_dropped_total", target)] == counters["dropped"]
    assert got[("dnaagent_notification_events_seen_total", ())] == service.events_seen >= 1


def test_overlay_figures_equal_the_node(agent) -> None:
    """Overlay counters, peers and drops per reason equal a real overlay node's."""
    net = Net(3)
    net.join_all()
    node = net.nodes[0]
    net.result(node.ping(net.addr(net.nodes[1])))  # one peer with a measured RTT
    node.datagramReceived(b"\x00garbage", ("192.0.2.77", 4001))  # dropped and counted
    agent.overlay = node
    got = samples(generate_latest(make_registry(agent)).decode())
    c = node.counters
    assert got[("dnaagent_overlay_enabled", ())] == 1
    assert got[("dnaagent_overlay_peers", ())] == len(node.peers()) == 2
    assert got[("dnaagent_overlay_messages_received_total", ())] == c["messages_in"] > 0
    assert got[("dnaagent_overlay_messages_sent_total", ())] == c["messages_out"] > 0
    assert got[("dnaagent_overlay_received_bytes_total", ())] == c["bytes_in"] > 0
    assert got[("dnaagent_overlay_sent_bytes_total", ())] == c["bytes_out"] > 0
    dropped = {
        dict(labels)["reason"]: value
        for (name, labels), value in got.items()
        if name == "dnaagent_overlay_dropped_messages_total"
    }
    assert sum(dropped.values()) == c["dropped"] >= 1
    assert all(dropped[k[len("dropped_") :]] == v for k, v in c.items() if k.startswith("dropped_"))
    rtts = 0
    for p in node.peers():
        labels = (("address", f"{p['host']}:{p['port']}"), ("peer", p["node_id"]))
        assert got[("dnaagent_overlay_peer_last_seen_seconds", labels)] == p["last_seen_s"]
        if p["rtt_ms"] is None:  # never measured: no sample rather than a false 0
            assert ("dnaagent_overlay_peer_rtt_seconds", labels) not in got
        else:
            rtts += 1
            assert got[("dnaagent_overlay_peer_rtt_seconds", labels)] == pytest.approx(
                p["rtt_ms"] / 1000
            )
    assert rtts >= 1
    info = [k for k in got if k[0] == "dnaagent_agent_info"]
    assert dict(info[0][1])["node_id"] == node.node_id.hex()


def test_openmetrics_format_parses_with_units(agent, clock) -> None:
    """The OpenMetrics exposition parses, ends with EOF and declares units."""
    run_fake(agent, clock)
    text = generate_openmetrics(make_registry(agent)).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}
    assert families["dnaagent_uptime_seconds"].unit == "seconds"
    assert families["dnaagent_test_status"].type == "stateset"
    assert families["dnaagent_agent"].type == "info"
    got = samples(text, openmetrics=True)
    assert got[("dnaagent_test_results_total", key("fake", "NIC"))] == 1
    for family in families.values():
        assert family.name.startswith("dnaagent_") and family.documentation


def test_values_are_read_at_scrape_time(agent, clock) -> None:
    """No copy is kept: a second scrape after a run shows the new figures."""
    registry = make_registry(agent)
    before = samples(generate_latest(registry).decode())
    assert ("dnaagent_test_results_total", key("fake", "NIC")) not in before
    run_fake(agent, clock)
    after = samples(generate_latest(registry).decode())
    assert after[("dnaagent_test_results_total", key("fake", "NIC"))] == 1


def test_a_failing_part_is_counted_and_the_rest_exposed(agent, clock) -> None:
    """A part that raises is skipped and counted; the other parts are still exposed."""

    class BrokenOverlay:
        node_id = b"\x01" * 20
        counters = {"messages_in": 1}

        def peers(self):
            raise RuntimeError("routing table on fire")

    agent.overlay = BrokenOverlay()
    collector = AgentCollector(agent)
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    got = samples(generate_latest(registry).decode())
    assert ("dnaagent_overlay_peers", ()) not in got
    assert got[("dnaagent_uptime_seconds", ())] > 0
    assert got[("dnaagent_metrics_collect_errors_total", ())] == 2  # overlay and peers
    assert collector.collect_errors == 2


def test_xbac_figures_equal_the_prediction_service(agent) -> None:
    """Measurements given through the API and predictions asked show up per source/answer."""
    from dnaagent.control.api import make_site
    from tests.unit.test_control_api import Http

    if agent.xbac is None:
        pytest.skip("the prediction service is off in the built-in defaults")
    http = Http(make_site(agent.api))
    body = b'{"host": "192.0.2.9", "rtts_ms": [5.0, 5.5, 6.0]}'
    assert http.request("POST", "/api/v1/xbac/measurements", body)[0] == 200
    assert http.request("POST", "/api/v1/xbac/predict/rtt", b'{"host": "192.0.2.9"}')[0] == 200
    status = agent.xbac.status()
    got = samples(generate_latest(make_registry(agent)).decode())
    assert got[("dnaagent_xbac_measurements_total", (("source", "api"),))] == 3
    for source, n in status["measurements_by_source"].items():
        assert got[("dnaagent_xbac_measurements_total", (("source", source),))] == n
    answered = got[("dnaagent_xbac_predictions_total", (("answered", "true"),))]
    unanswered = got[("dnaagent_xbac_predictions_total", (("answered", "false"),))]
    assert answered == status["predictions_answered"]
    assert unanswered == status["predictions_unanswered"]
    assert answered + unanswered == 1
    assert (
        sum(v for (name, _), v in got.items() if name == "dnaagent_xbac_measurements_total")
        == status["measurements"]
    )
    [info] = [labels for name, labels in got if name == "dnaagent_xbac_info"]
    assert dict(info)["role"] == status["role"] and dict(info)["group"] == status["group"]


def test_dts_figures_equal_the_campaign_service(agent) -> None:
    """After a finished campaign, probes, chunks and records per campaign equal local()."""
    from tests.unit.test_dts_service import TARGETS, Fleet

    fleet = Fleet(2)
    first = fleet.services[0]
    fleet.run(first.create("c1", TARGETS, chunk_size=2, lease_seconds=30))
    for s in fleet.services:
        fleet.run(s.join("c1"))
    fleet.advance_until(
        lambda: all(s.runners["c1"].state == "finished" for s in fleet.services), 120
    )
    agent.dts = first
    local = first.local()
    got = samples(generate_latest(make_registry(agent)).decode())
    [info] = local["campaigns"]
    c1 = (("campaign", "c1"),)
    assert got[("dnaagent_dts_campaigns_joined", ())] == 1
    assert got[("dnaagent_dts_probes_sent_total", ())] == local["probes_sent"] > 0
    assert got[("dnaagent_dts_probes_refused_total", ())] == local["probes_refused"]
    assert got[("dnaagent_dts_chunks_done_total", c1)] == info["chunks_done"]
    assert got[("dnaagent_dts_records_total", c1)] == info["records"] > 0
    assert got[("dnaagent_dts_errors_total", c1)] == info["errors"] == 0
