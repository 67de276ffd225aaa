"""Shared fixtures. The tiny models are built once per run into a temporary folder
(random weights from a fixed seed, no download) and loaded by the real loading code."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bridge.osc.client import OscClient
    from bridge.serve.server import Bridge
    from ldm3d_engine.models.ldm3d import Engine

# Nothing in the tests may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every Ray process of the tests on 127.0.0.1: Ray reads this when it is first imported, by whichever test
# module imports it first (bridge.workers.ray_workers.LOOPBACK_ONLY; Linux's default is the machine's
# outward address).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def load_tiny(tiny_dir: Path) -> Callable[[str], Engine]:
    """``load_tiny("tiny-6c")``: a CPU engine for a built-in model, loaded once per session."""
    from ldm3d_engine import EngineSettings, load_engine

    @functools.cache
    def load(name: str) -> Engine:
        return load_engine(EngineSettings(model=name, device="cpu", tiny_dir=str(tiny_dir)))

    return load


def no_names(host: str) -> list[str]:
    """The tests' resolver stand-in: it knows no host names, so no test can reach DNS."""
    from bridge.notify.addresses import ResolveFailed

    raise ResolveFailed(f"no such host {host!r} (the tests' resolver stand-in knows no names)")


@pytest.fixture
def start_bridge(load_tiny: Callable[[str], Engine], tmp_path: Path) -> Iterator[Callable[..., Bridge]]:
    """``start_bridge(model="tiny", queue_size=2, …)``: a real bridge on 127.0.0.1 (free port), started,
    its model loaded (``wait_ready=False``: returned as soon as its port is up).

    Bridges are stopped at teardown, and no bridge thread may outlive them."""
    from bridge.serve.server import Bridge
    from bridge.settings import BridgeSettings

    started: list[Bridge] = []

    def start(
        model: str = "tiny",
        engine_factory: Callable[[], object] | None = None,
        resolver: Callable[[str], list[str]] = no_names,
        slots: list[Any] | None = None,
        wait_ready: bool = True,
        show_clock: Callable[[], float] = time.monotonic,
        **overrides: object,
    ) -> Bridge:
        # One output folder per bridge running at a time (a folder has one owner); a bridge started after
        # another stopped gets the same folder, as a restarted bridge would.
        running = sum(1 for b in started if b.failed is None and not b.stopped)
        values: dict[str, object] = {
            "model": model,
            "host": "127.0.0.1",
            "port": 0,
            "output": str(tmp_path / ("out" if running == 0 else f"out-{running + 1}")),
            "zeroconf": False,
            "http": False,  # the OSCQuery tests turn it on
            "warmup": False,
            "width": 64,
            "height": 64,
            "heartbeat_s": 30.0,
        }
        values.update(overrides)
        if overrides.get("http") and "http_port" not in overrides:
            # A free TCP port of its own: the default (the OSC port's number) can be taken on TCP by any
            # other socket of the machine (seen once: "address already in use" in test_web_api).
            values["http_port"] = 0
        settings = BridgeSettings(**values).check()  # type: ignore[arg-type]
        upscaler = settings.upscale_model
        bridge = Bridge(
            settings,
            engine_factory or (lambda: load_tiny(model)),  # type: ignore[arg-type, return-value]
            upscaler_factory=(lambda: load_tiny(upscaler)) if upscaler else None,  # type: ignore[arg-type, return-value]
            resolver=resolver,
            slots=slots,
            show_clock=show_clock,
        )
        bridge.start()
        started.append(bridge)
        assert not wait_ready or bridge.pool.ready.wait(60), "the model did not load"
        return bridge

    yield start
    for bridge in started:
        bridge.stop()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("ldm3d-")]
    assert not leftover, f"threads left running: {leftover}"


@pytest.fixture
def client_for() -> Iterator[Callable[[Bridge], OscClient]]:
    """``client_for(bridge)``: an OSC client on its own UDP port, closed at teardown."""
    from bridge.osc.client import OscClient

    clients: list[OscClient] = []

    def make(bridge: Bridge) -> OscClient:
        client = OscClient(*bridge.address)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that start a real bridge (``-m "not bridge"`` runs the fast ones, as ./dev mutate does)."""
    for item in items:
        if "start_bridge" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.bridge)
