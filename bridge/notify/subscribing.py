"""The ``/ldm3d/subscribe`` and ``/ldm3d/unsubscribe`` commands, carried out.

The host a client names is made canonical here (``bridge.notify.addresses``); a host
*name* goes to the :class:`AsyncResolver` and the command finishes on its lookup
thread (or on the monitor, when the lookup runs out of time), so the intake never
waits. The rules themselves (owners, leases, confirmation, slots) are
:class:`bridge.notify.subscriptions.Subscriptions`'; this module applies them and
answers. Every outcome is a reply: subscribed, pending, unsubscribed or an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bridge.errors import BadArguments, BridgeError
from bridge.notify.addresses import AsyncResolver, canonical_ip
from bridge.notify.limits import Counters
from bridge.notify.notifier import Notifier
from bridge.notify.subscriptions import Address
from bridge.osc.codec import Arg

#: What a subscriber hears when it starts hearing the bridge: (address, args) messages.
Greeting = Callable[[], list[tuple[str, tuple[Arg, ...]]]]


class SubscriptionDesk:
    def __init__(
        self,
        notifier: Notifier,
        resolver: AsyncResolver,
        counters: Counters,
        greeting: Greeting,
        *,
        ipv4_only: bool,
        pending_s: float,
        listen_host: str,
    ) -> None:
        self._notifier = notifier
        self._resolver = resolver
        self._counters = counters
        self._greeting = greeting
        self._ipv4_only = ipv4_only
        self._pending_s = pending_s
        self._listen_host = listen_host

    def handle(
        self,
        subscribe: bool,
        port: int,
        host: str | None,
        sender: Address,
        bound: int | None,
        trusted: bool,
        lease: float | None = None,
    ) -> None:
        """Subscribe or unsubscribe ``host:port`` (default host: the sender's); ``lease``: the seconds
        a subscription asks for (0: no expiry; None: the bridge's)."""

        def finish(ip: str | None, why: str) -> None:  # here, on a lookup thread or on the monitor
            try:
                if ip is None:
                    raise BadArguments(f"{'/ldm3d/subscribe' if subscribe else '/ldm3d/unsubscribe'}: {why}")
                if subscribe:
                    self._subscribe((ip, port), sender, bound, trusted, lease)
                else:
                    self._notifier.unsubscribe((ip, port), sender[0], trusted)
                    self._notifier.reply(sender, "/ldm3d/unsubscribed", ip, port, bound=bound)
            except BridgeError as exc:
                self._counters.add(f"error_{exc.code}")
                self._notifier.reply(sender, "/ldm3d/error", "", exc.code, str(exc), bound=bound)

        if host is None:
            finish(sender[0], "")
        elif (ip := canonical_ip(host)) is not None:
            finish(ip, "")
        else:
            self._resolver.submit(host, time.monotonic(), finish)

    def _subscribe(
        self, target: Address, sender: Address, bound: int | None, trusted: bool, lease: float | None
    ) -> None:
        n = self._notifier
        if n.is_self(target):
            raise BadArguments(
                f"{target[0]}:{target[1]} is this bridge itself; subscribe the port your client listens on"
            )
        if self._ipv4_only and ":" in target[0]:
            raise BadArguments(
                f"this bridge listens on IPv4 ({self._listen_host}) and cannot send to {target[0]}; "
                "start it with --host :: to reach IPv6 subscribers"
            )
        sub, activated = n.subscribe(target, sender[0], trusted, lease)
        if sub.confirmed:
            n.reply(sender, "/ldm3d/subscribed", *target, round(sub.written_lease), bound=bound)
            if activated:
                self._greet(target)
        else:
            n.reply(sender, "/ldm3d/pending", *target, round(self._pending_s), bound=bound)

    def heard_from(self, host: str) -> None:
        """A message came from ``host``: its pending subscriptions start hearing the bridge now."""
        n = self._notifier
        for sub in n.heard_from(host):
            n.send_to([sub.target], "/ldm3d/subscribed", *sub.target, round(sub.written_lease))
            self._greet(sub.target)

    def _greet(self, target: Address) -> None:
        for address, args in self._greeting():
            self._notifier.send_to([target], address, *args)
