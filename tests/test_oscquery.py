"""OSCQuery over HTTP and WebSocket (issue 16), against a real bridge on loopback: the tree checked
against the proposal's rules, attribute queries, LISTEN with a real WebSocket client, access rules,
zeroconf browse of _oscjson._tcp, and python-oscquery (a client nobody here wrote) reading it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
import requests
from pythonoscquery.osc_query_client import OSCQueryClient
from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

from bridge.notify.discovery import OSCQUERY_TYPE
from bridge.osc.client import OscClient
from bridge.osc.codec import Message, decode_packet
from bridge.serve.server import Bridge
from ldm3d_engine.presets import PRESETS

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]


def _url(bridge: Bridge, path: str = "/") -> str:
    return f"http://127.0.0.1:{bridge.http_port}{path}"


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("CONTENTS", {}).values():
        yield from _walk(child)


def test_the_tree_follows_the_proposal(start_bridge: Start) -> None:
    bridge = start_bridge(model="tiny-pano", http=True, http_port=0)
    tree = requests.get(_url(bridge), timeout=5).json()
    nodes = {n["FULL_PATH"]: n for n in _walk(tree)}
    for path, node in nodes.items():
        assert isinstance(node["DESCRIPTION"], str) and node["DESCRIPTION"], path
        assert node["ACCESS"] in (0, 1, 2, 3), path
        for name, child in node.get("CONTENTS", {}).items():
            assert child["FULL_PATH"] == (path.rstrip("/") + "/" + name), (path, name)
        if node["ACCESS"] == 0:
            assert "VALUE" not in node, path
            continue
        tags = node["TYPE"]
        assert isinstance(node["VALUE"], list) and len(node["VALUE"]) == len(tags), path
        for key in ("RANGE", "CLIPMODE", "UNIT"):
            assert key not in node or len(node[key]) == len(tags), (path, key)
        for tag, value, rng in zip(tags, node["VALUE"], node.get("RANGE", [{}] * len(tags)), strict=True):
            assert isinstance(value, {"i": int, "f": float | int, "s": str}[tag]), (path, value)
            if "MIN" in rng:
                assert rng["MIN"] <= value <= rng["MAX"], (path, value, rng)  # a value inside its own range
            if "VALS" in rng:
                assert value in rng["VALS"], (path, value)
    # every address the contract handles, and what the bridge reports
    for name in ("generate", "img2img", "upscale", "go", "cancel", "recall", "subscribe", "unsubscribe", "status",
                 "ping", "stats", "prompt", "negative", "seed", "steps", "guidance", "strength", "scheduler",
                 "sampling", "size", "steps/norm", "guidance/norm", "strength/norm", "state", "busy", "progress",
                 "progress/fraction", "ready", "error"):  # fmt: skip
        assert f"/ldm3d/{name}" in nodes, name
    assert nodes["/ldm3d/generate"]["ACCESS"] == 2 and nodes["/ldm3d/state"]["ACCESS"] == 1
    assert nodes["/ldm3d/steps"]["ACCESS"] == 3 and "CONTENTS" in nodes["/ldm3d/steps"]  # method and container
    assert nodes["/ldm3d/size"]["RANGE"] == [{"MIN": 64, "MAX": 2048}, {"MIN": 64, "MAX": 1024}]  # tiny-pano's
    assert nodes["/ldm3d/scheduler"]["RANGE"] == [
        {"VALS": ["model", "ddim", "pndm", "dpm", "unipc", "euler_a", "euler"]}
    ]


def test_attribute_queries_and_status_codes(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge(http=True, http_port=0)
    client = client_for(bridge)
    client.send("/ldm3d/steps", 25)
    client.wait_for(["/ldm3d/stage"], 2)
    get = requests.get
    assert get(_url(bridge, "/ldm3d/steps?VALUE"), timeout=5).json() == {"VALUE": [25]}
    assert get(_url(bridge, "/ldm3d/steps/norm?VALUE"), timeout=5).json() == {"VALUE": [round(24 / 149, 4)]}
    assert get(_url(bridge, "/ldm3d/steps?RANGE"), timeout=5).json() == {"RANGE": [{"MIN": 1, "MAX": 150}]}
    assert get(_url(bridge, "/ldm3d/steps?TAGS"), timeout=5).status_code == 204  # a known attribute it lacks
    assert get(_url(bridge, "/ldm3d/steps?NONSENSE"), timeout=5).status_code == 400
    assert get(_url(bridge, "/ldm3d/nowhere"), timeout=5).status_code == 404
    # A container asked for with a trailing slash, as OSCQuery browsers do, is the same node.
    assert get(_url(bridge, "/ldm3d/steps/?VALUE"), timeout=5).json() == {"VALUE": [25]}
    assert get(_url(bridge, "/ldm3d/"), timeout=5).json()["FULL_PATH"] == "/ldm3d"
    assert get(_url(bridge, "/"), timeout=5).json()["FULL_PATH"] == "/"
    info = get(_url(bridge, "/?HOST_INFO"), timeout=5).json()
    assert info["OSC_PORT"] == bridge.address[1] and info["OSC_TRANSPORT"] == "UDP" and info["OSC_IP"] == "127.0.0.1"
    assert info["WS_PORT"] == bridge.http_port and info["EXTENSIONS"]["LISTEN"] is True
    assert info["EXTENSIONS"]["PATH_ADDED"] is False  # only what is implemented is claimed


def test_http_takes_the_osc_port_number_by_default(start_bridge: Start) -> None:
    bridge = start_bridge(http=True, http_port=None)  # the setting's default (the fixture picks a free port)
    assert bridge.http_port == bridge.address[1]
    assert requests.get(_url(bridge, "/ldm3d/ping"), timeout=5).status_code == 200


async def _listen(bridge: Bridge, paths: list[str], act: Callable[[], None], count: int) -> list[Message]:
    got: list[Message] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(_url(bridge)) as ws:
        for path in paths:
            await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": path}))
        await asyncio.sleep(0.1)
        await asyncio.get_running_loop().run_in_executor(None, act)
        while len(got) < count:
            message = await ws.receive(timeout=10)
            assert message.type == aiohttp.WSMsgType.BINARY, message
            got += decode_packet(message.data)
    return got


def test_listen_streams_stage_changes_as_binary_osc(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge(http=True, http_port=0)
    tablet = client_for(bridge)

    def move() -> None:
        tablet.send("/ldm3d/steps", 25)
        tablet.send("/ldm3d/steps", 25)  # the same value again: no change, no event
        tablet.send("/ldm3d/guidance/norm", 0.5)

    got = asyncio.run(_listen(bridge, ["/ldm3d/steps", "/ldm3d/guidance"], move, 2))
    assert got == [Message("/ldm3d/steps", (25,)), Message("/ldm3d/guidance", (15.0,))]


def test_listen_follows_a_job_to_the_end(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge(http=True, http_port=0, progress_hz=1000.0)  # every step
    client = client_for(bridge)
    got = asyncio.run(
        _listen(
            bridge,
            ["/ldm3d/progress/fraction", "/ldm3d/ready"],
            lambda: client.send("/ldm3d/generate", "x", "steps", 3),
            4,
        )
    )
    assert [m.args[0] for m in got[:3]] == pytest.approx([1 / 3, 2 / 3, 1.0], abs=1e-4)
    assert got[3].address == "/ldm3d/ready"


def test_http_access_rules(start_bridge: Start) -> None:
    bridge = start_bridge(http=True, http_port=0, token="s3cret")
    assert requests.get(_url(bridge, "/ldm3d"), timeout=5).status_code == 401
    assert requests.get(_url(bridge, "/ldm3d?token=nope"), timeout=5).status_code == 401
    default = PRESETS["tiny"].steps  # the model's: what /ldm3d/go would use
    assert requests.get(_url(bridge, "/ldm3d/steps?VALUE&token=s3cret"), timeout=5).json()["VALUE"] == [default]
    assert requests.get(_url(bridge, "/ldm3d"), headers={"X-Ldm3d-Token": "s3cret"}, timeout=5).ok

    async def upgrade(origin: str) -> int:
        headers = {"Origin": origin, "X-Ldm3d-Token": "s3cret"}
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(_url(bridge), headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(upgrade("http://evil.example")) == 403  # another site's page may not drive the bridge
    assert asyncio.run(upgrade(f"http://127.0.0.1:{bridge.http_port}")) == 101  # the bridge's own page may


def test_http_outside_the_allowlist_is_refused(start_bridge: Start) -> None:
    bridge = start_bridge(http=True, http_port=0, allow=("127.0.0.2/32",))

    async def get(source: str) -> int | str:
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        try:
            async with aiohttp.ClientSession(connector=connector) as s, s.get(_url(bridge, "/ldm3d")) as r:
                return r.status
        except (aiohttp.ClientConnectionError, ConnectionResetError):
            return "closed"

    assert asyncio.run(get("127.0.0.1")) == "closed"  # closed at once, before a byte is read
    assert asyncio.run(get("127.0.0.2")) == 200


class _Found(ServiceListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.names.append(name)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        pass

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        pass


def test_zeroconf_advertises_oscquery_and_python_oscquery_reads_it(start_bridge: Start) -> None:
    """Browsed on loopback only; then python-oscquery's client (its HTTP side) reads host info and nodes."""
    bridge = start_bridge(http=True, http_port=0, zeroconf=True)
    zc = Zeroconf(interfaces=["127.0.0.1"])
    found = _Found()
    browser = ServiceBrowser(zc, OSCQUERY_TYPE, found)
    try:
        deadline = time.monotonic() + 20
        while not found.names and time.monotonic() < deadline:
            time.sleep(0.05)
        assert found.names, "no _oscjson._tcp service seen"
        info = zc.get_service_info(OSCQUERY_TYPE, found.names[0], timeout=3000)
        assert info is not None and info.port == bridge.http_port
        client = OSCQueryClient(info)
        host = client.get_host_info()
        assert host is not None and host.osc_port == bridge.address[1] and host.osc_transport == "UDP"
        steps = client.query_node("/ldm3d/steps/norm")
        assert steps is not None and steps.full_path == "/ldm3d/steps/norm" and steps.access.value == 3
        state = client.query_node("/ldm3d/state")
        assert state is not None and state.value[0] in ("loading", "warming", "idle", "busy")
        generate = client.query_node("/ldm3d/generate")
        assert generate is not None and generate.access.value == 2
        assert client.query_node("/ldm3d/nowhere") is None  # its reading of our 404
    finally:
        browser.cancel()
        zc.close()


