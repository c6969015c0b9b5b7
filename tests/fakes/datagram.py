"""An in-memory datagram network driven by a clock, for tests of the overlay.

:class:`MemoryNetwork` delivers every datagram after a delay scheduled on the
injected clock (a ``task.Clock`` in tests), can lose datagrams, and can make a
host crash (it stops sending and receiving without telling anyone). Each
protocol attached with :meth:`MemoryNetwork.listen` gets a
:class:`MemoryTransport` that behaves like a Twisted UDP port: ``write``,
``getHost``, ``stopListening``. Datagrams to ``255.255.255.255`` reach every
other IPv4 host on the network, datagrams to ``ff02::1`` every IPv6 host.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol

Address = tuple[str, int]

BROADCAST_V4 = "255.255.255.255"
MULTICAST_V6 = "ff02::1"


class MemoryTransport:
    """One bound address on a :class:`MemoryNetwork` (a fake UDP port)."""

    def __init__(self, network: MemoryNetwork, address: Address, protocol: DatagramProtocol):
        self.network = network
        self.address = address
        self.protocol = protocol
        self.broadcast_allowed = False
        self.closed = False

    def write(self, data: bytes, addr: Address) -> None:
        """Send ``data`` to ``addr`` through the network."""
        if self.closed:
            raise OSError("transport closed")
        if not isinstance(data, bytes):
            raise TypeError("datagrams are bytes")
        self.network._send(self.address, (addr[0], int(addr[1])), data)

    def getHost(self) -> IPv4Address | IPv6Address:
        """Return the bound address as a Twisted address object."""
        host, port = self.address
        if ":" in host:
            return IPv6Address("UDP", host, port)
        return IPv4Address("UDP", host, port)

    def setBroadcastAllowed(self, enabled: bool) -> None:
        """Allow datagrams to the IPv4 broadcast address (like a UDP port)."""
        self.broadcast_allowed = enabled

    def stopListening(self) -> None:
        """Unbind: the protocol is stopped and receives nothing more."""
        if not self.closed:
            self.closed = True
            self.network._unbind(self.address)
            self.protocol.doStop()

    loseConnection = stopListening


class MemoryNetwork:
    """Hosts bound to addresses, exchanging datagrams with a delay on ``clock``.

    ``delay`` is seconds or a function of the network's ``random.Random``
    returning seconds; ``loss`` is the probability that a datagram is lost.
    """

    def __init__(
        self,
        clock: IReactorTime,
        delay: float | Callable[[random.Random], float] = 0.01,
        loss: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.clock = clock
        self.rng = random.Random(seed)
        self._delay = delay
        self.loss = loss
        self.hosts: dict[Address, MemoryTransport] = {}
        self.crashed: set[Address] = set()
        self.sent = 0
        self.delivered = 0
        self.bytes = 0
        self.log: list[tuple[Address, Address, bytes]] | None = None

    def listen(self, address: Address, protocol: DatagramProtocol) -> MemoryTransport:
        """Bind ``protocol`` to ``address`` and start it (like ``listenUDP``)."""
        if address in self.hosts:
            raise OSError(f"address {address} already in use")
        t = MemoryTransport(self, address, protocol)
        self.hosts[address] = t
        protocol.makeConnection(t)
        return t

    def crash(self, address: Address) -> None:
        """Make the host at ``address`` silent: nothing in, nothing out."""
        self.crashed.add(address)

    def _unbind(self, address: Address) -> None:
        self.hosts.pop(address, None)

    def _delay_for(self) -> float:
        d = self._delay
        return d(self.rng) if callable(d) else d

    def _send(self, src: Address, dst: Address, data: bytes) -> None:
        if src in self.crashed:
            return
        self.sent += 1
        self.bytes += len(data)
        if self.log is not None:
            self.log.append((src, dst, data))
        if dst[0] == BROADCAST_V4 or dst[0].split("%")[0] == MULTICAST_V6:
            v6 = dst[0] != BROADCAST_V4
            for address in list(self.hosts):
                if address != src and address[1] == dst[1] and (":" in address[0]) == v6:
                    self._schedule(src, address, data)
            return
        self._schedule(src, dst, data)

    def _schedule(self, src: Address, dst: Address, data: bytes) -> None:
        if self.loss and self.rng.random() < self.loss:
            return
        self.clock.callLater(self._delay_for(), self._deliver, src, dst, data)

    def _deliver(self, src: Address, dst: Address, data: bytes) -> None:
        if dst in self.crashed:
            return
        t = self.hosts.get(dst)
        if t is None or t.closed:
            return
        self.delivered += 1
        t.protocol.datagramReceived(data, src)


def raw_sender(network: MemoryNetwork, address: Address) -> Callable[[bytes, Address], Any]:
    """Return a function that sends raw bytes from ``address`` (for hostile tests)."""

    def send(data: bytes, dst: Address) -> None:
        network._send(address, dst, data)

    return send
