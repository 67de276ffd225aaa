"""A morph's frames on disk: ``morphs/<morph id>/`` in the output folder.

Each frame is a folder ``NNNN/`` (``rgb`` and ``depth`` in the job's format, ``meta.json`` with its
place ``t`` between the worlds), written under a staging name and renamed whole, as a job's folder
is. After each frame, ``morph.json`` (the manifest: the morph, how long it plays, every frame written
so far, ``complete`` once all are) is replaced atomically, so a client can follow a morph while it
renders. The morph's own job folder (``<morph id>/``, the last frame: the world it arrives at) is
written by the writer thread after the last frame, as any job's is, and pruned with it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bridge.output.writer import MORPHS_FOLDER, JobFiles, TextureWriter, write_json_atomic
from ldm3d_engine.types import RGBDResult

MANIFEST = "morph.json"


class MorphFrames:
    """Writes the frames of the morphs being rendered (used by the writer thread only)."""

    def __init__(self, writer: TextureWriter) -> None:
        self._writer = writer
        self._written: dict[str, list[dict[str, Any]]] = {}

    def folder(self, morph_id: str) -> Path:
        return self._writer.root / MORPHS_FOLDER / morph_id

    def manifest(self, morph_id: str) -> str:
        """The manifest's path as the clients name it."""
        return self._writer.announced(self.folder(morph_id) / MANIFEST)

    def write(
        self, morph_id: str, index: int, t: float, result: RGBDResult, info: dict[str, Any], fmt: str | None
    ) -> JobFiles:
        """Write frame ``index`` (at ``t``) and the manifest; WriteFailed when the disk refuses."""
        parent = self.folder(morph_id)
        parent.mkdir(parents=True, exist_ok=True)
        name = f"{index:04d}"
        shutil.rmtree(parent / name, ignore_errors=True)  # a frame rendered again (after out-of-memory)
        files, _ = self._writer.write_folder(parent, name, result, {"morph_id": morph_id, "frame": index, "t": t}, fmt)
        written = [f for f in self._written.setdefault(morph_id, []) if f["index"] != index]
        written.append(
            {"index": index, "t": round(t, 6), "rgb": files.announced(files.rgb), "depth": files.announced(files.depth)}
        )
        self._written[morph_id] = written
        frames = int(info["frames"])
        write_json_atomic(
            parent / MANIFEST,
            {
                "morph_id": morph_id,
                **info,
                "frame_seconds": float(info["seconds"]) / (frames - 1),
                "complete": len(written) == frames,
                "written": written,
            },
        )
        return files

    def complete(self, morph_id: str) -> tuple[float, list[dict[str, Any]]] | None:
        """A complete morph's seconds and frames (its manifest's ``written``, in order), or None: no
        morph by that id, not complete, or a manifest that does not read."""
        try:
            manifest = json.loads((self.folder(morph_id) / MANIFEST).read_text(encoding="utf-8"))
            if manifest.get("complete") is not True:
                return None
            return float(manifest["seconds"]), sorted(manifest["written"], key=lambda f: int(f["index"]))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def finish(self, morph_id: str) -> None:
        """The morph's job folder is written: forget its frames (they stay on disk)."""
        self._written.pop(morph_id, None)

    def discard(self, morph_id: str) -> None:
        """A morph that ended without arriving (cancelled, failed): its frames are removed."""
        self._written.pop(morph_id, None)
        shutil.rmtree(self.folder(morph_id), ignore_errors=True)
