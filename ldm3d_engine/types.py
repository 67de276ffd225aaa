"""Request, result and settings types of the engine. Pure Python and NumPy: importing
this module does not import torch, so the bridge can use it without a model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

#: Seeds fit in a signed 32-bit int, so they travel as OSC int32 to every client.
SEED_MAX = 2**31 - 1

#: Progress of a job: called with (steps done, steps in all) after every step.
OnStep = Callable[[int, int], None]


@dataclass(frozen=True)
class Preview:
    """A world while it forms: the clean picture the sampler predicts after ``step`` of ``total``
    steps, at the latent resolution (an eighth of the world's), from the model's cheap preview map
    (:mod:`ldm3d_engine.sampling.preview`), not from its VAE."""

    step: int
    total: int
    rgb: npt.NDArray[np.uint8]  # h×w×3
    depth: npt.NDArray[np.uint16]  # h×w, 65535 = nearest; flat 32768 for a model that makes no depth


@dataclass(frozen=True)
class Previews:
    """What a job's caller wants of previews: one after every ``every`` steps (the last step makes the
    world itself, so it has none), handed to ``send`` on the engine's thread (keep it quick)."""

    every: int
    send: Callable[[Preview], None]

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"previews every {self.every} steps: use 1 or more (no Previews at all: none)")

    def due(self, done: int, total: int) -> bool:
        return done < total and done % self.every == 0


@dataclass(frozen=True)
class GenerateRequest:
    """One text → RGBD job. ``None`` means "the model preset's default"."""

    prompt: str
    negative_prompt: str = ""
    #: -1 picks a random seed; the seed used is in the result.
    seed: int = -1
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    scheduler: str | None = None
    #: Horizontal wrap for equirectangular output; on by default for pano presets.
    seamless: bool | None = None
    #: ``quality`` (the model's scheduler and steps) or ``live`` (DPM-Solver++, ~20 steps);
    #: explicit ``steps``/``scheduler`` win over it. None: ``quality``.
    sampling: str | None = None


@dataclass(frozen=True)
class Img2ImgRequest(GenerateRequest):
    """RGBD image-to-image: how far to move from the input (0 = keep it, 1 = like text-to-image).

    ``width``/``height`` default to the input image's size; the input is resized to them."""

    strength: float = 0.6
    #: Without a depth map: True keeps the flat 0.5 stand-in even when a depth estimator is loaded.
    flat_depth: bool = False


@dataclass(frozen=True)
class DepthRequest:
    """Depth for a picture (RGB kept as it is). ``equirect``: a 360° picture, estimated on
    perspective views blended back (None: the model preset's ``seamless``, on for pano models)."""

    equirect: bool | None = None


#: The LDM3D-SR model card's prompt for plain upscaling.
UPSCALE_PROMPT = "high quality high resolution uhd 4k image"


@dataclass(frozen=True)
class UpscaleRequest:
    """LDM3D-SR: the output is ``width``×``height`` (both given), or ``scale`` (2 or 4; None: 4)
    times the source in both dimensions."""

    prompt: str = UPSCALE_PROMPT
    negative_prompt: str = ""
    seed: int = -1
    steps: int | None = None
    guidance: float | None = None
    #: How much the model may invent over the low-resolution input, 0..350 (a class label of the UNet).
    noise_level: int = 20
    scheduler: str | None = None
    #: On for an equirectangular source (the bridge passes the source job's setting).
    seamless: bool | None = None
    sampling: str | None = None
    width: int | None = None
    height: int | None = None
    scale: int | None = None


