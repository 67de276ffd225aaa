"""A job's textures as a browser takes them, at content-addressed URLs.

A job folder is never changed once it is complete, but its files may be TIFF (which
browsers do not decode) and a browser reduces a 16-bit PNG to 8 bits before WebGL
sees it. So the page gets versions made for it:

=========  ===============================================  ======================
kind       what                                             URL
=========  ===============================================  ======================
``rgb``    the RGB as JPEG (quality 90)                      ``/t/<key>.jpg``
``thumb``  the RGB 256 pixels wide, JPEG                     ``/t/<key>.jpg``
``depth``  the 16-bit depth, exactly: raw little-endian      ``/t/<key>.u16``
           uint16, rows top to bottom (width × height × 2
           bytes; the page knows the size from the world)
``glb``    an object's ``mesh.glb`` as it is (binary glTF,   ``/t/<key>.glb``
           ``model/gltf-binary``; :mod:`bridge.web.objects`
           hands in only files under ``objects/``)
=========  ===============================================  ======================

``key`` is a SHA-256 of the kind, :data:`VERSION` and the source file's SHA-256: the
same file gives the same URL across restarts, a different file never does, so the
responses are cacheable forever (``immutable``). The store remembers which file a
key stands for (the last :data:`MAX_KEYS`), and keeps the last derived bytes up to
:data:`CACHE_BYTES`. Deriving and hashing read files: the HTTP side calls them off
its event loop.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bridge.errors import BadArguments
from bridge.output.images import read_depth16, read_rgb

#: Part of every key: changing how a kind is derived must change its URLs.
VERSION = "1"
KINDS = {"rgb": ".jpg", "thumb": ".jpg", "depth": ".u16", "glb": ".glb"}
CONTENT_TYPES = {".jpg": "image/jpeg", ".u16": "application/octet-stream", ".glb": "model/gltf-binary"}
THUMB_WIDTH = 256
JPEG_QUALITY = 90
MAX_KEYS = 4096
CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str


def derive(path: Path, kind: str) -> bytes:
    """The bytes of ``kind`` made from the file at ``path``: OSError, or BadArguments (an image that is gone or
    does not decode), when it cannot be read; ValueError for a kind that is not one."""
    if kind == "depth":
        return read_depth16(path).astype("<u2", copy=False).tobytes()
    if kind == "glb":
        return path.read_bytes()
    rgb = Image.fromarray(read_rgb(path), "RGB")
    if kind == "thumb":
        height = max(1, round(rgb.height * THUMB_WIDTH / rgb.width))
        rgb = rgb.resize((THUMB_WIDTH, height), Image.Resampling.BILINEAR)
    elif kind != "rgb":
        raise ValueError(f"unknown texture kind {kind!r}; kinds are {', '.join(KINDS)}")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def decode_depth(data: bytes, width: int, height: int) -> np.ndarray:
    """The served depth back as a height × width uint16 array (what the page does in JavaScript)."""
    return np.frombuffer(data, dtype="<u2").reshape(height, width)


class TextureStore:
    """key → source file, and a small cache of derived bytes. Thread-safe."""

    def __init__(self, cache_bytes: int = CACHE_BYTES, max_keys: int = MAX_KEYS) -> None:
        self._sources: OrderedDict[str, Source] = OrderedDict()
        self._digests: dict[tuple[Path, int, int], str] = {}
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0
        self._cache_bytes = cache_bytes
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def url(self, path: Path, kind: str) -> str:
        """The content-addressed URL of ``kind`` made from ``path`` (reads the file to hash it, once)."""
        stat = path.stat()
        memo = (path, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            digest = self._digests.get(memo)
        if digest is None:
            hashed = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    hashed.update(chunk)
            digest = hashed.hexdigest()
        key = hashlib.sha256(f"{kind}:{VERSION}:{digest}".encode()).hexdigest()[:32]
        with self._lock:
            if len(self._digests) >= self._max_keys:
                self._digests.clear()
            self._digests[memo] = digest
            self._sources[key] = Source(path, kind)
            self._sources.move_to_end(key)
            while len(self._sources) > self._max_keys:
                self._sources.popitem(last=False)
        return f"/t/{key}{KINDS[kind]}"

    def get(self, name: str) -> tuple[bytes, str] | None:
        """The bytes and content type for ``<key>.<ext>``, or None for a key this store does not know."""
        key, dot, extension = name.partition(".")
        with self._lock:
            source = self._sources.get(key)
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
        if source is None or KINDS[source.kind] != f"{dot}{extension}":
            return None
        if data is None:
            try:
                data = derive(source.path, source.kind)
            except (OSError, ValueError, BadArguments):
                return None  # pruned meanwhile, or damaged
            self._keep(key, data)
        return data, CONTENT_TYPES[KINDS[source.kind]]

    def _keep(self, key: str, data: bytes) -> None:
        with self._lock:
            if key in self._cache or len(data) > self._cache_bytes:
                return
            self._cache[key] = data
            self._cached += len(data)
            while self._cached > self._cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= len(old)
