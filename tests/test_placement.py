"""Where an object stands in the world: the one matrix every renderer uses (bridge/placement.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bridge.errors import BadArguments
from bridge.placement import Placement, placement_from, placement_of_meta, transform_points
from bridge.render.preview import Camera


@pytest.mark.parametrize(("yaw", "pitch"), [(0.0, 0.0), (90.0, 0.0), (-135.0, 20.0), (30.0, -60.0)])
def test_an_object_stands_where_the_camera_looks_at_that_yaw_and_pitch(yaw: float, pitch: float) -> None:
    placement = Placement(yaw=yaw, pitch=pitch, distance=0.6)
    centre = transform_points(np.zeros((1, 3)), placement.matrix(base_radius=10.0))[0]
    np.testing.assert_allclose(centre, Camera(yaw=yaw, pitch=pitch).direction() * 6.0, atol=1e-5)


@pytest.mark.parametrize("yaw", [0.0, 90.0, -45.0, 180.0])
def test_its_front_faces_the_viewer_wherever_it_stands_and_turn_turns_it_to_its_left(yaw: float) -> None:
    placement = Placement(yaw=yaw, distance=0.5, size=0.2)
    m = placement.matrix()
    centre, front = transform_points(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), m)
    toward_viewer = -centre / np.linalg.norm(centre)
    np.testing.assert_allclose((front - centre) / 0.2, toward_viewer, atol=1e-5)  # +Z, the front, at the viewer
    turned = Placement(yaw=yaw, distance=0.5, size=0.2, turn=90.0).matrix()
    centre, front = transform_points(np.array([[0, 0, 0], [0, 0, 1.0]]), turned)
    # turned a quarter to its left: its front now points where its left hand (+X, facing +Z) pointed
    before_left = transform_points(np.array([[1.0, 0, 0]]), m)[0] - centre
    np.testing.assert_allclose(front - centre, before_left, atol=1e-5)


def test_size_is_its_largest_extent_in_radii_and_up_stays_up() -> None:
    m = Placement(size=0.3, yaw=70.0, turn=15.0).matrix(base_radius=2.0)
    top, bottom = transform_points(np.array([[0, 0.5, 0], [0, -0.5, 0]]), m)
    np.testing.assert_allclose(top - bottom, [0.0, 0.6, 0.0], atol=1e-6)


def test_values_out_of_range_are_named_and_missing_ones_come_from_the_base() -> None:
    with pytest.raises(BadArguments, match=re.escape("object size 0 is out of range; allowed 0.01..2")):
        placement_from({"size": 0})
    with pytest.raises(BadArguments, match="object yaw must be a finite number"):
        placement_from({"yaw": float("nan")})
    base = Placement(yaw=10.0, size=0.5)
    assert placement_from({"pitch": 5}, base) == Placement(yaw=10.0, pitch=5.0, size=0.5)
    assert placement_of_meta({"placement": {"yaw": 12, "distance": 0.9}}) == Placement(yaw=12.0, distance=0.9)
    assert placement_of_meta({}) == Placement()  # an object written before placements: the defaults
