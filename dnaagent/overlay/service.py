"""The overlay inside the agent: identity, sockets, joining and leaving.

:class:`OverlayService` owns one :class:`~dnaagent.overlay.node.OverlayNode`:
it loads (or creates) the node's Ed25519 key in the state directory, binds
the overlay UDP port on IPv4 and IPv6, joins through the configured seeds,
tries again while it knows nobody, announces itself on the local link when
discovery is on, and leaves gracefully when the agent stops.

The built-in defaults listen but send nothing: no seeds, no discovery.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from dnaagent.errors import DnaAgentError
from dnaagent.overlay.identity import load_or_create_identity
from dnaagent.overlay.node import OverlayNode
from dnaagent.overlay.section import OverlaySection, parse_address
from dnaagent.overlay.settings import OverlayConfig

IDENTITY_FILE = "node.key"


class OverlayService(Service):
    """Runs the agent's overlay node on real UDP sockets."""

    log = Logger()

    def __init__(self, section: OverlaySection, reactor: Any, state_dir: str) -> None:
        self.section = section
        self.reactor = reactor
        self.state_dir = state_dir
        self.node: OverlayNode | None = None
        self.ports: list[IListeningPort] = []
        self.seeds = [parse_address(s, section.port) for s in section.seeds]
        self._rejoin: task.LoopingCall | None = None
        self._rediscover: task.LoopingCall | None = None
        self.joins = 0

    def prepare(self) -> None:
        """Load the identity and bind the port; raises DnaAgentError with one line."""
        from dnaagent.overlay.udp import listen_udp

        try:
            identity = load_or_create_identity(os.path.join(self.state_dir, IDENTITY_FILE))
        except DnaAgentError:
            raise
        except OSError as e:
            raise DnaAgentError(f"cannot read or create the node key: {e}") from e
        config = OverlayConfig.from_section(self.section)
        self.node = OverlayNode(identity, self.reactor, role=self.section.role, config=config)
        if self.section.discovery:
            # The node announces itself there while it knows few peers.
            self.node.discovery_addresses = self._discovery_addresses()
        try:
            self.ports = listen_udp(
                self.reactor,
                self.node,
                self.section.port,
                ipv4=self.section.listen_ipv4 or None,
                ipv6=self.section.listen_ipv6 or None,
            )
        except OSError as e:
            raise DnaAgentError(
                f"overlay cannot listen on UDP port {self.section.port}: {e.strerror or e} "
                "(another dnaagent running? choose another with --overlay-port)"
            ) from None

    def startService(self) -> None:
        """Join through the seeds, and keep trying while no peer is known."""
        super().startService()
        assert self.node is not None
        self.log.info(
            "overlay node {id} on UDP {port} ({role}); seeds: {seeds}; discovery {disc}",
            id=self.node.node_id.hex(),
            port=self.port,
            role=self.section.role,
            seeds=", ".join(f"{h}:{p}" for h, p in self.seeds) or "none",
            disc="on" if self.section.discovery else "off",
        )
        if self.section.discovery and self.node.discovery_addresses:
            # Announce at once; the node repeats it while it knows few peers.
            self.node.announce(self.node.discovery_addresses)
        if self.section.discovery:
            # Interfaces come up (or change address) after the agent started, e.g. at
            # boot before the network is configured: look again now and then.
            self._rediscover = task.LoopingCall(self._refresh_discovery)
            self._rediscover.clock = self.reactor
            d = self._rediscover.start(self.section.rejoin_interval, now=False)
            d.addErrback(lambda f: self.log.failure("discovery refresh loop stopped", f))
        if self.seeds:
            self._rejoin = task.LoopingCall(self._join_if_alone)
            self._rejoin.clock = self.reactor
            d = self._rejoin.start(self.section.rejoin_interval, now=True)
            d.addErrback(lambda f: self.log.failure("overlay rejoin loop stopped", f))

    def _discovery_addresses(self) -> list[Any]:
        from dnaagent.overlay.udp import discovery_addresses

        return discovery_addresses(
            self.port,
            ipv4=bool(self.section.listen_ipv4),
            ipv6=bool(self.section.listen_ipv6),
        )

    def _refresh_discovery(self) -> None:
        """Rebuild the announcement targets; announce at once on a link that is new."""
        node = self.node
        if node is None:
            return
        fresh = self._discovery_addresses()
        if fresh == node.discovery_addresses:
            return
        added = [a for a in fresh if a not in node.discovery_addresses]
        self.log.info(
            "overlay discovery targets now {targets}",
            targets=", ".join(f"{h}:{p}" for h, p in fresh) or "none",
        )
        node.discovery_addresses = fresh
        if added and len(node.routing_table) < node.config.k:
            node.announce(added)

    def _join_if_alone(self) -> defer.Deferred[None] | None:
        node = self.node
        if node is None or len(node.routing_table) > 0:
            return None
        self.joins += 1
        d = node.join(self.seeds)

        def joined(known: int) -> None:
            self.log.info("overlay joined: {n} peers known", n=known)

        def failed(failure: Any) -> None:
            self.log.warn(
                "overlay join through {seeds} failed: {why}; trying again in {t:g} s",
                seeds=", ".join(f"{h}:{p}" for h, p in self.seeds),
                why=failure.getErrorMessage(),
                t=self.section.rejoin_interval,
            )

        d.addCallbacks(joined, failed)
        return None  # the loop does not wait for the join

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Leave the overlay (tell the neighbours) and close the sockets."""
        for loop in (self._rejoin, self._rediscover):
            if loop is not None and loop.running:
                loop.stop()
        if self.node is not None:
            try:
                self.node.leave()
            except Exception:
                self.log.failure("leaving the overlay failed")
        for port in self.ports:
            try:
                yield port.stopListening()
            except Exception:
                self.log.failure("closing an overlay socket failed")
        self.ports = []
        yield super().stopService()

    @property
    def port(self) -> int:
        """The UDP port bound (the configured one, or the one picked for port 0)."""
        for listening in self.ports:
            return int(listening.getHost().port)
        return self.section.port

    def status(self) -> dict[str, Any]:
        """What ``dnactl status`` shows of the overlay."""
        if self.node is None:
            return {"enabled": False}
        return {
            "enabled": True,
            "node_id": self.node.node_id.hex(),
            "role": self.section.role,
            "port": self.port,
            "peers": len(self.node.routing_table),
            "seeds": [f"{h}:{p}" for h, p in self.seeds],
            "discovery": self.section.discovery,
        }
