"""What runs in bfloat16 on Gaudi, set up as optimum-habana sets it up for LDM3D, before Habana's
software is imported.

* **Autocast op lists.** Under ``torch.autocast("hpu", bfloat16)`` Habana's software decides per op
  which ones run in bfloat16 and which stay in float32. optimum-habana declares a ``gaudi_config``'s
  ``autocast_bf16_ops`` / ``autocast_fp32_ops`` by writing each list to a text file and pointing
  ``PT_HPU_AUTOCAST_LOWER_PRECISION_OPS_LIST`` / ``PT_HPU_AUTOCAST_FP32_OPS_LIST`` at them, which
  only takes effect if done before ``habana_frameworks.torch.core`` is imported. We do the same with
  the lists of ``Habana/stable-diffusion-2``'s config, the config optimum-habana's own LDM3D
  regression test (``test_no_generation_regression_ldm3d``) and its former LDM3D example run with.
  (``Habana/stable-diffusion``, its example script's default, carries no lists: it only turns
  autocast on, so Habana's built-in lists apply, which put e.g. ``mul`` and ``softmax`` in bfloat16.)
  Lists the user has already pointed those variables at are kept.
* **Lazy mode.** optimum-habana's Stable Diffusion examples run with ``PT_HPU_LAZY_MODE=1``, the mode
  HPU graphs and ``mark_step`` belong to; we set it where the user has not.
* **``sdp_on_bf16``.** PyTorch's switch allowing reduced-precision reductions in the math backend of
  scaled-dot-product attention, which optimum-habana's LDM3D test turns on. It is process-wide.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

LOWER_LIST_ENV = "PT_HPU_AUTOCAST_LOWER_PRECISION_OPS_LIST"
FP32_LIST_ENV = "PT_HPU_AUTOCAST_FP32_OPS_LIST"
LAZY_MODE_ENV = "PT_HPU_LAZY_MODE"
CORE_MODULE = "habana_frameworks.torch.core"

#: ``autocast_bf16_ops`` of Habana/stable-diffusion-2's gaudi_config.json (optimum-habana's docs,
#: docs/source/package_reference/gaudi_config.mdx, reproduce the file): convolutions, matrix
#: products, SiLU and the norms run in bfloat16.
BF16_OPS = (
    "_convolution.deprecated", "_convolution", "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d",
    "conv_transpose2d.input", "conv_transpose3d.input", "convolution", "prelu", "addmm", "addmv", "addr",
    "matmul", "einsum", "mm", "mv", "silu", "linear", "addbmm", "baddbmm", "bmm", "chain_matmul",
    "linalg_multi_dot", "layer_norm", "group_norm",
)  # fmt: skip
#: ``autocast_fp32_ops`` of the same file: exponentials, logarithms, powers, reciprocals, norms and
#: losses stay in float32.
FP32_OPS = (
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
    "sinh", "tan", "pow.Tensor_Scalar", "pow.Tensor_Tensor", "pow.Scalar", "softplus", "frobenius_norm",
    "frobenius_norm.dim", "nuclear_norm", "nuclear_norm.dim", "cosine_similarity", "poisson_nll_loss",
    "cosine_embedding_loss", "nll_loss", "nll_loss2d", "hinge_embedding_loss", "kl_div", "l1_loss",
    "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss",
    "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits", "dist",
    "pdist", "cdist", "renorm", "logsumexp",
)  # fmt: skip


def declare_op_lists(
    environ: MutableMapping[str, str], modules: Mapping[str, object] = sys.modules, folder: Path | None = None
) -> str:
    """Point Habana's autocast list variables in ``environ`` at files holding :data:`BF16_OPS` and
    :data:`FP32_OPS` (written to ``folder``, None: a new temporary folder), unless the user set them or
    Habana's core is already imported (too late: its built-in lists apply). Says which lists apply."""
    given = (environ.get(LOWER_LIST_ENV), environ.get(FP32_LIST_ENV))
    if all(given):
        return f"the autocast op lists {environ[LOWER_LIST_ENV]} and {environ[FP32_LIST_ENV]} set before"
    if CORE_MODULE in modules:
        logger.warning(
            "%s was imported before the bridge could declare its autocast op lists (%s, %s): Habana's built-in "
            "bfloat16/float32 lists apply, not Habana/stable-diffusion-2's",
            CORE_MODULE,
            LOWER_LIST_ENV,
            FP32_LIST_ENV,
        )
        return "Habana's built-in autocast op lists (its core was imported before)"
    folder = Path(tempfile.mkdtemp(prefix="ldm3d-bridge-hpu-autocast-")) if folder is None else folder
    lower, fp32 = folder / "lower_list.txt", folder / "fp32_list.txt"
    lower.write_text("".join(f"{op}\n" for op in BF16_OPS), encoding="utf-8")
    fp32.write_text("".join(f"{op}\n" for op in FP32_OPS), encoding="utf-8")
    environ[LOWER_LIST_ENV], environ[FP32_LIST_ENV] = str(lower), str(fp32)
    return f"Habana/stable-diffusion-2's autocast op lists ({folder})"


def prefer_lazy_mode(environ: MutableMapping[str, str]) -> None:
    """``PT_HPU_LAZY_MODE=1`` unless the user chose a mode (HPU graphs and ``mark_step`` are lazy mode's)."""
    mode = environ.setdefault(LAZY_MODE_ENV, "1")
    if mode != "1":
        logger.warning(
            "%s=%s: optimum-habana runs LDM3D in lazy mode (1); the HPU graphs and mark_step here assume it",
            LAZY_MODE_ENV,
            mode,
        )


def allow_bf16_sdpa_reduction() -> bool:
    """optimum-habana's ``sdp_on_bf16``: reduced-precision reductions allowed in the math backend of
    scaled-dot-product attention (process-wide); False where this torch has no such switch."""
    setter = getattr(torch._C, "_set_math_sdp_allow_fp16_bf16_reduction", None)
    if setter is None:
        logger.info("this torch cannot allow bf16 reductions in SDPA's math backend (sdp_on_bf16); left as it is")
        return False
    setter(True)
    return True
