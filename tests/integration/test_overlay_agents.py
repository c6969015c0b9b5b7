"""Twenty real agents form an overlay on loopback, find each other, share the DHT, survive SIGKILL.

Each agent is a ``twistd -n dnaagent`` process with its own state directory,
overlay port on 127.0.0.1 (IPv6 off) and control API. The first agent is the
seed; the other nineteen start at once and join through it. The checks go
through the control API (``POST /api/v1/lookup``, ``/api/v1/dht``) for speed,
and through ``dnactl`` for a sample of each command.

Everything stays on 127.0.0.1; nothing needs root.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .agents import AgentFleet, AgentProcess, parallel

pytestmark = pytest.mark.integration

AGENTS = 20
#: Every agent must know at least this many peers before the lookups start.
MIN_PEERS = 10
JOIN_TIMEOUT = 60.0
#: Attempts of one lookup before it counts as failed (a lookup may lose a
#: request to a peer that was just killed).
ATTEMPTS = 3
#: Seconds within which every killed agent must be reported as not found.
GONE_TIMEOUT = 60.0


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[AgentFleet]:
    """Agents started by the test, ended by PID afterwards whatever happened."""
    the_fleet = AgentFleet(tmp_path)
    try:
        yield the_fleet
    finally:
        the_fleet.close()


def _find(src: AgentProcess, dst: AgentProcess) -> tuple[bool, dict[str, Any] | str]:
    """Look ``dst`` up from ``src`` up to :data:`ATTEMPTS` times; (found, last answer)."""
    answer: dict[str, Any] | str = ""
    for _ in range(ATTEMPTS):
        try:
            answer = src.lookup(dst.node_id)
        except AssertionError as e:
            answer = str(e)
            continue
        found = answer.get("found")
        if found and found["node_id"] == dst.node_id:
            assert (found["host"], found["port"]) == (dst.host, dst.port), (
                f"{src.name} found {dst.name} at the wrong address: {found}"
            )
            return True, answer
    return False, answer


def _lookup_all(sources: list[AgentProcess], targets: list[AgentProcess]) -> list[str]:
    """Every source looks up every other target; a line per pair not found."""
    pairs = [(s, t) for s in sources for t in targets if s is not t]
    results = parallel(lambda p: _find(*p), pairs, workers=16)
    return [
        f"{s.name} -> {t.name}: {answer}"
        for (s, t), (ok, answer) in zip(pairs, results, strict=True)
        if not ok
    ]


def _peer_counts(agents: list[AgentProcess]) -> dict[str, int]:
    return {a.name: int(a.overlay()["peers"]) for a in agents}


def _wait_for_peers(fleet: AgentFleet, agents: list[AgentProcess]) -> dict[str, int]:
    deadline = time.monotonic() + JOIN_TIMEOUT
    while True:
        counts = _peer_counts(agents)
        if min(counts.values()) >= MIN_PEERS:
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {JOIN_TIMEOUT:g} s some agents know fewer than {MIN_PEERS} peers: "
                f"{counts}\n{fleet.logs([a for a in agents if counts[a.name] < MIN_PEERS])}"
            )
        time.sleep(0.5)


def test_twenty_agents_join_find_share_and_survive_sigkill(fleet: AgentFleet) -> None:
    """20 agents join through one seed; all find all; the DHT works; a third is SIGKILLed.

    After the kill every live agent still finds every live agent (a few retries
    allowed for requests lost to the dead), the value put before the kill is
    still read by every live agent (its publisher among the dead), and every
    killed agent is reported as not found by every live one within a bounded time.
    """
    started = time.monotonic()
    (seed,) = fleet.start(1, prefix="seed")
    others = fleet.start(AGENTS - 1, seeds=[seed.address], extra=["--overlay-rejoin-interval", "5"])
    agents = [seed, *others]
    assert len({a.node_id for a in agents}) == AGENTS, "node IDs are not distinct"
    assert len({a.port for a in agents}) == AGENTS
    counts = _wait_for_peers(fleet, agents)
    joined = time.monotonic() - started

    # The routing tables hold real peers: every entry is another agent at its address.
    by_id = {a.node_id: a for a in agents}
    for agent in agents[:3]:
        table = agent.get("/api/v1/peers")
        assert table["node_id"] == agent.node_id
        assert len(table["peers"]) >= MIN_PEERS, table
        for peer in table["peers"]:
            other = by_id.get(peer["node_id"])
            assert other is not None and other is not agent, f"unknown peer {peer}"
            assert (peer["host"], peer["port"]) == (other.host, other.port), peer

    missing = _lookup_all(agents, agents)
    assert not missing, f"{len(missing)} of {AGENTS * (AGENTS - 1)} lookups failed:\n" + "\n".join(
        missing[:20]
    )

    # The command line agrees with the API.
    src, dst = agents[5], agents[17]
    shown = src.ctl_json("lookup", dst.node_id)
    assert shown["found"]["node_id"] == dst.node_id, shown
    assert shown["found"]["port"] == dst.port, shown
    assert any(c["node_id"] == dst.node_id for c in shown["closest"]), shown

    # A value put by one agent is read by all the others.
    key = f"fleet/{secrets.token_hex(4)}"
    value = f"put by {agents[3].name}"
    stored_on = int(agents[3].ctl_json("dht", "put", key, value)["stored_on"])
    assert stored_on >= MIN_PEERS, f"stored on only {stored_on} agents"
    got = agents[11].ctl_json("dht", "get", key)
    assert [v["text"] for v in got["values"]] == [value], got

    def read(agent: AgentProcess) -> list[str]:
        answer = agent.get(f"/api/v1/dht?key={key}")
        return [v["text"] for v in answer["values"]]

    readings = dict(zip([a.name for a in agents], parallel(read, agents), strict=True))
    assert all(r == [value] for r in readings.values()), readings

    # SIGKILL a third of the agents, the seed and the publisher among them.
    victims = agents[::3]
    assert seed in victims and agents[3] in victims and len(victims) == (AGENTS + 2) // 3
    for victim in victims:
        assert victim.kill() == -signal.SIGKILL, victim.describe()
    survivors = [a for a in agents if not a.killed]
    killed_at = time.monotonic()

    missing = _lookup_all(survivors, survivors)
    assert not missing, (
        f"after the kill {len(missing)} lookups of live agents failed:\n"
        + "\n".join(missing[:20])
        + "\n"
        + fleet.logs(survivors[:2])
    )
    readings = dict(zip([a.name for a in survivors], parallel(read, survivors), strict=True))
    assert all(r == [value] for r in readings.values()), readings

    # Every killed agent is eventually reported as not found, by every survivor.
    pairs = [(s, v) for s in survivors for v in victims]

    def gone(pair: tuple[AgentProcess, AgentProcess]) -> str | None:
        src, victim = pair
        deadline = time.monotonic() + GONE_TIMEOUT
        while True:
            answer = src.lookup(victim.node_id)
            if answer["found"] is None:
                assert all(c["node_id"] != victim.node_id for c in answer["closest"]), answer
                return None
            if time.monotonic() > deadline:
                return f"{src.name} still finds {victim.name}: {answer['found']}"
            time.sleep(1)

    still = [line for line in parallel(gone, pairs, workers=32) if line]
    assert not still, "\n".join(still)
    assert all(a.alive() for a in survivors), fleet.logs([a for a in survivors if not a.alive()])

    elapsed = time.monotonic() - started
    print(
        f"\n{AGENTS} agents joined in {joined:.1f} s (peers known: min {min(counts.values())}, "
        f"max {max(counts.values())}); after the kill: "
        f"{time.monotonic() - killed_at:.1f} s; total {elapsed:.1f} s"
    )
