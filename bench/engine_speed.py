"""Prompt → arrays → files: diffusers' LDM3D pipeline against our engine, in one run.

    .venv/bin/python bench/engine_speed.py                       # CUDA: 1024x512 and 2048x1024, 50 / 20 steps
    .venv/bin/python bench/engine_speed.py --device cpu          # CPU: 256x128, 4 / 2 steps (minutes, not hours)
    .venv/bin/python bench/engine_speed.py --arch small --size 128x64 --quality-steps 2 --live-steps 2   # CI

The defaults follow the device: on a CPU (``--device cpu``, the default without CUDA) one 256×128
size with 4 quality and 2 live steps, since the GPU's sizes and step counts take hours there; on any
other device 1024×512 and 2048×1024 with the model card's 50 and the `live` preset's 20 steps.

Builds the real-size LDM3D-pano architecture from configs with random weights (speed does
not depend on the weights): the SD 1.x UNet (320/640/1280/1280, cross-attention 768), the
CLIP ViT-L/14 text encoder (12 layers, 768 wide) and the 4-channel VAE (128/256/512/512).
`--arch small` shrinks every width (same structure) so CI can run the harness quickly.

`--profile` then splits one `live` job into its stages and lists its costliest operators.

`--backend openvino` (the [openvino] extra; on the CPU, one size)
times, in the same run, against (a): our engine in torch fp32 (c), in torch bf16 where the CPU has
native bfloat16, and on OpenVINO's CPU device in f32 and bf16 (`quality` sampling, seamless), with
the first start (conversion, empty cache) and a cached start, and the PSNR of each variant's RGB
and depth against (c) from the same starting noise. `--dtype bfloat16` runs (c)–(e) in torch bf16.
`--ov-weights int8` adds (i): OpenVINO bf16 with the UNet's weights compressed to int8 by NNCF.
With `--backend openvino` every torch row, the previews, the safety checker and `--profile` are
measured too (the profile before the OpenVINO rows, while our torch engine is loaded), so one run
prints everything.

Then what previews of a world as it forms cost a job (``bench/preview_cost.py``: every 5 steps, the
server's default; the extra time as a share of the job) and how near a preview is to the VAE's
decode of the same x₀ (PSNR), for `live` and `quality` jobs.

Then the image safety checker's cost per job (diffusers' StableDiffusionSafetyChecker at the
real checker's size, on every view of the panorama), as a share of (d). Rows (a)–(f) run
without it, as the pipeline in (a) does.

Times on the same device and inputs:
  (a) diffusers' StableDiffusionLDM3DPipeline as the LDM3D blog uses it: fp32, quality steps, output_type="np"
  (b) the same in fp16 (CUDA only)
  (c) our engine, `quality` sampling (the model's DDIM, same steps)
  (d) our engine, `live` sampling (DPM-Solver++, fewer steps)
  (e) (d) with VAE tiling, flat (tiling cannot wrap around a seamless panorama's seam)
  (f) (d) with model CPU offload (CUDA only)
each from request to arrays and to files on disk (the pipeline's arrays saved with Pillow's
defaults as a user would; ours through the bridge's writer). Prints ms per UNet step, total
seconds, peak GPU memory (CUDA), and our ratios against (a) and (b).
"""

from __future__ import annotations

import argparse
import atexit
import copy
import dataclasses
import datetime
import gc
import itertools
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.preview_cost import preview_rows
from bridge.output.job_ids import new_job_id
from bridge.output.writer import TextureWriter
from ldm3d_engine import EngineSettings, GenerateRequest
from ldm3d_engine.backends.devices import resolve_placement
from ldm3d_engine.models.build import assemble_engine
from ldm3d_engine.models.loading import ModelLocation
from ldm3d_engine.offline.tiny import DDIM_CONFIG, write_tokenizer
from ldm3d_engine.presets import get_preset


