"""Intel Gaudi (HPU): our own sampling loop on HPU, run the way optimum-habana's
``GaudiStableDiffusionLDM3DPipeline`` runs LDM3D, so Gaudi also keeps seamless wrap, progress,
cancellation, img2img and upscale.

Imported only when ``--device hpu`` is asked for: ``habana_frameworks.torch`` comes with Intel's
Gaudi software, not from PyPI, and importing it fails elsewhere. optimum-habana itself is not
needed: what it does is done here, in our own code (docs/fidelity.md, "Intel Gaudi", lists each
step and each remaining difference):

* **precision**: float32 weights, the whole job under ``torch.autocast("hpu", bfloat16)`` with
  Habana/stable-diffusion-2's bf16/fp32 op lists declared before Habana's core is imported, lazy
  mode, and bf16 reductions allowed in SDPA (:mod:`.gaudi_precision`); ``--dtype float32`` runs
  without autocast;
* **scheduler**: DDIM with ``timestep_spacing="linspace"`` (its ``GaudiDDIMScheduler`` as its
  example runs it) for the model's own scheduler, PNDM included, which its LDM3D pipeline cannot
  run; timesteps made on the CPU (:meth:`HpuRuntime.scheduler`);
* **UNet**: ``mark_step()`` right after the time projection inside the forward (its patched
  forward, under autocast), and its own HPU-graph capture and replay (:mod:`.gaudi_graphs`);
  no ``mark_step`` after a step (it marks steps only with graphs off); no channels-last;
* seeded noise drawn on the CPU ("randn is broken on HPU").

Never run on Gaudi hardware: tests/test_gaudi.py drives it with a stand-in for ``habana_frameworks``
(tests/fake_habana.py) that records the calls; nothing numeric on Gaudi is tested.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import torch

from ..errors import DeviceNotAvailable
from .gaudi_graphs import HpuGraphUNet
from .gaudi_precision import allow_bf16_sdpa_reduction, declare_op_lists, prefer_lazy_mode
from .runtime import Runtime

logger = logging.getLogger(__name__)

MISSING = (
    "device 'hpu' needs Intel Gaudi software: the Python package habana_frameworks.torch comes with Intel "
    "Gaudi software (SynapseAI), not from PyPI. Run the bridge in Intel's Gaudi PyTorch container or on a "
    "machine with that software installed, then install this project there with "
    '`pip install -c constraints.txt -e ".[gaudi]"` (optimum-habana is not needed) ({detail})'
)
#: The scheduler optimum-habana runs LDM3D with on Gaudi (``GaudiDDIMScheduler``), and its spacing.
GAUDI_SCHEDULER = "ddim"
GAUDI_SPACING = "linspace"


class HpuRuntime(Runtime):
    name = "hpu"
    channels_last = False  # optimum-habana leaves the UNet and VAE in the default memory format

    def __init__(
        self, core: Any, hpu: Any, device_type: str = "hpu", autocast_dtype: torch.dtype | None = torch.bfloat16
    ) -> None:
        self._core = core
        self._hpu = hpu
        self._device_type = device_type
        self.autocast_dtype = autocast_dtype

    def prepare(self, module: Any, part: str, variant: Callable[[Any], str] | None = None) -> Any:
        """The UNet under our HPU-graph capture (with the time projection's ``mark_step`` under autocast);
        the other parts as they are (optimum-habana graphs only the UNet)."""
        if part != "unet":
            return module
        if self.autocast_dtype is not None:  # optimum-habana patches the forward only with autocast (or bf16)
            module.time_proj.register_forward_hook(lambda _module, _inputs, _output: self._core.mark_step())
        return HpuGraphUNet(module, self._hpu, variant)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device_type, dtype=self.autocast_dtype)

    def unet_changed(self, unet: Any) -> None:
        """Graphs are keyed by the seamless state where the engine says how to read it; else dropped."""
        if isinstance(unet, HpuGraphUNet) and not unet.keyed_by_variant:
            unet.clear()

    def noise_device(self, device: torch.device) -> torch.device:
        return torch.device("cpu")

    def native_scheduler(self, name: str) -> str:
        if name != GAUDI_SCHEDULER:
            logger.info(
                "on Gaudi the model's own scheduler (%s) runs as DDIM with %s timesteps, as optimum-habana runs "
                "LDM3D (GaudiDDIMScheduler); other schedulers run only when a job names them",
                name,
                GAUDI_SPACING,
            )
        return GAUDI_SCHEDULER

    def scheduler(
        self,
        name: str,
        config: dict[str, Any],
        steps: int,
        device: torch.device,
        make: Callable[[str, dict[str, Any]], Any],
    ) -> Any:
        """DDIM with ``linspace`` timesteps; any scheduler's timesteps made on the CPU (the loop's UNet
        call moves each to the HPU; the step's arithmetic on the schedule stays on the CPU, as in
        optimum-habana's pipeline)."""
        if name == GAUDI_SCHEDULER:
            config = {**config, "timestep_spacing": GAUDI_SPACING}
        scheduler = make(name, config)
        scheduler.set_timesteps(steps, device="cpu")
        return scheduler


def habana_present(modules: Mapping[str, object] = sys.modules) -> bool:
    """Whether ``habana_frameworks`` can be imported, without importing it."""
    if "habana_frameworks" in modules:
        return modules["habana_frameworks"] is not None
    return importlib.util.find_spec("habana_frameworks") is not None


def load_habana(autocast: bool, environ: MutableMapping[str, str] = os.environ) -> tuple[Any, Any]:
    """(habana_frameworks.torch.core, habana_frameworks.torch.hpu), with lazy mode and, for ``autocast``,
    the op lists declared first; or DeviceNotAvailable saying why not and what to install."""
    if not habana_present():
        raise DeviceNotAvailable(MISSING.format(detail="no module named 'habana_frameworks'"))
    prefer_lazy_mode(environ)
    if autocast:
        logger.info("Intel Gaudi: bfloat16 autocast with %s", declare_op_lists(environ))
    try:
        core = importlib.import_module("habana_frameworks.torch.core")
        hpu = importlib.import_module("habana_frameworks.torch.hpu")
    except ImportError as exc:
        raise DeviceNotAvailable(MISSING.format(detail=f"import failed: {exc}")) from None
    if not hpu.is_available():
        raise DeviceNotAvailable(MISSING.format(detail="the software is there, but it sees no Gaudi device"))
    return core, hpu


def hpu_runtime(autocast_dtype: torch.dtype | None) -> HpuRuntime:
    core, hpu = load_habana(autocast=autocast_dtype is not None)
    if autocast_dtype is not None:
        allow_bf16_sdpa_reduction()
    logger.info("Intel Gaudi: %d HPU(s) visible", int(hpu.device_count()))
    return HpuRuntime(core, hpu, autocast_dtype=autocast_dtype)
