"""Who hears the bridge's notifications: subscriptions with an owner, a lease and a confirmation.

Pure: the clock is passed in. Rules (docs/osc.md, "Subscriptions"):

* a target is one canonical address (``bridge.notify.addresses``) and port;
* a subscription for the sender's own host is active at once; one for another
  host (a *third party*) stays **pending**, and receives nothing, until a message
  from that host arrives (any, e.g. its own ``/ldm3d/subscribe``) or the request
  carried the bridge's token; a pending one lapses after ``pending_s``;
* **leases**: a subscription expires ``lease_s`` after it was made or last
  renewed (subscribing again renews it);
* only the **owner** (the host that asked) or the target's own host, or anyone
  with the token, may unsubscribe it;
* **slots**: at most ``per_host`` subscriptions per target host and ``total`` in all.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import NotOwner, TooManySubscribers

Address = tuple[str, int]


@dataclass
class Subscription:
    target: Address
    owner: str
    confirmed: bool
    expires: float
    #: When the bridge last heard of it (wall clock): a subscribe, or any message from its host.
    heard: float = 0.0


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

    def subscribe(
        self, target: Address, owner: str, trusted: bool, now: float, wall: float = 0.0
    ) -> tuple[Subscription, bool]:
        """Add or renew; (the subscription, whether it just became active). ``trusted``: the token was given."""
        self.expire(now)  # lapsed ones free their slots
        confirmed = trusted or target[0] == owner
        sub = self._subs.get(target)
        if sub is not None:
            was_active = sub.confirmed
            sub.confirmed = sub.confirmed or confirmed
            self._pending -= sub.confirmed and not was_active
            if sub.confirmed:
                sub.expires = now + self.lease_s
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
        sub = Subscription(target, owner, confirmed, now + (self.lease_s if confirmed else self.pending_s), wall)
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
            sub.expires = now + self.lease_s
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
        """A message from ``host`` (cheap: called per message); kept only for a subscribed host."""
        self._cache(now)
        if host in self._hosts:
            self._heard_host[host] = wall

    def export(self) -> list[dict[str, object]]:
        """The confirmed subscriptions, for the file that outlives a restart."""
        return [
            {"host": s.target[0], "port": s.target[1], "owner": s.owner,
             "heard": max(s.heard, self._heard_host.get(s.target[0], 0.0))}
            for s in self._subs.values()
            if s.confirmed
        ]  # fmt: skip

    def restore(self, target: Address, owner: str, heard: float, now: float) -> None:
        """A subscription from the file: confirmed, with a fresh lease."""
        if target not in self._subs and len(self._subs) < self.total:
            self._subs[target] = Subscription(target, owner, True, now + self.lease_s, heard)
            self._changed()

    def _cache(self, now: float) -> list[Address]:
        if self._active is None or now >= self._valid_until:
            live = [s for s in self._subs.values() if s.confirmed and now < s.expires]
            self._active = [s.target for s in live]
            self._hosts = frozenset(t[0] for t in self._active)
            self._heard_host = {h: t for h, t in self._heard_host.items() if h in self._hosts}
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
