"""Delay forwarded IPv4 packets per (source, destination) pair: a small NFQUEUE client.

``tc netem`` is not available on every test machine, but an iptables rule
``-j NFQUEUE --queue-num N --queue-bypass`` and the kernel's nfnetlink_queue
are. This program binds queue ``N`` over a raw netlink socket
(``NETLINK_NETFILTER``, no library), reads each queued packet's IPv4 header and
gives the kernel its ``NF_ACCEPT`` verdict only after the one-way delay of the
packet's (source site, destination site) pair. It runs inside the router
namespace of a test network; the rule goes into that namespace's ``FORWARD``
chain, so every packet between two hosts waits once.

The configuration is a JSON file::

    {"site_of": {"192.0.2.2": "A", "198.51.100.2": "R1"},
     "rtt_ms": {"A": {"A": 2, "R1": 95}},        # symmetric; one way is half
     "noisy": {"198.51.100.2": [0.3, 2.0]},      # per-packet factor range
     "seed": 1}

Addresses of no known site, packets that are not IPv4 or cannot be parsed are
accepted at once. At most ``--max-held`` packets wait (the kernel queue is set to
the same length and *fails open*: a packet beyond it passes undelayed). The
program ends by itself after ``--lifetime`` seconds, on SIGTERM or SIGINT,
accepting everything it still holds, and prints its counters as one JSON line.

Message layouts (``linux/netfilter/nfnetlink_queue.h``, ``nfnetlink.h``):
``nlmsghdr`` (len u32, type u16, flags u16, seq u32, pid u32, host order),
then ``nfgenmsg`` (family u8, version u8, res_id be16 = queue number), then
attributes (len u16, type u16, 4-byte aligned). Message types are
``NFNL_SUBSYS_QUEUE (3) << 8 | NFQNL_MSG_*`` (PACKET 0, VERDICT 1, CONFIG 2).
``nfqnl_msg_config_cmd`` is (command u8, pad u8, pf be16);
``nfqnl_msg_config_params`` (copy_range be32, copy_mode u8, packed);
``nfqnl_msg_packet_hdr`` (packet_id be32, hw_protocol be16, hook u8);
``nfqnl_msg_verdict_hdr`` (verdict be32, id be32).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import ipaddress
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_PAYLOAD = 10

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 1 << 0

NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2

NF_ACCEPT = 1

NLA_TYPE_MASK = 0x3FFF
#: Bytes of each packet copied to us: the IPv4 header's addresses are at 12..20.
COPY_RANGE = 64

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLATTR = struct.Struct("=HH")


class NetlinkError(OSError):
    """The kernel refused a configuration message (its errno is in ``errno``)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def message(msg: int, queue: int, attrs: bytes, flags: int, seq: int, family: int = 0) -> bytes:
    """An nfnetlink queue message: nlmsghdr, nfgenmsg, attributes."""
    body = _NFGENMSG.pack(family, 0, queue) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Attributes of a message body (after nfgenmsg) by type; a malformed tail is ignored."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, pos)
        if length < _NLATTR.size or pos + length > len(data):
            break
        out[kind & NLA_TYPE_MASK] = data[pos + _NLATTR.size : pos + length]
        pos += _align(length)
    return out


def split_messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, seq, payload) of each netlink message in one datagram."""
    out = []
    pos = 0
    while pos + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size or pos + length > len(data):
            break
        out.append((kind, seq, data[pos + _NLMSGHDR.size : pos + length]))
        pos += _align(length)
    return out


def ipv4_pair(payload: bytes) -> tuple[str, str] | None:
    """Source and destination of an IPv4 packet, or None."""
    if len(payload) < 20 or payload[0] >> 4 != 4:
        return None
    return (
        str(ipaddress.IPv4Address(payload[12:16])),
        str(ipaddress.IPv4Address(payload[16:20])),
    )


class DelayTable:
    """One-way delays (seconds) from the JSON configuration described in the module doc."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.site_of: dict[str, str] = {str(k): str(v) for k, v in config["site_of"].items()}
        self.rtt: dict[tuple[str, str], float] = {}
        for a, row in config["rtt_ms"].items():
            for b, ms in row.items():
                v = float(ms) / 1000.0
                if not 0 <= v <= 10:
                    raise ValueError(f"RTT {a}-{b} must be 0 to 10000 ms, not {ms!r}")
                self.rtt[(a, b)] = self.rtt[(b, a)] = v
        self.noisy: dict[str, tuple[float, float]] = {}
        for host, (lo, hi) in config.get("noisy", {}).items():
            if not 0 <= float(lo) <= float(hi) <= 10:
                raise ValueError(f"noise range of {host} must be 0 <= low <= high <= 10")
            self.noisy[str(host)] = (float(lo), float(hi))
        self.rng = random.Random(config.get("seed", 0))

    def one_way(self, src: str, dst: str) -> float | None:
        """The delay of a packet src -> dst, or None when either site is unknown."""
        a, b = self.site_of.get(src), self.site_of.get(dst)
        if a is None or b is None:
            return None
        rtt = self.rtt.get((a, b))
        if rtt is None:
            return None
        v = rtt / 2.0
        for host in (src, dst):
            span = self.noisy.get(host)
            if span is not None:
                v *= self.rng.uniform(*span)
        return v


