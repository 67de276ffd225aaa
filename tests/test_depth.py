"""The depth packing of both LDM3D layouts, as pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from ldm3d_engine.depth import (
    depth_to_uint16,
    layout_for_channels,
    pack_depth6,
    split_rgbd,
    to_unit,
    unpack_depth6,
)


def test_six_channel_packing_round_trips_every_16_bit_value() -> None:
    depth16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    packed = pack_depth6(depth16)
    assert packed.shape == (256, 256, 3)
    assert np.array_equal(unpack_depth6(packed[..., 1], packed[..., 2]), depth16)


def test_six_channel_unpacking_rounds_each_byte_instead_of_truncating() -> None:
    # 0.99999 of 255 is 254.997: truncation would give byte 254, rounding gives 255.
    hi = np.array([[200 / 255 - 1e-5]], dtype=np.float32)
    lo = np.array([[17 / 255 - 1e-5]], dtype=np.float32)
    assert int(unpack_depth6(hi, lo)[0, 0]) == 200 * 256 + 17


def test_split_rgbd_six_channels_gives_full_16_bit_depth() -> None:
    rng = np.random.default_rng(0)
    depth16 = rng.integers(0, 65536, size=(8, 8), dtype=np.uint16)
    image = np.concatenate([rng.random((8, 8, 3), dtype=np.float32), pack_depth6(depth16)], axis=-1)
    rgb, depth, depth_float = split_rgbd(image)
    assert rgb.dtype == np.uint8 and depth.dtype == np.uint16
    assert np.array_equal(depth, depth16)
    assert np.allclose(depth_float * 65535.0, depth16, atol=1e-2)


def test_four_channel_depth_is_rounded_to_16_bits() -> None:
    image = np.zeros((1, 3, 4), dtype=np.float32)
    image[0, :, 3] = [0.0, 0.5, 1.0]
    _, depth, depth_float = split_rgbd(image)
    assert depth.tolist() == [[0, 32768, 65535]]  # 0.5·65535 = 32767.5 rounds up, truncation gave 32767
    assert depth_float.dtype == np.float32


def test_vae_range_is_mapped_and_clamped() -> None:
    assert to_unit(np.array([-2.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32)).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert depth_to_uint16(np.array([1.5, -0.1], dtype=np.float32)).tolist() == [65535, 0]


def test_unknown_channel_count_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="5 output channels"):
        layout_for_channels(5)
