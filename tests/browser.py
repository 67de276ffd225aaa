"""Debian's Chromium driven by Playwright, for the operator page's tests, its bench and its screenshots.

The browser is the system's (``apt-get install chromium``, which ``./dev`` does), launched by
path: Playwright's own browser download (``playwright install``) is never used. WebGL runs on
SwiftShader, Chromium's software renderer, so the viewer renders on machines with no GPU. The
flags keep Chromium from reaching any network on its own (updates, sync, metrics).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",  # WebGL on the software renderer (no GPU here)
]


def chromium_path() -> str | None:
    """``LDM3D_CHROMIUM``, else Debian's ``/usr/bin/chromium``, else ``chromium`` on the PATH."""
    for candidate in (os.environ.get("LDM3D_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def missing_reason() -> str:
    where = "sudo apt-get install chromium (./dev does)" if sys.platform.startswith("linux") else "set LDM3D_CHROMIUM"
    return f"no Chromium for the operator page's browser tests: {where}"


def launch(playwright: Any) -> Any:
    """A headless Chromium (RuntimeError when there is none)."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(missing_reason())
    return playwright.chromium.launch(executable_path=path, args=FLAGS, headless=True)
