"""Who may talk to the bridge: source-network allowlist and an optional shared secret.

The secret travels as the last two arguments of every message:
``…, "token", "<secret>"``. It is compared in constant time and stripped before
the message is parsed, so it never reaches a job, a log line or a file.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from .osc import Arg

TOKEN_KEY = "token"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Sequence[str]) -> list[Network]:
    """CIDR strings (``192.168.1.0/24``, ``10.0.0.7``) → networks; ValueError names a bad one."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{spec!r} is not a network; write it like 192.168.1.0/24 or 10.0.0.7") from None
    return networks


def allowed(host: str, networks: Sequence[Network]) -> bool:
    """True when ``networks`` is empty (no allowlist) or contains ``host``."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def take_token(args: tuple[Arg, ...], secret: str) -> tuple[bool, tuple[Arg, ...]]:
    """(whether the message carries ``secret`` as its last two arguments, the arguments without them)."""
    if len(args) < 2 or args[-2] != TOKEN_KEY or not isinstance(args[-1], str):
        return False, args
    ok = hmac.compare_digest(args[-1].encode("utf-8"), secret.encode("utf-8"))
    return ok, args[:-2]