# -- the tablet-safe contract, over real UDP -------------------------------------------


def test_a_stop_button_cancels_on_press_and_ignores_the_release(
    load_tiny: Callable[[str], Any], start_bridge: Start, client_for: ClientFor
) -> None:
    release = threading.Event()

    class Slow:
        model_id = "tiny"

        def resolve(self, request: Any) -> Any:
            return load_tiny("tiny").resolve(request)

        def generate(self, request: Any, on_step: Any = None, cancel: Any = None, previews: Any = None) -> Any:
            from ldm3d_engine import Cancelled

            while not cancel.cancelled and not release.is_set():
                time.sleep(0.01)
            raise Cancelled(1, 1)

    bridge = start_bridge(engine_factory=Slow)
    client = client_for(bridge)
    try:
        client.send("/ldm3d/generate", "long", "steps", 1)
        job = client.wait_for(["/ldm3d/accepted"], 5)[-1].args[0]
        client.send("/ldm3d/cancel", 0.0)  # a release alone: nothing happens, nothing is answered
        assert client.receive(0.3) is None
        client.send("/ldm3d/cancel", 1.0)  # the press
        assert client.wait_for(["/ldm3d/cancelled"], 5)[-1].args == (job,)
        client.send("/ldm3d/cancel", 0.0)  # and its release
        assert [m for m in _drain(client, 0.3) if m.address == "/ldm3d/error"] == []
    finally:
        release.set()


