"""The command line's arguments (``ldm3d-bridge --help``)."""

from __future__ import annotations

import argparse

from bridge import __version__
from bridge.settings import FORMAT_NAMES
from ldm3d_engine.presets import DEPTH_MODELS, PRESETS, SCHEDULERS

DESCRIPTION = "OSC server that turns text prompts into live 360° RGB + depth worlds with Intel's LDM3D models"


#: The settings every model-loading command takes from its flags (``_model_flags``).
MODEL_KEYS = (
    *("model", "preset", "device", "dtype", "ov_cache", "ov_weights"),
    *("offline", "output", "format", "depth_model", "safety", "safety_model"),
)


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"preset ({', '.join(PRESETS)}) or a local diffusers folder")
    p.add_argument("--preset", help="run a local folder with this preset's conventions")
    p.add_argument(
        "--device",
        help="cpu, cuda, cuda:N, mps, hpu or openvino:CPU|GPU|NPU (default cpu; never chosen for you; "
        "`ldm3d-bridge env --devices` lists this machine's)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        help="default: float16 on cuda, float32 on cpu, on OpenVINO the fastest the device runs natively; "
        "bfloat16 on a cpu with amx_bf16/avx512_bf16",
    )
    p.add_argument(
        "--ov-cache",
        help="where openvino:* devices keep converted models (default ~/.cache/ldm3d-bridge/openvino)",
    )
    p.add_argument(
        "--ov-weights",
        choices=["model", "int8"],
        help="openvino:* only: int8 compresses the UNet's weights with NNCF (default model: as loaded)",
    )
    p.add_argument("--offline", action="store_const", const=True, help="never download a model")
    p.add_argument(
        "--safety",
        choices=["on", "off"],
        help="the image safety checker on every picture (default on: the model's own; off: nothing is checked)",
    )
    p.add_argument(
        "--safety-model",
        metavar="PATH_OR_HUB_ID",
        help="a safety checker for a model without one (e.g. CompVis/stable-diffusion-safety-checker or a folder)",
    )
    p.add_argument("--output", help="the shared output folder (default ./ldm3d-out)")
    p.add_argument("--format", choices=list(FORMAT_NAMES), help="texture files: tiff (default), png-fast or png")
    p.add_argument(
        "--depth-model",
        help=f"load a depth estimator beside the model ({', '.join(DEPTH_MODELS)} or a folder): depth jobs, "
        "img2img without a depth map",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ldm3d-bridge", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"ldm3d-bridge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_const", const=0, dest="verbose", help="warnings only")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the OSC server")
    _model_flags(serve)
    serve.add_argument("--host", help="interface to listen on (default 0.0.0.0: all)")
    serve.add_argument("--port", type=int, help="UDP port (default 9000)")
    serve.add_argument("--config", help="TOML settings file (see docs/osc.md)")
    serve.add_argument("--announce-root", help="the output folder as the clients' machine names it (e.g. Z:/ldm3d-out)")
    serve.add_argument("--no-zeroconf", dest="zeroconf", action="store_const", const=False, help="do not advertise")
    serve.add_argument(
        "--http-port", type=int, help="TCP port of OSCQuery and the web page (default: the OSC port's number)"
    )
    serve.add_argument("--no-http", dest="http", action="store_const", const=False, help="serve no HTTP (OSC only)")
    serve.add_argument("--queue-size", type=int)
    serve.add_argument("--queue-mode", choices=["fifo", "latest-wins"])
    serve.add_argument("--keep-jobs", type=int, help="job folders kept (default 200)")
    serve.add_argument("--jpeg", action="store_const", const=True, help="also write rgb.jpg")
    serve.add_argument("--exr", action="store_const", const=True, help="also write float depth.exr")
    serve.add_argument("--on-shutdown", choices=["cancel", "finish"], help="what happens to the running job")
    serve.add_argument("--allow", action="append", metavar="CIDR", help="only hear these source networks (repeat)")
    serve.add_argument(
        "--allow-origin",
        action="append",
        metavar="NAME_OR_ORIGIN",
        help="a name (dome.lan) the bridge may be reached by over HTTP, or an origin (http://control.lan:8080) "
        "whose page may drive it (repeat); IP addresses, localhost and this machine's name always work",
    )
    serve.add_argument("--token-file", help="file holding the shared secret every message must carry")
    serve.add_argument("--upscale-model", help="load this upscaler (ldm3d-sr) for /ldm3d/upscale")
    serve.add_argument(
        "--object-model",
        help="load this text → 3D model for /ldm3d/object (ln3diff: non-commercial; shap-e; tiny-ln3diff; tiny-shap-e)",
    )
    serve.add_argument(
        "--visitors", action="store_const", const=True, help="serve the public visitor page at /visit (a prompt box)"
    )
    serve.add_argument(
        "--moderate", action="store_const", const=True, help="visitors' prompts wait for the operator's approval"
    )
    serve.add_argument(
        "--visitor-url", help="the visitor page's address for its QR code (default: http://<host>/visit)"
    )
    serve.add_argument(
        "--prompt-rules",
        metavar="FILE",
        help="refuse prompts by words, phrases and regular expressions (a .toml or plain-lines file; "
        "'default': the short list shipped; reloaded on SIGHUP and /ldm3d/rules/reload)",
    )
    serve.add_argument(
        "--show", metavar="FILE", help="a cue file to start with the bridge (loaded once the model is ready)"
    )
    serve.add_argument("--sampling", choices=["quality", "live"], help="default sampling of jobs (default quality)")
    serve.add_argument("--compile", action="store_const", const=True, help="torch.compile the UNet during warm-up")
    serve.add_argument("--offload", choices=["none", "model"], help="model: keep models on the CPU between uses")
    serve.add_argument("--vae-tiling", action="store_const", const=True, help="decode in tiles (big sizes)")
    serve.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the workers as Ray actors: local, auto (this machine's cluster) or ray://head:10001 ([ray] extra)",
    )
    serve.add_argument("--ray-workers", type=int, metavar="N", help="how many Ray actors (default 1; one GPU each)")
    serve.add_argument(
        "--input-dir",
        action="append",
        dest="input_dirs",
        metavar="DIR",
        help="a folder clients may name files in (repeat): images for /ldm3d/img2img and /ldm3d/depth, "
        "cue files for /ldm3d/show/load",
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

    dep = sub.add_parser("depth", help="a world from any picture or 360° photo: its depth estimated (DPT)")
    dep.add_argument("image", help="the picture (RGB); copied into the job folder as it is")
    dep.add_argument(
        "--equirect",
        choices=["on", "off"],
        default="off",
        help="on: a 360° (2:1 equirectangular) picture, estimated on perspective views blended back (no seam)",
    )
    dep.add_argument(
        "--depth-model", default="dpt-large", help=f"{', '.join(DEPTH_MODELS)} or a folder (default dpt-large)"
    )
    dep.add_argument("--device", help="cpu, cuda, cuda:N, mps or openvino:NAME (default cpu; never chosen for you)")
    dep.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    dep.add_argument("--ov-cache", help="where openvino:* devices keep converted models")
    dep.add_argument("--offline", action="store_const", const=True, help="never download a model")
    dep.add_argument("--output", help="the shared output folder (default ./ldm3d-out)")
    dep.add_argument("--format", choices=list(FORMAT_NAMES), help="texture files: tiff (default), png-fast or png")

    up = sub.add_parser("upscale", help="LDM3D-SR of a finished job's RGB and 16-bit depth (×4 unless told)")
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
    up.add_argument("--scale", type=int, choices=[2, 4], help="the output is 2 or 4 (default) × the source")
    up.add_argument("--size", help="the output's WIDTHxHEIGHT instead of --scale, e.g. 1024x1024")
    up.add_argument("--seamless", choices=["on", "off"], help="default: as the source job was made")

    morph = sub.add_parser("morph", help="the worlds between a finished world and another world or a prompt")
    morph.add_argument("first", help="the first world: a job id in the output folder (or its folder)")
    morph.add_argument("second", help="the second world: a job id (or its folder), or a prompt")
    _model_flags(morph)
    morph.add_argument("--frames", type=int, default=8, help="frames, both worlds included (2..240, default 8)")
    morph.add_argument("--seconds", type=float, default=4.0, help="how long it plays in TouchDesigner (default 4)")
    morph.add_argument("--seed", type=int, help="the seed of a prompt's world (default: a random one)")

    obj = sub.add_parser("object", help="one text → 3D object (mesh.obj + mesh.glb), no server")
    obj.add_argument("prompt")
    obj.add_argument(
        "--object-model",
        required=True,
        help="ln3diff (S-Lab licence: non-commercial), shap-e (MIT), tiny-ln3diff or tiny-shap-e (offline)",
    )
    obj.add_argument("--seed", type=int, default=-1)
    obj.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    obj.add_argument("--guidance", type=float, help="classifier-free guidance (default: the model's)")
    obj.add_argument("--resolution", type=int, help="marching-cubes cells along each axis (default: the model's)")
    obj.add_argument("--yaw", type=float, help="where it stands: degrees to the right of straight ahead (default 0)")
    obj.add_argument("--pitch", type=float, help="degrees above the horizon (default 0)")
    obj.add_argument("--distance", type=float, help="from the viewer, in sphere radii 0.05..1.5 (default 0.5)")
    obj.add_argument("--size", type=float, help="its largest extent, in sphere radii 0.01..2 (default 0.25)")
    obj.add_argument("--turn", type=float, help="degrees turned to its left from facing the viewer (default 0)")
    obj.add_argument("--device", help="cpu, cuda, cuda:N or mps (default cpu; never chosen for you)")
    obj.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    obj.add_argument("--offline", action="store_const", const=True, help="never download a model")
    obj.add_argument("--output", help="the shared output folder (default ./ldm3d-out); objects go to objects/")

    send = sub.add_parser("send", help="send one OSC message to a bridge and print the answer")
    send.add_argument("address", help="e.g. /ldm3d/generate")
    send.add_argument("args", nargs="*", help="arguments: ints, floats and strings are told apart by their look")
    send.add_argument(
        "--types",
        help="OSC type tags, one per argument (i, f, s), as oscsend takes them: --types ssi sends 1984 as a text",
    )
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=9000)
    send.add_argument(
        "--wait",
        action="store_true",
        help="wait for the job's end (/ldm3d/ready, /ldm3d/object/ready, /ldm3d/error or /ldm3d/cancelled)",
    )
    send.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait for the answer (default 3); with --wait, for the job's end (default: for as long as "
        "the bridge is heard from; 60 s of silence end the wait)",
    )

    show = sub.add_parser("show", help="cue files: `show check FILE` validates one without loading a model")
    show.add_argument("action", choices=["check"])
    show.add_argument("file", help="a cue file (.toml)")
    show.add_argument("--model", help="also check every cue against this model's limits (its weights are not loaded)")
    show.add_argument("--preset", help="a local folder's preset (its limits)")
    show.add_argument("--upscale-model", help="the upscaler of the cues with upscale = true (ldm3d-sr)")
    show.add_argument("--config", help="the serving bridge's TOML settings file: check against its models (flags win)")
    show.add_argument(
        "--output", help="the serving bridge's output folder: how many scenes it holds, a fallback not rendered yet"
    )

    pregen = sub.add_parser("pregen", help="render the scenes a show's cue file needs that the library lacks")
    pregen.add_argument("file", help="a cue file (.toml)")
    _model_flags(pregen)
    pregen.add_argument("--upscale-model", help="the upscaler for cues with upscale = true (ldm3d-sr)")
    pregen.add_argument(
        "--object-model", help="the object model for cues with an object (shap-e, ln3diff; tiny-shap-e)"
    )
    pregen.add_argument(
        "--config", help="the serving bridge's TOML settings file: the same model, device and folder (flags win)"
    )

    demo = sub.add_parser("demo", help="offline demo: serve tiny-pano, send a prompt over OSC, print the result")
    demo.add_argument("--output", default="ldm3d-out", help="output folder (default ./ldm3d-out)")
    demo.add_argument("--prompt", default="a quiet harbour at dusk")

    preview = sub.add_parser("preview", help="render a job's displaced sphere to a PNG (headless OpenGL)")
    preview.add_argument("job_dir", help="a job folder (holds its rgb and depth textures)")
    preview.add_argument("--out", required=True, help="the PNG to write")
    preview.add_argument("--yaw", type=float, default=0.0, help="degrees; 0 = middle of the panorama, + = right")
    preview.add_argument(
        "--pitch", type=float, default=None, help="degrees; + = up (default 0, or 90 with --fisheye: a dome master)"
    )
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
    preview.add_argument(
        "--fisheye",
        type=float,
        metavar="DEGREES",
        help="an angular fisheye of this field of view instead of a flat view, e.g. 180: a dome master "
        "(zenith at the centre, the panorama's middle at the bottom), as TouchDesigner's render_dome",
    )
    preview.add_argument("--eye-separation", type=float, default=0.064, help="for --stereo (default 0.064)")
    preview.add_argument("--size", default="1024x768", help="WxH of one view (default 1024x768)")
    preview.add_argument("--strength", type=float, default=1.0, help="depth displacement strength (default 1)")
    preview.add_argument(
        "--object",
        action="append",
        default=[],
        metavar="OBJECT",
        help="draw this text → 3D object at its placement (an object folder, or an object job id in objects/ "
        "of the job's output folder); repeat for more",
    )

    export = sub.add_parser("export-mesh", help="write a job's displaced sphere as .glb, .obj or .ply")
    export.add_argument("job_dir")
    export.add_argument("--out", required=True, help="FILE.glb, FILE.obj or FILE.ply")
    export.add_argument("--columns", type=int, default=512)
    export.add_argument("--rows", type=int, default=256)
    export.add_argument("--strength", type=float, default=1.0)
    export.add_argument(
        "--object",
        action="append",
        default=[],
        metavar="OBJECT",
        help="add this text → 3D object as its own node at its placement (.glb only; a folder or an object job id)",
    )

    splat = sub.add_parser("export-splat", help="write a job's world as 3D Gaussian splats (.ply or .splat)")
    splat.add_argument("job_dir")
    splat.add_argument("--out", required=True, help="FILE.ply (the 3DGS layout) or FILE.splat (32 bytes a splat)")
    splat.add_argument("--format", default=None, help="ply or splat (default: from the --out suffix)")
    splat.add_argument("--step", type=int, default=1, help="every K-th pixel in both directions (default 1)")
    splat.add_argument("--strength", type=float, default=1.0, help="depth displacement strength (default 1)")

    env = sub.add_parser("env", help="versions and cache folders (and devices, with --devices)")
    env.add_argument("--devices", action="store_true", help="also list the devices torch sees (loads torch)")
    return parser
