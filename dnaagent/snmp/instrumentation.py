"""Updaters: the agent's state written into the MIB tree.

SNMP request handlers only read the :class:`~dnaagent.snmp.tree.MibTree`;
:class:`MibUpdater` keeps it current. Each recorded test result updates the
test's rows at once (the Mediator calls :meth:`MibUpdater.result`); a
periodic refresh, which catches and logs its own failures so that it never
stops, rewrites the agent information, the test table, the peer table and
the overlay counters.

The updater reads the agent through plain attributes (``mediator``,
``store``, ``scheduler``, ``started_at`` and, when the overlay runs,
``overlay``) so that tests can hand it a small fake agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from dnaagent import __version__
from dnaagent.overlay.routing import estimate_size
from dnaagent.snmp import mib
from dnaagent.snmp.tree import OID, MibTree, Value
from dnaagent.snmp.xbac_mib import update_predictions

ZERO_NODE_ID = bytes(mib.NODE_ID_LENGTH)

# Overlay counters summed into dnaOverlayInvalidDropped.
DROPPED_PREFIX = "dropped_"


def estimate_overlay_size(own_id: bytes, peer_ids: list[bytes], sample: int = 8) -> int:
    """Estimate the number of agents from the spread of the closest peer IDs.

    In a Kademlia overlay of N nodes with uniform IDs, the i-th closest of
    them lies at an XOR distance of about i * 2**160 / N. The estimate
    averages that over the ``sample`` closest known peers (the agent itself
    counts one). 0 when no peer is known.
    """
    if len(own_id) != mib.NODE_ID_LENGTH:
        return 0
    own = int.from_bytes(own_id, "big")
    distances = [own ^ int.from_bytes(p, "big") for p in peer_ids if len(p) == mib.NODE_ID_LENGTH]
    return int(min(estimate_size(distances, sample), 2**32 - 1))


def _node_id(value: Any) -> bytes | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            return None
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def peer_rows(peers: list[Mapping[str, Any]], now: float) -> dict[OID, Value]:
    """dnaPeerTable instances from the overlay's ``peers()`` list.

    Accepts the keys the overlay uses (``node_id`` hex, ``host``, ``port``,
    ``rtt_ms``, ``last_seen_s`` seconds ago) and the plainer ``id``,
    ``address`` (host or (host, port)), ``rtt`` (seconds) and ``last_seen``
    (POSIX time). Rows are numbered from 1 in the given order (the overlay
    lists the closest first); peers without a valid 20-octet ID are left out.
    """
    rows: dict[OID, Value] = {}
    rank = 0
    for peer in peers:
        node_id = _node_id(peer.get("node_id", peer.get("id")))
        if node_id is None or len(node_id) != mib.NODE_ID_LENGTH:
            continue
        rank += 1
        index = (rank,)
        rows[mib.DNA_PEER_ID + index] = Value.octets(node_id)
        host = peer.get("host")
        port = peer.get("port")
        address = peer.get("address")
        if isinstance(address, tuple | list) and len(address) >= 2:
            host, port = address[0], address[1]
        elif isinstance(address, str) and host is None:
            host = address
        atype, aval = mib.inet_address(str(host)) if host is not None else (mib.INET_UNKNOWN, b"")
        rtt_ms = _number(peer.get("rtt_ms"))
        if rtt_ms is None:
            rtt = _number(peer.get("rtt"))
            rtt_ms = rtt * 1000.0 if rtt is not None else None
        last_seen = _number(peer.get("last_seen"))
        if last_seen is None:
            ago = _number(peer.get("last_seen_s"))
            last_seen = now - ago if ago is not None else None
        port_value = port if isinstance(port, int) and 0 <= port <= 65535 else 0
        rows[mib.DNA_PEER_ADDRESS_TYPE + index] = Value.integer(atype)
        rows[mib.DNA_PEER_ADDRESS + index] = Value.octets(aval)
        rows[mib.DNA_PEER_PORT + index] = Value.gauge32(port_value)
        rows[mib.DNA_PEER_RTT + index] = Value.gauge32(
            round(rtt_ms * 1000) if rtt_ms is not None and rtt_ms >= 0 else 0
        )
        if last_seen is not None:
            rows[mib.DNA_PEER_LAST_SEEN + index] = Value.octets(mib.date_and_time(last_seen))
    return rows


class MibUpdater:
    """Keeps DNA-AGENT-MIB in ``tree`` current from ``agent``.

    ``clock`` is the reactor (or a ``task.Clock`` in tests); its
    ``seconds()`` is POSIX time. :meth:`start` subscribes to results and
    starts the periodic refresh every ``interval`` seconds.
    """

    log = Logger()

    def __init__(self, tree: MibTree, agent: Any, clock: Any, interval: float = 5.0) -> None:
        self.tree = tree
        self.agent = agent
        self.clock = clock
        self.interval = interval
        self.refreshes = 0
        self.failures = 0
        self._loop: LoopingCall | None = None
        self._subscribed = False
        self._running = False

    def start(self) -> None:
        """Fill the tree now, then on every result and every ``interval`` seconds."""
        self._running = True
        mediator = getattr(self.agent, "mediator", None)
        if mediator is not None and not self._subscribed:
            mediator.on_result(self.result)
            self._subscribed = True
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        """Stop the periodic refresh (results are then ignored)."""
        self._running = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    # ------------------------------------------------------------- refreshes

    def refresh(self) -> None:
        """Rewrite every part of the MIB; a failing part is logged, the rest goes on."""
        for part in (
            self._info,
            self._tests,
            self._results,
            self._peers,
            self._overlay,
            self._predictions,
        ):
            try:
                part()
            except Exception:
                self.failures += 1
                self.log.failure("updating the MIB ({part}) failed", part=part.__name__)
        self.refreshes += 1

    def result(self, result: Any) -> None:
        """A new test result: update its result row and the run state at once."""
        if not self._running:
            return
        try:
            self._results()
            self._tests()
            self._info()
        except Exception:
            self.failures += 1
            self.log.failure("updating the MIB after a result failed")

    def _overlay_node(self) -> Any:
        return getattr(self.agent, "overlay", None)

    def _info(self) -> None:
        now = self.clock.seconds()
        started = getattr(self.agent, "started_at", None)
        overlay = self._overlay_node()
        node_id = ZERO_NODE_ID
        size = 0
        peers = 0
        if overlay is not None:
            raw = _node_id(getattr(overlay, "node_id", None))
            if raw is not None and len(raw) == mib.NODE_ID_LENGTH:
                node_id = raw
            peer_list = list(overlay.peers())
            peers = len(peer_list)
            ids = [i for i in (_node_id(p.get("node_id", p.get("id"))) for p in peer_list) if i]
            given = getattr(overlay, "size_estimate", None)
            if isinstance(given, int) and not isinstance(given, bool):
                size = given
            else:
                size = estimate_overlay_size(node_id, ids) if ids else 1
        mediator = getattr(self.agent, "mediator", None)
        runs = getattr(mediator, "runs_completed", 0) if mediator is not None else 0
        values = {
            mib.DNA_VERSION + (0,): Value.octets(__version__),
            mib.DNA_NODE_ID + (0,): Value.octets(node_id),
            mib.DNA_UPTIME + (0,): Value.timeticks(max(0.0, now - started) if started else 0.0),
            mib.DNA_OVERLAY_SIZE + (0,): Value.gauge32(size),
            mib.DNA_PEER_COUNT + (0,): Value.gauge32(peers),
            mib.DNA_RUNS_COMPLETED + (0,): Value.counter32(runs),
        }
        self.tree.replace_subtree(mib.DNA_INFO, values)

    def _tests(self) -> None:
        mediator = getattr(self.agent, "mediator", None)
        rows: dict[OID, Value] = {}
        if mediator is not None:
            scheduler = getattr(self.agent, "scheduler", None)
            scheduled = set(getattr(scheduler, "modules", ()) or ()) if scheduler else set()
            interval = int(getattr(scheduler, "interval", 0) or 0) if scheduler else 0
            running: set[tuple[str, str]] = set()
            for active in getattr(mediator, "active", ()):
                for name in active.tests:
                    if name not in active.finished:
                        running.add((active.module, name))
            for module_name, module in mediator.modules.items():
                for spec in module.tests:
                    index = mib.test_index(module_name, spec.name)
                    if index is None:
                        continue
                    enabled = module_name in scheduled and spec.default
                    rows[mib.DNA_TEST_DESCRIPTION + index] = Value.octets(
                        mib.display_string(spec.description)
                    )
                    rows[mib.DNA_TEST_DEFAULT + index] = Value.integer(
                        mib.TRUE if spec.default else mib.FALSE
                    )
                    rows[mib.DNA_TEST_ENABLED + index] = Value.integer(
                        mib.TRUE if enabled else mib.FALSE
                    )
                    rows[mib.DNA_TEST_INTERVAL + index] = Value.gauge32(interval if enabled else 0)
                    rows[mib.DNA_TEST_DEPENDENCIES + index] = Value.octets(
                        mib.display_string(mib.dependencies_text(spec.depends_on))
                    )
                    rows[mib.DNA_TEST_RUN + index] = Value.integer(
                        mib.RUN_RUNNING if (module_name, spec.name) in running else mib.RUN_IDLE
                    )
        self.tree.replace_subtree(mib.DNA_TEST_TABLE, rows)

    def _results(self) -> None:
        mediator = getattr(self.agent, "mediator", None)
        rows: dict[OID, Value] = {}
        if mediator is not None:
            store = getattr(self.agent, "store", None)
            counters = store.counters() if store is not None else {}
            for r in mediator.latest():
                index = mib.test_index(r.module, r.test)
                if index is None:
                    continue
                count, errors = counters.get((r.module, r.test), (0, 0))
                status = getattr(r.status, "value", str(r.status))
                rows[mib.DNA_RESULT_STATUS + index] = Value.integer(mib.STATUS_CODES[status])
                rows[mib.DNA_RESULT_MESSAGE + index] = Value.octets(mib.display_string(r.message))
                rows[mib.DNA_RESULT_TIME + index] = Value.octets(mib.date_and_time(r.started))
                rows[mib.DNA_RESULT_DURATION + index] = Value.gauge32(round(r.duration * 1000))
                rows[mib.DNA_RESULT_ORIGIN + index] = Value.octets(mib.display_string(r.origin))
                rows[mib.DNA_RESULT_COUNT + index] = Value.counter32(count)
                rows[mib.DNA_RESULT_ERRORS + index] = Value.counter32(errors)
        self.tree.replace_subtree(mib.DNA_RESULT_TABLE, rows)

    def _peers(self) -> None:
        overlay = self._overlay_node()
        rows = peer_rows(list(overlay.peers()), self.clock.seconds()) if overlay else {}
        self.tree.replace_subtree(mib.DNA_PEER_TABLE, rows)

    def _predictions(self) -> None:
        update_predictions(self.tree, self.agent)

    def _overlay(self) -> None:
        overlay = self._overlay_node()
        counters: Mapping[str, Any] = getattr(overlay, "counters", None) or {} if overlay else {}
        if callable(counters):
            counters = counters()

        def get(name: str) -> int:
            v = counters.get(name, 0)
            return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

        dropped = sum(get(k) for k in counters if k.startswith(DROPPED_PREFIX))
        values = {
            mib.DNA_OVERLAY_MESSAGES_IN + (0,): Value.counter64(get("messages_in")),
            mib.DNA_OVERLAY_MESSAGES_OUT + (0,): Value.counter64(get("messages_out")),
            mib.DNA_OVERLAY_BYTES_IN + (0,): Value.counter64(get("bytes_in")),
            mib.DNA_OVERLAY_BYTES_OUT + (0,): Value.counter64(get("bytes_out")),
            mib.DNA_OVERLAY_INVALID_DROPPED + (0,): Value.counter64(
                dropped or get("dropped") or get("invalid_dropped")
            ),
            mib.DNA_OVERLAY_PEERS_BANNED + (0,): Value.counter64(
                get("bans_total") or get("banned")
            ),
            mib.DNA_OVERLAY_BANNED_PEERS + (0,): Value.gauge32(get("banned_peers")),
        }
        self.tree.replace_subtree(mib.DNA_OVERLAY, values)