def _drain(client: OscClient, seconds: float) -> list[Message]:
    seen, deadline = [], time.monotonic() + seconds
    while (message := client.receive(max(0.0, deadline - time.monotonic()))) is not None:
        seen.append(message)
    return seen


def test_two_tablets_see_each_others_faders(start_bridge: Start) -> None:
    bridge = start_bridge(model="tiny")
    with (
        OscClient(*bridge.address, listen_host="127.0.0.2") as left,
        OscClient(*bridge.address, listen_host="127.0.0.3") as right,
    ):
        left.subscribe_self()
        right.subscribe_self()
        _drain(left, 0.2)
        _drain(right, 0.2)
        for position in (0.0, 0.5, 1.0, 0.5):
            left.send("/ldm3d/steps/norm", position)
        seen = [(m.address, m.args[0]) for m in _drain(right, 0.5) if m.address.startswith("/ldm3d/steps")]
        half = pytest.approx(75 / 149, abs=1e-4)  # OSC floats are 32-bit
        assert seen == [
            ("/ldm3d/steps", 1),
            ("/ldm3d/steps/norm", 0.0),
            ("/ldm3d/steps", 76),
            ("/ldm3d/steps/norm", half),
            ("/ldm3d/steps", 150),
            ("/ldm3d/steps/norm", 1.0),
            ("/ldm3d/steps", 76),
            ("/ldm3d/steps/norm", half),
        ]
        left.send("/ldm3d/prompt", "a glacier")
        assert right.wait_for(["/ldm3d/prompt"], 2)[-1].args == ("a glacier",)
        left.send("/ldm3d/guidance/norm", 2.0)  # past the end of a fader: clipped (CLIPMODE both)
        assert right.wait_for(["/ldm3d/guidance"], 2)[-1].args == (30.0,)


def test_a_lamp_and_a_bar_follow_the_job(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge(progress_hz=1000.0)
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/generate", "x", "steps", 4)
    seen = client.wait_for(["/ldm3d/ready"], 60) + _drain(client, 0.5)
    fractions = [m.args[0] for m in seen if m.address == "/ldm3d/progress/fraction"]
    assert fractions == pytest.approx([0.25, 0.5, 0.75, 1.0])
    lamp = [m.args[0] for m in seen if m.address == "/ldm3d/busy"]
    assert lamp == [1, 0]  # on while it ran, off after (however short the job)


def test_norm_faders_and_stage_values_are_validated(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge())
    client.send("/ldm3d/strength", 1.5)
    assert client.wait_for(["/ldm3d/error"], 2)[-1].args[1] == "bad_arguments"
    client.send("/ldm3d/steps/norm", "high")
    assert client.wait_for(["/ldm3d/error"], 2)[-1].args[1] == "bad_arguments"
    client.send("/ldm3d/scheduler", "dpm")
    assert client.wait_for(["/ldm3d/stage"], 2)[-1].args == ("scheduler", "dpm")
    client.send("/ldm3d/prompt", "x")
    client.send("/ldm3d/sampling", "nonsense")
    client.send("/ldm3d/go")  # the stage is checked when go fires
    error = client.wait_for(["/ldm3d/error"], 5)[-1]
    assert error.args[1] == "bad_arguments" and "sampling" in str(error.args[2])
