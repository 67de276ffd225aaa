"""The depth packing of both LDM3D layouts, as pure functions: decoded VAE output → host
arrays (torch, where the VAE ran) and 16-bit depth → VAE input channels (NumPy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldm3d_engine.depth.packing import (
    decoded_to_host,
    depth_to_vae_channels,
    layout_for_channels,
    pack_depth6,
    quantize,
    unpack_depth6,
    vae_input,
)


def vae_range(unit: np.ndarray) -> torch.Tensor:
    """H×W×C floats in [0, 1] → the C×H×W [-1, 1] tensor a VAE decodes to."""
    return torch.from_numpy(unit).permute(2, 0, 1) * 2.0 - 1.0


def test_six_channel_packing_round_trips_every_16_bit_value() -> None:
    depth16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    packed = pack_depth6(depth16)
    assert packed.shape == (256, 256, 3)
    unpacked = unpack_depth6(torch.from_numpy(packed[..., 1]), torch.from_numpy(packed[..., 2]))
    assert np.array_equal(unpacked.numpy(), depth16)


def test_six_channel_unpacking_rounds_each_byte_instead_of_truncating() -> None:
    # 0.99999 of 255 is 254.997: truncation would give byte 254, rounding gives 255.
    hi = torch.tensor([[200 / 255 - 1e-5]])
    lo = torch.tensor([[17 / 255 - 1e-5]])
    assert int(unpack_depth6(hi, lo)[0, 0]) == 200 * 256 + 17


def test_six_channel_decoding_gives_full_16_bit_depth() -> None:
    rng = np.random.default_rng(0)
    depth16 = rng.integers(0, 65536, size=(8, 16), dtype=np.uint16)
    rgb_unit = rng.random((8, 16, 3), dtype=np.float32)
    host = decoded_to_host(vae_range(np.concatenate([rgb_unit, pack_depth6(depth16)], axis=-1)))
    assert host.rgb.dtype == np.uint8 and host.rgb.shape == (8, 16, 3)
    assert host.depth.dtype == np.uint16 and host.depth.shape == (8, 16)
    assert np.array_equal(host.depth, depth16)
    assert np.allclose(host.depth_float * 65535.0, depth16, atol=1e-2)
    assert np.abs(host.rgb.astype(int) - np.rint(rgb_unit * 255)).max() <= 1  # ±1 from the float round trip
    assert host.finite


def test_four_channel_depth_is_rounded_to_16_bits() -> None:
    unit = np.zeros((1, 3, 4), dtype=np.float32)
    unit[0, :, 3] = [0.0, 0.5, 1.0]
    host = decoded_to_host(vae_range(unit))
    assert host.depth.tolist() == [[0, 32768, 65535]]  # 0.5·65535 = 32767.5 rounds (to even), truncation gave 32767
    assert host.depth_float.dtype == np.float32 and host.depth_float.shape == (1, 3)


def test_vae_range_is_mapped_and_clamped_and_non_finite_values_are_reported() -> None:
    decoded = torch.zeros(4, 1, 6)
    decoded[0, 0] = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0, float("nan")])
    decoded[3, 0] = torch.tensor([1.5, -3.0, float("inf"), float("-inf"), 0.0, 1.0])
    host = decoded_to_host(decoded)
    assert host.rgb[0, :, 0].tolist() == [0, 0, 128, 255, 255, 128]  # NaN becomes the middle
    assert host.depth[0].tolist() == [65535, 0, 65535, 0, 32768, 65535]
    assert host.depth_float[0].tolist() == [1.0, 0.0, 1.0, 0.0, 0.5, 1.0]  # the float depth is clamped too
    assert not host.finite


def test_quantize_clamps_and_rounds_to_int32() -> None:
    q = quantize(torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 0.5, 1.0, 1.5]), 255)
    assert q.dtype == torch.int32 and q.tolist() == [0, 0, 0, 1, 128, 255, 255]  # 127.5 rounds to even 128


def test_unknown_channel_count_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="5 output channels"):
        layout_for_channels(5)


def test_depth_enters_the_vae_as_16_bit_values_in_each_layout() -> None:
    depth16 = np.array([[0, 1, 32768, 65535]], dtype=np.uint16)
    four = depth_to_vae_channels(depth16, "rgbd4")
    assert four.shape == (1, 4, 1) and four.dtype == np.float32
    assert np.allclose(four[0, :, 0], [0.0, 1 / 65535, 32768 / 65535, 1.0])  # not 8-bit: 1 survives
    six = depth_to_vae_channels(depth16, "rgbd6")
    assert np.array_equal(six, pack_depth6(depth16))
    assert np.allclose(six[0, 3], [1.0, 1.0, 1.0]) and np.allclose(six[0, 2], [128 / 255, 128 / 255, 0.0])


def test_vae_input_maps_to_the_vaes_range_in_each_layout() -> None:
    rgb = np.array([[[0, 128, 255], [255, 255, 255]]], dtype=np.uint8)
    depth16 = np.array([[0, 65535]], dtype=np.uint16)
    for layout, channels in (("rgbd4", 4), ("rgbd6", 6)):
        x = vae_input(rgb, depth16, layout, (2, 1), wrap=False)
        assert x.shape == (1, channels, 1, 2) and x.dtype == torch.float32
        assert torch.allclose(x[0, :3, 0, 0], torch.tensor([-1.0, 128 / 255 * 2 - 1, 1.0]), atol=1e-6)
        assert torch.allclose(x[0, 3:, 0, 0], torch.full((channels - 3,), -1.0))
        assert torch.allclose(x[0, 3:, 0, 1], torch.full((channels - 3,), 1.0))


def test_vae_input_resizes_and_wraps_across_the_seam_for_panoramas() -> None:
    """With ``wrap`` the resize reads across the left/right seam, as if the panorama were tiled; without
    it the edges are clamped. Bicubic overshoot is clamped to the VAE's range."""
    import torch.nn.functional as F

    width, height, target = 64, 8, (96, 12)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)  # dark at the left edge, bright at the right
    rows = np.linspace(0.2, 1.0, height, dtype=np.float32)[:, None]  # and changing down the rows
    rgb = np.repeat(((ramp[None, :] * rows) * 255).round().astype(np.uint8)[..., None], 3, 2)
    depth16 = ((ramp[None, :] * rows) * 65535).round().astype(np.uint16)
    wrapped = vae_input(rgb, depth16, "rgbd4", target, wrap=True)
    clamped = vae_input(rgb, depth16, "rgbd4", target, wrap=False)
    assert wrapped.shape == clamped.shape == (1, 4, 12, 96)
    x = vae_input(rgb, depth16, "rgbd4", (width, height), wrap=False)  # the unresized input
    tiled = F.interpolate(x.repeat(1, 1, 1, 3), size=(12, 3 * 96), mode="bicubic", align_corners=False)
    reference = tiled[..., 96:192].clamp(-1.0, 1.0)  # the middle tile: what reading across the seam gives
    assert (wrapped - reference).abs().max() < 1e-4
    assert (clamped[..., [0, -1]] - reference[..., [0, -1]]).abs().max() > 0.1  # clamped edges differ
    assert (clamped[..., 8:-8] - reference[..., 8:-8]).abs().max() < 1e-4  # away from the seam: the same
    tall = vae_input(rgb, depth16, "rgbd6", (64, 64), wrap=True)  # as wide as the input, taller: resized
    assert tall.shape == (1, 6, 64, 64)
    step = np.zeros((4, 8), dtype=np.uint16)
    step[:, 4:] = 65535
    sharp = vae_input(np.zeros((4, 8, 3), np.uint8), step, "rgbd4", (16, 8), wrap=False)
    assert float(sharp.min()) >= -1.0 and float(sharp.max()) <= 1.0  # overshoot clamped


