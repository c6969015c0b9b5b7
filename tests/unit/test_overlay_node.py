"""Tests of OverlayNode on an in-memory datagram network driven by task.Clock."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from dnaagent import wire
from dnaagent.overlay import (
    Contact,
    Identity,
    JoinError,
    NotRunning,
    OverlayConfig,
    OverlayNode,
    PeerNotFound,
    RemoteError,
    RequestTimeout,
)
from dnaagent.overlay.routing import RoutingTable
from tests.fakes.datagram import MemoryNetwork, raw_sender

PORT = 4001


def _addr(i: int, v6: bool = False) -> tuple[str, int]:
    return (f"2001:db8::{i + 1:x}", PORT) if v6 else (f"192.0.2.{i + 1}", PORT)


class Net:
    """A small overlay on a MemoryNetwork with a task.Clock."""

    def __init__(
        self, n: int, *, signed: bool = False, v6: bool = False, delay: float = 0.01, **cfg: Any
    ) -> None:
        self.clock = Clock()
        self.net = MemoryNetwork(self.clock, delay=delay)
        self.rng = random.Random(42)
        self.signed = signed
        self.v6 = v6
        self.cfg = cfg
        self.nodes: list[OverlayNode] = []
        for _ in range(n):
            self.add()

    def add(self, role: str = "core", **cfg: Any) -> OverlayNode:
        """Start one more node (not joined yet)."""
        ident = Identity.generate() if self.signed else Identity.unsigned(self.rng)
        config = OverlayConfig(require_signatures=self.signed, **{**self.cfg, **cfg})
        node = OverlayNode(
            ident, self.clock, role=role, config=config, rng=random.Random(len(self.nodes))
        )
        self.net.listen(_addr(len(self.nodes), self.v6), node)
        self.nodes.append(node)
        return node

    def addr(self, node: OverlayNode) -> tuple[str, int]:
        """The node's address."""
        return _addr(self.nodes.index(node), self.v6)

    def run(self, seconds: float = 3.0) -> None:
        """Advance the clock in small steps."""
        steps = int(seconds / 0.005)
        for _ in range(steps):
            self.clock.advance(0.005)

    def result(self, d: Deferred[Any], seconds: float = 3.0) -> Any:
        """Run until ``d`` fires; return its result (raise its failure)."""
        out: list[Any] = []
        d.addBoth(out.append)
        for _ in range(int(seconds / 0.005)):
            if out:
                break
            self.clock.advance(0.005)
        assert out, "Deferred did not fire"
        if isinstance(out[0], Failure):
            out[0].raiseException()
        return out[0]

    def join_all(self) -> None:
        """Join every node through the first one."""
        seed = self.addr(self.nodes[0])
        for node in self.nodes[1:]:
            self.result(node.join([seed]))
        self.run(2)


def test_join_and_ping_fill_both_tables() -> None:
    """A node that joins through a seed knows it, and the seed knows the newcomer."""
    net = Net(2, signed=True)
    a, b = net.nodes
    assert net.result(b.join([net.addr(a)])) == 1
    assert b.node_id in a.routing_table and a.node_id in b.routing_table
    contact = b.routing_table.get(a.node_id)
    assert contact is not None and contact.srtt == pytest.approx(0.02, abs=0.006)
    assert net.result(b.ping(net.addr(a))) == a.node_id


def test_join_without_answering_seed_fails() -> None:
    """Seeds that never answer make join fail with JoinError after the retries."""
    net = Net(1, rpc_timeout=0.5)
    with pytest.raises(JoinError):
        net.result(net.nodes[0].join([("192.0.2.200", PORT)], attempts=2), seconds=5)
    assert net.nodes[0].counters["rpc_timeouts"] == 2


def test_join_without_seeds_is_alone() -> None:
    """join([]) succeeds with an empty table (discovery may fill it later)."""
    net = Net(1)
    assert net.result(net.nodes[0].join([])) == 0


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_every_node_finds_every_other(v6: bool) -> None:
    """After joining, find() locates every node, over IPv4 or IPv6 addresses."""
    net = Net(12, v6=v6)
    net.join_all()
    for a in net.nodes:
        for b in net.nodes:
            if a is not b:
                c = net.result(a.find(b.node_id))
                assert c is not None and c.node_id == b.node_id and c.address == net.addr(b)


def test_lookup_returns_k_closest_sorted() -> None:
    """lookup() answers the k closest live nodes, closest first."""
    net = Net(30, k=5)
    net.join_all()
    target = random.Random(1).randbytes(20)
    key = int.from_bytes(target, "big")
    contacts = net.result(net.nodes[3].lookup(target))
    expected = sorted(
        (n.node_id for n in net.nodes if n is not net.nodes[3]),
        key=lambda i: int.from_bytes(i, "big") ^ key,
    )[:5]
    assert [c.node_id for c in contacts] == expected


