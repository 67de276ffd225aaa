"""Outgoing OSC: replies, job notifications, subscribers.

Everything goes out through the bridge's own UDP socket, so clients see
answers coming from the port they sent to. Rules:

* a **reply** goes to the sender, and to active subscribers on the sender's host:
  OSC senders such as TouchDesigner's OSC Out DAT send from a port they do
  not listen on, and subscribe their OSC In DAT's port instead;
* a **job notification** goes to the job's sender and to every active subscriber.

Amplification guards (a forged source address must not turn the bridge into
a weapon): every message counts against its **destination host's** budget
(``reply_per_s``, burst ``reply_burst``); messages that end a job are counted but
never dropped (they are bounded by the job rate). A reply to a sender that is
not **confirmed** (its host holds no active subscription, and no token was given)
is at most ``reply_factor`` times the size of the request: a longer error is
cut to fit, any other longer reply becomes ``reply_too_large``.

A **list** (:meth:`Notifier.reply_list`: ``/ldm3d/cue/list``, one message per cue, a thousand
of them; ``/ldm3d/moderation/list``) to a confirmed host is never dropped by that budget: it is
queued and sent in order, as fast as a share of the destination's budget allows
(``PACED_SHARE``: the other messages to that host keep the rest), the first part at once and the
rest from :meth:`Notifier.pace` (the monitor's tick). An unconfirmed host gets at most the
request's bound for the whole list, all messages together (:mod:`bridge.notify.lists`).

Sending never raises: an address that cannot be encoded, a target whose port is
closed, an unreachable network, all end as a counted, rate-limited log line.

Operator pages (:mod:`bridge.serve.pages`) are senders too, with addresses whose host
starts with ``page:``. They are not sent UDP: a reply meant for one goes to
:attr:`Notifier.page_reply`, and events reach every page through the observers (so a
page is never told an event twice). Their connection carries the token, and TCP
cannot be forged, so page replies have no budget and no size bound.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

from bridge.notify.addresses import canonical_ip, interface_addresses
from bridge.notify.limits import Counters, LogLimiter, TokenBuckets
from bridge.notify.lists import Message, cut_notice, encoded_size, fit_list
from bridge.notify.subscriptions import Address, Subscription, Subscriptions
from bridge.osc.client import FINAL
from bridge.osc.codec import Arg, encode_message

logger = logging.getLogger(__name__)

#: The host part of an operator page's sender address (``("page:127.0.0.1", 3)``).
PAGE_PREFIX = "page:"
TOO_LARGE = "a full answer is larger than this request allows; subscribe this host first (or use the token)"
#: The share of a destination host's budget (rate and burst) a paced list may take.
PACED_SHARE = 0.5
#: Paced lists waiting per destination host (a new one beyond drops the oldest), and hosts waiting.
PACED_PER_HOST = 4
PACED_HOSTS = 64
#: One message of a paced list for one target: (target, OSC address, encoded datagram).
_Item = tuple[Address, str, bytes]


class Notifier:
    def __init__(
        self,
        sock: socket.socket,
        subscriptions: Subscriptions | None = None,
        send_limit: TokenBuckets | None = None,
        counters: Counters | None = None,
    ) -> None:
        self._sock = sock
        self._ipv6 = sock.family == socket.AF_INET6
        self._own_port = int(sock.getsockname()[1])
        bound = canonical_ip(str(sock.getsockname()[0]).split("%", 1)[0]) or ""
        #: This bridge's own addresses: a target on one of them at our port would be a loop.
        wildcard = ipaddress.ip_address(bound).is_unspecified
        self._own = {bound, *(interface_addresses() if wildcard else ())}
        self._own_loopback = wildcard or ipaddress.ip_address(bound).is_loopback
        self._subs = subscriptions if subscriptions is not None else Subscriptions()
        self._send_limit = send_limit
        self.counters = counters if counters is not None else Counters()
        self._log = LogLimiter(logger)
        self._lock = threading.Lock()
        #: Called with (address, args) for every event (what subscribers hear), whoever else hears it:
        #: the one stream the WebSocket listeners get too. Observers must not block.
        self.observers: list[Callable[[str, tuple[Arg, ...]], None]] = []
        #: Delivers a reply to an operator page: (page address, OSC address, args). Must not block.
        self.page_reply: Callable[[Address, str, tuple[Arg, ...]], None] | None = None
        #: Destination host → the lists still being paced out to it, oldest first.
        self._paced: OrderedDict[str, deque[deque[_Item]]] = OrderedDict()
        self._pace_lock = threading.Lock()
        self._pace_limit = (
            None
            if send_limit is None
            else TokenBuckets(send_limit.rate * PACED_SHARE, max(1.0, send_limit.burst * PACED_SHARE))
        )

    # -- subscriptions -----------------------------------------------------

    @property
    def subscribers(self) -> list[Address]:
        with self._lock:
            return self._subs.active(time.monotonic())

    def subscribe(
        self, target: Address, owner: str, trusted: bool, lease: float | None = None
    ) -> tuple[Subscription, bool]:
        with self._lock:
            return self._subs.subscribe(target, owner, trusted, time.monotonic(), time.time(), lease)

    def unsubscribe(self, target: Address, requester: str, trusted: bool) -> bool:
        with self._lock:
            return self._subs.unsubscribe(target, requester, trusted)

    def heard_from(self, host: str) -> list[Subscription]:
        with self._lock:
            self._subs.note_heard(host, time.time(), time.monotonic())
            return self._subs.heard_from(host, time.monotonic())

    def restore(self, target: Address, owner: str, heard: float, lease: float | None = None) -> None:
        """A subscription kept from before a restart."""
        with self._lock:
            self._subs.restore(target, owner, heard, time.monotonic(), lease)

    def to_save(self, force: bool = False) -> list[dict[str, object]] | None:
        """The confirmed subscriptions when they changed since the last call (or ``force``), else None."""
        with self._lock:
            if not (self._subs.dirty or force):
                return None
            self._subs.dirty = False
            return self._subs.export()

    def expire(self) -> list[Subscription]:
        with self._lock:
            return self._subs.expire(time.monotonic())

    def confirmed(self, host: str) -> bool:
        with self._lock:
            return self._subs.has_host(host, time.monotonic())

    @property
    def lease_s(self) -> float:
        return self._subs.lease_s

    def is_self(self, target: Address) -> bool:
        """Whether ``target`` is this bridge's own socket (sending there would loop forever)."""
        if target[1] != self._own_port:
            return False
        try:
            ip = ipaddress.ip_address(target[0])
        except ValueError:
            return False
        return (ip.is_loopback and self._own_loopback) or ip.is_unspecified or target[0] in self._own

    # -- sending -----------------------------------------------------------

    def _destination(self, target: Address) -> tuple[str, int]:
        host = target[0]
        if self._ipv6 and ":" not in host:
            host = f"::ffff:{host}"  # an IPv4 subscriber seen from a dual-stack socket
        return host, target[1]

    def _encode(self, address: str, args: tuple[Arg, ...]) -> bytes | None:
        try:
            return encode_message(address, *args)
        except Exception as exc:  # noqa: BLE001 - no send path may raise
            self.counters.add("encode_failed")
            self._log.warning("encode_failed", time.monotonic(), "cannot encode %s: %s", address, exc)
            return None

    def _admit(self, targets: Iterable[Address | None], essential: bool) -> list[Address]:
        """The targets that get this message: no duplicates, never the bridge itself, and each
        within its host's budget (charged here; a message that ends a job is charged but always sent)."""
        admitted: list[Address] = []
        now = time.monotonic()
        for target in targets:
            if target is None or target in admitted:
                continue
            if self.is_self(target):
                self.counters.add("self_loop_refused")
                continue
            if self._send_limit is not None:
                with self._lock:
                    ok = self._send_limit.allow(target[0], now)
                if not ok and not essential:
                    self.counters.add("replies_suppressed")
                    continue
            admitted.append(target)
        return admitted

    def _send(self, data: bytes, targets: list[Address], address: str) -> None:
        for target in targets:
            try:
                self._sock.sendto(data, self._destination(target))
            except Exception as exc:  # noqa: BLE001 - OSError, or anything the platform raises for odd addresses
                self.counters.add("send_failed")
                self._log.warning(
                    "send_failed", time.monotonic(), "cannot send %s to %s:%s: %s", address, target[0], target[1], exc
                )

    def send_to(self, targets: Iterable[Address | None], address: str, *args: Arg) -> None:
        """A message for ``targets`` only (a page among them gets it as a reply)."""
        self._deliver(targets, address, args, observed=False)

    def _deliver(self, targets: Iterable[Address | None], address: str, args: tuple[Arg, ...], observed: bool) -> None:
        udp = self._pages(targets, address, args, observed)
        admitted = self._admit(udp, essential=address in FINAL and bool(args) and args[0] != "")
        if admitted and (data := self._encode(address, args)) is not None:
            self._send(data, admitted, address)

    def _pages(
        self, targets: Iterable[Address | None], address: str, args: tuple[Arg, ...], observed: bool
    ) -> list[Address | None]:
        """The UDP targets among ``targets``; pages among them get the message now, unless the
        observers will bring it to them (``observed``)."""
        udp: list[Address | None] = []
        told: list[Address] = []
        for target in targets:
            if target is None or not target[0].startswith(PAGE_PREFIX):
                udp.append(target)
            elif not observed and target not in told and self.page_reply is not None:
                told.append(target)
                try:
                    self.page_reply(target, address, args)
                except Exception:  # noqa: BLE001 - a page never breaks sending
                    self.counters.add("page_reply_failed")
                    self._log.exception("page_reply", time.monotonic(), "a page reply failed on %s", address)
        return udp

    def reply(self, sender: Address | None, address: str, *args: Arg, bound: int | None = None) -> None:
        """Answer a message: to its sender (at most ``bound`` bytes, when given) and same-host subscribers."""
        same_host = [s for s in self.subscribers if sender is not None and s[0] == sender[0]]
        self._answer(sender, same_host, address, args, bound, observed=False)

    def reply_list(
        self, sender: Address | None, items: Sequence[Message], end: Message, bound: int | None, noun: str
    ) -> None:
        """A list answer: ``items`` then ``end`` (``/ldm3d/cue/end <count>``). To a confirmed sender
        (``bound`` None) all of it, paced (:meth:`reply_paced`); to an unconfirmed one at most
        ``bound`` bytes all together: the items that fit, then ``reply_too_large`` naming how many
        of the ``noun`` it got (no ``end``: the list was cut)."""
        if bound is None:
            self.reply_paced(sender, [*items, end])
            return
        answer, cut = fit_list(items, end, bound, lambda sent: cut_notice(sent, len(items), noun))
        for address, args in answer:
            self.reply(sender, address, *args, bound=bound)
        if cut is not None:
            self.counters.add("replies_too_large")
            used = sum(encoded_size(message) for message in answer)
            self.reply(sender, cut[0], *cut[1], bound=max(0, bound - used))

    def reply_paced(self, sender: Address | None, messages: Sequence[Message]) -> None:
        """A long answer (a list, in order) to a **confirmed** sender and its host's subscribers: none is
        dropped by the per-destination budget. What a share of that budget allows goes out now, the rest
        from :meth:`pace`; a page gets it all at once. Never blocks: the list is only queued."""
        same_host = [s for s in self.subscribers if sender is not None and s[0] == sender[0]]
        targets: list[Address] = []
        items: deque[_Item] = deque()
        for address, args in messages:
            udp = self._pages([sender, *same_host], address, args, observed=False)
            if not targets:
                for target in udp:
                    if target is None or target in targets:
                        continue
                    if self.is_self(target):
                        self.counters.add("self_loop_refused")
                        continue
                    targets.append(target)
            if targets and (data := self._encode(address, args)) is not None:
                items.extend((target, address, data) for target in targets)
        if not items:
            return
        host = targets[0][0]
        with self._pace_lock:
            lists = self._paced.pop(host, deque())
            lists.append(items)
            while len(lists) > PACED_PER_HOST:
                self.counters.add("replies_suppressed", len(lists.popleft()))
            self._paced[host] = lists
            while len(self._paced) > PACED_HOSTS:
                _, dropped = self._paced.popitem(last=False)
                self.counters.add("replies_suppressed", sum(len(items) for items in dropped))
        self.pace()

    def pace(self, now: float | None = None) -> None:
        """Send what the paced lists' share of each destination's budget allows now (the monitor's tick)."""
        now = time.monotonic() if now is None else now
        with self._pace_lock:
            for host in list(self._paced):
                lists = self._paced[host]
                while lists:
                    items = lists[0]
                    while items and self._pace_allows(host, now):
                        target, address, data = items.popleft()
                        self._send(data, [target], address)
                    if items:
                        break  # this host's share is spent: more at the next tick
                    lists.popleft()
                if not lists:
                    del self._paced[host]

    def _pace_allows(self, host: str, now: float) -> bool:
        """One message more of a paced list to ``host``: within the list's share, and the host's budget."""
        if self._pace_limit is None or self._send_limit is None:
            return True
        with self._lock:
            return self._pace_limit.allow(host, now) and self._send_limit.allow(host, now)

    def notify(self, sender: Address | None, address: str, *args: Arg, bound: int | None = None) -> None:
        """An event: to its sender (at most ``bound`` bytes, when given), every subscriber and the observers."""
        self._answer(sender, self.subscribers, address, args, bound, observed=True)
        self._observe(address, args)

    def broadcast(self, address: str, *args: Arg) -> None:
        """An event for every subscriber and the observers."""
        self._deliver(self.subscribers, address, args, observed=True)
        self._observe(address, args)

    def event(self, targets: Iterable[Address | None], address: str, *args: Arg) -> None:
        """An event for ``targets`` (the worker's list of a job's sender and subscribers) and the observers."""
        self._deliver(targets, address, args, observed=True)
        self._observe(address, args)

    def _observe(self, address: str, args: tuple[Arg, ...]) -> None:
        for observer in list(self.observers):
            try:
                observer(address, args)
            except Exception:  # noqa: BLE001 - an observer never breaks sending
                self.counters.add("observer_failed")
                self._log.exception("observer_failed", time.monotonic(), "an event observer failed on %s", address)

    def _answer(
        self,
        sender: Address | None,
        others: list[Address],
        address: str,
        args: tuple[Arg, ...],
        bound: int | None,
        observed: bool,
    ) -> None:
        essential = address in FINAL and bool(args) and args[0] != ""
        targets = self._pages([sender, *others], address, args, observed)
        if sender not in targets:
            sender = None  # a page: answered above
        admitted = self._admit(targets, essential)
        if not admitted or (data := self._encode(address, args)) is None:
            return  # over budget: nothing is even encoded (a flood costs as little as possible)
        if sender in admitted and bound is not None and len(data) > bound:
            self.counters.add("replies_too_large")
            admitted.remove(sender)
            small = self._fit(address, args, bound)
            if small is not None:
                self._send(small, [sender], address)
        self._send(data, admitted, address)

    def _fit(self, address: str, args: tuple[Arg, ...], bound: int) -> bytes | None:
        """An error cut to ``bound`` bytes (its code kept), or ``reply_too_large`` for any other reply."""
        if address == "/ldm3d/error" and len(args) == 3:
            job_id, code, message = args
        else:
            job_id, code, message = "", "reply_too_large", f"{address}: {TOO_LARGE}"
        base = len(self._encode("/ldm3d/error", (job_id, code, "")) or b"")
        room = max(0, bound - base)
        text = str(message).encode("utf-8")[:room].decode("utf-8", "ignore")
        data = self._encode("/ldm3d/error", (job_id, code, text))
        return data if data is not None and len(data) <= bound else None
