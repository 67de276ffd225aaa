"""Issue 13, the bridge's side: subscriptions that survive a restart, a boot id in the heartbeat,
paths announced for another machine, and display controls relayed to TouchDesigner. Real bridges,
real UDP on loopback, real files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.osc.client import OscClient
from bridge.osc.codec import Message
from bridge.output.subscribers import FILE_NAME
from bridge.serve.server import Bridge

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]


def _drain(client: OscClient, seconds: float) -> list[Message]:
    seen, deadline = [], time.monotonic() + seconds
    while (message := client.receive(max(0.0, deadline - time.monotonic()))) is not None:
        seen.append(message)
    return seen


def test_subscribers_survive_a_restart_and_see_a_new_boot_id(start_bridge: Start, tmp_path: Path) -> None:
    first = start_bridge(heartbeat_s=0.1)
    with OscClient(*first.address, listen_host="127.0.0.2") as td:
        td.subscribe_self()
        boot = td.wait_for(["/ldm3d/state"], 2)[-1].args[4]
        time.sleep(0.3)  # the monitor saves the subscribers
        port = first.address[1]
        first.stop()
        assert json.loads((first.writer.root / FILE_NAME).read_text())["subscribers"][0]["port"] == td.port
        second = start_bridge(heartbeat_s=0.1, port=port)  # same folder, same port
        _drain(td, 0.1)
        beats = [m for m in _drain(td, 0.5) if m.address == "/ldm3d/state"]
        assert beats, "the restarted bridge does not know its subscriber"  # without subscribing again
        assert beats[-1].args[4] != boot  # a new boot id: TouchDesigner knows it restarted
        assert second.boot_id == beats[-1].args[4]


def test_a_subscriber_not_heard_from_for_a_day_is_not_restored(start_bridge: Start, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    old = {"host": "127.0.0.2", "port": 7001, "owner": "127.0.0.2", "heard": time.time() - 90000}
    fresh = {"host": "127.0.0.2", "port": 7002, "owner": "127.0.0.2", "heard": time.time() - 3600}
    (out / FILE_NAME).write_text(json.dumps({"version": 1, "subscribers": [old, fresh]}))
    bridge = start_bridge(output=str(out))
    assert bridge.notifier.subscribers == [("127.0.0.2", 7002)]


def test_a_corrupt_subscribers_file_starts_with_none(start_bridge: Start, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / FILE_NAME).write_text("{not json")
    assert start_bridge(output=str(out)).notifier.subscribers == []


@pytest.mark.parametrize(
    ("root", "announced"),
    [
        ("Z:/ldm3d-out", "Z:/ldm3d-out"),
        ("Z:\\ldm3d-out\\", "Z:/ldm3d-out"),
        ("//gpu-node/ldm3d-out", "//gpu-node/ldm3d-out"),
    ],
)
def test_announced_paths_name_the_folder_as_the_other_machine_does(
    start_bridge: Start, client_for: ClientFor, root: str, announced: str
) -> None:
    bridge = start_bridge(announce_root=root)
    client = client_for(bridge)
    client.send("/ldm3d/generate", "a reef", "steps", 1)
    ready = client.wait_for(["/ldm3d/ready"], 60)[-1]
    job = ready.args[0]
    assert ready.args[1:4] == (
        f"{announced}/{job}/rgb.tif",
        f"{announced}/{job}/depth.tif",
        f"{announced}/{job}/meta.json",
    )
    latest = json.loads((bridge.writer.root / "latest.json").read_text())
    assert latest["rgb"] == ready.args[1] and latest["folder"] == f"{announced}/{job}"
    meta = json.loads((bridge.writer.root / job / "meta.json").read_text())
    assert meta["files"]["depth"] == ready.args[2]
    client.send("/ldm3d/recall", job)
    assert client.wait_for(["/ldm3d/ready"], 5)[-1].args == ready.args
    assert (bridge.writer.root / job / "rgb.tif").is_file()  # the files themselves are where they are


def test_display_controls_are_validated_and_relayed_to_every_subscriber(start_bridge: Start) -> None:
    bridge = start_bridge()
    with (
        OscClient(*bridge.address, listen_host="127.0.0.2") as tablet,
        OscClient(*bridge.address, listen_host="127.0.0.3") as td,
    ):
        greeting = td.subscribe_self() + _drain(td, 0.3)
        assert {(m.address, m.args) for m in greeting} >= {
            ("/ldm3d/display/fade", (2.0,)),
            ("/ldm3d/display/hold", (0,)),
            ("/ldm3d/display/blackout", (0,)),
            ("/ldm3d/display/strength", (1.0,)),
        }  # a new subscriber learns how the world is shown
        tablet.send("/ldm3d/display/fade", 3.5)
        tablet.send("/ldm3d/display/hold", 1.0)
        tablet.send("/ldm3d/display/blackout", True)
        tablet.send("/ldm3d/display/strength", 0.25)
        seen = [(m.address, m.args) for m in _drain(td, 0.5)]
        assert seen == [
            ("/ldm3d/display/fade", (3.5,)),
            ("/ldm3d/display/hold", (1,)),
            ("/ldm3d/display/blackout", (1,)),
            ("/ldm3d/display/strength", (0.25,)),
        ]
        tablet.send("/ldm3d/display/fade", 3.5)  # unchanged: the sender is answered, nobody else
        assert tablet.wait_for(["/ldm3d/display/fade"], 2)[-1].args == (3.5,)
        assert _drain(td, 0.3) == []
        for address, value in (("/ldm3d/display/strength", 1.5), ("/ldm3d/display/fade", -1.0)):
            tablet.send(address, value)
            assert tablet.wait_for(["/ldm3d/error"], 2)[-1].args[1] == "bad_arguments"