def test_put_get_cache_and_expiry() -> None:
    """put() stores at the k closest, get() finds it elsewhere and caches it on the way."""
    net = Net(25, k=4, cache_ttl=30)
    net.join_all()
    key = b"K" * 20
    stored = net.result(net.nodes[5].put(key, b"value-1", ttl=100))
    assert stored >= 4
    holders = [n for n in net.nodes if n.store.get(key, net.clock.seconds())]
    assert len(holders) == stored
    reader = next(n for n in net.nodes if n not in holders)
    assert net.result(reader.get(key)) == [b"value-1"]
    net.run(1)
    cached = [n for n in net.nodes if n.store.get(key, net.clock.seconds())]
    assert len(cached) in (len(holders), len(holders) + 1)
    assert net.result(reader.get(b"N" * 20)) == []
    # After the TTL the value is gone everywhere (the publisher stops too).
    net.clock.advance(200)
    for n in net.nodes:
        n._expire()
    assert not any(n.store.get(key, net.clock.seconds()) for n in net.nodes)


def test_republish_restores_lost_copies() -> None:
    """The original publisher stores its value again every republish interval."""
    net = Net(10, k=3, republish_interval=100)
    net.join_all()
    key = b"R" * 20
    publisher = net.nodes[2]
    net.result(publisher.put(key, b"v", ttl=1000))
    for n in net.nodes:
        n.store = type(n.store)()  # every copy lost
    net.clock.advance(120)
    net.run(1)
    assert sum(bool(n.store.get(key, net.clock.seconds())) for n in net.nodes) >= 3


