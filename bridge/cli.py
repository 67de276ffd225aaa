"""``ldm3d-bridge``: serve, generate, send, demo, env.

Errors print one line (``ldm3d-bridge: error: …``) and exit non-zero:
2 for a wrong command line or setting, 1 for anything that failed at run time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ldm3d_engine.errors import EngineError
from ldm3d_engine.presets import PRESETS, SCHEDULERS

from . import __version__
from .client import FINAL, OscClient
from .errors import BridgeError
from .preview import PreviewError
from .settings import BridgeSettings, SettingsError, load_settings

logger = logging.getLogger("bridge")


class CliError(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # Model libraries' download/shard progress bars are noise on a show machine.
    for name in ("diffusers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
    except ImportError:
        pass


def _engine_settings(s: BridgeSettings) -> Any:
    from ldm3d_engine import EngineSettings

    return EngineSettings(
        model=s.model,
        preset=s.preset,
        device=s.device,
        dtype=s.dtype,
        cache_dir=s.cache_dir,
        offline=s.offline,
        compile=s.compile,
        offload=s.offload,
        vae_tiling=s.vae_tiling,
    )


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"preset ({', '.join(PRESETS)}) or a local diffusers folder")
    p.add_argument("--preset", help="run a local folder with this preset's conventions")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default cpu; never chosen for you)")
    p.add_argument(
        "--dtype", choices=["float32", "float16", "bfloat16"], help="default: float16 on cuda, float32 on cpu"
    )
    p.add_argument("--offline", action="store_const", const=True, help="never download a model")
    p.add_argument("--output", help="the shared output folder (default ./ldm3d-out)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ldm3d-bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ldm3d-bridge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_const", const=0, dest="verbose", help="warnings only")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the OSC server")
    _model_flags(serve)
    serve.add_argument("--host", help="interface to listen on (default 0.0.0.0: all)")
    serve.add_argument("--port", type=int, help="UDP port (default 9000)")
    serve.add_argument("--config", help="TOML settings file (see docs/osc.md)")
    serve.add_argument("--no-zeroconf", dest="zeroconf", action="store_const", const=False, help="do not advertise")
    serve.add_argument("--queue-size", type=int)
    serve.add_argument("--queue-mode", choices=["fifo", "latest-wins"])
    serve.add_argument("--keep-jobs", type=int, help="job folders kept (default 200)")
    serve.add_argument("--jpeg", action="store_const", const=True, help="also write rgb.jpg")
    serve.add_argument("--exr", action="store_const", const=True, help="also write float depth.exr")
    serve.add_argument("--on-shutdown", choices=["cancel", "finish"], help="what happens to the running job")
    serve.add_argument("--allow", action="append", metavar="CIDR", help="only hear these source networks (repeat)")
    serve.add_argument("--token-file", help="file holding the shared secret every message must carry")
    serve.add_argument("--upscale-model", help="load this upscaler (ldm3d-sr) for /ldm3d/upscale")
    serve.add_argument("--sampling", choices=["quality", "live"], help="default sampling of jobs (default quality)")
    serve.add_argument("--compile", action="store_const", const=True, help="torch.compile the UNet during warm-up")
    serve.add_argument("--offload", choices=["none", "model"], help="model: keep models on the CPU between uses")
    serve.add_argument("--vae-tiling", action="store_const", const=True, help="decode in tiles (big sizes)")
    serve.add_argument(
        "--input-dir",
        action="append",
        dest="input_dirs",
        metavar="DIR",
        help="a folder /ldm3d/img2img may read images from (repeat)",
    )

    gen = sub.add_parser("generate", help="one job through the engine and writer, no server")
    gen.add_argument("prompt")
    _model_flags(gen)
    gen.add_argument("--seed", type=int, default=-1)
    gen.add_argument("--steps", type=int)
    gen.add_argument("--guidance", type=float)
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--scheduler", choices=SCHEDULERS)
    gen.add_argument("--negative", default="")
    gen.add_argument("--seamless", choices=["on", "off"], help="default: on for panorama models")
    gen.add_argument("--sampling", choices=["quality", "live"], help="quality (default) or live (DPM-Solver++ ~20)")

    img = sub.add_parser("img2img", help="RGBD image-to-image: restyle an image (and its depth) with a prompt")
    img.add_argument("image", help="the input RGB image")
    img.add_argument("prompt")
    img.add_argument("--depth", help="its 16-bit depth PNG (65535 = nearest); without it a flat 0.5 is used")
    img.add_argument("--strength", type=float, default=0.6, help="0 keeps the input, 1 is like text-to-image")
    _model_flags(img)
    for flag, kind in (("--seed", int), ("--steps", int), ("--guidance", float), ("--width", int), ("--height", int)):
        img.add_argument(flag, type=kind, default=-1 if flag == "--seed" else None)
    img.add_argument("--scheduler", choices=SCHEDULERS)
    img.add_argument("--negative", default="")
    img.add_argument("--seamless", choices=["on", "off"])
    img.add_argument("--sampling", choices=["quality", "live"])

    up = sub.add_parser("upscale", help="LDM3D-SR ×4 of a finished job's RGB and 16-bit depth")
    up.add_argument("job_dir")
    _model_flags(up)
    up.set_defaults(model="ldm3d-sr")
    up.add_argument("--noise-level", type=int, default=20, help="0..350: how much detail the model may invent")
    up.add_argument("--prompt", help="default: the model card's 'high quality high resolution uhd 4k image'")
    up.add_argument("--negative", default="")
    up.add_argument("--seed", type=int, default=-1)
    up.add_argument("--steps", type=int)
    up.add_argument("--guidance", type=float)
    up.add_argument("--scheduler", choices=SCHEDULERS)

    send = sub.add_parser("send", help="send one OSC message to a bridge and print the answer")
    send.add_argument("address", help="e.g. /ldm3d/generate")
    send.add_argument("args", nargs="*", help="arguments: ints, floats and strings are told apart by their look")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=9000)
    send.add_argument("--wait", action="store_true", help="wait for /ldm3d/ready or /ldm3d/error")
    send.add_argument("--timeout", type=float, help="seconds to wait (default 2, with --wait 600)")

    demo = sub.add_parser("demo", help="offline demo: serve tiny-pano, send a prompt over OSC, print the result")
    demo.add_argument("--output", default="ldm3d-out", help="output folder (default ./ldm3d-out)")
    demo.add_argument("--prompt", default="a quiet harbour at dusk")

    preview = sub.add_parser("preview", help="render a job's displaced sphere to a PNG (headless OpenGL)")
    preview.add_argument("job_dir", help="a job folder (holds rgb.png and depth.png)")
    preview.add_argument("--out", required=True, help="the PNG to write")
    preview.add_argument("--yaw", type=float, default=0.0, help="degrees; 0 = middle of the panorama, + = right")
    preview.add_argument("--pitch", type=float, default=0.0, help="degrees; + = up")
    preview.add_argument("--fov", type=float, default=90.0, help="vertical field of view, degrees")
    preview.add_argument(
        "--eye",
        type=float,
        nargs=3,
        default=(0.0, 0.0, 0.0),
        metavar=("X", "Y", "Z"),
        help="eye position; the sphere's radius is 1",
    )
    preview.add_argument("--stereo", action="store_true", help="a side-by-side pair (left eye first)")
    preview.add_argument("--eye-separation", type=float, default=0.064, help="for --stereo (default 0.064)")
    preview.add_argument("--size", default="1024x768", help="WxH of one view (default 1024x768)")
    preview.add_argument("--strength", type=float, default=1.0, help="depth displacement strength (default 1)")

    export = sub.add_parser("export-mesh", help="write a job's displaced sphere as .glb, .obj or .ply")
    export.add_argument("job_dir")
    export.add_argument("--out", required=True, help="FILE.glb, FILE.obj or FILE.ply")
    export.add_argument("--columns", type=int, default=512)
    export.add_argument("--rows", type=int, default=256)
    export.add_argument("--strength", type=float, default=1.0)

    sub.add_parser("env", help="versions, devices and cache folders")
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    from ldm3d_engine import load_engine

    from .server import Bridge

    keys = (
        "model",
        "preset",
        "device",
        "dtype",
        "offline",
        "output",
        "host",
        "port",
        "zeroconf",
        "queue_size",
        "queue_mode",
        "keep_jobs",
        "jpeg",
        "exr",
        "on_shutdown",
    )
    flags = {k: getattr(args, k) for k in keys}
    flags["allow"] = tuple(args.allow) if args.allow else None
    flags["input_dirs"] = tuple(args.input_dirs) if args.input_dirs else None
    flags["upscale_model"] = args.upscale_model
    for name in ("sampling", "compile", "offload", "vae_tiling"):
        flags[name] = getattr(args, name)
    if args.token_file:
        try:
            flags["token"] = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
    settings = load_settings(flags, config=args.config)
    engine_settings = _engine_settings(settings)
    upscaler = None
    if settings.upscale_model:
        upscaler_settings = dataclasses.replace(engine_settings, model=settings.upscale_model, preset=None)
        upscaler = lambda: load_engine(upscaler_settings)  # noqa: E731
    bridge = Bridge(settings, lambda: load_engine(engine_settings), upscaler_factory=upscaler)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    bridge.start()
    try:
        while not stop.wait(0.2):
            if bridge.worker.failed is not None:
                break
    finally:
        # A stuck engine never returns: don't wait long for it.
        bridge.stop(timeout=5.0 if bridge.worker.failed else 60.0)
    if bridge.worker.failed is not None:
        raise CliError(f"the bridge cannot go on: {bridge.worker.failed}")
    return 0


def _progress_bar(step: int, total: int) -> None:
    filled = 30 * step // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {step}/{total}")
    if step == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _one_job(args: argparse.Namespace, run: Any, extra: dict[str, Any] | None = None) -> int:
    """Load the engine named by the flags, run ``run(engine)`` with a progress bar, write the job folder."""
    from ldm3d_engine import load_engine

    from .jobs import new_job_id
    from .writer import TextureWriter

    settings = load_settings({k: getattr(args, k) for k in ("model", "preset", "device", "dtype", "offline", "output")})
    writer = TextureWriter(Path(settings.output))
    writer.prepare()
    engine = load_engine(_engine_settings(settings))
    files = writer.write(new_job_id(), run(engine), extra)
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
        return engine.generate(request, on_step=_progress_bar)

    return _one_job(args, run)


def cmd_img2img(args: argparse.Namespace) -> int:
    from .images import read_depth16, read_rgb

    request = _text_request(args, strength=args.strength)
    image = read_rgb(Path(args.image))
    depth = read_depth16(Path(args.depth)) if args.depth else None
    extra = {"input_image": str(Path(args.image).resolve())}
    if args.depth:
        extra["input_depth_map"] = str(Path(args.depth).resolve())
    return _one_job(args, lambda engine: engine.img2img(request, image, depth, on_step=_progress_bar), extra)


def cmd_upscale(args: argparse.Namespace) -> int:
    from ldm3d_engine.types import UPSCALE_PROMPT, UpscaleRequest

    from .images import read_depth16, read_rgb

    job_dir = Path(args.job_dir)
    rgb, depth = read_rgb(job_dir / "rgb.png"), read_depth16(job_dir / "depth.png")
    request = UpscaleRequest(
        prompt=args.prompt or UPSCALE_PROMPT,
        negative_prompt=args.negative,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        noise_level=args.noise_level,
        scheduler=args.scheduler,
    )
    extra = {"source_job": job_dir.name, "source_folder": str(job_dir.resolve())}
    return _one_job(args, lambda engine: engine.upscale(request, rgb, depth, on_step=_progress_bar), extra)


def _parse_arg(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cmd_send(args: argparse.Namespace) -> int:
    timeout = args.timeout if args.timeout is not None else (600.0 if args.wait else 2.0)
    with OscClient(args.host, args.port) as client:
        client.send(args.address, *(_parse_arg(a) for a in args.args))
        status = 0
        deadline = time.monotonic() + timeout
        job_id: str | None = None
        while (left := deadline - time.monotonic()) > 0:
            message = client.receive(left)
            if message is None:
                break
            print(message.address, *message.args, flush=True)
            if message.address == "/ldm3d/error":
                status = 1
            if message.address == "/ldm3d/accepted" and message.args:
                job_id = str(message.args[0])
            if not args.wait:
                return status
            if message.address in FINAL and (job_id is None or message.args[:1] == (job_id,)):
                return status
        if args.wait or status == 0:
            raise CliError(f"no answer from {args.host}:{args.port} within {timeout:g} s (is the bridge running?)")
        return status


def cmd_demo(args: argparse.Namespace) -> int:
    from functools import partial

    from ldm3d_engine import EngineSettings, load_engine

    from .server import Bridge

    settings = BridgeSettings(model="tiny-pano", host="127.0.0.1", port=0, output=args.output, zeroconf=False)
    say = partial(print, flush=True)  # interleaves in order with the log on stderr
    say("ldm3d-bridge demo: starting the bridge on the built-in tiny-pano model (random weights: the picture is noise)")
    bridge = Bridge(settings, lambda: load_engine(EngineSettings(model="tiny-pano", device="cpu")))
    bridge.start()
    host, port = bridge.address
    try:
        with OscClient(host, port) as client:
            say(f"sending /ldm3d/generate {args.prompt!r} to udp://{host}:{port} (the model loads and warms up first)")
            client.send("/ldm3d/generate", args.prompt, "seed", 42)
            messages = client.wait_for(["/ldm3d/ready", "/ldm3d/error"], timeout=600)
    finally:
        bridge.stop()
    for message in messages:
        if message.address != "/ldm3d/progress":
            say(" ", message.address, *message.args)
    last = messages[-1]
    if last.address != "/ldm3d/ready":
        raise CliError(f"the job failed: {last.args}")
    meta = json.loads(Path(str(last.args[3])).read_text(encoding="utf-8"))
    say("files:")
    for name, path in meta["files"].items():
        say(f"  {name:6} {path}")
    say("timings:", ", ".join(f"{k} {v:.2f} s" for k, v in meta["timings"].items()))
    say(f"prompt used: {meta['prompt_used']!r}, seed {meta['seed']}, {meta['width']}×{meta['height']}")
    from .preview import Camera

    preview = Path(args.output) / "demo-preview.png"
    try:
        write_preview(Path(meta["files"]["rgb"]).parent, preview, Camera(yaw=0.0, fov=100.0), (960, 540))
    except PreviewError as exc:
        say(f"preview: skipped ({exc})")
    else:
        say(
            f"preview: {preview.resolve()} (the displaced sphere seen from its centre; "
            "`ldm3d-bridge preview` renders other views)"
        )
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    import platform
    from importlib import metadata

    from huggingface_hub import constants

    from ldm3d_engine.devices import available_devices
    from ldm3d_engine.tiny import default_tiny_dir

    print(f"python        {platform.python_version()} ({sys.executable})")
    for dist in ("ldm3d-bridge", "torch", "diffusers", "transformers", "python-osc", "zeroconf", "OpenEXR"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{dist:13} {version}")
    import torch

    print(f"devices       {', '.join(available_devices())}")
    print(f"torch cuda    {torch.version.cuda or 'none (CPU build)'}")
    for i in range(torch.cuda.device_count()):
        print(f"  cuda:{i}      {torch.cuda.get_device_name(i)}")
    print(f"hf cache      {constants.HF_HUB_CACHE} (offline: {constants.HF_HUB_OFFLINE})")
    print(f"tiny models   {default_tiny_dir()}")
    return 0


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
) -> None:
    from PIL import Image

    from .preview import SphereRenderer, load_job_textures, render_stereo

    rgb, depth = load_job_textures(job_dir)
    renderer = SphereRenderer(rgb, depth, strength=strength)
    try:
        image = render_stereo(renderer, camera, size, eye_separation) if stereo else renderer.render(camera, size)
    finally:
        renderer.release()
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out)


def cmd_preview(args: argparse.Namespace) -> int:
    from .preview import Camera

    camera = Camera(eye=tuple(args.eye), yaw=args.yaw, pitch=args.pitch, fov=args.fov)
    if not 1.0 <= args.fov <= 170.0:
        raise CliError(f"--fov {args.fov}: use 1..170 degrees", 2)
    write_preview(
        Path(args.job_dir), Path(args.out), camera, _size(args.size), args.stereo, args.eye_separation, args.strength
    )
    print(Path(args.out).resolve())
    return 0


def cmd_export_mesh(args: argparse.Namespace) -> int:
    from .mesh import export_mesh

    vertices, triangles = export_mesh(
        Path(args.job_dir), Path(args.out), columns=args.columns, rows=args.rows, strength=args.strength
    )
    print(f"{Path(args.out).resolve()} ({vertices} vertices, {triangles} triangles)")
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "generate": cmd_generate,
    "send": cmd_send,
    "demo": cmd_demo,
    "env": cmd_env,
    "preview": cmd_preview,
    "export-mesh": cmd_export_mesh,
    "img2img": cmd_img2img,
    "upscale": cmd_upscale,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"ldm3d-bridge: error: {exc}", file=sys.stderr)
        return 2
    except (CliError, EngineError, BridgeError, PreviewError, OSError, TimeoutError) as exc:
        status = exc.status if isinstance(exc, CliError) else 1
        print(f"ldm3d-bridge: error: {exc}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
