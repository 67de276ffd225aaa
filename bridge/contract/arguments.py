"""How one OSC argument is read: the contract's rules for values, pure.

Ints may arrive as floats (tablet faders send floats: rounded), every integer fits OSC's
int32, a trigger fires on no argument or a non-zero first argument and ignores 0 (a button's
release), and a cue number is a short name or a number (3 → "3", 2.5 → "2.5"). Each reader
raises :class:`~bridge.errors.BadArguments` naming the value it got.
"""

from __future__ import annotations

import math
import re

from bridge.errors import BadArguments
from bridge.osc.codec import Arg

INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # OSC's int32: every integer of the contract fits


def describe(value: Arg) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, bytes) else f"a blob of {len(value)} bytes"


def as_int(value: Arg, what: str) -> int:
    """An int, or a float rounded to one (tablet faders send floats)."""
    if isinstance(value, bool) or value is None:
        raise BadArguments(f"{what} must be a number, got {describe(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadArguments(f"{what} must be a finite number, got {value}")
        value = round(value)
    if not isinstance(value, int):
        raise BadArguments(f"{what} must be a number, got {describe(value)}")
    if not INT_MIN <= value <= INT_MAX:
        shown = str(value) if abs(value) < 10**15 else f"{value:.3g}"  # a seed reads as typed, not as 1e+11
        raise BadArguments(f"{what} {shown} is out of range; whole numbers here go from {INT_MIN} to {INT_MAX}")
    return value


def as_float(value: Arg, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadArguments(f"{what} must be a number, got {describe(value)}")
    if not math.isfinite(value):
        raise BadArguments(f"{what} must be a finite number, got {value}")
    return float(value)


def as_str(value: Arg, what: str) -> str:
    """A string that is text: no lone UTF-16 surrogate (see :func:`check_text`)."""
    if not isinstance(value, str):
        raise BadArguments(f"{what} must be a string, got {describe(value)}")
    check_text(value, what)
    return value


def check_text(value: str, what: str) -> None:
    """BadArguments when ``value`` holds a lone UTF-16 surrogate (``"\\ud800"``, which JSON can carry
    and UTF-8 cannot): not text, and it would fail later in the tokenizer or in a log line. OSC
    over UDP cannot carry one (its strings are decoded as strict UTF-8); the page's JSON can."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadArguments(
            f"{what} is not text: it holds a lone UTF-16 surrogate ({value[exc.start]!r}) at character {exc.start}"
        ) from None


def as_bool(value: Arg, what: str) -> bool:
    """true/false, or a number: 0 is off, anything else on."""
    if isinstance(value, bool):
        return value
    return as_int(value, what) != 0


CONVERT = {"int": as_int, "float": as_float, "str": as_str, "bool": as_bool}


#: What a cue number may be (cue files and the /ldm3d/cue/<number> address alike).
CUE_NUMBER = re.compile(r"[A-Za-z0-9._-]{1,64}")


def cue_number(value: str | int | float) -> str:
    """A cue number as a string: 3 → "3", 2.5 → "2.5" (TouchOSC buttons send numbers)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def is_trigger(args: tuple[Arg, ...]) -> bool:
    """No argument or a non-zero first argument fires; 0 (a button's release) does not."""
    if not args:
        return True
    first = args[0]
    if isinstance(first, bool) or first is None:
        return bool(first)
    if isinstance(first, int | float):
        return first != 0
    return True