def build(arch: str, tokenizer_dir: Path) -> tuple[Any, Any, Any, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    k = 1 if arch == "full" else 8  # "small": every width divided by 8
    write_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768 // k,
            intermediate_size=3072 // k,
            num_hidden_layers=12,
            num_attention_heads=12 if k == 1 else 4,
            max_position_embeddings=77,
            bos_token_id=len(tokenizer) - 2,
            eos_token_id=len(tokenizer) - 1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=tuple(c // k for c in (320, 640, 1280, 1280)),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768 // k,
        attention_head_dim=8,
        norm_num_groups=32 // (4 if k > 1 else 1),
    )
    vae = AutoencoderKL(
        in_channels=4,
        out_channels=4,
        latent_channels=4,
        layers_per_block=2,
        block_out_channels=tuple(c // k for c in (128, 256, 512, 512)),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32 // (4 if k > 1 else 1),
        sample_size=512,
    )
    return tokenizer, text_encoder.eval(), unet.eval(), vae.eval()


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo) and its bfloat16 instructions."""
    from ldm3d_engine.backends.devices import cpu_bf16

    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "CPU"
    return f"{name}, bf16: {cpu_bf16() or 'not native'}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


TAKES = itertools.count()  # our engine keeps recent prompts' embeddings; every timed job gets a new one


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> str:
    """The most GPU memory allocated since the last reset, weights included. (Not measured on the
    CPU: the allocator keeps freed memory, so the process's resident set says little per run.)"""
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB" if device.type == "cuda" else "n/a (CPU)"


def save_like_a_user(out: Path, rgb: np.ndarray, depth: np.ndarray) -> None:
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).save(out / "rgb.png")
    Image.fromarray(np.rint(np.clip(depth, 0, 1) * 65535).astype(np.uint16)).save(out / "depth.png")


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    steps: int
    arrays_s: float
    files_s: float
    step_ms: float
    peak: str


def median_row(rows: list[Row]) -> Row:
    """The median of repeated runs, figure by figure."""
    first = rows[0]
    return Row(
        first.name,
        first.steps,
        statistics.median(r.arrays_s for r in rows),
        statistics.median(r.files_s for r in rows),
        statistics.median(r.step_ms for r in rows),
        first.peak,
    )


def run_pipeline(
    modules: tuple[Any, Any, Any, Any],
    dtype: torch.dtype,
    device: torch.device,
    size: tuple[int, int],
    steps: int,
    out: Path,
    name: str,
    repeats: int = 1,
) -> Row:
    from diffusers import DDIMScheduler, StableDiffusionLDM3DPipeline

    tokenizer, text_encoder, unet, vae = modules
    pipe = StableDiffusionLDM3DPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler.from_config(DDIM_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    ).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    width, height = size
    kwargs = {"height": height, "width": width, "guidance_scale": 7.0, "output_type": "np"}
    pipe("360 view of a forest", num_inference_steps=2, **kwargs)  # warm-up
    stamps: list[float] = []

    def on_step(pipe: Any, i: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
        sync(device)
        stamps.append(time.perf_counter())
        return kw

    rows = []
    for _ in range(repeats):
        stamps.clear()
        reset_peak(device)
        sync(device)
        t0 = time.perf_counter()
        result = pipe(
            "360 view of a forest",
            num_inference_steps=steps,
            generator=torch.Generator(device).manual_seed(1),
            callback_on_step_end=on_step,
            **kwargs,
        )
        sync(device)
        t1 = time.perf_counter()
        save_like_a_user(out, np.asarray(result.rgb)[0], np.asarray(result.depth)[0, ..., 0])
        t2 = time.perf_counter()
        step_ms = statistics.median(np.diff(stamps)) * 1000 if len(stamps) > 1 else (stamps[0] - t0) * 1000
        rows.append(Row(name, steps, t1 - t0, t2 - t0, step_ms, peak_mb(device)))
    return median_row(rows)


def run_ours(
    engine: Any,
    device: torch.device,
    size: tuple[int, int],
    sampling: str,
    writer: TextureWriter,
    name: str,
    repeats: int = 1,
    seamless: bool = True,
) -> Row:
    width, height = size
    engine.generate(
        GenerateRequest("warm-up", seed=0, steps=2, width=width, height=height, sampling=sampling, seamless=seamless)
    )
    stamps: list[float] = []

    def on_step(step: int, total: int) -> None:
        sync(device)  # as for the pipeline: a step is done when the GPU has done it, not when it is queued
        stamps.append(time.perf_counter())

    rows = []
    for _ in range(repeats):
        # a prompt the engine has not seen, as the pipeline encodes every prompt (only the empty
        # negative prompt, the same in every job of a show, comes from the engine's kept embeddings)
        prompt = f"a forest, take {next(TAKES)}"
        request = GenerateRequest(prompt, seed=1, width=width, height=height, sampling=sampling, seamless=seamless)
        stamps.clear()
        reset_peak(device)
        sync(device)
        t0 = time.perf_counter()
        result = engine.generate(request, on_step=on_step)
        t1 = time.perf_counter()
        writer.write(new_job_id(), result)
        t2 = time.perf_counter()
        step_ms = statistics.median(np.diff(stamps)) * 1000 if len(stamps) > 1 else result.timings.denoising_s * 1000
        rows.append(Row(name, result.request.steps, t1 - t0, t2 - t0, step_ms, peak_mb(device)))
    return median_row(rows)


def safety_checker_cost(arch: str, device: torch.device, size: tuple[int, int], repeats: int) -> tuple[float, int]:
    """Median seconds of the image safety checker on one picture of ``size`` (a seamless panorama:
    every view, the seam's too) and its view count: diffusers' StableDiffusionSafetyChecker at the
    real checker's size (CLIP ViT-L/14 vision tower, 24 layers, 1024 wide, 224 px; ``small``: /8 wide)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessorPil

    from ldm3d_engine.safety.checker import SafetyChecker

    k = 1 if arch == "full" else 8
    vision = {
        "hidden_size": 1024 // k,
        "intermediate_size": 4096 // k,
        "num_hidden_layers": 24,
        "num_attention_heads": 16 // (2 if k > 1 else 1),
        "image_size": 224,
        "patch_size": 14,
    }
    torch.manual_seed(0)
    model = StableDiffusionSafetyChecker(CLIPConfig(vision_config=vision, projection_dim=768 // k))
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model.to(device, dtype).eval().requires_grad_(False)
    checker = SafetyChecker(model, CLIPImageProcessorPil(), device, "bench:safety-checker-architecture")
    width, height = size
    picture = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    checker.check(picture, wrap=True)  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        verdict = checker.check(picture, wrap=True)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), verdict.views


def profile_live_job(engine: Any, device: torch.device, size: tuple[int, int], writer: TextureWriter) -> None:
    """Where one `live` job's time goes: the engine's stages from an unprofiled run, then the
    operators that took the most time (device time on CUDA) from a profiled one."""
    from torch.profiler import ProfilerActivity, profile

    width, height = size
    request = GenerateRequest(f"a forest, take {next(TAKES)}", seed=1, width=width, height=height, sampling="live")
    result = engine.generate(request)
    t0 = time.perf_counter()
    writer.write(new_job_id(), result)
    stages = {**dataclasses.asdict(result.timings), "writing_s": time.perf_counter() - t0}
    total = sum(stages.values())
    print(f"\none live job at {width}×{height}, where the time goes ({total:.2f} s):")
    for name, seconds in stages.items():
        print(f"   {name.removesuffix('_s'):14} {seconds:7.3f} s  {100 * seconds / total:5.1f} %")
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        engine.generate(dataclasses.replace(request, prompt=f"a forest, take {next(TAKES)}"))
        sync(device)
    sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(f"\nthe operators of that job by {sort_by} (torch.profiler; profiling adds overhead):")
    print(prof.key_averages().table(sort_by=sort_by, row_limit=12, max_name_column_width=40))


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def fidelity_target(reference: Any, size: tuple[int, int]) -> tuple[GenerateRequest, torch.Tensor, Any]:
    """A quality job of ``reference`` (torch fp32) and its starting noise: what each variant is compared with."""
    width, height = size
    request = GenerateRequest("a forest, fidelity", seed=9, width=width, height=height, sampling="quality")
    req = reference.resolve(request)
    noise = reference.initial_latents(req)
    return request, noise, reference.generate_from_latents(req, noise)


def openvino_rows(
    make: Any,
    target: tuple[GenerateRequest, torch.Tensor, Any],
    size: tuple[int, int],
    writer: TextureWriter,
    repeats: int,
    tmp: Path,
    int8: bool = False,
) -> list[Row]:
    """Our engine in torch bf16 (where native) and on openvino:CPU in f32 and bf16, each timed as (c),
    after a first start that converts into an empty cache and a second start that reads it. One engine
    at a time: a full-size one holds about 10 GB on OpenVINO (torch's modules and the compiled parts)."""
    from ldm3d_engine.backends.devices import cpu_bf16

    width, height = size
    fidelity_request, noise, want = target
    variants: list[tuple[str, str, str | None, str]] = [
        ("(g) ours, OpenVINO CPU f32", "openvino:CPU", "float32", "model"),
        ("(h) ours, OpenVINO CPU bf16", "openvino:CPU", "bfloat16", "model"),
    ]
    if int8:
        variants.append(("(i) ours, OpenVINO CPU bf16, int8 UNet", "openvino:CPU", "bfloat16", "int8"))
    if cpu_bf16() is not None:
        variants.insert(0, ("(c16) ours, torch bf16", "cpu", "bfloat16", "model"))
    else:
        print("   (torch bf16 skipped: this CPU has no native bfloat16)")
    rows = []
    print(f"   {'':42} {'1st start s':>11} {'cached s':>9} {'RGB PSNR':>9} {'depth PSNR':>10}  (vs (c))")
    for name, device, dtype, weights in variants:
        cache = tmp / f"openvino-{dtype}-{weights}"
        starts = []
        engine = None
        for _ in range(2 if device.startswith("openvino") else 1):  # the first converts, the second reads
            engine = None
            gc.collect()
            t0 = time.perf_counter()
            engine = make(device=device, dtype=dtype, ov_cache=str(cache), ov_weights=weights)
            engine.generate(GenerateRequest("warm-up", seed=0, steps=2, width=width, height=height, sampling="quality"))
            starts.append(time.perf_counter() - t0)
        assert engine is not None
        got = engine.generate_from_latents(engine.resolve(fidelity_request), noise)
        rgb_db, depth_db = psnr(got.rgb, want.rgb, 255), psnr(got.depth_float, want.depth_float, 1.0)
        cached = f"{starts[1]:9.1f}" if len(starts) > 1 else f"{'-':>9}"
        print(f"   {name:42} {starts[0]:11.1f} {cached} {rgb_db:9.1f} {depth_db:10.1f}")
        rows.append(run_ours(engine, torch.device("cpu"), size, "quality", writer, name, repeats))
        del engine
        gc.collect()
        shutil.rmtree(cache, ignore_errors=True)  # a full-size variant's converted models are several GB
    return rows


def parse_size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()  # the deprecation and dtype notices are not the figures
    transformers_logging.set_verbosity_error()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", choices=["full", "small"], default="full")
    parser.add_argument(
        "--size", action="append", help="WxH (repeat); default 256x128 on the CPU, else 1024x512 and 2048x1024"
    )
    parser.add_argument("--quality-steps", type=int, help="default 4 on the CPU, else 50 (the model card's)")
    parser.add_argument("--live-steps", type=int, help="default 2 on the CPU, else 20 (the live preset's)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our UNet (paid in the warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant; the median is printed")
    parser.add_argument("--profile", action="store_true", help="then profile one live job at the first size")
    parser.add_argument("--dtype", help="our engine's dtype for (c)–(e) (default: the device's)")
    parser.add_argument(
        "--backend", choices=["torch", "openvino"], default="torch", help="openvino: also torch bf16 and OpenVINO"
    )
    parser.add_argument("--ov-weights", choices=["model", "int8"], default="model", help="int8: also row (i)")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_cpu = device.type == "cpu"
    args.size = args.size or (["256x128"] if on_cpu else ["1024x512", "2048x1024"])
    args.quality_steps = args.quality_steps or (4 if on_cpu else 50)
    args.live_steps = args.live_steps or (2 if on_cpu else 20)
    if args.backend == "openvino" and not on_cpu:
        parser.error("--backend openvino compares with torch on the cpu: use --device cpu")
    if args.backend == "openvino" and len(args.size) != 1:
        parser.error("--backend openvino: one --size (256x128 on a CPU)")
    sizes = [parse_size(s) for s in args.size]
    tmp = Path(tempfile.mkdtemp(prefix="ldm3d-speed-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # its jobs (and OpenVINO's caches) are GBs
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(
        f"engine_speed: {args.arch} LDM3D-pano architecture, random weights, on {device} ({gpu}), "
        f"{datetime.date.today()}, torch {torch.__version__}"
    )
    modules = build(args.arch, tmp / "tokenizer")
    preset = get_preset("ldm3d-pano")
    # our quality sampling runs the model's own steps; the CLI's step counts set both sides
    preset = type(preset)(
        **{**preset.__dict__, "steps": args.quality_steps, "live_steps": args.live_steps, "min_size": 64}
    )

    def engine(device: str = args.device, dtype: str | None = args.dtype, **settings: Any) -> Any:
        placement = resolve_placement(device, dtype, settings.get("ov_cache"), settings.get("ov_weights", "model"))
        return assemble_engine(
            *copy.deepcopy(modules),
            dict(DDIM_CONFIG),  # Intel/ldm3d-pano ships DDIM
            placement=placement,
            location=ModelLocation(tmp, "bench:ldm3d-pano-architecture", preset),
            settings=EngineSettings(device=device, dtype=dtype, compile=args.compile, **settings),
        )

    ours = engine()
    # the memory options, each measured with live sampling: VAE tiling, and model offload on CUDA
    variants: list[tuple[str, dict[str, Any], bool]] = [
        ("(e) ours, live, VAE tiling (flat)", {"vae_tiling": True}, False)
    ]
    if device.type == "cuda":
        variants.append(("(f) ours, live, model offload", {"offload": "model"}, True))
    writer = TextureWriter(tmp / "ours")
    writer.prepare()
    for size in sizes:
        print(
            f"\n{size[0]}×{size[1]}: quality = DDIM {args.quality_steps} steps, live = DPM-Solver++ "
            f"{args.live_steps} steps, guidance 7.0"
        )
        rows = [
            run_pipeline(
                copy.deepcopy(modules),
                torch.float32,
                device,
                size,
                args.quality_steps,
                tmp / "a",
                "(a) diffusers LDM3D pipeline, fp32",
                args.repeats,
            )
        ]
        if device.type == "cuda":
            rows.append(
                run_pipeline(
                    copy.deepcopy(modules),
                    torch.float16,
                    device,
                    size,
                    args.quality_steps,
                    tmp / "b",
                    "(b) diffusers LDM3D pipeline, fp16",
                    args.repeats,
                )
            )
        rows.append(run_ours(ours, device, size, "quality", writer, f"(c) ours, quality ({ours.dtype})", args.repeats))
        rows.append(run_ours(ours, device, size, "live", writer, f"(d) ours, live ({ours.dtype})", args.repeats))
        for name, options, seamless in variants:  # one engine at a time: a full-size copy is 4 GB in fp32
            rows.append(run_ours(engine(**options), device, size, "live", writer, name, args.repeats, seamless))
            gc.collect()
        # previews and the safety checker, measured with our torch engine (printed after the table)
        extras = [line for sampling in ("live", "quality") for line in preview_rows(ours, size, sampling, args.repeats)]
        check_s, views = safety_checker_cost(args.arch, device, size, args.repeats)
        live = next(r for r in rows if r.name.startswith("(d)"))
        extras.append(
            f"   image safety checker: {check_s * 1000:.1f} ms per job ({views} views of 224×224, "
            f"{'fp16' if device.type == 'cuda' else 'fp32'}) = {100 * check_s / live.arrays_s:.1f}% of (d)'s job"
        )
        if args.backend == "openvino":
            if args.profile:  # while our torch engine is here (--backend openvino: one size)
                profile_live_job(ours, device, size, writer)
            target = fidelity_target(ours, size)
            ours = None  # room for one OpenVINO engine beside the modules
            gc.collect()
            rows += openvino_rows(engine, target, size, writer, args.repeats, tmp, args.ov_weights == "int8")
        baselines = [("(a)", rows[0])] + ([("(b)", rows[1])] if device.type == "cuda" else [])
        print(f"   {'':42} {'steps':>5} {'ms/step':>9} {'→arrays s':>10} {'→files s':>9} {'peak GPU':>12}  speed-up")
        for r in rows:
            ours_row = r.name.startswith(("(c", "(d)", "(e)", "(f)", "(g)", "(h)", "(i)"))
            ratio = ", ".join(f"{b.files_s / r.files_s:.2f}× vs {k}" for k, b in baselines) if ours_row else ""
            figures = f"{r.steps:5} {r.step_ms:9.1f} {r.arrays_s:10.2f} {r.files_s:9.2f} {r.peak:>12}"
            step_ratio = f"; {rows[0].step_ms / r.step_ms:.2f}× per step" if ours_row else ""
            print(f"   {r.name:42} {figures}  {ratio}{step_ratio}")
        print("\n".join(extras))
    if args.profile and args.backend == "torch":
        profile_live_job(ours, device, sizes[0], writer)
    if device.type != "cuda":
        print(
            "\n(b) and (f) need CUDA (fp16; offload moves models to a GPU and back); peak memory is measured on CUDA."
        )
    print("(e) runs flat (seamless off): VAE tiling cannot wrap around the seam, so seamless jobs never tile.")


if __name__ == "__main__":
    main()
