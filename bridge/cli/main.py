"""``ldm3d-bridge``: serve, send, demo and env here; the one-job commands (generate, img2img,
upscale, preview, export-mesh, export-splat) in :mod:`bridge.cli.jobs`; the arguments in :mod:`bridge.cli.args`.

Errors print one line (``ldm3d-bridge: error: …``) and exit non-zero:
2 for a wrong command line or setting, 1 for anything that failed at run time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bridge.cli.args import MODEL_KEYS, build_parser
from bridge.cli.jobs import (
    CliError,
    cmd_depth,
    cmd_export_mesh,
    cmd_export_splat,
    cmd_generate,
    cmd_img2img,
    cmd_preview,
    cmd_upscale,
    engine_settings,
    write_preview,
)
from bridge.cli.morphs import cmd_morph
from bridge.cli.objects import cmd_object
from bridge.cli.shows import cmd_pregen, cmd_show
from bridge.contract.engine_api import EngineSlot, LocalSlot
from bridge.errors import BridgeError
from bridge.osc.client import FINAL, OscClient
from bridge.osc.codec import encode_bundle, encode_message
from bridge.render.preview import PreviewError
from bridge.settings import BridgeSettings, SettingsError, load_settings
from ldm3d_engine.errors import EngineError

logger = logging.getLogger("bridge")


#: The commands that load a model; the others (send, show check, env, preview, export-mesh/-splat) never
#: import torch or a model library, so they answer at once.
MODEL_COMMANDS = frozenset({"serve", "generate", "img2img", "depth", "upscale", "morph", "object", "demo", "pregen"})


def _setup_logging(verbose: int, models: bool) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if models:
        from ldm3d_engine.environment import quiet_model_libraries

        quiet_model_libraries()


def cmd_serve(args: argparse.Namespace) -> int:
    from bridge.serve.server import Bridge

    keys = (
        *MODEL_KEYS,
        "host",
        "port",
        "zeroconf",
        "http",
        "http_port",
        "queue_size",
        "queue_mode",
        "keep_jobs",
        "jpeg",
        "exr",
        "on_shutdown",
        "announce_root",
    )
    flags = {k: getattr(args, k) for k in keys}
    flags["allow"] = tuple(args.allow) if args.allow else None
    flags["allow_origin"] = tuple(args.allow_origin) if args.allow_origin else None
    flags["input_dirs"] = tuple(args.input_dirs) if args.input_dirs else None
    flags["upscale_model"] = args.upscale_model
    flags["object_model"] = args.object_model
    for name in ("sampling", "compile", "offload", "vae_tiling", "ray", "ray_workers", "show", "prompt_rules"):
        flags[name] = getattr(args, name)
    for name in ("visitors", "moderate", "visitor_url"):
        flags[name] = getattr(args, name)
    if args.token_file:
        try:
            flags["token"] = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
    settings = load_settings(flags, config=args.config)
    _raise_descriptor_limit()
    if settings.show:
        from bridge.show.checks import cue_limits
        from bridge.show.reading import load_show

        # a mistake in the cue file (also a cue the model would refuse) stops serve now, with its line
        load_show(Path(settings.show), cue_limits(settings))
    cluster = None
    slots: list[EngineSlot]
    if settings.ray is not None:
        from bridge.workers.ray_workers import RayCluster, ray_slots

        cluster = RayCluster(settings.ray)
        cluster.connect()
        build, build_upscaler = _builders(settings, settings.device)
        gpus = 1.0 if settings.device == "cuda" else 0.0
        objects = _object_builder(settings, settings.device)
        timeout = settings.worker_start_timeout_s
        slots = [*ray_slots(cluster, settings.ray_workers, build, build_upscaler, gpus, timeout, objects)]
    else:
        slots = [
            LocalSlot(*_builders(settings, device), where=device, objects=_object_builder(settings, device))
            for device in settings.devices
        ]
    try:
        bridge = Bridge(settings, slots=slots)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        reload = threading.Event()
        if hasattr(signal, "SIGHUP"):  # reread the prompt rules (the handler only flags it: the loop reloads)
            signal.signal(signal.SIGHUP, lambda *_: reload.set())
        bridge.start()
        ended = True
        try:
            while not stop.wait(0.2):
                if bridge.failed is not None:
                    break
                if reload.is_set():
                    reload.clear()
                    _reload_rules(bridge)
        finally:
            ended = bridge.stop()
    finally:
        if cluster is not None:
            cluster.close()
    failed = bridge.failed
    # Everything is closed and written by now: leave at once, with the status that tells a supervisor
    # what happened, without tearing the models down. Python's own exit would free every model in its
    # last garbage collection (seconds, and OpenVINO's compiled models once held a SIGTERM-ed serve for
    # more than 30 s there); an engine stuck in a driver call cannot be stopped, and an exit with that
    # thread alive can abort in the native library (SIGABRT); Ray's exit handler ends the process with
    # status 1 when the cluster went away. The memory is the operating system's to take back.
    logging.shutdown()
    if not ended or failed is not None:
        print(
            f"ldm3d-bridge: error: the bridge cannot go on: {failed or 'the engine did not stop'}",
            file=sys.stderr,
            flush=True,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if ended and failed is None else 1)


def _descriptor_limits() -> tuple[int, int, int] | None:
    """This process's open-file limits (soft, hard) and what ``serve`` raises the soft one to (its
    hard limit, at most 65,536); None where there is no such limit (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    wanted = 65536 if hard == unlimited else min(hard, 65536)
    return soft, hard, soft if soft == unlimited or soft >= wanted else wanted


def _raise_descriptor_limit() -> None:
    """Raise this process's open-file limit (POSIX): the bridge holds texture files, sockets and
    HTTP connections, and 1,024 is a common default."""
    limits = _descriptor_limits()
    if limits is None or limits[2] == limits[0]:
        return
    import resource

    soft, hard, raised = limits
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        logging.getLogger(__name__).info("open files: limit raised from %d to %d", soft, raised)
    except (ValueError, OSError) as exc:
        logging.getLogger(__name__).warning("open files: limit stays at %d (%s)", soft, exc)


def _reload_rules(bridge: Any) -> None:
    """SIGHUP: the prompt rules read again; a file that cannot be read keeps the previous rules (logged)."""
    with contextlib.suppress(BridgeError):  # logged by the gate, with what stays in force
        bridge.gate.reload()


def _builders(settings: BridgeSettings, device: str) -> tuple[Callable[[], Any], Callable[[], Any] | None]:
    """What loads the model (and the upscaler, if any) on ``device``: picklable, for Ray actors too."""
    from ldm3d_engine import load_engine

    main = engine_settings(settings, device)
    upscaler = None
    if settings.upscale_model:
        upscaler = functools.partial(
            load_engine, dataclasses.replace(main, model=settings.upscale_model, preset=None, depth_model=None)
        )
    return functools.partial(load_engine, main), upscaler


def _object_builder(settings: BridgeSettings, device: str) -> Callable[[], Any] | None:
    """What loads the object model (``object_model``) on ``device``, or None: none."""
    from ldm3d_engine import load_object_engine

    if settings.object_model is None:
        return None
    return functools.partial(load_object_engine, engine_settings(settings, device), settings.object_model)


def _parse_arg(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


_TYPES: dict[str, Callable[[str], int | float | str]] = {"i": int, "f": float, "s": str}


def _typed_args(texts: list[str], types: str | None) -> list[int | float | str]:
    """The arguments as OSC values: by their look, or by ``types`` (one OSC tag per argument, as
    liblo's oscsend takes them: ``ssi`` sends "1984" as a string)."""
    if types is None:
        return [_parse_arg(a) for a in texts]
    if len(types) != len(texts) or set(types) - set(_TYPES):
        raise CliError(
            f"--types {types!r} must give one of i, f, s for each of the {len(texts)} arguments (e.g. --types "
            f"{'s' * len(texts) or 's'})"
        )
    try:
        return [_TYPES[tag](text) for tag, text in zip(types, texts, strict=True)]
    except ValueError as exc:
        raise CliError(f"--types {types!r}: {exc}") from None


#: The bridge answers every message at once: no answer within this (seconds) means it is not there.
ANSWER_S = 3.0
#: With --wait, a bridge not heard from (not even its heartbeat, every heartbeat_s) this long has gone.
SILENCE_S = 60.0
#: The answers to one request (a cue list: one /ldm3d/cue/info per cue) arrive back to back.
LIST_GAP_S = 0.3


#: Answers of the bridge to `send`'s own subscription, not to the message it was asked to send.
_BOOKKEEPING = frozenset({"/ldm3d/subscribed", "/ldm3d/unsubscribed", "/ldm3d/pending"})


def _news_for_subscribers(address: str, sent: str) -> bool:
    """What `send` hears only because it subscribed (the greeting, the heartbeat, the lamp),
    unless it is the answer to the address it sent."""
    if address in _BOOKKEEPING:
        return True
    if address == "/ldm3d/state":
        return sent != "/ldm3d/status"
    if address == "/ldm3d/busy" or address.startswith("/ldm3d/display/"):
        return address != sent
    return False


def cmd_send(args: argparse.Namespace) -> int:
    values = _typed_args(args.args, args.types)
    token = values[-2:] if len(values) >= 2 and values[-2] == "token" else []
    with OscClient(args.host, args.port) as client:
        # One bundle: subscribe our own port, then the message. The subscription confirms this host,
        # so full answers come back (docs/osc.md, "Floods and limits"); it is given back on the way out.
        client.send_raw(
            encode_bundle(
                encode_message("/ldm3d/subscribe", client.port, *token), encode_message(args.address, *values)
            )
        )
        try:
            return _print_answers(client, args)
        finally:
            client.send("/ldm3d/unsubscribe", client.port, *token)


def _print_answers(client: OscClient, args: argparse.Namespace) -> int:
    """Print the answer (every one of a list), or with ``--wait`` the job's news until its end.

    Every wait is bounded by what it waits for: the first answer within ``ANSWER_S`` (or
    ``--timeout``); then, with ``--wait``, as long as the bridge is heard from (a silence of
    ``SILENCE_S`` ends it), and never past ``--timeout`` when one is given."""
    status = 0
    start = time.monotonic()
    first_by = start + (args.timeout if args.timeout is not None and not args.wait else ANSWER_S)
    end_by = start + args.timeout if args.timeout is not None and args.wait else float("inf")
    heard: float | None = None  # when the bridge was last heard from
    answered: str | None = None  # the address of the first answer
    last_answer = start
    job_id: str | None = None
    while True:
        now = time.monotonic()
        if not args.wait:  # the first answer, then more of it while it keeps coming
            deadline = first_by if answered is None else last_answer + LIST_GAP_S
        elif heard is None:
            deadline = first_by
        else:
            deadline = min(heard + SILENCE_S, end_by)
        if now >= deadline:
            break
        message = client.receive(deadline - now)
        if message is None:
            continue
        heard = time.monotonic()
        if _news_for_subscribers(message.address, args.address):
            continue
        about = message.args[0] if message.args and message.address in FINAL | {"/ldm3d/progress"} else None
        if job_id is not None and about not in (None, "", job_id):
            continue  # another job's news: we hear it as a subscriber
        if not args.wait and answered is not None and message.address != answered:
            continue  # not more of the same answer (a list): news we hear as a subscriber
        answered, last_answer = answered or message.address, heard
        print(message.address, *message.args, flush=True)
        if message.address == "/ldm3d/error":
            status = 1
        if message.address == "/ldm3d/accepted" and message.args:
            job_id = str(message.args[0])
        if args.wait and message.address in FINAL and (job_id is None or message.args[:1] == (job_id,)):
            return status
    where = f"{args.host}:{args.port}"
    if heard is None:
        raise CliError(f"no answer from {where} within {first_by - start:g} s (is the bridge running?)")
    if answered is None and not args.wait:
        raise CliError(f"{where} is there but did not answer {args.address} within {first_by - start:g} s")
    if args.wait:
        if time.monotonic() >= end_by:
            raise CliError(f"the job did not end within --timeout {args.timeout:g} s")
        raise CliError(f"{where} went silent for {SILENCE_S:g} s before the job ended (stopped, or the network?)")
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    from functools import partial

    from bridge.serve.server import Bridge
    from ldm3d_engine import EngineSettings, load_engine

    settings = BridgeSettings(
        model="tiny-pano", host="127.0.0.1", port=0, output=args.output, zeroconf=False, http=False
    )
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
        if not message.address.startswith("/ldm3d/progress"):  # the bar, not the log
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
    from bridge.render.preview import Camera

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

    from ldm3d_engine.environment import environment_report

    print(f"python        {platform.python_version()} ({sys.executable})")
    dists = ("ldm3d-bridge", "torch", "diffusers", "transformers", "openvino", "python-osc", "zeroconf", "aiohttp")
    for dist in (*dists, "OpenEXR"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{dist:13} {version}")
    for name, value in environment_report(devices=args.devices):
        print(f"{name:13} {value}")
    limits = _descriptor_limits()
    if limits is not None:
        import resource

        soft, hard, serve = ("unlimited" if n == resource.RLIM_INFINITY else str(n) for n in limits)
        print(f"{'open files':13} {soft} (hard limit {hard}); serve raises it to {serve}")
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "generate": cmd_generate,
    "send": cmd_send,
    "demo": cmd_demo,
    "env": cmd_env,
    "preview": cmd_preview,
    "export-mesh": cmd_export_mesh,
    "export-splat": cmd_export_splat,
    "img2img": cmd_img2img,
    "depth": cmd_depth,
    "upscale": cmd_upscale,
    "morph": cmd_morph,
    "object": cmd_object,
    "show": cmd_show,
    "pregen": cmd_pregen,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.command in MODEL_COMMANDS)
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
