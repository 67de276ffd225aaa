"""Hardening II (issue 12): subscribers that cannot stop, stall or weaponise the bridge.

Real bridges on loopback UDP; clients on distinct loopback addresses (127.0.0.x) play distinct
hosts. Host names go through resolver stand-ins, never the network."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from bridge.notify.addresses import ResolveFailed, canonical_ip
from bridge.notify.subscriptions import Subscriptions
from bridge.osc.client import OscClient
from bridge.osc.codec import Message, encode_bundle, encode_message
from bridge.serve.server import Bridge

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
READY_OR_ERROR = ("/ldm3d/ready", "/ldm3d/error")


def _client(bridge: Bridge, host: str) -> OscClient:
    return OscClient(*bridge.address, listen_host=host)


def _drain(client: OscClient, seconds: float) -> list[Message]:
    seen, deadline = [], time.monotonic() + seconds
    while (message := client.receive(max(0.0, deadline - time.monotonic()))) is not None:
        seen.append(message)
    return seen


def _stats(client: OscClient) -> dict[str, object]:
    client.send("/ldm3d/stats")
    args = client.wait_for(["/ldm3d/stats"], 5)[-1].args
    return dict(zip(args[::2], args[1::2], strict=True))


# -- 1. one packet must not stop the bridge -----------------------------------------


@pytest.mark.parametrize("host", ["ü..b", "büro..pc", "x" * 300, ""])
def test_a_subscriber_name_that_cannot_be_encoded_is_refused_and_the_bridge_goes_on(
    start_bridge: Start, client_for: ClientFor, host: str
) -> None:
    """Today's bug: sendto raised TypeError on such a name, killing the heartbeat and the worker."""
    bridge = start_bridge(heartbeat_s=0.1)
    client = client_for(bridge)
    client.send("/ldm3d/subscribe", 9, host)
    error = client.wait_for(["/ldm3d/error"], 5)[-1]
    assert error.args[1] == "bad_arguments" and "/ldm3d/subscribe" in str(error.args[2])
    client.subscribe_self()
    client.send("/ldm3d/generate", "still here", "steps", 1)
    assert client.wait_for(READY_OR_ERROR, 30)[-1].address == "/ldm3d/ready"
    beats = [m for m in _drain(client, 0.5) if m.address == "/ldm3d/state"]
    assert len(beats) >= 2 and bridge.failed is None  # the heartbeat thread is alive


# -- 2. no DNS on the bridge's own threads ------------------------------------------


