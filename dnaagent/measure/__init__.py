"""Local measurements: ping, DNS, TCP RTT, traceroute (Paris) and passive RTTs."""

from __future__ import annotations

import ipaddress


def same_address(a: str, b: str) -> bool:
    """Whether two IP address strings name the same address (zones ``%eth0`` ignored).

    Different spellings of one address (``2001:db8::1``, ``2001:DB8:0::1``) are the
    same; anything that is not an IP address is the same as nothing.
    """
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return False
