"""Intel Gaudi (HPU): our own sampling loop on HPU, so Gaudi keeps seamless wrap, progress,
cancellation, img2img and upscale.

Imported only when ``--device hpu`` is asked for: ``habana_frameworks.torch`` comes with
Intel's Gaudi software (SynapseAI), not from PyPI, and importing it fails elsewhere.
What the loop does differently on HPU, as optimum-habana's ``GaudiStableDiffusionLDM3DPipeline`` runs it:

* weights stay in float32 and the loop runs under ``torch.autocast("hpu", bfloat16)``
  (optimum-habana's practice: full bfloat16 weights harm the images); ``--dtype float32``
  runs without autocast;
* the UNet is wrapped in an HPU graph (``wrap_in_hpu_graph(..., disable_tensor_cache=True)``):
  launches are replayed, and the graph does not keep its input tensors alive;
* seeded noise is drawn on the CPU and moved to the HPU (optimum-habana: "randn is broken on HPU");
* ``mark_step()`` after every denoising step, so the lazy-mode graph runs step by step
  (progress and cancellation stay per step).

HPU graphs are captured per input shape, not per Python code path: when the seamless switch
changes the UNet's convolutions the captured graphs are dropped (``clear_cache``) and captured
again. A Gaudi software release whose wrapped module has no ``clear_cache`` would replay graphs
captured with the other padding, so there a job asking for the other seamless setting than the
graphs were captured with is refused (field ``seamless``) instead of drawn wrong.

This path has not been run on Gaudi hardware here; the tests drive it with a fake
``habana_frameworks`` that records what is called.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable
from typing import Any

import torch

from ..errors import DeviceNotAvailable, InvalidRequest
from .runtime import Runtime

logger = logging.getLogger(__name__)

MISSING = (
    "device 'hpu' needs Intel Gaudi software: the Python package habana_frameworks.torch comes with SynapseAI "
    "(Intel Gaudi software 1.x), not from PyPI. Run the bridge in Intel's Gaudi PyTorch container or on a "
    "machine with that software, then install this project with the [gaudi] extra ({detail})"
)


class HpuRuntime(Runtime):
    name = "hpu"

    def __init__(
        self, core: Any, hpu: Any, device_type: str = "hpu", autocast_dtype: torch.dtype | None = torch.bfloat16
    ) -> None:
        self._core = core
        self._hpu = hpu
        self._device_type = device_type
        self.autocast_dtype = autocast_dtype
        self._can_clear = False
        self._captured = False

    def prepare(self, module: Any, part: str, variant: Callable[[Any], str] | None = None) -> Any:
        """The UNet wrapped in an HPU graph; the other parts as they are."""
        if part != "unet":
            return module
        wrapped = self._hpu.wrap_in_hpu_graph(module, disable_tensor_cache=True)
        self._can_clear = callable(getattr(wrapped, "clear_cache", None))
        if not self._can_clear:
            logger.warning(
                "this Gaudi software cannot drop captured HPU graphs (no clear_cache): the first job's seamless "
                "setting holds until the bridge restarts"
            )
        return wrapped

    def after_step(self) -> None:
        self._core.mark_step()
        self._captured = True

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device_type, dtype=self.autocast_dtype)

    def unet_changed(self, unet: Any) -> None:
        if self._can_clear:
            unet.clear_cache()
        elif self._captured:
            raise InvalidRequest(
                "seamless",
                "the HPU graphs were captured with the other seamless setting and this Gaudi software cannot drop "
                "them (its HPU graph wrapper has no clear_cache); send the setting the earlier jobs used, or "
                "restart the bridge to change it",
            )

    def noise_device(self, device: torch.device) -> torch.device:
        return torch.device("cpu")


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


def hpu_runtime(autocast_dtype: torch.dtype | None) -> HpuRuntime:
    core, hpu = load_habana()
    logger.info("Intel Gaudi: %d HPU(s) visible", int(hpu.device_count()))
    return HpuRuntime(core, hpu, autocast_dtype=autocast_dtype)
