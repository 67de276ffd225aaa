"""Seamless horizontal wrap: circular padding along the width in every convolution.

An equirectangular panorama's left and right edges are the same meridian. With
zero padding the UNet and VAE see a wall there and the seam shows. Padding the
width circularly (and the height with zeros, as before) makes every conv treat
the image as a cylinder, so rolling the latents by k columns rolls the output
by exactly 8·k pixels.

diffusers' VAE encoder downsamples without conv padding, after adding one zero
column on the right (``Downsample2D`` with ``padding=0``); with wrap on, that
column is replaced by the first one, so encoding (img2img, upscale) wraps too.

The switch is per request: :func:`wrap_width` patches the convolutions of the
given modules for the duration of a ``with`` block and always restores them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_MARK = "_ldm3d_wrap_padding"


def _wrapped_conv_forward(conv: nn.Conv2d) -> Any:
    ph, pw = getattr(conv, _MARK)

    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if pw:
            x = F.pad(x, (pw, pw, 0, 0), mode="circular")
        if ph:
            x = F.pad(x, (0, 0, ph, ph))
        return F.conv2d(x, weight, bias, conv.stride, 0, conv.dilation, conv.groups)

    return forward


def _wrapped_right_column(conv: nn.Conv2d) -> Any:
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = torch.cat([x[..., :-1], x[..., :1]], dim=-1)  # the zero column added on the right → the first column
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    return forward


def _right_padded_downsamplers(modules: Iterable[nn.Module]) -> Iterator[nn.Conv2d]:
    from diffusers.models.downsampling import Downsample2D

    for module in modules:
        for m in module.modules():
            if isinstance(m, Downsample2D) and m.use_conv and m.padding == 0 and isinstance(m.conv, nn.Conv2d):
                yield m.conv


def _padded_convs(modules: Iterable[nn.Module]) -> Iterator[nn.Conv2d]:
    for module in modules:
        for m in module.modules():
            if not isinstance(m, nn.Conv2d):
                continue
            if isinstance(m.padding, tuple) and any(m.padding) and m.padding_mode == "zeros":
                yield m


@contextlib.contextmanager
def wrap_width(modules: Iterable[nn.Module], enabled: bool) -> Iterator[None]:
    """Within the block, every padded Conv2d in ``modules`` wraps along the width."""
    if not enabled:
        yield
        return
    modules = list(modules)
    patched: list[nn.Conv2d] = []
    try:
        for conv in _padded_convs(modules):
            setattr(conv, _MARK, tuple(int(p) for p in conv.padding))
            conv._conv_forward = _wrapped_conv_forward(conv)  # type: ignore[method-assign]
            patched.append(conv)
        for conv in _right_padded_downsamplers(modules):
            setattr(conv, _MARK, (0, 0))
            conv._conv_forward = _wrapped_right_column(conv)  # type: ignore[method-assign]
            patched.append(conv)
        yield
    finally:
        for conv in patched:
            del conv._conv_forward
            delattr(conv, _MARK)


def variant(module: nn.Module) -> str:
    """``wrap`` inside :func:`wrap_width` for ``module`` (its first padded convolution is patched), else
    ``flat``: a backend that compiles the module (OpenVINO) keeps one compiled model for each."""
    first = next(_padded_convs([module]), None)
    return "wrap" if first is not None and hasattr(first, _MARK) else "flat"
