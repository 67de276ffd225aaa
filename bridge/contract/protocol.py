"""The OSC contract: messages → commands. Pure: no sockets, no queue, no engine.

The contract's rules live here: every address and the command it makes, options as
key/value pairs after the positional arguments; how one argument is read (ints may arrive
as floats, rounded; triggers fire on no argument or a non-zero first argument and ignore 0)
is :mod:`bridge.contract.arguments`. Longer than our other modules on purpose: it is the one
table of the contract, read top to bottom beside docs/osc.md (the commands, then ``parse``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bridge.contract.arguments import (
    CONVERT,
    CUE_NUMBER,
    as_bool,
    as_float,
    as_int,
    as_str,
    cue_number,
    describe,
    is_trigger,
)
from bridge.contract.ranges import NORMALISED
from bridge.errors import BadArguments, UnknownAddress
from bridge.osc.codec import Arg, Message
from bridge.output.job_ids import JOB_ID_RE

PREFIX = "/ldm3d/"
#: What the bridge sends. Arriving at the bridge (a bridge subscribed to another, or to itself),
#: they are ignored without a reply, so two bridges can never answer each other forever.
#: (``/ldm3d/stats`` is both: with arguments it is an answer and is ignored too.)
OUTGOING = frozenset(
    PREFIX + name
    for name in (
        "accepted",
        "progress",
        "ready",
        "error",
        "warning",
        "cancelled",
        "state",
        "stage",
        "subscribed",
        "pending",
        "unsubscribed",
        "pong",
        "busy",
        "progress/fraction",
        "cue/info",
        "cue/end",
        "show/progress",
        "worker",
        "rules",
        "moderation/item",
        "moderation/waiting",
        "moderation/dropped",
        "preview",
        "morph/frame",
        "object/ready",
        "object/clear",
    )
)

#: The longest subscription lease a client may ask for (a week); ``lease 0`` asks for none.
MAX_LEASE_S = 7 * 24 * 3600.0

#: key → type for /ldm3d/generate options and for the stage.
OPTION_TYPES: dict[str, str] = {
    "seed": "int",
    "steps": "int",
    "guidance": "float",
    "negative": "str",
    "width": "int",
    "height": "int",
    "model": "str",
    "scheduler": "str",
    "seamless": "bool",
    "sampling": "str",
    "format": "str",
    "preview_every": "int",
}
#: Display controls relayed to TouchDesigner, and their ranges (hold and blackout are switches: 0 or 1).
DISPLAY: dict[str, tuple[float, float]] = {"fade": (0.0, 60.0), "hold": (0.0, 1.0), "blackout": (0.0, 1.0),
                                           "strength": (0.0, 1.0)}  # fmt: skip
#: Stage values (set one by one, used by /ldm3d/go) and their types; ``size`` takes two ints.
STAGE_TYPES: dict[str, str] = {
    "prompt": "str",
    "negative": "str",
    "seed": "int",
    "steps": "int",
    "guidance": "float",
    "strength": "float",
    "scheduler": "str",
    "sampling": "str",
}
#: /ldm3d/img2img: the generate options, plus how far to move and an optional depth map.
IMG2IMG_OPTION_TYPES: dict[str, str] = {**OPTION_TYPES, "strength": "float", "depth": "str", "flat_depth": "bool"}
#: /ldm3d/depth options: a 360° picture or not (default: the model's seamless), the texture format.
DEPTH_OPTION_TYPES: dict[str, str] = {"equirect": "bool", "format": "str"}
#: /ldm3d/morph options: how many frames (both worlds included), over how long, the seed of a prompt's world.
MORPH_OPTION_TYPES: dict[str, str] = {
    "frames": "int",
    "seconds": "float",
    "seed": "int",
    "preview_every": "int",
    "format": "str",
}
#: /ldm3d/object options: text → 3D (the seed, the sampler, the marching-cubes grid), then where the
#: object stands in the world (:mod:`bridge.placement`: degrees and fractions of the radius).
OBJECT_OPTION_TYPES: dict[str, str] = {
    "seed": "int",
    "steps": "int",
    "guidance": "float",
    "resolution": "int",
    "yaw": "float",
    "pitch": "float",
    "distance": "float",
    "size": "float",
    "turn": "float",
}
#: /ldm3d/upscale options.
UPSCALE_OPTION_TYPES: dict[str, str] = {
    "prompt": "str",
    "negative": "str",
    "seed": "int",
    "steps": "int",
    "guidance": "float",
    "noise_level": "int",
    "scheduler": "str",
    "seamless": "bool",
    "sampling": "str",
    "format": "str",
    "preview_every": "int",
    "width": "int",
    "height": "int",
    "scale": "int",
}


@dataclass(frozen=True)
class Generate:
    prompt: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Img2Img:
    image: str
    prompt: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Depth:
    """``/ldm3d/depth <image>``: a world from a picture, its depth estimated."""

    image: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Upscale:
    job_id: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Morph:
    """``/ldm3d/morph <from job id> <to job id or prompt>``: the worlds between two (frames, seconds…)."""

    from_job: str
    to: str  # a finished job's id, or a prompt (the first world's settings, a new seed)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Object:
    """``/ldm3d/object <prompt>``: a text → 3D object (``objects/<id>/``: mesh.obj, mesh.glb)."""

    prompt: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SetStage:
    name: str  # one of STAGE_TYPES
    value: Any


@dataclass(frozen=True)
class SetStageNorm:
    """``/ldm3d/<name>/norm <0..1>``: a fader over the model's range of ``name`` (steps, guidance, strength)."""

    name: str
    fraction: float


