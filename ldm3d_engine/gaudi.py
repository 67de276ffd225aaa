"""Intel Gaudi (HPU): our own sampling loop on HPU, so Gaudi keeps seamless wrap, progress,
cancellation, img2img and upscale.

Imported only when ``--device hpu`` is asked for: ``habana_frameworks.torch`` comes with
Intel's Gaudi software (SynapseAI), not from PyPI, and importing it fails elsewhere.
What the loop does differently on HPU:

* the UNet is wrapped in an HPU graph (``wrap_in_hpu_graph``): launches are replayed;
* ``mark_step()`` after every denoising step, so the lazy-mode graph runs step by step
  (progress and cancellation stay per step);
* the loop runs under ``torch.autocast("hpu", bfloat16)``; weights load in bfloat16.

HPU graphs are captured per input shape; when the seamless switch changes the UNet's
convolutions the captured graphs are dropped (``clear_cache``) and captured again.

This path has not been run on Gaudi hardware here; the tests drive it with a fake
``habana_frameworks`` that records what is called.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from typing import Any

import torch

from .errors import DeviceNotAvailable
from .runtime import Runtime

logger = logging.getLogger(__name__)

MISSING = (
    "device 'hpu' needs Intel Gaudi software: the Python package habana_frameworks.torch comes with SynapseAI "
    "(Intel Gaudi software 1.x), not from PyPI. Run the bridge in Intel's Gaudi PyTorch container or on a "
    "machine with that software, then install this project with the [gaudi] extra ({detail})"
)


class HpuRuntime(Runtime):
    name = "hpu"

    def __init__(self, core: Any, hpu: Any, device_type: str = "hpu") -> None:
        self._core = core
        self._hpu = hpu
        self._device_type = device_type

    def prepare_unet(self, unet: Any) -> Any:
        return self._hpu.wrap_in_hpu_graph(unet)

    def after_step(self) -> None:
        self._core.mark_step()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device_type=self._device_type, dtype=torch.bfloat16)

    def unet_changed(self, unet: Any) -> None:
        clear = getattr(unet, "clear_cache", None)
        if callable(clear):
            clear()


def load_habana() -> tuple[Any, Any]:
    """(habana_frameworks.torch.core, habana_frameworks.torch.hpu), or DeviceNotAvailable saying why not."""
    try:
        core = importlib.import_module("habana_frameworks.torch.core")
        hpu = importlib.import_module("habana_frameworks.torch.hpu")
    except ImportError as exc:
        raise DeviceNotAvailable(MISSING.format(detail=f"import failed: {exc}")) from None
    if not hpu.is_available():
        raise DeviceNotAvailable(MISSING.format(detail="the software is there, but it sees no Gaudi device"))
    return core, hpu


def hpu_runtime() -> HpuRuntime:
    core, hpu = load_habana()
    logger.info("Intel Gaudi: %d HPU(s) visible", int(hpu.device_count()))
    return HpuRuntime(core, hpu)
