"""The subscription rules (bridge/notify/subscriptions.py, docs/osc.md "Subscriptions") as pure functions of a
clock: who is active, pending, renewed, expired, allowed to unsubscribe, and what outlives a restart."""

from __future__ import annotations

import pytest

from bridge.errors import NotOwner, TooManySubscribers
from bridge.notify.subscriptions import Subscriptions

DESK, TABLET, OTHER = "10.0.0.5", "10.0.0.9", "10.0.0.77"


def test_a_subscription_for_the_senders_own_host_is_active_at_once_for_its_lease() -> None:
    subs = Subscriptions(lease_s=100.0)
    sub, became_active = subs.subscribe((DESK, 9001), DESK, trusted=False, now=0.0, wall=1000.0)
    assert became_active and sub.confirmed and sub.expires == 100.0 and sub.heard == 1000.0
    assert subs.active(now=99.9) == [(DESK, 9001)] and subs.has_host(DESK, now=99.9)
    assert subs.active(now=100.0) == [] and not subs.has_host(DESK, now=100.0)  # the lease ends at 100
    assert [s.target for s in subs.expire(now=100.0)] == [(DESK, 9001)] and len(subs) == 0


def test_subscribing_again_renews_the_lease_and_is_not_news() -> None:
    subs = Subscriptions(lease_s=100.0)
    subs.subscribe((DESK, 9001), DESK, trusted=False, now=0.0, wall=10.0)
    sub, became_active = subs.subscribe((DESK, 9001), DESK, trusted=False, now=60.0, wall=5.0)
    assert not became_active and sub.expires == 160.0 and sub.heard == 10.0  # heard never goes back
    assert subs.active(now=150.0) == [(DESK, 9001)]


def test_a_third_party_subscription_waits_until_its_host_speaks() -> None:
    subs = Subscriptions(lease_s=100.0, pending_s=30.0)
    sub, became_active = subs.subscribe((TABLET, 9001), DESK, trusted=False, now=0.0)
    assert not became_active and not sub.confirmed and sub.expires == 30.0
    assert subs.active(now=1.0) == [] and subs.heard_from(OTHER, now=1.0) == []
    sub2, again = subs.subscribe((TABLET, 9001), DESK, trusted=False, now=2.0)  # asking again changes nothing
    assert sub2 is sub and not again and sub.expires == 30.0
    woken = subs.heard_from(TABLET, now=10.0)
    assert woken == [sub] and sub.confirmed and sub.expires == 110.0
    assert subs.active(now=10.0) == [(TABLET, 9001)]
    assert subs.heard_from(TABLET, now=11.0) == []  # nothing left pending


def test_a_pending_subscription_lapses_and_a_late_message_wakes_nothing() -> None:
    subs = Subscriptions(pending_s=30.0)
    subs.subscribe((TABLET, 9001), DESK, trusted=False, now=0.0)
    assert subs.heard_from(TABLET, now=30.0) == []  # lapsed exactly at pending_s
    assert [s.target for s in subs.expire(now=30.0)] == [(TABLET, 9001)]
    subs.subscribe((TABLET, 9002), DESK, trusted=False, now=40.0)
    assert [s.target for s in subs.heard_from(TABLET, now=69.9)] == [(TABLET, 9002)]


def test_the_token_confirms_a_third_party_at_once_and_the_target_confirms_a_pending_one() -> None:
    subs = Subscriptions(lease_s=100.0)
    sub, became_active = subs.subscribe((TABLET, 9001), DESK, trusted=True, now=0.0)
    assert became_active and sub.confirmed and sub.expires == 100.0
    pending, _ = subs.subscribe((TABLET, 9002), DESK, trusted=False, now=0.0)
    confirmed, became_active = subs.subscribe((TABLET, 9002), TABLET, trusted=False, now=5.0, wall=7.0)
    assert confirmed is pending and became_active and pending.owner == TABLET and pending.expires == 105.0
    assert pending.heard == 7.0


def test_slots_per_host_and_in_all_are_enforced_with_the_numbers() -> None:
    subs = Subscriptions(total=3, per_host=2)
    subs.subscribe((DESK, 1), DESK, trusted=False, now=0.0)
    subs.subscribe((DESK, 2), DESK, trusted=False, now=0.0)
    with pytest.raises(TooManySubscribers) as caught:
        subs.subscribe((DESK, 3), DESK, trusted=False, now=0.0)
    assert str(caught.value) == (
        "10.0.0.5 has 2 subscriptions already (the limit per host); unsubscribe one or let its lease run out"
    )
    subs.subscribe((DESK, 1), DESK, trusted=False, now=1.0)  # renewing takes no new slot
    subs.subscribe((TABLET, 1), TABLET, trusted=False, now=0.0)
    with pytest.raises(TooManySubscribers, match=r"^3 subscriptions already \(the limit\); unsubscribe one first$"):
        subs.subscribe((OTHER, 1), OTHER, trusted=False, now=0.0)
    assert len(subs) == 3


