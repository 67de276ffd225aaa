"""Outgoing OSC: replies, job notifications, subscribers.

Everything goes out through the bridge's own UDP socket, so clients see
answers coming from the port they sent to. Rules:

* a **reply** goes to the sender, and to subscribers on the sender's host:
  OSC senders such as TouchDesigner's OSC Out DAT send from a port they do
  not listen on, and subscribe their OSC In DAT's port instead;
* a **job notification** goes to the job's sender and to every subscriber.

Replies are limited per sender address (``reply_per_s``): a flood, or packets
with a forged source, cannot turn the bridge into an amplifier.

Sending never raises: a target whose port is closed must not stop the bridge.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable

from bridge.errors import TooManySubscribers
from bridge.osc.codec import Arg, encode_message
from bridge.serve.jobs import Address
from bridge.serve.limits import Counters, TokenBuckets

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self,
        sock: socket.socket,
        max_subscribers: int = 32,
        reply_limit: TokenBuckets | None = None,
        counters: Counters | None = None,
    ) -> None:
        self._sock = sock
        self._max = max_subscribers
        self._reply_limit = reply_limit
        self.counters = counters or Counters()
        self._subscribers: dict[Address, None] = {}  # ordered set
        self._lock = threading.Lock()
        self._failed: set[Address] = set()

    @property
    def subscribers(self) -> list[Address]:
        with self._lock:
            return list(self._subscribers)

    def subscribe(self, target: Address) -> None:
        with self._lock:
            if target not in self._subscribers and len(self._subscribers) >= self._max:
                raise TooManySubscribers(
                    f"{len(self._subscribers)} subscribers already (the limit); unsubscribe one first"
                )
            self._subscribers[target] = None

    def unsubscribe(self, target: Address) -> bool:
        with self._lock:
            return self._subscribers.pop(target, 0) is None

    def send_to(self, targets: Iterable[Address | None], address: str, *args: Arg) -> None:
        data = encode_message(address, *args)
        seen: set[Address] = set()
        for target in targets:
            if target is None or target in seen:
                continue
            seen.add(target)
            try:
                self._sock.sendto(data, target)
            except OSError as exc:
                self.counters.add("send_failed")
                if target not in self._failed:  # log each dead target once
                    self._failed.add(target)
                    logger.warning("cannot send %s to %s:%s: %s", address, target[0], target[1], exc)

    def reply(self, sender: Address | None, address: str, *args: Arg) -> None:
        """Answer a message, unless its sender has used up its reply budget (a flood)."""
        if sender is not None and self._reply_limit is not None:
            with self._lock:
                ok = self._reply_limit.allow(sender, time.monotonic())
            if not ok:
                self.counters.add("replies_suppressed")
                return
        same_host = [s for s in self.subscribers if sender is not None and s[0] == sender[0]]
        self.send_to([sender, *same_host], address, *args)

    def notify(self, sender: Address | None, address: str, *args: Arg) -> None:
        self.send_to([sender, *self.subscribers], address, *args)

    def broadcast(self, address: str, *args: Arg) -> None:
        self.send_to(self.subscribers, address, *args)