class Delayer:
    """The queue client: bind, hold, release; see the module docstring."""

    def __init__(self, queue: int, table: DelayTable, max_held: int) -> None:
        self.queue = queue
        self.table = table
        self.max_held = max_held
        self.counters: Counter[str] = Counter()
        self.held: list[tuple[float, int, int]] = []  # (due, seq, packet id)
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        except OSError:
            pass

    # ------------------------------------------------------------ configuration

    def _request(self, attrs: bytes, family: int = 0) -> None:
        """Send a CONFIG message with an ACK request; raise NetlinkError on a refusal."""
        self._seq += 1
        seq = self._seq
        self.sock.send(
            message(NFQNL_MSG_CONFIG, self.queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq, family)
        )
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], 0.5)
            if not ready:
                continue
            for kind, got_seq, payload in split_messages(self.sock.recv(65536)):
                if kind == NLMSG_ERROR and got_seq == seq:
                    (code,) = struct.unpack_from("=i", payload)
                    if code != 0:
                        raise NetlinkError(-code, os.strerror(-code))
                    return
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    self._on_packet(payload)  # a packet before the ack: handle it
        raise NetlinkError(errno.ETIMEDOUT, "no answer to a queue configuration message")

    def bind(self) -> None:
        """Bind the queue, copy the first bytes of each packet, bound and fail open."""
        cmd = struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET)
        self._request(attr(NFQA_CFG_CMD, cmd), family=socket.AF_INET)
        params = struct.pack("!IB", COPY_RANGE, NFQNL_COPY_PACKET)
        self._request(attr(NFQA_CFG_PARAMS, params))
        self._request(attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", self.max_held)))
        try:
            self._request(
                attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
                + attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
            )
        except NetlinkError as e:  # old kernels: the queue drops instead of passing
            print(f"netdelay: fail-open not set: {e}", file=sys.stderr, flush=True)

    def unbind(self) -> None:
        cmd = struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, socket.AF_INET)
        try:
            self._request(attr(NFQA_CFG_CMD, cmd), family=socket.AF_INET)
        except OSError:
            pass

    # ------------------------------------------------------------ packets

    def verdict(self, packet_id: int) -> None:
        hdr = struct.pack("!II", NF_ACCEPT, packet_id)
        msg = message(NFQNL_MSG_VERDICT, self.queue, attr(NFQA_VERDICT_HDR, hdr), NLM_F_REQUEST, 0)
        try:
            self.sock.send(msg)
            self.counters["accepted"] += 1
        except OSError:
            self.counters["verdict_errors"] += 1

    def _on_packet(self, payload: bytes) -> None:
        attrs = parse_attrs(payload[_NFGENMSG.size :])
        hdr = attrs.get(NFQA_PACKET_HDR)
        if hdr is None or len(hdr) < 4:
            self.counters["no_id"] += 1  # nothing to give a verdict for
            return
        (packet_id,) = struct.unpack_from("!I", hdr)
        self.counters["packets"] += 1
        pair = ipv4_pair(attrs.get(NFQA_PAYLOAD, b""))
        delay = self.table.one_way(*pair) if pair is not None else None
        if delay is None or delay <= 0:
            self.counters["unparsed" if pair is None else "unknown_pair"] += 1
            self.verdict(packet_id)
            return
        if len(self.held) >= self.max_held:
            self.counters["overflow"] += 1
            self.verdict(packet_id)
            return
        self.counters["delayed"] += 1
        self._seq += 1
        heapq.heappush(self.held, (time.monotonic() + delay, self._seq, packet_id))

    def _release_due(self) -> None:
        now = time.monotonic()
        while self.held and self.held[0][0] <= now:
            _, _, packet_id = heapq.heappop(self.held)
            self.verdict(packet_id)

    def _drain(self) -> None:
        """Read every message waiting on the socket."""
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.counters["enobufs"] += 1
                    continue
                raise
            for kind, _seq, payload in split_messages(data):
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    self._on_packet(payload)
                elif kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload) if len(payload) >= 4 else (0,)
                    if code != 0:
                        self.counters["kernel_errors"] += 1
            self._release_due()

    def run(self, lifetime: float, stop: list[bool]) -> None:
        end = time.monotonic() + lifetime
        while not stop[0]:
            now = time.monotonic()
            if now >= end:
                self.counters["lifetime_reached"] = 1
                break
            wait = end - now
            if self.held:
                wait = min(wait, max(0.0, self.held[0][0] - now))
            try:
                ready, _, _ = select.select([self.sock], [], [], min(wait, 0.5))
            except InterruptedError:
                continue
            if ready:
                self._drain()
            self._release_due()
        while self.held:
            self.verdict(heapq.heappop(self.held)[2])


