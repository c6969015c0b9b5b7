"""The dashboard draws the topology a real trace campaign found.

Three agents in network namespaces trace a routed topology of documentation
prefixes (the lab of ``test_dts_campaign.py``: three monitors, four routers,
two hosts). Once the campaign is complete, headless Chromium runs inside the
first monitor's namespace (where its control API is, on that namespace's
loopback) and opens the dashboard's traced-topology page: the graph must hold
exactly the interfaces of the campaign's export and its links, and the browser
log no error. The screenshot is kept as ``dashboard-topology-campaign.png``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from .browser_shot import CHROMEDRIVER, CHROMIUM
from .test_dashboard_browser import artifacts_dir, expected_topology
from .test_dts_campaign import (  # noqa: F401 (world is a fixture)
    CAMPAIGN,
    LEASE,
    LINKS,
    MONITORS,
    World,
    targets,
    world,
)

pytestmark = pytest.mark.integration

SHOT = Path(__file__).with_name("browser_shot.py")
TIMEOUT = 240.0


def test_topology_page_draws_a_real_campaign(world: World) -> None:  # noqa: F811
    """The traced-topology page of a monitor shows the campaign's interfaces and links."""
    pytest.importorskip("selenium")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    m1 = world.agents["m1"]
    created = m1.ctl(
        "trace", "campaign", "create", CAMPAIGN, *targets(),
        "--chunk-size", "2", "--lease", str(LEASE), "--policy", "any",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr + world.fleet.logs()
    for name in MONITORS:
        joined = world.agents[name].ctl("trace", "campaign", "join", CAMPAIGN)
        assert joined.returncode == 0, joined.stderr + world.agents[name].output()
    done = m1.ctl(
        "trace", "campaign", "status", CAMPAIGN, "--wait", str(TIMEOUT), "--json",
        timeout=TIMEOUT + 30,
    )  # fmt: skip
    assert done.returncode == 0, f"not complete: {done.stdout}\n{world.fleet.logs()}"
    out = world.lab.workdir / "export.json"
    exported = m1.ctl("trace", "campaign", "export", CAMPAIGN, "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    nodes, links = expected_topology(json.loads(out.read_text()))
    # The routers' interfaces towards the hosts are on every path: they must be drawn.
    assert {LINKS["L6"]["r4"][0], LINKS["L6"]["r3"][0]} <= nodes

    control = m1.control()
    assert control is not None
    base = f"http://{control['host']}:{control['port']}"
    shot = artifacts_dir() / "dashboard-topology-campaign.png"
    page = world.ns["m1"].run(
        sys.executable, SHOT, base, "topology", shot,
        "--wait-for", "#page svg.graph circle.node", timeout=240,
    )  # fmt: skip
    seen = json.loads(page.stdout)
    assert seen["severe"] == [], seen["severe"]
    assert CAMPAIGN in seen["text"] and "Topology traced by campaign" in seen["text"]
    drawn = set(seen["graph"]["nodes"])
    # Silent hops are drawn as "*"; every answering interface by its address.
    assert drawn - {"*"} == {n for n in nodes if not n.startswith("* ")}
    assert seen["graph"]["edges"] == len(links)
    assert seen["screenshot"] and shot.stat().st_size > 1000
