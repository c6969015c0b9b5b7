"""Passive RTT read from the kernel (sock_diag) for a real loopback TCP connection."""

from __future__ import annotations

import socket

from twisted.internet import defer, task

from dnaagent.measure.passive import PassiveRtt, read_kernel


def test_loopback_connection_is_picked_up_only_when_loopback_is_included() -> None:
    """A connection this test opens on loopback shows up with the kernel's RTT."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    try:
        for _ in range(3):  # a few round trips so that the kernel has an RTT sample
            client.sendall(b"x")
            server.recv(1)
            server.sendall(b"y")
            client.recv(1)
        port = listener.getsockname()[1]
        reading = read_kernel(100_000)
        mine = [r for r in reading.records if r.dport == port and r.dst == "127.0.0.1"]
        assert len(mine) == 1, reading.records
        assert mine[0].rtt_us and mine[0].rtt_us > 0
        assert "127.0.0.1" in reading.own

        got: list[tuple[str, float, float]] = []

        def sync(f, *a):
            return defer.maybeDeferred(f, *a)

        excluded = PassiveRtt(task.Clock(), lambda *s: got.append(s), in_thread=sync)
        excluded.poll()
        assert not [g for g in got if g[0] == "127.0.0.1"]
        assert excluded.counters["dropped_loopback"] >= 2  # both ends of our connection

        included = PassiveRtt(
            task.Clock(), lambda *s: got.append(s), include_local=True, in_thread=sync
        )
        included.poll()
        rtts = [rtt for host, rtt, _ in got if host == "127.0.0.1"]
        assert len(rtts) == 1 and 0 < rtts[0] < 1.0
    finally:
        client.close()
        server.close()
        listener.close()
