"""Reading input textures: 8-bit RGB and 16-bit depth PNGs, with errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from bridge.errors import BadArguments


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError) as exc:
        raise BadArguments(f"cannot read {path.name}: {exc}") from None
    return image


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    return np.asarray(_open(path).convert("RGB"), dtype=np.uint8)


def read_depth16(path: Path) -> npt.NDArray[np.uint16]:
    """A 16-bit grayscale depth map (65535 = nearest). An 8-bit one is refused: it would lose
    the precision LDM3D's depth has; write depth as 16-bit PNG."""
    image = _open(path)
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise BadArguments(f"{path.name} is not a 16-bit depth map (mode {image.mode}); write depth as a 16-bit PNG")
    return np.asarray(image).astype(np.uint16)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise BadArguments(f"cannot read {path.name}: {exc}") from None