@dataclass(frozen=True)
class Display:
    """``/ldm3d/display/<name> <value>``: how TouchDesigner shows the world, relayed to every subscriber."""

    name: str  # one of DISPLAY
    value: float | int


@dataclass(frozen=True)
class Go:
    pass


@dataclass(frozen=True)
class Ignored:
    """A trigger with 0 (a button's release): nothing happens, nothing is sent."""


@dataclass(frozen=True)
class Cancel:
    job_id: str | None


@dataclass(frozen=True)
class Recall:
    job_id: str


@dataclass(frozen=True)
class Subscribe:
    port: int
    host: str | None
    #: Seconds asked for (0: no expiry); None: the bridge's lease.
    lease: float | None = None


@dataclass(frozen=True)
class Unsubscribe:
    port: int
    host: str | None


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class ShowLoad:
    """``/ldm3d/show/load <file> [fire]``: a cue file inside the bridge's input folders; ``fire`` 0
    loads it without firing (its first cue stands by)."""

    path: str
    fire: bool = True


@dataclass(frozen=True)
class CueShow:
    """``/ldm3d/cue <number>``: show that cue (numbers are strings; a button's 3 means "3")."""

    number: str


@dataclass(frozen=True)
class CueStandby:
    """``/ldm3d/cue/standby <number>``: the cue GO fires next."""

    number: str


@dataclass(frozen=True)
class ShowControl:
    """A show trigger: ``go`` and ``back`` (``/ldm3d/cue/go``, ``/ldm3d/cue/back``), ``list``
    (``/ldm3d/cue/list``), ``state``, ``stop``, ``start``, ``pause``, ``resume``, ``pregen``
    (``/ldm3d/show/…``)."""

    action: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Stats:
    pass


@dataclass(frozen=True)
class RulesReload:
    """``/ldm3d/rules/reload``: read the prompt rules file again (a button: 0 is ignored)."""


@dataclass(frozen=True)
class Moderate:
    """``/ldm3d/moderation/approve``, ``…/reject``, ``…/approve_device`` with a ticket (``action``),
    or ``/ldm3d/moderation/list`` (``ticket`` "")."""

    action: str
    ticket: str = ""


#: Moderation decisions: address (under /ldm3d/moderation/) → action.
MODERATION_ACTIONS = ("approve", "reject", "approve_device")


@dataclass(frozen=True)
class Workers:
    """``/ldm3d/workers``: one ``/ldm3d/worker`` reply per worker of the pool."""


Command = (
    Generate
    | Img2Img
    | Depth
    | Upscale
    | Morph
    | Object
    | SetStage
    | SetStageNorm
    | Display
    | Go
    | Ignored
    | Cancel
    | Recall
    | Subscribe
    | Unsubscribe
    | Status
    | Ping
    | Stats
    | Workers
    | RulesReload
    | Moderate
    | ShowLoad
    | CueShow
    | CueStandby
    | ShowControl
)

#: Show triggers: address (under /ldm3d/) → action. A trigger's 0 (a button's release) is ignored.
SHOW_TRIGGERS = {
    "cue/go": "go",
    "cue/back": "back",
    "cue/list": "list",
    "show/stop": "stop",
    "show/start": "start",
    "show/pause": "pause",
    "show/resume": "resume",
    "show/pregen": "pregen",
}


def parse_options(args: tuple[Arg, ...], address: str, types: dict[str, str] = OPTION_TYPES) -> dict[str, Any]:
    """Key/value pairs → options, each converted to its type in ``types``."""
    if len(args) % 2:
        raise BadArguments(
            f"{address}: options come in key/value pairs; {args[-1]!r} has no value (keys: {', '.join(types)})"
        )
    options: dict[str, Any] = {}
    for key, value in zip(args[::2], args[1::2], strict=True):
        if not isinstance(key, str) or key not in types:
            raise BadArguments(f"{address}: unknown option {key!r}; options are {', '.join(types)}")
        options[key] = CONVERT[types[key]](value, f"option {key!r}")
    return options