def test_lapsed_subscriptions_free_their_slots_for_new_ones() -> None:
    subs = Subscriptions(total=1, per_host=1, lease_s=10.0)
    subs.subscribe((DESK, 1), DESK, trusted=False, now=0.0)
    _, became_active = subs.subscribe((TABLET, 1), TABLET, trusted=False, now=10.0)  # the first lapsed
    assert became_active and subs.active(now=10.0) == [(TABLET, 1)]


def test_who_may_unsubscribe() -> None:
    subs = Subscriptions()
    subs.subscribe((TABLET, 9001), DESK, trusted=True, now=0.0)
    with pytest.raises(NotOwner, match=r"10\.0\.0\.9:9001 was subscribed by 10\.0\.0\.5; only that host"):
        subs.unsubscribe((TABLET, 9001), OTHER, trusted=False)
    assert subs.unsubscribe((TABLET, 9001), TABLET, trusted=False)  # the target itself may
    assert not subs.unsubscribe((TABLET, 9001), TABLET, trusted=False)  # gone already
    subs.subscribe((TABLET, 9001), DESK, trusted=True, now=0.0)
    assert subs.unsubscribe((TABLET, 9001), DESK, trusted=False)  # the owner may
    subs.subscribe((TABLET, 9001), DESK, trusted=True, now=0.0)
    assert subs.unsubscribe((TABLET, 9001), OTHER, trusted=True)  # anyone with the token may
    assert len(subs) == 0


def test_unsubscribing_a_pending_one_keeps_the_pending_count_right() -> None:
    subs = Subscriptions()
    subs.subscribe((TABLET, 9001), DESK, trusted=False, now=0.0)
    assert subs.unsubscribe((TABLET, 9001), DESK, trusted=False)
    subs.subscribe((TABLET, 9002), DESK, trusted=True, now=0.0)
    assert subs.heard_from(TABLET, now=1.0) == []  # no pending one is left to wake


def test_export_and_restore_keep_confirmed_subscriptions_with_when_they_were_heard() -> None:
    subs = Subscriptions(lease_s=100.0)
    subs.subscribe((DESK, 9001), DESK, trusted=False, now=0.0, wall=500.0)
    subs.subscribe((TABLET, 9001), DESK, trusted=False, now=0.0, wall=500.0)  # pending: not saved
    subs.note_heard(DESK, wall=800.0, now=1.0)
    subs.note_heard(OTHER, wall=900.0, now=1.0)  # not subscribed: not remembered
    assert subs.export() == [{"host": DESK, "port": 9001, "owner": DESK, "heard": 800.0}]
    assert subs.dirty
    restored = Subscriptions(total=2, lease_s=50.0)
    restored.restore((DESK, 9001), DESK, heard=800.0, now=10.0)
    restored.restore((DESK, 9001), OTHER, heard=1.0, now=10.0)  # already there: unchanged
    restored.restore((TABLET, 1), DESK, heard=1.0, now=10.0)
    restored.restore((OTHER, 1), DESK, heard=1.0, now=10.0)  # beyond the total: dropped
    assert restored.active(now=59.9) == [(DESK, 9001), (TABLET, 1)] and restored.active(now=60.0) == []
    assert restored.export()[0] == {"host": DESK, "port": 9001, "owner": DESK, "heard": 800.0}


def test_the_active_list_follows_every_change_and_lease_end() -> None:
    subs = Subscriptions(lease_s=10.0)
    subs.subscribe((DESK, 1), DESK, trusted=False, now=0.0)
    assert subs.active(now=1.0) == [(DESK, 1)]
    subs.subscribe((DESK, 2), DESK, trusted=False, now=5.0)
    assert subs.active(now=5.0) == [(DESK, 1), (DESK, 2)]  # a cached list is refreshed on change
    assert subs.active(now=10.0) == [(DESK, 2)]  # and when the soonest lease ends
    subs.unsubscribe((DESK, 2), DESK, trusted=False)
    assert subs.active(now=10.0) == [] and not subs.has_host(DESK, now=10.0)


