"""The web dashboard of a real ``twistd dnaagent`` in headless Chromium, and its /metrics.

The agent runs on loopback (overlay on 127.0.0.1 only, free ports, no
schedule); one local test (PingLocalHost, which pings 127.0.0.1 and ::1) is
run twice through ``dnactl`` so that the history has points. Chromium
(Debian's ``chromium`` and ``chromium-driver``) is driven by selenium through
chromedriver; each page must load, show live data of this agent and leave no
SEVERE entry in the browser log. A screenshot of every page is kept in
``$DNAAGENT_TEST_ARTIFACTS`` (default ``tests/artifacts/``, ignored by git).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.integration.browser_shot import CHROMEDRIVER, CHROMIUM, open_page, severe, start_browser
from tests.integration.test_daemon_snmp import free_port, start_agent, stop

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.integration

needs_browser = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="Debian's chromium and chromium-driver are not installed",
)

PAGES = ("overview", "peers", "tests", "notifications", "predictions", "topology")


def artifacts_dir() -> Path:
    """Where screenshots go: $DNAAGENT_TEST_ARTIFACTS or tests/artifacts/."""
    path = Path(os.environ.get("DNAAGENT_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def post(url: str, body: dict) -> dict:
    """POST a JSON body to the control API; the decoded answer."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """A running agent with two PingLocalHost results: (base URL, status, log path).

    It joins the overlay through a second agent (the seed), whose node ID is
    ``status["seed_node_id"]``.
    """
    seed_dir = tmp_path_factory.mktemp("seed")
    seed_port = free_port(socket.SOCK_DGRAM)
    seed = start_agent(
        seed_dir, "--snmp-enabled", "false", "--overlay-port", str(seed_port),
        "--overlay-listen-ipv4", "127.0.0.1", "--overlay-listen-ipv6", "",
    )  # fmt: skip
    tmp = tmp_path_factory.mktemp("dashboard")
    # A trap sink on loopback: this socket receives the traps (nothing answers).
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink_port = sink.getsockname()[1]
    try:
        proc = start_agent(
            tmp, "--snmp-enabled", "false", "--overlay-seeds", f"127.0.0.1:{seed_port}",
            "--notifications-trap-sinks", f"v2c:public@127.0.0.1:{sink_port}",
            # Crossed by the first PingLocalHost run: one trap.
            "--triggers-thresholds", "local.PingLocalHost.rtt_ms_max > 0",
        )  # fmt: skip
    except BaseException:
        stop(seed)
        sink.close()
        raise
    try:
        state = tmp / "state"
        for _ in range(2):
            done = subprocess.run(
                [str(BIN / "dnactl"), "--state-dir", str(state), "run", "local",
                 "--tests", "PingLocalHost", "--json"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        control = json.loads((state / "control.json").read_text())
        base = f"http://127.0.0.1:{control['port']}"
        # Measurements given by an application, then one prediction asked: the
        # predictions page lists it (answered or not).
        post(base + "/api/v1/xbac/measurements", {"host": "127.0.0.1", "rtts_ms": [1.0] * 8})
        post(base + "/api/v1/xbac/predict/rtt", {"host": "127.0.0.1"})
        with urllib.request.urlopen(base + "/api/v1/status", timeout=10) as r:
            status = json.load(r)
        seed_control = json.loads((seed_dir / "state" / "control.json").read_text())
        with urllib.request.urlopen(
            f"http://127.0.0.1:{seed_control['port']}/api/v1/status", timeout=10
        ) as r:
            status["seed_node_id"] = json.load(r)["overlay"]["node_id"]
        status["trap_sink"] = f"trap v2c community@127.0.0.1:{sink_port}"
        with urllib.request.urlopen(base + "/api/v1/dashboard", timeout=10) as r:
            status["components"] = json.load(r)["components"]
        yield base, status, tmp / "agent.log"
    finally:
        stop(proc, seed)
        sink.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver, with the browser log kept."""
    pytest.importorskip("selenium.webdriver")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh for every run
    driver = start_browser(str(profile))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_text(driver, selector: str = "#page") -> str:
    """The visible text of the first element matching ``selector`` ("" if none), read at once."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", selector
    )


def count(driver, selector: str) -> int:
    """How many elements match ``selector`` now."""
    return driver.execute_script("return document.querySelectorAll(arguments[0]).length;", selector)


@needs_browser
@pytest.mark.parametrize("page", PAGES)
def test_dashboard_page_loads_with_live_data(agent, browser, page) -> None:
    """Each page loads without console errors and shows this agent's data; screenshot kept."""
    from selenium.webdriver.support.ui import WebDriverWait

    base, status, log = agent
    node_id = status["overlay"]["node_id"]
    open_page(browser, base, page)
    header = page_text(browser, "#agent-line")
    assert node_id in header and status["version"] in header
    text = page_text(browser)
    if page == "overview":
        assert node_id in text
        assert "runs completed" in text.lower()
        assert count(browser, "#page svg.chart rect.bar") == 4
    elif page == "peers":
        assert node_id in text and "Routing table" in text
        # The agent joined through the seed: the seed is in its routing table.
        seed = status["seed_node_id"]
        WebDriverWait(browser, 60).until(lambda d: seed in page_text(d, "#page table"))
    elif page == "tests":
        assert "local.PingLocalHost" in text
        box = '[data-test="local.PingLocalHost"]'
        assert "2 results: 2 ok" in page_text(browser, box)
        assert count(browser, box + " circle.point.ok") == 2
    elif page == "notifications":
        assert "pending" in text.lower() and "Targets" in text
        # The first run crossed the threshold (an edge: the second stays above
        # it): one trap, sent once the queue ran.
        WebDriverWait(browser, 60).until(lambda d: "sent" in page_text(d, "#notify-recent"))
        assert status["trap_sink"] in page_text(browser, "#notify-targets")
        newest = page_text(browser, "#notify-recent")
        assert newest.count("threshold-crossed") == 1 and "local.PingLocalHost" in newest
        assert "local.PingLocalHost" in newest and "sent" in newest
    elif page == "predictions":
        assert "Recent predictions" in text
        assert "127.0.0.1" in page_text(browser, "#page table")
    elif page == "topology":
        assert "Traced topology" in text
        if status["components"]["dts"]:
            assert "Campaigns of this agent" in text and count(browser, "#page form") == 1
        else:
            assert "is not available on this agent" in text
    shot = artifacts_dir() / f"dashboard-{page}.png"
    assert browser.save_screenshot(str(shot)), "screenshot failed"
    assert shot.stat().st_size > 1000
    errors = severe(browser)
    assert errors == [], errors