def test_application_rpc() -> None:
    """Handlers answer values or Deferreds; errors and unknown names come back as RemoteError."""
    net = Net(6)
    net.join_all()
    a, b = net.nodes[1], net.nodes[4]
    seen: list[Any] = []

    def echo(body: Any, sender: Any) -> Any:
        seen.append(sender)
        return {"echo": body}

    def later(body: Any, sender: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        net.clock.callLater(0.1, d.callback, body * 2)
        return d

    def broken(body: Any, sender: Any) -> Any:
        raise KeyError("secret detail")

    b.register_handler("echo", echo)
    b.register_handler("later", later)
    b.register_handler("broken", broken)
    assert net.result(a.request(b.node_id, "echo", [1, "x", b"y"])) == {"echo": [1, "x", b"y"]}
    assert seen[0].node_id == a.node_id and seen[0].role == "core"
    assert net.result(a.request(net.addr(b), "later", 21)) == 42
    with pytest.raises(RemoteError) as info:
        net.result(a.request(b.node_id, "broken", None))
    assert info.value.code == wire.ERR_HANDLER_FAILED and "secret" not in info.value.text
    with pytest.raises(RemoteError) as info:
        net.result(a.request(b.node_id, "nope", None))
    assert info.value.code == wire.ERR_UNKNOWN_HANDLER
    with pytest.raises(wire.WireError):
        net.result(a.request(b.node_id, "echo", b"x" * 9000))
    b.register_handler("big", lambda body, sender: b"x" * 9000)
    with pytest.raises(RemoteError) as info:
        net.result(a.request(b.node_id, "big", None))
    assert info.value.code == wire.ERR_TOO_LARGE
    assert b.counters["app_requests_in"] == 5


def test_request_to_unknown_node_id_looks_it_up() -> None:
    """A request to a node ID that is not in the table finds it first."""
    net = Net(20, k=3)
    net.join_all()
    a = net.nodes[7]
    far = next(n for n in net.nodes if n is not a and n.node_id not in a.routing_table)
    far.register_handler("who", lambda body, sender: far.node_id)
    assert net.result(a.request(far.node_id, "who", None)) == far.node_id
    with pytest.raises(PeerNotFound):
        net.result(a.request(b"\x00" * 20, "who", None))


def test_request_closest_reaches_the_closest_node() -> None:
    """request_closest() is answered by the node whose ID is closest to the key."""
    net = Net(15)
    net.join_all()
    for n in net.nodes:
        n.register_handler("id", lambda body, sender, n=n: n.node_id)
    key = random.Random(3).randbytes(20)
    k = int.from_bytes(key, "big")
    closest = min(net.nodes, key=lambda n: int.from_bytes(n.node_id, "big") ^ k)
    for asker in net.nodes[:5]:
        assert net.result(asker.request_closest(key, "id", None)) == closest.node_id


def test_request_timeout_when_peer_crashed() -> None:
    """A crashed peer makes requests time out, and is evicted after repeated failures."""
    net = Net(3, max_failures=2)
    net.join_all()
    a, b = net.nodes[0], net.nodes[2]
    b.register_handler("x", lambda body, sender: 1)
    net.net.crash(net.addr(b))
    with pytest.raises(RequestTimeout):
        net.result(a.request(b.node_id, "x", None, timeout=0.5))
    with pytest.raises(RequestTimeout):
        net.result(a.request(b.node_id, "x", None, timeout=0.5))
    assert b.node_id not in a.routing_table


def test_malformed_and_forged_datagrams_are_dropped_counted_and_banned() -> None:
    """Invalid datagrams are counted per reason and their sender is banned for a while."""
    net = Net(1, signed=True, ban_seconds=60)
    node = net.nodes[0]
    bad_addr, forger_addr = ("198.51.100.1", 999), ("198.51.100.2", 999)
    send_bad = raw_sender(net.net, bad_addr)
    send_forged = raw_sender(net.net, forger_addr)
    send_bad(b"\x01\x01\xc1" + bytes(64), net.addr(node))
    honest, other = Identity.generate(), Identity.generate()
    ping = wire.encode(wire.PING, 1, honest.node_id, honest.public_key, 0, None, honest.signer)
    send_bad(ping, net.addr(node))  # banned now: dropped even though valid
    forged = wire.encode(wire.PING, 2, other.node_id, honest.public_key, 0, None, honest.signer)
    send_forged(forged, net.addr(node))
    net.run(0.1)
    c = node.counters
    assert c["dropped_malformed"] == 1
    assert c["dropped_banned"] == 1
    assert c["dropped_id_mismatch"] == 1
    assert c["bans_total"] == 2 and c["banned_peers"] == 2
    assert c["dropped"] == 3 and c["messages_in"] == 3
    assert len(node.routing_table) == 0
    net.clock.advance(61)
    send_bad(ping, net.addr(node))
    net.run(0.1)
    assert node.counters["banned_peers"] == 0
    assert honest.node_id in node.routing_table


def test_bad_signature_and_unsigned_datagrams() -> None:
    """A wrong signature is dropped and banned; unsigned datagrams are only counted."""
    net = Net(1, signed=True)
    node = net.nodes[0]
    ident = Identity.generate()
    data = bytearray(
        wire.encode(wire.PING, 1, ident.node_id, ident.public_key, 0, None, ident.signer)
    )
    data[-3] ^= 0xFF
    raw_sender(net.net, ("198.51.100.3", 1))(bytes(data), net.addr(node))
    fake = Identity.unsigned()
    unsigned = wire.encode(wire.PING, 1, fake.node_id, fake.public_key, 0, None, fake.signer)
    raw_sender(net.net, ("198.51.100.4", 1))(unsigned, net.addr(node))
    net.run(0.1)
    c = node.counters
    assert c["dropped_bad_signature"] == 1 and c["dropped_unsigned"] == 1
    assert c["bans_total"] == 1


def test_unexpected_replies_are_dropped_without_ban() -> None:
    """A reply nobody asked for is counted, not acted on, and not banned."""
    net = Net(2)
    a, b = net.nodes
    b._send(net.addr(a), wire.PONG, 12345, None)
    net.run(0.1)
    assert a.counters["dropped_unexpected_reply"] == 1
    assert a.counters["bans_total"] == 0


def test_stubs_use_the_dht_but_stay_out_of_tables() -> None:
    """Stubs join, get and put through cores, are in no table and serve no DHT requests."""
    net = Net(8, k=4)
    net.join_all()
    stub = net.add(role="stub")
    assert net.result(stub.join([net.addr(net.nodes[0])])) >= 1
    net.result(stub.put(b"S" * 20, b"from-stub", ttl=100))
    assert net.result(net.nodes[3].get(b"S" * 20)) == [b"from-stub"]
    assert net.result(stub.get(b"S" * 20)) == [b"from-stub"]
    assert all(stub.node_id not in n.routing_table for n in net.nodes[:8])
    found = net.result(stub.find(net.nodes[5].node_id))
    assert found is not None and found.node_id == net.nodes[5].node_id
    assert not stub.store.values
    with pytest.raises(RemoteError) as info:
        d: Deferred[Any] = Deferred()
        net.nodes[0]._rpc(
            net.addr(stub),
            wire.FIND_NODE,
            b"x" * 20,
            None,
            lambda msg, rtt: (
                d.errback(RemoteError(*msg.body)) if msg.type == wire.ERROR else d.callback(msg)
            ),
            d.errback,
        )
        net.result(d)
    assert info.value.code == wire.ERR_NOT_SERVED
    # A stub still answers application requests sent to its address.
    stub.register_handler("hi", lambda body, sender: "hello")
    assert net.result(net.nodes[1].request(net.addr(stub), "hi", None)) == "hello"


def test_leave_tells_contacts_and_stops() -> None:
    """A leaving node is removed from its contacts' tables and refuses new work."""
    net = Net(6)
    net.join_all()
    leaver = net.nodes[3]
    knowers = [n for n in net.nodes if leaver.node_id in n.routing_table]
    assert knowers
    pending = leaver.ping(("192.0.2.250", PORT))
    leaver.leave()
    with pytest.raises(NotRunning):
        net.result(pending)
    net.run(0.2)
    assert all(leaver.node_id not in n.routing_table for n in net.nodes)
    with pytest.raises(NotRunning):
        net.result(leaver.lookup(net.nodes[0].node_id))
    assert not leaver.running


def test_discovery_on_the_local_link() -> None:
    """With discovery on, a node without seeds finds its neighbours by broadcast."""
    net = Net(4, discovery=True)
    for n in net.nodes:
        n.discovery_addresses = [("255.255.255.255", PORT)]
    net.result(net.nodes[0].join([]))
    net.run(0.5)
    for n in net.nodes[1:]:
        assert net.nodes[0].node_id in n.routing_table
        assert n.node_id in net.nodes[0].routing_table
    assert net.nodes[0].counters["announcements"] == 1


def test_discovery_off_ignores_announcements() -> None:
    """Nodes with discovery off neither announce nor answer announcements."""
    net = Net(2)
    a, b = net.nodes
    a.discovery_addresses = [("255.255.255.255", PORT)]
    a.announce(a.discovery_addresses)
    net.run(0.5)
    assert b.node_id not in a.routing_table


def test_counters_match_the_network() -> None:
    """Messages and bytes counted by the nodes equal what the network carried."""
    net = Net(5)
    net.join_all()
    net.result(net.nodes[1].put(b"C" * 20, b"x"))
    net.run(1)
    sent = sum(n.counters["messages_out"] for n in net.nodes)
    received = sum(n.counters["messages_in"] for n in net.nodes)
    assert sent == net.net.sent == received
    assert sum(n.counters["bytes_out"] for n in net.nodes) == net.net.bytes
    peers = net.nodes[0].peers()
    assert len(peers) == 4 and {"node_id", "host", "port", "rtt_ms", "bucket"} <= set(peers[0])


def test_adaptive_soft_timeouts_follow_measured_rtt() -> None:
    """Soft timeouts come from measured RTTs, bounded by min_rto and max_rto."""
    net = Net(3, delay=0.1, min_rto=0.05, max_rto=1.0, initial_rto=0.7)
    a, b, _ = net.nodes
    assert a._soft_timeout_for(b.node_id) == 0.7
    net.join_all()
    for _ in range(10):
        net.result(a.ping(net.addr(b)))
    c = a.routing_table.get(b.node_id)
    assert c is not None and c.srtt == pytest.approx(0.2, abs=0.01)
    assert 0.2 <= a._soft_timeout_for(b.node_id) < 0.4
    assert a._soft_timeout_for(b"\x07" * 20) < 0.7  # unknown peer: global estimate


def test_handler_registration_validation() -> None:
    """Handler names are bounded; a bad name is refused at registration."""
    net = Net(1)
    with pytest.raises(ValueError):
        net.nodes[0].register_handler("", lambda body, sender: succeed(None))
    with pytest.raises(ValueError):
        net.nodes[0].register_handler("x" * 65, lambda body, sender: None)


def test_silent_dead_neighbours_are_evicted_within_minutes() -> None:
    """A crashed close neighbour is pinged twice and evicted; live ones stay."""
    net = Net(8, neighbour_check_interval=60, neighbour_refresh_interval=10_000)
    net.join_all()
    victim = net.nodes[5]
    watchers = [
        n
        for n in net.nodes
        if n is not victim
        and victim.node_id
        in {c.node_id for c in n.routing_table.closest(n.routing_table.own_key, 5)}
    ]
    assert watchers
    live = [n for n in net.nodes if n is not victim]
    sizes = {n.node_id: len(n.routing_table) - (victim.node_id in n.routing_table) for n in live}
    net.net.crash(net.addr(victim))
    before = sum(n.counters["rpc_sent"] for n in net.nodes)
    copies = sum(n.counters["messages_out"] for n in net.nodes)
    for _ in range(150):
        net.clock.advance(1)
    assert all(victim.node_id not in n.routing_table for n in watchers)
    assert all(len(n.routing_table) >= sizes[n.node_id] for n in live)
    # Two and a half minutes of checks cost a few pings per node, not a flood;
    # each unanswered ping is sent at most 1 + rpc_retries times.
    sent = sum(n.counters["rpc_sent"] for n in net.nodes) - before
    assert sent < 8 * 5 * 3 * 2
    copies = sum(n.counters["messages_out"] for n in net.nodes) - copies
    assert copies < 8 * 5 * 3 * 2 * 3


def test_slow_target_gets_a_hedged_request() -> None:
    """If the searched node's answer is late, a second request goes to it early."""
    net = Net(3, rpc_timeout=2.0, min_rto=0.05)
    net.join_all()
    a, t = net.nodes[0], net.nodes[2]
    for _ in range(5):
        net.result(a.ping(net.addr(t)))  # a measured RTT of 20 ms
    dropped: list[bytes] = []
    deliver = net.net._schedule

    def lose_first_find_node(src: Any, dst: Any, data: bytes) -> None:
        if (
            dst == net.addr(t)
            and not dropped
            and wire.decode(data, verify=False).type == wire.FIND_NODE
        ):
            dropped.append(data)
            return
        deliver(src, dst, data)

    net.net._schedule = lose_first_find_node  # type: ignore[method-assign]
    start = net.clock.seconds()
    found = net.result(a.find(t.node_id))
    assert dropped and found is not None and found.node_id == t.node_id
    assert net.clock.seconds() - start < 0.2  # not the 2 s hard timeout


def _lose(net: Net, should_lose: Any) -> list[bytes]:
    """Drop the datagrams for which ``should_lose(src, dst, data)`` is true; return them."""
    lost: list[bytes] = []
    deliver = net.net._schedule

    def schedule(src: Any, dst: Any, data: bytes) -> None:
        if should_lose(src, dst, data):
            lost.append(data)
            return
        deliver(src, dst, data)

    net.net._schedule = schedule  # type: ignore[method-assign]
    return lost


def test_lost_request_is_retransmitted_with_the_same_transaction_id() -> None:
    """A lost ping is sent again before the hard timeout and the ping succeeds."""
    net = Net(2, rpc_timeout=2.0)
    a, b = net.nodes
    net.result(b.join([net.addr(a)]))
    lost = _lose(
        net,
        lambda src, dst, data: (
            dst == net.addr(b)
            and wire.decode(data, verify=False).type == wire.PING
            and len(lost) < 2
        ),
    )
    start = net.clock.seconds()
    assert net.result(a.ping(net.addr(b)), seconds=3) == b.node_id
    assert len(lost) == 2
    assert net.clock.seconds() - start < 2.0
    c = a.counters
    assert c["rpc_retransmits"] == 2 and c["rpc_timeouts"] == 0
    txids = {wire.decode(d, verify=False).txid for d in lost}
    assert len(txids) == 1  # the copies share the transaction ID


def test_retransmission_stops_at_the_hard_timeout_and_duplicates_are_dropped() -> None:
    """A dead peer gets 1 + rpc_retries copies; a late duplicate answer is only counted."""
    net = Net(2, rpc_timeout=1.0, rpc_retries=2)
    a, b = net.nodes
    net.result(b.join([net.addr(a)]))
    net.net.crash(net.addr(b))
    out_before = a.counters["messages_out"]
    d = a.ping(net.addr(b), b.node_id)
    with pytest.raises(RequestTimeout):
        net.result(d, seconds=2)
    assert a.counters["messages_out"] - out_before == 3
    assert a.counters["rpc_retransmits"] == 2 and a.counters["rpc_timeouts"] == 1


def test_application_requests_are_not_retransmitted() -> None:
    """Application handlers need not be idempotent: their requests are sent once."""
    net = Net(2, rpc_timeout=1.0)
    a, b = net.nodes
    net.result(b.join([net.addr(a)]))
    net.net.crash(net.addr(b))
    before = a.counters["messages_out"]
    with pytest.raises(RequestTimeout):
        net.result(a.request(net.addr(b), "echo", 1, timeout=1.0), seconds=2)
    assert a.counters["messages_out"] - before == 1


def test_one_failed_request_does_not_evict_a_neighbour_with_replacements() -> None:
    """Contacts survive a single failed request even when a replacement waits."""
    net = Net(2, rpc_timeout=0.5, max_failures=2)
    a, b = net.nodes
    net.result(b.join([net.addr(a)]))
    table = a.routing_table
    bucket = table.buckets[table.bucket_index(int.from_bytes(b.node_id, "big"))]
    assert bucket is not None
    spare = (int.from_bytes(b.node_id, "big") ^ 1).to_bytes(20, "big")
    bucket.replacements[spare] = Contact(spare, ("192.0.2.99", PORT))
    _lose(net, lambda src, dst, data: dst == net.addr(b))
    with pytest.raises(RequestTimeout):
        net.result(a.ping(net.addr(b), b.node_id), seconds=2)
    assert b.node_id in table
    with pytest.raises(RequestTimeout):
        net.result(a.ping(net.addr(b), b.node_id), seconds=2)
    assert b.node_id not in table and spare in table


def test_ban_log_lines_are_rate_limited() -> None:
    """Past a burst, bans are counted but not logged, and a summary follows."""
    from twisted.logger import globalLogPublisher

    from dnaagent.overlay import node as node_module

    net = Net(1, ban_seconds=600)
    node = net.nodes[0]
    lines: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == node_module.log.namespace:
            lines.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        for i in range(100):
            send = raw_sender(net.net, (f"198.51.100.{i + 1}", PORT))
            send(b"\x01\x01\xc1" + bytes(64), net.addr(node))
        net.run(0.1)
        assert node.counters["bans_total"] == 100
        burst = len(lines)
        assert burst <= node_module._BAN_LOG_BURST + 1
        net.clock.advance(node_module._BAN_LOG_WINDOW)
        raw_sender(net.net, ("203.0.113.1", PORT))(b"\x01\x01\xc1" + bytes(64), net.addr(node))
        net.run(0.1)
        summaries = [e for e in lines[burst:] if "count" in e]
        assert summaries and summaries[0]["count"] == 100 - node_module._BAN_LOG_BURST
    finally:
        globalLogPublisher.removeObserver(observer)


def test_link_local_contacts_are_not_relayed() -> None:
    """A fe80:: contact (valid only on its own link) stays out of NODES answers."""
    net = Net(1)
    node = net.nodes[0]
    now = net.clock.seconds()
    ll = (0xAA << 152).to_bytes(20, "big")
    glob = (0xAB << 152).to_bytes(20, "big")
    v4 = (0xAC << 152).to_bytes(20, "big")
    node.routing_table.seen(ll, ("fe80::1%eth0", PORT), now)
    node.routing_table.seen(glob, ("2001:db8::7", PORT), now)
    node.routing_table.seen(v4, ("192.0.2.7", PORT), now)
    contact = node.routing_table.get(ll)
    assert contact is not None and contact.link_local
    body = node._nodes_body(ll, bytes(20))
    relayed = {nid for nid, _ in wire.iter_contacts(body)}
    assert relayed == {glob, v4}


def test_answers_to_both_copies_of_a_slow_request_are_not_drops() -> None:
    """A slow peer answers the request and its copy: the second answer is a duplicate."""
    net = Net(2, delay=0.3, rpc_timeout=2.0)
    a, b = net.nodes
    assert net.result(a.ping(net.addr(b)), seconds=3) == b.node_id
    net.run(1.5)
    c = a.counters
    assert c["rpc_retransmits"] == 1
    assert c["rpc_duplicate_replies"] == 1 and c["dropped"] == 0
    contact = a.routing_table.get(b.node_id)
    assert contact is not None and contact.srtt is None  # Karn: no ambiguous sample


def test_unsendable_destination_is_counted_and_logged_once_a_minute() -> None:
    """A send the kernel refuses (EINVAL to a blackholed address) is a counted failure and
    one log line without traceback, not a traceback per datagram."""
    import errno

    from twisted.logger import globalLogPublisher

    net = Net(1)
    node = net.nodes[0]
    transport = node._transport_for(("192.0.2.200", PORT))
    assert transport is not None

    def refuse(data: bytes, addr: Any) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    transport.write = refuse  # type: ignore[method-assign]
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for _ in range(5):
            assert node._write(("192.0.2.200", PORT), b"x") is False
        net.clock.advance(61)
        assert node._write(("192.0.2.200", PORT), b"x") is False
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert node.counters["send_errors"] == 6
    mine = [e for e in events if "cannot send to" in e.get("log_format", "")]
    assert len(mine) == 2
    assert all("log_failure" not in e for e in mine)
    assert mine[0]["error"] == "Invalid argument"


def _triangle(**cfg: Any) -> tuple[Net, OverlayNode, OverlayNode, OverlayNode]:
    """Asker ``o`` knows only ``a``; ``a`` knows the searched node ``t``; ``o`` does not."""
    net = Net(3, **cfg)
    o, a, t = net.nodes
    net.result(o.ping(net.addr(a)))
    net.result(t.ping(net.addr(a)))
    assert t.node_id not in o.routing_table and t.node_id in a.routing_table
    return net, o, a, t


def test_searched_node_introduced_greets_the_asker() -> None:
    """A peer that knows the searched node introduces it; its greeting ends the lookup.

    One-way delay 10 ms: asker to ``a`` to ``t`` to asker is 30 ms, one delay less
    than ``a``'s answer, the asker's request to ``t`` and ``t``'s answer (40 ms).
    """
    net, o, a, t = _triangle()
    start = net.clock.seconds()
    d = o.find(t.node_id)
    found = net.result(d)
    assert found is not None and found.node_id == t.node_id
    assert net.clock.seconds() - start == pytest.approx(0.03, abs=0.006)
    assert a.counters["introductions_sent"] == 1
    assert t.counters["introductions_in"] == 1 and t.counters["greetings_sent"] == 1
    assert o.counters["lookups_greeted"] == 1 and o.counters["lookups_found"] == 1
    net.run(0.2)  # the asker's own request to t is answered and ignored
    assert o.counters["dropped"] == 0 and not o._seeking


def test_without_introductions_the_asker_asks_the_searched_node() -> None:
    """``introductions = False``: no INTRODUCE, the lookup takes the four one-way delays."""
    net, o, a, t = _triangle(introductions=False)
    start = net.clock.seconds()
    found = net.result(o.find(t.node_id))
    assert found is not None and found.node_id == t.node_id
    assert net.clock.seconds() - start == pytest.approx(0.04, abs=0.006)
    assert a.counters["introductions_sent"] == 0 and o.counters["lookups_greeted"] == 0


def test_greeting_must_carry_a_transaction_id_of_the_lookup() -> None:
    """A greeting with an unknown transaction ID ends nothing and is counted as a drop."""
    net, o, a, t = _triangle()
    a._send(net.addr(o), wire.HERE, 12345, None)  # no lookup at all
    net.run(0.05)
    assert o.counters["dropped_unexpected_here"] == 1
    d = o.find(t.node_id)
    t._send(net.addr(o), wire.HERE, 54321, None)  # arrives before the real one
    found = net.result(d)
    assert found is not None and found.node_id == t.node_id
    assert o.counters["dropped_unexpected_here"] == 2
    assert o.counters["lookups_greeted"] == 1


def test_greeting_after_the_searched_node_answered_is_late_not_dropped() -> None:
    """The asker knew the searched node: its answer ends the lookup, the greeting is late."""
    net, o, a, t = _triangle()
    net.result(o.ping(net.addr(t)))
    found = net.result(o.find(t.node_id))
    assert found is not None and found.node_id == t.node_id
    net.run(0.2)
    assert a.counters["introductions_sent"] == 1 and t.counters["greetings_sent"] == 1
    c = o.counters
    assert c["lookups_greeted"] == 0 and c["greetings_late"] == 1 and c["dropped"] == 0


def test_greetings_are_rate_limited_and_sent_once_per_asker() -> None:
    """Introductions cannot make a node send without bound, nor greet one asker twice."""
    net, o, a, t = _triangle(greeting_rate=5.0)
    packed = wire.pack_host("192.0.2.1")
    for port in range(5001, 5031):  # 30 askers
        a._send(net.addr(t), wire.INTRODUCE, port, [packed, port])
    net.run(0.05)
    c = t.counters
    assert c["introductions_in"] == 30
    assert c["greetings_sent"] == 10  # the burst: twice the rate
    assert c["introductions_limited"] == 20
    net.run(2.0)  # tokens refill; the greeted askers' second
    host, port = net.addr(o)
    for txid in (1, 2, 3):
        a._send(net.addr(t), wire.INTRODUCE, txid, [wire.pack_host(host), port])
    net.run(0.05)
    assert t.counters["greetings_sent"] == 11  # one asker, one greeting within a second
    assert o.counters["dropped_unexpected_here"] == 1
    net.run(1.0)
    a._send(net.addr(t), wire.INTRODUCE, 4, [wire.pack_host(host), port])
    net.run(0.05)
    assert t.counters["greetings_sent"] == 12


def test_peers_that_know_each_other_authenticate_with_macs() -> None:
    """First contact is signed; once a node has heard from a peer, its messages carry a MAC."""
    net = Net(2, signed=True)
    a, b = net.nodes
    net.net.log = []
    assert net.result(b.join([net.addr(a)])) == 1
    first = net.net.log[0]
    assert first[0] == net.addr(b) and first[2][1] == wire.FLAG_SIGNED
    # a learnt b's key from that request: its answer already carries a MAC for b.
    answer = next(d for src, dst, d in net.net.log if src == net.addr(a))
    assert answer[1] == wire.FLAG_MAC and answer[-20:-16] == b.node_id[:4]
    net.net.log = []
    assert net.result(b.ping(net.addr(a), a.node_id)) == a.node_id
    flags = [d[1] for _, _, d in net.net.log]
    assert flags == [wire.FLAG_MAC, wire.FLAG_MAC]
    for node in (a, b):
        c = node.counters
        assert c["macs_out"] > 0 and c["dropped"] == 0 and c["bans_total"] == 0
    # The MAC'd PING is 44 bytes shorter than the signed one (20-byte trailer, not 64).
    mac_ping = net.net.log[0][2]
    txid = wire.decode(mac_ping, keys=a.identity.pair_keys).txid
    signed_ping = wire.encode(
        wire.PING, txid, b.node_id, b.identity.public_key, 0, None, b.identity.signer
    )
    assert len(signed_ping) - len(mac_ping) == 44


def test_mac_for_the_previous_owner_of_an_address_is_dropped_not_banned() -> None:
    """A node that took over an address drops MACs meant for the old one, without a ban."""
    net = Net(2, signed=True, rpc_timeout=0.5, rpc_retries=0)
    a, b = net.nodes
    net.result(b.join([net.addr(a)]))
    address = net.addr(a)
    a.transport.stopListening()
    successor = OverlayNode(
        Identity.generate(), net.clock, config=OverlayConfig(), rng=random.Random(7)
    )
    net.net.listen(address, successor)
    with pytest.raises(RequestTimeout):
        net.result(b.ping(address, a.node_id))
    c = successor.counters
    assert c["dropped_not_for_me"] == 1 and c["bans_total"] == 0
    # Asked without the old ID, the newcomer answers (signed first contact).
    assert net.result(b.ping(address)) == successor.node_id


def test_simulated_nodes_send_mac_trailers_of_zeros() -> None:
    """Without keys (simulations) MAC'd datagrams have the real size, zeros, and pass."""
    net = Net(3)
    net.join_all()
    net.net.log = []
    a, b = net.nodes[:2]
    assert net.result(a.ping(net.addr(b), b.node_id)) == b.node_id
    for _, _, data in net.net.log:
        assert data[1] == wire.FLAG_MAC and data[-16:] == bytes(16)
    assert all(n.counters["dropped"] == 0 for n in net.nodes)


@pytest.mark.parametrize("narrow", [True, False])
def test_get_near_the_replicas_asks_one_node_first(narrow: bool) -> None:
    """A getter that knows the key's neighbourhood asks one node, not alpha (when narrow)."""
    net = Net(12, k=4, narrow_value_lookups=narrow)
    net.join_all()
    holder = net.nodes[5]
    key = holder.node_id  # the holder is the closest node to the key
    assert net.result(net.nodes[1].put(key, b"v")) >= 1
    key_int = int.from_bytes(key, "big")
    by_distance = sorted(net.nodes, key=lambda n: int.from_bytes(n.node_id, "big") ^ key_int)
    getter = by_distance[-1]  # the farthest node: not a replica, no local copy
    assert not getter.store.get(key, net.clock.seconds())
    assert net.result(getter.get(key)) == [b"v"]
    c = getter.counters
    assert c["value_lookups"] == 1
    assert c["value_lookups_narrow"] == (1 if narrow else 0)
    assert c["value_lookup_requests"] == (1 if narrow else 3)


def test_routing_table_estimates_the_overlay_size() -> None:
    """The size estimate from the own neighbourhood is near the number of uniform IDs."""
    rng = random.Random(3)
    table = RoutingTable(rng.randbytes(20), k=20)
    for i in range(2000):
        table.seen(rng.randbytes(20), ("192.0.2.1", 4000 + i), 0.0)
    assert 1000 < table.estimated_size() < 4000
    assert RoutingTable(bytes(20)).estimated_size() == 0.0


@pytest.mark.parametrize("narrow", [True, False])
def test_newcomer_gets_the_values_it_is_a_replica_of(narrow: bool) -> None:
    """A node that joins after values were stored receives them (one sender per key), so a
    get that asks it first returns the whole set, not only what was stored since."""
    net = Net(8, narrow_value_lookups=narrow)
    net.join_all()
    key = b"S" * 20
    assert net.result(net.nodes[1].put(key, b"v1", ttl=500)) == 8
    newcomer = net.add()
    net.result(newcomer.join([net.addr(net.nodes[0])]))
    net.run(1)
    now = net.clock.seconds()
    held = newcomer.store.get(key, now)
    assert [v for v, _ in held] == [b"v1"]
    assert 490 < held[0][1] < 500  # the time it had left, not a fresh TTL
    assert sum(n.counters["values_handed_over"] for n in net.nodes) == 1
    # A value stored after the join reaches every node; the set read stays whole.
    assert net.result(net.nodes[2].put(key, b"v2", ttl=500)) == 9
    reader = net.add()
    net.result(reader.join([net.addr(newcomer)]))
    net.run(1)
    for node in net.nodes:
        assert sorted(v for v, _ in node.store.get(key, net.clock.seconds())) == [b"v1", b"v2"]
    assert sorted(net.result(reader.get(key))) == [b"v1", b"v2"]


def test_no_hand_over_to_a_node_outside_the_replica_set() -> None:
    """With k = 3, a newcomer far from the key gets nothing handed over."""
    net = Net(12, k=3)
    net.join_all()
    newcomer = net.add()
    key_int = int.from_bytes(newcomer.node_id, "big") ^ (1 << 159)  # opposite half
    key = key_int.to_bytes(20, "big")
    assert net.result(net.nodes[1].put(key, b"far", ttl=500)) >= 3
    net.result(newcomer.join([net.addr(net.nodes[0])]))
    net.run(1)
    replicas = sorted(net.nodes[:-1], key=lambda n: int.from_bytes(n.node_id, "big") ^ key_int)
    far = (int.from_bytes(newcomer.node_id, "big") ^ key_int) > (
        int.from_bytes(replicas[2].node_id, "big") ^ key_int
    )
    assert far
    assert not newcomer.store.get(key, net.clock.seconds())
    assert sum(n.counters["values_handed_over"] for n in net.nodes) == 0


def _island(**cfg: Any) -> tuple[Net, OverlayNode, OverlayNode, list[bool]]:
    """Five joined nodes; node 5 fails to join through node 0, then node 6 joins through it."""
    net = Net(7, rpc_timeout=0.5, **cfg)
    main, cut, newcomer = net.nodes[:5], net.nodes[5], net.nodes[6]
    for node in main[1:]:
        net.result(node.join([net.addr(main[0])]))
    seed = net.addr(main[0])
    cut_addr = net.addr(cut)
    blocked = [True]
    # Every datagram between the cut-off node and the seed is lost while blocked.
    _lose(net, lambda src, dst, data: blocked[0] and {src, dst} == {seed, cut_addr})
    with pytest.raises(JoinError):
        net.result(cut.join([seed], attempts=2), seconds=5)
    blocked[0] = False
    assert net.result(newcomer.join([cut_addr])) == 1
    return net, cut, newcomer, blocked


def test_node_cut_off_from_its_seeds_joins_again() -> None:
    """A node knowing a few peers but none of its seeds joins through them again."""
    net, cut, newcomer, _ = _island()
    main = net.nodes[:5]
    # The two know only each other: an island no lookup can leave.
    assert len(cut.routing_table) == 1 and len(newcomer.routing_table) == 1
    assert cut.counters["rejoins"] == 0
    net.run(61)  # the first minutely check comes within the first minute
    assert cut.counters["rejoins"] == 1
    assert all(n.node_id in cut.routing_table for n in main)
    # The island is gone: a node of the main part finds the newcomer.
    contacts = net.result(main[3].lookup(newcomer.node_id))
    assert contacts[0].node_id == newcomer.node_id
    # Knowing its seed now, the node does not join again.
    net.run(180)
    assert cut.counters["rejoins"] == 1
    # The newcomer knew its seed all along: it never joined again.
    assert newcomer.counters["rejoins"] == 0


def test_rejoins_back_off_while_the_seeds_stay_unreachable() -> None:
    """While the seeds stay out of reach the node tries after 1, 2, 4, ... minutes."""
    net, cut, _, blocked = _island()
    blocked[0] = True
    net.run(60 * 8)
    # Checks once a minute: attempts at about 1, 2, 4 and 8 minutes, not 8.
    assert 2 <= cut.counters["rejoins"] <= 4
    assert cut.counters["rejoins"] < 8


@pytest.mark.parametrize("k", [4, 20], ids=["k-peers-known", "seed-known"])
def test_nodes_that_know_k_peers_or_a_seed_never_join_again(k: int) -> None:
    """A node with k peers, or with fewer but its seed among them, does not rejoin."""
    net = Net(6, k=k)
    net.join_all()
    net.run(300)
    assert all(len(n.routing_table) == 5 for n in net.nodes)
    assert all(n.counters["rejoins"] == 0 for n in net.nodes)
