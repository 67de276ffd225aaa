"""Device and dtype selection: explicit, checked, never a silent fallback."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import DeviceNotAvailable
from .runtime import Runtime

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
#: Which dtypes each device type accepts; the first is the default.
_ALLOWED = {
    "cuda": ("float16", "bfloat16", "float32"),
    "mps": ("float16", "float32"),
    "cpu": ("float32",),
    "hpu": ("bfloat16", "float32"),
}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype
    #: Backend hooks around the loop (Gaudi: HPU graphs, mark_step, bf16 autocast).
    runtime: Runtime = field(default_factory=Runtime)

    @property
    def dtype_name(self) -> str:
        """The weights' dtype, and the compute dtype where the loop runs under autocast (Gaudi)."""
        weights = str(self.dtype).removeprefix("torch.")
        autocast = self.runtime.autocast_dtype
        if autocast is None:
            return weights
        return f"{str(autocast).removeprefix('torch.')} autocast ({weights} weights)"


def available_devices() -> list[str]:
    """Device names usable on this machine, e.g. ``["cpu", "cuda:0"]``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_placement(device: str, dtype: str | None) -> Placement:
    """Check that ``device`` exists and ``dtype`` is allowed on it."""
    available = available_devices()
    kind, _, index = device.partition(":")
    if kind == "hpu":
        return _hpu_placement(dtype)
    if kind not in _ALLOWED or (index and not index.isdigit()):
        raise DeviceNotAvailable(
            f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or hpu (available here: {', '.join(available)})"
        )
    name = f"cuda:{index or 0}" if kind == "cuda" else kind
    if name not in available:
        hint = " (a CUDA build of torch and a driver are needed; `ldm3d-bridge env` tells)" if kind == "cuda" else ""
        raise DeviceNotAvailable(
            f"device {device!r} is not available on this machine; available: {', '.join(available)}{hint}"
        )
    return Placement(torch.device(name), _dtype(kind, dtype))


def _dtype(kind: str, dtype: str | None) -> torch.dtype:
    allowed = _ALLOWED[kind]
    dtype_name = _ALIASES.get(dtype, dtype) if dtype else allowed[0]
    if dtype_name not in allowed:
        raise DeviceNotAvailable(f"dtype {dtype!r} is not supported on {kind}; use one of {', '.join(allowed)}")
    return DTYPES[dtype_name]


def _hpu_placement(dtype: str | None) -> Placement:
    """Intel Gaudi: imported only now (see ldm3d_engine.backends.gaudi). Weights stay float32; ``bfloat16``
    (the default) is the compute dtype of the loop's autocast, as optimum-habana runs LDM3D."""
    chosen = _dtype("hpu", dtype)
    from .gaudi import hpu_runtime

    autocast = chosen if chosen != torch.float32 else None
    return Placement(torch.device("hpu"), torch.float32, hpu_runtime(autocast))


#: How torch's allocators word running out of memory: CUDA/HPU ("... out of memory ...") and the CPU's
#: DefaultCPUAllocator ("can't allocate memory: you tried to allocate N bytes ... (Cannot allocate memory)").
_OUT_OF_MEMORY_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the out-of-memory errors of any torch backend, the CPU's included."""
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or any(words in text for words in _OUT_OF_MEMORY_WORDS)
