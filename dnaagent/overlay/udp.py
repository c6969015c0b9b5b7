"""Real UDP sockets for an :class:`~dnaagent.overlay.node.OverlayNode`.

:func:`listen_udp` opens the overlay port on IPv4 and IPv6 at once. The IPv6
socket is made IPv6-only before it is bound, so both sockets can share the port
number (a dual-stack IPv6 socket would otherwise take the IPv4 port too and
hand the node IPv4-mapped addresses). The sockets are handed to the reactor
with ``adoptDatagramPort``.

:func:`discovery_addresses` lists where link-local announcements go: the IPv4
broadcast address of every interface that is up and the IPv6 all-nodes group
on each of them.
"""

from __future__ import annotations

import ipaddress
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
    errors: list[tuple[str, OSError]] = []
    first = True
    for family, host in ((socket.AF_INET, ipv4), (socket.AF_INET6, ipv6)):
        if host is None:
            continue
        try:
            sock = _bound_socket(family, host, port)
        except OSError as e:
            errors.append((host, e))
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
        # The caller reports this as one line; no traceback in the log.
        raise errors[0][1] if errors else OSError("no address family enabled for the overlay")
    for host, err in errors:
        log.warn(
            "overlay not listening on {host} port {port}: {why}",
            host=host,
            port=port,
            why=err.strerror or err,
        )
    return ports


def discovery_addresses(port: int, *, ipv4: bool = True, ipv6: bool = True) -> list[Address]:
    """Return the link-local announcement targets for the overlay ``port``.

    For every interface that is up, except loopback: its IPv4 broadcast
    address(es) (``192.0.2.255`` for ``192.0.2.10/24``) and ``ff02::1%IFACE``
    when it has IPv6. A subnet broadcast goes out of its own interface through
    the connected route, so discovery works on a LAN without a router, where
    the limited broadcast 255.255.255.255 is refused for lack of a default route
    (and would only leave through the default route's interface anyway). When the
    interfaces cannot be listed, the limited broadcast and ``ff02::1`` on every
    interface known to the kernel are used instead.
    """
    try:
        import psutil

        addrs = psutil.net_if_addrs()
        stats = psutil.net_if_stats()
    except Exception:
        log.failure("cannot list the network interfaces; falling back to the limited broadcast")
        return _fallback_addresses(port, ipv4=ipv4, ipv6=ipv6)
    out: list[Address] = []
    for name, entries in sorted(addrs.items()):
        st = stats.get(name)
        if st is None or not st.isup or _is_loopback(name, entries):
            continue
        has_v6 = False
        for a in entries:
            if a.family == socket.AF_INET and ipv4:
                bcast = _broadcast_of(a)
                if bcast is not None and (bcast, port) not in out:
                    out.append((bcast, port))
            elif a.family == socket.AF_INET6:
                has_v6 = True
        if ipv6 and has_v6:
            out.append((f"{IPV6_ALL_NODES}%{name}", port))
    return out


def _broadcast_of(entry: Any) -> str | None:
    """Return the IPv4 broadcast address of one interface address, if it has one.

    The configured one when the interface reports it; else the subnet's last
    address (an address added without ``brd`` reports itself as its broadcast
    address, while the kernel still routes the subnet broadcast). None for /31,
    /32 and point-to-point links.
    """
    address = str(entry.address)
    if entry.broadcast and entry.broadcast != address:
        return str(entry.broadcast)
    if not entry.netmask or getattr(entry, "ptp", None):
        return None
    try:
        network = ipaddress.IPv4Interface(f"{address}/{entry.netmask}").network
    except ValueError:
        return None
    if network.prefixlen > 30:
        return None
    return str(network.broadcast_address)


def _is_loopback(name: str, entries: list[Any]) -> bool:
    """Whether an interface is the loopback one (by its addresses, not only its name)."""
    if name == "lo":
        return True
    for a in entries:
        if a.family == socket.AF_INET and str(a.address).startswith("127."):
            return True
        if a.family == socket.AF_INET6 and str(a.address).split("%", 1)[0] == "::1":
            return True
    return False


def _fallback_addresses(port: int, *, ipv4: bool, ipv6: bool) -> list[Address]:
    """The limited broadcast and ``ff02::1`` on every non-loopback interface."""
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
