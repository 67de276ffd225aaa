"""The intake: datagrams → checked messages → commands, on one thread that never blocks.

For each datagram, in order: the source must be in the ``allow`` networks (else it is
dropped silently and counted), must not be the bridge's own socket, must decode as OSC
(else ``malformed_packet``, which strangers do not get when a token is set); each
message must carry the token when one is set (``unauthorized``), confirms its host's
pending subscriptions, is parsed into a command (:mod:`bridge.contract.protocol`) and
handed to the dispatcher. A reply to a host that is not confirmed is bounded by
``reply_factor`` times the datagram's size (see :mod:`bridge.notify.notifier`). Nothing
here raises: every failure is a counted, throttled log line and an answer.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Hashable

from bridge.contract import protocol
from bridge.contract.access import allowed, take_token
from bridge.errors import BridgeError, Unauthorized
from bridge.notify.addresses import canonical_ip
from bridge.notify.limits import Counters, LogLimiter, TokenBuckets
from bridge.notify.notifier import PAGE_PREFIX, Notifier
from bridge.notify.subscribing import SubscriptionDesk
from bridge.notify.subscriptions import Address
from bridge.osc.codec import MAX_DATAGRAM, MalformedPacket, Message, decode_packet
from bridge.settings import BridgeSettings, parse_networks

logger = logging.getLogger(__name__)

#: Carries out one command: (command, sender, reply bound or None, whether the token was given).
Dispatch = Callable[[protocol.Command, Address, "int | None", bool], None]


class JobBudget(TokenBuckets):
    """The job-rate budget of each client host (``client_jobs_per_s``, burst ``client_jobs_burst``):
    one per host, whichever way its jobs come, OSC over UDP (the sender's address, canonical as
    :meth:`Intake.run` makes it) or an operator page on that host (``page:<its address>``). A host
    that spent its burst over UDP is refused on its page too, and the other way round."""

    def allow(self, key: Hashable, now: float) -> bool:
        return super().allow(client_host(key), now)


def client_host(sender: Hashable) -> Hashable:
    """The host a sender's address names: a page's ``page:192.168.1.20`` is ``192.168.1.20``, and
    ``::ffff:192.168.1.20`` (a page reached over IPv6) too."""
    if isinstance(sender, str) and sender.startswith(PAGE_PREFIX):
        host = sender[len(PAGE_PREFIX) :]
        return host if "%" in host else (canonical_ip(host) or host)
    return sender


class Intake:
    def __init__(
        self,
        sock: socket.socket,
        settings: BridgeSettings,
        notifier: Notifier,
        desk: SubscriptionDesk,
        counters: Counters,
        dispatch: Dispatch,
        stop: threading.Event,
    ) -> None:
        self._sock = sock
        self._settings = settings
        self._notifier = notifier
        self._desk = desk
        self._counters = counters
        self._dispatch = dispatch
        self._stop = stop
        self._networks = parse_networks(settings.allow)
        self._log = LogLimiter(logger)
        self._canonical: dict[str, str] = {}

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self._sock.recvfrom(MAX_DATAGRAM + 1)
            except TimeoutError:
                continue
            except (ConnectionResetError, ConnectionRefusedError):
                continue  # Windows reports an earlier send to a closed port here
            except OSError as exc:
                if self._stop.is_set():
                    return
                self._counters.add("receive_failed")  # e.g. ENOBUFS: keep listening
                self._log.warning("receive_failed", time.monotonic(), "receiving failed: %s", exc)
                time.sleep(0.01)
                continue
            host = str(sender[0])
            canonical = self._canonical.get(host)
            if canonical is None:  # parsed once per source host (a flood comes from few)
                canonical = host if "%" in host else (canonical_ip(host) or host)
                if len(self._canonical) >= 4096:
                    self._canonical.clear()
                self._canonical[host] = canonical
            try:
                self.handle_datagram(data, (canonical, int(sender[1])))
            except Exception:  # noqa: BLE001 - handle_datagram does not raise; if it ever does, intake goes on
                self._counters.add("internal_error")
                self._log.exception("intake", time.monotonic(), "intake failed on a datagram from %s", host)

    def handle_datagram(self, data: bytes, sender: Address) -> None:
        """Check, decode and handle one datagram. Never raises: the intake must go on."""
        self._counters.add("received")
        now = time.monotonic()
        if not allowed(sender[0], self._networks):
            self._counters.add("refused_network")
            self._log.warning(
                "refused_network", now, "refused a packet from %s: not in the allowed networks", sender[0]
            )
            return
        if self._notifier.is_self(sender):
            self._counters.add("self_loop_refused")  # our own datagram came back: never answer it
            return
        limit = int(self._settings.reply_factor * len(data))
        try:
            messages = decode_packet(data)
        except MalformedPacket as exc:
            self._counters.add(f"malformed_{exc.kind}")
            self._log.warning(f"malformed_{exc.kind}", now, "dropped a malformed packet from %s: %s", sender[0], exc)
            known = self._notifier.confirmed(sender[0])
            if self._settings.token is None or known:  # with a token, strangers get no answer to garbage
                self._notifier.reply(
                    sender, "/ldm3d/error", "", "malformed_packet", str(exc), bound=None if known else limit
                )
            return
        for message in messages:
            # per message: a bundle may subscribe its sender's host first (what `ldm3d-bridge send` does)
            bound = None if self._notifier.confirmed(sender[0]) else limit
            try:
                authorized = self._authorize(message)
                trusted = self._settings.token is not None
                self._desk.heard_from(sender[0])
                self._dispatch(protocol.parse(authorized), sender, None if trusted else bound, trusted)
            except BridgeError as exc:
                self._counters.add(f"error_{exc.code}")
                self._notifier.reply(sender, "/ldm3d/error", "", exc.code, str(exc), bound=bound)
            except Exception as exc:  # noqa: BLE001 - the intake must go on; logged (throttled) and answered
                self._counters.add("internal_error")
                self._log.exception(
                    f"internal_{type(exc).__name__}",
                    now,
                    "internal error while handling %s from %s",
                    message.address[:64],
                    sender[0],
                )
                self._notifier.reply(
                    sender,
                    "/ldm3d/error",
                    "",
                    "internal_error",
                    "the bridge failed on this message; it is logged and the bridge carries on",
                    bound=bound,
                )

    def _authorize(self, message: Message) -> Message:
        secret = self._settings.token
        if secret is None:
            return message
        ok, args = take_token(message.args, secret)
        if not ok:
            self._counters.add("refused_token")
            raise Unauthorized(
                'this bridge needs a token: end every message with the two arguments "token", "<secret>"'
            )
        return Message(message.address, args)
