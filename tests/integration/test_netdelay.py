"""The NFQUEUE delay tool alone: two host namespaces through a router, ping RTT with and
without the configured delay.

The machine may be loaded, so the bounds are generous; what must hold is the lower bound
(a packet is never released before its delay) and that the delay goes away with the tool.
"""

from __future__ import annotations

import re
import shutil
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .netdelay import counters, start_delayer
from .netns import Lab, Namespace, Process, Star, build_star, unavailable_reason

pytestmark = pytest.mark.integration

RTT_MS = 100.0


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[Lab, Star]]:
    """Hosts ``a`` (192.0.2.2) and ``b`` (198.51.100.2) behind one router."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("iptables") is None or shutil.which("ping") is None:
        pytest.skip("iptables and ping are needed")
    lab = Lab(tmp_path)
    try:
        yield lab, build_star(lab, {"a": "192.0.2.0/24", "b": "198.51.100.0/24"})
    finally:
        lab.close()


def rtts(ns: Namespace, address: str, count: int = 6) -> list[float]:
    """The RTTs (ms) of ``count`` pings from ``ns`` to ``address``; each must be answered."""
    done = ns.run(
        "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "3", address, check=False, timeout=60
    )
    values = [float(v) for v in re.findall(r"time=([0-9.]+) ms", done.stdout)]
    assert len(values) == count, f"{count} pings, {len(values)} answers:\n{done.stdout}"
    return values


def delayer(lab: Lab, star: Star, config: dict[str, Any]) -> Process:
    """Start the tool in the router, or skip saying exactly what failed."""
    try:
        proc: Process = start_delayer(lab, star.router, config, queue=3, lifetime=120)
    except AssertionError as e:
        if "cannot bind queue" in str(e):
            pytest.skip(f"NFQUEUE cannot be bound here: {e}")
        raise
    return proc


def config(star: Star, noisy: dict[str, list[float]] | None = None) -> dict[str, Any]:
    return {
        "site_of": {star.addresses["a"]: "X", star.addresses["b"]: "Y"},
        "rtt_ms": {"X": {"Y": RTT_MS, "X": 0}, "Y": {"Y": 0}},
        "noisy": noisy or {},
        "seed": 7,
    }


def test_forwarded_pings_wait_the_configured_delay(net: tuple[Lab, Star]) -> None:
    """RTT a->b rises by the configured 100 ms and falls back once the tool has ended."""
    lab, star = net
    b = star.addresses["b"]
    before = rtts(star.hosts["a"], b)
    proc = delayer(lab, star, config(star))
    during = rtts(star.hosts["a"], b)
    assert proc.alive(), proc.output()
    proc.stop()
    after = rtts(star.hosts["a"], b)
    got = counters(proc)
    print(
        f"ping RTT median before {statistics.median(before):.2f} ms, with a {RTT_MS:g} ms delay "
        f"{statistics.median(during):.2f} ms, after {statistics.median(after):.2f} ms; {got}"
    )
    # Never early: each reply is at least the configured RTT (both ways held half of it).
    assert min(during) >= RTT_MS * 0.98, during
    # Generous upper bound: a loaded machine adds scheduling delay, not seconds.
    assert statistics.median(during) <= RTT_MS + 400, during
    assert statistics.median(during) >= statistics.median(before) + RTT_MS * 0.9
    assert statistics.median(after) < RTT_MS / 2, after
    # Both directions were held: 6 requests and 6 replies.
    assert got.get("delayed", 0) >= 12, got
    assert got.get("accepted", 0) == got.get("packets", 0), got
    assert got.get("overflow", 0) == 0 and got.get("verdict_errors", 0) == 0, got


def test_a_noisy_host_has_jittering_delays(net: tuple[Lab, Star]) -> None:
    """Per-packet factors 0.3-2.0 on b: RTTs spread widely, never below 0.3 x 100 ms."""
    lab, star = net
    delayer(lab, star, config(star, noisy={star.addresses["b"]: [0.3, 2.0]}))
    values = rtts(star.hosts["a"], star.addresses["b"], count=10)
    print(f"noisy RTTs: {sorted(values)}")
    assert min(values) >= RTT_MS * 0.3 * 0.98, values
    assert max(values) - min(values) >= 30.0, values
