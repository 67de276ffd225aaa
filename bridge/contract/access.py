"""Who may talk to the bridge: source-network allowlist and an optional shared secret.

The secret travels as the last two arguments of every message:
``…, "token", "<secret>"``. It is compared in constant time and stripped before
the message is parsed, so it never reaches a job, a log line or a file.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from bridge.osc.codec import Arg
from bridge.settings import Network

TOKEN_KEY = "token"


def allowed(host: str, networks: Sequence[Network]) -> bool:
    """True when ``networks`` is empty (no allowlist) or contains ``host``."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host.partition("%")[0])  # without an IPv6 scope ("%eth0")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def take_token(args: tuple[Arg, ...], secret: str) -> tuple[bool, tuple[Arg, ...]]:
    """(whether the message carries ``secret`` as its last two arguments, the arguments without them)."""
    if len(args) < 2 or args[-2] != TOKEN_KEY or not isinstance(args[-1], str):
        return False, args
    ok = hmac.compare_digest(args[-1].encode(), secret.encode())  # str.encode is always UTF-8
    return ok, args[:-2]
