"""The official checkpoint's key names ⇄ ours, applied strictly.

The official file (``model_joint_denoise_rec_model3910000.safetensors``) is the state dict of
upstream's ``JointDenoiseRecModel`` (``nsr/lsgm/train_util_diffusion_lsgm_noD_joint.py``): the DiT
under ``ddpm_model.``, the whole autoencoder under ``rec_model.``. The names below were derived from
the modules' structure in NIRVANALAN/LN3Diff (docs/objects.md lists where each comes from); they have
not been compared with the file itself (4.1 GB, never downloaded here). Because of that the load is
strict: a key of the file that no rule maps and no rule ignores, a parameter of ours that nothing
fills, two keys mapped to one, or a shape that differs, fails with the names of the keys.

Ignored on purpose (in the file, not needed to go from text to a mesh): the image encoder
(``rec_model.encoder.``), the VAE's ``quant_conv`` (encoding side), the unused ``w_avg`` buffer and
the DiT's running latent statistics (``ema_latent_mean``/``ema_latent_std``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import UnknownModel

_DIT = "ddpm_model."
_DEC = "rec_model.decoder."

#: (official, ours); ``{n}``, ``{i}``, ``{j}`` stand for block and level numbers.
_BLOCK = [  # a transformer block (both transformers)
    ("attn.qkv.weight", "attn.qkv.weight"),
    ("attn.qkv.bias", "attn.qkv.bias"),
    ("attn.proj.weight", "attn.proj.weight"),
    ("attn.proj.bias", "attn.proj.bias"),
    # xformers' FusedMLP: bias-free linears, each bias in the FusedDropoutBias after it
    ("mlp.mlp.0.weight", "mlp.fc1.weight"),
    ("mlp.mlp.1.bias", "mlp.fc1.bias"),
    ("mlp.mlp.2.weight", "mlp.fc2.weight"),
    ("mlp.mlp.3.bias", "mlp.fc2.bias"),
    ("adaLN_modulation.1.weight", "ada_ln.linear.weight"),
    ("adaLN_modulation.1.bias", "ada_ln.linear.bias"),
]
_CROSS = [
    ("cross_attn.to_q.weight", "cross_attn.to_q.weight"),
    ("cross_attn.to_k.weight", "cross_attn.to_k.weight"),
    ("cross_attn.to_v.weight", "cross_attn.to_v.weight"),
    ("cross_attn.to_out.0.weight", "cross_attn.to_out.weight"),
    ("cross_attn.to_out.0.bias", "cross_attn.to_out.bias"),
]
_RES = ["norm1", "conv1", "norm2", "conv2"]
_ATTN = ["norm", "q", "k", "v", "proj_out"]
_SR = f"{_DEC}superresolution.conv_sr."

RULES: list[tuple[str, str]] = [
    *(
        (f"{_DIT}{a}", f"denoiser.{b}")
        for a, b in [
            ("x_embedder.proj.weight", "patch_embed.weight"),
            ("x_embedder.proj.bias", "patch_embed.bias"),
            ("t_embedder.mlp.0.weight", "time_embed.fc1.weight"),
            ("t_embedder.mlp.0.bias", "time_embed.fc1.bias"),
            ("t_embedder.mlp.2.weight", "time_embed.fc2.weight"),
            ("t_embedder.mlp.2.bias", "time_embed.fc2.bias"),
            ("clip_text_proj.y_proj.fc1.weight", "text_proj.fc1.weight"),
            ("clip_text_proj.y_proj.fc1.bias", "text_proj.fc1.bias"),
            ("clip_text_proj.y_proj.fc2.weight", "text_proj.fc2.weight"),
            ("clip_text_proj.y_proj.fc2.bias", "text_proj.fc2.bias"),
            ("pos_embed", "pos_embed"),
            ("final_layer.adaLN_modulation.1.weight", "final.ada_ln.linear.weight"),
            ("final_layer.adaLN_modulation.1.bias", "final.ada_ln.linear.bias"),
            ("final_layer.linear.weight", "final.linear.weight"),
            ("final_layer.linear.bias", "final.linear.bias"),
            *((f"blocks.{{n}}.{a}", f"blocks.{{n}}.{b}") for a, b in _BLOCK + _CROSS),
        ]
    ),
    (f"{_DEC}superresolution.ldm_upsample.proj.weight", "decoder.token_embed.weight"),
    (f"{_DEC}superresolution.ldm_upsample.proj.bias", "decoder.token_embed.bias"),
    (f"{_DEC}vit_decoder.pos_embed", "decoder.pos_embed"),
    *((f"{_DEC}vit_decoder.blocks.{{n}}.{a}", f"decoder.blocks.{{n}}.{b}") for a, b in _BLOCK),
    *(
        (f"{_SR}{a}.{p}", f"decoder.upsampler.{b}.{p}")
        for a, b in [
            ("conv_in", "conv_in"),
            ("norm_out", "norm_out"),
            ("conv_out", "conv_out"),
            *((f"mid.block_{k}.{part}", f"mid_block{k}.{part}") for k in (1, 2) for part in _RES),
            *((f"mid.attn_1.{part}", f"mid_attn.{part}") for part in _ATTN),
            *((f"up.{{i}}.block.{{j}}.{part}", f"levels.{{i}}.blocks.{{j}}.{part}") for part in _RES),
            ("up.{i}.block.{j}.nin_shortcut", "levels.{i}.blocks.{j}.shortcut"),
            ("up.{i}.upsample.conv", "levels.{i}.upsample"),
        ]
        for p in ("weight", "bias")
    ),
    *(
        (f"{_DEC}triplane_decoder.decoder.net.{a}.{p}", f"renderer.{b}.{p}")
        for a, b in [("0", "fc1"), ("2", "fc2")]
        for p in ("weight", "bias")
    ),
]
IGNORED = (
    re.compile(r"rec_model\.encoder\..+"),
    re.compile(r"rec_model\.decoder\.superresolution\.quant_conv\.(weight|bias)"),
    re.compile(r"rec_model\.decoder\.w_avg"),
    re.compile(r"ddpm_model\.ema_latent_(mean|std)"),
)


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{(\w)\\\}", r"(?P<\1>\\d+)", re.escape(template)))


_FORWARD = [(_pattern(official), ours) for official, ours in RULES]
_BACKWARD = [(_pattern(ours), official) for official, ours in RULES]


def _translate(key: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, template in table:
        found = pattern.fullmatch(key)
        if found:
            return template.format(**found.groupdict())
    return None


def ours_of(official: str) -> str | None:
    return _translate(official, _FORWARD)


def official_of(ours: str) -> str | None:
    return _translate(ours, _BACKWARD)


def is_ignored(official: str) -> bool:
    return any(p.fullmatch(official) for p in IGNORED)


def to_official(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict under the official names (the tiny model is saved this way, so it loads by
    the same strict path as the real file)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = official_of(key)
        if name is None:
            raise UnknownModel(f"no official name for our parameter {key!r}: the key map is incomplete")
        out[name] = value
    return out


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f" … ({len(keys)} in all)" if len(keys) > limit else "")


def load_official(network: nn.Module, official: Mapping[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """Fill ``network`` from a state dict with the official names; every parameter and buffer of
    ``network`` must be filled and every key of the file used or knowingly ignored. ``assign``: take
    the tensors as they are (a network built on the meta device)."""
    ours = network.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected, twice, shapes = [], [], []
    for key, value in official.items():
        name = ours_of(key)
        if name is None or name not in ours:
            if not is_ignored(key):
                unexpected.append(key)
            continue
        if name in mapped:
            twice.append(key)
        elif tuple(value.shape) != tuple(ours[name].shape):
            shapes.append(f"{key} {tuple(value.shape)} (ours {name} {tuple(ours[name].shape)})")
        mapped[name] = value
    missing = [official_of(name) or name for name in ours if name not in mapped]
    problems = []
    if missing:
        problems.append(f"missing keys {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_names(unexpected)}")
    if twice:
        problems.append(f"keys mapped twice {_names(twice)}")
    if shapes:
        problems.append(f"shapes that differ: {'; '.join(shapes[:4])}")
    if problems:
        raise UnknownModel(f"{source} does not match LN3Diff's text-to-3D architecture: {'; '.join(problems)}")
    network.load_state_dict(mapped, strict=True, assign=assign)
