"""The model presets: where each LDM3D model lives and how it is meant to be run.

Pure data; no torch. A preset's behaviour is written here explicitly, never
guessed from a model's name. A local folder given without a preset gets the
neutral :data:`FOLDER_DEFAULTS`; give ``--preset`` as well to run a folder
with a preset's conventions (e.g. a local copy of ``Intel/ldm3d-pano``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``model`` is the model folder's own scheduler (the class its ``scheduler_config.json`` names);
#: the others sample the same noise schedule another way.
SCHEDULERS = ("model", "ddim", "pndm", "dpm", "unipc", "euler_a", "euler")
#: What ``model`` can stand for (the engine refuses a folder whose scheduler is none of these).
NATIVE_SCHEDULERS = SCHEDULERS[1:]
#: Named sampling settings: ``quality`` is the model's own scheduler (the class its folder's
#: ``scheduler_config.json`` names) and the model card's step count; ``live`` is DPM-Solver++
#: with ``live_steps`` steps, for shows.
SAMPLINGS = ("quality", "live")
LIVE_SCHEDULER = "dpm"


@dataclass(frozen=True)
class Preset:
    """How one model is loaded and run by default."""

    name: str
    #: Hugging Face hub id, or ``builtin:<name>`` for the offline tiny models.
    source: str
    width: int
    height: int
    steps: int
    guidance: float
    #: ``model``: the model folder's own (see :data:`SCHEDULERS`).
    scheduler: str = "model"
    #: What ``model`` stands for: filled in from ``scheduler_config.json`` when the engine loads the model.
    native_scheduler: str | None = None
    #: Steps of the ``live`` sampling (DPM-Solver++).
    live_steps: int = 20
    #: Added in front of the prompt when the prompt does not already say it.
    prompt_prefix: str = ""
    seamless: bool = False
    min_size: int = 64
    max_width: int = 1024
    max_height: int = 1024
    #: ``text`` for text→RGBD models, ``upscale`` for LDM3D-SR.
    task: str = "text"
    description: str = ""
    #: Sizes of seamless jobs must be multiples of this (8 · 2^UNet downsamplers) for the wrap to be
    #: exact; filled in from the UNet's config when the engine loads the model.
    wrap_multiple: int = 8
    #: ``ldm3d`` (RGB + depth from the VAE) or ``ldm`` (a CompVis latent diffusion model: RGB only,
    #: its depth estimated by :attr:`depth_model`).
    family: str = "ldm3d"
    #: False for an unconditional model: it ignores the prompt (and the result says so).
    conditional: bool = True
    #: The depth estimator an RGB-only model needs when none is given (see :data:`DEPTH_MODELS`).
    depth_model: str | None = None
    #: DDIM's eta (the model card's), for DDIM sampling.
    eta: float = 0.0

    @property
    def builtin(self) -> bool:
        return self.source.startswith("builtin:")


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "ldm3d",
            "Intel/ldm3d",
            512,
            512,
            steps=49,
            guidance=5.0,
            min_size=256,
            description="original paper checkpoint, 6-channel VAE (16-bit depth in two byte channels)",
        ),
        Preset(
            "ldm3d-4c",
            "Intel/ldm3d-4c",
            512,
            512,
            steps=49,
            guidance=5.0,
            min_size=256,
            description="4-channel VAE (RGB + depth), better results than ldm3d",
        ),
        Preset(
            "ldm3d-pano",
            "Intel/ldm3d-pano",
            1024,
            512,
            steps=50,
            guidance=7.0,
            prompt_prefix="360 view of ",
            seamless=True,
            min_size=256,
            max_width=2048,
            max_height=1024,
            description="360° equirectangular panoramas",
        ),
        Preset(
            "ldm3d-sr",
            "Intel/ldm3d-sr",
            1024,
            1024,
            steps=50,
            guidance=9.0,
            task="upscale",
            min_size=256,
            max_width=2048,
            max_height=2048,
            description="×4 RGBD upscaler (LDM3D-SR); sizes are the output's",
        ),
        Preset(
            "tiny",
            "builtin:tiny",
            256,
            256,
            steps=20,
            guidance=7.5,
            description="offline, random weights, 4-channel: rehearsal and tests (the picture is noise)",
        ),
        Preset(
            "tiny-6c",
            "builtin:tiny-6c",
            256,
            256,
            steps=20,
            guidance=7.5,
            description="offline, random weights, 6-channel VAE like the original ldm3d",
        ),
        Preset(
            "tiny-sr",
            "builtin:tiny-sr",
            256,
            256,
            steps=10,
            guidance=7.5,
            task="upscale",
            description="offline, random weights, ×4 upscaler with the LDM3D-SR layout (8-channel UNet)",
        ),
        Preset(
            "tiny-pano",
            "builtin:tiny-pano",
            1024,
            512,
            steps=10,
            guidance=7.0,
            prompt_prefix="360 view of ",
            seamless=True,
            max_width=2048,
            max_height=1024,
            description="offline, random weights, 1024×512 panoramas",
        ),
        Preset(
            "ldm-celebahq",
            "CompVis/ldm-celebahq-256",
            256,
            256,
            steps=200,
            guidance=1.0,
            family="ldm",
            conditional=False,
            depth_model="dpt-large",
            min_size=256,
            max_width=256,
            max_height=256,
            description="CompVis LDM, unconditional faces (VQ autoencoder, DDIM); depth by DPT",
        ),
        Preset(
            "ldm-text2im",
            "CompVis/ldm-text2im-large-256",
            256,
            256,
            steps=50,
            guidance=6.0,
            eta=0.3,
            family="ldm",
            depth_model="dpt-large",
            max_width=512,
            max_height=512,
            description="CompVis LDM, text to image (LDM-BERT, DDIM); depth by DPT",
        ),
        Preset(
            "tiny-ldm",
            "builtin:tiny-ldm",
            128,
            128,
            steps=10,
            guidance=1.0,
            family="ldm",
            conditional=False,
            depth_model="tiny-dpt",
            min_size=128,
            max_width=128,
            max_height=128,
            description="offline, random weights, unconditional CompVis LDM layout (VQ autoencoder); depth by tiny-dpt",
        ),
        Preset(
            "tiny-ldm-text",
            "builtin:tiny-ldm-text",
            128,
            128,
            steps=10,
            guidance=6.0,
            eta=0.3,
            family="ldm",
            depth_model="tiny-dpt",
            max_width=256,
            max_height=256,
            description="offline, random weights, the text-to-image CompVis LDM layout (LDM-BERT); depth by tiny-dpt",
        ),
    )
}

#: Depth estimators (``--depth-model``): DPT through transformers. ``dpt-large`` is the model LDM3D's
#: depth came from; ``dpt-hybrid`` (MiDaS v3 hybrid) is lighter; ``tiny-dpt`` is built offline with
#: random weights for tests and rehearsals. A local folder in transformers' layout works too.
DEPTH_MODELS: dict[str, str] = {
    "dpt-large": "Intel/dpt-large",
    "dpt-hybrid": "Intel/dpt-hybrid-midas",
    "tiny-dpt": "builtin:tiny-dpt",
}

#: The perspective views a 360° picture's depth is estimated on, (yaw, pitch) in degrees: 8 around
#: the horizon and one at each pole (see :mod:`ldm3d_engine.depth.equirect`).
EQUIRECT_VIEWS: tuple[tuple[float, float], ...] = (*((45.0 * k, 0.0) for k in range(8)), (0.0, 90.0), (0.0, -90.0))

#: Conventions for a local folder run without a preset.
FOLDER_DEFAULTS = Preset("folder", "", 512, 512, steps=50, guidance=7.5, min_size=64, max_width=2048, max_height=2048)


def get_preset(name: str) -> Preset:
    """Return the preset called ``name``; :class:`UnknownModel` lists the others."""
    from .errors import UnknownModel

    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownModel(
            f"unknown model preset {name!r}; presets are {', '.join(PRESETS)}, "
            "or give the path of a local folder in diffusers layout"
        ) from None