class SlowResolver:
    """A resolver that does not answer until released (a dead DNS server), and knows one name."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if host == "td-machine.local":
            return ["127.0.0.3"]
        self.release.wait(30)
        raise ResolveFailed("timed out")


def test_a_resolver_that_does_not_answer_delays_nothing_but_that_subscription(
    start_bridge: Start, client_for: ClientFor
) -> None:
    resolver = SlowResolver()
    bridge = start_bridge(resolver=resolver, resolve_timeout_s=0.5)
    client = client_for(bridge)
    try:
        started = time.monotonic()
        client.send_raw(
            encode_bundle(*(encode_message("/ldm3d/subscribe", 9000 + i, f"dead{i}.example") for i in range(8)))
        )
        client.send("/ldm3d/ping")
        seen = client.wait_for(["/ldm3d/pong"], 2)
        assert time.monotonic() - started < 0.3  # intake answered at once (was 15.8 s)
        client.send("/ldm3d/generate", "on time", "steps", 1)
        seen += client.wait_for(["/ldm3d/ready"], 30)  # the job is not held up either
        errors = [m for m in seen + _drain(client, 1.0) if m.address == "/ldm3d/error"]
        # four lookups at a time: four time out, four are refused at once; none hangs
        assert len(errors) == 8 and all(e.args[1] == "bad_arguments" for e in errors)
        assert sum("did not resolve within 0.5 s" in str(e.args[2]) for e in errors) == 4
        assert sum("being resolved already" in str(e.args[2]) for e in errors) == 4
    finally:
        resolver.release.set()


def test_a_name_is_resolved_once_and_stored_as_its_address(start_bridge: Start) -> None:
    resolver = SlowResolver()
    bridge = start_bridge(resolver=resolver, heartbeat_s=0.2)
    with _client(bridge, "127.0.0.2") as operator, _client(bridge, "127.0.0.3") as td:
        operator.send("/ldm3d/subscribe", td.port, "td-machine.local")
        pending = operator.wait_for(["/ldm3d/pending"], 5)[-1]
        assert pending.args[:2] == ("127.0.0.3", td.port)  # the address, not the name
        td.send("/ldm3d/ping")  # the target host speaks: its subscription is confirmed
        td.wait_for(["/ldm3d/state"], 5)
        assert [m.address for m in _drain(td, 0.7)].count("/ldm3d/state") >= 2  # heartbeats arrive
    assert resolver.asked == ["td-machine.local"]  # once, at subscribe time: never per send


# -- 3. amplification -------------------------------------------------------------


def test_every_spelling_of_one_address_is_one_subscription() -> None:
    spellings = ["127.0.0.1", "127.1", "0x7f000001", "::ffff:127.0.0.1", "2130706433"]
    assert {canonical_ip(s) for s in spellings} == {"127.0.0.1"}
    assert canonical_ip("LOCALHOST") is None  # a name: resolved once, then its address is the key
    subs = Subscriptions(total=32, per_host=4)
    for spelling in spellings:
        subs.subscribe((canonical_ip(spelling) or "", 7000), "127.0.0.1", False, 0.0)
    assert subs.active(1.0) == [("127.0.0.1", 7000)]


def test_re_subscribing_sends_one_state_not_one_per_request(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge()
    client = client_for(bridge)
    for _ in range(200):
        client.send("/ldm3d/subscribe", client.port)
    seen = _drain(client, 1.0)
    assert [m.address for m in seen].count("/ldm3d/state") == 1  # was one per re-subscribe
    assert [m.address for m in seen].count("/ldm3d/subscribed") == 200


def test_a_reply_to_an_unconfirmed_sender_is_bounded_by_its_request(start_bridge: Start) -> None:
    bridge = start_bridge(reply_factor=3.0)
    with _client(bridge, "127.0.0.2") as victim:
        request = encode_message("/ldm3d/stats")
        victim.send_raw(request)
        answer = victim.receive(2)
        assert answer is not None and answer.address == "/ldm3d/error" and answer.args[1] == "reply_too_large"
        assert len(encode_message(answer.address, *answer.args)) <= 3 * len(request)
        request = encode_message("/ldm3d/xyzzy")  # a small request: its error is cut to fit, the code kept
        victim.send_raw(request)
        error = victim.receive(2)
        assert error is not None and error.args[1] == "unknown_address"
        assert len(encode_message(error.address, *error.args)) <= 3 * len(request) < 100
        victim.send_raw(b"\x00")  # one byte asks for nothing bigger than 3 bytes: no answer fits
        assert victim.receive(0.3) is None
        victim.subscribe_self()  # a confirmed host gets full answers
        assert "received" in _stats(victim)


def test_the_budget_is_per_destination_host_not_per_source_port(start_bridge: Start) -> None:
    bridge = start_bridge(reply_per_s=1.0, reply_burst=10)
    clients = [_client(bridge, "127.0.0.2") for _ in range(5)]
    try:
        for client in clients:
            for _ in range(10):
                client.send("/ldm3d/ping")
        pongs = sum(len([m for m in _drain(c, 0.3) if m.address == "/ldm3d/pong"]) for c in clients)
        assert 10 <= pongs <= 12  # one host's budget (burst 10), however many source ports it uses
    finally:
        for client in clients:
            client.close()


def test_with_a_token_strangers_get_no_answer_to_garbage(start_bridge: Start) -> None:
    bridge = start_bridge(token="s3cret")
    with _client(bridge, "127.0.0.2") as stranger:
        stranger.send_raw(b"\xde\xad\xbe\xef")
        assert stranger.receive(0.5) is None
        stranger.send("/ldm3d/ping")  # well-formed but without the token: a bounded error
        assert stranger.wait_for(["/ldm3d/error"], 2)[-1].args[1] == "unauthorized"


# -- 4. self-loop -----------------------------------------------------------------


def test_the_bridge_cannot_be_subscribed_to_itself(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge(heartbeat_s=0.05)
    client = client_for(bridge)
    for host in ("127.0.0.1", "127.0.0.2", "0.0.0.0"):
        client.send("/ldm3d/subscribe", bridge.address[1], host)
        error = client.wait_for(["/ldm3d/error"], 2)[-1]
        assert error.args[1] == "bad_arguments" and "this bridge itself" in str(error.args[2])
    client.subscribe_self()
    time.sleep(0.5)
    counts = _stats(client)
    assert "error_unknown_address" not in counts and "error_bad_arguments" in counts


def test_two_bridges_subscribed_to_each_other_do_not_talk_forever(start_bridge: Start, client_for: ClientFor) -> None:
    first, second = start_bridge(heartbeat_s=0.05), start_bridge(heartbeat_s=0.05)
    operator = client_for(first)
    operator.send("/ldm3d/subscribe", second.address[1], "127.0.0.1")  # a third party on the same host
    operator.wait_for(["/ldm3d/subscribed"], 2)
    client_for(second).send("/ldm3d/subscribe", first.address[1], "127.0.0.1")
    time.sleep(1.0)  # 20 heartbeats each way
    for bridge in (first, second):
        counts = bridge.counters.snapshot()
        assert not any(k.startswith("error_") for k in counts), counts  # nobody answered a heartbeat


# -- 5. owners, confirmation, leases, slots ------------------------------------------


def test_a_third_party_subscription_waits_for_its_host_to_confirm(start_bridge: Start) -> None:
    bridge = start_bridge(heartbeat_s=0.1)
    with _client(bridge, "127.0.0.2") as attacker, _client(bridge, "127.0.0.3") as victim:
        attacker.send("/ldm3d/subscribe", victim.port, "127.0.0.3")
        assert attacker.wait_for(["/ldm3d/pending"], 2)[-1].args == ("127.0.0.3", victim.port, 60)
        assert _drain(victim, 0.5) == []  # nothing reaches an address that did not ask
        victim.send("/ldm3d/ping")  # now it speaks for itself
        heard = [m.address for m in _drain(victim, 0.5)]
        assert "/ldm3d/subscribed" in heard and heard.count("/ldm3d/state") >= 2


def test_only_the_owner_or_the_target_may_unsubscribe(start_bridge: Start) -> None:
    bridge = start_bridge()
    with (
        _client(bridge, "127.0.0.2") as td,
        _client(bridge, "127.0.0.3") as other,
    ):
        td.subscribe_self()
        other.send("/ldm3d/unsubscribe", td.port, "127.0.0.2")
        error = other.wait_for(["/ldm3d/error"], 2)[-1]
        assert error.args[1] == "not_owner"
        assert ("127.0.0.2", td.port) in bridge.notifier.subscribers
        td.send("/ldm3d/unsubscribe", td.port)
        td.wait_for(["/ldm3d/unsubscribed"], 2)
        assert ("127.0.0.2", td.port) not in bridge.notifier.subscribers


def test_a_token_may_unsubscribe_anyone(start_bridge: Start) -> None:
    bridge = start_bridge(token="s3cret")
    with _client(bridge, "127.0.0.2") as td, _client(bridge, "127.0.0.3") as operator:
        td.subscribe_self("token", "s3cret")
        operator.send("/ldm3d/unsubscribe", td.port, "127.0.0.2", "token", "s3cret")
        operator.wait_for(["/ldm3d/unsubscribed"], 2)
        assert bridge.notifier.subscribers == []


def test_one_host_cannot_take_every_slot(start_bridge: Start) -> None:
    bridge = start_bridge(subscribers_per_host=4)
    with _client(bridge, "127.0.0.2") as greedy, _client(bridge, "127.0.0.3") as td:
        for port in range(20000, 20004):
            greedy.send("/ldm3d/subscribe", port)
            greedy.wait_for(["/ldm3d/subscribed"], 2)
        greedy.send("/ldm3d/subscribe", 20004)
        assert greedy.wait_for(["/ldm3d/error"], 2)[-1].args[1] == "too_many_subscribers"
        td.subscribe_self()  # another host still gets in


def test_leases_lapse_unless_renewed(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge(subscription_lease_s=0.4, heartbeat_s=0.05)
    client = client_for(bridge)
    assert client.subscribe_self()[-1].args[2] == 0  # the lease in whole seconds (0.4 rounds to 0)
    time.sleep(0.6)
    _drain(client, 0.05)
    assert [m for m in _drain(client, 0.3) if m.address == "/ldm3d/state"] == []  # lapsed: no heartbeat
    client.subscribe_self()  # renewing = subscribing again
    assert [m for m in _drain(client, 0.2) if m.address == "/ldm3d/state"]


def test_any_message_from_a_subscribed_host_renews_its_lease(start_bridge: Start, client_for: ClientFor) -> None:
    """A TouchOSC tablet cannot send /ldm3d/subscribe on a timer: its pings and buttons keep it hearing."""
    bridge = start_bridge(subscription_lease_s=1.0, heartbeat_s=0.05)
    tablet, idle = client_for(bridge), _client(bridge, "127.0.0.2")
    tablet.subscribe_self()
    idle.subscribe_self()
    for _ in range(10):  # 2.5 s: more than twice the lease
        tablet.send("/ldm3d/ping")
        _drain(tablet, 0.25)
    _drain(idle, 0.05)
    assert [m for m in _drain(tablet, 0.3) if m.address == "/ldm3d/state"]  # still hearing the heartbeat
    assert [m for m in _drain(idle, 0.3) if m.address == "/ldm3d/state"] == []  # silent: lapsed
    idle.close()


def test_a_subscriber_may_ask_for_no_expiry(start_bridge: Start, client_for: ClientFor) -> None:
    """``/ldm3d/subscribe <port> lease 0``, sent by liblo's oscsend as a TouchOSC template would."""
    oscsend = shutil.which("oscsend")
    if oscsend is None:
        pytest.skip("needs liblo-tools (./dev installs it)")
    bridge = start_bridge(subscription_lease_s=0.4, heartbeat_s=0.05)
    tablet = client_for(bridge)
    host, port = bridge.address
    subprocess.run([oscsend, host, str(port), "/ldm3d/subscribe", "isi", str(tablet.port), "lease", "0"], check=True)
    assert tablet.wait_for(["/ldm3d/subscribed"], 5)[-1].args == (host, tablet.port, 0)  # 0: no expiry
    time.sleep(1.0)  # 2.5 leases, and not a word from the tablet
    _drain(tablet, 0.05)
    assert [m for m in _drain(tablet, 0.3) if m.address == "/ldm3d/state"]
    tablet.send("/ldm3d/subscribe", tablet.port, "lease", 5)
    assert tablet.wait_for(["/ldm3d/error"], 2)[-1].args[1:3] == (
        "bad_arguments",
        "/ldm3d/subscribe: lease 5 s is out of range; 0 (no expiry) or 10..604800 seconds",
    )


