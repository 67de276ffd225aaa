"""RGB and depth from decoded VAE output: pure NumPy, no torch.

The VAE decodes to floats in [-1, 1]; we map them to [0, 1] the way diffusers'
image processor does (x/2 + 0.5, clamped). Two depth layouts exist:

``rgbd4`` (Intel/ldm3d-4c, -pano, -sr)
    channels 0..2 are RGB, channel 3 is depth in [0, 1].
``rgbd6`` (Intel/ldm3d)
    channels 0..2 are RGB, channels 3..5 an "RGB-like" depth image whose
    channel 4 holds the high byte and channel 5 the low byte of a 16-bit
    depth: ``depth16 = round(255·c4)·256 + round(255·c5)``. (diffusers'
    deprecated pipeline turns these floats into garbage in ``"np"`` output and
    into 8 bits in ``"pil"`` output; we round each byte and combine in 32 bits.)

Depth is relative inverse depth as in DPT: larger = nearer, 65535 = nearest.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

LAYOUTS = {4: "rgbd4", 6: "rgbd6"}

FloatArray = npt.NDArray[np.float32]


def layout_for_channels(channels: int) -> str:
    """The depth layout of a VAE with ``channels`` output channels."""
    try:
        return LAYOUTS[channels]
    except KeyError:
        raise ValueError(f"a VAE with {channels} output channels is not an LDM3D VAE (expected 4 or 6)") from None


def to_unit(decoded: FloatArray) -> FloatArray:
    """Map VAE output in [-1, 1] to [0, 1], clamped."""
    out: FloatArray = np.clip(decoded * 0.5 + 0.5, 0.0, 1.0).astype(np.float32)
    return out


def rgb_to_uint8(rgb_unit: FloatArray) -> npt.NDArray[np.uint8]:
    """[0, 1] floats to 8-bit, rounded (as diffusers does for PIL output)."""
    out: npt.NDArray[np.uint8] = np.rint(rgb_unit * 255.0).astype(np.uint8)
    return out


def depth_to_uint16(depth_unit: FloatArray) -> npt.NDArray[np.uint16]:
    """[0, 1] floats to 16-bit, rounded, never truncated."""
    out: npt.NDArray[np.uint16] = np.rint(np.clip(depth_unit, 0.0, 1.0) * 65535.0).astype(np.uint16)
    return out


def unpack_depth6(hi_unit: FloatArray, lo_unit: FloatArray) -> npt.NDArray[np.uint16]:
    """16-bit depth from the high- and low-byte channels of a 6-channel VAE, in [0, 1]."""
    hi = np.rint(np.clip(hi_unit, 0.0, 1.0) * 255.0).astype(np.uint32)
    lo = np.rint(np.clip(lo_unit, 0.0, 1.0) * 255.0).astype(np.uint32)
    out: npt.NDArray[np.uint16] = (hi * 256 + lo).astype(np.uint16)
    return out


def pack_depth6(depth16: npt.NDArray[np.uint16]) -> FloatArray:
    """The inverse of :func:`unpack_depth6`: H×W uint16 → H×W×3 floats in [0, 1].

    Channel 0 repeats the high byte, so the packed image previews as a coarse
    grayscale depth, which is how the 6-channel VAE was trained."""
    d = depth16.astype(np.uint32)
    hi = (d >> 8).astype(np.float32) / 255.0
    lo = (d & 0xFF).astype(np.float32) / 255.0
    return np.stack([hi, hi, lo], axis=-1).astype(np.float32)


def split_rgbd(
    image_unit: FloatArray,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16], FloatArray]:
    """H×W×C decoded image in [0, 1] → (uint8 RGB, uint16 depth, float depth in [0, 1])."""
    channels = image_unit.shape[-1]
    layout = layout_for_channels(channels)
    rgb = rgb_to_uint8(image_unit[..., :3])
    if layout == "rgbd4":
        depth_float = np.ascontiguousarray(image_unit[..., 3], dtype=np.float32)
        depth = depth_to_uint16(depth_float)
    else:
        depth = unpack_depth6(image_unit[..., 4], image_unit[..., 5])
        depth_float = (depth.astype(np.float32) / 65535.0).astype(np.float32)
    return rgb, depth, depth_float


def depth_to_vae_channels(depth16: npt.NDArray[np.uint16], layout: str) -> FloatArray:
    """16-bit depth → the VAE's depth input channels in [0, 1]: one for ``rgbd4``, three packed for ``rgbd6``."""
    if layout == "rgbd4":
        out: FloatArray = (depth16.astype(np.float32) / 65535.0)[..., None]
        return out
    return pack_depth6(depth16)
