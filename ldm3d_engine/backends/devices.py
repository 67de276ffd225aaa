"""Device and dtype selection: explicit, checked, never a silent fallback."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DeviceNotAvailable
from .runtime import Runtime

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
#: Which dtypes each device type accepts; the first is the default.
_ALLOWED = {
    "cuda": ("float16", "bfloat16", "float32"),
    "mps": ("float16", "float32"),
    "cpu": ("float32", "bfloat16"),  # bfloat16 only where the CPU has it natively (cpu_bf16)
    "hpu": ("bfloat16", "float32"),
}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype
    #: Backend hooks around the loop (Gaudi: HPU graphs, mark_step, bf16 autocast).
    runtime: Runtime = field(default_factory=Runtime)

    @property
    def label(self) -> str:
        """The device as the user named it: ``cuda:0``, ``cpu``, ``openvino:CPU``."""
        return self.runtime.label or str(self.device)

    @property
    def dtype_name(self) -> str:
        """The weights' dtype, and the compute dtype where the loop runs under autocast (Gaudi), or
        the backend's own words (OpenVINO: its precision)."""
        weights = str(self.dtype).removeprefix("torch.")
        described = self.runtime.describe(weights)
        if described is not None:
            return described
        autocast = self.runtime.autocast_dtype
        if autocast is None:
            return weights
        return f"{str(autocast).removeprefix('torch.')} autocast ({weights} weights)"


def available_devices(openvino: bool = False) -> list[str]:
    """Device names usable on this machine, e.g. ``["cpu", "cuda:0"]``; with ``openvino``, also
    ``openvino:CPU``… where the [openvino] extra is installed."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    if openvino:
        from .openvino import openvino_devices

        names += openvino_devices()
    return names


@functools.cache
def cpu_bf16() -> str | None:
    """The CPU's native bfloat16 instructions (``amx_bf16``, ``avx512_bf16``) as its flags list them,
    or None: without them torch emulates bfloat16, slower than float32. Linux only (/proc/cpuinfo)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    found = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]
    return ", ".join(found) or None


def resolve_placement(
    device: str, dtype: str | None, ov_cache: str | None = None, ov_weights: str = "model"
) -> Placement:
    """Check that ``device`` exists and ``dtype`` is allowed on it (``ov_cache``: where an
    OpenVINO device keeps its converted models, None: ``~/.cache/ldm3d-bridge/openvino``;
    ``ov_weights``: ``model`` or ``int8``, OpenVINO only)."""
    kind, _, index = device.partition(":")
    if ov_weights not in ("model", "int8"):
        raise DeviceNotAvailable(f"ov_weights {ov_weights!r} is unknown; use model or int8")
    if ov_weights != "model" and kind != "openvino":
        raise DeviceNotAvailable(f"ov_weights {ov_weights!r} compresses OpenVINO's UNet; {device!r} is not openvino:*")
    if kind == "hpu":
        return _hpu_placement(dtype)
    if kind == "openvino":
        return _openvino_placement(device, index, dtype, ov_cache, ov_weights)
    available = available_devices()
    if kind not in _ALLOWED or (index and not index.isdigit()):
        raise DeviceNotAvailable(
            f"unknown device {device!r}; use cpu, cuda, cuda:N, mps, hpu or openvino:NAME "
            f"(available here: {', '.join(available)})"
        )
    name = f"cuda:{index or 0}" if kind == "cuda" else kind
    if name not in available:
        hint = " (a CUDA build of torch and a driver are needed; `ldm3d-bridge env` tells)" if kind == "cuda" else ""
        raise DeviceNotAvailable(
            f"device {device!r} is not available on this machine; available: {', '.join(available)}{hint}"
        )
    chosen = _dtype(kind, dtype)
    if kind == "cpu" and chosen == torch.bfloat16 and cpu_bf16() is None:
        raise DeviceNotAvailable(
            "dtype 'bfloat16' on the cpu needs native bfloat16 instructions (amx_bf16 or avx512_bf16), "
            "which this CPU's flags do not list: torch would emulate it, slower than float32. "
            "Use float32, or --device openvino:CPU"
        )
    return Placement(torch.device(name), chosen)


def _openvino_placement(device: str, name: str, dtype: str | None, cache: str | None, weights: str) -> Placement:
    """OpenVINO (imported only now; see ldm3d_engine.backends.openvino): torch's side of the loop runs
    on the CPU in float32, the network calls on the OpenVINO device at ``dtype`` (default: the
    fastest it runs natively)."""
    from .openvino import OpenVINORuntime, default_cache_dir, device_dtypes, load_nncf, load_openvino

    ov = load_openvino(device)
    core = ov.Core()
    listed = core.available_devices
    if name not in listed:
        raise DeviceNotAvailable(
            f"OpenVINO has no device {name!r} here; it lists {', '.join(f'openvino:{n}' for n in listed) or 'none'}"
        )
    allowed = device_dtypes(core, name)
    dtype_name = _ALIASES.get(dtype, dtype) if dtype else allowed[0]
    if dtype_name not in allowed:
        raise DeviceNotAvailable(f"dtype {dtype!r} is not native on openvino:{name}; it runs {', '.join(allowed)}")
    if weights == "int8":
        load_nncf()
    runtime = OpenVINORuntime(ov, core, name, dtype_name, Path(cache) if cache else default_cache_dir(), weights)
    return Placement(torch.device("cpu"), torch.float32, runtime)


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
