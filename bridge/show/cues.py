"""Cue files: a show's worlds, written in advance, in TOML (read with the standard library).

::

    name = "Deep sea"          # the show
    loop = true                # museum mode: after the last cue, the first again
    fallback = "0"             # shown at start and whenever a generation fails

    [[cue]]
    number = "1"               # a string, as in QLab: "1", "2.5", "intro"
    name = "Reef at noon"
    prompt = "a coral reef at noon"
    seed = 42                  # required: a scene is reproducible
    steps = 30                 # optional: steps, guidance, negative, width, height,
    duration = 60              #   sampling, scheduler, seamless, upscale = true
    continue = "follow"        # "none" (wait for GO) or "follow" (next cue after duration)

Pure: text in, :class:`Show` out. Every mistake is a :class:`BadShow` naming the file, the
line and what is allowed; nothing here touches a model.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.contract.arguments import CUE_NUMBER, cue_number
from bridge.errors import BadShow
from ldm3d_engine.presets import SAMPLINGS, SCHEDULERS
from ldm3d_engine.types import SEED_MAX, GenerateRequest

CONTINUES = ("none", "follow")
SHOW_KEYS = ("name", "loop", "fallback", "cue")
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
}
REQUIRED = ("number", "prompt", "seed")
#: The generation parameters of a cue: what its scene's key is made of.
PARAMS = ("prompt", "negative", "seed", "steps", "guidance", "width", "height", "sampling", "scheduler", "seamless",
          "upscale")  # fmt: skip
MAX_CUES = 1000


@dataclass(frozen=True)
class Cue:
    number: str
    name: str
    #: The generation parameters given (PARAMS keys only; unset ones are the model's defaults).
    params: dict[str, Any]
    #: Seconds shown before an auto-follow (and in a loop); None: until the next GO.
    duration: float | None = None
    follow: bool = False

    @property
    def upscale(self) -> bool:
        return bool(self.params.get("upscale", False))

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

    def scene_key(self, model_identity: str) -> str:
        """SHA-256 of the canonical parameters and the model (id, revision, configs, engine version):
        a changed cue gets a new key, two cues with the same parameters share one."""
        canonical = json.dumps({"params": self.params, "model": model_identity}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Show:
    name: str
    cues: tuple[Cue, ...]
    loop: bool = False
    fallback: str | None = None
    #: Where it was read from (the bridge reloads it after a restart).
    source: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({cue.number: i for i, cue in enumerate(self.cues)})

    def index(self, number: str) -> int | None:
        return self._index.get(number)

    def cue(self, number: str) -> Cue | None:
        i = self._index.get(number)
        return None if i is None else self.cues[i]


def load_show(path: Path) -> Show:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadShow(f"{path}: cannot read the cue file: {exc}") from None
    return parse_show(text, str(path))


def parse_show(text: str, source: str = "<show>") -> Show:
    """The show in ``text``; :class:`BadShow` with ``source:line`` for the first mistake."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadShow(f"{source}: not valid TOML: {exc}") from None
    lines = _Lines(text, source)
    for key in data:
        if key not in SHOW_KEYS:
            raise lines.error(None, key, f"unknown show key {key!r}; a show has {', '.join(SHOW_KEYS)}")
    name = data.get("name", "")
    if not isinstance(name, str) or not name.strip():
        raise lines.error(None, "name", 'the show needs a name: name = "…"')
    loop = data.get("loop", False)
    if not isinstance(loop, bool):
        raise lines.error(None, "loop", f"loop must be true or false, got {loop!r}")
    raw_cues = data.get("cue", [])
    if not isinstance(raw_cues, list) or not raw_cues:
        raise BadShow(f"{source}: the show has no cues; add [[cue]] tables")
    if len(raw_cues) > MAX_CUES:
        raise BadShow(f"{source}: {len(raw_cues)} cues; a show has at most {MAX_CUES}")
    cues: list[Cue] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_cues):
        cue = _cue(raw, i, lines)
        if cue.number in seen:
            raise lines.error(
                i, "number", f"cue number {cue.number!r} is used twice (cues {seen[cue.number] + 1} and {i + 1})"
            )
        seen[cue.number] = i
        cues.append(cue)
    fallback = data.get("fallback")
    if fallback is not None:
        if not isinstance(fallback, str | int | float) or isinstance(fallback, bool):
            raise lines.error(None, "fallback", f"fallback must name a cue, got {fallback!r}")
        fallback = cue_number(fallback)
        if fallback not in seen:
            raise lines.error(
                None, "fallback", f"fallback {fallback!r} is not a cue of this show; cues: {', '.join(seen)}"
            )
    return Show(name.strip(), tuple(cues), loop, fallback, source)


