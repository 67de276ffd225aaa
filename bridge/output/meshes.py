"""Text → 3D objects on disk: ``objects/<job id>/`` with ``mesh.obj``, ``mesh.glb`` and ``meta.json``.

Both mesh files are written by our own code (no mesh library at run time): an OBJ with vertex
colours (``v x y z r g b``, colours 0..1, faces 1-based) and a binary glTF 2.0 (one mesh, one
node; ``POSITION`` float32 with its min/max, ``COLOR_0`` as normalized unsigned bytes, indices
uint32; chunks padded to 4 bytes). The folder is written under a staging name and renamed whole,
as a job's folder is; it lives under ``objects/`` so the world jobs' listing, ``latest.json`` and
``/ldm3d/recall`` never see it, and the newest ``keep`` objects are kept.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bridge.output.job_ids import JOB_ID_RE
from bridge.output.writer import (
    OWN_STAGING,
    STAGING_PREFIX,
    JobFiles,
    TextureWriter,
    announce_path,
    package_versions,
    write_file,
    write_folder_whole,
)
from bridge.placement import DEFAULT_PLACEMENT, Placement
from ldm3d_engine.object_types import MeshResult

logger = logging.getLogger(__name__)

#: Where object jobs are written, one folder per job, under the output root.
OBJECTS_FOLDER = "objects"
#: A show's scene with a cue's object holds it in this subfolder (mesh.obj, mesh.glb, meta.json).
SCENE_OBJECT_FOLDER = "object"
_GLB_MAGIC = 0x46546C67  # "glTF"
_CHUNK_JSON = 0x4E4F534A  # "JSON"
_CHUNK_BIN = 0x004E4942  # "BIN\0"
_FLOAT, _UBYTE, _UINT = 5126, 5121, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _checked(
    vertices: npt.NDArray[Any], faces: npt.NDArray[Any], colors: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    v = np.ascontiguousarray(vertices, dtype="<f4")
    f = np.ascontiguousarray(faces)
    c = np.ascontiguousarray(colors, dtype=np.uint8)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be N×3, got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be M×3, got shape {f.shape}")
    if c.shape != v.shape:
        raise ValueError(f"colours must be N×3 like the vertices {v.shape}, got shape {c.shape}")
    if f.size and (int(f.min()) < 0 or int(f.max()) >= len(v)):
        raise ValueError(f"faces name vertices {int(f.min())}..{int(f.max())}, there are {len(v)}")
    return v, np.ascontiguousarray(f, dtype="<u4"), c


def obj_bytes(vertices: npt.NDArray[Any], faces: npt.NDArray[Any], colors: npt.NDArray[Any]) -> bytes:
    """An OBJ: ``v x y z r g b`` (colours 0..1) for each vertex, then ``f a b c`` (1-based)."""
    v, f, c = _checked(vertices, faces, colors)
    out = io.StringIO()
    out.write("# ldm3d-bridge object: vertex colours as v x y z r g b (0..1)\n")
    rows = np.concatenate([v.astype(np.float64), c.astype(np.float64) / 255.0], axis=1)
    np.savetxt(out, rows, fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
    np.savetxt(out, f.astype(np.int64) + 1, fmt="f %d %d %d")
    return out.getvalue().encode("ascii")


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def glb_bytes(vertices: npt.NDArray[Any], faces: npt.NDArray[Any], colors: npt.NDArray[Any]) -> bytes:
    """A binary glTF 2.0: one mesh of triangles, one node; positions, vertex colours, uint32 indices."""
    v, f, c = _checked(vertices, faces, colors)
    n = len(v)
    positions = v.tobytes()
    rgba = np.concatenate([c, np.full((n, 1), 255, np.uint8)], axis=1).tobytes()  # 4 bytes a vertex: aligned
    indices = f.reshape(-1).tobytes()
    views, offset, blob = [], 0, b""
    for data, target in ((positions, _ARRAY_BUFFER), (rgba, _ARRAY_BUFFER), (indices, _ELEMENT_ARRAY_BUFFER)):
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": target})
        blob += _pad(data, b"\0")
        offset = len(blob)
    lo = v.min(axis=0).tolist() if n else [0.0, 0.0, 0.0]
    hi = v.max(axis=0).tolist() if n else [0.0, 0.0, 0.0]
    gltf = {
        "asset": {"version": "2.0", "generator": "ldm3d-bridge"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "object"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "indices": 2, "mode": 4}]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": views,
        "accessors": [
            {"bufferView": 0, "componentType": _FLOAT, "count": n, "type": "VEC3", "min": lo, "max": hi},
            {"bufferView": 1, "componentType": _UBYTE, "normalized": True, "count": n, "type": "VEC4"},
            {"bufferView": 2, "componentType": _UINT, "count": int(f.size), "type": "SCALAR"},
        ],
    }
    text = _pad(json.dumps(gltf, separators=(",", ":")).encode(), b" ")
    total = 12 + 8 + len(text) + 8 + len(blob)
    return b"".join(
        (
            struct.pack("<III", _GLB_MAGIC, 2, total),
            struct.pack("<II", len(text), _CHUNK_JSON),
            text,
            struct.pack("<II", len(blob), _CHUNK_BIN),
            blob,
        )
    )


@dataclass(frozen=True)
class ObjectFiles:
    """An object job's folder and its files, as written here."""

    job_id: str
    folder: Path
    obj: Path
    glb: Path
    meta: Path
    seed: int
    #: Where the object stands in the world (recorded in meta.json, announced with the files).
    placement: Placement = DEFAULT_PLACEMENT
    #: The output root as the clients name it (``announce_root``), or None: the paths as they are here.
    announce: str | None = None

    def announced(self, path: Path) -> str:
        """``path`` as the clients must open it (under ``announce`` when one is set)."""
        if self.announce is None:
            return str(path)
        return announce_path(self.announce, path.relative_to(self.folder.parent.parent))

    def ready_args(self) -> tuple[str, str, str, float, float, float, float, float]:
        """The arguments of ``/ldm3d/object/ready``: the job id, the OBJ, the GLB, then the placement
        (yaw, pitch, distance, size, turn)."""
        yaw, pitch, distance, size, turn = self.placement.args()
        return (self.job_id, self.announced(self.obj), self.announced(self.glb), yaw, pitch, distance, size, turn)


