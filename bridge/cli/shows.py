"""``show check`` (a cue file, and its cues against a model's limits, without loading it) and
``pregen`` (render a show's missing scenes, past the cues with a mistake)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from bridge.cli.args import MODEL_KEYS
from bridge.cli.jobs import CliError, engine_settings
from bridge.contract.morphs import MorphRequest
from bridge.contract.requests import generate_then_upscale
from bridge.output.meshes import ObjectWriter
from bridge.output.sequences import MorphFrames
from bridge.output.writer import TextureWriter
from bridge.serve.scenes import scene_request
from bridge.settings import BridgeSettings, load_settings
from bridge.show.checks import CueLimits, cue_limits, with_limits
from bridge.show.cues import Cue, Show, ShowReading
from bridge.show.library import SceneLibrary
from bridge.show.reading import read_show_file
from bridge.workers.morphing import morph_frames
from ldm3d_engine.presets import PRESETS
from ldm3d_engine.types import CancelToken


def cmd_show(args: argparse.Namespace) -> int:
    """Every mistake of the file, one ``file:line: message`` line each on stderr (exit 1); with
    ``--model`` or ``--config``, every cue is also checked against that model's limits."""
    limits, against, settings = None, "", None
    if args.model or args.config:
        flags = {"model": args.model, "preset": args.preset, "upscale_model": args.upscale_model, "output": args.output}
        settings = load_settings(flags, config=args.config)
        limits, against = cue_limits(_known(settings)), f", every cue fits {settings.model}"
    elif args.preset or args.upscale_model or args.output:
        raise CliError("--preset, --upscale-model and --output say how to check against a model: give --model too", 2)
    reading = read_show_file(Path(args.file), limits)
    if reading.found:
        print("\n".join(reading.mistakes), file=sys.stderr)
        return 1
    show = reading.checked()
    follows = sum(cue.follow for cue in show.cues)
    print(
        f"{args.file}: show {show.name!r}, {len(show.cues)} cues ({follows} auto-follow), "
        f"loop {'on' if show.loop else 'off'}, fallback {show.fallback or 'none'}{against}: ok"
    )
    if settings is not None and (args.output or args.config):
        _library_report(show, settings, args.file)
    return 0


def _library_report(show: Show, settings: BridgeSettings, file: str) -> None:
    """What the serving bridge's scene library holds of the show (with the model identity the
    bridge remembers there), and a warning when its fallback is not rendered yet."""
    library = SceneLibrary(Path(settings.output))
    identity = library.remembered_identity(settings) if library.exists else None
    if identity is None:
        print(f"{file}: {settings.output} has no scene made with {settings.model} yet: every cue renders first "
              "(pregen, or the bridge in idle time; the fallback first)", file=sys.stderr)  # fmt: skip
        return
    keys = {cue.number: cue.scene_key(identity) for cue in show.cues}
    rendered = library.rendered(keys.values())
    print(f"{file}: {len(set(keys.values()) & rendered)} of {len(set(keys.values()))} scenes rendered in "
          f"{settings.output}")  # fmt: skip
    if show.fallback is not None and keys[show.fallback] not in rendered:
        print(f"{file}: warning: the fallback cue {show.fallback} is not rendered yet: until it is, a failed cue "
              "keeps the world on screen (pregen renders it first)", file=sys.stderr)  # fmt: skip


def _known(settings: BridgeSettings) -> BridgeSettings:
    """``settings`` once its models are presets or folders on this machine (as loading them would say)."""
    for flag, name in (("--model", settings.model), ("--upscale-model", settings.upscale_model)):
        if name and name not in PRESETS and not Path(name).expanduser().is_dir():
            raise CliError(f"{flag} {name!r}: not a preset ({', '.join(PRESETS)}) and not a folder on this machine", 2)
    return settings


