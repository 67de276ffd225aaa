"""The OSCQuery namespace of the contract (Vidvox's OSCQueryProposal), as JSON. Pure.

Every ``/ldm3d/...`` address is a node with ``FULL_PATH``, ``DESCRIPTION``, and for
methods ``TYPE`` (OSC type tags), ``ACCESS`` (1 read-only state, 2 write-only
commands, 3 read-write stage values; 0 for triggers that take no value), ``VALUE``
(the current value; a write-only command reports the last value written, which
some clients insist on), ``RANGE`` (from the model's ranges; ``VALS`` for choices),
``CLIPMODE`` and ``UNIT`` where they mean something. Containers have ``CONTENTS``.
A node may be both (``/ldm3d/steps`` and ``/ldm3d/steps/norm``), as OSC allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.contract.ranges import Ranges
from bridge.osc.codec import Arg

#: The attributes this server implements, as ``?ATTRIBUTE`` queries and in node JSON.
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "DESCRIPTION", "TYPE", "ACCESS", "VALUE", "RANGE", "CLIPMODE", "UNIT")
#: Every attribute name the proposal defines (a query for one we do not have is 204, an unknown one 400).
KNOWN_ATTRIBUTES = (*ATTRIBUTES, "TAGS", "EXTENDED_TYPE", "CRITICAL", "OVERLOADS", "HOST_INFO", "HTML")
#: HOST_INFO's EXTENSIONS: only what is implemented.
EXTENSIONS = {
    "ACCESS": True,
    "VALUE": True,
    "RANGE": True,
    "DESCRIPTION": True,
    "CLIPMODE": True,
    "UNIT": True,
    "TAGS": False,
    "EXTENDED_TYPE": False,
    "CRITICAL": False,
    "OVERLOADS": False,
    "HTML": False,
    "LISTEN": True,
    "PATH_CHANGED": False,
    "PATH_ADDED": False,
    "PATH_REMOVED": False,
    "PATH_RENAMED": False,
}

READ, WRITE, READ_WRITE = 1, 2, 3


@dataclass(frozen=True)
class Node:
    path: str
    description: str
    type: str | None = None
    access: int = 0
    range: list[dict[str, Any]] | None = None
    clipmode: list[str] | None = None
    unit: list[str] | None = None
    #: Before anything is written or sent, a write-only node reports this (VALUE always has a value).
    default: tuple[Arg, ...] = field(default=())


def _r(low: float, high: float) -> dict[str, Any]:
    return {"MIN": low, "MAX": high}


def namespace(ranges: Ranges) -> dict[str, Node]:
    """path → node for every address of the contract (containers included)."""
    r = ranges

    def now(name: str) -> tuple[Arg, ...]:
        return (r.default(name),)

    nodes = [
        Node("/", "ldm3d-bridge: text prompts to 360° RGB + depth worlds"),
        Node("/ldm3d", "every address of the bridge"),
        # commands (write-only)
        Node("/ldm3d/generate", "a job from a prompt (key/value options may follow)", "s", WRITE, default=("",)),
        Node("/ldm3d/img2img", "a job from an image in an input folder and a prompt", "ss", WRITE, default=("", "")),
        Node(
            "/ldm3d/depth", "a world from a picture in an input folder, its depth estimated", "s", WRITE, default=("",)
        ),
        Node("/ldm3d/upscale", "LDM3D-SR of a finished job (its id)", "s", WRITE, default=("",)),
        Node(
            "/ldm3d/morph",
            "the worlds between a finished job and another job (its id) or a prompt",
            "ss",
            WRITE,
            default=("", ""),
        ),
        Node(
            "/ldm3d/object",
            "a text → 3D object job from a prompt (key/value options may follow)",
            "s",
            WRITE,
            default=("",),
        ),
        Node("/ldm3d/go", "a job from the stage values (a button: 0 is ignored)"),
        Node("/ldm3d/cancel", "cancel the running job (a button), or the job with this id", "s", WRITE, default=("",)),
        Node("/ldm3d/recall", "show an earlier job again (its id)", "s", WRITE, default=("",)),
        Node(
            "/ldm3d/subscribe",
            'send notifications to this port (and host); then "lease" 0 for no expiry',
            "is",
            WRITE,
            default=(0, ""),
        ),
        Node("/ldm3d/unsubscribe", "stop notifications to this port (and host)", "is", WRITE, default=(0, "")),
        Node("/ldm3d/status", "answer with /ldm3d/state"),
        Node("/ldm3d/ping", "answer with /ldm3d/pong"),
        Node("/ldm3d/stats", "answer with /ldm3d/stats (counters)"),
        Node("/ldm3d/workers", "answer with one /ldm3d/worker (index, where, state, job) per worker"),
        Node("/ldm3d/rules", 'the prompt rules (docs/osc.md, "Public installations")'),
        Node("/ldm3d/rules/reload", "read the prompt rules file again; answers /ldm3d/rules <count> (a button)"),
        Node("/ldm3d/moderation", "visitors' prompts waiting for approval (serve --visitors --moderate)"),
        Node("/ldm3d/moderation/list", "answer with one /ldm3d/moderation/item per waiting prompt, then the count"),
        Node("/ldm3d/moderation/approve", "approve a waiting prompt (its ticket)", "s", WRITE, default=("",)),
        Node("/ldm3d/moderation/reject", "reject a waiting prompt (its ticket)", "s", WRITE, default=("",)),
        Node(
            "/ldm3d/moderation/approve_device",
            "approve every waiting prompt of that ticket's device",
            "s",
            WRITE,
            default=("",),
        ),
        Node("/ldm3d/moderation/waiting", "how many prompts wait for approval", "i", READ, default=(0,)),
        # shows (docs/shows.md)
        Node("/ldm3d/show", "a show: a cue list with its scene library"),
        Node(
            "/ldm3d/show/load",
            "load a cue file from an input folder (then 0: without firing)",
            "s",
            WRITE,
            default=("",),
        ),
        Node("/ldm3d/show/start", "resume auto-follow, the current cue's whole duration again (a button)"),
        Node("/ldm3d/show/stop", "pause auto-follow and the countdown (a button)"),
        Node("/ldm3d/show/pause", "pause auto-follow and the countdown (a button)"),
        Node("/ldm3d/show/resume", "resume auto-follow and the countdown where it stood (a button)"),
        Node("/ldm3d/show/pregen", "render the missing scenes in idle time (a button)"),
        Node(
            "/ldm3d/show/state",
            "show, cue, its state, standby cue, scenes rendered, total, looping, running, cues skipped, seconds "
            "left (-1: none) (send it empty to ask)",
            "ssssiiiiif",
            READ,
            default=("", "", "", "", 0, 0, 0, 0, 0, -1.0),
        ),
        Node("/ldm3d/cue", "show the cue with this number", "s", WRITE, default=("",)),
        Node("/ldm3d/cue/go", "fire the standby cue (a button: 0 is ignored)"),
        Node("/ldm3d/cue/standby", "the cue GO fires next", "s", WRITE, default=("",)),
        Node("/ldm3d/cue/back", "the previous cue (a button: 0 is ignored)"),
        Node("/ldm3d/cue/list", "answer with one /ldm3d/cue/info per cue, then /ldm3d/cue/end <count>"),
        # the stage (read-write)
        Node("/ldm3d/prompt", "the stage's prompt", "s", READ_WRITE, [{}], default=("",)),
        Node("/ldm3d/negative", "the stage's negative prompt", "s", READ_WRITE, [{}], default=("",)),
        Node("/ldm3d/seed", "the stage's seed (-1: random)", "i", READ_WRITE, [_r(*r.seed)], ["both"], default=(-1,)),
        Node("/ldm3d/steps", "the stage's steps", "i", READ_WRITE, [_r(*r.steps)], ["both"], default=now("steps")),
        Node(
            "/ldm3d/guidance",
            "the stage's guidance",
            "f",
            READ_WRITE,
            [_r(*r.guidance)],
            ["both"],
            default=now("guidance"),
        ),
        Node("/ldm3d/strength", "image-to-image strength", "f", READ_WRITE, [_r(*r.strength)], default=now("strength")),
        Node(
            "/ldm3d/scheduler",
            "the scheduler",
            "s",
            READ_WRITE,
            [{"VALS": list(r.schedulers)}],
            None,
            None,
            now("scheduler"),
        ),
        Node(
            "/ldm3d/sampling",
            "the sampling",
            "s",
            READ_WRITE,
            [{"VALS": list(r.samplings)}],
            None,
            None,
            now("sampling"),
        ),
        Node(
            "/ldm3d/size",
            "the stage's width and height",
            "ii",
            READ_WRITE,
            [_r(*r.width), _r(*r.height)],
            ["both", "both"],
            ["pixels", "pixels"],
            (*now("width"), *now("height")),
        ),
        *(
            Node(
                f"/ldm3d/{name}/norm",
                f"a 0..1 fader over the model's range of {name}",
                "f",
                READ_WRITE,
                [_r(0.0, 1.0)],
                ["both"],
                default=(r.to_norm(name, float(r.default(name))),),
            )
            for name in ("steps", "guidance", "strength")
        ),
        # what the bridge reports (read-only)
        Node(
            "/ldm3d/state",
            "state, queue length, running job (the earliest started), model, boot id, workers alive, workers in all",
            "sisssii",
            READ,
            default=("loading", 0, "", "", "", 0, 1),
        ),
        # how TouchDesigner shows the world (read-write, relayed to every subscriber)
        Node("/ldm3d/display", "how TouchDesigner shows the world (relayed to every subscriber)"),
        Node(
            "/ldm3d/display/fade",
            "crossfade to a new world",
            "f",
            READ_WRITE,
            [_r(0.0, 60.0)],
            ["both"],
            ["seconds"],
            (2.0,),
        ),
        Node(
            "/ldm3d/display/hold",
            "1: keep the world on screen, queue the newest",
            "i",
            READ_WRITE,
            [_r(0, 1)],
            default=(0,),
        ),
        Node("/ldm3d/display/blackout", "1: black", "i", READ_WRITE, [_r(0, 1)], default=(0,)),
        Node("/ldm3d/display/strength", "depth displacement strength", "f", READ_WRITE, [_r(0.0, 1.0)], default=(1.0,)),
        Node("/ldm3d/busy", "1 while a job runs (a lamp)", "i", READ, [_r(0, 1)], default=(0,)),
        Node("/ldm3d/progress", "job id, step, total steps", "sii", READ, default=("", 0, 0)),
        Node(
            "/ldm3d/progress/fraction", "the running job's progress (a bar)", "f", READ, [_r(0.0, 1.0)], default=(0.0,)
        ),
        Node(
            "/ldm3d/preview",
            "the world as it forms: job id, step, total steps, preview rgb, preview depth",
            "siiss",
            READ,
            default=("", 0, 0, "", ""),
        ),
        Node(
            "/ldm3d/morph/frame",
            "a morph's frame: job id, index, frames, seconds, rgb, depth",
            "siifss",
            READ,
            default=("", 0, 0, 0.0, "", ""),
        ),
        Node(
            "/ldm3d/ready",
            "the newest world: job id, rgb, depth, meta, width, height, seed",
            "ssssiii",
            READ,
            default=("", "", "", "", 0, 0, 0),
        ),
        Node(
            "/ldm3d/object/ready",
            "the newest object: job id, mesh.obj, mesh.glb, yaw, pitch, distance, size, turn",
            "sssfffff",
            READ,
            default=("", "", "", 0.0, 0.0, 0.5, 0.25, 0.0),
        ),
        Node("/ldm3d/error", "the newest error: job id, code, message", "sss", READ, default=("", "", "")),
        Node(
            "/ldm3d/warning",
            "the newest warning: job id, code, message (the job goes on)",
            "sss",
            READ,
            default=("", "", ""),
        ),
    ]
    return {node.path: node for node in nodes}


def _children(path: str, nodes: Mapping[str, Node]) -> list[str]:
    prefix = "/" if path == "/" else path + "/"
    return [p for p in nodes if p != path and p.startswith(prefix) and "/" not in p[len(prefix) :]]


def _default(node: Node) -> tuple[Arg, ...]:
    if node.default or node.type is None:
        return node.default
    return tuple("" if t == "s" else 0.0 if t == "f" else 0 for t in node.type)


def node_json(path: str, nodes: Mapping[str, Node], values: Mapping[str, tuple[Arg, ...]]) -> dict[str, Any]:
    """The node at ``path`` with every node below it (KeyError when there is none)."""
    node = nodes[path]
    out: dict[str, Any] = {"FULL_PATH": path, "DESCRIPTION": node.description, "ACCESS": node.access}
    if node.type is not None:
        out["TYPE"] = node.type
        out["VALUE"] = list(values.get(path, _default(node)))
        for key, attr in (("RANGE", node.range), ("CLIPMODE", node.clipmode), ("UNIT", node.unit)):
            if attr is not None:
                out[key] = attr
    children = _children(path, nodes)
    if children:
        out["CONTENTS"] = {c.rsplit("/", 1)[1]: node_json(c, nodes, values) for c in children}
    return out


def host_info(name: str, osc_ip: str, osc_port: int, ws_ip: str, ws_port: int) -> dict[str, Any]:
    return {
        "NAME": name,
        "EXTENSIONS": EXTENSIONS,
        "OSC_IP": osc_ip,
        "OSC_PORT": osc_port,
        "OSC_TRANSPORT": "UDP",
        "WS_IP": ws_ip,
        "WS_PORT": ws_port,
    }


def query(
    path: str, attribute: str | None, nodes: Mapping[str, Node], values: Mapping[str, tuple[Arg, ...]]
) -> tuple[int, dict[str, Any] | None]:
    """(HTTP status, JSON body) of ``GET path?attribute``: 404 no such node, 400 no such attribute,
    204 an attribute this node has no value for."""
    path = path.rstrip("/") or "/"
    if path not in nodes:
        return 404, None
    whole = node_json(path, nodes, values)
    if attribute is None:
        return 200, whole
    if attribute not in KNOWN_ATTRIBUTES:
        return 400, None
    if attribute not in whole:
        return 204, None
    return 200, {attribute: whole[attribute]}
