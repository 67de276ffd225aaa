"""Per-backend hooks around the sampling loop. The default does nothing; Gaudi's lives in
:mod:`ldm3d_engine.gaudi` and is imported only when ``hpu`` is asked for."""

from __future__ import annotations

import contextlib
from typing import Any


class Runtime:
    """What a backend may add to the loop: prepare the UNet once, act after every step,
    run the loop under a context (autocast), and hear when the UNet's convolutions change."""

    name = "default"

    def prepare_unet(self, unet: Any) -> Any:
        return unet

    def after_step(self) -> None:
        pass

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def unet_changed(self, unet: Any) -> None:
        """The seamless switch patched or restored the UNet's convolutions."""