def _cue(raw: Any, i: int, lines: _Lines) -> Cue:
    if not isinstance(raw, dict):
        raise lines.error(i, None, "a cue is a [[cue]] table")
    for key, value in raw.items():
        if key not in CUE_KEYS:
            raise lines.error(i, key, f"unknown cue key {key!r}; a cue has {', '.join(CUE_KEYS)}")
        expected = CUE_KEYS[key]
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            kinds = expected if isinstance(expected, tuple) else (expected,)
            want = " or ".join(
                {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}[k.__name__]
                for k in kinds
            )
            raise lines.error(i, key, f"{key} must be {want}, got {value!r}")
    for key in REQUIRED:
        if key not in raw:
            why = " (a scene must be reproducible)" if key == "seed" else ""
            raise lines.error(i, None, f"cue {i + 1} has no {key}{why}")
    number = cue_number(raw["number"])
    if not CUE_NUMBER.fullmatch(number):
        raise lines.error(i, "number", f"cue number {number!r}: use up to 64 letters, digits, '.', '-' or '_'")
    if not raw["prompt"].strip():
        raise lines.error(i, "prompt", "the prompt is empty; say what the world should show")
    _check_values(raw, i, lines)
    duration = raw.get("duration")
    follow = raw.get("continue", "none")
    if follow not in CONTINUES:
        raise lines.error(
            i, "continue", f"continue {follow!r} is unknown; use {' or '.join(repr(c) for c in CONTINUES)}"
        )
    if follow == "follow" and duration is None:
        raise lines.error(i, "continue", 'continue = "follow" needs a duration (seconds before the next cue)')
    params = {k: raw[k] for k in PARAMS if k in raw}
    return Cue(
        number, raw.get("name", number), params, None if duration is None else float(duration), follow == "follow"
    )


def _check_values(raw: dict[str, Any], i: int, lines: _Lines) -> None:
    """Ranges a mistake would otherwise only meet at render time (the model checks sizes and steps)."""
    if not 0 <= raw["seed"] <= SEED_MAX:
        raise lines.error(i, "seed", f"seed {raw['seed']} is out of range; use 0..{SEED_MAX}")
    for key in ("width", "height"):
        if key in raw and (raw[key] % 8 or not 64 <= raw[key] <= 4096):
            raise lines.error(i, key, f"{key} {raw[key]} must be a multiple of 8 from 64 to 4096")
    if "steps" in raw and not 1 <= raw["steps"] <= 150:
        raise lines.error(i, "steps", f"steps {raw['steps']} is out of range; allowed 1..150")
    if "guidance" in raw and not 0 <= raw["guidance"] <= 30:
        raise lines.error(i, "guidance", f"guidance {raw['guidance']} is out of range; allowed 0..30")
    if "sampling" in raw and raw["sampling"] not in SAMPLINGS:
        raise lines.error(i, "sampling", f"sampling {raw['sampling']!r} is unknown; use {' or '.join(SAMPLINGS)}")
    if "scheduler" in raw and raw["scheduler"] not in SCHEDULERS:
        raise lines.error(i, "scheduler", f"scheduler {raw['scheduler']!r} is unknown; use {', '.join(SCHEDULERS)}")
    duration = raw.get("duration")
    if duration is not None and not (math.isfinite(duration) and 0.5 <= duration <= 86400):
        raise lines.error(i, "duration", f"duration {duration} is out of range; allowed 0.5..86400 seconds")


_CUE_HEADER = re.compile(r"^\s*\[\[\s*cue\s*\]\]")
_HEADER = re.compile(r"^\s*\[")


class _Lines:
    """Finds where a key is written, so a message can give its line (tomllib keeps no positions)."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = text.splitlines()
        self.cue_starts = [n for n, line in enumerate(self.lines) if _CUE_HEADER.match(line)]

    def error(self, cue: int | None, key: str | None, message: str) -> BadShow:
        line = self._find(cue, key)
        where = f"{self.source}:{line + 1}" if line is not None else self.source
        return BadShow(f"{where}: {message}")

    def _find(self, cue: int | None, key: str | None) -> int | None:
        if cue is None:
            start, end = 0, self.cue_starts[0] if self.cue_starts else len(self.lines)
        elif cue < len(self.cue_starts):
            start = self.cue_starts[cue]
            end = next((n for n in range(start + 1, len(self.lines)) if _HEADER.match(self.lines[n])), len(self.lines))
        else:
            return None
        if key is None:
            return start if cue is not None else None
        pattern = re.compile(rf"^\s*(\"{re.escape(key)}\"|{re.escape(key)})\s*=")
        found = next((n for n in range(start, end) if pattern.match(self.lines[n])), None)
        return found if found is not None else (start if cue is not None else None)
