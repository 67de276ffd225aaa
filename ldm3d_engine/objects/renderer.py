"""Triplane → density and colour at 3-D points: EG3D's "OSG" decoder as LN3Diff uses it.

Facts (NIRVANALAN/LN3Diff; lines in docs/objects.md):

- points are scaled by ``2 / box_warp`` (0.9) and projected onto the planes xy, yz and zx (the
  "FIXED" ``project_onto_planes`` of ``nsr/volumetric_rendering/renderer.py``), sampled bilinearly
  (``grid_sample``, zeros outside, ``align_corners=False``), and averaged over the three planes;
- the MLP (``nsr/triplane.py`` OSGDecoder): 32 → 64 (softplus) → 1 + 3, both layers StyleGAN2
  ``FullyConnectedLayer``s with equalised learning rate (the weight is used times 1/√fan-in);
- density is the raw first output (no activation; the mesh threshold applies to it), colour is
  ``sigmoid(x)·1.002 − 0.001``;
- the mesh's density grid spans ``[sampler_bbox_min, sampler_bbox_max]³`` = [−0.45, 0.45]³ on
  ``grid_size`` points per axis (``linspace``, ``indexing='ij'``: the array's axes are x, y, z),
  queried in chunks of 2¹⁶ points (``triplane_decode_grid``, ``forward_points``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .ln3diff_config import LN3DiffConfig

#: Points per call of the MLP (upstream's chunk size).
CHUNK = 2**16


class EqualizedLinear(nn.Module):
    """StyleGAN2's FullyConnectedLayer (lr multiplier 1): ``x·(W/√fan_in)ᵀ + b``."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(fan_out))
        self.gain = 1.0 / math.sqrt(fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias.to(x.dtype).unsqueeze(0), x, (self.weight.to(x.dtype) * self.gain).t())


class OSGDecoder(nn.Module):
    def __init__(self, cfg: LN3DiffConfig) -> None:
        super().__init__()
        self.fc1 = EqualizedLinear(cfg.triplane_channels, cfg.osg_hidden)
        self.fc2 = EqualizedLinear(cfg.osg_hidden, 4)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """M×F features (already averaged over the planes) → (M density, M×3 colour in ~[0, 1])."""
        out = self.fc2(F.softplus(self.fc1(features)))
        return out[:, 0], torch.sigmoid(out[:, 1:]) * (1 + 2 * 0.001) - 0.001


def sample_planes(planes: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """planes: 3×F×S×S (one object), points: M×3 → M×F, the mean of the three planes' features."""
    coords = points * (2.0 / box_warp)
    pairs = torch.stack([coords[:, [0, 1]], coords[:, [1, 2]], coords[:, [2, 0]]])  # xy, yz, zx
    sampled = F.grid_sample(
        planes, pairs.unsqueeze(1).to(planes.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )  # 3×F×1×M
    return sampled[:, :, 0].mean(0).transpose(0, 1)


class TriplaneField:
    """One object's triplane and the MLP that reads it."""

    def __init__(self, planes: torch.Tensor, mlp: OSGDecoder, cfg: LN3DiffConfig) -> None:
        self.planes = planes
        self.mlp = mlp
        self.cfg = cfg

    def query(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        densities, colours = [], []
        for start in range(0, points.shape[0], CHUNK):
            d, c = self.mlp(sample_planes(self.planes, points[start : start + CHUNK], self.cfg.box_warp))
            densities.append(d)
            colours.append(c)
        return torch.cat(densities), torch.cat(colours)

    def density_grid(self, size: int, check: Callable[[], None] | None = None) -> torch.Tensor:
        """size³ densities over the sampling cube; axes x, y, z. ``check`` runs between slices (cancel)."""
        axis = torch.linspace(-self.cfg.bbox, self.cfg.bbox, size, device=self.planes.device)
        slices = []
        for x in axis:  # one x-slice at a time bounds the memory at size² points
            if check is not None:
                check()
            yy, zz = torch.meshgrid(axis, axis, indexing="ij")
            points = torch.stack([torch.full_like(yy, float(x)), yy, zz], dim=-1).reshape(-1, 3)
            slices.append(self.query(points.to(self.planes.dtype))[0].reshape(size, size))
        return torch.stack(slices).float()

    def colours(self, points: torch.Tensor) -> torch.Tensor:
        return self.query(points.to(self.planes.device, self.planes.dtype))[1].float()