def start_delayer(
    lab: Any, router: Any, config: dict[str, Any], queue: int = 0, lifetime: float = 600.0
) -> Any:
    """Run this program in ``router`` (a test :class:`~tests.integration.netns.Namespace`).

    The config is written to the lab's work directory; once the queue is bound, every
    forwarded packet goes to it (``iptables -A FORWARD -j NFQUEUE --queue-bypass``: should
    the program end, packets pass undelayed). Returns the lab's
    :class:`~tests.integration.netns.Process`; raises AssertionError with the program's
    output when it cannot bind.
    """
    from tests.integration.netns import wait_for

    path = lab.workdir / f"netdelay-{queue}.json"
    path.write_text(json.dumps(config))
    proc = lab.spawn(
        router,
        sys.executable,
        os.path.abspath(__file__),
        "--queue",
        str(queue),
        "--config",
        str(path),
        "--lifetime",
        str(lifetime),
        log_name=f"netdelay-{queue}.log",
    )

    def bound() -> bool:
        if not proc.alive():
            raise AssertionError(f"netdelay exited:\n{proc.output()}")
        return "netdelay: bound queue" in proc.output()

    wait_for(bound, 30, "netdelay to bind its queue")
    router.run(
        "iptables", "-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"
    )
    return proc


def counters(proc: Any) -> dict[str, int]:
    """The counters a stopped delayer printed (empty while it runs)."""
    for line in reversed(proc.output().splitlines()):
        if line.startswith("netdelay: counters "):
            return dict(json.loads(line[len("netdelay: counters ") :]))
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Hold queued IPv4 packets for a per-site-pair one-way delay (NFQUEUE)."
    )
    parser.add_argument("--queue", type=int, default=0, help="NFQUEUE number (0-65535)")
    parser.add_argument("--config", required=True, help="JSON file: site_of, rtt_ms, noisy, seed")
    parser.add_argument(
        "--lifetime", type=float, default=600.0, help="seconds after which it ends by itself"
    )
    parser.add_argument(
        "--max-held", type=int, default=4096, help="most packets held at once (and queue length)"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.queue <= 65535 or not 1 <= args.max_held <= 65536 or args.lifetime <= 0:
        parser.error("queue 0-65535, max-held 1-65536 and a positive lifetime are required")
    with open(args.config) as f:
        table = DelayTable(json.load(f))
    stop = [False]

    def on_signal(signum: int, frame: Any) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        delayer = Delayer(args.queue, table, args.max_held)
        delayer.bind()
    except OSError as e:
        print(f"netdelay: cannot bind queue {args.queue}: {e}", flush=True)
        return 2
    print(f"netdelay: bound queue {args.queue}", flush=True)
    try:
        delayer.run(args.lifetime, stop)
    finally:
        delayer.unbind()
        print("netdelay: counters " + json.dumps(dict(delayer.counters)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
