"""Object jobs on the CPU: time and peak memory per object model, tiny and at the real sizes.

    .venv/bin/python bench/object_speed.py [--models tiny-ln3diff,tiny-shap-e,ln3diff,shap-e]
                                           [--steps 1] [--resolution 32] [--threads N]

One object job (prompt → mesh) per model through the engine's ``generate_object``, split as the
engine times it (``MeshResult.timings``: text encoding, denoising, decoding, meshing):

* ``tiny-ln3diff``, ``tiny-shap-e``: the offline tiny models (``load_object_engine``; built under the
  offline models' folder on first use): one warm-up job, then the fastest of 3 jobs (each with a
  prompt of its own: LN3Diff's engine keeps recent prompts' embeddings, which would hide the encoder);
* ``ln3diff``, ``shap-e``: the **real-size architectures with random weights** (nothing downloaded; a
  pass costs the same with trained weights), built here: LN3Diff from our real config
  (``ln3diff_config.REAL``: DiT-L/2 + DiT2-L/2 decoder, 1 017 M parameters) with CLIP ViT-L/14's text
  tower; Shap-E from the sizes in diffusers' ``scripts/convert_shap_e_to_diffusers.py``
  (``PRIOR_CONFIG``: 24 layers, 1024 wide, 1024 latent tokens; the renderer's defaults) with CLIP
  ViT-L/14's text tower projected to 768, the marching-cubes table of ``tiny-shap-e`` and its Heun
  scheduler. Their tokenizer is the offline one (77 tokens, padded: the encoder's work is the real
  one). Each runs one job, without a warm-up (first-call costs are milliseconds against seconds a pass).

The defaults are sized for a 2-core CPU (about 80 s of CPU time in all): every model at
``--steps 1`` and ``--resolution 32`` cells (33³ grid points), its guidance at its default (a batch of
2 per pass). Each model runs in a child process forked for it; its peak memory is that child's
resident high-water mark (``VmHWM`` in /proc) less its resident size when it started (the weights
and the job's working memory; the imports' share is printed once). Ratios are against the first
model (``tiny-ln3diff`` by default), measured in the same run.

A pass is one evaluation of the denoiser on the guided batch: one a step for LN3Diff (Euler), 2n − 1
for n steps of Shap-E (Heun). The last table **extrapolates** (it is not measured) each model's own
default job (LN3Diff 250 steps on 192³ points, Shap-E 64 steps on 128³) from the measured figures:
denoising as passes × s/pass, meshing scaled by the number of grid points, text and decoding as
measured. Random weights make no real surface (``ln3diff``'s density never reaches its threshold),
so the meshing measured there holds no colour queries at the vertices: a lower bound.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import multiprocessing
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import torch
from diffusers import HeunDiscreteScheduler, PriorTransformer
from diffusers.pipelines.shap_e import ShapERenderer
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from ldm3d_engine import EngineSettings, load_object_engine
from ldm3d_engine.backends.devices import resolve_placement
from ldm3d_engine.object_types import MeshResult, ObjectEngineLike, ObjectRequest
from ldm3d_engine.objects.ln3diff import LN3DiffEngine
from ldm3d_engine.objects.ln3diff_config import REAL as LN3DIFF_REAL
from ldm3d_engine.objects.loading import LN3DiffFiles
from ldm3d_engine.objects.network import LN3DiffNetwork
from ldm3d_engine.objects.shap_e import REAL as SHAP_E_REAL
from ldm3d_engine.objects.shap_e import ShapEEngine
from ldm3d_engine.objects.shap_e_files import ShapEFiles
from ldm3d_engine.offline.tiny import write_tokenizer
from ldm3d_engine.offline.tiny_objects import SCHEDULER, marching_cubes_table
from ldm3d_engine.sampling.prompts import PromptEncoder

MODELS = ("tiny-ln3diff", "tiny-shap-e", "ln3diff", "shap-e")
PROMPT, WARM_UP_PROMPT, SEED = "a red lantern", "a warm-up", 7
TINY_REPEATS = 3
#: Shap-E's prior as diffusers' conversion script builds it (``PRIOR_CONFIG``).
SHAP_E_PRIOR: dict[str, Any] = {
    "num_attention_heads": 16,
    "attention_head_dim": 64,
    "num_layers": 24,
    "embedding_dim": 1024,
    "num_embeddings": 1024,
    "additional_embeddings": 0,
    "time_embed_act_fn": "gelu",
    "norm_in_type": "layer",
    "encoder_hid_proj_type": None,
    "added_emb_type": None,
    "time_embed_dim": 4096,
    "embedding_proj_dim": 768,
    "clip_embed_dim": 2048,
}


@dataclass(frozen=True)
class Figures:
    params_m: float
    build_s: float
    text_s: float
    denoise_s: float
    decode_s: float
    mesh_s: float
    steps: int
    resolution: int
    vertices: int
    #: The model's own default job (steps, cells), for the extrapolation.
    default_steps: int
    default_resolution: int
    peak_mib: float

    @property
    def total_s(self) -> float:
        return self.text_s + self.denoise_s + self.decode_s + self.mesh_s


def passes(model: str, steps: int) -> int:
    """Denoiser evaluations of a job: Euler once a step (LN3Diff), Heun twice but on the last (Shap-E)."""
    return 2 * steps - 1 if "shap-e" in model else steps


def clip_text_config(vocab: int) -> CLIPTextConfig:
    """CLIP ViT-L/14's text tower (openai/clip-vit-large-patch14) with the offline tokenizer's ids."""
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        projection_dim=768,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )


def real_ln3diff(tokenizer_dir: Path, vocab: int) -> ObjectEngineLike:
    placement = resolve_placement("cpu", None)
    network = LN3DiffNetwork(LN3DIFF_REAL).eval()
    text_encoder = CLIPTextModel(clip_text_config(vocab)).eval()
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    device, dtype = placement.device, placement.dtype
    prompts = PromptEncoder(tokenizer, text_encoder, device, dtype, lambda _m: contextlib.nullcontext())
    files = LN3DiffFiles(tokenizer_dir, tokenizer_dir, tokenizer_dir, LN3DIFF_REAL, "ln3diff (random)", "n/a")
    return LN3DiffEngine(network, prompts, placement, files)


def real_shap_e(tokenizer_dir: Path, vocab: int) -> ObjectEngineLike:
    renderer = ShapERenderer().eval()  # diffusers' defaults are Shap-E's (RENDERER_CONFIG is empty)
    cases, masks = marching_cubes_table()
    renderer.mesh_decoder.cases.copy_(cases)
    renderer.mesh_decoder.masks.copy_(masks)
    parts = {
        "tokenizer": CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=77),
        "text_encoder": CLIPTextModelWithProjection(clip_text_config(vocab)).eval(),
        "prior": PriorTransformer(**SHAP_E_PRIOR).eval(),
        "scheduler": HeunDiscreteScheduler(**SCHEDULER),
        "shap_e_renderer": renderer,
    }
    files = ShapEFiles(tokenizer_dir, "shap-e (random)", "n/a", tiny=False)
    return ShapEEngine(parts, resolve_placement("cpu", None), files, SHAP_E_REAL)


def params_m(engine: object) -> float:
    """Parameters of every torch module the engine holds, in millions."""
    modules = [v for v in vars(engine).values() if isinstance(v, torch.nn.Module)]
    prompts = vars(engine).get("_prompts")
    if prompts is not None:
        modules.append(vars(prompts)["_text_encoder"])
    return sum(p.numel() for m in modules for p in m.parameters()) / 1e6


def status_mib(key: str) -> float:
    match = re.search(key + r":\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match[1]) / 1024 if match else float("nan")


def measure(model: str, steps: int, resolution: int) -> Figures:
    """One model's build and job, in this (forked) process."""
    with contextlib.suppress(OSError):  # the high-water mark from here on ("5": reset to the resident size)
        Path("/proc/self/clear_refs").write_text("5")
    start_rss = status_mib("VmRSS")
    started = time.perf_counter()
    if model.startswith("tiny-"):
        engine = load_object_engine(EngineSettings(device="cpu", offline=True), model)
    else:
        with tempfile.TemporaryDirectory() as folder:
            vocab = write_tokenizer(Path(folder))
            build: Callable[[Path, int], ObjectEngineLike] = real_ln3diff if model == "ln3diff" else real_shap_e
            torch.manual_seed(0)
            engine = build(Path(folder), vocab)
    build_s = time.perf_counter() - started

    def job(prompt: str) -> MeshResult:
        return engine.generate_object(ObjectRequest(prompt, seed=SEED, steps=steps, resolution=resolution))

    if model.startswith("tiny-"):  # milliseconds a job: warmed up, and the fastest of a few (the baseline)
        job(WARM_UP_PROMPT)
        prompts = [PROMPT] + [f"{PROMPT}, take {i + 2}" for i in range(TINY_REPEATS - 1)]  # none a cached one
        result = min((job(prompt) for prompt in prompts), key=lambda done: done.timings.total_s)
    else:
        result = job(PROMPT)
    defaults = engine.resolve_object(ObjectRequest(PROMPT))
    t = result.timings
    return Figures(
        params_m(engine),
        build_s,
        t.text_encoding_s,
        t.denoising_s,
        t.decoding_s,
        t.meshing_s,
        steps,
        resolution,
        len(result.vertices),
        defaults.steps,
        defaults.resolution,
        status_mib("VmHWM") - start_rss,
    )


