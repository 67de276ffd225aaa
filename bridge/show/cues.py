"""Cue files: a show's worlds, written in advance, in TOML (read with the standard library).

::

    name = "Deep sea"          # the show
    loop = true                # museum mode: after the last cue, the first again
    fallback = "0"             # shown at start and whenever a generation fails
    fade = 3                   # crossfade seconds of cues without their own (optional)

    [[cue]]
    number = "1"               # a string, as in QLab: "1", "2.5", "intro"
    name = "Reef at noon"
    prompt = "a coral reef at noon"
    seed = 42                  # required: a scene is reproducible
    steps = 30                 # optional: steps, guidance, negative, width, height,
    duration = 60              #   sampling, scheduler, seamless, upscale = true
    continue = "follow"        # "none" (wait for GO) or "follow" (next cue after duration)
    prewait = 2                # seconds between the trigger and the world being sent (default 0)
    fade = 8                   # this cue's crossfade, seconds (default: the show's)
    goto = "intro"             # after this cue, that one stands by instead of the next
    morph = true               # arrives by morphing from the cue before it (over its fade; morph_frames = 8)
    object = "a red lantern"   # a text → 3D object in the world (needs --object-model); object_seed,
    object_yaw = 30            #   object_steps, object_resolution, and where it stands: object_yaw,
    object_distance = 0.6      #   object_pitch, object_distance, object_size, object_turn

Pure: text in, :class:`Show` out. Every mistake of a file is found, each a ``file:line: message``
line; :class:`BadShow` carries them all (``mistakes``). A file is bounded: ``MAX_SHOW_BYTES``
(checked before it is read or parsed), ``MAX_CUES``, ``MAX_NESTING`` (both before parsing), and
``MAX_CHARS`` for names and prompts; each limit passed is a mistake too. :class:`ShowReading` keeps
them apart (the show's, and each cue's by number) for ``pregen``, which renders the cues without one.
This module holds what a show is; reading one is :mod:`bridge.show.reading` (``load_show``,
``parse_show``, ``read_show``, ``read_show_file``); checking its cues against a model's limits,
without loading it, :mod:`bridge.show.checks`. Each imports only the modules before it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.contract.arguments import cue_number
from bridge.errors import BadShow
from bridge.placement import DEFAULT_PLACEMENT, PLACEMENT_RANGES, Placement
from ldm3d_engine.object_types import ObjectRequest
from ldm3d_engine.types import GenerateRequest

#: A cue's object keys that say where it stands (``object_yaw`` → the placement's ``yaw``).
OBJECT_PLACEMENT_KEYS = tuple(f"object_{name}" for name in PLACEMENT_RANGES)

#: ``cue_number`` is here too: the cue-number rule, for whoever reads cue files.
__all__ = ["Cue", "CueObject", "Mistake", "Show", "ShowReading", "cue_number", "too_large"]

CONTINUES = ("none", "follow")
SHOW_KEYS = ("name", "loop", "fallback", "fade", "cue")
#: A cue's keys and their types; ``number``, ``prompt`` and ``seed`` are required.
CUE_KEYS: dict[str, type | tuple[type, ...]] = {
    "number": (str, int, float),
    "name": str,
    "prompt": str,
    "negative": str,
    "seed": int,
    "steps": int,
    "guidance": (int, float),
    "width": int,
    "height": int,
    "sampling": str,
    "scheduler": str,
    "seamless": bool,
    "upscale": bool,
    "duration": (int, float),
    "continue": str,
    "prewait": (int, float),
    "fade": (int, float),
    "goto": (str, int, float),
    "morph": bool,
    "morph_frames": int,
    "object": str,
    "object_seed": int,
    "object_steps": int,
    "object_resolution": int,
    **dict.fromkeys(OBJECT_PLACEMENT_KEYS, (int, float)),
}
REQUIRED = ("number", "prompt", "seed")
#: The generation parameters of a cue: what its scene's key is made of.
PARAMS = ("prompt", "negative", "seed", "steps", "guidance", "width", "height", "sampling", "scheduler", "seamless",
          "upscale")  # fmt: skip
MAX_CUES = 1000
#: A morph cue's frames (both worlds included) unless it says ``morph_frames``, and their range.
DEFAULT_MORPH_FRAMES = 8
MORPH_FRAMES = (2, 240)
#: A cue file is at most this many bytes: checked before it is read (its size) and parsed (its text).
MAX_SHOW_BYTES = 1_000_000
#: Arrays and inline tables nest at most this deep (a cue file needs 2: ``cue = [{ … }]``).
MAX_NESTING = 4
#: The longest strings, in characters: the show's and a cue's name, a cue's prompt and negative prompt.
MAX_CHARS = {"name": 200, "prompt": 2000, "negative": 2000, "object": 2000}
#: The seconds a cue's timings take (``fade`` also at the show's level).
SECONDS = {"duration": (0.5, 86400.0), "prewait": (0.0, 3600.0), "fade": (0.0, 60.0)}


@dataclass(frozen=True)
class CueObject:
    """A cue's text → 3D object: rendered with its world into the scene, placed as the cue says."""

    prompt: str
    #: The cue's ``object_seed``, else the cue's ``seed``: a scene is reproducible.
    seed: int
    steps: int | None = None
    resolution: int | None = None
    #: Where it stands; not part of the scene's key (moving an object renders nothing again).
    placement: Placement = DEFAULT_PLACEMENT

    def request(self) -> ObjectRequest:
        return ObjectRequest(self.prompt, seed=self.seed, steps=self.steps, resolution=self.resolution)

    def key_content(self, object_model: str | None) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "seed": self.seed,
            "steps": self.steps,
            "resolution": self.resolution,
            "model": object_model,
        }


