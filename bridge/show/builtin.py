"""The last-resort world: what a display shows when a show has nothing else to send.

A brand-new install (no scene rendered, no job finished) or a show whose fallback was never
rendered would otherwise leave a dome black after a restart. The show desk writes this world
into the scene library's folder the first time it needs it (once; the copy is kept; writing it
takes a fraction of a second, and a bridge that never runs a show leaves no trace of it): a
neutral grey gradient (light overhead, dark underfoot, so up and down still read) with flat
depth, which TouchDesigner shows as a plain, undisplaced sphere.

Its id looks like a job id (``00000000-000000-000-0000``, so ``/ldm3d/recall`` and the folder
contract take it as any scene) and sorts before every real one; its ``meta.json`` says
``"builtin": true`` and carries a scene key no cue can have.
"""

from __future__ import annotations

import logging

import numpy as np

from bridge.errors import WriteFailed
from bridge.output.writer import JobFiles, TextureWriter
from ldm3d_engine.types import ResolvedRequest, RGBDResult, Timings

logger = logging.getLogger(__name__)

BUILTIN_ID = "00000000-000000-000-0000"
BUILTIN_KEY = "builtin-world-1"
#: 2:1, as an equirectangular panorama; small (the gradient has no detail to keep).
SIZE = (1024, 512)
#: Flat depth: half way, the same everywhere (65535 = nearest).
DEPTH = 0.5


def builtin_result(width: int = SIZE[0], height: int = SIZE[1]) -> RGBDResult:
    """The gradient and its flat depth, as a result the texture writer writes like any other."""
    rows = np.linspace(200.0, 56.0, height, dtype=np.float32)  # top (overhead) light → bottom dark
    rgb = np.repeat(np.repeat(rows[:, None, None], width, axis=1), 3, axis=2).round().astype(np.uint8)
    depth_float = np.full((height, width), DEPTH, dtype=np.float32)
    depth = np.full((height, width), round(DEPTH * 65535), dtype=np.uint16)
    request = ResolvedRequest(
        prompt="", negative_prompt="", seed=0, steps=0, guidance=0.0, width=width, height=height,
        scheduler="none", seamless=True, mode="builtin",
    )  # fmt: skip
    return RGBDResult(
        rgb=rgb, depth=depth, depth_float=depth_float, request=request, prompt_used="", prompt_truncated=False,
        negative_truncated=False, model_id="builtin", preset="builtin", device="none", dtype="uint8",
        depth_layout="rgbd4", timings=Timings(0.0, 0.0, 0.0), safety="builtin",
    )  # fmt: skip


def builtin_world(writer: TextureWriter) -> JobFiles | None:
    """The built-in world's files, written first if the folder lacks them; None (logged) when it
    cannot be written (a read-only or full disk: the bridge goes on without it)."""
    files = writer.find(BUILTIN_ID)
    if files is not None:
        return files
    try:
        files = writer.write_scene(BUILTIN_ID, builtin_result(), {"scene_key": BUILTIN_KEY, "builtin": True})
    except WriteFailed as exc:
        logger.warning("could not write the built-in world: %s", exc)
        return None
    logger.info("wrote the built-in world (a grey gradient, flat depth) to %s", files.folder)
    return files
