"""The overlay node: Kademlia RPCs, lookups, DHT storage and application RPC on one UDP port.

:class:`OverlayNode` is the Twisted adapter around the pure cores
(:mod:`~dnaagent.wire`, :mod:`~dnaagent.overlay.routing`,
:mod:`~dnaagent.overlay.lookup`, :mod:`~dnaagent.overlay.storage`). It takes its
clock and its datagram transport by injection and never touches the global
reactor, so the simulator runs this very class with a simulated clock and
network.

Public API::

    node = OverlayNode(identity, clock, role="core", config=OverlayConfig(), rng=None)

    # attach to a transport (either way)
    reactor.listenUDP(4001, node)                  # one socket
    listen_udp(reactor, node, 4001)                # IPv4 + IPv6 (dnaagent.overlay.udp)
    node.makeConnection(simulated_transport)       # simulator / tests
    node.endpoint()                                # a DatagramProtocol per extra socket

    node.join(seed_addresses) -> Deferred[int]     # contacts known afterwards
    node.lookup(node_id) -> Deferred[list[Contact]]   # k closest that answered
    node.find(node_id) -> Deferred[Contact | None]    # the node itself, if alive
    node.ping(address, node_id=None) -> Deferred[bytes]  # the peer's node ID
    node.get(key) -> Deferred[list[bytes]]
    node.put(key, value, ttl=None) -> Deferred[int]   # nodes that stored it
    node.leave() -> None                           # tell the contacts, stop
    node.announce(addresses) -> None               # link-local discovery datagrams

    node.register_handler(name, fn)                # fn(body, sender: Peer) -> value | Deferred
    node.unregister_handler(name)
    node.request(node_id_or_address, name, body, timeout=None) -> Deferred[body]
    node.request_closest(key, name, body, timeout=None) -> Deferred[body]

    node.node_id, node.role, node.routing_table, node.store
    node.counters -> dict[str, int]                # plain counters for SNMP
    node.peers() -> list[dict]                     # routing table for display

Addresses are ``(host, port)`` tuples with IPv4 or IPv6 literals; keys and node
IDs are 20-byte strings. A node that has left (or whose transport stopped)
fails new requests with :class:`~dnaagent.overlay.errors.NotRunning`.

Every incoming datagram is validated by :func:`dnaagent.wire.decode`; invalid
ones are dropped and counted per reason (``dropped_<reason>``), and their
sender address is banned for ``ban_seconds`` when the datagram was malformed,
badly signed or claimed an ID not matching its key. Stubs (role ``stub``) use
the DHT by asking cores; cores never put a stub into their routing table or
into a NODES answer, and stubs refuse DHT requests.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnaagent import wire
from dnaagent.errors import DnaAgentError
from dnaagent.guard.limits import TokenBucket
from dnaagent.overlay.contact import Address, Contact, Peer, RttEstimator
from dnaagent.overlay.errors import (
    JoinError,
    NotRunning,
    PeerNotFound,
    RemoteError,
    RequestTimeout,
    StoreRefused,
)
from dnaagent.overlay.identity import Identity
from dnaagent.overlay.lookup import Candidate, Lookup
from dnaagent.overlay.routing import RoutingTable
from dnaagent.overlay.settings import OverlayConfig
from dnaagent.overlay.storage import ValueStore
from dnaagent.wire import (
    ANNOUNCE,
    APP_REPLY,
    APP_REQUEST,
    ERROR,
    FIND_NODE,
    FIND_VALUE,
    HERE,
    INTRODUCE,
    LEAVE,
    NODES,
    PING,
    PONG,
    REPLY_TYPES,
    ROLE_CORE,
    ROLE_STUB,
    STORE,
    STORED,
    VALUE,
    Message,
    WireError,
)

log = Logger()

#: Wire errors that get the sender's address banned. A different protocol
#: version or an unsigned datagram is not hostile in itself.
BAN_REASONS = frozenset(
    {
        "too_large",
        "too_short",
        "bad_flags",
        "malformed",
        "bad_type",
        "bad_field",
        "bad_body",
        "id_mismatch",
        "bad_signature",
    }
)
#: Drop reasons counted besides the wire ones.
NODE_DROP_REASONS = (
    "banned",
    "unexpected_reply",
    "self",
    "not_running",
    "not_served",
    "unexpected_here",
)

#: How long a peer that said LEAVE is kept out of the routing table (seconds).
_DEPARTED_SECONDS = 30.0
_DEPARTED_MAX = 10_000
#: How long an estimate of the overlay's size is used (seconds).
_SIZE_ESTIMATE_SECONDS = 30.0
#: Most peers whose public key is kept for MACs (the table starts over when full).
_PEER_KEYS_MAX = 4096
#: Room left in a datagram for the envelope around a body.
_ENVELOPE_ROOM = 200
#: Most finished retransmitted requests remembered for their duplicate answers.
_FINISHED_RESENT_MAX = 4096
#: Ban log lines written per window; further bans in the window are only counted.
_BAN_LOG_BURST = 10
_BAN_LOG_WINDOW = 60.0
#: Askers greeted lately, remembered to greet each once (several peers it
#: asked may know the searched node and introduce it), and for how long (s).
_GREETED_MAX = 1024
_GREETED_SECONDS = 1.0
#: Most finished node lookups remembered for their late greetings.
_SOUGHT_MAX = 4096

Handler = Callable[[Any, Peer], Any]


class Clock(Protocol):
    """What the node needs of its clock: ``IReactorTime``'s two methods."""

    def seconds(self) -> float:
        """Return the current time in seconds."""
        ...

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any) -> IDelayedCall:  # noqa: N802
        """Call ``callable(*args)`` after ``delay`` seconds."""
        ...


Target = bytes | Address


class _Rpc:
    """One request waiting for its reply."""

    __slots__ = (
        "txid",
        "address",
        "node_id",
        "sent",
        "hard_at",
        "on_reply",
        "on_fail",
        "on_soft",
        "timer",
        "data",
        "retries",
        "gap",
        "resend_at",
        "soft_at",
        "resent",
    )

    def __init__(
        self,
        txid: int,
        address: Address,
        node_id: bytes | None,
        sent: float,
        on_reply: Callable[[Message, float], None],
        on_fail: Callable[[Exception], None],
        on_soft: Callable[[], None] | None,
    ) -> None:
        self.txid = txid
        self.address = address
        self.node_id = node_id
        self.sent = sent
        self.hard_at = 0.0
        self.on_reply = on_reply
        self.on_fail = on_fail
        self.on_soft = on_soft
        self.timer: Any = None
        #: The encoded request, sent again (same transaction ID) when no answer comes.
        self.data = b""
        #: Retransmissions left, and the wait before the next one (doubles each time).
        self.retries = 0
        self.gap = 0.0
        self.resend_at = 0.0
        #: When ``on_soft`` is due (``inf`` when there is none).
        self.soft_at = float("inf")
        #: Whether the request was sent more than once (its RTT is then ambiguous).
        self.resent = False


class _Endpoint(DatagramProtocol):
    """Connects one more datagram transport (e.g. the IPv6 socket) to a node."""

    def __init__(self, node: OverlayNode) -> None:
        self.node = node

    def startProtocol(self) -> None:
        """Register the transport with the node."""
        self.node._attach(self.transport)

    def stopProtocol(self) -> None:
        """Unregister the transport."""
        self.node._detach(self.transport)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        """Hand the datagram to the node."""
        self.node.datagramReceived(data, addr)


def _family(transport: Any) -> str:
    """Return "v4", "v6" or "any" for a transport (fakes may not say)."""
    try:
        host = transport.getHost().host
    except Exception:
        return "any"
    return "v6" if ":" in str(host) else "v4"