def _lanczos(rgb: np.ndarray, depth16: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's Lanczos of 8-bit RGB and 16-bit depth to ``size``, as the LDM3D-SR reference resizes."""
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    return (
        np.asarray(Image.fromarray(rgb).resize(size, resample=lanczos)),
        np.asarray(Image.fromarray(depth16).resize(size, resample=lanczos), dtype=np.uint16),
    )


def _as_bytes_and_depth(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A 1×4×H×W VAE input back to 8-bit RGB and 16-bit depth."""
    unit = (x[0] + 1.0) / 2.0
    return np.rint(unit[:3].permute(1, 2, 0).numpy() * 255), np.rint(unit[3].numpy() * 65535)


@pytest.mark.parametrize(
    ("source", "size"),
    [((32, 8), (64, 16)), ((96, 12), (32, 4)), ((8, 4), (8, 8))],
    ids=["enlarged", "shrunk", "as wide, taller"],
)
def test_lanczos_resizes_16_bit_depth_and_wraps_across_the_seam(source: tuple[int, int], size: tuple[int, int]) -> None:
    """``resample="lanczos"`` (the upscaler's input) is Pillow's Lanczos on the 8-bit RGB and the 16-bit depth
    (not 8 bits of it); with ``wrap`` it reads across the seam: the middle of the panorama tiled three times."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (source[1], source[0], 3), dtype=np.uint8)
    depth16 = rng.integers(0, 65536, (source[1], source[0]), dtype=np.uint16)
    width = size[0]
    tiled_rgb, tiled_depth = _lanczos(np.tile(rgb, (1, 3, 1)), np.tile(depth16, (1, 3)), (3 * width, size[1]))
    wrapped = _as_bytes_and_depth(vae_input(rgb, depth16, "rgbd4", size, wrap=True, resample="lanczos"))
    assert np.array_equal(wrapped[0], tiled_rgb[:, width : 2 * width])
    assert np.array_equal(wrapped[1], tiled_depth[:, width : 2 * width])
    plain_rgb, plain_depth = _lanczos(rgb, depth16, size)
    clamped = _as_bytes_and_depth(vae_input(rgb, depth16, "rgbd4", size, wrap=False, resample="lanczos"))
    assert np.array_equal(clamped[0], plain_rgb) and np.array_equal(clamped[1], plain_depth)
