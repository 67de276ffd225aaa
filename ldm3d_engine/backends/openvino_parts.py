"""Stand-ins for the model parts on OpenVINO: each is called as the loop calls the torch module
(the same arguments, an answer of the same shape), and reads anything else (``config``,
``dtype``, ``parameters()``, ``modules()`` for the seamless patch) from the torch module it holds.

A stand-in keeps one compiled model per input signature: the shapes and dtypes of its tensors,
which optional inputs are given, and whether the seamless wrap is patched into the module's
convolutions right now. The first call with a new signature converts (or reads the cache) and
compiles; later ones only run.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn


class Compiler(Protocol):
    """What a stand-in needs of its backend (:class:`~.openvino.OpenVINORuntime`)."""

    def compile(self, module: nn.Module, part: str, fn: Callable[..., Any], inputs: Sequence[torch.Tensor],
                key: str, exact: bool) -> Any: ...  # fmt: skip


#: Which variant of a module a call needs: the seamless patch's state (given by the engine, which
#: owns the patch: ``sampling.seamless.variant``); the default, for parts never patched (DPT).
Variant = Callable[[nn.Module], str]


def fingerprint(module: torch.nn.Module, part: str) -> str:
    """What makes ``module``'s converted model what it is: its class, config, every parameter's and
    buffer's name, shape and 64 values sampled along it, and the versions that trace it. Another
    fine-tune with the same config gets another fingerprint (its sampled weights differ)."""
    digest = hashlib.sha256()
    config: Any = getattr(module, "config", None)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    digest.update(json.dumps([part, type(module).__name__, config_dict], sort_keys=True, default=str).encode())
    ov = importlib.import_module("openvino")
    import diffusers
    import transformers

    digest.update(f"{ov.__version__} {torch.__version__} {diffusers.__version__} {transformers.__version__}".encode())
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 64)][:64].float().cpu().numpy()
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(sample.tobytes())
    return digest.hexdigest()[:24]


def run(compiled: Any, request: Any, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One inference; the outputs copied out of OpenVINO's buffers (the next inference reuses them)."""
    results = request.infer([tensor.detach().cpu().numpy() for tensor in inputs])
    return [torch.from_numpy(np.array(results[port], copy=True)) for port in compiled.outputs]


#: Parts whose output is the picture or its depth: run in f32 whatever the precision.
EXACT_PARTS = ("vae", "vqvae", "dpt")


class StandIn:
    """One torch module's OpenVINO stand-in; subclasses give the calls the loop makes."""

    def __init__(self, runtime: Compiler, module: nn.Module, part: str, variant: Variant | None) -> None:
        self.__dict__["_module"] = module  # __getattr__ reads through to it: set without recursion
        self._runtime = runtime
        self._part = part
        self._variant = variant or (lambda _module: "plain")
        self._fingerprint = fingerprint(module, part)
        self._compiled: dict[str, tuple[Any, Any]] = {}
        self.use_tiling = False  # the engine sets it; load refuses VAE tiling on OpenVINO

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_module"], name)

    def _call(self, name: str, fn: Callable[..., Any], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``fn(module, *inputs)`` on OpenVINO; ``name`` tells calls of one module apart (encode, decode)."""
        variant = self._variant(self._module)
        shapes = "_".join(f"{'x'.join(map(str, t.shape)) or 'scalar'}{str(t.dtype)[6:]}" for t in inputs)
        key = f"{self._part}-{name}-{self._fingerprint}-{variant}-{shapes}"
        if key not in self._compiled:
            compiled = self._runtime.compile(
                self._module, f"{self._part} ({name})" if name != "forward" else self._part, fn, inputs, key,
                exact=self._part in EXACT_PARTS,
            )  # fmt: skip
            self._compiled[key] = (compiled, compiled.create_infer_request())
        compiled, request = self._compiled[key]
        return run(compiled, request, inputs)


class UNetStandIn(StandIn):
    """``unet(sample, t, encoder_hidden_states=…, class_labels=…, return_dict=False)[0]``."""

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int | float,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = False,
    ) -> tuple[torch.Tensor]:
        t = timestep if isinstance(timestep, torch.Tensor) else torch.tensor(timestep)
        inputs = [sample, t]
        if encoder_hidden_states is not None:
            inputs.append(encoder_hidden_states)
        if class_labels is not None:
            inputs.append(class_labels)
        texts, labels = encoder_hidden_states is not None, class_labels is not None

        def forward(unet: nn.Module, sample: torch.Tensor, t: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
            kwargs: dict[str, torch.Tensor] = {}
            if texts:
                kwargs["encoder_hidden_states"] = rest[0]
            if labels:
                kwargs["class_labels"] = rest[-1]
            out: torch.Tensor = unet(sample, t, return_dict=False, **kwargs)[0]
            return out

        name = "forward" + ("" if texts else "-unconditional") + ("-labels" if labels else "")
        return (self._call(name, forward, inputs)[0],)


class TextStandIn(StandIn):
    """``text_encoder(ids, attention_mask=…)[0]`` (CLIP, and the CompVis LDMBert)."""

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        if attention_mask is None:
            return (self._call("forward", lambda m, ids: m(ids)[0], [input_ids])[0],)
        masked = self._call("masked", lambda m, ids, mask: m(ids, attention_mask=mask)[0], [input_ids, attention_mask])
        return (masked[0],)


class AutoencoderStandIn(StandIn):
    """``vae.decode(z, return_dict=False)[0]`` or ``.decode(z).sample``; ``vae.encode(x).latent_dist``."""

    def decode(self, z: torch.Tensor, return_dict: bool = True) -> Any:
        from diffusers.models.autoencoders.vae import DecoderOutput

        decoded = self._call("decode", lambda m, z: m.decode(z).sample, [z])[0]
        return DecoderOutput(sample=decoded) if return_dict else (decoded,)

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> Any:
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        moments = self._call("encode", lambda m, x: m.encode(x).latent_dist.parameters, [x])[0]
        return SimpleNamespace(latent_dist=DiagonalGaussianDistribution(moments))


class DepthStandIn(StandIn):
    """``dpt(pixel_values=…).predicted_depth``."""

    def __call__(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        predicted = self._call("forward", lambda m, x: m(pixel_values=x).predicted_depth, [pixel_values])[0]
        return SimpleNamespace(predicted_depth=predicted)


_STAND_INS: dict[str, type[StandIn]] = {
    "unet": UNetStandIn,
    "text_encoder": TextStandIn,
    "bert": TextStandIn,
    "vae": AutoencoderStandIn,
    "vqvae": AutoencoderStandIn,
    "dpt": DepthStandIn,
}


def stand_in(runtime: Compiler, module: nn.Module, part: str, variant: Variant | None) -> StandIn:
    return _STAND_INS[part](runtime, module, part, variant)