@needs_browser
def test_dashboard_follows_new_results(agent, browser) -> None:
    """A new result appears on the tests page at the next poll, without reload or error."""
    from selenium.webdriver.support.ui import WebDriverWait

    base, status, log = agent
    open_page(browser, base, "tests")
    severe(browser)
    state = log.parent / "state"
    done = subprocess.run(
        [str(BIN / "dnactl"), "--state-dir", str(state), "run", "local",
         "--tests", "PingLocalHost", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    box = '[data-test="local.PingLocalHost"]'
    WebDriverWait(browser, 30).until(lambda d: "3 results: 3 ok" in page_text(d, box))
    assert severe(browser) == []


def test_dashboard_headers(agent) -> None:
    """The dashboard's files carry CSP and nosniff; unknown files are 404; the API is JSON."""
    base, status, log = agent
    with urllib.request.urlopen(base + "/", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        page = r.read().decode()
    assert "/ui/dashboard.js" in page and "<script>" not in page
    with urllib.request.urlopen(base + "/ui/dashboard.js", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in r.read().decode()
    for missing in ("/ui/../service.py", "/ui/nothing.js", "/ui/web/index.html"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + missing, timeout=10)
        assert e.value.code == 404
    with urllib.request.urlopen(base + "/api/v1/status", timeout=10) as r:
        assert r.headers["content-type"] == "application/json"


def test_metrics_of_the_daemon_parse(agent) -> None:
    """/metrics of the running agent parses in both formats and holds its live figures."""
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )
    from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

    base, status, log = agent
    req = urllib.request.Request(
        base + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        text = r.read().decode()
    assert text.endswith("# EOF\n")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parse_openmetrics(text)
        for s in family.samples
    }
    key = (("module", "local"), ("test", "PingLocalHost"))
    assert samples[("dnaagent_test_results_total", key)] >= 2
    assert samples[("dnaagent_test_status_code", key)] == 1
    sink = (("target", status["trap_sink"]),)
    assert samples[("dnaagent_notifications_queued_total", sink)] == 1
    assert (
        samples[("dnaagent_notifications_sent_total", sink)]
        + samples[("dnaagent_notifications_pending", sink)]
        == 1
    )
    assert samples[("dnaagent_xbac_measurements_total", (("source", "api"),))] == 8
    assert sum(v for k, v in samples.items() if k[0] == "dnaagent_xbac_predictions_total") == 1
    if status["components"]["dts"]:
        assert samples[("dnaagent_dts_campaigns_joined", ())] == 0
        assert samples[("dnaagent_dts_probes_sent_total", ())] == 0
    info = [k for k in samples if k[0] == "dnaagent_agent_info"]
    assert dict(info[0][1])["node_id"] == status["overlay"]["node_id"]
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        plain = r.read().decode()
    names = {s.name for family in parse_prometheus(plain) for s in family.samples}
    assert {"dnaagent_uptime_seconds", "dnaagent_overlay_peers"} <= names
    assert "dnaagent_overlay_messages_received_total" in names


def expected_topology(results: list[dict]) -> tuple[set[str], set[frozenset[str]]]:
    """Interfaces and links of Atlas traceroute results, hops linked only when one TTL apart.

    A silent hop is the node ``* DESTINATION TTL``; an address never links to itself.
    """
    nodes: set[str] = set()
    links: set[frozenset[str]] = set()
    for r in results:
        prev, prev_ttl = r["src_addr"], 0
        nodes.update((prev, r["dst_addr"]))
        for hop in sorted(r["result"], key=lambda h: h["hop"]):
            answer = next((a["from"] for a in hop["result"] if "from" in a), None)
            here = answer or f"* {r['dst_addr']} {hop['hop']}"
            nodes.add(here)
            if hop["hop"] == prev_ttl + 1 and here != prev:  # an address answering twice
                links.add(frozenset((prev, here)))
            prev, prev_ttl = here, hop["hop"]
    return nodes, links


@needs_browser
def test_topology_drawing_of_a_dts_export(agent, browser) -> None:
    """The page's graph of a DTS export has its interfaces and links, no link over a gap."""
    from dnaagent.dts.export import TraceRecord, atlas_json

    base, status, log = agent
    open_page(browser, base, "topology")
    src = "198.51.100.1"
    records = [
        # Full path: src -> r1 -> r2 -> target.
        TraceRecord("c", 0, "m1", src, "203.0.113.5", 1.0, 2.0, 1, "reached", "", hops=[
            (1, "192.0.2.1", 1.0, False, 64), (2, "192.0.2.2", 2.0, False, 63),
            (3, "203.0.113.5", 3.0, True, 62),
        ]),
        # Started at TTL 2 (hop 1 known from the stop set), one silent hop, not reached.
        TraceRecord("c", 0, "m1", src, "203.0.113.6", 1.0, 2.0, 2, "gap", "stop set", hops=[
            (2, "192.0.2.3", 2.0, False, 63), (3, None, None, False, None),
            (4, "192.0.2.4", 4.0, False, 61),
        ]),
    ]  # fmt: skip
    results = json.loads(atlas_json(records, msm_id=1, prb_ids={"m1": 1}))
    nodes, links = expected_topology(results)
    drawn = browser.execute_script(
        """
        const g = window.DnaDashboard.atlasGraph(arguments[0]);
        const box = document.createElement("div");
        box.id = "graph-under-test";
        box.appendChild(window.DnaCharts.graph(g.nodes, g.edges, {label: "test"}));
        document.body.appendChild(box);
        return {
          nodes: g.nodes.map((n) => n.id),
          kinds: Object.fromEntries(g.nodes.map((n) => [n.id, n.kind])),
          edges: g.edges.map((e) => [e.a, e.b]),
          circles: box.querySelectorAll("circle.node").length,
          lines: box.querySelectorAll("line.edge").length,
        };
        """,
        results,
    )
    assert set(drawn["nodes"]) == nodes
    assert {frozenset(e) for e in drawn["edges"]} == links
    assert frozenset((src, "192.0.2.3")) not in links  # TTL 1 was not probed
    assert drawn["kinds"][src] == "self" and drawn["kinds"]["203.0.113.6"] == "target"
    assert drawn["circles"] == len(nodes) and drawn["lines"] == len(links)
    assert browser.save_screenshot(str(artifacts_dir() / "dashboard-topology-graph.png"))
    assert severe(browser) == []
