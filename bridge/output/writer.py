"""The shared-folder contract: atomic texture files for each job.

A job's files are written into a hidden staging folder next to the job
folders (each file flushed and fsynced), and the staging folder is then
renamed to ``<root>/<job id>``: a job folder appears complete or not at all.
``latest.json`` is replaced the same way (temporary name, fsync, rename).
Old job folders beyond ``keep`` are deleted, never the one ``latest.json``
names. The images are encoded in parallel, in the job's format
(:mod:`bridge.output.formats`: uncompressed TIFF by default, measured the
fastest to write and to read; ``bench/bridge_latency.py``).

Longer than our ~350-line rule on purpose: the folder handoff is one sequence (temporary folder,
fsync, rename, ``latest.json``, retention) whose order is the guarantee that no reader ever
sees half a texture.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bridge.errors import OutputParentMissing, WriteFailed
from bridge.output.formats import DEFAULT_FORMAT, Format, check_format, encode_jpeg, texture
from bridge.output.job_ids import JOB_ID_PATTERN, JOB_ID_RE
from bridge.output.lock import FolderLock
from ldm3d_engine.types import RGBDResult

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
#: The folder of a show's scene library, under the output root.
SCENES_FOLDER = "scenes"
#: Where a morph's frames are written, one folder per morph (pruned with the morph's job folder).
MORPHS_FOLDER = "morphs"
#: What start-up clean-up may remove: only names this bridge itself creates (staging folders of job
#: folders being written or deleted; the object writer's too).
OWN_STAGING = re.compile(rf"\A{re.escape(STAGING_PREFIX)}(deleted-)?{JOB_ID_PATTERN}\Z")
_OWN_TMP = re.compile(r"\A\.ldm3d-[A-Za-z0-9_.-]+\.[0-9]+\.tmp\Z")
DEPTH_MEANING = "relative inverse depth (disparity) from DPT as learned by LDM3D: larger = nearer"


@dataclass(frozen=True)
class JobFiles:
    job_id: str
    folder: Path
    rgb: Path
    depth: Path
    meta: Path
    width: int
    height: int
    seed: int
    #: The output root as the clients name it (``announce_root``), or None: the paths as they are here.
    announce: str | None = None
    #: Made with seamless wrap (an equirectangular panorama).
    seamless: bool = False

    def announced(self, path: Path) -> str:
        """``path`` as the clients must open it: under ``announce`` (forward slashes) when one is set."""
        if self.announce is None:
            return str(path)
        return announce_path(self.announce, path.relative_to(self.folder.parent))

    def ready_args(self) -> tuple[str, str, str, str, int, int, int]:
        """The arguments of ``/ldm3d/ready`` (paths as the clients name them)."""
        rgb, depth, meta = (self.announced(p) for p in (self.rgb, self.depth, self.meta))
        return (self.job_id, rgb, depth, meta, self.width, self.height, self.seed)


def announce_path(root: str, relative: Path) -> str:
    """``root`` (``Z:/ldm3d-out``, ``//gpu-node/ldm3d-out``, ``/mnt/ldm3d``) + ``relative``, forward slashes."""
    return root.replace("\\", "/").rstrip("/") + "/" + relative.as_posix()


def write_folder_whole(parent: Path, name: str, fill: Callable[[Path], None], what: str) -> Path:
    """``parent/name``, written whole: ``fill`` writes into a staging folder (``STAGING_PREFIX`` +
    name), which is made durable and renamed into place; a reader never sees a half folder. On an
    OSError the staging folder is removed and WriteFailed names ``what`` (a job, an object) and why."""
    final, staging = parent / name, parent / f"{STAGING_PREFIX}{name}"
    try:
        staging.mkdir(parents=True)
        fill(staging)
        fsync_dir(staging)
        os.replace(staging, final)
        fsync_dir(parent)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteFailed(
            f"could not write {what} {name} into {parent}: {exc.strerror or exc} "
            "(is the output folder writable, is the disk full?)"
        ) from exc
    return final


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where folders cannot be opened: Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; its renames are durable enough
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, write: Any) -> None:
    """Write ``path`` with ``write(file)``, flushed and fsynced before it returns."""
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix."""
    tmp = path.with_name(f".ldm3d-{path.name}.{os.getpid()}.tmp")
    try:
        write_file(tmp, lambda f: f.write(json.dumps(data, indent=2).encode()))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def package_versions() -> dict[str, str]:
    """The versions ``meta.json`` records: the bridge's and the model libraries'."""
    out = {}
    for dist in ("ldm3d-bridge", "torch", "diffusers", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


#: What a job folder's meta.json must hold for the bridge to use the folder (whole numbers).
META_REQUIRED = ("width", "height", "seed")


class BadMeta(ValueError):
    """A job folder's ``meta.json`` is not what the bridge wrote: not UTF-8, not JSON, not an
    object, or a required key missing or of the wrong type (a folder copied in by hand, a disk
    error, another program's file)."""


def read_meta(folder: Path) -> dict[str, Any]:
    """``folder/meta.json`` as a dict whose ``width``, ``height`` (positive) and ``seed`` are ints.
    FileNotFoundError (or NotADirectoryError) when there is none; other OSErrors as they come;
    :class:`BadMeta` when it is there but unusable."""
    raw = (folder / "meta.json").read_bytes()
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadMeta(f"not UTF-8: byte {exc.start} is 0x{raw[exc.start]:02x}") from None
    except ValueError as exc:  # JSONDecodeError
        raise BadMeta(f"not JSON: {exc}") from None
    except RecursionError:  # nested deeper than the parser goes
        raise BadMeta("not JSON: nested too deep") from None
    if not isinstance(meta, dict):
        raise BadMeta(f"it holds {_kind(meta)}, not an object")
    for key in META_REQUIRED:
        if key not in meta:
            raise BadMeta(f"no {key!r}")
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadMeta(f"{key!r} is {_kind(value)}, not a whole number")
        if key != "seed" and value <= 0:
            raise BadMeta(f"{key!r} is {value}, not a size")
    return meta


def _kind(value: Any) -> str:
    """What a JSON value is, for a log line: ``a list``, ``a string``, ``null``…"""
    if value is None:
        return "null"
    names = {bool: "a boolean", dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class TextureWriter:
    """Writes job folders under ``root``. One writer per output folder."""

    def __init__(
        self,
        root: Path,
        *,
        fmt: str = DEFAULT_FORMAT,
        jpeg: bool = False,
        exr: bool = False,
        keep: int = 200,
        announce_root: str | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 job, got {keep}")
        self.root = Path(root).resolve()
        self.format = check_format(fmt)
        self.jpeg = jpeg
        self.exr = exr
        self.keep = keep
        #: The output root as clients on other machines name it; every announced path uses it.
        self.announce_root = announce_root
        if exr:
            try:
                import OpenEXR  # noqa: F401
            except ImportError:
                raise ValueError("depth.exr needs the OpenEXR package: pip install 'ldm3d-bridge[exr]'") from None
        self._versions = package_versions()
        self._lock = FolderLock(self.root)
        #: Files logged as unreadable (each once), shared by every reading thread.
        self._bad_logged: set[str] = set()
        self._bad_lock = threading.Lock()

    def prepare(self) -> None:
        """Create the root, take its lock (FolderInUse if another bridge has it), and remove this
        bridge's own leftovers of a crashed run: staging folders and temporary files, nothing else."""
        if not self.root.is_dir():
            if not self.root.parent.is_dir():
                raise OutputParentMissing(
                    f"output folder {self.root}: {self.root.parent} does not exist (a typo?); create it first "
                    "or choose another --output"
                )
            self.root.mkdir(exist_ok=True)
            logger.info("created the output folder %s", self.root)
        self._lock.acquire()
        for entry in self.root.iterdir():
            if OWN_STAGING.match(entry.name) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif _OWN_TMP.match(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)

    def announced(self, path: Path) -> str:
        """``path`` (in the output folder) as the clients must open it (see ``announce_root``)."""
        return (
            str(path) if self.announce_root is None else announce_path(self.announce_root, path.relative_to(self.root))
        )

    def close(self) -> None:
        """Let the folder go (another bridge may take it)."""
        self._lock.release()

    def write(
        self, job_id: str, result: RGBDResult, meta_extra: dict[str, Any] | None = None, fmt: str | None = None
    ) -> JobFiles:
        """Write every file of one job (in ``fmt``, else the writer's format); only then does
        ``<root>/<job_id>`` exist. Then ``latest.json`` names it, and old jobs are pruned."""
        job, files = self.write_folder(self.root, job_id, result, meta_extra, fmt)
        try:
            write_json_atomic(self.root / "latest.json", self._latest(job, files))
        except OSError as exc:
            raise WriteFailed(f"could not update {self.root / 'latest.json'}: {exc.strerror or exc}") from exc
        self._prune(job_id)
        return job

    @property
    def scenes(self) -> Path:
        """Where a show's scenes live: never pruned, never named by latest.json."""
        return self.root / SCENES_FOLDER

    def write_scene(
        self,
        scene_id: str,
        result: RGBDResult,
        meta_extra: dict[str, Any] | None = None,
        inside: Callable[[Path], None] | None = None,
    ) -> JobFiles:
        """Write a scene of a show's library as :meth:`write` writes a job, under ``scenes/``;
        ``inside`` writes more into the staging folder before it is renamed (a cue's object)."""
        self.scenes.mkdir(exist_ok=True)
        return self.write_folder(self.scenes, scene_id, result, meta_extra, None, inside)[0]

    def write_folder(
        self,
        parent: Path,
        job_id: str,
        result: RGBDResult,
        meta_extra: dict[str, Any] | None,
        fmt: str | None,
        inside: Callable[[Path], None] | None = None,
    ) -> tuple[JobFiles, dict[str, str]]:
        """One folder ``parent/job_id`` of textures and ``meta.json``, written under a staging name and
        renamed whole (WriteFailed when it cannot be): a job, a scene, or a morph's frame. ``inside``
        (OSError when it cannot) writes more into the staging folder first."""
        final = parent / job_id
        form = check_format(fmt) if fmt is not None else self.format
        t0 = time.perf_counter()
        files: dict[str, str] = {}

        def fill(staging: Path) -> None:
            files.update(self._write_images(staging, final, result, form))
            meta = self._meta(
                job_id, result, files, time.perf_counter() - t0, {"format": form.name, **(meta_extra or {})}
            )
            write_file(staging / "meta.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))
            if inside is not None:
                inside(staging)

        write_folder_whole(parent, job_id, fill, "job")
        job = JobFiles(
            job_id,
            final,
            final / f"rgb{form.extension}",
            final / f"depth{form.extension}",
            final / "meta.json",
            result.width,
            result.height,
            result.seed,
            self.announce_root,
            result.request.seamless,
        )
        return job, files

    def _write_images(self, staging: Path, final: Path, result: RGBDResult, form: Format) -> dict[str, str]:
        """Encode the images concurrently (zlib, libspng and libjpeg release the GIL), then write them."""
        tasks: dict[str, tuple[str, Callable[[], bytes | None]]] = {
            "rgb": (f"rgb{form.extension}", lambda: form.encode_rgb(result.rgb)),
            "depth": (f"depth{form.extension}", lambda: form.encode_depth(result.depth)),
        }
        if self.jpeg:
            tasks["rgb_jpeg"] = ("rgb.jpg", lambda: encode_jpeg(result.rgb))
        if self.exr:
            tasks["depth_exr"] = ("depth.exr", lambda: _write_exr(staging / "depth.exr", result.depth_float))
        with ThreadPoolExecutor(len(tasks), thread_name_prefix="ldm3d-encode") as pool:
            futures = {key: pool.submit(encode) for key, (_, encode) in tasks.items()}
            encoded = {key: future.result() for key, future in futures.items()}
        files = {}
        for key, (name, _) in tasks.items():
            data = encoded[key]
            if data is not None:
                write_file(staging / name, lambda f, data=data: f.write(data))
            files[key] = self.announced(final / name)
        files["meta"] = self.announced(final / "meta.json")
        return files

    def _meta(
        self, job_id: str, r: RGBDResult, files: dict[str, str], write_s: float, extra: dict[str, Any]
    ) -> dict[str, Any]:
        req = r.request
        return {
            "job_id": job_id,
            "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "prompt": req.prompt,
            "prompt_used": r.prompt_used,
            "prompt_truncated": r.prompt_truncated,
            "negative": req.negative_prompt,
            "negative_truncated": r.negative_truncated,
            "seed": req.seed,
            "model": r.model_id,
            "preset": r.preset,
            "steps": req.steps,
            "guidance": req.guidance,
            "scheduler": req.scheduler,
            "sampling": req.sampling,
            "width": req.width,
            "height": req.height,
            "seamless": req.seamless,
            "mode": req.mode,
            **({"strength": req.strength} if req.strength is not None else {}),
            **({"noise_level": req.noise_level} if req.noise_level is not None else {}),
            **({"depth_source": r.depth_source} if r.depth_source else {}),
            **({"depth_model": r.depth_model, "depth_method": r.depth_method} if r.depth_model else {}),
            **({"prompt_ignored": True} if r.prompt_ignored else {}),
            **({"peak_gpu_memory_mb": r.peak_memory_mb} if r.peak_memory_mb is not None else {}),
            "device": r.device,
            "dtype": r.dtype,
            "safety_check": r.safety,
            "timings": {
                "text_encoding_s": round(r.timings.text_encoding_s, 4),
                "denoising_s": round(r.timings.denoising_s, 4),
                "decoding_s": round(r.timings.decoding_s, 4),
                **({"depth_s": round(r.timings.depth_s, 4)} if r.timings.depth_s else {}),
                **({"safety_s": round(r.timings.safety_s, 4)} if r.timings.safety_s else {}),
                "writing_s": round(write_s, 4),
            },
            "depth": {
                "meaning": DEPTH_MEANING,
                "file": "16-bit grayscale, 65535 = nearest, 0 = farthest",
                "exr": "float32 0..1, 1 = nearest" if self.exr else None,
                "layout": r.depth_layout,
                "min": float(np.min(r.depth_float)),
                "max": float(np.max(r.depth_float)),
            },
            "files": files,
            "versions": self._versions,
            **extra,
        }

    @staticmethod
    def _latest(job: JobFiles, files: dict[str, str]) -> dict[str, Any]:
        return {
            "job_id": job.job_id,
            "folder": job.announced(job.folder),
            **files,
            "width": job.width,
            "height": job.height,
            "seed": job.seed,
        }

    def job_ids(self) -> list[str]:
        """Job folders' ids, oldest first (whether their meta.json reads is :meth:`find`'s business)."""
        try:
            return sorted(e.name for e in self.root.iterdir() if JOB_ID_RE.match(e.name) and e.is_dir())
        except OSError:  # no root (yet), or one this process may not read: no jobs
            return []

    def latest(self) -> dict[str, Any] | None:
        """``latest.json`` as written, or None: missing, or not a JSON object in UTF-8 (logged once)."""
        path = self.root / "latest.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
            self._unreadable(path, _reason(exc))
            return None
        if not isinstance(data, dict):
            self._unreadable(path, f"it holds {_kind(data)}, not an object")
            return None
        return data

    def find(self, job_id: str) -> JobFiles | None:
        """A job written earlier (also by an earlier run of the bridge), or a show's scene; None when
        there is none, or when its ``meta.json`` cannot be read (logged once per folder: skipped)."""
        found = self.find_with_meta(job_id)
        return found[0] if found is not None else None

    def find_with_meta(self, job_id: str) -> tuple[JobFiles, dict[str, Any]] | None:
        """:meth:`find`, and the job's ``meta.json`` (a JSON object, as read once)."""
        if not JOB_ID_RE.match(job_id):
            return None
        for folder in (self.root / job_id, self.scenes / job_id):
            try:
                meta = read_meta(folder)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except (OSError, BadMeta) as exc:
                self._unreadable(folder / "meta.json", _reason(exc))
                continue
            files = JobFiles(
                job_id,
                folder,
                texture(folder, "rgb"),
                texture(folder, "depth"),
                folder / "meta.json",
                meta["width"],
                meta["height"],
                meta["seed"],
                self.announce_root,
                meta.get("seamless") is True,
            )
            return files, meta
        return None

    def unreadable(self, job_id: str) -> str | None:
        """Why job ``job_id``'s folder cannot be used (its ``meta.json`` does not read), or None: it
        reads, or there is no such folder."""
        if not JOB_ID_RE.match(job_id):
            return None
        for folder in (self.root / job_id, self.scenes / job_id):
            try:
                read_meta(folder)
                return None
            except (FileNotFoundError, NotADirectoryError):
                continue
            except (OSError, BadMeta) as exc:
                return _reason(exc)
        return None

    def _unreadable(self, path: Path, reason: str) -> None:
        """Log a file that cannot be read, once per path (a bad folder is seen at every page's hello)."""
        key = str(path)
        with self._bad_lock:
            if key in self._bad_logged:
                return
            if len(self._bad_logged) >= 4096:  # bounded: a folder full of bad ones is logged again, rarely
                self._bad_logged.clear()
            self._bad_logged.add(key)
        logger.warning("skipping %s: it cannot be read (%s)", path, reason)

    def _prune(self, newest: str) -> None:
        ids = self.job_ids()
        if len(ids) <= self.keep:
            return
        for job_id in ids[: len(ids) - self.keep]:
            if job_id == newest:  # latest.json names it (written just before): never delete it
                continue
            # Rename first so a reader never sees a half-deleted folder under a job id.
            doomed = self.root / f"{STAGING_PREFIX}deleted-{job_id}"
            try:
                os.replace(self.root / job_id, doomed)
            except OSError as exc:
                logger.warning("could not remove old job %s: %s", job_id, exc)
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            shutil.rmtree(self.root / MORPHS_FOLDER / job_id, ignore_errors=True)  # a morph's frames go with it


def _write_exr(path: Path, depth: np.ndarray) -> None:
    """float32 depth as a single-channel Z EXR (OpenEXR writes by path; fsync after)."""
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Z": np.ascontiguousarray(depth, dtype=np.float32)}) as exr:
        exr.write(str(path))
    with open(path, "rb+") as again:
        os.fsync(again.fileno())