def cmd_pregen(args: argparse.Namespace) -> int:
    """Render every scene of the show that the library lacks; resumable: killed at any moment, a
    rerun renders only what is still missing. Cues with a mistake (their keys, or the model's limits:
    checked before the model loads and again with it) are skipped and listed at the end (exit 1);
    a mistake of the show's own renders nothing."""
    keys = (*MODEL_KEYS, "upscale_model", "object_model")
    settings = load_settings({k: getattr(args, k) for k in keys}, config=args.config)
    read = read_show_file(Path(args.file))
    if read.show is None:
        print("\n".join(read.mistakes), file=sys.stderr)
        raise CliError("the cue file has mistakes of the show's own (above): nothing was rendered")
    show = read.show
    from bridge.output.job_ids import new_job_id
    from bridge.show.library import SceneLibrary
    from ldm3d_engine import InvalidRequest, OutOfMemory, UnsafeContent, load_engine

    early = with_limits(read, cue_limits(settings))  # from the presets: before minutes of loading
    if early.cue_mistakes:
        sys.stderr.write(f"cue {', '.join(early.cue_mistakes)}: a mistake each (listed at the end); skipped\n")
    writer = TextureWriter(Path(settings.output), fmt=settings.format)
    writer.prepare()  # a folder held by a running bridge fails here: use /ldm3d/show/pregen there
    library = SceneLibrary(writer.root)
    checked, engine, upscaler, objects = early, None, None, None
    scenes: dict[str, Cue] = {}
    missing: list[tuple[str, Cue]] = []
    flagged: list[str] = []
    failed: list[str] = []
    try:
        dropped, adopted = library.check()
        if dropped or adopted:
            print(f"library: {dropped} scenes to render again, {adopted} complete ones adopted", file=sys.stderr)
        if early.valid_cues:
            engine = load_engine(engine_settings(settings))
            if settings.upscale_model:
                upscaler = load_engine(
                    dataclasses.replace(engine_settings(settings), model=settings.upscale_model, depth_model=None)
                )
            if settings.object_model and any(cue.object for cue in early.valid_cues):
                from ldm3d_engine import load_object_engine

                objects = load_object_engine(engine_settings(settings), settings.object_model)
                print(f"ldm3d-bridge: {settings.object_model}: licence: {objects.licence}", file=sys.stderr)
            limits = CueLimits.of_engines(engine, upscaler, settings.object_model)
            checked = with_limits(read, limits)  # exactly what they refuse
            scenes = _unique_scenes(checked.valid_cues, engine.identity, settings.object_model)
            missing = [(key, cue) for key, cue in scenes.items() if library.scene_id(key) is None]
        bar = _Progress(len(scenes), len(scenes) - len(missing))
        for key, cue in missing:
            scene_id = new_job_id()
            try:
                step = lambda s, t, c=cue: bar.step(c, s, t)  # noqa: E731
                result, extra = _render(engine, upscaler, cue, step, writer, scene_id)
                mesh = objects.generate_object(cue.object.request(), on_step=step) if objects and cue.object else None
            except UnsafeContent:  # an overnight run goes on with the other cues
                flagged.append(cue.number)
                sys.stderr.write(f"\ncue {cue.number}: the safety checker flagged its picture; skipped\n")
                bar.dropped()
                continue
            except (InvalidRequest, OutOfMemory) as exc:
                failed.append(cue.number)
                sys.stderr.write(f"\ncue {cue.number} failed: {exc}; skipped\n")
                bar.dropped()
                continue
            meta = {"scene_key": key, "show": show.name, "cue": cue.number, "cue_name": cue.name, **extra}
            inside = None
            if mesh is not None and cue.object is not None:  # into the scene's folder, renamed with it
                placement = cue.object.placement
                inside = partial(ObjectWriter(writer).write_into, job_id=scene_id, result=mesh, placement=placement)
            files = writer.write_scene(scene_id, result, meta, inside)
            library.add(key, files.job_id, cue.number)  # only now is the scene in the library
            bar.scene_done()
    finally:
        library.close()
        writer.close()
    rendered = len(missing) - len(flagged) - len(failed)
    print(f"{show.name}: {len(scenes) - len(flagged) - len(failed)} scenes in the library ({rendered} rendered now)")
    _report(checked, flagged, failed)
    return 0


def _report(checked: ShowReading, flagged: list[str], failed: list[str]) -> None:
    """The cues not rendered, at the end: each mistake's line on stderr, then one error (exit 1)."""
    invalid = checked.cue_mistakes
    if invalid:
        print("\n".join(line for lines in invalid.values() for line in lines), file=sys.stderr)
    problems = []
    if invalid:
        problems.append(f"cue {', '.join(invalid)} not rendered: a mistake each (above; fix them and run pregen again)")
    if failed:
        problems.append(f"cue {', '.join(failed)} failed (above): nothing was written for them")
    if flagged:
        problems.append(
            f"the safety checker flagged the pictures of cue {', '.join(flagged)}: nothing was written for them "
            "(change their prompt or seed)"
        )
    if problems:
        raise CliError("; ".join(problems))


def _unique_scenes(cues: tuple[Cue, ...], identity: str, object_model: str | None) -> dict[str, Cue]:
    """Scene key → the first cue with it (two cues with the same parameters share one scene); the keys
    the bridge makes with the same model and object model."""
    scenes: dict[str, Cue] = {}
    for cue in cues:
        scenes.setdefault(cue.scene_key(identity, object_model), cue)
    return scenes


def _render(
    engine: Any, upscaler: Any, cue: Cue, on_step: Any, writer: TextureWriter, scene_id: str
) -> tuple[Any, dict[str, Any]]:
    """The cue's world, and what its ``meta.json`` adds; a morph cue's frames are written on the way
    into ``morphs/<scene id>/`` (removed again when it fails)."""
    request = scene_request(cue)
    if isinstance(request, MorphRequest):
        frames = MorphFrames(writer)
        info = request.describe()

        def hand(index: int, result: Any) -> None:
            frames.write(scene_id, index, request.position(index), result, info, None)

        try:
            last = morph_frames(engine, request, on_step, CancelToken(), None, hand)()
            hand(request.frames - 1, last)
        except BaseException:
            frames.discard(scene_id)
            raise
        return last, {"morph": {**info, "sequence": frames.manifest(scene_id)}}
    if cue.upscale:
        return generate_then_upscale(engine, upscaler, cue.request(), on_step), {}
    return engine.generate(cue.request(), on_step=on_step), {}


class _Progress:
    """``scenes 3/6 · cue 2.5 step 12/30 · ETA 0:41`` on stderr, the ETA from this run's scenes so far."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done, self._skipped = total, done, done
        self._t0 = time.monotonic()

    def step(self, cue: Cue, step: int, steps: int) -> None:
        rendered = self.done - self._skipped
        eta = ""
        if rendered:
            left = (time.monotonic() - self._t0) / rendered * (self.total - self.done)
            eta = f" · ETA {int(left // 60)}:{int(left % 60):02d}"
        sys.stderr.write(f"\rscenes {self.done}/{self.total} · cue {cue.number} step {step}/{steps}{eta}   ")
        sys.stderr.flush()

    def dropped(self) -> None:
        """A scene that will not be made (flagged): the total shrinks."""
        self.total -= 1

    def scene_done(self) -> None:
        self.done += 1
        sys.stderr.write(f"\rscenes {self.done}/{self.total}{' ' * 40}\n" if self.done == self.total else "")
        sys.stderr.flush()
