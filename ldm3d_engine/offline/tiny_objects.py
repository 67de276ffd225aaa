"""``tiny-shap-e``: the layout of ``openai/shap-e`` (diffusers' ``ShapEPipeline``) at toy sizes with
random weights, built offline from configs.

A ``PriorTransformer`` (1 layer, 32 latent tokens of 32), a ``CLIPTextModelWithProjection`` with the
offline CLIP tokenizer (:func:`.tiny.write_tokenizer`), a ``ShapERenderer`` whose latent → MLP
projection fills the first 4 layers of an 8-wide NeRSTF MLP (4 × 8 = the 32 latent tokens, as
4 × 256 = 1024 in the real model), and a ``HeunDiscreteScheduler`` configured as diffusers' own
Shap-E tests configure it (``beta_schedule="exp"``, 1024 training steps, ``prediction_type="sample"``,
Karras sigmas, samples clipped to [−1, 1]). Saved once with diffusers' ``save_pretrained`` into the
offline models' folder, so it loads by the same code as the real folder.

Two things a random renderer lacks are put in here:

* the marching-cubes lookup table: diffusers' ``MeshDecoder`` keeps it in two buffers (``cases``,
  ``masks``) that come with the real weights and are zeros in a freshly built model. It is read
  off PyMCubes (the classic table): each of the 256 corner patterns of one cube is meshed, and
  each vertex (an edge midpoint) is named by diffusers' edge order.
* a surface: a random MLP's signed distance is positive everywhere (the mesh would be the grid's
  bounding box). The first layer keeps only the position and its two lowest sine/cosine
  frequencies (a smooth field: blobs, not noise), the SDF output is widened ×8 and its bias set
  to minus the median over a few random latents, so about half of the cube is inside and the
  surface moves with the seed. Its meshes are noise; everything around them is real.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BackendFailed

logger = logging.getLogger(__name__)

#: Bump when a size, the table or the calibration changes, so an old build is not reused.
BUILD_VERSION = 1
SEED = 20230503
NAME = "tiny-shap-e"

TEXT_DIM = 32
LATENT_TOKENS = 32  # the prior's num_embeddings: 4 projected MLP layers × MLP_WIDTH vectors
LATENT_DIM = 32  # the prior's embedding_dim, the renderer's d_latent
MLP_WIDTH = 8
#: Heun over an exponential beta schedule, as diffusers' tests build Shap-E's scheduler.
SCHEDULER: dict[str, Any] = {
    "beta_schedule": "exp",
    "num_train_timesteps": 1024,
    "prediction_type": "sample",
    "use_karras_sigmas": True,
    "clip_sample": True,
    "clip_sample_range": 1.0,
}
#: Columns of NeRF's positional encoding kept by the tiny first layer: x, y, z and frequencies 1, 2.
_POSENC_FREQUENCIES = 15
_KEPT_FREQUENCIES = 2


def marching_cubes_table() -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' ``MeshDecoder`` buffers: ``cases`` (256×5×3 edge numbers) and ``masks`` (256×5),
    for the corner pattern ``Σ inside(dx, dy, dz) << (dx + 2·dy + 4·dz)``, read off PyMCubes."""
    try:
        import mcubes  # type: ignore[import-untyped]
    except ImportError as exc:
        raise BackendFailed(
            "building tiny-shap-e needs PyMCubes for its marching-cubes table: "
            "pip install 'ldm3d-bridge[objects]' (or: pip install PyMCubes)"
        ) from exc
    cases = torch.zeros(256, 5, 3, dtype=torch.long)
    masks = torch.zeros(256, 5, dtype=torch.bool)
    corners = [(x, y, z) for x in range(2) for y in range(2) for z in range(2)]
    for case in range(256):
        cube = np.array([1.0 if case >> (x + 2 * y + 4 * z) & 1 else -1.0 for x, y, z in corners]).reshape(2, 2, 2)
        vertices, triangles = mcubes.marching_cubes(cube, 0.0)
        for k, triangle in enumerate(triangles):
            cases[case, k] = torch.tensor([_edge(vertices[i]) for i in triangle])
            masks[case, k] = True
    return cases, masks


