"""``show check`` (a cue file, without a model) and ``pregen`` (render a show's missing scenes)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from bridge.cli.args import MODEL_KEYS
from bridge.cli.jobs import CliError, engine_settings
from bridge.contract.requests import generate_then_upscale
from bridge.settings import load_settings
from bridge.show.cues import Cue, Show, load_show


def cmd_show(args: argparse.Namespace) -> int:
    show = load_show(Path(args.file))  # BadShow: one line with the file and the line, exit 1
    follows = sum(cue.follow for cue in show.cues)
    print(
        f"{args.file}: show {show.name!r}, {len(show.cues)} cues ({follows} auto-follow), "
        f"loop {'on' if show.loop else 'off'}, fallback {show.fallback or 'none'}: ok"
    )
    return 0


def cmd_pregen(args: argparse.Namespace) -> int:
    """Render every scene of the show that the library lacks; resumable: killed at any moment, a
    rerun renders only what is still missing."""
    from bridge.output.job_ids import new_job_id
    from bridge.output.writer import TextureWriter
    from bridge.show.library import SceneLibrary
    from ldm3d_engine import UnsafeContent, load_engine

    show = load_show(Path(args.file))
    keys = (*MODEL_KEYS, "upscale_model")
    settings = load_settings({k: getattr(args, k) for k in keys}, config=args.config)
    if any(cue.upscale for cue in show.cues) and not settings.upscale_model:
        raise CliError("the show has cues with upscale = true: give --upscale-model ldm3d-sr", 2)
    writer = TextureWriter(Path(settings.output), fmt=settings.format)
    writer.prepare()  # a folder held by a running bridge fails here: use /ldm3d/show/pregen there
    library = SceneLibrary(writer.root)
    try:
        dropped, adopted = library.check()
        if dropped or adopted:
            print(f"library: {dropped} scenes to render again, {adopted} complete ones adopted", file=sys.stderr)
        engine = load_engine(engine_settings(settings))
        upscaler = None
        if settings.upscale_model:
            upscaler = load_engine(
                dataclasses.replace(engine_settings(settings), model=settings.upscale_model, depth_model=None)
            )
        scenes = _unique_scenes(show, engine.identity)
        missing = [(key, cue) for key, cue in scenes.items() if library.scene_id(key) is None]
        bar = _Progress(len(scenes), len(scenes) - len(missing))
        flagged: list[str] = []
        for key, cue in missing:
            try:
                result = _render(engine, upscaler, cue, lambda step, total, cue=cue: bar.step(cue, step, total))
            except UnsafeContent:  # an overnight run goes on with the other cues
                flagged.append(cue.number)
                sys.stderr.write(f"\ncue {cue.number}: the safety checker flagged its picture; skipped\n")
                bar.dropped()
                continue
            meta = {"scene_key": key, "show": show.name, "cue": cue.number, "cue_name": cue.name}
            files = writer.write_scene(new_job_id(), result, meta)
            library.add(key, files.job_id, cue.number)  # only now is the scene in the library
            bar.scene_done()
    finally:
        library.close()
        writer.close()
    rendered = len(missing) - len(flagged)
    print(f"{show.name}: {len(scenes) - len(flagged)} scenes in the library ({rendered} rendered now)")
    if flagged:
        raise CliError(
            f"the safety checker flagged the pictures of cue {', '.join(flagged)}: nothing was written for them "
            "(change their prompt or seed)"
        )
    return 0


def _unique_scenes(show: Show, identity: str) -> dict[str, Cue]:
    """Scene key → the first cue with it (two cues with the same parameters share one scene)."""
    scenes: dict[str, Cue] = {}
    for cue in show.cues:
        scenes.setdefault(cue.scene_key(identity), cue)
    return scenes


def _render(engine: Any, upscaler: Any, cue: Cue, on_step: Any) -> Any:
    if cue.upscale:
        return generate_then_upscale(engine, upscaler, cue.request(), on_step)
    return engine.generate(cue.request(), on_step=on_step)


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
