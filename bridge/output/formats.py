"""Texture file formats: how a job's 8-bit RGB and 16-bit depth are encoded.

Chosen on measurement (``bench/bridge_latency.py``, section 3):

=============  =========================================  ==============================================
``tiff``       uncompressed TIFF, Pillow (the default)     ~2 ms write and read at 1024×512; 1.4× PNG's size
``png-fast``   PNG, deflate level 0, libspng (imagecodecs  ~3 ms; the ``[fastpng]`` extra; 1.4× the size
               through the ``[fastpng]`` extra)
``png``        PNG, zlib level 1, Pillow                   ~50-100 ms; the smallest files
=============  =========================================  ==============================================

All keep the RGB bytes and the 16-bit depth exactly, and TouchDesigner's Movie File
In TOP reads all of them (TIFF and PNG, 16-bit kept with Pixel Format "Use Input").
A job folder holds ``rgb.<ext>`` and ``depth.<ext>``; ``meta.json`` names them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

PNG_LEVEL = 1
#: The image extensions a job folder may use, in the order readers look for them.
EXTENSIONS = (".tif", ".png")


@dataclass(frozen=True)
class Format:
    name: str
    extension: str
    encode_rgb: Callable[[npt.NDArray[np.uint8]], bytes]
    encode_depth: Callable[[npt.NDArray[np.uint16]], bytes]
    description: str


def _pillow(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _spng(array: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.spng_encode(np.ascontiguousarray(array), level=0))


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "tiff",
            ".tif",
            lambda rgb: _pillow(Image.fromarray(rgb, "RGB"), "TIFF"),
            lambda depth: _pillow(Image.fromarray(depth), "TIFF"),  # mode I;16: 16-bit grayscale
            "uncompressed TIFF: 8-bit RGB, 16-bit grayscale depth",
        ),
        Format(
            "png-fast",
            ".png",
            _spng,
            _spng,
            "PNG without compression (libspng): 8-bit RGB, 16-bit grayscale depth",
        ),
        Format(
            "png",
            ".png",
            lambda rgb: _pillow(Image.fromarray(rgb, "RGB"), "PNG", compress_level=PNG_LEVEL),
            lambda depth: _pillow(Image.fromarray(depth), "PNG", compress_level=PNG_LEVEL),
            f"PNG at zlib level {PNG_LEVEL}: 8-bit RGB, 16-bit grayscale depth",
        ),
    )
}
DEFAULT_FORMAT = "tiff"


def encode_jpeg(rgb: npt.NDArray[np.uint8]) -> bytes:
    """``rgb.jpg``, the optional preview beside the lossless pair (``jpeg`` setting)."""
    return _pillow(Image.fromarray(rgb, "RGB"), "JPEG", quality=92)


def encode_png(array: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]) -> bytes:
    """A small picture as PNG, quickly (zlib level 1): 8-bit RGB (H×W×3) or 16-bit grayscale (H×W)."""
    return _pillow(Image.fromarray(array), "PNG", compress_level=1)


def check_format(name: str) -> Format:
    """The format called ``name``; ValueError names the others, or the extra a format needs."""
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; use {', '.join(FORMATS)}")
    if name == "png-fast":
        try:
            import imagecodecs  # noqa: F401
        except ImportError:
            raise ValueError(
                "format png-fast needs libspng through imagecodecs: pip install 'ldm3d-bridge[fastpng]'"
            ) from None
    return FORMATS[name]


def texture(folder: Path, kind: str) -> Path:
    """``rgb`` or ``depth`` of a job folder, whatever its format (the first that exists)."""
    for extension in EXTENSIONS:
        path = folder / f"{kind}{extension}"
        if path.is_file():
            return path
    return folder / f"{kind}{EXTENSIONS[0]}"
