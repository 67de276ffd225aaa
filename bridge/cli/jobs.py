"""One-job commands: generate, img2img, upscale (engine + writer, no server), preview, export-mesh,
export-splat."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge.cli.args import MODEL_KEYS
from bridge.settings import BridgeSettings, load_settings


class CliError(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def engine_settings(s: BridgeSettings, device: str | None = None) -> Any:
    """The engine's settings from the bridge's, on ``device`` (default: the one ``device`` setting)."""
    from ldm3d_engine import EngineSettings

    if device is None and len(s.devices) > 1:
        raise CliError(f"--device {s.device}: a list of devices is for serve (one worker each); give one here")
    return EngineSettings(
        model=s.model,
        preset=s.preset,
        device=device or s.device,
        dtype=s.dtype,
        cache_dir=s.cache_dir,
        ov_cache=s.ov_cache,
        ov_weights=s.ov_weights,
        offline=s.offline,
        compile=s.compile,
        offload=s.offload,
        vae_tiling=s.vae_tiling,
        depth_model=s.depth_model,
        safety=s.safety,
        safety_model=s.safety_model,
    )


def progress_bar(step: int, total: int) -> None:
    filled = 30 * step // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {step}/{total}")
    if step == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _one_job(
    args: argparse.Namespace, run: Any, extra: dict[str, Any] | None = None, *, depth_only: bool = False
) -> int:
    """Load the engine named by the flags (``depth_only``: just the depth estimator), run ``run(engine)``
    with a progress bar, write the job folder."""
    from bridge.output.job_ids import new_job_id
    from bridge.output.writer import TextureWriter
    from ldm3d_engine import load_depth_only, load_engine

    settings = load_settings({k: getattr(args, k, None) for k in MODEL_KEYS})
    writer = TextureWriter(Path(settings.output), fmt=settings.format)
    writer.prepare()  # early: a folder that is unwritable or held by a running bridge fails before the model loads
    try:
        load = load_depth_only if depth_only else load_engine
        engine = load(engine_settings(settings))
        files = writer.write(new_job_id(), run(engine), extra)
    finally:
        writer.close()
    print(files.folder)
    return 0


def _text_request(args: argparse.Namespace, **more: Any) -> Any:
    from ldm3d_engine.types import GenerateRequest, Img2ImgRequest

    fields = {
        "prompt": args.prompt,
        "negative_prompt": args.negative,
        "seed": args.seed,
        "steps": args.steps,
        "guidance": args.guidance,
        "width": args.width,
        "height": args.height,
        "scheduler": args.scheduler,
        "seamless": None if args.seamless is None else args.seamless == "on",
        "sampling": args.sampling,
    }
    return Img2ImgRequest(**fields, **more) if more else GenerateRequest(**fields)


def cmd_generate(args: argparse.Namespace) -> int:
    request = _text_request(args)

    def run(engine: Any) -> Any:
        engine.resolve(request)  # refuse a bad request before the model runs
        return engine.generate(request, on_step=progress_bar)

    return _one_job(args, run)


def cmd_img2img(args: argparse.Namespace) -> int:
    from bridge.output.images import read_depth16, read_rgb

    request = _text_request(args, strength=args.strength)
    image = read_rgb(Path(args.image))
    depth = read_depth16(Path(args.depth)) if args.depth else None
    extra = {"input_image": str(Path(args.image).resolve())}
    if args.depth:
        extra["input_depth_map"] = str(Path(args.depth).resolve())
    return _one_job(args, lambda engine: engine.img2img(request, image, depth, on_step=progress_bar), extra)


def cmd_depth(args: argparse.Namespace) -> int:
    from bridge.output.images import read_rgb
    from ldm3d_engine.types import DepthRequest

    request = DepthRequest(equirect=args.equirect == "on")
    image = read_rgb(Path(args.image))
    extra = {"input_image": str(Path(args.image).resolve())}

    def run(engine: Any) -> Any:
        engine.resolve_depth(request, (image.shape[1], image.shape[0]))  # refuse before any work
        return engine.estimate_depth(request, image, on_step=progress_bar)

    return _one_job(args, run, extra, depth_only=True)


def cmd_upscale(args: argparse.Namespace) -> int:
    from bridge.output.formats import texture
    from bridge.output.images import read_depth16, read_rgb
    from ldm3d_engine.types import UPSCALE_PROMPT, UpscaleRequest

    job_dir = Path(args.job_dir)
    rgb, depth = read_rgb(texture(job_dir, "rgb")), read_depth16(texture(job_dir, "depth"))
    width, height = _size(args.size) if args.size else (None, None)
    if args.size and args.scale:
        raise CliError("give --scale or --size, not both", 2)
    # as the source was made unless told: a panorama keeps its wrap
    seamless = _made_seamless(job_dir) if args.seamless is None else args.seamless == "on"
    request = UpscaleRequest(
        prompt=args.prompt or UPSCALE_PROMPT,
        negative_prompt=args.negative,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        noise_level=args.noise_level,
        scheduler=args.scheduler,
        seamless=seamless,
        width=width,
        height=height,
        scale=args.scale,
    )
    extra = {"source_job": job_dir.name, "source_folder": str(job_dir.resolve())}
    return _one_job(args, lambda engine: engine.upscale(request, rgb, depth, on_step=progress_bar), extra)


def _made_seamless(job_dir: Path) -> bool:
    """Whether the source job was made with the seamless wrap, from its ``meta.json``; a folder
    without one (textures made elsewhere) was not. A damaged one is refused, naming the flag."""
    from bridge.output.writer import BadMeta, read_meta

    try:
        return read_meta(job_dir).get("seamless") is True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (BadMeta, OSError) as exc:
        raise CliError(
            f"{job_dir / 'meta.json'}: {exc}; say how the source was made with --seamless on|off", 2
        ) from None


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise CliError(f"--size {text!r}: write it as WIDTHxHEIGHT, e.g. 1024x768", 2) from None
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise CliError(f"--size {text}: each side must be 16..8192", 2)
    return width, height


def write_preview(
    job_dir: Path,
    out: Path,
    camera: Any,
    size: tuple[int, int],
    stereo: bool = False,
    eye_separation: float = 0.064,
    strength: float = 1.0,
    fisheye: float | None = None,
    objects: Sequence[str] = (),
) -> None:
    """Render ``job_dir``'s world (and ``objects``: folders or object job ids) to the PNG ``out``."""
    from PIL import Image

    from bridge.cli.world_objects import load_objects
    from bridge.render.dome import render_fisheye
    from bridge.render.objects import draw_objects
    from bridge.render.preview import SphereRenderer, load_job_textures, render_stereo

    rgb, depth = load_job_textures(job_dir)
    placed = load_objects(objects, job_dir)  # a missing or bad object fails before the GL context starts
    renderer = SphereRenderer(rgb, depth, strength=strength)
    try:
        if placed:
            draw_objects(renderer, placed)
        if fisheye is not None:
            image = render_fisheye(renderer, camera, size, fisheye)
        elif stereo:
            image = render_stereo(renderer, camera, size, eye_separation)
        else:
            image = renderer.render(camera, size)
    finally:
        renderer.release()
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out)


