"""OpenVINO: the network calls of our own sampling loop go to models compiled by Intel's runtime
(CPU, Intel GPU, NPU), everything else (schedulers, guidance, cancellation, noise) stays ours.

Imported only when ``--device openvino:NAME`` is asked for (the ``[openvino]`` extra). Each part
the loop calls (UNet, text encoder, VAE encoder and decoder, the CompVis UNet/autoencoder/BERT, the
DPT estimator) is wrapped in a stand-in with the same call signature (:mod:`.openvino_parts`); a
stand-in converts its torch module with ``openvino.convert_model`` the first time it sees an input
shape (and a seamless setting: the circular padding is patched in before tracing, so there is one
converted model per setting, as ``--compile`` has), then runs the compiled model.

Converted models are cached on disk (:class:`ConvertedCache`): keyed by the part, a fingerprint of
its weights and config, the input shapes, the seamless setting and the versions that traced it;
written into a temporary folder and renamed, so a kill during conversion leaves nothing that is
ever read. OpenVINO's own compiled-blob cache (``CACHE_DIR``) sits beside them, so a second start
neither converts nor compiles from scratch.

Precision: the UNet and the text encoders run at the placement's precision (``bf16`` where the
device has it, by default; ``f32`` on request) through ``INFERENCE_PRECISION_HINT``; the parts
whose output is the picture and its depth (VAE, autoencoders, DPT) always run in f32, as the VAE
stays fp32 on CUDA, so depth keeps its 16 bits.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import BackendFailed, DeviceNotAvailable
from .openvino_parts import stand_in
from .runtime import Runtime

logger = logging.getLogger(__name__)

MISSING = (
    "device {device!r} needs the OpenVINO runtime: install this project with the [openvino] extra "
    "(pip install 'ldm3d-bridge[openvino]'), which brings Intel's openvino package from PyPI ({detail})"
)
#: OpenVINO's names for precisions, by the dtype names the bridge takes.
PRECISIONS = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}
#: What the device must list in OPTIMIZATION_CAPABILITIES for each precision.
_CAPABILITY = {"bfloat16": "BF16", "float16": "FP16", "float32": "FP32"}
#: A converted model's folder: what ov.save_model writes.
_XML = "model.xml"


def load_openvino(device: str) -> Any:
    """The ``openvino`` module, or DeviceNotAvailable naming the extra."""
    try:
        return importlib.import_module("openvino")
    except ImportError as exc:
        raise DeviceNotAvailable(MISSING.format(device=device, detail=f"import failed: {exc}")) from None


def load_nncf() -> Any:
    """NNCF (int8 weight compression), or DeviceNotAvailable naming the extra."""
    try:
        return importlib.import_module("nncf")
    except ImportError as exc:
        raise DeviceNotAvailable(
            f"ov_weights 'int8' needs NNCF: install this project with the [openvino] extra, which brings it ({exc})"
        ) from None


def device_dtypes(core: Any, name: str) -> tuple[str, ...]:
    """The dtypes an OpenVINO device runs natively, fastest first (``bfloat16`` where it lists BF16)."""
    capabilities = set(core.get_property(name, "OPTIMIZATION_CAPABILITIES"))
    return tuple(dtype for dtype in ("bfloat16", "float16", "float32") if _CAPABILITY[dtype] in capabilities)


def openvino_devices() -> list[str]:
    """``openvino:NAME`` for every device OpenVINO sees here (empty without the extra)."""
    try:
        ov = importlib.import_module("openvino")
    except ImportError:
        return []
    return [f"openvino:{name}" for name in ov.Core().available_devices]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ldm3d-bridge/openvino`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ldm3d-bridge" / "openvino"


class ConvertedCache:
    """Converted models on disk: ``root/<key>/model.xml`` (+ ``.bin``), each written aside and renamed."""

    def __init__(self, root: Path, ov: Any, core: Any) -> None:
        self.root = root
        self._ov = ov
        self._core = core
        self._sweep()

    def get_or_convert(self, key: str, convert: Callable[[], Any]) -> tuple[Any, bool]:
        """(the model for ``key``, True when it came from disk). ``convert`` makes it when absent."""
        final = self.root / key
        if (final / _XML).is_file():
            return self._core.read_model(str(final / _XML)), True
        model = convert()
        aside = self.root / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir(parents=True)
        self._ov.save_model(model, str(aside / _XML), compress_to_fp16=False)
        try:
            aside.rename(final)
        except OSError:  # another process put it there first: same key, same model
            shutil.rmtree(aside, ignore_errors=True)
        return model, False

    def _sweep(self) -> None:
        """Remove what a conversion killed midway left (its process is gone)."""
        if not self.root.is_dir():
            return
        for aside in self.root.glob(".*.tmp"):
            pid = aside.name.split(".")[-3] if aside.name.count(".") >= 3 else ""
            if not pid.isdigit() or not _alive(int(pid)):
                logger.info("removing %s, left by a conversion that did not finish", aside)
                shutil.rmtree(aside, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OpenVINORuntime(Runtime):
    """One OpenVINO device, its precision and its caches; :meth:`prepare` wraps a model part."""

    name = "openvino"

    def __init__(self, ov: Any, core: Any, device: str, dtype: str, cache_dir: Path, weights: str = "model") -> None:
        self.ov = ov
        #: ``int8``: the UNet's weights compressed by NNCF (asymmetric int8 per output channel).
        self.weights = weights
        self.core = core
        self.device = device
        self.label = f"openvino:{device}"
        self.dtype = dtype
        self.cache = ConvertedCache(cache_dir, ov, core)
        self.core.set_property({"CACHE_DIR": str(cache_dir / "compiled")})

    def describe(self, weights: str) -> str:
        """What ``dtype`` says in results: the precision of the UNet and text encoder, the VAE's."""
        unet = "; UNet weights int8" if self.weights == "int8" else ""
        return f"{self.dtype} (OpenVINO {self.device}{unet}; VAE and depth float32)"

    def prepare(self, module: Any, part: str, variant: Callable[[Any], str] | None = None) -> Any:
        """``module`` replaced by its OpenVINO stand-in (``part``: unet, text_encoder, vae, vqvae, bert,
        dpt; ``variant``: names the state of ``module`` a call needs, one converted model each)."""
        return stand_in(self, module, part, variant)

    def compile(self, module: torch.nn.Module, part: str, fn: Callable[..., Any], inputs: Sequence[torch.Tensor],
                key: str, exact: bool) -> Any:  # fmt: skip
        """The compiled model of ``fn(*inputs)`` (tensors out): from the disk cache, or converted now.
        ``exact``: run in f32 whatever the placement's precision (VAE, DPT)."""
        ov = self.ov

        def convert() -> Any:
            t0 = time.perf_counter()
            examples = [tensor.clone() for tensor in inputs]  # outside inference mode: traceable
            try:
                # OpenVINO traces with TorchScript: torch calls that deprecated, and the tracer warns of
                # every shape check in diffusers' modules (the shapes are fixed per converted model)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = ov.convert_model(_Traced(module, fn), example_input=tuple(examples))
            except Exception as exc:  # any conversion error is reported, naming the part
                raise BackendFailed(f"OpenVINO could not convert the {part}: {type(exc).__name__}: {exc}") from exc
            logger.info("converted the %s for OpenVINO in %.1f s", part, time.perf_counter() - t0)
            return model

        with torch.inference_mode(False), torch.no_grad():
            if self.weights == "int8" and part == "unet":
                model, cached = self.cache.get_or_convert(f"{key}-int8", lambda: self._int8(key, convert))
            else:
                model, cached = self.cache.get_or_convert(key, convert)
        model.reshape(_static(model, inputs))
        precision = "f32" if exact else PRECISIONS[self.dtype]
        t0 = time.perf_counter()
        try:
            compiled = self.core.compile_model(model, self.device, {"INFERENCE_PRECISION_HINT": precision})
        except Exception as exc:  # a device that cannot take the model says so, naming the part
            raise BackendFailed(f"OpenVINO could not compile the {part} for {self.device}: {exc}") from exc
        logger.info(
            "%s on OpenVINO %s (%s): %s, compiled in %.1f s",
            part, self.device, precision, "converted model from the cache" if cached else "converted now",
            time.perf_counter() - t0,
        )  # fmt: skip
        return compiled

    def _int8(self, key: str, convert: Callable[[], Any]) -> Any:
        """The converted model of ``key`` with its weights compressed to int8 (NNCF, data-free)."""
        nncf = load_nncf()
        nncf.set_log_level(logging.WARNING)  # its statistics table and progress bar are not for a show's log
        model, _ = self.cache.get_or_convert(key, convert)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # and its progress bar (rich, on stdout)
            compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        logger.info("compressed the unet's weights to int8 in %.1f s", time.perf_counter() - t0)
        return compressed


def _static(model: Any, inputs: Sequence[torch.Tensor]) -> dict[Any, list[int]]:
    """Every input at the example's shape: a show runs at one size, and static shapes compile faster code."""
    return {port: list(tensor.shape) for port, tensor in zip(model.inputs, inputs, strict=True)}


class _Traced(torch.nn.Module):
    """``fn`` over ``module`` as a module (what convert_model traces); its weights become constants."""

    def __init__(self, module: torch.nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.fn(self.module, *inputs)