@dataclass(frozen=True)
class ResolvedRequest:
    """A request with every default filled in and every field validated."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    scheduler: str
    seamless: bool
    #: ``text``, ``img2img`` or ``upscale``.
    mode: str = "text"
    sampling: str = "quality"
    strength: float | None = None
    noise_level: int | None = None


@dataclass(frozen=True)
class Timings:
    text_encoding_s: float
    denoising_s: float
    decoding_s: float
    #: Depth estimation (DPT), for RGB-only models, img2img without a depth map and depth jobs.
    depth_s: float = 0.0
    #: The image safety checker, on every view of the picture.
    safety_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.text_encoding_s + self.denoising_s + self.decoding_s + self.depth_s + self.safety_s


@dataclass(frozen=True)
class RGBDResult:
    """What one job produces. Depth is relative inverse depth: larger = nearer."""

    rgb: npt.NDArray[np.uint8]  # H×W×3
    depth: npt.NDArray[np.uint16]  # H×W, 65535 = nearest
    depth_float: npt.NDArray[np.float32]  # H×W, 0..1, 1 = nearest
    request: ResolvedRequest
    #: The prompt as sent to the text encoder (a preset prefix may have been added).
    prompt_used: str
    #: True when the prompt was longer than CLIP's 77 tokens and was cut.
    prompt_truncated: bool
    negative_truncated: bool
    model_id: str
    preset: str
    device: str
    dtype: str
    #: ``rgbd4`` (depth in channel 3) or ``rgbd6`` (16-bit depth in two byte channels).
    depth_layout: str
    timings: Timings
    #: Where the depth came from when the model did not make it: ``dpt`` (estimated: see the next
    #: two), or the flat stand-in of an img2img job without a depth map.
    depth_source: str | None = None
    #: The depth estimator's model (``Intel/dpt-large``…) and how it saw the picture.
    depth_model: str | None = None
    depth_method: str | None = None
    #: An unconditional model made it: the prompt played no part.
    prompt_ignored: bool = False
    #: Peak GPU memory of the job (cuda), in MiB.
    peak_memory_mb: float | None = None
    #: The image safety check: ``passed`` (a flagged picture never becomes a result: it raises
    #: UnsafeContent), ``off`` (turned off in the settings) or ``no checker`` (the model has none).
    safety: str = "no checker"

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


@dataclass(frozen=True)
class EngineSettings:
    """How to load an engine. Read explicitly by the caller; nothing here reads the environment."""

    #: A preset name (``ldm3d-pano``, ``tiny``…) or the path of a local diffusers folder.
    model: str = "tiny"
    #: Run a local folder with this preset's conventions (size, guidance, prompt prefix, wrap).
    preset: str | None = None
    #: ``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``hpu`` or ``openvino:NAME`` (``openvino:CPU``,
    #: ``openvino:GPU``, ``openvino:NPU``: OpenVINO's device names). Never chosen for you.
    device: str = "cpu"
    #: ``float32``, ``float16`` or ``bfloat16``; ``None``: fp16 on cuda/mps, fp32 on cpu, bf16 on hpu,
    #: on OpenVINO the fastest the device runs natively (bf16 on CPUs that have it).
    dtype: str | None = None
    #: Where an OpenVINO device keeps converted models; None: ``~/.cache/ldm3d-bridge/openvino``.
    ov_cache: str | None = None
    #: OpenVINO only: ``model`` (the weights as loaded) or ``int8`` (the UNet's weights compressed to
    #: int8 by NNCF; the activations stay at ``dtype``).
    ov_weights: str = "model"
    #: Hugging Face cache folder; ``None``: the hub's default (``HF_HOME``/``HF_HUB_CACHE``).
    cache_dir: str | None = None
    #: Where the built-in tiny models are saved once; ``None``: ``~/.cache/ldm3d-bridge``.
    tiny_dir: str | None = None
    #: Never download; a model missing from the cache raises ModelNotAvailable.
    offline: bool = False
    #: torch.compile the UNet (the first run at each size pays for it: run a warm-up).
    compile: bool = False
    #: "none", or "model" (cuda only): models wait on the CPU and move to the GPU only while they run.
    offload: str = "none"
    #: Decode in tiles to bound VAE memory at 2048-wide sizes (not used for seamless requests,
    #: whose wrap needs the whole width at once).
    vae_tiling: bool = False
    #: CPU threads for torch on the cpu device; None: all cores.
    threads: int | None = None
    #: A depth estimator beside the model (``dpt-large``, ``dpt-hybrid``, ``tiny-dpt`` or a folder):
    #: img2img without a depth map and depth jobs use it. None: none for LDM3D models; an RGB-only
    #: model gets its preset's.
    depth_model: str | None = None
    #: Run the image safety checker on every picture (the model's own, or ``safety_model``'s); a
    #: flagged picture raises UnsafeContent. False: nothing is checked.
    safety: bool = True
    #: A safety checker for a model without one (a folder or a hub id: a pipeline folder with
    #: ``safety_checker/`` + ``feature_extractor/``, or a checker on its own); None: the model's.
    safety_model: str | None = None


@dataclass
class CancelToken:
    """Set from any thread; the engine checks it before and after every step."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
