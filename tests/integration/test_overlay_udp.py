"""Overlay nodes on real UDP sockets on loopback, signed, IPv4 and IPv6.

The scenario runs in a child process (``python -m tests.integration.test_overlay_udp``)
with its own reactor: four nodes bind a free port on 127.0.0.1 and ::1 each with
:func:`~dnaagent.overlay.udp.listen_udp`, join through the first one (three over
IPv4, one over IPv6), find each other, put and get a value, exchange an
application request, and one leaves. The child prints one JSON object that the
test checks. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODES = 4


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _scenario() -> None:
    """Body of the child process: run the scenario, print the JSON report."""
    from twisted.internet import defer, reactor, task

    from dnaagent.overlay import Identity, OverlayConfig, OverlayNode
    from dnaagent.overlay.udp import listen_udp

    report: dict[str, Any] = {}

    @defer.inlineCallbacks
    def run() -> Any:
        nodes, ports, v4, v6 = [], [], [], []
        for _ in range(NODES):
            node = OverlayNode(Identity.generate(), reactor, config=OverlayConfig(rpc_timeout=1.0))
            ps = listen_udp(reactor, node, 0, ipv4="127.0.0.1", ipv6="::1")
            port = ps[0].getHost().port
            nodes.append(node)
            ports.extend(ps)
            v4.append(("127.0.0.1", port))
            v6.append(("::1", port))
        report["same_port_both_families"] = all(
            p.getHost().port == ports[2 * i].getHost().port for i, p in enumerate(ports[1::2])
        )
        joined = []
        for i, node in enumerate(nodes[1:], start=1):
            seed = v6[0] if i == NODES - 1 else v4[0]
            joined.append((yield node.join([seed])))
        report["joined"] = joined
        found = 0
        for a in nodes:
            for b in nodes:
                if a is not b:
                    c = yield a.find(b.node_id)
                    found += c is not None and c.node_id == b.node_id
        report["found"] = found
        key = b"k" * 20
        report["stored"] = yield nodes[1].put(key, b"hello", ttl=60)
        report["got"] = [v.decode() for v in (yield nodes[3].get(key))]
        nodes[2].register_handler("add", lambda body, sender: sum(body))
        report["rpc"] = yield nodes[0].request(nodes[2].node_id, "add", [1, 2, 3])
        report["rpc_v6"] = yield nodes[3].request(v6[2], "add", [4, 5])
        report["peer_families"] = sorted(
            {"v6" if ":" in c.address[0] else "v4" for c in nodes[0].routing_table}
        )
        leaver = nodes[3]
        leaver.leave()
        yield task.deferLater(reactor, 0.3, lambda: None)
        report["leaver_known"] = sum(leaver.node_id in n.routing_table for n in nodes[:3])
        c = nodes[0].counters
        report["dropped"] = c["dropped"] - c["dropped_unexpected_reply"]
        report["messages_in"] = c["messages_in"]
        for p in ports:
            yield p.stopListening()

    def finish(result: Any) -> None:
        if isinstance(result, Exception) or hasattr(result, "getTraceback"):
            report["error"] = result.getTraceback()
        print(json.dumps(report))
        reactor.stop()

    reactor.callWhenRunning(lambda: run().addBoth(finish))
    reactor.callLater(60, reactor.stop)
    reactor.run()


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_overlay_on_real_udp_loopback() -> None:
    """Four signed nodes on loopback join, find each other, share the DHT and RPC."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.integration.test_overlay_udp"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "error" not in report, report["error"]
    assert report["same_port_both_families"]
    assert all(n >= 1 for n in report["joined"])
    assert report["found"] == NODES * (NODES - 1)
    assert report["stored"] == NODES
    assert report["got"] == ["hello"]
    assert report["rpc"] == 6 and report["rpc_v6"] == 9
    assert report["leaver_known"] == 0
    assert report["peer_families"] == ["v4", "v6"]
    assert report["dropped"] == 0 and report["messages_in"] > 0


if __name__ == "__main__":
    _scenario()
