"""Reading a cue file with every mistake kept: the rules of each key, and the line each key is
written on (tomllib keeps no positions). :func:`load_show` and :func:`parse_show` give the show
(or one :class:`BadShow` with every mistake), :func:`read_show_file` and :func:`read_show` the
reading itself, never raising; with a model's ``limits`` every cue is also checked against them.

A mistake belongs to its cue (by number) when it is about that cue's own keys; the show's own keys,
a cue without a usable number, a number used twice, and a ``fallback`` or ``goto`` that names no cue
are the show's (with one of those, no cue can be shown).

A file is bounded before it is parsed (its size, its ``[[cue]]`` count, how deep its arrays and
inline tables nest: each refused as one mistake, without parsing), and its strings after: names,
prompts. Values quoted in a message are cut short, so no message is longer than a line.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bridge.contract.arguments import CUE_NUMBER, cue_number
from bridge.placement import PLACEMENT_RANGES, placement_from
from bridge.show.checks import CueLimits, with_limits
from bridge.show.cues import (
    CONTINUES,
    CUE_KEYS,
    DEFAULT_MORPH_FRAMES,
    MAX_CHARS,
    MAX_CUES,
    MAX_NESTING,
    MAX_SHOW_BYTES,
    MORPH_FRAMES,
    OBJECT_PLACEMENT_KEYS,
    PARAMS,
    SECONDS,
    SHOW_KEYS,
    Cue,
    CueObject,
    Mistake,
    Show,
    ShowReading,
    too_large,
)
from ldm3d_engine.presets import SAMPLINGS, SCHEDULERS
from ldm3d_engine.types import SEED_MAX

#: Adds one mistake at a key of the cue (None: its header line).
Mark = Callable[[str | None, str], None]
_KINDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}
_NUMBER_RULE = "use up to 64 letters, digits, '.', '-' or '_'"
#: Quotes a value in a message, cut short (a 1 MB string or a deep array is a few dozen characters).
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 60
_QUOTE.maxlevel, _QUOTE.maxlist, _QUOTE.maxdict = 2, 4, 4
#: The cues a message lists (``cues: 1, 2, …``) before it says how many there are in all.
_LISTED = 12


def read_show(text: str, source: str = "<show>", limits: CueLimits | None = None) -> ShowReading:
    """The show in ``text`` with all its mistakes (and the model's, given its ``limits``); never raises."""
    reading = read(text, source)
    return with_limits(reading, limits) if limits is not None else reading


def read_show_file(path: Path, limits: CueLimits | None = None) -> ShowReading:
    """:func:`read_show` of a file; one that cannot be read, or is too large (from its size, before it
    is read; and never more than the limit is read), is one mistake."""
    try:
        size = path.stat().st_size
        if size > MAX_SHOW_BYTES:
            return ShowReading(str(path), None, (), (Mistake(0, too_large(str(path), size)),))
        with path.open(encoding="utf-8") as file:
            text = file.read(MAX_SHOW_BYTES + 1)  # a file growing meanwhile, or not a plain file
    except (OSError, UnicodeDecodeError) as exc:
        return ShowReading(str(path), None, (), (Mistake(0, f"{path}: cannot read the cue file: {exc}"),))
    if len(text) > MAX_SHOW_BYTES:  # its size said less: not read further
        return ShowReading(str(path), None, (), (Mistake(0, too_large(str(path))),))
    return read_show(text, str(path), limits)


def parse_show(text: str, source: str = "<show>", limits: CueLimits | None = None) -> Show:
    """The show in ``text``; :class:`BadShow` with a ``source:line: …`` line for every mistake."""
    return read_show(text, source, limits).checked()


def load_show(path: Path, limits: CueLimits | None = None) -> Show:
    """The show in the file at ``path``; :class:`BadShow` with every mistake."""
    return read_show_file(path, limits).checked()


def read(text: str, source: str) -> ShowReading:
    early = _bounds(text, source)
    if early is not None:
        return ShowReading(source, None, (), (early,))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return ShowReading(source, None, (), (Mistake(0, f"{source}: not valid TOML: {exc}"),))
    except RecursionError:  # deeper than Python's TOML reader follows, past the scan below
        message = f"{source}: arrays or inline tables nested too deep to read; a cue file needs {_NEEDED} levels"
        return ShowReading(source, None, (), (Mistake(0, message),))
    found = _Found(text, source)
    name, loop, fade = _show_keys(data, found)
    raw_cues = data.get("cue", [])
    if not isinstance(raw_cues, list) or not raw_cues:
        found.add(None, None, "the show has no cues; add [[cue]] tables")
        return found.reading(None, [])
    if len(raw_cues) > MAX_CUES:
        found.add(None, None, f"{len(raw_cues)} cues; a show has at most {MAX_CUES}")
        return found.reading(None, [])
    cues: list[Cue] = []
    seen: dict[str, int] = {}
    gotos: list[tuple[int, str]] = []
    made: dict[int, Cue] = {}
    for i, raw in enumerate(raw_cues):
        number, cue, goto = _cue(raw, i, fade, found)
        if cue is not None and isinstance(raw, dict) and raw.get("morph") is True:
            cue = _morph(cue, i, made.get(i - 1), found)
        if cue is not None:
            made[i] = cue
        if number is None:
            continue
        if number in seen:
            found.add(i, "number", f"cue number {number!r} is used twice (cues {seen[number] + 1} and {i + 1})")
        else:
            seen[number] = i
        if goto is not None:
            gotos.append((i, goto))
        if cue is not None:
            cues.append(cue)
    fallback = data.get("fallback")
    if fallback is not None:
        if not isinstance(fallback, str | int | float) or isinstance(fallback, bool):
            found.add(None, "fallback", f"fallback must name a cue, got {_q(fallback)}")
            fallback = None
        else:
            fallback = cue_number(fallback)
            if fallback not in seen:
                found.add(None, "fallback", f"fallback {_q(fallback)} is not a cue of this show; cues: {_some(seen)}")
    for i, goto in gotos:
        if goto not in seen:
            found.add(i, "goto", f"goto {_q(goto)} is not a cue of this show; cues: {_some(seen)}")
    show = None if found.of_the_show() else Show(name, tuple(cues), loop, fallback, source, fade)
    return found.reading(show, cues)


def _show_keys(data: dict[str, Any], found: _Found) -> tuple[str, bool, float | None]:
    for key in data:
        if key not in SHOW_KEYS:
            found.add(None, key, f"unknown show key {_q(key)}; a show has {', '.join(SHOW_KEYS)}")
    name = data.get("name", "")
    if not isinstance(name, str) or not name.strip():
        found.add(None, "name", 'the show needs a name: name = "…"')
        name = ""
    elif len(name) > MAX_CHARS["name"]:
        found.add(None, "name", _too_long("the show's name", name, MAX_CHARS["name"]))
    loop = data.get("loop", False)
    if not isinstance(loop, bool):
        found.add(None, "loop", f"loop must be true or false, got {_q(loop)}")
        loop = False
    fade = data.get("fade")
    if fade is not None and not _seconds("fade", fade, lambda key, message: found.add(None, key, message)):
        fade = None
    return name.strip(), loop, None if fade is None else float(fade)


def _cue(raw: Any, i: int, show_fade: float | None, found: _Found) -> tuple[str | None, Cue | None, str | None]:
    """The cue's number (None: none usable), the cue (None: it has a mistake) and its ``goto``."""
    if not isinstance(raw, dict):
        found.add(i, None, "a cue is a [[cue]] table")
        return None, None, None
    given = raw.get("number")
    number = None
    if isinstance(given, str | int | float) and not isinstance(given, bool):
        number = cue_number(given) if CUE_NUMBER.fullmatch(cue_number(given)) else None
    before = len(found.items)

    def mark(key: str | None, message: str) -> None:
        found.add(i, key, message, number)

    ok: dict[str, Any] = {}
    for key, value in raw.items():
        expected = CUE_KEYS.get(key)
        if expected is None:
            mark(key, f"unknown cue key {_q(key)}; a cue has {', '.join(CUE_KEYS)}")
        elif (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            kinds = expected if isinstance(expected, tuple) else (expected,)
            mark(key, f"{key} must be {' or '.join(_KINDS[k.__name__] for k in kinds)}, got {_q(value)}")
        elif isinstance(value, str) and len(value) > MAX_CHARS.get(key, len(value)):
            mark(key, _too_long(key, value, MAX_CHARS[key]))
        else:
            ok[key] = value
    for key in ("number", "prompt", "seed"):
        if key not in raw:
            mark(None, f"cue {i + 1} has no {key}{' (a scene must be reproducible)' if key == 'seed' else ''}")
    if "number" in ok and number is None:
        mark("number", f"cue number {_q(cue_number(ok['number']))}: {_NUMBER_RULE}")
    if "prompt" in ok and not ok["prompt"].strip():
        mark("prompt", "the prompt is empty; say what the world should show")
    _check_values(ok, mark)
    follow = ok.get("continue", "none")
    if follow not in CONTINUES:
        mark("continue", f"continue {_q(follow)} is unknown; use {' or '.join(repr(c) for c in CONTINUES)}")
    elif follow == "follow" and "duration" not in raw:
        mark("continue", 'continue = "follow" needs a duration (seconds before the next cue)')
    goto = None
    if "goto" in ok:
        goto = cue_number(ok["goto"])
        if not CUE_NUMBER.fullmatch(goto):
            mark("goto", f"goto {_q(goto)} is not a cue number: {_NUMBER_RULE}")
            goto = None
    if number is None or len(found.items) > before:
        return number, None, goto
    lines = {key: found.lines.find(i, key) for key in raw}
    lines[""] = found.lines.find(i, None)
    fade = ok.get("fade", show_fade)
    cue = Cue(
        number,
        ok.get("name", number),
        {k: raw[k] for k in PARAMS if k in raw},
        None if "duration" not in ok else float(ok["duration"]),
        follow == "follow",
        prewait=float(ok.get("prewait", 0.0)),
        fade=None if fade is None else float(fade),
        goto=goto,
        key_lines=lines,
        morph_frames=int(ok.get("morph_frames", DEFAULT_MORPH_FRAMES)),
        object=_object(ok),
    )
    return number, cue, goto


def _object(ok: dict[str, Any]) -> CueObject | None:
    """The cue's object, from keys already checked (None: the cue places none)."""
    if "object" not in ok:
        return None
    placement = placement_from({key.removeprefix("object_"): ok[key] for key in OBJECT_PLACEMENT_KEYS if key in ok})
    return CueObject(
        ok["object"],
        int(ok.get("object_seed", ok["seed"])),
        ok.get("object_steps"),
        ok.get("object_resolution"),
        placement,
    )


def _morph(cue: Cue, i: int, before: Cue | None, found: _Found) -> Cue | None:
    """A ``morph = true`` cue, linked to the cue before it in the file (None: a mistake, marked)."""

    def mark(message: str) -> None:
        found.add(i, "morph", message, cue.number)

    if i == 0:
        mark("morph = true needs a cue before it: the cue arrives by morphing from that cue's world")
        return None
    if before is None:
        mark(f"morph = true: the cue before it (cue {i} in the file) has a mistake; fix that one first")
        return None
    if cue.upscale or before.upscale:
        mark("morph = true and upscale = true do not go together (the frames are not upscaled)")
        return None
    if cue.object is not None:
        mark("morph = true and object do not go together yet (give the object to the next cue)")
        return None
    return dataclasses.replace(cue, morph_from=before)


def _check_values(raw: dict[str, Any], mark: Mark) -> None:
    """Ranges a mistake would otherwise only meet at render time (the model's own: :mod:`bridge.show.checks`)."""
    if "seed" in raw and not 0 <= raw["seed"] <= SEED_MAX:
        mark("seed", f"seed {raw['seed']} is out of range; use 0..{SEED_MAX}")
    for key in ("width", "height"):
        if key in raw and (raw[key] % 8 or not 64 <= raw[key] <= 4096):
            mark(key, f"{key} {raw[key]} must be a multiple of 8 from 64 to 4096")
    if "steps" in raw and not 1 <= raw["steps"] <= 150:
        mark("steps", f"steps {raw['steps']} is out of range; allowed 1..150")
    if "guidance" in raw and not 0 <= raw["guidance"] <= 30:
        mark("guidance", f"guidance {raw['guidance']} is out of range; allowed 0..30")
    if "sampling" in raw and raw["sampling"] not in SAMPLINGS:
        mark("sampling", f"sampling {_q(raw['sampling'])} is unknown; use {' or '.join(SAMPLINGS)}")
    if "scheduler" in raw and raw["scheduler"] not in SCHEDULERS:
        mark("scheduler", f"scheduler {_q(raw['scheduler'])} is unknown; use {', '.join(SCHEDULERS)}")
    for key in SECONDS:
        if key in raw:
            _seconds(key, raw[key], mark)
    _check_object(raw, mark)
    if "morph_frames" in raw:
        if raw.get("morph") is not True:
            mark("morph_frames", "morph_frames is for a cue with morph = true")
        elif not MORPH_FRAMES[0] <= raw["morph_frames"] <= MORPH_FRAMES[1]:
            mark(
                "morph_frames",
                f"morph_frames {raw['morph_frames']} is out of range; allowed {MORPH_FRAMES[0]}..{MORPH_FRAMES[1]}",
            )


def _check_object(raw: dict[str, Any], mark: Mark) -> None:
    """A cue's object keys: each ``object_…`` needs ``object``; the prompt, seed and placement in range."""
    extras = [key for key in raw if key.startswith("object_")]
    if "object" not in raw:
        for key in extras:
            mark(key, f'{key} is for a cue with an object (object = "a red lantern")')
        return
    if not raw["object"].strip():
        mark("object", "the object's prompt is empty; say what the object is")
    if "object_seed" in raw and not 0 <= raw["object_seed"] <= SEED_MAX:
        mark("object_seed", f"object_seed {raw['object_seed']} is out of range; use 0..{SEED_MAX}")
    for key in ("object_steps", "object_resolution"):
        if key in raw and raw[key] < 1:
            mark(key, f"{key} {raw[key]} is out of range; it must be at least 1")
    for key in OBJECT_PLACEMENT_KEYS:
        low, high = PLACEMENT_RANGES[key.removeprefix("object_")]
        if key in raw and not (math.isfinite(raw[key]) and low <= raw[key] <= high):
            mark(key, f"{key} {raw[key]} is out of range; allowed {low:g}..{high:g}")


def _seconds(key: str, value: Any, mark: Mark) -> bool:
    """Whether ``value`` is a number of seconds ``key`` allows; if not, the mistake is marked."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        mark(key, f"{key} must be an integer or a number, got {_q(value)}")
        return False
    low, high = SECONDS[key]
    if not (math.isfinite(value) and low <= value <= high):
        mark(key, f"{key} {value} is out of range; allowed {low:g}..{high:g} seconds")
        return False
    return True


def _q(value: Any) -> str:
    """``value`` quoted for a message, cut short."""
    return _QUOTE.repr(value)


def _some(numbers: Iterable[str]) -> str:
    """The first cue numbers, and how many there are in all when that is not all of them."""
    listed = list(numbers)
    more = f", … ({len(listed)} cues)" if len(listed) > _LISTED else ""
    return ", ".join(listed[:_LISTED]) + more


def _too_long(what: str, text: str, most: int) -> str:
    return f"{what} is {len(text):,} characters long; at most {most:,}"


#: How deep a cue file's arrays and inline tables need to nest (``cue = [{ … }]``, or ``[[cue]]``).
_NEEDED = 2
#: A cue table's header (``[[cue]]``), at the start of a line.
_CUE_HEADERS = re.compile(r"^[ \t]*\[\[[ \t]*cue[ \t]*\]\]", re.M)
#: What the nesting scan looks at: strings and comments (skipped whole), and brackets.
_TOKENS = re.compile(r'"""(?:\\.|[^\\])*?"""|\'\'\'.*?\'\'\'|"(?:\\.|[^"\\\n])*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]', re.S)


def _bounds(text: str, source: str) -> Mistake | None:
    """The first limit ``text`` passes, before it is parsed (a parse is the costly part): its size,
    its number of ``[[cue]]`` tables, how deep its arrays and inline tables nest. Linear, and cheap."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SHOW_BYTES:
        return Mistake(0, too_large(source, size))
    headers = [header.start() for header in _CUE_HEADERS.finditer(text)]
    if len(headers) > MAX_CUES:  # at the first cue too many
        line = text.count("\n", 0, headers[MAX_CUES]) + 1
        return Mistake(line, f"{source}:{line}: {len(headers)} cues; a show has at most {MAX_CUES}")
    depth = 0
    for token in _TOKENS.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, token.start()) + 1
                return Mistake(
                    line,
                    f"{source}:{line}: arrays or inline tables nested more than {MAX_NESTING} deep; "
                    f"a cue file needs {_NEEDED}",
                )
        elif bracket in ("]", "}"):
            depth = max(0, depth - 1)
    return None


class _Found:
    """The mistakes found so far, each with its line."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = _Lines(text)
        self.items: list[Mistake] = []

    def add(self, cue: int | None, key: str | None, message: str, number: str | None = None) -> None:
        """A mistake at ``key`` of cue ``cue`` (None: of the show); ``number``: the cue it belongs to."""
        line = self.lines.find(cue, key)
        where = f"{self.source}:{line}" if line else self.source
        self.items.append(Mistake(line, f"{where}: {message}", number))

    def of_the_show(self) -> bool:
        return any(m.cue is None for m in self.items)

    def reading(self, show: Show | None, cues: list[Cue]) -> ShowReading:
        return ShowReading(self.source, show, tuple(cues), tuple(self.items))


_CUE_HEADER = re.compile(r"^\s*\[\[\s*cue\s*\]\]")
_HEADER = re.compile(r"^\s*\[")


class _Lines:
    """Finds the line a key is written on (1-based; 0: not found)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.cue_starts = [n for n, line in enumerate(self.lines) if _CUE_HEADER.match(line)]

    def find(self, cue: int | None, key: str | None) -> int:
        """``key``'s line in cue ``cue`` (its ``[[cue]]`` line when not written there), or in the show's
        keys before the first cue (None: not written there)."""
        if cue is None:
            start, end = 0, self.cue_starts[0] if self.cue_starts else len(self.lines)
        elif cue < len(self.cue_starts):
            start = self.cue_starts[cue]
            end = next((n for n in range(start + 1, len(self.lines)) if _HEADER.match(self.lines[n])), len(self.lines))
        else:
            return 0
        if key is None:
            return start + 1 if cue is not None else 0
        forms = (f'"{key}"', key)  # no regex: a key can be as long as the file

        def written(line: str) -> bool:
            rest = line.lstrip()
            return any(rest.startswith(form) and rest[len(form) :].lstrip().startswith("=") for form in forms)

        found = next((n for n in range(start, end) if written(self.lines[n])), None)
        if found is not None:
            return found + 1
        return start + 1 if cue is not None else 0