def _child(model: str, steps: int, resolution: int, out: Connection) -> None:
    try:
        out.send(measure(model, steps, resolution))
    except Exception as exc:  # noqa: BLE001 (any failure is reported by the parent, which fails the run)
        out.send(f"{type(exc).__name__}: {exc}")


def run(model: str, steps: int, resolution: int) -> Figures:
    """``measure`` in a child forked for it (its own high-water mark; its memory returned at exit)."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(model, steps, resolution, send))
    child.start()
    send.close()  # the child's copy is the only one left: its death ends recv() with EOFError
    try:
        answer = receive.recv()
    except EOFError:
        answer = "the child process died without an answer"
    child.join()
    if child.exitcode:
        answer = f"{answer} (exit status {child.exitcode})"
    if not isinstance(answer, Figures):
        raise SystemExit(f"{model}: {answer}")
    return answer


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=32, help="marching-cubes cells per axis")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(MODELS)}")
    began = time.perf_counter()
    print(
        f"{cpu_name()}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the start; "
        f"the imports' resident memory {status_mib('VmRSS'):.0f} MiB"
    )
    print(
        f"one job each: {PROMPT!r}, seed {SEED}, {args.steps} step(s), {args.resolution} cells "
        f"({args.resolution + 1}³ points), guidance at its default; tiny ones: the fastest of {TINY_REPEATS} after a "
        "warm-up; ln3diff, shap-e: real-size, random weights, one job"
    )
    rows = {model: run(model, args.steps, args.resolution) for model in models}
    base_name = models[0]
    base = rows[base_name].total_s
    print(
        f"\n{'model':<13} {'params M':>9} {'build s':>8} {'text s':>7} {'denoise s':>10} {'passes':>6} "
        f"{'s/pass':>8} {'decode s':>9} {'mesh s':>7} {'total s':>8} {'× ' + base_name:>16} {'peak MiB':>9} "
        f"{'vertices':>8}"
    )
    for name, f in rows.items():
        n = passes(name, f.steps)
        print(
            f"{name:<13} {f.params_m:>9.1f} {f.build_s:>8.2f} {f.text_s:>7.3f} {f.denoise_s:>10.3f} {n:>6} "
            f"{f.denoise_s / n:>8.3f} {f.decode_s:>9.3f} {f.mesh_s:>7.3f} {f.total_s:>8.3f} "
            f"{f.total_s / base:>15.1f}× {f.peak_mib:>9.0f} {f.vertices:>8}"
        )
    print(
        "\nExtrapolated, not measured: each model's own default job from the figures above "
        "(denoising = passes × s/pass; meshing × grid points; text and decoding as measured)"
    )
    print(f"{'model':<13} {'steps':>6} {'passes':>6} {'cells':>6} {'denoise s':>10} {'mesh s':>8} {'total s':>8}")
    for name, f in rows.items():
        n_full = passes(name, f.default_steps)
        denoise = n_full * f.denoise_s / passes(name, f.steps)
        mesh = f.mesh_s * ((f.default_resolution + 1) / (f.resolution + 1)) ** 3
        total = f.text_s + denoise + f.decode_s + mesh
        print(
            f"{name:<13} {f.default_steps:>6} {n_full:>6} {f.default_resolution:>6} {denoise:>10.1f} {mesh:>8.1f} "
            f"{total:>8.1f}"
        )
    print(
        f"\nbench wall time {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.1f} at the end "
        "(other work on the CPU inflates every figure)"
    )


if __name__ == "__main__":
    main()