def test_removing_a_confirmed_subscription_leaves_pending_ones_able_to_wake() -> None:
    """The pending count is only a shortcut: it must never reach 0 while one is still pending."""
    subs = Subscriptions()
    subs.subscribe((DESK, 1), DESK, trusted=False, now=0.0)
    subs.subscribe((TABLET, 1), DESK, trusted=False, now=0.0)  # pending
    assert subs.unsubscribe((DESK, 1), DESK, trusted=False)
    assert [s.target for s in subs.heard_from(TABLET, now=1.0)] == [(TABLET, 1)]


def test_the_refusal_to_unsubscribe_names_who_may() -> None:
    subs = Subscriptions()
    subs.subscribe((TABLET, 9001), DESK, trusted=True, now=0.0)
    with pytest.raises(NotOwner) as caught:
        subs.unsubscribe((TABLET, 9001), OTHER, trusted=False)
    assert str(caught.value) == (
        "10.0.0.9:9001 was subscribed by 10.0.0.5; only that host, 10.0.0.9 itself "
        "or a sender with the token may unsubscribe it"
    )


def test_defaults_and_a_fresh_table() -> None:
    subs = Subscriptions()
    assert (subs.total, subs.per_host, subs.lease_s, subs.pending_s) == (32, 4, 3600.0, 60.0)
    assert not subs.dirty and len(subs) == 0 and subs.export() == [] and subs.active(now=0.0) == []


def test_new_confirmed_and_expired_ones_leave_pending_ones_able_to_wake() -> None:
    subs = Subscriptions(lease_s=10.0, pending_s=100.0)
    subs.subscribe((TABLET, 1), DESK, trusted=False, now=0.0)  # pending until 100
    subs.subscribe((DESK, 1), DESK, trusted=False, now=0.0)  # confirmed, lapses at 10
    assert [s.target for s in subs.expire(now=10.0)] == [(DESK, 1)]
    assert [s.target for s in subs.heard_from(TABLET, now=11.0)] == [(TABLET, 1)]


def test_when_a_host_was_last_heard_outlives_a_change_of_the_table() -> None:
    subs = Subscriptions()
    subs.subscribe((DESK, 1), DESK, trusted=False, now=0.0)  # wall clock unknown: 0
    assert subs.export() == [{"host": DESK, "port": 1, "owner": DESK, "heard": 0.0}]
    subs.note_heard(DESK, wall=500.0, now=1.0)
    subs.subscribe((TABLET, 1), TABLET, trusted=False, now=2.0)  # the table changes
    subs.active(now=3.0)
    assert subs.export()[0]["heard"] == 500.0


def test_messages_from_its_host_renew_a_lease_at_most_once_a_second() -> None:
    subs = Subscriptions(lease_s=100.0)
    subs.subscribe((TABLET, 9001), TABLET, trusted=False, now=0.0)
    subs.subscribe((TABLET, 9002), TABLET, trusted=False, now=0.0)
    subs.note_heard(TABLET, wall=5.0, now=50.0)
    assert [s.expires for s in (subs._subs[(TABLET, 9001)], subs._subs[(TABLET, 9002)])] == [150.0, 150.0]
    subs.note_heard(TABLET, wall=5.5, now=50.5)  # within a second: no scan
    assert subs._subs[(TABLET, 9001)].expires == 150.0
    subs.note_heard(OTHER, wall=6.0, now=60.0)  # another host renews nothing
    assert subs.active(now=149.9) == [(TABLET, 9001), (TABLET, 9002)] and subs.active(now=150.0) == []


def test_a_lease_of_its_own_none_at_all_and_only_its_host_chooses_it() -> None:
    subs = Subscriptions(lease_s=100.0)
    subs.subscribe((TABLET, 9001), TABLET, trusted=False, now=0.0, lease=0)
    assert subs.active(now=1e9) == [(TABLET, 9001)] and subs.expire(now=1e9) == []
    short, _ = subs.subscribe((DESK, 9001), DESK, trusted=False, now=0.0, lease=20.0)
    assert short.expires == 20.0
    subs.subscribe((TABLET, 9001), DESK, trusted=False, now=5.0, lease=10.0)  # a stranger cannot shorten it
    assert subs.active(now=1e9) == [(TABLET, 9001)]
    exported = {(e["host"], e["port"]): e for e in subs.export()}
    assert exported[(TABLET, 9001)]["lease"] == 0.0 and exported[(DESK, 9001)]["lease"] == 20.0
    again = Subscriptions(lease_s=100.0)
    again.restore((TABLET, 9001), TABLET, heard=0.0, now=0.0, lease=0.0)  # a restart keeps "no expiry"
    again.restore((DESK, 9001), DESK, heard=0.0, now=0.0, lease=-3.0)  # a damaged value: the default
    assert again.active(now=1e9) == [(TABLET, 9001)] and again._subs[(DESK, 9001)].expires == 100.0
