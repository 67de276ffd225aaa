"""The two depth layouts of LDM3D VAEs, both ways.

Decoding (torch, on the device the VAE ran on, so only 8-bit RGB and 16-bit depth
cross to the host): the VAE decodes to floats in [-1, 1], mapped to [0, 1] the way
diffusers' image processor does (x/2 + 0.5, clamped). Two layouts exist:

``rgbd4`` (Intel/ldm3d-4c, -pano, -sr)
    channels 0..2 are RGB, channel 3 is depth in [0, 1].
``rgbd6`` (Intel/ldm3d)
    channels 0..2 are RGB, channels 3..5 an "RGB-like" depth image whose
    channel 4 holds the high byte and channel 5 the low byte of a 16-bit
    depth: ``depth16 = round(255·c4)·256 + round(255·c5)``. (diffusers'
    deprecated pipeline turns these floats into garbage in ``"np"`` output and
    into 8 bits in ``"pil"`` output; we round each byte and combine in 32 bits.)

Encoding (for img2img and upscaling inputs): 16-bit depth → the VAE's input
channels, the inverse of the above, and the resize to the request's size.

Depth is relative inverse depth as in DPT: larger = nearer, 65535 = nearest.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

LAYOUTS = {4: "rgbd4", 6: "rgbd6"}

FloatArray = npt.NDArray[np.float32]


class HostRGBD(NamedTuple):
    """A decoded image on the host."""

    rgb: npt.NDArray[np.uint8]  # H×W×3
    depth: npt.NDArray[np.uint16]  # H×W
    depth_float: FloatArray  # H×W in [0, 1]
    finite: bool  # False when the VAE produced NaN or ±inf (they were mapped into range)


def layout_for_channels(channels: int) -> str:
    """The depth layout of a VAE with ``channels`` output channels."""
    try:
        return LAYOUTS[channels]
    except KeyError:
        raise ValueError(f"a VAE with {channels} output channels is not an LDM3D VAE (expected 4 or 6)") from None


def to_unit(decoded: torch.Tensor) -> torch.Tensor:
    """VAE output in [-1, 1] → float32 in [0, 1], clamped; NaN → 0.5, ±inf → the ends."""
    return torch.nan_to_num(decoded.float()).mul(0.5).add(0.5).clamp(0.0, 1.0)


def quantize(unit: torch.Tensor, levels: int) -> torch.Tensor:
    """[0, 1] floats → integers 0..levels, rounded (half to even, as NumPy), never truncated."""
    return unit.clamp(0.0, 1.0).mul(float(levels)).round().to(torch.int32)


def unpack_depth6(hi_unit: torch.Tensor, lo_unit: torch.Tensor) -> torch.Tensor:
    """16-bit depth (as int32) from the high- and low-byte channels of a 6-channel VAE, in [0, 1]."""
    return quantize(hi_unit, 255) * 256 + quantize(lo_unit, 255)


def split_rgbd(unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """C×H×W decoded image in [0, 1] → (H×W×3 uint8 RGB, H×W int32 depth 0..65535, H×W float32 depth in [0, 1])."""
    layout = layout_for_channels(unit.shape[0])
    rgb = quantize(unit[:3], 255).to(torch.uint8).permute(1, 2, 0).contiguous()
    if layout == "rgbd4":
        depth_float = unit[3].contiguous()
        depth = quantize(depth_float, 65535)
    else:
        depth = unpack_depth6(unit[4], unit[5])
        depth_float = depth.float() / 65535.0
    return rgb, depth, depth_float


def decoded_to_host(decoded: torch.Tensor) -> HostRGBD:
    """One decoded C×H×W image, on any device → host arrays. The conversion runs where the
    image is; the copies are queued together and waited for once."""
    cuda = decoded.device.type == "cuda"
    finite = torch.isfinite(decoded).all()
    parts = (*split_rgbd(to_unit(decoded)), finite)
    host = [part.to("cpu", non_blocking=cuda) for part in parts]  # into pinned memory on CUDA
    if cuda:
        torch.cuda.current_stream(decoded.device).synchronize()  # the copies are valid only now
    rgb, depth, depth_float, all_finite = host
    return HostRGBD(
        rgb.numpy(),
        depth.numpy().astype(np.uint16),
        depth_float.numpy(),
        bool(all_finite),
    )


def pack_depth6(depth16: npt.NDArray[np.uint16]) -> FloatArray:
    """The inverse of :func:`unpack_depth6`, in NumPy: H×W uint16 → H×W×3 floats in [0, 1].

    Channel 0 repeats the high byte, so the packed image previews as a coarse
    grayscale depth, which is how the 6-channel VAE was trained."""
    d = depth16.astype(np.uint32)
    hi = (d >> 8).astype(np.float32) / 255.0
    lo = (d & 0xFF).astype(np.float32) / 255.0
    return np.stack([hi, hi, lo], axis=-1).astype(np.float32)


def depth_to_vae_channels(depth16: npt.NDArray[np.uint16], layout: str) -> FloatArray:
    """16-bit depth → the VAE's depth input channels in [0, 1]: one for ``rgbd4``, three packed for ``rgbd6``."""
    if layout == "rgbd4":
        out: FloatArray = (depth16.astype(np.float32) / 65535.0)[..., None]
        return out
    return pack_depth6(depth16)


