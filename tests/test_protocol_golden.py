"""Approval test of the OSC contract: every address × a corpus of argument shapes (boundaries, wrong types,
too many, too few) → the command parsed, or the exact error a client gets. The expected outcomes are in
tests/data/protocol_golden.json, read and checked by a person when they change:

    LDM3D_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_protocol_golden.py   # then review the diff

Any change of wording, boundary or command shows up here as a diff of that file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bridge.contract.arguments import INT_MAX, INT_MIN
from bridge.contract.protocol import OUTGOING, parse
from bridge.errors import ProtocolError
from bridge.osc.codec import Arg, Message

GOLDEN = Path(__file__).resolve().parent / "data" / "protocol_golden.json"
JOB = "20261122-100000-000-0001"

ADDRESSES = [
    *sorted(OUTGOING),
    *(f"/ldm3d/{name}" for name in ("generate", "img2img", "depth", "upscale", "morph", "prompt", "negative", "seed")),
    "/ldm3d/steps",
    "/ldm3d/object",
    *(f"/ldm3d/{name}" for name in ("guidance", "strength", "scheduler", "sampling", "size", "go", "cancel")),
    *(f"/ldm3d/{name}" for name in ("recall", "subscribe", "unsubscribe", "status", "ping", "stats", "workers")),
    *(f"/ldm3d/{name}/norm" for name in ("steps", "guidance", "strength", "seed", "prompt")),
    *(f"/ldm3d/display/{name}" for name in ("fade", "hold", "blackout", "strength", "colour")),
    *(f"/ldm3d/show/{name}" for name in ("load", "state", "start", "stop", "pause", "resume", "pregen", "play")),
    *(f"/ldm3d/cue{name}" for name in ("", "/go", "/back", "/list", "/standby", "/7")),
    "/ldm3d/rules/reload",
    *(f"/ldm3d/moderation/{name}" for name in ("list", "approve", "reject", "approve_device", "delete")),
    "/ldm3d/explode",
    "/other/thing",
    "/ldm3d",
]
SHAPES: list[tuple[Arg, ...]] = [
    (),
    (0,),
    (1,),
    (-1,),
    (2,),
    (0.0,),
    (0.5,),
    (1.0,),
    (24.6,),
    (60.5,),
    (INT_MAX,),
    (INT_MAX + 1,),
    (INT_MIN,),
    (INT_MIN - 1,),
    (float("nan"),),
    (float("inf"),),
    (1e30,),
    ("text",),
    (JOB,),
    (True,),
    (False,),
    (None,),
    (b"\x01\x02",),
    (2, 3),
    ("a", "b"),
    (1, 2, 3),
    (65535,),
    (65536,),
    (9001, "10.0.0.5"),
    (9001, 5),
    (9001, "10.0.0.5", "x"),
    (9001, "lease", 0),
    (9001, "10.0.0.5", "lease", 600),
    (9001, "lease", 5),
    (9001, "lease", "long"),
    (JOB, "noise_level", 20),
    (JOB, "bogus", 1),
    ("in.png", "a prompt", "strength", 0.5, "depth", "d.png"),
    ("a prompt", "seed", 3),
    ("a prompt", "seed"),
    ("a prompt", "bogus", 1),
    ("a prompt", "steps", "ten"),
    ("a prompt", "guidance", 7.5, "negative", "x", "width", 512, "height", 256, "model", "m"),
    ("a prompt", "scheduler", "ddim", "seamless", 1, "sampling", "fast", "format", "png"),
    ("a prompt", 5, 6),
    ("a prompt", "resolution", 64, "steps", 10, "guidance", 6.5),
]


def outcome(address: str, args: tuple[Arg, ...]) -> str:
    try:
        return repr(parse(Message(address, args)))
    except ProtocolError as exc:
        return f"{type(exc).__name__}: {exc}"


def corpus() -> dict[str, str]:
    """Every address with every shape; what the bridge itself sends, with three (it ignores them all)."""
    return {
        f"{address} {args!r}": outcome(address, args)
        for address in ADDRESSES
        for args in (SHAPES[:3] if address in OUTGOING else SHAPES)
    }


def test_every_message_of_the_corpus_parses_as_approved() -> None:
    got = corpus()
    if os.environ.get("LDM3D_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    changed = [key for key in got if got[key] != expected.get(key)]
    assert not changed, "\n".join(f"{key}\n  was: {expected.get(key)}\n  now: {got[key]}" for key in changed[:10])
    assert set(expected) == set(got)
