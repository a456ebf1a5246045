"""Network addresses as the access policies see them: loopback, and allowed networks."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable from this machine only."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_in(address: str, allowed: Sequence[str]) -> bool:
    """Whether *address* (an IP) is one of *allowed* (IPs or CIDR networks)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
