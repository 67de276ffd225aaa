"""Subscriber addresses: parsed once, canonical, and resolved off the bridge's own threads.

A subscriber host is turned into one numeric address when it subscribes, never at
send time: ``127.1``, ``0x7f000001``, ``127.0.0.1`` and ``::ffff:127.0.0.1`` are the
same host and are stored as ``127.0.0.1``. A host *name* is resolved on a short-lived
``ldm3d-resolve`` thread with a deadline (:class:`AsyncResolver`), so a resolver
that does not answer delays only that subscription, never intake, jobs or the
heartbeat. The resolver itself is handed in: tests use a stand-in, never the network.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: A blocking name → numeric addresses lookup (``socket.getaddrinfo`` by default).
Resolver = Callable[[str], list[str]]
#: Called once per submitted name: (canonical address or None, why not).
Done = Callable[[str | None, str], None]

MAX_HOST_LENGTH = 253  # a DNS name's limit


class ResolveFailed(Exception):
    """A host that cannot be turned into an address; the message says why."""


def canonical_ip(text: str) -> str | None:
    """The canonical numeric form of an address written numerically, else None (it is a name).

    Accepts every numeric spelling the C library accepts (``127.1``, ``0x7f000001``) without any
    lookup; an IPv4-mapped IPv6 address becomes its IPv4 address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        try:
            packed = socket.inet_aton(text)  # legacy numeric forms; never a lookup
        except (OSError, ValueError, UnicodeError):
            return None
        address = ipaddress.IPv4Address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def interface_addresses() -> list[str]:
    """Canonical addresses of this machine's network interfaces (IPv4 and IPv6)."""
    import ifaddr  # a dependency of zeroconf

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            canonical = canonical_ip(text.split("%", 1)[0])
            if canonical is not None:
                found.append(canonical)
    return found


def system_resolver(host: str) -> list[str]:
    """Numeric addresses of ``host`` from the system resolver (DNS, hosts file, mDNS…)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise ResolveFailed(str(exc) or type(exc).__name__) from None
    return [str(info[4][0]) for info in infos]


def check_host_text(host: str) -> None:
    """Refuse what no resolver should be asked about (ResolveFailed names it)."""
    if not host or len(host) > MAX_HOST_LENGTH:
        raise ResolveFailed(f"a host name has 1..{MAX_HOST_LENGTH} characters, got {len(host)}")
    try:
        host.encode("idna")
    except UnicodeError:
        raise ResolveFailed(f"{host!r} is not a valid host name") from None


@dataclass
class _Lookup:
    host: str
    deadline: float
    done: Done
    finished: bool = False


class AsyncResolver:
    """Runs lookups on their own threads; :meth:`poll` (the monitor thread) enforces deadlines.

    At most ``max_pending`` lookups run at once, counting ones that outlived their
    deadline (a resolver that hangs keeps its thread): more are refused at once."""

    def __init__(self, resolver: Resolver, timeout_s: float = 2.0, max_pending: int = 4) -> None:
        self._resolver = resolver
        self._timeout = timeout_s
        self._max = max_pending
        self._lock = threading.Lock()
        self._running: list[_Lookup] = []  # threads still inside the resolver
        self._closed = False

    def submit(self, host: str, now: float, done: Done) -> None:
        """Resolve ``host``; ``done`` is called exactly once (here, on the lookup thread or in poll)."""
        try:
            check_host_text(host)
        except ResolveFailed as exc:
            done(None, str(exc))
            return
        with self._lock:
            busy = self._closed or len(self._running) >= self._max
            if not busy:
                lookup = _Lookup(host, now + self._timeout, done)
                self._running.append(lookup)
        if busy:
            done(None, f"{self._max} host names are being resolved already; send a numeric address or retry")
            return
        threading.Thread(target=self._run, args=(lookup,), name="ldm3d-resolve", daemon=True).start()

    def _run(self, lookup: _Lookup) -> None:
        try:
            found: list[str] = self._resolver(lookup.host)
            why = f"{lookup.host!r} has no address"
        except ResolveFailed as exc:
            found, why = [], f"cannot resolve {lookup.host!r}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a resolver stand-in or the C library failing in any way
            found, why = [], f"cannot resolve {lookup.host!r}: {type(exc).__name__}: {exc}"
        addresses = [a for a in (canonical_ip(f.split("%", 1)[0]) for f in found) if a is not None]
        with self._lock:
            self._running.remove(lookup)
            first = not lookup.finished
            lookup.finished = True
        if first:
            lookup.done(addresses[0] if addresses else None, why)

    def poll(self, now: float) -> None:
        """Fail the lookups past their deadline (their threads are left to end by themselves)."""
        with self._lock:
            late = [lk for lk in self._running if not lk.finished and now >= lk.deadline]
            for lookup in late:
                lookup.finished = True
        for lookup in late:
            lookup.done(None, f"{lookup.host!r} did not resolve within {self._timeout:g} s; send a numeric address")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for lookup in self._running:
                lookup.finished = True

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._running)
