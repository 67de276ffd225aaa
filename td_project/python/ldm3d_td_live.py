"""The live side of the TouchDesigner extension, in plain Python (no TouchDesigner imports), tested
outside TouchDesigner: previews of a world while it forms, and the frames of a morph.

Previews (``/ldm3d/preview <job> <step> <total> <rgb> <depth>``): the extension follows one job at a
time. A preview is shown when previews are on (the Showpreviews parameter) and its job is newer than
every world on screen, loading or waiting (``WorldSwitcher.newest``) and not older than the job
already followed: with several workers, the newest job's previews win and an older job's are
ignored (its world would be stale when it arrived). The forming look fades in once the preview
TOPs have read their first picture of that job, and fades out at the job's ``/ldm3d/ready``,
``/ldm3d/cancelled`` or ``/ldm3d/error``, at a ready of any newer job, when the bridge restarts or
goes quiet, or when Showpreviews is turned off.

Morphs (``/ldm3d/morph/frame <morph> <index> <frames> <seconds> <rgb> <depth>``): the frames are
collected until the morph's ``/ldm3d/ready``; then the morph plays as a chain of crossfades, one
frame every ``seconds / (frames - 1)`` (the announced ``seconds``: a show plays a morph cue over its
fade), ending on the ready's world. The manifest (``morphs/<morph>/morph.json``, read by the
extension) fills any frame whose announcement was lost and names the world the morph starts from:
when that world is the one on screen, frame 0 (the same world again) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Forming:
    """Which job's previews are shown, and how strongly (0 … 1: the forming look)."""

    def __init__(self) -> None:
        self.job: str | None = None  # the job followed
        self.paths: tuple[str, str] | None = None  # its newest preview: (rgb, depth)
        self.seen = False  # the preview TOPs have read a picture of that job
        self.level = 0.0
        self._last: float | None = None

    def on_preview(self, job_id: str, rgb: str, depth: str, newest_world: str, enabled: bool) -> bool:
        """True when this preview is to be shown: point the preview TOPs at it and reload them."""
        if not enabled or job_id <= newest_world or (self.job is not None and job_id < self.job):
            return False
        if job_id != self.job:
            self.job, self.seen = job_id, False
        self.paths = (rgb, depth)
        return True

    def on_end(self, job_id: str, ready: bool) -> None:
        """A job ended (``ready``: with its world). The forming look ends with the job it follows, or
        with any newer job's world (the one followed would be stale)."""
        if self.job is not None and (job_id == self.job or (ready and job_id > self.job)):
            self.stop()

    def stop(self) -> None:
        self.job, self.paths, self.seen = None, None, False

    def loaded(self) -> None:
        """The preview TOPs have read the followed job's preview."""
        if self.job is not None:
            self.seen = True

    def tick(self, enabled: bool, fade_in_s: float, fade_out_s: float, now: float) -> float:
        """Call every frame: the forming level, moving toward 1 (a followed job's preview has been read)
        over ``fade_in_s`` or toward 0 over ``fade_out_s`` (0: at once)."""
        if not enabled:
            self.stop()
        target = 1.0 if self.job is not None and self.seen else 0.0
        fade_s = fade_in_s if target > self.level else fade_out_s
        if self._last is None or fade_s <= 0:
            self.level = target
        else:
            step = max(0.0, now - self._last) / fade_s
            self.level = min(self.level + step, target) if target > self.level else max(self.level - step, target)
        self._last = now
        return self.level


@dataclass
class _Morph:
    frames: int = 0
    seconds: float = 0.0
    paths: dict[int, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class MorphPlan:
    """What to play: (rgb, depth) of each step in order (the last the world the morph arrives at), and
    the seconds between steps."""

    frames: list[tuple[str, str]]
    step_s: float


class MorphFrames:
    """The frames announced for the newest few morphs, until each arrives."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._morphs: dict[str, _Morph] = {}

    def on_frame(self, morph_id: str, index: int, frames: int, seconds: float, rgb: str, depth: str) -> None:
        morph = self._morphs.setdefault(morph_id, _Morph())
        morph.frames, morph.seconds = frames, seconds
        morph.paths[index] = (rgb, depth)
        for old in sorted(self._morphs)[: -self.keep]:
            del self._morphs[old]

    def has(self, morph_id: str) -> bool:
        return morph_id in self._morphs

    def a_frame(self, morph_id: str) -> str | None:
        """The rgb path of one announced frame (``morphs/<morph>/NNNN/rgb…``: its manifest is two folders up)."""
        morph = self._morphs.get(morph_id)
        return next(iter(morph.paths.values()))[0] if morph is not None and morph.paths else None

    def drop(self, morph_id: str) -> None:
        """The morph ended without arriving: its frames are gone from disk."""
        self._morphs.pop(morph_id, None)

    def arrive(
        self, morph_id: str, rgb: str, depth: str, manifest: dict[str, Any] | None, shown: str | None
    ) -> MorphPlan | None:
        """The morph's ready (its world: ``rgb``, ``depth``), with its manifest if it could be read and the
        job on screen: the plan to play, or None when nothing is known of its frames (an ordinary world)."""
        morph = self._morphs.pop(morph_id, None) or _Morph()
        paths = dict(morph.paths)
        frames, seconds = morph.frames, morph.seconds
        start: str | None = None
        if manifest is not None:
            for entry in manifest.get("written", []):
                paths.setdefault(int(entry["index"]), (str(entry["rgb"]), str(entry["depth"])))
            if not morph.frames:  # every announcement lost: the manifest's own length
                frames, seconds = int(manifest.get("frames", 0)), float(manifest.get("seconds", 0.0))
            start = manifest.get("from")
        if not paths or frames < 2:
            return None
        paths[frames - 1] = (rgb, depth)  # the world it arrives at, as an ordinary job
        if start is not None and start == shown:
            paths.pop(0, None)  # frame 0 is the world already on screen
        ordered = [paths[index] for index in sorted(paths) if index < frames]
        return MorphPlan(ordered, seconds / (frames - 1))
