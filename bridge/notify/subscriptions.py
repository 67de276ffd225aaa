"""Who hears the bridge's notifications: subscriptions with an owner, a lease and a confirmation.

Pure: the clock is passed in. Rules (docs/osc.md, "Subscriptions"):

* a target is one canonical address (``bridge.notify.addresses``) and port;
* a subscription for the sender's own host is active at once; one for another
  host (a *third party*) stays **pending**, and receives nothing, until a message
  from that host arrives (any, e.g. its own ``/ldm3d/subscribe``) or the request
  carried the bridge's token; a pending one lapses after ``pending_s``;
* **leases**: a subscription expires ``lease_s`` after it was made or last
  renewed; subscribing again renews it, and so does **any message from its host**
  (a TouchOSC tablet cannot send ``/ldm3d/subscribe`` on a timer, but its buttons and
  pings keep it alive). A subscriber may ask for its own lease (``lease`` seconds),
  or for none (``lease 0``: until it is unsubscribed, or a day unheard of after a restart);
* only the **owner** (the host that asked) or the target's own host, or anyone
  with the token, may unsubscribe it;
* **slots**: at most ``per_host`` subscriptions per target host and ``total`` in all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bridge.contract.protocol import MAX_LEASE_S
from bridge.errors import NotOwner, TooManySubscribers

Address = tuple[str, int]
#: A host's leases are renewed by its messages at most this often (seconds; a quarter of a shorter
#: lease): a flood from a subscribed host costs no scan per datagram.
RENEW_EVERY_S = 1.0


def lease_for(asked: float | None, default: float) -> float:
    """The lease a subscription gets: the bridge's default, the asked seconds, or none (0 → infinite).
    A value outside 0..MAX_LEASE_S (a damaged file) gets the default."""
    if asked is None or not 0 <= asked <= MAX_LEASE_S:
        return default
    return math.inf if asked == 0 else asked


@dataclass
class Subscription:
    target: Address
    owner: str
    confirmed: bool
    expires: float
    #: When the bridge last heard of it (wall clock): a subscribe, or any message from its host.
    heard: float = 0.0
    #: Seconds each renewal lasts (``math.inf``: no expiry).
    lease: float = 3600.0

    @property
    def written_lease(self) -> float:
        """The lease as the contract writes it (``/ldm3d/subscribed``, the subscribers file): 0 for none."""
        return 0.0 if math.isinf(self.lease) else self.lease


class Subscriptions:
    def __init__(self, total: int = 32, per_host: int = 4, lease_s: float = 3600.0, pending_s: float = 60.0) -> None:
        self.total = total
        self.per_host = per_host
        self.lease_s = lease_s
        self.pending_s = pending_s
        self._subs: dict[Address, Subscription] = {}  # insertion-ordered
        self._pending = 0  # how many are not confirmed: most messages need no scan for them
        #: Set when the confirmed set or what is known of it changed: time to save it (persistence).
        self.dirty = False
        #: Wall clock of the last message per subscribed host (for export; only hosts that hold one, so a
        #: flood from forged sources cannot grow it).
        self._heard_host: dict[str, float] = {}
        #: The active targets, cached until something changes or the soonest lease ends (asked per message).
        self._active: list[Address] | None = None
        self._hosts: frozenset[str] = frozenset()
        self._valid_until = 0.0
        #: When each subscribed host's leases were last renewed by one of its messages (monotonic).
        self._renewed: dict[str, float] = {}

    def subscribe(
        self, target: Address, owner: str, trusted: bool, now: float, wall: float = 0.0, lease: float | None = None
    ) -> tuple[Subscription, bool]:
        """Add or renew; (the subscription, whether it just became active). ``trusted``: the token was given.
        ``lease``: the seconds asked for (0: no expiry; None: the bridge's ``lease_s``)."""
        self.expire(now)  # lapsed ones free their slots
        confirmed = trusted or target[0] == owner
        sub = self._subs.get(target)
        if sub is not None:
            was_active = sub.confirmed
            sub.confirmed = sub.confirmed or confirmed
            self._pending -= sub.confirmed and not was_active
            if confirmed:  # the target's own host (or the token) chooses its lease, never a stranger
                sub.lease = lease_for(lease, self.lease_s)
            if sub.confirmed:
                sub.expires = now + sub.lease
                sub.heard = max(sub.heard, wall)
                if confirmed:
                    sub.owner = owner
            self._changed()
            return sub, sub.confirmed and not was_active
        on_host = sum(1 for s in self._subs.values() if s.target[0] == target[0])
        if on_host >= self.per_host:
            raise TooManySubscribers(
                f"{target[0]} has {on_host} subscriptions already (the limit per host); "
                "unsubscribe one or let its lease run out"
            )
        if len(self._subs) >= self.total:
            raise TooManySubscribers(f"{len(self._subs)} subscriptions already (the limit); unsubscribe one first")
        chosen = lease_for(lease, self.lease_s)
        sub = Subscription(target, owner, confirmed, now + (chosen if confirmed else self.pending_s), wall, chosen)
        self._subs[target] = sub
        self._pending += not confirmed
        self._changed()
        return sub, confirmed

    def heard_from(self, host: str, now: float) -> list[Subscription]:
        """A message came from ``host``: its pending subscriptions become active (returned)."""
        if not self._pending:
            return []
        woken = [s for s in self._subs.values() if not s.confirmed and s.target[0] == host and now < s.expires]
        for sub in woken:
            sub.confirmed = True
            sub.expires = now + sub.lease
        self._pending -= len(woken)
        self._changed()
        return woken

    def unsubscribe(self, target: Address, requester: str, trusted: bool) -> bool:
        """Remove; False when it was not subscribed. NotOwner when ``requester`` may not."""
        sub = self._subs.get(target)
        if sub is None:
            return False
        if not (trusted or requester in (sub.owner, target[0])):
            raise NotOwner(
                f"{target[0]}:{target[1]} was subscribed by {sub.owner}; only that host, {target[0]} itself "
                "or a sender with the token may unsubscribe it"
            )
        del self._subs[target]
        self._pending -= not sub.confirmed
        self._changed()
        return True

    def expire(self, now: float) -> list[Subscription]:
        gone = [s for s in self._subs.values() if now >= s.expires]
        for sub in gone:
            del self._subs[sub.target]
            self._pending -= not sub.confirmed
        if gone:
            self._changed()
        return gone

    def _changed(self) -> None:
        self._active = None
        self.dirty = True

    def note_heard(self, host: str, wall: float, now: float) -> None:
        """A message from ``host`` (cheap: called per message): for a subscribed host, kept (for the
        file that outlives a restart) and its leases renewed (at most once per ``RENEW_EVERY_S``)."""
        self._cache(now)
        if host not in self._hosts:
            return
        self._heard_host[host] = wall
        if now - self._renewed.get(host, -math.inf) < min(RENEW_EVERY_S, self.lease_s / 4):
            return
        self._renewed[host] = now
        for sub in self._subs.values():
            if sub.confirmed and sub.target[0] == host:
                sub.expires = max(sub.expires, now + sub.lease)

    def export(self) -> list[dict[str, object]]:
        """The confirmed subscriptions, for the file that outlives a restart."""
        return [
            {"host": s.target[0], "port": s.target[1], "owner": s.owner,
             "heard": max(s.heard, self._heard_host.get(s.target[0], 0.0)),
             **({} if s.lease == self.lease_s else {"lease": s.written_lease})}
            for s in self._subs.values()
            if s.confirmed
        ]  # fmt: skip

    def restore(self, target: Address, owner: str, heard: float, now: float, lease: float | None = None) -> None:
        """A subscription from the file: confirmed, with a fresh lease (its own, when it asked for one)."""
        if target not in self._subs and len(self._subs) < self.total:
            chosen = lease_for(lease, self.lease_s)
            self._subs[target] = Subscription(target, owner, True, now + chosen, heard, chosen)
            self._changed()

    def _cache(self, now: float) -> list[Address]:
        if self._active is None or now >= self._valid_until:
            live = [s for s in self._subs.values() if s.confirmed and now < s.expires]
            self._active = [s.target for s in live]
            self._hosts = frozenset(t[0] for t in self._active)
            self._heard_host = {h: t for h, t in self._heard_host.items() if h in self._hosts}
            self._renewed = {h: t for h, t in self._renewed.items() if h in self._hosts}
            self._valid_until = min((s.expires for s in live), default=float("inf"))
        return self._active

    def active(self, now: float) -> list[Address]:
        return list(self._cache(now))

    def has_host(self, host: str, now: float) -> bool:
        """Whether ``host`` holds an active subscription (its replies then go out unbounded)."""
        self._cache(now)
        return host in self._hosts

    def __len__(self) -> int:
        return len(self._subs)
