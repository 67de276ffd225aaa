"""``/ldm3d/cue/list`` over real UDP on a real bridge, with a 1,000-cue show (loaded, never rendered):
a host that is not confirmed gets at most its request's budget in all (``reply_factor`` times the
request, every message together), then a note that the list was cut; a subscribed client gets every
cue in order, paced within its host's send budget (none dropped), then ``/ldm3d/cue/end <count>``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bridge.notify.notifier import PACED_SHARE
from bridge.osc.client import OscClient
from bridge.osc.codec import Message, decode_packet, encode_message
from bridge.serve.server import Bridge

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
CUES = 1000


def _thousand_cues(folder: Path) -> str:
    cues = "".join(
        f'[[cue]]\nnumber = "{n}"\nname = "Cue {n}"\nprompt = "world {n}"\nseed = {n}\nsteps = 1\n'
        f"width = 64\nheight = 64\n"
        for n in range(1, CUES + 1)
    )
    (folder / "thousand.toml").write_text(f'name = "Thousand"\n{cues}')
    return "thousand.toml"


def _datagrams(client: OscClient, quiet: float) -> list[bytes]:
    """Every datagram that arrives until none has for ``quiet`` seconds."""
    got: list[bytes] = []
    client.sock.settimeout(quiet)
    while True:
        try:
            data, _ = client.sock.recvfrom(65536)
        except TimeoutError:
            return got
        got.append(data)


def _messages(datagrams: list[bytes]) -> list[Message]:
    return [message for data in datagrams for message in decode_packet(data)]


def test_an_unconfirmed_host_gets_the_budget_a_subscriber_every_cue_paced(
    start_bridge: Start, client_for: ClientFor, tmp_path: Path
) -> None:
    bridge = start_bridge(input_dirs=(str(tmp_path),))
    loader = client_for(bridge)
    loader.send("/ldm3d/show/load", _thousand_cues(tmp_path), 0)  # loaded without firing: nothing renders
    assert loader.wait_for(["/ldm3d/show/state"], 10)[-1].args[:2] == ("Thousand", "")

    # A host that never confirmed itself: the whole answer fits reply_factor × the request.
    stranger = client_for(bridge)
    request = encode_message("/ldm3d/cue/list")
    budget = int(bridge.settings.reply_factor * len(request))
    stranger.send_raw(request)
    datagrams = _datagrams(stranger, quiet=1.0)
    assert 0 < sum(map(len, datagrams)) <= budget, [len(d) for d in datagrams]
    *infos, last = _messages(datagrams)
    assert [m.args for m in infos] == [(str(n), f"Cue {n}", 0) for n in range(1, len(infos) + 1)]
    assert last.address == "/ldm3d/error" and last.args[:2] == ("", "reply_too_large")
    assert f"{len(infos)} of {CUES} cues" in str(last.args[2]) and "subscribe" in str(last.args[2])
    # A larger budget holds more of them (the same rule, as the intake would call it for a larger request).
    bridge.shows.listing(("127.0.0.1", stranger.port), 1000)
    datagrams = _datagrams(stranger, quiet=1.0)
    *infos, last = _messages(datagrams)
    assert sum(map(len, datagrams)) <= 1000 and len(infos) >= 20 and last.args[1] == "reply_too_large"
    assert [m.args[0] for m in infos] == [str(n) for n in range(1, len(infos) + 1)]
    assert bridge.counters.snapshot().get("replies_suppressed", 0) == 0

    # A subscribed client: all 1,000 in order, then the end marker; the per-destination limit drops none,
    # and the intake answers meanwhile (the list is paced from the monitor, it never blocks).
    client = client_for(bridge)
    client.subscribe_self()
    started = time.monotonic()
    client.send("/ldm3d/cue/list")
    client.send("/ldm3d/ping")
    seen: list[Message] = []
    arrived: list[float] = []
    pong_after: float | None = None
    while not seen or seen[-1].address != "/ldm3d/cue/end":
        message = client.receive(max(0.0, started + 30 - time.monotonic()))
        assert message is not None, f"{len(seen)} of {CUES} cues within 30 s"
        if message.address == "/ldm3d/pong":
            pong_after = time.monotonic() - started
        elif message.address.startswith("/ldm3d/cue/"):
            seen.append(message)
            arrived.append(time.monotonic() - started)
    took = time.monotonic() - started
    assert [m.args for m in seen[:-1]] == [(str(n), f"Cue {n}", 0) for n in range(1, CUES + 1)]
    assert seen[-1].args == (CUES,)
    assert pong_after is not None and pong_after < 1.0 and pong_after < took / 2, (pong_after, took)
    assert bridge.counters.snapshot().get("replies_suppressed", 0) == 0
    # within its share of the host's budget: half the burst at once, then half the rate
    s = bridge.settings
    first_second = sum(1 for t in arrived if t < 1.0)
    assert first_second <= PACED_SHARE * (s.reply_burst + s.reply_per_s * 1.0) + 10, first_second
    print(f"1,000 cues paced in {took:.1f} s; the ping answered after {pong_after * 1000:.0f} ms")
