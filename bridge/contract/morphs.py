"""``/ldm3d/morph`` (and ``ldm3d-bridge morph``) → a morph request, checked before it is queued.

A morph travels from a finished world to another finished world or to a prompt: ``frames`` worlds
(both ends included) at evenly spaced positions 0 … 1, each made by the engine's
``generate_between`` (the slerp of the two worlds' starting noise and text embeddings, same
scheduler and steps). The two worlds are read from their ``meta.json``: both must be text worlds
of the loaded model, at one size, steps, scheduler, sampling and wrap. A prompt's world takes
the first world's settings and a seed (the ``seed`` option, else one drawn now, so every frame
shares it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from bridge.contract.engine_api import EngineLike
from bridge.errors import BadArguments, UnknownJob, WrongModel
from bridge.output.job_ids import JOB_ID_RE
from bridge.output.writer import TextureWriter
from ldm3d_engine.errors import EngineError
from ldm3d_engine.types import SEED_MAX, GenerateRequest
from ldm3d_engine.validation import check_morph

#: How many frames a morph may have (both worlds included), and its default.
FRAMES_RANGE = (2, 240)
DEFAULT_FRAMES = 8
#: How long a morph plays in TouchDesigner and on the page, in seconds, and its default.
SECONDS_RANGE = (0.1, 3600.0)
DEFAULT_SECONDS = 4.0


@dataclass(frozen=True)
class MorphRequest:
    first: GenerateRequest
    second: GenerateRequest
    frames: int
    seconds: float
    #: The first world's job id; the second's, or None for a prompt.
    from_job: str
    to_job: str | None
    #: The model each world was made with (``meta.json``'s ``model``): the engine must be it (None: a
    #: world not made yet, a prompt's or a cue's).
    models: tuple[str | None, str | None] = (None, None)

    def position(self, index: int) -> float:
        """Frame ``index``'s place between the worlds (0 … 1)."""
        return index / (self.frames - 1)

    def describe(self) -> dict[str, Any]:
        """What the morph's folder and ``meta.json`` say of it."""
        return {
            "from": self.from_job,
            "to": self.to_job if self.to_job is not None else self.second.prompt,
            "to_seed": self.second.seed,
            "frames": self.frames,
            "seconds": self.seconds,
        }


def morph_request(
    writer: TextureWriter, from_job: str, to: str, options: dict[str, Any], engine: EngineLike | None
) -> MorphRequest:
    """The morph from job ``from_job`` to job or prompt ``to``; UnknownJob, WrongModel or BadArguments
    (naming the value) now, when it cannot run."""
    frames = options.get("frames", DEFAULT_FRAMES)
    if not FRAMES_RANGE[0] <= frames <= FRAMES_RANGE[1]:
        raise BadArguments(
            f"a morph of {frames} frames: allowed {FRAMES_RANGE[0]}..{FRAMES_RANGE[1]} (both worlds count)"
        )
    seconds = float(options.get("seconds", DEFAULT_SECONDS))
    if not SECONDS_RANGE[0] <= seconds <= SECONDS_RANGE[1]:
        raise BadArguments(f"a morph lasting {seconds:g} s: allowed {SECONDS_RANGE[0]:g}..{SECONDS_RANGE[1]:g} s")
    first, first_model = _world(writer, from_job, "first")
    if JOB_ID_RE.match(to):
        if "seed" in options:
            raise BadArguments(f"option 'seed' is for a prompt's world; {to} has its own seed")
        second, second_model = _world(writer, to, "second")
        to_job: str | None = to
        if second_model != first_model:
            raise WrongModel(
                f"job {from_job} was made by {first_model!r} and job {to} by {second_model!r}; a morph runs "
                "between two worlds of one model"
            )
    else:
        if not to.strip():
            raise BadArguments("/ldm3d/morph: the second world is empty; give a job id or a prompt")
        seed = options.get("seed", -1)
        if not -1 <= seed <= SEED_MAX:
            raise BadArguments(f"seed {seed} is out of range; allowed 0..{SEED_MAX}, or -1 for a random one")
        seed = secrets.randbelow(SEED_MAX + 1) if seed == -1 else seed
        second = GenerateRequest(
            prompt=to, negative_prompt=first.negative_prompt, seed=seed, steps=first.steps, guidance=first.guidance,
            width=first.width, height=first.height, scheduler=first.scheduler, seamless=first.seamless,
            sampling=first.sampling,
        )  # fmt: skip
        to_job, second_model = None, None
    request = MorphRequest(first, second, frames, seconds, from_job, to_job, (first_model, second_model))
    if engine is not None:
        check_engine(request, engine)
    return request


def check_engine(request: MorphRequest, engine: EngineLike) -> None:
    """BadArguments (or WrongModel) unless ``engine`` can run the morph: the worlds' model, one size…"""
    for job, model in zip((request.from_job, request.to_job), request.models, strict=True):
        if model is not None and model != engine.model_id:
            raise WrongModel(
                f"job {job} was made by {model!r}; this bridge runs {engine.model_id!r}: a morph runs on the "
                "model that made its worlds"
            )
    try:
        check_morph(engine.resolve(request.first), engine.resolve(request.second), 0.0)
    except EngineError as exc:
        raise BadArguments(str(exc)) from None


def _world(writer: TextureWriter, job_id: str, which: str) -> tuple[GenerateRequest, str]:
    """The text request that made job ``job_id`` (from its ``meta.json``) and the model that ran it."""
    found = writer.find_with_meta(job_id)
    if found is None:
        raise UnknownJob(f"no finished job {job_id} in {writer.root} for the {which} world of the morph")
    meta = found[1]
    if meta.get("mode") != "text":
        raise BadArguments(
            f"job {job_id} is a {meta.get('mode', 'unknown')} job; a morph runs between worlds made from text"
        )
    try:
        request = GenerateRequest(
            prompt=str(meta["prompt"]), negative_prompt=str(meta.get("negative", "")), seed=int(meta["seed"]),
            steps=int(meta["steps"]), guidance=float(meta["guidance"]), width=int(meta["width"]),
            height=int(meta["height"]), scheduler=str(meta["scheduler"]), seamless=bool(meta["seamless"]),
            sampling=str(meta.get("sampling", "quality")),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise BadArguments(
            f"job {job_id}'s meta.json does not say how it was made ({exc}); it cannot be morphed"
        ) from None
    return request, str(meta.get("model", ""))
