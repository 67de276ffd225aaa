"""The 360° depth's sphere geometry, value by value (issue 33): where each equirect column's centre
is, what a view sees of a column and of a pole, how far a view is read and how its blending weight
fades toward its border, and a resize whose columns wrap around the seam.

Pure tensor maths on tiny pictures, no model: each test takes a few milliseconds, so they are in
the mutation selection (``[tool.mutmut]``) with ``test_depth_geometry.py``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ldm3d_engine.depth.sphere import View, latitudes, longitudes, project_back, render_view, resize_wrapped


def test_column_and_row_centres_start_half_a_pixel_inside_the_pictures_edges() -> None:
    """Column 0 is centred just after -180° (its left edge is the seam), row 0 just under the zenith."""
    assert torch.allclose(longitudes(4), torch.tensor([-3, -1, 1, 3], dtype=torch.float64) * math.pi / 4)
    assert torch.allclose(latitudes(2), torch.tensor([1, -1], dtype=torch.float64) * math.pi / 4)


@pytest.mark.parametrize("column", [0, 31, 63])
def test_a_view_looking_at_a_columns_centre_sees_that_column_at_its_own_centre(column: int) -> None:
    """A picture 64 columns wide, bright in one column only; a view (odd size: its middle pixel looks
    along its axis) turned to that column's centre sees the bright value there, undiluted: also for
    the two columns at the seam, whose neighbours are read across it."""
    picture = torch.zeros(1, 32, 64)
    picture[:, :, column] = 1.0
    yaw = math.degrees(float(longitudes(64)[column]))
    seen = render_view(picture, View(yaw, 0.0), 33)[0]
    assert float(seen[16, 16]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("row", [0, 16, 31])
def test_a_view_looking_at_a_rows_centre_sees_that_row_at_its_own_centre(row: int) -> None:
    """The same for rows: a view pitched to a bright row's centre latitude (the top and bottom rows
    too, next to the poles) sees it undiluted at its middle pixel."""
    picture = torch.zeros(1, 32, 64)
    picture[:, row] = 1.0
    pitch = math.degrees(float(latitudes(32)[row]))
    seen = render_view(picture, View(10.0, pitch), 33)[0]
    assert float(seen[16, 16]) == pytest.approx(1.0, abs=1e-4)


def test_a_view_of_the_zenith_of_a_uniform_sky_is_uniform() -> None:
    """The polar view's middle looks at the pole, above the top row's centre: it reads the top row
    (clamped), not a dark mix with nothing."""
    seen = render_view(torch.ones(3, 32, 64), View(0.0, 90.0), 33)
    assert float(seen.min()) == pytest.approx(1.0, abs=1e-5)


def _rays(view: View, points: list[tuple[float, float]]) -> torch.Tensor:
    """Unit rays (float32) through the view's image plane at ``(x, y)`` in its −1..1 coordinates."""
    forward, right, up = view.basis()
    rays: torch.Tensor = torch.stack([forward + x * view.half * right + y * view.half * up for x, y in points])
    return F.normalize(rays, dim=-1).float()


def test_a_views_weight_is_1_at_its_centre_and_fades_to_0_at_its_border() -> None:
    """The feather: (1 − x²)²(1 − y²)² at the point (x, y) of the view's image (−1..1): 1 at its
    centre, 9/16 halfway to a side, (9/16)² halfway to a corner, 0 on its border and behind it."""
    view = View(30.0, 20.0)
    points = [(0.0, 0.0), (0.5, 0.0), (0.0, -0.5), (0.5, 0.5), (1.0, 0.3), (0.2, -1.0)]
    _, weight = project_back(torch.zeros(8, 8), view, _rays(view, points))
    assert weight.tolist() == pytest.approx([1.0, 0.5625, 0.5625, 0.31640625, 0.0, 0.0], abs=1e-5)
    behind = -_rays(view, [(0.0, 0.0)])
    assert project_back(torch.zeros(8, 8), view, behind)[1].tolist() == [0.0]


def test_a_view_is_read_up_to_its_border_pixels() -> None:
    """Rays through a view's edges and corners read its border pixels, clamped (not faded toward 0):
    seven points, float32 directions, each the view's value 2."""
    view = View(-100.0, -35.0)
    points = [(-1.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.0, -1.0), (1.0, 1.0), (-1.0, -1.0), (0.97, 0.0)]
    values, _ = project_back(torch.full((16, 16), 2.0), view, _rays(view, points))
    assert values.tolist() == pytest.approx([2.0] * 7, abs=1e-5)


def _tiled_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The reference: the picture three times side by side, resized, its middle third."""
    tiled = torch.cat([image, image, image], dim=2)[None]
    resized = F.interpolate(tiled, size=(height, 3 * width), mode="bilinear", align_corners=False, antialias=True)
    return resized[0, :, :, width : 2 * width]


@pytest.mark.parametrize(
    ("size", "new_size"), [((32, 256), (16, 64)), ((32, 64), (12, 24)), ((16, 128), (64, 512)), ((60, 301), (30, 150))]
)
def test_a_wrapped_resize_is_the_resize_of_the_picture_going_on_around_the_seam(
    size: tuple[int, int], new_size: tuple[int, int]
) -> None:
    """Shrinking (antialiased) or enlarging a 360° picture gives what resizing it with its neighbours
    on both sides would: exactly where the sizes allow a margin of whole pixels, and within a small
    fraction of a pixel's shift otherwise (301 → 150 columns); random pixels show any shift."""
    image = torch.rand(2, *size, generator=torch.Generator().manual_seed(sum(size)))
    resized = resize_wrapped(image, *new_size)
    error = float((resized - _tiled_resize(image, *new_size)).abs().max())
    assert error < (0.05 if math.gcd(size[1], new_size[1]) == 1 else 1e-5), error
