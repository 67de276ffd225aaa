"""Clients we did not write: liblo's oscsend/oscdump (Debian liblo-tools), python-zeroconf's browser,
and the real `ldm3d-bridge serve` process under SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

from bridge.notify.discovery import SERVICE_TYPE
from bridge.osc.client import OscClient
from bridge.output.lock import LOCK_NAME
from bridge.serve.server import Bridge

from .served import POSIX, serve_tiny

Start = Callable[..., Bridge]


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing; ./dev test installs liblo-tools")
        pytest.skip(f"{tool} not installed (Debian: apt-get install liblo-tools)")
    return path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_liblo_oscsend_submits_and_oscdump_receives_ready(start_bridge: Start) -> None:
    oscsend, oscdump = _require("oscsend"), _require("oscdump")
    bridge = start_bridge()
    host, port = bridge.address
    dump_port = _free_udp_port()
    dump = subprocess.Popen([oscdump, "-L", str(dump_port)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        subprocess.run([oscsend, host, str(port), "/ldm3d/subscribe", "i", str(dump_port)], check=True)
        subprocess.run(
            [oscsend, host, str(port), "/ldm3d/generate", "ssisf", "a harbour", "steps", "2", "guidance", "6.5"],
            check=True,
        )
        lines: list[str] = []
        deadline = time.monotonic() + 60
        assert dump.stdout is not None
        while time.monotonic() < deadline:
            line = dump.stdout.readline()
            lines.append(line)
            if "/ldm3d/ready" in line:
                break
    finally:
        dump.terminate()
        dump.wait(5)
    ready = next(line for line in lines if "/ldm3d/ready" in line)
    # liblo prints: <timetag> /ldm3d/ready ssssiii "<id>" "<rgb>" "<depth>" "<meta>" 64 64 <seed>
    assert re.search(r"/ldm3d/ready ssssiii \"[0-9-]+\" \"/.+/rgb\.tif\" \"/.+/depth\.tif\"", ready), ready
    assert any("/ldm3d/state" in line for line in lines)


class _Listener(ServiceListener):
    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []
        self.changed = threading.Event()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.added.append(name)
        self.changed.set()

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.removed.append(name)
        self.changed.set()

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        pass


@pytest.fixture
def browser() -> Iterator[tuple[Zeroconf, _Listener]]:
    zc = Zeroconf(interfaces=["127.0.0.1"])
    listener = _Listener()
    browser = ServiceBrowser(zc, SERVICE_TYPE, listener)
    try:
        yield zc, listener
    finally:
        browser.cancel()
        zc.close()


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_zeroconf_browser_finds_the_bridge_and_sees_it_leave(
    start_bridge: Start, browser: tuple[Zeroconf, _Listener]
) -> None:
    zc, listener = browser
    first = start_bridge(zeroconf=True, token="s3cret-token")
    second = start_bridge(zeroconf=True)  # same host: the names must still differ
    assert _wait(lambda: len(set(listener.added)) >= 2, 20), listener.added
    names = sorted(set(listener.added))
    assert all(n.startswith("ldm3d-bridge on ") for n in names)
    assert f":{first.address[1]}._osc._udp.local." in first._advertiser.name
    info = zc.get_service_info(SERVICE_TYPE, first._advertiser.name, timeout=3000)
    assert info is not None and info.port == first.address[1]
    assert info.properties == {b"txtvers": b"1", b"version": b"0.1.0", b"api": b"/ldm3d", b"model": b"tiny"}
    assert b"s3cret" not in (info.text or b"")  # the token is never advertised
    assert "127.0.0.1" in info.parsed_addresses()
    name = first._advertiser.name
    first.stop()
    assert _wait(lambda: name in listener.removed, 5), "no goodbye on shutdown"
    second.stop()


def _serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    return serve_tiny(tmp_path / "out", *extra, cache=tmp_path / "cache")


@pytest.mark.skipif(not POSIX, reason="sends SIGTERM")
@pytest.mark.parametrize(("policy", "outcome"), [("cancel", "/ldm3d/cancelled"), ("finish", "/ldm3d/ready")])
def test_sigterm_mid_job_exits_cleanly(tmp_path: Path, policy: str, outcome: str) -> None:
    proc, port = _serve(tmp_path, "--on-shutdown", policy)
    try:
        with OscClient("127.0.0.1", port) as client:
            client.send("/ldm3d/generate", "a long one", "steps", 40, "width", 256, "height", 256)
            client.wait_for(["/ldm3d/progress"], 60)
            client.send("/ldm3d/generate", "never runs", "steps", 2)
            queued = client.wait_for(["/ldm3d/accepted"], 10)[-1].args[0]
            proc.send_signal(signal.SIGTERM)
            seen = client.wait_for([outcome], 60)
            assert ("/ldm3d/cancelled", (queued,)) in [(m.address, m.args) for m in seen]
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = tmp_path / "out"
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == [LOCK_NAME]
    jobs = [p for p in out.iterdir() if p.is_dir() and p.name != "previews"]  # (the preview slots stay)
    assert len(jobs) == (1 if policy == "finish" else 0)


def test_the_touchosc_layout_in_osc_md_works_as_written(
    start_bridge: Start, client_for: Callable[[Bridge], OscClient]
) -> None:
    """docs/osc.md's TouchOSC table, each control's message as TouchOSC sends it (button values as
    floats, constants as typed) sent by liblo's oscsend; the tablet's receive port hears what its
    lamp, labels, faders and bar show."""
    oscsend = _require("oscsend")
    bridge = start_bridge(model="tiny", width=64, height=64)
    tablet = client_for(bridge)
    host, port = bridge.address

    def press(address: str, types: str = "", *args: str) -> None:
        subprocess.run([oscsend, host, str(port), address, types, *args], check=True, timeout=10)

    press("/ldm3d/subscribe", "isi", str(tablet.port), "lease", "0")  # SUBSCRIBE
    assert tablet.wait_for(["/ldm3d/subscribed"], 5)[-1].args[2] == 0
    press("/ldm3d/steps/norm", "f", "0.0")  # the steps fader at its bottom
    assert tablet.wait_for(["/ldm3d/steps"], 5)[-1].args == (1,)  # the label under it: the real value
    press("/ldm3d/prompt", "s", "a coral reef at noon")  # a prompt button
    assert tablet.wait_for(["/ldm3d/prompt"], 5)[-1].args == ("a coral reef at noon",)
    press("/ldm3d/seed", "i", "-1")  # new seed (-1 is already the stage's: the news label says so)
    assert tablet.wait_for(["/ldm3d/stage"], 5)[-1].args == ("seed", -1)
    press("/ldm3d/go", "f", "1.0")  # GO pressed
    press("/ldm3d/go", "f", "0.0")  # and released: ignored
    seen = tablet.wait_for(["/ldm3d/ready"], 60)
    addresses = [m.address for m in seen]
    assert "/ldm3d/progress/fraction" in addresses and ("/ldm3d/busy", (1,)) in [(m.address, m.args) for m in seen]
    press("/ldm3d/cancel", "f", "0.0")  # STOP released: nothing to say
    press("/ldm3d/ping")
    after = tablet.wait_for(["/ldm3d/pong"], 5)
    assert [m for m in after if m.address in ("/ldm3d/error", "/ldm3d/accepted")] == []  # one job, no errors
    assert sum(1 for m in seen if m.address == "/ldm3d/accepted") == 1
