"""``ldm3d-bridge object PROMPT --object-model M``: one text → 3D object job, without a server.

The same request, files and folder as ``/ldm3d/object`` (:mod:`bridge.output.meshes`):
``objects/<job id>/`` in the output folder with ``mesh.obj``, ``mesh.glb`` and ``meta.json``; the
folder's path is printed. The model's licence is said once on stderr when it is loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge.cli.jobs import engine_settings, progress_bar
from bridge.placement import PLACEMENT_RANGES, placement_from
from bridge.settings import load_settings

#: The settings ``object`` takes from its flags (its parser is in :mod:`bridge.cli.args`).
OBJECT_KEYS = ("device", "dtype", "offline", "output")


def cmd_object(args: argparse.Namespace) -> int:
    from bridge.output.job_ids import new_job_id
    from bridge.output.meshes import ObjectWriter
    from bridge.output.writer import TextureWriter
    from ldm3d_engine import load_object_engine
    from ldm3d_engine.object_types import ObjectRequest

    settings = load_settings({k: getattr(args, k, None) for k in OBJECT_KEYS})
    request = ObjectRequest(args.prompt, args.seed, args.steps, args.guidance, args.resolution)
    placement = placement_from({k: getattr(args, k) for k in PLACEMENT_RANGES})  # BadArguments: one line
    writer = TextureWriter(Path(settings.output), keep=settings.keep_jobs)
    writer.prepare()  # a folder held by a running bridge fails before the model loads
    try:
        engine = load_object_engine(engine_settings(settings), args.object_model)
        print(f"ldm3d-bridge: {args.object_model}: licence: {engine.licence}", file=sys.stderr, flush=True)
        engine.resolve_object(request)  # refuse a bad request before the model runs
        result = engine.generate_object(request, on_step=progress_bar)
        objects = ObjectWriter(writer)
        objects.prepare()
        files = objects.write(new_job_id(), result, placement=placement)
    finally:
        writer.close()
    print(files.folder)
    return 0
