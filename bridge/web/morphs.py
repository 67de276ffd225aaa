"""A morph's frames for the operator page: its manifest and each frame's textures, at ``/morph/…``.

A morph (``/ldm3d/morph``) writes its frames to ``morphs/<morph id>/NNNN/`` in the output folder and
follows each with its manifest ``morphs/<morph id>/morph.json`` (:mod:`bridge.output.sequences`). The
page plays them from the texture URLs this module offers: the same content-addressed ``/t/…``
versions as a finished world's (:class:`~bridge.web.textures.TextureStore`: JPEG RGB, exact 16-bit
depth), so a frame is derived, cached and served as a world is.

=============================  ===============================================================
route                          answer
=============================  ===============================================================
``GET /morph/<morph id>``      the manifest for the page: ``morph_id``, ``from``, ``to``,
                               ``frames``, ``seconds``, ``frame_seconds``, ``complete`` and
                               ``written`` (each frame written so far: ``index``, ``t``,
                               ``width``, ``height``, ``rgb``, ``thumb``, ``depth`` URLs)
``GET /morph/<id>/<index>``    one frame, as in ``written``
=============================  ===============================================================

Nothing a request names reaches a path unchecked: the id must be a job id (:data:`JOB_ID_RE`), the
index a decimal number of at most 4 digits (400 otherwise, naming the value), and the index must
be one the manifest lists as written (404 otherwise, as for a morph that does not exist or was
pruned). The frame's folder is built from the checked values and must lie inside the morphs folder.
Reads files: call off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.errors import BadArguments, UnknownJob
from bridge.output.formats import texture
from bridge.output.job_ids import JOB_ID_RE
from bridge.output.sequences import MANIFEST
from bridge.output.writer import MORPHS_FOLDER, BadMeta, read_meta
from bridge.web.textures import TextureStore

#: A frame's index in a URL: 1 to 4 decimal digits (a morph has at most 240 frames; folders are NNNN).
INDEX_RE = re.compile(r"\A[0-9]{1,4}\Z")
#: What the page gets of the manifest besides its frames.
MANIFEST_KEYS = ("morph_id", "from", "to", "to_seed", "frames", "seconds", "frame_seconds", "complete")


class MorphFolders:
    """The morphs of one output folder, as the page sees them. Thread-safe (reads only)."""

    def __init__(self, output: Path, textures: TextureStore) -> None:
        self.root = Path(output).resolve() / MORPHS_FOLDER
        self._textures = textures

    def has(self, morph_id: str) -> bool:
        """Whether ``morph_id`` is a morph whose manifest is there (a history entry the page can play)."""
        return bool(JOB_ID_RE.match(morph_id)) and (self.root / morph_id / MANIFEST).is_file()

    def manifest(self, morph_id: str) -> dict[str, Any]:
        """``morph.json`` as written; BadArguments for an id that is not a job id, UnknownJob when there
        is no such morph (never was, pruned, or its manifest does not read)."""
        if not JOB_ID_RE.match(morph_id):
            raise BadArguments(f"{morph_id!r} is not a morph id (a job id such as 20261207-101500-000-0001)")
        try:
            data = json.loads((self.root / morph_id / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            raise UnknownJob(f"no morph {morph_id} (never made, or pruned)") from None
        if not isinstance(data, dict) or not isinstance(data.get("written"), list):
            raise UnknownJob(f"no morph {morph_id}: its manifest is not one the bridge wrote")
        return data

    def offer(self, morph_id: str) -> dict[str, Any]:
        """The manifest for the page: its values and every written frame with its texture URLs."""
        manifest = self.manifest(morph_id)
        written = [self._frame(morph_id, entry) for entry in manifest["written"] if isinstance(entry, dict)]
        return {**{k: manifest.get(k) for k in MANIFEST_KEYS}, "written": [f for f in written if f is not None]}

    def offer_frame(self, morph_id: str, index: str | int) -> dict[str, Any]:
        """Frame ``index`` of ``morph_id`` with its texture URLs; BadArguments for an index that is not
        1 to 4 digits, UnknownJob for a morph or a frame the manifest does not list."""
        text = str(index)
        if not INDEX_RE.match(text):
            raise BadArguments(f"frame {text!r} is not a frame number (0, 1, 2 …)")
        number = int(text)
        manifest = self.manifest(morph_id)
        for entry in manifest["written"]:
            if isinstance(entry, dict) and entry.get("index") == number:
                frame = self._frame(morph_id, entry)
                if frame is not None:
                    return frame
        raise UnknownJob(f"morph {morph_id} has no frame {number} (written: {_indices(manifest)})")

    def _frame(self, morph_id: str, entry: dict[str, Any]) -> dict[str, Any] | None:
        """A manifest's entry with its texture URLs, or None when its folder does not read."""
        index = entry.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 9999:
            return None
        folder = self.root / morph_id / f"{index:04d}"
        try:
            if not folder.resolve().is_relative_to(self.root.resolve()):  # a link out of the morphs folder
                return None
            meta = read_meta(folder)
            rgb, depth = texture(folder, "rgb"), texture(folder, "depth")
            sources = (("rgb", rgb), ("thumb", rgb), ("depth", depth))
            urls = {kind: self._textures.url(path, kind) for kind, path in sources}
        except (OSError, BadMeta):  # pruned meanwhile, or damaged
            return None
        t = entry.get("t")
        return {
            "morph_id": morph_id,
            "index": index,
            "t": t if isinstance(t, int | float) else None,
            "width": meta["width"],
            "height": meta["height"],
            **urls,
        }


def _indices(manifest: dict[str, Any]) -> str:
    found = [e.get("index") for e in manifest["written"] if isinstance(e, dict)]
    return ", ".join(str(i) for i in found) or "none yet"


def attach(app: web.Application, folders: MorphFolders, pool: Executor) -> None:
    """Serve ``/morph/<id>`` and ``/morph/<id>/<index>`` on ``app``, reading on ``pool``."""

    async def manifest(request: web.Request) -> web.StreamResponse:
        return await _answer(pool, folders.offer, request.match_info["morph_id"])

    async def frame(request: web.Request) -> web.StreamResponse:
        return await _answer(pool, folders.offer_frame, request.match_info["morph_id"], request.match_info["index"])

    app.router.add_get("/morph/{morph_id}", manifest)
    app.router.add_get("/morph/{morph_id}/{index}", frame)


async def _answer(pool: Executor, call: Callable[..., dict[str, Any]], *args: str) -> web.StreamResponse:
    """``call(*args)`` off the loop as JSON (not cached: a morph's manifest grows as it renders); 400 for
    a malformed request, 404 for a morph or frame that is not there, each with its reason."""
    loop = asyncio.get_running_loop()
    try:
        body = await loop.run_in_executor(pool, call, *args)
    except BadArguments as exc:
        return web.Response(status=400, text=f"{exc}\n")
    except UnknownJob as exc:
        return web.Response(status=404, text=f"{exc}\n")
    return web.json_response(body, headers={"Cache-Control": "no-cache"})