class OverlayNode(DatagramProtocol):
    """A Kademlia node (core or stub) speaking the dnaagent wire protocol."""

    def __init__(
        self,
        identity: Identity,
        clock: Clock,
        *,
        role: str | None = None,
        config: OverlayConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config = config or OverlayConfig()
        config.validate()
        self.identity = identity
        self.node_id = identity.node_id
        self.role = role or config.role
        if self.role not in ("core", "stub"):
            raise ValueError(f"role must be core or stub, not {self.role!r}")
        self._role_code = ROLE_CORE if self.role == "core" else ROLE_STUB
        self._clock = clock
        self._rng = rng or random.Random()
        self._verify = config.require_signatures
        self._public_key = identity.public_key
        self._signer = identity.signer
        self._keys = identity.pair_keys
        #: Public keys of the peers heard from, by node ID: a message to one of them
        #: carries a MAC instead of a signature (see dnaagent.wire).
        self._peer_keys: dict[bytes, bytes] = {}
        #: Estimated overlay size (for narrow value lookups) and when it expires.
        self._size_estimate = 0.0
        self._size_estimate_at = 0.0
        self.routing_table = RoutingTable(
            self.node_id,
            k=config.k,
            max_failures=config.max_failures,
            liveness_age=config.liveness_age,
            now=clock.seconds(),
        )
        self.store = ValueStore(
            max_value_size=config.max_value_size,
            max_values_per_key=config.max_values_per_key,
            max_keys_per_peer=config.max_keys_per_peer,
            max_values=config.max_store_values,
            max_bytes=config.max_store_bytes,
        )
        self._rtt = RttEstimator()
        self._pending: dict[int, _Rpc] = {}
        #: Transaction IDs of finished requests that were sent more than once,
        #: until when a further answer to them is an expected duplicate.
        self._finished_resent: dict[int, float] = {}
        self._handlers: dict[str, Handler] = {}
        self._published: dict[bytes, dict[bytes, float]] = {}
        self._bans: dict[Any, float] = {}
        self._ban_log_until = 0.0
        self._ban_log_left = _BAN_LOG_BURST
        self._ban_log_quiet = 0
        self._departed: dict[bytes, float] = {}
        #: The seeds of the last join (see :meth:`_rejoin_if_cut_off`), when the
        #: next check may join through them again, and the wait after that.
        self._seeds: list[Address] = []
        self._rejoin_at = 0.0
        self._rejoin_wait = _REJOIN_FIRST
        self._transports: dict[str, Any] = {}
        self._single: Any = None  # the transport when there is exactly one
        self._timers: dict[str, Any] = {}
        self._running = False
        self._left = False
        self.discovery_addresses: list[Address] = []
        c: dict[str, int] = {
            "messages_in": 0,
            "messages_out": 0,
            "bytes_in": 0,
            "bytes_out": 0,
            "dropped": 0,
        }
        for reason in (*wire.REASONS, *NODE_DROP_REASONS):
            c["dropped_" + reason] = 0
        for name in (
            "bans_total",
            "macs_out",
            "signatures_out",
            "rpc_sent",
            "rpc_retransmits",
            "rpc_duplicate_replies",
            "rpc_timeouts",
            "send_errors",
            "lookups",
            "lookups_found",
            "value_lookups",
            "value_lookups_narrow",
            "value_lookup_requests",
            "store_refused",
            "values_handed_over",
            "rejoins",
            "app_requests_in",
            "app_requests_out",
            "announcements",
            "introductions_sent",
            "introductions_in",
            "introductions_limited",
            "greetings_sent",
            "lookups_greeted",
            "greetings_late",
        ):
            c[name] = 0
        self._counters = c
        #: Node lookups in progress by target, for the searched node's greeting (HERE).
        self._seeking: dict[bytes, list[tuple[Lookup, Deferred[Lookup]]]] = {}
        #: Greetings sent on introductions: rate-limited, one per asker a second.
        self._greetings = TokenBucket(
            config.greeting_rate, 2.0 * config.greeting_rate, clock.seconds()
        )
        self._greeted: dict[Address, float] = {}
        #: Nodes a finished node lookup searched, until when a greeting from them
        #: is an expected late one (the lookup ended through another answer).
        self._sought: dict[bytes, float] = {}
        #: When a failed send to each address was last logged (bounded).
        self._send_error_logged: dict[Address, float] = {}

    # ================================================================ transports

    def startProtocol(self) -> None:
        """Register the transport given by ``makeConnection``/``listenUDP``."""
        self._attach(self.transport)

    def stopProtocol(self) -> None:
        """Unregister the transport; stop when none is left."""
        self._detach(self.transport)

    def endpoint(self) -> DatagramProtocol:
        """Return a protocol that adds one more socket (another address family) to this node."""
        return _Endpoint(self)

    def _attach(self, transport: Any) -> None:
        self._transports[_family(transport)] = transport
        self._single = transport if len(self._transports) == 1 else None
        if not self._running and not self._left:
            self._running = True
            self._start_jobs()

    def _detach(self, transport: Any) -> None:
        for fam, t in list(self._transports.items()):
            if t is transport:
                del self._transports[fam]
        ts = self._transports
        self._single = next(iter(ts.values())) if len(ts) == 1 else None
        if not self._transports:
            self._stop()

    def _transport_for(self, address: Address) -> Any:
        if self._single is not None:
            return self._single
        ts = self._transports
        t = ts.get("v6" if ":" in address[0] else "v4")
        return t if t is not None else ts.get("any")

    @property
    def running(self) -> bool:
        """Whether the node has a transport and has not left."""
        return self._running

    # ================================================================ counters

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the node's counters as a plain dictionary."""
        self._expire_bans(self._clock.seconds())
        out = dict(self._counters)
        out["banned_peers"] = len(self._bans)
        out["routing_table_size"] = len(self.routing_table)
        out["stored_keys"] = len(self.store)
        out["stored_values"] = self.store.values
        out["pending_requests"] = len(self._pending)
        return out

    def peers(self) -> list[dict[str, object]]:
        """Return the routing table as plain data, closest first."""
        now = self._clock.seconds()
        contacts = self.routing_table.closest(self.routing_table.own_key, len(self.routing_table))
        out = []
        for c in contacts:
            d = c.as_dict(now)
            d["bucket"] = self.routing_table.bucket_index(c.key)
            out.append(d)
        return out

    # ================================================================ sending

    def _send(
        self, address: Address, mtype: int, txid: int, body: Any, to: bytes | None = None
    ) -> bool:
        """Encode and send one message to the node ``to`` (if known); return whether it left."""
        return self._write(address, self._encode(mtype, txid, body, to))

    def _encode(self, mtype: int, txid: int, body: Any, to: bytes | None) -> bytes:
        """Encode one message: with a MAC for ``to`` when its public key is known, else signed."""
        if to is not None:
            public = self._peer_keys.get(to)
            if public is not None:
                try:
                    key = self._keys.key_for(public)
                except WireError:
                    pass
                else:
                    data = wire.encode(
                        mtype,
                        txid,
                        self.node_id,
                        self._public_key,
                        self._role_code,
                        body,
                        self._signer,
                        key,
                        to,
                    )
                    self._counters["macs_out"] += 1
                    return data
        data = wire.encode(
            mtype, txid, self.node_id, self._public_key, self._role_code, body, self._signer
        )
        self._counters["signatures_out"] += 1
        return data

    def _write(self, address: Address, data: bytes) -> bool:
        """Send one encoded datagram; return whether it left."""
        t = self._transport_for(address)
        if t is None:
            self._counters["send_errors"] += 1
            return False
        try:
            t.write(data, address)
        except OSError as e:
            # Unreachable or invalid destinations are a condition of the network, not a
            # fault of the agent: one line (at most once a minute per address), no traceback.
            self._counters["send_errors"] += 1
            now = self._clock.seconds()
            if len(self._send_error_logged) > 1024:
                self._send_error_logged.clear()
            last = self._send_error_logged.get(address)
            if last is None or now - last >= 60.0:
                self._send_error_logged[address] = now
                log.warn(
                    "cannot send to {address}: {error}",
                    address=address,
                    error=e.strerror or e,
                )
            return False
        except Exception:
            self._counters["send_errors"] += 1
            log.failure("cannot send to {address}", address=address)
            return False
        c = self._counters
        c["messages_out"] += 1
        c["bytes_out"] += len(data)
        return True

    def _reply(self, address: Address, mtype: int, txid: int, body: Any, to: bytes) -> None:
        try:
            self._send(address, mtype, txid, body, to)
        except WireError:
            log.failure("cannot encode a reply to {address}", address=address)

    def _error(self, address: Address, txid: int, code: int, text: str, to: bytes) -> None:
        self._reply(address, ERROR, txid, [code, text[: wire.MAX_ERROR_TEXT]], to)

    def _rpc(
        self,
        address: Address,
        mtype: int,
        body: Any,
        node_id: bytes | None,
        on_reply: Callable[[Message, float], None],
        on_fail: Callable[[Exception], None],
        *,
        timeout: float | None = None,
        soft: float | None = None,
        on_soft: Callable[[], None] | None = None,
        retries: int | None = None,
        resend: float | None = None,
        txids: set[int] | None = None,
    ) -> bool:
        """Send a request; exactly one of ``on_reply``/``on_fail`` is called later.

        Returns ``False`` (and calls neither) when the request could not be
        sent at all; raises :class:`~dnaagent.wire.WireError` when it cannot be
        encoded (too large). ``on_soft`` is called after ``soft`` seconds without an
        answer; the request stays open until ``timeout``.

        A request without an answer is sent again, with the same transaction ID,
        up to ``retries`` times (default ``config.rpc_retries``) before the hard
        timeout: first after ``resend`` seconds (default: the peer's adaptive RTO,
        at least ``config.min_retransmit``), then after twice as long each time.
        A lost datagram then costs one RTO instead of the whole request.
        The request's transaction ID is added to ``txids`` when it is sent.
        """
        if not self._running or len(self._pending) >= self.config.max_pending:
            return False
        pending = self._pending
        getrandbits = self._rng.getrandbits
        txid = getrandbits(32)
        while txid in pending:
            txid = getrandbits(32)
        data = self._encode(mtype, txid, body, node_id)
        if not self._write(address, data):
            return False
        if txids is not None:
            txids.add(txid)
        cfg = self.config
        now = self._clock.seconds()
        rpc = _Rpc(txid, address, node_id, now, on_reply, on_fail, on_soft)
        hard = cfg.rpc_timeout if timeout is None else timeout
        rpc.hard_at = now + hard
        if on_soft is None or soft is None or soft >= hard:
            rpc.on_soft = None
        else:
            rpc.soft_at = now + soft
        rpc.retries = cfg.rpc_retries if retries is None else retries
        if rpc.retries > 0:
            if resend is None:
                if node_id is not None:
                    resend = self._soft_timeout_for(node_id)
                else:
                    resend = self._rtt.timeout(cfg.initial_rto, cfg.min_rto, cfg.max_rto)
                resend = min(max(resend, cfg.min_retransmit), hard / (rpc.retries + 2))
            if resend < hard:
                rpc.data = data
                rpc.gap = resend
                rpc.resend_at = now + resend
            else:
                rpc.retries = 0
        self._arm(rpc, now)
        pending[txid] = rpc
        self._counters["rpc_sent"] += 1
        return True

    def _arm(self, rpc: _Rpc, now: float) -> None:
        """Set the request's timer to its next event: soft timeout, resend or hard timeout."""
        at = rpc.hard_at
        if rpc.retries > 0 and rpc.resend_at < at:
            at = rpc.resend_at
        if rpc.on_soft is not None and rpc.soft_at < at:
            at = rpc.soft_at
        if at < rpc.hard_at:
            rpc.timer = self._clock.callLater(max(at - now, 0.0), self._rpc_tick, rpc)
        else:
            rpc.data = b""
            rpc.timer = self._clock.callLater(max(at - now, 0.0), self._rpc_expired, rpc)

    def _rpc_tick(self, rpc: _Rpc) -> None:
        """No answer yet: send the request again when due, call the soft handler when due."""
        now = self._clock.seconds()
        if rpc.retries > 0 and now >= rpc.resend_at and self._running:
            rpc.retries -= 1
            if self._write(rpc.address, rpc.data):
                rpc.resent = True
                self._counters["rpc_retransmits"] += 1
            # Back off (double the wait), but keep room for the copies left.
            rpc.gap = min(rpc.gap * 2, (rpc.hard_at - now) / (rpc.retries + 1))
            rpc.resend_at = now + rpc.gap
        on_soft = rpc.on_soft
        if on_soft is not None and now >= rpc.soft_at:
            rpc.on_soft = None
        else:
            on_soft = None
        if self._pending.get(rpc.txid) is rpc:
            self._arm(rpc, now)
        if on_soft is not None:
            try:
                on_soft()
            except Exception:
                log.failure("soft timeout handler failed")

    def _remember_resent(self, rpc: _Rpc, now: float) -> None:
        """Keep a resent request's ID a while: more answers to its copies may come."""
        _remember(
            self._finished_resent,
            rpc.txid,
            now + self.config.rpc_timeout,
            now,
            _FINISHED_RESENT_MAX,
        )

    def _rpc_expired(self, rpc: _Rpc) -> None:
        if self._pending.pop(rpc.txid, None) is None:
            return
        if rpc.resent:
            self._remember_resent(rpc, self._clock.seconds())
        self._counters["rpc_timeouts"] += 1
        if rpc.node_id is not None:
            self.routing_table.failed(rpc.node_id)
        try:
            rpc.on_fail(RequestTimeout(f"no answer from {rpc.address[0]} port {rpc.address[1]}"))
        except Exception:
            log.failure("timeout handler failed")

    def _soft_timeout_for(self, node_id: bytes) -> float:
        cfg = self.config
        default = self._rtt.timeout(cfg.initial_rto, cfg.min_rto, cfg.max_rto)
        c = self.routing_table.get(node_id)
        if c is None or c.srtt is None:
            return default
        return c.timeout(default, cfg.min_rto, cfg.max_rto)

    def _hedge_delay_for(self, node_id: bytes) -> float:
        """When to send a second request to a slow lookup target: ``srtt + rttvar``."""
        cfg = self.config
        c = self.routing_table.get(node_id)
        est = c if c is not None and c.srtt is not None else self._rtt
        if est.srtt is None:
            return cfg.initial_rto
        delay = est.srtt + est.rttvar
        return cfg.min_rto if delay < cfg.min_rto else cfg.max_rto if delay > cfg.max_rto else delay

    def _rtt_hint(self, node_id: bytes) -> float | None:
        c = self.routing_table.get(node_id)
        return None if c is None else c.srtt

    # ================================================================ receiving

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        """Validate one datagram and act on it; invalid ones are dropped and counted."""
        c = self._counters
        c["messages_in"] += 1
        c["bytes_in"] += len(data)
        if len(addr) > 2:
            addr = (addr[0], addr[1])
        if not self._running:
            self._drop("not_running")
            return
        if self._bans and addr in self._bans:
            if self._bans[addr] > self._clock.seconds():
                self._drop("banned")
                return
            del self._bans[addr]
        try:
            msg = wire.decode(data, verify=self._verify, keys=self._keys)
        except WireError as e:
            self._drop(e.reason)
            if e.reason in BAN_REASONS:
                self._ban(addr, e.reason)
            return
        sender = msg.sender_id
        if sender == self.node_id:
            self._drop("self")
            return
        peer_keys = self._peer_keys
        if sender not in peer_keys:
            if len(peer_keys) >= _PEER_KEYS_MAX:
                peer_keys.clear()
            peer_keys[sender] = msg.public_key
        mtype = msg.type
        if mtype in REPLY_TYPES:
            self._on_reply(msg, addr)
            return
        if msg.role == ROLE_CORE and mtype != LEAVE:
            self._saw(msg.sender_id, addr, None)
        try:
            if mtype == FIND_NODE:
                self._on_find_node(msg, addr)
            elif mtype == PING:
                self._reply(addr, PONG, msg.txid, None, sender)
            elif mtype == FIND_VALUE:
                self._on_find_value(msg, addr)
            elif mtype == STORE:
                self._on_store(msg, addr)
            elif mtype == APP_REQUEST:
                self._on_app_request(msg, addr)
            elif mtype == LEAVE:
                self.routing_table.remove(msg.sender_id)
                # Datagrams it sent before LEAVE may still arrive: do not let
                # them put it back.
                if len(self._departed) < _DEPARTED_MAX:
                    self._departed[msg.sender_id] = self._clock.seconds() + _DEPARTED_SECONDS
            elif mtype == ANNOUNCE:
                self._on_announce(msg, addr)
            elif mtype == INTRODUCE:
                self._on_introduce(msg, addr)
            elif mtype == HERE:
                self._on_here(msg, addr)
        except Exception:
            log.failure("handling {message} from {addr} failed", message=msg, addr=addr)

    def _drop(self, reason: str) -> None:
        c = self._counters
        c["dropped"] += 1
        c["dropped_" + reason] += 1

    def _ban(self, addr: Address, reason: str) -> None:
        bans = self._bans
        if addr not in bans:
            self._counters["bans_total"] += 1
            while len(bans) >= self.config.max_bans:
                del bans[next(iter(bans))]
            self._log_ban(addr, reason)
            contact = self.routing_table.find_address(addr)
            if contact is not None:
                self.routing_table.remove(contact.node_id)
        bans[addr] = self._clock.seconds() + self.config.ban_seconds

    def _log_ban(self, addr: Address, reason: str) -> None:
        """Log a ban, at most ``_BAN_LOG_BURST`` lines a minute, then one summary.

        A sender spoofing many source addresses would otherwise fill the log
        and spend the agent's CPU on it; the counters keep the full count.
        """
        now = self._clock.seconds()
        if now >= self._ban_log_until:
            if self._ban_log_quiet:
                log.info(
                    "{count} more address(es) banned without a log line in the last minute",
                    count=self._ban_log_quiet,
                )
            self._ban_log_until = now + _BAN_LOG_WINDOW
            self._ban_log_left = _BAN_LOG_BURST
            self._ban_log_quiet = 0
        if self._ban_log_left > 0:
            self._ban_log_left -= 1
            log.info(
                "banning {addr} for {seconds:g} s: {reason}",
                addr=addr,
                reason=reason,
                seconds=self.config.ban_seconds,
            )
            if not self._ban_log_left:
                log.info("further bans this minute are counted, not logged")
        else:
            self._ban_log_quiet += 1

    def _expire_bans(self, now: float) -> None:
        for addr in [a for a, until in self._bans.items() if until <= now]:
            del self._bans[addr]

    def _saw(self, node_id: bytes, addr: Address, rtt: float | None) -> None:
        departed = self._departed
        if departed and node_id in departed:
            if departed[node_id] > self._clock.seconds():
                return
            del departed[node_id]
        table = self.routing_table
        new = bool(self.store) and node_id not in table
        check = table.seen(node_id, addr, self._clock.seconds(), rtt)
        if check is not None:
            self._check_liveness(check)
        if new and node_id in table and self._role_code == ROLE_CORE:
            self._hand_over(node_id, addr)

    def _hand_over(self, node_id: bytes, addr: Address) -> None:
        """Store at a newcomer the values it is now a replica of (Kademlia's join rule).

        A node that joins holds nothing, yet lookups may ask it first (it can be
        among the ``k`` closest to a key, or the fastest such node for a narrow
        get): a set of values stored before it joined would then come back
        partial. For every key held here, when the newcomer is among the ``k``
        closest known nodes and this node is the closest of the others, this
        node stores its values there with the time they have left, so that one
        node, not ``k``, hands each key over.
        """
        table = self.routing_table
        k = self.config.k
        own = table.own_key
        new_key = int.from_bytes(node_id, "big")
        now = self._clock.seconds()
        buckets = table.buckets
        for key in self.store.keys():
            key_int = int.from_bytes(key, "big")
            own_dist = key_int ^ own
            # Every contact in the key's bucket is closer to the key than this node:
            # then another node hands it over (a cheap test that passes few keys).
            b = buckets[own_dist.bit_length() - 1] if own_dist else None
            if b is not None and len(b.contacts) > (node_id in b.contacts):
                continue
            new_dist = key_int ^ new_key
            closest = table.closest(key_int, k)
            if len(closest) >= k and (closest[-1].key ^ key_int) < new_dist:
                continue  # the newcomer is not a replica of this key
            if any(c.node_id != node_id and (c.key ^ key_int) < own_dist for c in closest):
                continue  # a closer node hands it over
            for value, left in self.store.get(key, now):
                self._counters["values_handed_over"] += 1
                self._rpc(
                    addr,
                    STORE,
                    [key, value, max(1, int(left))],
                    node_id,
                    _ignore_reply,
                    _ignore_failure,
                )

    def _check_liveness(self, contact: Contact) -> None:
        """Ping a full bucket's oldest contact; evict it if it does not answer."""
        node_id = contact.node_id
        table = self.routing_table

        def answered(msg: Message, rtt: float) -> None:
            table.check_done(node_id)

        def failed(err: Exception) -> None:
            table.failed(node_id, evict=True)
            table.check_done(node_id)

        if not self._rpc(contact.address, PING, None, node_id, answered, failed):
            table.check_done(node_id)

    def _on_reply(self, msg: Message, addr: Address) -> None:
        rpc = self._pending.get(msg.txid)
        if rpc is None and self._finished_resent:
            until = self._finished_resent.get(msg.txid)
            if until is not None and until > self._clock.seconds():
                # An answer to another copy of a retransmitted request: expected.
                self._counters["rpc_duplicate_replies"] += 1
                return
        if rpc is None or (
            msg.sender_id != rpc.node_id if rpc.node_id is not None else addr != rpc.address
        ):
            self._drop("unexpected_reply")
            return
        del self._pending[msg.txid]
        rpc.timer.cancel()
        now = self._clock.seconds()
        if rpc.resent:
            self._remember_resent(rpc, now)
        rtt = now - rpc.sent
        # Karn's rule: the answer to a request sent twice may answer either copy,
        # so its round-trip time is not measured.
        sample = None if rpc.resent else rtt
        if sample is not None:
            self._rtt.observe(sample)
        if msg.role == ROLE_CORE:
            self._saw(msg.sender_id, addr, sample)
        try:
            rpc.on_reply(msg, rtt)
        except Exception:
            log.failure("reply handler failed for {message}", message=msg)

    # ------------------------------------------------------------- requests

    def _not_served(self, msg: Message, addr: Address) -> bool:
        if self._role_code == ROLE_STUB:
            self._drop("not_served")
            self._error(
                addr, msg.txid, wire.ERR_NOT_SERVED, "stub nodes keep no DHT", msg.sender_id
            )
            return True
        return False

    def _nodes_body(self, target: bytes, exclude: bytes) -> list[bytes]:
        closest = self.routing_table.closest(
            int.from_bytes(target, "big"), self.config.k, exclude=exclude, ordered=False
        )
        # A link-local (fe80::/10) address means nothing on the asker's link:
        # such contacts are kept for the node's own use but never relayed.
        return wire.nodes_body(
            [c.record for c in closest if not c.v6],
            [c.record for c in closest if c.v6 and not c.link_local],
        )

    def _on_find_node(self, msg: Message, addr: Address) -> None:
        if self._not_served(msg, addr):
            return
        target = msg.body
        if self.config.introductions and target != msg.sender_id:
            known = self.routing_table.get(target)
            if known is not None and not known.failures:
                self._introduce(known, msg.txid, addr)
        self._reply(addr, NODES, msg.txid, self._nodes_body(target, msg.sender_id), msg.sender_id)

    def _introduce(self, contact: Contact, txid: int, asker: Address) -> None:
        """Tell ``contact``, the node an asker searches, to greet the asker (INTRODUCE).

        The asker's lookup then ends when the greeting (HERE) arrives: asker to
        us to the searched node to the asker, three one-way delays, instead of
        our answer and the asker's own request and its answer, four.
        """
        try:
            packed = wire.pack_host(asker[0])
        except WireError:
            return
        if wire.is_link_local(packed):
            return
        if self._send(contact.address, INTRODUCE, txid, [packed, asker[1]], contact.node_id):
            self._counters["introductions_sent"] += 1

    def _on_introduce(self, msg: Message, addr: Address) -> None:
        """A peer says someone searches this node: greet the asker (HERE), same txid."""
        c = self._counters
        c["introductions_in"] += 1
        if not self.config.introductions or self._role_code == ROLE_STUB:
            return
        packed, port = msg.body
        if wire.is_link_local(packed):
            return
        asker = (wire.unpack_host(packed), port)
        greeted = self._greeted
        now = self._clock.seconds()
        # One greeting per asker: the first introduction that arrives (the
        # fastest path) is answered, the others are not.
        if greeted.get(asker, 0.0) > now:
            return
        if (self._bans and asker in self._bans) or not self._greetings.take(now):
            # Introductions could make this node send to any address: the rate
            # limit bounds what a liar gets out of it.
            c["introductions_limited"] += 1
            return
        _remember(greeted, asker, now + _GREETED_SECONDS, now, _GREETED_MAX)
        if self._send(asker, HERE, msg.txid, None):
            c["greetings_sent"] += 1

    def _on_here(self, msg: Message, addr: Address) -> None:
        """The node a lookup searches greets us: that lookup has found it.

        Only a lookup that sent a request with the greeting's transaction ID
        accepts it, so that an old or unasked greeting ends nothing.
        """
        for lk, d in self._seeking.get(msg.sender_id, ()):
            if msg.txid in lk.txids:
                lk.reached(addr[0], addr[1])
                self._counters["lookups_greeted"] += 1
                self._lookup_send(lk, d, [])
                return
        until = self._sought.get(msg.sender_id)
        if until is not None and until > self._clock.seconds():
            # The lookup ended before, through the searched node's own answer.
            self._counters["greetings_late"] += 1
            return
        self._drop("unexpected_here")

    def _on_find_value(self, msg: Message, addr: Address) -> None:
        if self._not_served(msg, addr):
            return
        values = self.store.get(msg.body, self._clock.seconds())
        if not values:
            self._reply(
                addr, NODES, msg.txid, self._nodes_body(msg.body, msg.sender_id), msg.sender_id
            )
            return
        body = []
        room = wire.MAX_DATAGRAM - _ENVELOPE_ROOM
        for value, left in values:
            room -= len(value) + 16
            if room < 0:
                break
            body.append([value, max(1, int(left))])
        if not body:
            self._reply(
                addr, NODES, msg.txid, self._nodes_body(msg.body, msg.sender_id), msg.sender_id
            )
            return
        self._reply(addr, VALUE, msg.txid, body, msg.sender_id)

    def _on_store(self, msg: Message, addr: Address) -> None:
        if self._not_served(msg, addr):
            return
        key, value, ttl = msg.body
        try:
            self.store.put(key, value, ttl, msg.sender_id, self._clock.seconds())
        except StoreRefused as e:
            self._counters["store_refused"] += 1
            self._error(addr, msg.txid, wire.ERR_REFUSED, e.reason, msg.sender_id)
            return
        self._reply(addr, STORED, msg.txid, None, msg.sender_id)

    def _on_announce(self, msg: Message, addr: Address) -> None:
        if not self.config.discovery or self._role_code == ROLE_STUB:
            return
        self._rpc(addr, PING, None, msg.sender_id, _ignore_reply, _ignore_failure)

    def _on_app_request(self, msg: Message, addr: Address) -> None:
        self._counters["app_requests_in"] += 1
        name, body = msg.body
        fn = self._handlers.get(name)
        txid = msg.txid
        to = msg.sender_id
        if fn is None:
            self._error(addr, txid, wire.ERR_UNKNOWN_HANDLER, f"unknown handler {name!r}", to)
            return
        sender = Peer(msg.sender_id, addr, "core" if msg.role == ROLE_CORE else "stub")
        d = maybeDeferred(fn, body, sender)

        def answer(result: Any) -> None:
            try:
                sent = self._send(addr, APP_REPLY, txid, result, to)
            except WireError as e:
                log.failure("handler {name} returned an answer that cannot be sent", name=name)
                code = wire.ERR_TOO_LARGE if e.reason == "too_large" else wire.ERR_HANDLER_FAILED
                self._error(addr, txid, code, f"answer cannot be sent: {e.reason}", to)
                return
            if not sent:
                log.debug("answer of {name} to {addr} not sent", name=name, addr=addr)

        def failed(f: Failure) -> None:
            exc = f.value
            if isinstance(exc, DnaAgentError):
                # A refusal the handler chose (bad body, not running, rate limit): the
                # requester gets the reason; no traceback in the log.
                log.debug("handler {name} refused {addr}: {why}", name=name, addr=addr, why=exc)
            else:
                log.failure("handler {name} failed", f, name=name)
            text = str(exc) if isinstance(exc, DnaAgentError) else type(exc).__name__
            self._error(addr, txid, wire.ERR_HANDLER_FAILED, text, to)

        d.addCallbacks(answer, failed)
        d.addErrback(lambda f: log.failure("answering {name} failed", f, name=name))

    # ================================================================ lookups

    def _lookup(self, target: bytes, find_value: bool = False) -> Deferred[Lookup]:
        """Run one iterative lookup; the Deferred fires with the finished :class:`Lookup`."""
        cfg = self.config
        self._counters["lookups"] += 1
        # Unordered: the lookup sorts its candidates itself.
        target_key = int.from_bytes(target, "big")
        closest = self.routing_table.closest(target_key, cfg.k, ordered=False)
        lk = Lookup(
            target,
            [(c.node_id, c.address[0], c.address[1]) for c in closest],
            k=cfg.k,
            alpha=cfg.alpha,
            find_value=find_value,
            exclude=self.node_id,
            rtt_hint=self._rtt_hint,
            narrow=self._replica_radius(target_key, closest)
            if find_value and cfg.narrow_value_lookups
            else None,
        )
        d: Deferred[Lookup] = Deferred()
        if not find_value:
            self._seeking.setdefault(target, []).append((lk, d))
        self._lookup_send(lk, d, lk.start())
        return d

    def _replica_radius(self, key: int, contacts: list[Contact]) -> int | None:
        """Return the radius of ``key``'s replica set if a contact lies within it.

        Values are stored at the ``k`` closest nodes; with N nodes those lie within
        about ``k * 2**160 / N`` of the key (N estimated from the own
        neighbourhood, recomputed at most every ``_SIZE_ESTIMATE_SECONDS``).
        ``None`` when none of ``contacts`` is that close: the lookup must travel.
        Otherwise the radius returned is half that: the estimate is rough, and a
        node in the inner half almost surely holds the values.
        """
        if not contacts:
            return None
        now = self._clock.seconds()
        if now >= self._size_estimate_at:
            self._size_estimate = self.routing_table.estimated_size()
            self._size_estimate_at = now + _SIZE_ESTIMATE_SECONDS
        n = self._size_estimate
        k = self.config.k
        space = 1 << wire.ID_BITS
        if n <= k:
            return space
        radius = int(k * space / n)
        return radius // 2 if min(c.key ^ key for c in contacts) <= radius else None

    def _lookup_send(self, lk: Lookup, d: Deferred[Lookup], cands: list[Candidate]) -> None:
        work = cands
        while work:
            cand = work.pop()
            if not self._query(lk, d, cand):
                work.extend(lk.failed(cand.node_id))
        if lk.done and not d.called:
            c = self._counters
            if lk.found:
                c["lookups_found"] += 1
            if lk.find_value:
                c["value_lookups"] += 1
                c["value_lookup_requests"] += lk.queries
                if lk.narrow is not None:
                    c["value_lookups_narrow"] += 1
            if not lk.find_value:
                self._unseek(lk)
            self.routing_table.touch(lk.target_key, self._clock.seconds())
            d.callback(lk)

    def _unseek(self, lk: Lookup) -> None:
        waiting = self._seeking.get(lk.target)
        if waiting is None:
            return
        waiting[:] = [(other, d) for other, d in waiting if other is not lk]
        if not waiting:
            del self._seeking[lk.target]
        if lk.txids and self.config.introductions:
            now = self._clock.seconds()
            _remember(self._sought, lk.target, now + self.config.rpc_timeout, now, _SOUGHT_MAX)

    def _query(self, lk: Lookup, d: Deferred[Lookup], cand: Candidate) -> bool:
        node_id = cand.node_id
        # The searched node is the only one that can end a node lookup: when
        # it is slow, the request is sent again early (after srtt + rttvar instead
        # of the RTO) and more often, so that a delayed or lost datagram does not
        # decide the lookup's duration or its outcome.
        is_target = cand.dist == 0 and not lk.find_value

        def on_reply(msg: Message, rtt: float) -> None:
            t = msg.type
            if t == NODES:
                nxt = lk.answered(node_id, wire.iter_records(msg.body))
            elif t == VALUE and lk.find_value:
                nxt = lk.found_value(node_id, msg.body)
            else:
                nxt = lk.failed(node_id)
            self._lookup_send(lk, d, nxt)

        def on_fail(err: Exception) -> None:
            self._lookup_send(lk, d, lk.failed(node_id))

        def on_soft() -> None:
            self._lookup_send(lk, d, lk.soft_timeout(node_id))

        cfg = self.config
        if is_target:
            soft = resend = self._hedge_delay_for(node_id)
            # Its answer alone ends the lookup: two more copies than other requests.
            retries = cfg.rpc_retries + 2
        else:
            soft = self._soft_timeout_for(node_id)
            retries = cfg.rpc_retries
            # What _rpc would compute from the same RTO (done once here).
            resend = min(max(soft, cfg.min_retransmit), cfg.rpc_timeout / (retries + 2))
            if lk.width == 1:
                # A narrow value lookup's only request: widen as soon as it is late
                # (srtt + rttvar), not after a whole RTO.
                soft = min(soft, self._hedge_delay_for(node_id))
        return self._rpc(
            cand.address,
            FIND_VALUE if lk.find_value else FIND_NODE,
            lk.target,
            node_id,
            on_reply,
            on_fail,
            soft=soft,
            on_soft=on_soft,
            resend=resend,
            retries=retries,
            # A greeting (HERE) from the searched node must carry one of these.
            txids=None if lk.find_value else lk.txids,
        )

    def _contacts_of(self, lk: Lookup) -> list[Contact]:
        out = []
        for cand in lk.result():
            c = self.routing_table.get(cand.node_id)
            out.append(c if c is not None else Contact(cand.node_id, cand.address))
        return out

    def lookup(self, node_id: bytes) -> Deferred[list[Contact]]:
        """Find the ``k`` nodes closest to ``node_id`` that answer, closest first.

        Ends early when the node ``node_id`` itself answers (it is then first).
        """
        _check_id(node_id)
        if not self._running:
            return fail(NotRunning("the overlay node is not running"))
        return self._lookup(node_id).addCallback(self._contacts_of)

    def find(self, node_id: bytes) -> Deferred[Contact | None]:
        """Return the live node ``node_id``, or ``None`` when it cannot be found."""

        def pick(contacts: list[Contact]) -> Contact | None:
            if contacts and contacts[0].node_id == node_id:
                return contacts[0]
            return None

        return self.lookup(node_id).addCallback(pick)

    def ping(self, address: Address, node_id: bytes | None = None) -> Deferred[bytes]:
        """Ping ``address``; the Deferred fires with the peer's node ID."""
        d: Deferred[bytes] = Deferred()
        if not self._rpc(
            address,
            PING,
            None,
            node_id,
            lambda msg, rtt: d.callback(msg.sender_id),
            d.errback,
        ):
            return fail(NotRunning("cannot send: the overlay node is not running"))
        return d

    # ================================================================ join / leave

    def join(self, seeds: Iterable[Address], attempts: int = 3) -> Deferred[int]:
        """Join the overlay through ``seeds``; fires with the number of contacts.

        Pings every seed (up to ``attempts`` times), looks up the own ID and
        then refreshes the buckets beyond the nearest neighbour. Fails with
        :class:`JoinError` when seeds were given and none answered. Without
        seeds it announces on the local link when discovery is on and returns.
        """
        seeds = [s for s in seeds]
        if not self._running:
            return fail(NotRunning("the overlay node is not running"))
        if self.config.discovery and self.discovery_addresses:
            self.announce(self.discovery_addresses)
        if not seeds:
            return succeed(len(self.routing_table))
        self._seeds = [(str(h), int(p)) for h, p in seeds]

        def ping_seed(address: Address, left: int) -> Deferred[bool]:
            d = self.ping(address)

            def retry(f: Failure) -> Deferred[bool] | bool:
                if left > 1 and f.check(RequestTimeout):
                    return ping_seed(address, left - 1)
                log.info(
                    "seed {address} did not answer: {error}",
                    address=address,
                    error=f.getErrorMessage(),
                )
                return False

            return d.addCallbacks(lambda _: True, retry)

        pinged = DeferredList(
            [ping_seed((s[0], int(s[1])), attempts) for s in seeds], consumeErrors=True
        )

        def after_pings(_: object) -> Deferred[int] | int:
            if not len(self.routing_table):
                raise JoinError(f"none of {len(seeds)} seed(s) answered")
            return self._populate()

        return pinged.addCallback(after_pings)

    def _populate(self) -> Deferred[int]:
        """Look up the own ID, then refresh every bucket beyond the nearest neighbour."""

        def refresh(_: object) -> Deferred[int]:
            table = self.routing_table
            nearest = next(
                (i for i, b in enumerate(table.buckets) if b is not None and b.contacts), None
            )
            lookups = []
            if nearest is not None:
                for i in range(nearest + 1, wire.ID_BITS):
                    b = table.buckets[i]
                    if b is None or len(b.contacts) < table.k:
                        lookups.append(self._lookup(table.random_id_in_bucket(i, self._rng)))
            return DeferredList(lookups, consumeErrors=True).addCallback(joined)

        def joined(_: object) -> int:
            # Nodes near this one that joined at the same time were not yet known
            # to the nodes it asked (a lossy network makes joins slower and such
            # overlaps likelier): one more self-lookup a little later finds them,
            # long before the periodic neighbour refresh.
            delay = self.config.join_recheck_delay
            if delay > 0 and self._running:
                self._timers["join_recheck"] = self._clock.callLater(
                    delay * self._rng.uniform(0.75, 1.25), self._refresh_neighbours
                )
            return len(self.routing_table)

        return self._lookup(self.node_id).addCallback(refresh)

    def leave(self) -> None:
        """Leave gracefully: tell every contact, fail pending requests, stop."""
        if not self._running:
            return
        for c in self.routing_table:
            try:
                self._send(c.address, LEAVE, 0, None, c.node_id)
            except WireError:
                log.failure("cannot send LEAVE")
        self._left = True
        self._stop()

    def _stop(self) -> None:
        self._running = False
        self._seeking.clear()
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        pending, self._pending = self._pending, {}
        for rpc in pending.values():
            if rpc.timer is not None and rpc.timer.active():
                rpc.timer.cancel()
            try:
                rpc.on_fail(NotRunning("the overlay node stopped"))
            except Exception:
                log.failure("failing a pending request")

    def announce(self, addresses: Iterable[Address]) -> None:
        """Send a discovery announcement to each address (broadcast/multicast)."""
        for address in addresses:
            self._counters["announcements"] += 1
            try:
                self._send(address, ANNOUNCE, 0, None)
            except WireError:
                log.failure("cannot encode an announcement")

    # ================================================================ DHT

    def get(self, key: bytes) -> Deferred[list[bytes]]:
        """Return the values stored under ``key`` (empty when there are none).

        Ends at the first node that has values; the closest node on the way
        that had none caches them for at most ``cache_ttl``.
        """
        _check_id(key)
        now = self._clock.seconds()
        local = self.store.get(key, now)
        if local:
            return succeed([v for v, _ in local])
        if not self._running:
            return fail(NotRunning("the overlay node is not running"))

        def done(lk: Lookup) -> list[bytes]:
            if lk.value is None:
                return []
            cache_at = lk.cache_at
            if cache_at is not None:
                for value, left in lk.value:
                    ttl = max(1, int(min(left, self.config.cache_ttl)))
                    self._rpc(
                        cache_at.address,
                        STORE,
                        [key, value, ttl],
                        cache_at.node_id,
                        _ignore_reply,
                        _ignore_failure,
                    )
            return [value for value, _ in lk.value]

        return self._lookup(key, find_value=True).addCallback(done)

    def put(self, key: bytes, value: bytes, ttl: float | None = None) -> Deferred[int]:
        """Store ``value`` under ``key`` at the ``k`` closest nodes for ``ttl`` seconds.

        The node republishes it every ``republish_interval`` until the TTL is
        over. Fires with the number of nodes that stored it (the local node
        counts when it is among the closest).
        """
        _check_id(key)
        if not isinstance(value, bytes):
            return fail(TypeError("value must be bytes"))
        if len(value) > self.config.max_value_size:
            return fail(StoreRefused("value_too_large"))
        ttl = self.config.default_ttl if ttl is None else ttl
        if not 0 < ttl <= wire.MAX_TTL:
            return fail(ValueError(f"ttl must be between 1 and {wire.MAX_TTL} seconds"))
        if not self._running:
            return fail(NotRunning("the overlay node is not running"))
        expires = self._clock.seconds() + ttl
        self._published.setdefault(key, {})[value] = expires
        return self._store_at_closest(key, [(value, ttl)])

    def _store_at_closest(self, key: bytes, values: list[tuple[bytes, float]]) -> Deferred[int]:
        key_int = int.from_bytes(key, "big")

        def store(lk: Lookup) -> Deferred[int]:
            targets = lk.result()
            stores: list[Deferred[bool]] = []
            store_ids: list[bytes] = []
            local = 0
            own_dist = key_int ^ self.routing_table.own_key
            if self._role_code == ROLE_CORE and (
                len(targets) < self.config.k or own_dist < targets[-1].dist
            ):
                now = self._clock.seconds()
                for value, ttl in values:
                    try:
                        self.store.put(key, value, ttl, self.node_id, now)
                        local = 1
                    except StoreRefused as e:
                        log.info("value not stored locally: {reason}", reason=e.reason)
            for cand in targets:
                for value, ttl in values:
                    d: Deferred[bool] = Deferred()
                    sent = self._rpc(
                        cand.address,
                        STORE,
                        [key, value, max(1, int(ttl))],
                        cand.node_id,
                        _stored_callback(d),
                        _failed_false(d),
                    )
                    if sent:
                        stores.append(d)
                        store_ids.append(cand.node_id)

            def count(results: list[tuple[bool, bool]]) -> int:
                stored = {nid for nid, (_, ok) in zip(store_ids, results, strict=True) if ok}
                return len(stored) + local

            return DeferredList(stores, consumeErrors=True).addCallback(count)

        return self._lookup(key).addCallback(store)

    def _republish(self) -> None:
        now = self._clock.seconds()
        for key in list(self._published):
            values = self._published[key]
            for value in [v for v, exp in values.items() if exp <= now]:
                del values[value]
            if not values:
                del self._published[key]
                continue
            self._store_at_closest(key, [(v, exp - now) for v, exp in values.items()]).addErrback(
                lambda f: log.failure("republishing failed", f)
            )

    # ================================================================ application RPC

    def register_handler(self, name: str, fn: Handler) -> None:
        """Answer application requests called ``name`` with ``fn(body, sender)``.

        ``fn`` returns the answer body (plain msgpack data) or a Deferred of it.
        """
        if not isinstance(name, str) or not 0 < len(name) <= wire.MAX_NAME:
            raise ValueError(f"handler names have 1 to {wire.MAX_NAME} characters")
        self._handlers[name] = fn

    def unregister_handler(self, name: str) -> None:
        """Stop answering requests called ``name``."""
        self._handlers.pop(name, None)

    def request(
        self, to: Target, name: str, body: Any, timeout: float | None = None
    ) -> Deferred[Any]:
        """Send the application request ``name`` to a node ID or an address.

        Fires with the answer body; fails with :class:`RequestTimeout`,
        :class:`RemoteError` (unknown handler, handler failure, answer too
        large), :class:`PeerNotFound` or :class:`~dnaagent.wire.WireError`
        (request too large).
        """
        if not isinstance(name, str) or not 0 < len(name) <= wire.MAX_NAME:
            return fail(ValueError(f"request names have 1 to {wire.MAX_NAME} characters"))
        if isinstance(to, bytes):
            _check_id(to)
            contact = self.routing_table.get(to)
            if contact is not None:
                return self._app_rpc(contact.address, to, name, body, timeout)

            def found(c: Contact | None) -> Deferred[Any]:
                if c is None:
                    raise PeerNotFound(f"node {to.hex()} not found")
                return self._app_rpc(c.address, to, name, body, timeout)

            return self.find(to).addCallback(found)
        return self._app_rpc((to[0], int(to[1])), None, name, body, timeout)

    def _app_rpc(
        self, address: Address, node_id: bytes | None, name: str, body: Any, timeout: float | None
    ) -> Deferred[Any]:
        if not self._running:
            return fail(NotRunning("the overlay node is not running"))
        d: Deferred[Any] = Deferred()

        def on_reply(msg: Message, rtt: float) -> None:
            if msg.type == APP_REPLY:
                d.callback(msg.body)
            elif msg.type == ERROR:
                d.errback(RemoteError(msg.body[0], msg.body[1]))
            else:
                d.errback(RemoteError(wire.ERR_HANDLER_FAILED, "unexpected answer type"))

        try:
            sent = self._rpc(
                address,
                APP_REQUEST,
                [name, body],
                node_id,
                on_reply,
                d.errback,
                timeout=self.config.app_timeout if timeout is None else timeout,
                # Handlers need not be idempotent and the receiver keeps no
                # record of answered requests: an application request is sent once.
                retries=0,
            )
        except WireError as e:
            return fail(e)
        if not sent:
            return fail(NotRunning("cannot send the request"))
        self._counters["app_requests_out"] += 1
        return d

    def request_closest(
        self, key: bytes, name: str, body: Any, timeout: float | None = None
    ) -> Deferred[Any]:
        """Send the application request ``name`` to the node closest to ``key``.

        When the local node is the closest, its own handler answers.
        """
        _check_id(key)
        key_int = int.from_bytes(key, "big")

        def send(lk: Lookup) -> Deferred[Any]:
            result = lk.result()
            own = key_int ^ self.routing_table.own_key
            if self._role_code == ROLE_CORE and (not result or own < result[0].dist):
                fn = self._handlers.get(name)
                if fn is None:
                    raise RemoteError(wire.ERR_UNKNOWN_HANDLER, f"unknown handler {name!r}")
                return maybeDeferred(fn, body, Peer(self.node_id, ("", 0), self.role))
            if not result:
                raise PeerNotFound("no node answered")
            best = result[0]
            return self._app_rpc(best.address, best.node_id, name, body, timeout)

        if not self._running:
            return fail(NotRunning("the overlay node is not running"))
        return self._lookup(key).addCallback(send)

    # ================================================================ periodic jobs

    def _start_jobs(self) -> None:
        cfg = self.config
        self._every("expire", 60.0, self._each_minute)
        self._every("neighbours", cfg.neighbour_refresh_interval, self._refresh_neighbours)
        self._every("buckets", cfg.bucket_refresh_interval / 4, self._refresh_buckets)
        self._every("republish", cfg.republish_interval, self._republish)
        if cfg.discovery:
            self._every("discovery", cfg.discovery_interval, self._discover)
        if cfg.neighbour_check_interval > 0 and cfg.neighbour_check_count > 0:
            self._every("check", cfg.neighbour_check_interval, self._check_neighbours)

    def _every(self, name: str, interval: float, job: Callable[[], None]) -> None:
        """Run ``job`` about every ``interval`` seconds (±10 %) while running."""

        def run() -> None:
            try:
                job()
            except Exception:
                log.failure("periodic job {name} failed", name=name)
            if self._running:
                self._timers[name] = self._clock.callLater(
                    interval * self._rng.uniform(0.9, 1.1), run
                )

        self._timers[name] = self._clock.callLater(interval * self._rng.uniform(0.5, 1.0), run)

    def _each_minute(self) -> None:
        self._expire()
        self._rejoin_if_cut_off()

    def _rejoin_if_cut_off(self) -> None:
        """Join again through the seeds when few peers and none of the seeds are known.

        A node whose own join failed (every seed ping lost) but which later
        newcomers joined through holds only them: together they form an island
        that a self-lookup cannot leave, and with a peer known the agent's
        rejoin loop (which acts while no peer is known) does nothing. Such a
        node knows fewer than k peers and none at its seeds' addresses: it
        joins through them again, at most every minute at first and then ever
        less often (up to once an hour) while that changes nothing. A node
        that lists its own address among its seeds pays one ping in vain per
        attempt.
        """
        seeds = self._seeds
        table = self.routing_table
        if not seeds or not len(table) or len(table) >= self.config.k:
            return
        known = {c.address for c in table}
        if any(s in known for s in seeds):
            self._rejoin_wait = _REJOIN_FIRST
            return
        now = self._clock.seconds()
        if now < self._rejoin_at:
            return
        self._rejoin_at = now + self._rejoin_wait
        self._rejoin_wait = min(self._rejoin_wait * 2, _REJOIN_LONGEST)
        self._counters["rejoins"] += 1
        log.info(
            "overlay: {n} peers known and none of the seeds: joining again through {seeds}",
            n=len(table),
            seeds=", ".join(f"{h}:{p}" for h, p in seeds),
        )
        self.join(seeds).addErrback(lambda f: log.info("rejoin failed: {e}", e=f.getErrorMessage()))

    def _expire(self) -> None:
        now = self._clock.seconds()
        self.store.expire(now)
        self._expire_bans(now)
        for node_id in [n for n, until in self._departed.items() if until <= now]:
            del self._departed[node_id]
        for txid in [t for t, until in self._finished_resent.items() if until <= now]:
            del self._finished_resent[txid]

    def _refresh_neighbours(self) -> None:
        if len(self.routing_table):
            self._lookup(self.node_id).addErrback(
                lambda f: log.failure("neighbour refresh failed", f)
            )

    def _check_neighbours(self) -> None:
        """Ping the closest neighbours that have been silent; evict the dead ones.

        Under churn a dead neighbour would otherwise linger until a lookup
        trips over it twice. Neighbours that talk anyway cost nothing; a silent
        one costs one ping per interval, and a second ping at once if the first
        goes unanswered (a lost datagram is not a death).
        """
        cfg = self.config
        table = self.routing_table
        now = self._clock.seconds()
        for c in table.closest(table.own_key, cfg.neighbour_check_count):
            if now - c.last_seen >= cfg.neighbour_check_interval:
                self._probe(c.node_id, c.address, retries=1)

    def _probe(self, node_id: bytes, address: Address, retries: int) -> None:
        def failed(err: Exception) -> None:
            if node_id not in self.routing_table:
                return
            if retries > 0 and isinstance(err, RequestTimeout):
                self._probe(node_id, address, retries - 1)
            else:
                self.routing_table.failed(node_id, evict=True)

        self._rpc(address, PING, None, node_id, _ignore_reply, failed)

    def _refresh_buckets(self) -> None:
        table = self.routing_table
        now = self._clock.seconds()
        for i in table.stale_buckets(now, self.config.bucket_refresh_interval):
            table.touch(table.own_key ^ (1 << i), now)
            self._lookup(table.random_id_in_bucket(i, self._rng)).addErrback(
                lambda f: log.failure("bucket refresh failed", f)
            )

    def _discover(self) -> None:
        if len(self.routing_table) < self.config.k and self.discovery_addresses:
            self.announce(self.discovery_addresses)


#: Waits between joins again through the seeds of a node cut off from them (s).
_REJOIN_FIRST = 60.0
_REJOIN_LONGEST = 3600.0


def _remember(table: dict[Any, float], key: Any, until: float, now: float, limit: int) -> None:
    """Keep ``key`` in ``table`` (insertion-ordered) until ``until``.

    At ``limit`` entries, the expired ones go first, then the oldest.
    """
    table.pop(key, None)
    if len(table) >= limit:
        for old in [k for k, t in table.items() if t <= now]:
            del table[old]
        while len(table) >= limit:
            del table[next(iter(table))]
    table[key] = until


def _check_id(value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != wire.ID_BYTES:
        raise ValueError("node IDs and keys are 20 bytes")


def _ignore_reply(msg: Message, rtt: float) -> None:
    """Reply callback for fire-and-forget requests."""


def _ignore_failure(err: Exception) -> None:
    """Failure callback for fire-and-forget requests."""


def _stored_callback(d: Deferred[bool]) -> Callable[[Message, float], None]:
    """Reply callback of a STORE: fire ``d`` with whether it was stored."""

    def on_reply(msg: Message, rtt: float) -> None:
        d.callback(msg.type == STORED)

    return on_reply


def _failed_false(d: Deferred[bool]) -> Callable[[Exception], None]:
    """Failure callback that fires ``d`` with ``False``."""

    def on_fail(err: Exception) -> None:
        d.callback(False)

    return on_fail
