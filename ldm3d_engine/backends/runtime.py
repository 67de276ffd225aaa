"""Per-backend hooks around the sampling loop. The default does nothing; Gaudi's lives in
:mod:`ldm3d_engine.backends.gaudi` and is imported only when ``hpu`` is asked for."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch


class Runtime:
    """What a backend may add to the loop: prepare each model part once, act after every step,
    run the loop under a context (autocast), and hear when the UNet's convolutions change."""

    name = "default"
    #: The device's name where torch's does not say it (``openvino:CPU``); None: torch's.
    label: str | None = None
    #: The compute dtype of the loop's autocast, where the backend runs one (Gaudi: bfloat16).
    autocast_dtype: torch.dtype | None = None
    #: Whether the UNet and VAE get channels-last weights (Gaudi: no, as optimum-habana runs them).
    channels_last: bool = True

    def prepare(self, module: Any, part: str, variant: Callable[[Any], str] | None = None) -> Any:
        """``module`` as the loop will call it (Gaudi: the UNet in an HPU graph; OpenVINO: a stand-in
        running its compiled model); ``part``: unet, text_encoder, vae, vqvae, bert or dpt;
        ``variant``: what state of the module (e.g. the seamless patch: ``wrap``/``flat``) a call
        needs, where a compiled model fixes it."""
        return module

    def describe(self, weights: str) -> str | None:
        """What results say of the dtype, where the backend says more than the weights' dtype."""
        return None

    def after_step(self) -> None:
        pass

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def unet_changed(self, unet: Any) -> None:
        """The seamless switch is about to patch or restore the UNet's convolutions (may refuse
        with InvalidRequest where the backend cannot follow)."""

    def native_scheduler(self, name: str) -> str:
        """What the model's own scheduler ``name`` (from its folder) runs as here (Gaudi: DDIM)."""
        return name

    def scheduler(
        self,
        name: str,
        config: dict[str, Any],
        steps: int,
        device: torch.device,
        make: Callable[[str, dict[str, Any]], Any],
    ) -> Any:
        """A fresh scheduler for one job, ``make(name, config)`` (the engine's), its ``steps`` timesteps
        on ``device`` (Gaudi: on the CPU, DDIM with linspace timesteps)."""
        scheduler = make(name, config)
        scheduler.set_timesteps(steps, device=device)
        return scheduler

    def noise_device(self, device: torch.device) -> torch.device:
        """Where seeded noise is drawn for ``device``: there, except on MPS (its generator is the CPU's)."""
        return torch.device("cpu") if device.type == "mps" else device