def _edge(point: np.ndarray) -> int:
    """diffusers' local edge number of the edge whose midpoint is ``point`` (``_create_flat_edge_indices``:
    x-edges 0–3, y-edges 4–7, z-edges 8–11, each ordered by its other two coordinates, lower axis first)."""
    axis = int(np.argmin(np.abs(np.asarray(point) - 0.5)))
    low, high = (round(float(point[i])) for i in range(3) if i != axis)
    return 4 * axis + low + 2 * high


def _calibrate(renderer: Any) -> None:
    """A smooth field with a surface that moves with the seed (see the module's doc)."""
    from diffusers.pipelines.shap_e.renderer import volume_query_points

    kept = torch.zeros(3 + 6 * _POSENC_FREQUENCIES, dtype=torch.bool)
    kept[:3] = True
    for start in (3, 3 + 3 * _POSENC_FREQUENCIES):  # the sines, then the cosines
        kept[start : start + 3 * _KEPT_FREQUENCIES] = True
    first = renderer.params_proj.projections["nerstf__mlp__0__weight"]
    generator = torch.Generator().manual_seed(SEED)
    points = volume_query_points(renderer.volume, 16)[None]
    with torch.no_grad():
        first.norm.weight[~kept] = 0.0
        first.norm.bias[~kept] = 0.0
        first.proj.bias.view(MLP_WIDTH, -1)[:, ~kept] = 0.0
        renderer.mlp.mlp[-1].weight[0] *= 8.0
        medians = []
        for _ in range(8):
            latent = torch.rand(1, LATENT_TOKENS, LATENT_DIM, generator=generator) * 2 - 1
            for name, weight in renderer.params_proj(latent).items():
                renderer.mlp.get_parameter(name.removeprefix("nerstf.")).copy_(weight[0])
            sdf = renderer.mlp(position=points, direction=None, ts=None, nerf_level="fine", rendering_mode="stf")
            medians.append(torch.atanh(sdf.signed_distance.clamp(-0.999999, 0.999999)).median())
        renderer.mlp.mlp[-1].bias[0] -= torch.stack(medians).median()


def build_tiny_shap_e(folder: Path) -> None:
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    from .tiny import write_tokenizer

    vocab = write_tokenizer(folder / "tokenizer")
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=vocab,
            hidden_size=TEXT_DIM,
            projection_dim=TEXT_DIM,
            intermediate_size=2 * TEXT_DIM,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
            pad_token_id=vocab - 1,
        )
    )
    prior = PriorTransformer(
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        embedding_dim=LATENT_DIM,
        num_embeddings=LATENT_TOKENS,
        additional_embeddings=0,
        time_embed_act_fn="gelu",
        norm_in_type="layer",
        encoder_hid_proj_type=None,
        added_emb_type=None,
        time_embed_dim=4 * LATENT_DIM,
        embedding_proj_dim=TEXT_DIM,
        clip_embed_dim=2 * LATENT_DIM,  # the mean and the variance, as the real prior's 2 × 1024
    )
    renderer = ShapERenderer(
        param_shapes=tuple((MLP_WIDTH, n) for n in (93, MLP_WIDTH, MLP_WIDTH, MLP_WIDTH)),
        d_latent=LATENT_DIM,
        d_hidden=MLP_WIDTH,
        n_output=12,
        background=(255.0, 255.0, 255.0),
    )
    cases, masks = marching_cubes_table()
    renderer.mesh_decoder.cases.copy_(cases)
    renderer.mesh_decoder.masks.copy_(masks)
    _calibrate(renderer)
    pipeline = ShapEPipeline(
        prior=prior,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
        scheduler=HeunDiscreteScheduler(**SCHEDULER),
        shap_e_renderer=renderer,
    )
    pipeline.save_pretrained(str(folder))


def ensure_tiny_shap_e(root: Path) -> Path:
    """The folder of ``tiny-shap-e`` under ``root``, built on first use in a temporary folder renamed
    into place (a crash mid-build never leaves a half model that later loads)."""
    folder = root / f"{NAME}-v{BUILD_VERSION}"
    if (folder / "model_index.json").exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    logger.info("building the offline object model %s in %s", NAME, folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=root))
    try:
        build_tiny_shap_e(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "model_index.json").exists():  # not a concurrent build that won
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
