"""Shared fixtures. The tiny models are built once per run into a temporary folder
(random weights from a fixed seed, no download) and loaded by the real loading code."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ldm3d_engine.engine import Engine

# Nothing in the tests may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
