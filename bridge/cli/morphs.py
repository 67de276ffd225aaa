"""``ldm3d-bridge morph FROM TO``: the worlds between two, without a server, into the output folder.

The same request, frames and files as ``/ldm3d/morph`` (:mod:`bridge.contract.morphs`,
:mod:`bridge.output.sequences`): ``morphs/<morph id>/NNNN/`` and its ``morph.json``, then the morph's
job folder (the world it arrives at), whose path is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bridge.cli.args import MODEL_KEYS
from bridge.cli.jobs import engine_settings, progress_bar
from bridge.settings import load_settings


def cmd_morph(args: argparse.Namespace) -> int:
    from bridge.contract.morphs import morph_request
    from bridge.output.job_ids import new_job_id
    from bridge.output.sequences import MorphFrames
    from bridge.output.writer import TextureWriter
    from bridge.workers.morphing import morph_frames
    from ldm3d_engine import load_engine
    from ldm3d_engine.types import CancelToken, RGBDResult

    settings = load_settings({k: getattr(args, k, None) for k in MODEL_KEYS})
    writer = TextureWriter(Path(settings.output), fmt=settings.format)
    writer.prepare()  # a folder held by a running bridge fails before anything is read or loaded
    options: dict[str, Any] = {"frames": args.frames, "seconds": args.seconds}
    if args.seed is not None:
        options["seed"] = args.seed
    try:
        request = morph_request(writer, _job_id(args.first), _job_id(args.second), options, None)
        engine = load_engine(engine_settings(settings))
        morph_id = new_job_id()
        frames = MorphFrames(writer)
        info = request.describe()

        def hand(index: int, result: RGBDResult) -> None:
            frames.write(morph_id, index, request.position(index), result, info, None)

        try:
            last = morph_frames(engine, request, progress_bar, CancelToken(), None, hand)()
            frames.write(morph_id, request.frames - 1, 1.0, last, info, None)
            files = writer.write(morph_id, last, {"morph": {**info, "sequence": frames.manifest(morph_id)}})
        except BaseException:
            frames.discard(morph_id)  # nothing half made is left behind
            raise
    finally:
        writer.close()
    print(files.folder)
    return 0


def _job_id(value: str) -> str:
    """A job id, or the path of a job folder (its name is the id); a prompt is kept as it is."""
    looks_like_path = "/" in value or "\\" in value
    return Path(value).name if looks_like_path and Path(value).is_dir() else value