# -- 8. no growth per failing name ---------------------------------------------------


def test_failing_names_leave_no_state_behind(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge()
    client = client_for(bridge)
    for i in range(300):
        client.send("/ldm3d/subscribe", 9, f"nowhere-{i}.example")
    errors = [m for m in _drain(client, 1.0) if m.address == "/ldm3d/error"]
    assert len(errors) == 300
    assert len(bridge.notifier.subscribers) == 0 and bridge._resolver.pending == 0
    assert len(bridge.notifier._log._last) <= bridge.notifier._log.max_kinds


def test_what_is_kept_per_sending_host_stays_bounded() -> None:
    """Only subscribed hosts are remembered as heard from; 10,000 forged sources leave nothing behind."""
    subs = Subscriptions()
    subs.subscribe(("127.0.0.2", 7000), "127.0.0.2", False, 0.0, 100.0)
    for i in range(10_000):
        subs.note_heard(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 200.0, 1.0)
    subs.note_heard("127.0.0.2", 300.0, 1.0)
    assert len(subs._heard_host) == 1
    assert subs.export() == [{"host": "127.0.0.2", "port": 7000, "owner": "127.0.0.2", "heard": 300.0}]


# -- 9. IPv6 --------------------------------------------------------------------------


def test_a_dual_stack_bridge_delivers_to_an_ipv4_subscriber(start_bridge: Start) -> None:
    bridge = start_bridge(host="::", heartbeat_s=0.1)
    with OscClient("127.0.0.1", bridge.address[1]) as client:
        client.send("/ldm3d/subscribe", client.port)
        assert client.wait_for(["/ldm3d/subscribed"], 2)[-1].args[0] == "127.0.0.1"
        assert [m for m in _drain(client, 0.5) if m.address == "/ldm3d/state"]  # delivered (was: never)


def test_an_ipv4_bridge_refuses_an_ipv6_subscriber(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge())
    client.send("/ldm3d/subscribe", 7000, "::1")
    error = client.wait_for(["/ldm3d/error"], 2)[-1]
    assert error.args[1] == "bad_arguments" and "--host ::" in str(error.args[2])