def vae_input(
    rgb: npt.NDArray[np.uint8],
    depth16: npt.NDArray[np.uint16],
    layout: str,
    size: tuple[int, int],
    *,
    wrap: bool,
    resample: str = "bicubic",
) -> torch.Tensor:
    """RGB + 16-bit depth → a 1×C×H×W tensor in [-1, 1] for the VAE's encoder, in ``layout``'s
    channel packing, resized to ``size`` = (width, height). Depth enters as real 16-bit values
    scaled to 0..1. With ``wrap`` (a seamless panorama) the resize reads across the left/right
    seam instead of clamping at the edges.

    ``resample``: ``bicubic`` (img2img; in float, after packing), or ``lanczos``: Pillow's Lanczos
    on the 8-bit RGB and the 16-bit depth before packing, as the LDM3D-SR reference resizes in
    practice (its ``VaeImageProcessorLDM3D(resample="bilinear")`` drops the argument, so the
    processor's Lanczos default is what runs)."""
    width, height = size
    if resample == "lanczos" and (rgb.shape[1], rgb.shape[0]) != (width, height):
        rgb, depth16 = _pil_resize(rgb, depth16, size, wrap)
    image = np.concatenate([rgb.astype(np.float32) / 255.0, depth_to_vae_channels(depth16, layout)], axis=-1)
    x = torch.from_numpy(image).permute(2, 0, 1)[None] * 2.0 - 1.0
    if (x.shape[3], x.shape[2]) == (width, height):
        return x
    pad = 2 if wrap else 0  # bicubic reads two source pixels on each side
    target_pad = round(pad * width / x.shape[3])
    if pad:
        x = F.pad(x, (pad, pad, 0, 0), mode="circular")
    x = F.interpolate(x, size=(height, width + 2 * target_pad), mode=resample, align_corners=False)
    return x[..., target_pad : target_pad + width].clamp(-1.0, 1.0)


def _pil_resize(
    rgb: npt.NDArray[np.uint8], depth16: npt.NDArray[np.uint16], size: tuple[int, int], wrap: bool
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
    """Pillow's Lanczos resize of 8-bit RGB and 16-bit depth (mode ``I;16``) to ``size``; with
    ``wrap``, across the left/right seam (Lanczos reads three source pixels each side when enlarging)."""
    from PIL import Image

    width, height = size
    pad = 3 * max(1, -(-rgb.shape[1] // width)) if wrap else 0  # wider when shrinking
    target_pad = round(pad * width / rgb.shape[1])
    if pad:
        rgb = np.pad(rgb, ((0, 0), (pad, pad), (0, 0)), mode="wrap")
        depth16 = np.pad(depth16, ((0, 0), (pad, pad)), mode="wrap")
    out = (width + 2 * target_pad, height)
    rgb_big = np.asarray(Image.fromarray(rgb).resize(out, resample=Image.Resampling.LANCZOS))
    depth_big = np.asarray(Image.fromarray(depth16).resize(out, resample=Image.Resampling.LANCZOS), dtype=np.uint16)
    crop = slice(target_pad, target_pad + width)
    return np.ascontiguousarray(rgb_big[:, crop]), np.ascontiguousarray(depth_big[:, crop])