@dataclass(frozen=True)
class Cue:
    number: str
    name: str
    #: The generation parameters given (PARAMS keys only; unset ones are the model's defaults).
    params: dict[str, Any]
    #: Seconds shown before an auto-follow (and in a loop); None: until the next GO.
    duration: float | None = None
    follow: bool = False
    #: Seconds from the cue's trigger until its world is sent.
    prewait: float = 0.0
    #: The crossfade into this cue's world, seconds: the cue's own, else the show's, else None.
    fade: float | None = None
    #: The cue that stands by after this one instead of the next in the list; None: the next.
    goto: str | None = None
    #: The line each of the cue's keys is written on ("": its ``[[cue]]`` header), for messages.
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    #: ``morph = true``: the cue before it in the file, whose world this cue's scene morphs from.
    morph_from: Cue | None = None
    #: The morph's frames, both worlds included (``morph_frames``).
    morph_frames: int = DEFAULT_MORPH_FRAMES
    #: ``object = "…"``: a 3D object rendered with the world and placed in it when the cue fires.
    object: CueObject | None = None

    @property
    def upscale(self) -> bool:
        return bool(self.params.get("upscale", False))

    def line(self, key: str | None = None) -> int:
        """The line ``key`` is written on, else the cue's ``[[cue]]`` line (0: not known)."""
        return self.key_lines.get(key or "", self.key_lines.get("", 0))

    def request(self) -> GenerateRequest:
        p = self.params
        return GenerateRequest(
            prompt=p["prompt"],
            negative_prompt=p.get("negative", ""),
            seed=p["seed"],
            steps=p.get("steps"),
            guidance=None if p.get("guidance") is None else float(p["guidance"]),
            width=p.get("width"),
            height=p.get("height"),
            scheduler=p.get("scheduler"),
            seamless=p.get("seamless"),
            sampling=p.get("sampling"),
        )

    def scene_key(self, model_identity: str, object_model: str | None = None) -> str:
        """SHA-256 of the canonical parameters and the model (id, revision, configs, engine version):
        a changed cue gets a new key, two cues with the same parameters share one. A morph cue's key
        also holds the world it morphs from and its frames (its fade is when it plays, not what it is);
        a cue's object, its prompt, seed, steps, resolution and the object model (not where it stands)."""
        content: dict[str, Any] = {"params": self.params, "model": model_identity}
        if self.morph_from is not None:
            content["morph"] = {"from": self.morph_from.params, "frames": self.morph_frames}
        if self.object is not None:
            content["object"] = self.object.key_content(object_model)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Show:
    name: str
    cues: tuple[Cue, ...]
    loop: bool = False
    fallback: str | None = None
    #: Where it was read from (the bridge reloads it after a restart).
    source: str = ""
    #: The crossfade of cues without their own ``fade`` (already in each cue's ``fade``); None: not given.
    fade: float | None = None
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({cue.number: i for i, cue in enumerate(self.cues)})

    def index(self, number: str) -> int | None:
        return self._index.get(number)

    def cue(self, number: str) -> Cue | None:
        i = self._index.get(number)
        return None if i is None else self.cues[i]


@dataclass(frozen=True)
class Mistake:
    """One mistake: ``text`` is ``file:line: message``; ``line`` 0 for the whole file."""

    line: int
    text: str
    #: The cue it belongs to (its number); None: the show's own (its keys, cue numbers, fallback, goto).
    cue: str | None = None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class ShowReading:
    """A cue file as read, every mistake kept. ``cues``: the cues without a mistake of their own keys;
    ``show``: the show of those cues, or None when a mistake of the show's own leaves none."""

    source: str
    show: Show | None
    cues: tuple[Cue, ...] = ()
    found: tuple[Mistake, ...] = ()

    @property
    def mistakes(self) -> tuple[str, ...]:
        """Every mistake, in the order of their lines (those of the whole file first)."""
        return tuple(m.text for m in sorted(self.found, key=lambda m: m.line))

    @property
    def show_mistakes(self) -> tuple[str, ...]:
        """The show's own mistakes: with one, no cue can be shown (``pregen`` stops)."""
        return tuple(m.text for m in sorted(self.found, key=lambda m: m.line) if m.cue is None)

    @property
    def cue_mistakes(self) -> dict[str, tuple[str, ...]]:
        """Cue number → its mistakes (its keys' values, and the model's limits when checked)."""
        by_cue: dict[str, tuple[str, ...]] = {}
        for m in sorted(self.found, key=lambda m: m.line):
            if m.cue is not None:
                by_cue[m.cue] = (*by_cue.get(m.cue, ()), m.text)
        return by_cue

    @property
    def valid_cues(self) -> tuple[Cue, ...]:
        """The cues without any mistake (what ``pregen`` renders)."""
        bad = self.cue_mistakes
        return tuple(cue for cue in self.cues if cue.number not in bad)

    def checked(self) -> Show:
        """The show; :class:`BadShow` with every mistake if there is any."""
        if self.found or self.show is None:
            raise BadShow(*self.mistakes)
        return self.show


def too_large(source: str, size: int | None = None) -> str:
    """The mistake of a cue file over ``MAX_SHOW_BYTES`` (``size``: its size, when known)."""
    sized = f"{size:,} bytes" if size is not None else f"more than {MAX_SHOW_BYTES:,} bytes"
    return f"{source}: the cue file is {sized}; a cue file has at most {MAX_SHOW_BYTES:,} (split the show)"