def cmd_preview(args: argparse.Namespace) -> int:
    from bridge.render.preview import Camera

    if not 1.0 <= args.fov <= 170.0:
        raise CliError(f"--fov {args.fov}: use 1..170 degrees", 2)
    if args.fisheye is not None:
        if not 1.0 <= args.fisheye <= 360.0:
            raise CliError(f"--fisheye {args.fisheye:g}: use 1..360 degrees (180 for a dome master)", 2)
        if args.stereo:
            raise CliError("--fisheye and --stereo: choose one (a stereo dome master is not made here)", 2)
    pitch = args.pitch if args.pitch is not None else (90.0 if args.fisheye is not None else 0.0)
    camera = Camera(eye=tuple(args.eye), yaw=args.yaw, pitch=pitch, fov=args.fov)
    write_preview(
        Path(args.job_dir),
        Path(args.out),
        camera,
        _size(args.size),
        args.stereo,
        args.eye_separation,
        args.strength,
        args.fisheye,
        args.object,
    )
    print(Path(args.out).resolve())
    return 0


def cmd_export_mesh(args: argparse.Namespace) -> int:
    from bridge.cli.world_objects import load_objects
    from bridge.render.mesh import export_mesh

    job_dir = Path(args.job_dir)
    vertices, triangles = export_mesh(
        job_dir,
        Path(args.out),
        columns=args.columns,
        rows=args.rows,
        strength=args.strength,
        objects=load_objects(args.object, job_dir),
    )
    print(f"{Path(args.out).resolve()} ({vertices} vertices, {triangles} triangles)")
    return 0


def cmd_export_splat(args: argparse.Namespace) -> int:
    from bridge.render.splat import export_splat

    out = Path(args.out)
    count, kind = export_splat(Path(args.job_dir), out, fmt=args.format, step=args.step, strength=args.strength)
    print(f"{out.resolve()} ({count} splats, {kind})")
    return 0