class ObjectWriter:
    """Writes object jobs under ``<output root>/objects/`` (the writer thread's, or the CLI's)."""

    def __init__(self, writer: TextureWriter) -> None:
        self._writer = writer
        self._versions = package_versions()

    def prepare(self) -> None:
        """Remove this bridge's staging folders left in ``objects/`` by a crashed run (nothing else)."""
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return
        for entry in entries:
            if OWN_STAGING.match(entry.name) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    @property
    def root(self) -> Path:
        return self._writer.root / OBJECTS_FOLDER

    def write(
        self,
        job_id: str,
        result: MeshResult,
        meta_extra: dict[str, Any] | None = None,
        placement: Placement = DEFAULT_PLACEMENT,
    ) -> ObjectFiles:
        """Write ``objects/<job_id>/`` whole (WriteFailed when the disk refuses), then prune old ones."""
        t0 = time.perf_counter()
        fill = partial(self._files, job_id=job_id, result=result, placement=placement, extra=meta_extra or {}, t0=t0)
        final = write_folder_whole(self.root, job_id, fill, "object")
        self._prune(job_id)
        return ObjectFiles(
            job_id,
            final,
            final / "mesh.obj",
            final / "mesh.glb",
            final / "meta.json",
            result.seed,
            placement,
            self._writer.announce_root,
        )

    def write_into(self, folder: Path, job_id: str, result: MeshResult, placement: Placement) -> None:
        """Write the object's files into ``folder/object/`` (a scene's staging folder, renamed whole by
        its writer: OSError propagates to it)."""
        inner = folder / SCENE_OBJECT_FOLDER
        inner.mkdir()
        self._files(inner, job_id, result, placement, {}, time.perf_counter())

    def _files(
        self, folder: Path, job_id: str, result: MeshResult, placement: Placement, extra: dict[str, Any], t0: float
    ) -> None:
        obj = obj_bytes(result.vertices, result.faces, result.colors)
        glb = glb_bytes(result.vertices, result.faces, result.colors)
        write_file(folder / "mesh.obj", lambda f: f.write(obj))
        write_file(folder / "mesh.glb", lambda f: f.write(glb))
        meta = self._meta(job_id, result, time.perf_counter() - t0, {**extra, "placement": placement.as_dict()})
        write_file(folder / "meta.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))

    def _meta(self, job_id: str, r: MeshResult, write_s: float, extra: dict[str, Any]) -> dict[str, Any]:
        req, t = r.request, r.timings
        return {
            "kind": "object",
            "job_id": job_id,
            "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "prompt": req.prompt,
            "seed": req.seed,
            "steps": req.steps,
            "guidance": req.guidance,
            "resolution": req.resolution,
            "model": r.model_id,
            "licence": r.licence,
            "device": r.device,
            "dtype": r.dtype,
            "vertices": len(r.vertices),
            "faces": len(r.faces),
            "frame": "centred on the origin, largest extent about 1, +Y up, its front toward +Z (glTF)",
            "timings": {
                "text_encoding_s": round(t.text_encoding_s, 4),
                "denoising_s": round(t.denoising_s, 4),
                "decoding_s": round(t.decoding_s, 4),
                "meshing_s": round(t.meshing_s, 4),
                "writing_s": round(write_s, 4),
            },
            "files": {"obj": "mesh.obj", "glb": "mesh.glb"},
            "versions": self._versions,
            **extra,
        }

    def job_ids(self) -> list[str]:
        """Object folders' ids, oldest first."""
        try:
            return sorted(e.name for e in self.root.iterdir() if JOB_ID_RE.match(e.name) and e.is_dir())
        except OSError:
            return []

    def _prune(self, newest: str) -> None:
        ids = self.job_ids()
        for job_id in ids[: max(0, len(ids) - self._writer.keep)]:
            if job_id == newest:
                continue
            doomed = self.root / f"{STAGING_PREFIX}deleted-{job_id}"
            try:
                os.replace(self.root / job_id, doomed)
            except OSError as exc:
                logger.warning("could not remove old object %s: %s", job_id, exc)
                continue
            shutil.rmtree(doomed, ignore_errors=True)


class BadGlb(ValueError):
    """A ``.glb`` that is not the layout :func:`glb_bytes` writes; the message names the file and what is wrong."""


def read_glb(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    """(vertices N×3, faces M×3, colours N×3 sRGB) of an object's ``mesh.glb`` as :func:`glb_bytes`
    writes it: the inverse of that function. Another layout raises :class:`BadGlb` naming the file."""
    data = path.read_bytes()

    def bad(why: str) -> BadGlb:
        return BadGlb(f"{path}: {why}; not a mesh.glb as ldm3d-bridge writes it (binary glTF 2.0, one mesh)")

    if len(data) < 28:
        raise bad(f"{len(data)} bytes is too short for a binary glTF")
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC:
        raise bad("no glTF magic at its start")
    if version != 2:
        raise bad(f"glTF container version {version}, not 2")
    if total != len(data):
        raise bad(f"its header says {total} bytes, the file has {len(data)}")
    json_length, json_type = struct.unpack_from("<II", data, 12)
    if json_type != _CHUNK_JSON or 20 + json_length + 8 > total:
        raise bad("the first chunk is not a JSON chunk followed by another")
    bin_at = 20 + json_length
    bin_length, bin_type = struct.unpack_from("<II", data, bin_at)
    if bin_type != _CHUNK_BIN or bin_at + 8 + bin_length > total:
        raise bad("the second chunk is not a BIN chunk inside the file")
    blob = data[bin_at + 8 : bin_at + 8 + bin_length]
    try:
        gltf = json.loads(data[20:bin_at].decode("utf-8"))
        (mesh,) = gltf["meshes"]
        (primitive,) = mesh["primitives"]
        attributes = primitive["attributes"]
        accessors, views = gltf["accessors"], gltf["bufferViews"]
        if primitive.get("mode", 4) != 4:
            raise bad(f"primitive mode {primitive['mode']}, not triangles (4)")

        def array(index: int, component: int, kind: str, width: int, dtype: str) -> npt.NDArray[Any]:
            accessor = accessors[index]
            if accessor["componentType"] != component or accessor["type"] != kind:
                raise bad(f"accessor {index} is {accessor['componentType']} {accessor['type']}, not {component} {kind}")
            view = views[accessor["bufferView"]]
            start = int(view.get("byteOffset", 0)) + int(accessor.get("byteOffset", 0))
            count = int(accessor["count"])
            size = count * width * np.dtype(dtype).itemsize
            if view.get("byteStride", 0) not in (0, width * np.dtype(dtype).itemsize):
                raise bad(f"buffer view {accessor['bufferView']} is interleaved")
            if start < 0 or start + size > len(blob):
                raise bad(f"accessor {index} reaches past the BIN chunk")
            return np.frombuffer(blob, dtype=dtype, count=count * width, offset=start).reshape(count, width)

        vertices = array(attributes["POSITION"], _FLOAT, "VEC3", 3, "<f4")
        rgba = array(attributes["COLOR_0"], _UBYTE, "VEC4", 4, "u1")
        indices = array(primitive["indices"], _UINT, "SCALAR", 1, "<u4").reshape(-1)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, BadGlb):
            raise
        raise bad(f"its JSON chunk does not describe one mesh of POSITION, COLOR_0 and indices ({exc!r})") from None
    if len(rgba) != len(vertices) or len(indices) % 3:
        raise bad(f"{len(vertices)} positions, {len(rgba)} colours and {len(indices)} indices do not make triangles")
    if indices.size and int(indices.max()) >= len(vertices):
        raise bad(f"an index names vertex {int(indices.max())}, there are {len(vertices)}")
    return vertices.astype(np.float32), indices.reshape(-1, 3).copy(), rgba[:, :3].copy()


def scene_object_args(
    files: JobFiles, placement: Placement
) -> tuple[str, str, str, float, float, float, float, float] | None:
    """``/ldm3d/object/ready``'s arguments for the object inside a scene (None: the scene holds none):
    the scene's id, its ``object/mesh.obj`` and ``object/mesh.glb``, then ``placement`` (the cue's)."""
    inner = files.folder / SCENE_OBJECT_FOLDER
    if not (inner / "mesh.glb").is_file():
        return None
    yaw, pitch, distance, size, turn = placement.args()
    obj, glb = files.announced(inner / "mesh.obj"), files.announced(inner / "mesh.glb")
    return (files.job_id, obj, glb, yaw, pitch, distance, size, turn)
