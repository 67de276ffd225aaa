"""Reading input textures: 8-bit RGB and 16-bit depth PNGs, with errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from bridge.errors import BadArguments

#: Larger inputs are refused from their header, before any pixel is decoded (decompression bombs).
MAX_PIXELS = 8192 * 8192
_UNREADABLE = (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError, SyntaxError)  # Pillow's


def _header(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
    except Image.DecompressionBombError:
        raise BadArguments(
            f"{path.name} claims a size too large to read; images up to {MAX_PIXELS:,} pixels are read"
        ) from None
    except _UNREADABLE as exc:
        raise BadArguments(f"cannot read {path.name}: {exc}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise BadArguments(f"{path.name} is {width}×{height}; images up to {MAX_PIXELS:,} pixels are read")
    return image


def _open(path: Path) -> Image.Image:
    image = _header(path)
    try:
        image.load()
    except _UNREADABLE as exc:
        raise BadArguments(f"cannot read {path.name}: {exc}") from None
    return image


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    return np.asarray(_open(path).convert("RGB"), dtype=np.uint8)


def read_depth16(path: Path) -> npt.NDArray[np.uint16]:
    """A 16-bit grayscale depth map (65535 = nearest). An 8-bit one is refused: it would lose
    the precision LDM3D's depth has; write depth as 16-bit PNG."""
    check_depth16(path)
    return np.asarray(_open(path)).astype(np.uint16)


def check_depth16(path: Path) -> None:
    """Refuse, from the header alone, a depth map that is not 16-bit."""
    with _header(path) as image:
        if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise BadArguments(
                f"{path.name} is not a 16-bit depth map (mode {image.mode}); write depth as a 16-bit PNG"
            )


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    with _header(path) as image:
        return image.size
