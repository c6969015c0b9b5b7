"""Real UDP sockets for an :class:`~dnaagent.overlay.node.OverlayNode`.

:func:`listen_udp` opens the overlay port on IPv4 and IPv6 at once. The IPv6
socket is made IPv6-only before it is bound, so both sockets can share the port
number (a dual-stack IPv6 socket would otherwise take the IPv4 port too and
hand the node IPv4-mapped addresses). The sockets are handed to the reactor
with ``adoptDatagramPort``.

:func:`discovery_addresses` lists where link-local announcements go: the IPv4
limited broadcast address and the IPv6 all-nodes group on every interface.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.interfaces import IListeningPort, IReactorSocket
from twisted.logger import Logger

from dnaagent.overlay.contact import Address
from dnaagent.overlay.node import OverlayNode
from dnaagent.wire import MAX_DATAGRAM

log = Logger()

IPV4_BROADCAST = "255.255.255.255"
IPV6_ALL_NODES = "ff02::1"


def _bound_socket(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def listen_udp(
    reactor: Any,
    node: OverlayNode,
    port: int = 4001,
    *,
    ipv4: str | None = "0.0.0.0",
    ipv6: str | None = "::",
) -> list[IListeningPort]:
    """Bind the overlay port on ``ipv4`` and ``ipv6`` (``None`` skips one) for ``node``.

    Returns the listening ports (stop them with ``stopListening``). Raises
    ``OSError`` when no socket could be bound; a family the host lacks (no
    IPv6) is logged and skipped as long as the other one works.
    """
    if not IReactorSocket.providedBy(reactor):
        raise TypeError("the reactor cannot adopt sockets (IReactorSocket)")
    ports: list[IListeningPort] = []
    errors: list[OSError] = []
    first = True
    for family, host in ((socket.AF_INET, ipv4), (socket.AF_INET6, ipv6)):
        if host is None:
            continue
        try:
            sock = _bound_socket(family, host, port)
        except OSError as e:
            log.failure("cannot bind the overlay port {host} {port}", host=host, port=port)
            errors.append(e)
            continue
        if port == 0:
            # Let the second family use the port number the first one got.
            port = sock.getsockname()[1]
        protocol = node if first else node.endpoint()
        first = False
        try:
            # Read one byte more than the largest valid datagram: a larger one is then
            # dropped as too_large instead of being cut to MAX_DATAGRAM bytes.
            size = MAX_DATAGRAM + 1
            ports.append(reactor.adoptDatagramPort(sock.fileno(), family, protocol, size))
        finally:
            sock.close()  # the reactor holds its own duplicate
    if not ports:
        raise errors[0] if errors else OSError("no address family enabled for the overlay")
    return ports


def discovery_addresses(port: int, *, ipv4: bool = True, ipv6: bool = True) -> list[Address]:
    """Return the link-local announcement targets for the overlay ``port``.

    IPv4: the limited broadcast address. IPv6: ``ff02::1%IFACE`` for every
    interface except loopback.
    """
    out: list[Address] = []
    if ipv4:
        out.append((IPV4_BROADCAST, port))
    if ipv6:
        try:
            interfaces = socket.if_nameindex()
        except OSError:
            log.failure("cannot list the network interfaces")
            interfaces = []
        for _, name in interfaces:
            if name != "lo":
                out.append((f"{IPV6_ALL_NODES}%{name}", port))
    return out