def _job_id(value: Arg, address: str) -> str:
    job_id = as_str(value, f"{address}: the job id")
    if not JOB_ID_RE.match(job_id):
        raise BadArguments(f"{address}: {job_id!r} is not a job id (they look like 20261122-031502-123-0007)")
    return job_id


def _port_host(args: tuple[Arg, ...], address: str) -> tuple[int, str | None]:
    if not 1 <= len(args) <= 2:
        raise BadArguments(f"{address} takes a port and an optional host, got {len(args)} arguments")
    port = as_int(args[0], f"{address}: the port")
    if not 1 <= port <= 65535:
        raise BadArguments(f"{address}: port {port} is out of range 1..65535")
    host = as_str(args[1], f"{address}: the host") if len(args) == 2 else None
    return port, host


def _single(args: tuple[Arg, ...], address: str) -> Arg:
    if len(args) != 1:
        raise BadArguments(f"{address} takes exactly one value, got {len(args)}")
    return args[0]


def _cue_number(value: Arg, address: str) -> str:
    """A cue number as sent (a string, or a button's number: 3 is "3")."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadArguments(f"{address}: the cue number must be a string or a number, got {describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadArguments(f"{address}: the cue number must be finite, got {value}")
    number = cue_number(value)
    if not number or len(number) > 64:
        raise BadArguments(f"{address}: a cue number has 1 to 64 characters, got {len(number)}")
    return number


def parse(message: Message) -> Command:
    """The command a message asks for; :class:`ProtocolError` says what is wrong and what is allowed."""
    address, args = message.address, message.args
    if not address.startswith(PREFIX):
        raise UnknownAddress(f"unknown address {address!r}; every address starts with {PREFIX} (see /ldm3d/ping)")
    if address in OUTGOING:
        return Ignored()
    name = address[len(PREFIX) :]
    if name == "generate":
        if not args:
            raise BadArguments("/ldm3d/generate needs a prompt, then optional key/value pairs")
        return Generate(as_str(args[0], "/ldm3d/generate: the prompt"), parse_options(args[1:], address))
    if name in STAGE_TYPES:
        value: Any = CONVERT[STAGE_TYPES[name]](_single(args, address), f"{address}: the value")
        if name == "strength" and not 0.0 <= value <= 1.0:
            raise BadArguments(f"/ldm3d/strength {value} is out of range; allowed 0..1 (or /ldm3d/strength/norm)")
        return SetStage(name, value)
    if name.endswith("/norm") and name[: -len("/norm")] in NORMALISED:
        return SetStageNorm(name[: -len("/norm")], as_float(_single(args, address), f"{address}: the fader"))
    if name.startswith("display/") and name[len("display/") :] in DISPLAY:
        key = name[len("display/") :]
        value = _single(args, address)
        if key in ("hold", "blackout"):  # a switch: True/False, or a number (0 off, anything else on)
            return Display(key, int(as_bool(value, f"{address}: the value")))
        low, high = DISPLAY[key]
        raw = as_float(value, f"{address}: the value")
        if not low <= raw <= high:
            raise BadArguments(f"{address} {raw:g} is out of range; allowed {low:g}..{high:g}")
        return Display(key, raw)
    if name == "size":
        if len(args) != 2:
            raise BadArguments(f"/ldm3d/size takes width and height, got {len(args)} arguments")
        return SetStage("size", (as_int(args[0], "/ldm3d/size: width"), as_int(args[1], "/ldm3d/size: height")))
    if name == "go":
        return Go() if is_trigger(args) else Ignored()
    if name == "cancel":  # a job id, or a trigger (a Stop button: 1.0 on press, 0.0 on release)
        if len(args) > 1:
            raise BadArguments(f"/ldm3d/cancel takes an optional job id, got {len(args)} arguments")
        if args and isinstance(args[0], str):
            return Cancel(_job_id(args[0], address))
        return Cancel(None) if is_trigger(args) else Ignored()
    if name == "recall":
        return Recall(_job_id(_single(args, address), address))
    if name == "subscribe":
        lease = None
        if len(args) >= 3 and args[-2] == "lease":  # a host is a string, a lease a number: no ambiguity
            lease = as_float(args[-1], f"{address}: the lease")
            if not (lease == 0 or 10 <= lease <= MAX_LEASE_S):
                raise BadArguments(
                    f"{address}: lease {lease:g} s is out of range; 0 (no expiry) or 10..{MAX_LEASE_S:.0f} seconds"
                )
            args = args[:-2]
        return Subscribe(*_port_host(args, address), lease)
    if name == "unsubscribe":
        return Unsubscribe(*_port_host(args, address))
    if name == "status":
        return Status()
    if name == "ping":
        return Ping()
    if name == "stats":
        return Stats() if not args else Ignored()  # with arguments it is a bridge's answer, not a request
    if name == "workers":  # a query, and a TouchOSC button: its release (0) is ignored
        return Workers() if is_trigger(args) else Ignored()
    if name == "rules/reload":
        return RulesReload() if is_trigger(args) else Ignored()
    if name == "moderation/list":
        return Moderate("list") if is_trigger(args) else Ignored()  # a button: its release (0) is ignored
    if name.startswith("moderation/") and name[len("moderation/") :] in MODERATION_ACTIONS:
        ticket = as_str(_single(args, address), f"{address}: the ticket")
        if not 1 <= len(ticket) <= 64:
            raise BadArguments(f"{address}: a ticket has 1 to 64 characters (from /ldm3d/moderation/item)")
        return Moderate(name[len("moderation/") :], ticket)
    if name == "img2img":
        if len(args) < 2:
            raise BadArguments("/ldm3d/img2img needs an image path and a prompt, then optional key/value pairs")
        image = as_str(args[0], "/ldm3d/img2img: the image path")
        prompt = as_str(args[1], "/ldm3d/img2img: the prompt")
        return Img2Img(image, prompt, parse_options(args[2:], address, IMG2IMG_OPTION_TYPES))
    if name == "depth":
        if not args:
            raise BadArguments("/ldm3d/depth needs an image path (in an input folder), then optional key/value pairs")
        image = as_str(args[0], "/ldm3d/depth: the image path")
        return Depth(image, parse_options(args[1:], address, DEPTH_OPTION_TYPES))
    if name == "upscale":
        if not args:
            raise BadArguments("/ldm3d/upscale needs the id of a finished job, then optional key/value pairs")
        return Upscale(_job_id(args[0], address), parse_options(args[1:], address, UPSCALE_OPTION_TYPES))
    if name == "morph":
        if len(args) < 2:
            raise BadArguments(
                "/ldm3d/morph needs the id of a finished job and a second job id or a prompt, then optional "
                "key/value pairs (frames, seconds, seed, preview_every, format)"
            )
        from_job = _job_id(args[0], address)
        to = as_str(args[1], "/ldm3d/morph: the second world (a job id or a prompt)")
        return Morph(from_job, to, parse_options(args[2:], address, MORPH_OPTION_TYPES))
    if name == "object":
        if not args:
            raise BadArguments(
                "/ldm3d/object needs a prompt, then optional key/value pairs (seed, steps, guidance, resolution, "
                "yaw, pitch, distance, size, turn)"
            )
        return Object(
            as_str(args[0], "/ldm3d/object: the prompt"), parse_options(args[1:], address, OBJECT_OPTION_TYPES)
        )
    if name == "show/load":
        if not 1 <= len(args) <= 2:
            raise BadArguments(
                f"{address} takes the path of a cue file and, optionally, fire 1 or 0; got {len(args)} arguments"
            )
        path = as_str(args[0], f"{address}: the cue file")
        if not path.strip():
            raise BadArguments(f"{address} needs the path of a cue file (.toml) inside the input folders")
        fire = args[1] if len(args) == 2 else 1
        if fire not in (0, 1) or not isinstance(fire, int | float | bool):
            raise BadArguments(
                f"{address}: fire is 1 (show the first cue) or 0 (let it stand by), got {describe(fire)}"
            )
        return ShowLoad(path, bool(fire))
    if name == "cue":
        return CueShow(_cue_number(_single(args, address), address))
    if name == "cue/standby":
        return CueStandby(_cue_number(_single(args, address), address))
    if name in SHOW_TRIGGERS:
        return ShowControl(SHOW_TRIGGERS[name]) if is_trigger(args) else Ignored()
    if name.startswith("cue/") and CUE_NUMBER.fullmatch(name[len("cue/") :]):
        # one TouchOSC button per cue: /ldm3d/cue/<number> fires on press, its release (0) is ignored
        return CueShow(name[len("cue/") :]) if is_trigger(args) else Ignored()
    if name == "show/state":  # with arguments it is a bridge's answer, not a request
        return ShowControl("state") if not args else Ignored()
    raise UnknownAddress(
        f"unknown address {address!r}; known: generate, img2img, depth, upscale, morph, object, prompt, negative, "
        "seed, steps, guidance, strength, scheduler, sampling, size, steps/norm, guidance/norm, strength/norm, "
        "display/fade, display/hold, display/blackout, display/strength, go, "
        "cancel, recall, subscribe, unsubscribe, status, stats, workers, ping, rules/reload, moderation/list, "
        "moderation/approve, moderation/reject, moderation/approve_device, show/load, show/state, "
        "show/start, show/stop, show/pause, show/resume, show/pregen, cue, cue/<number>, cue/go, cue/back, cue/list, "
        "cue/standby (all under /ldm3d/)"
    )
