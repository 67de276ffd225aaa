"""Bridge settings: defaults < TOML file < ``LDM3D_BRIDGE_*`` environment < command-line flags.

Read once, explicitly, at start (:func:`load_settings`); nothing reads the
environment at import time.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "LDM3D_BRIDGE_"
#: The most steps between two previews (the most steps a job may have).
MAX_PREVIEW_EVERY = 150
#: The texture formats (bridge.output.formats has their encoders; a test keeps the two lists equal).
FORMAT_NAMES = ("tiff", "png-fast", "png")
QUEUE_MODES = ("fifo", "latest-wins")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Sequence[str]) -> list[Network]:
    """CIDR strings (``192.168.1.0/24``, ``10.0.0.7``) → networks; ValueError names a bad one."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{spec!r} is not a network; write it like 192.168.1.0/24 or 10.0.0.7") from None
    return networks


class SettingsError(ValueError):
    """A setting with a wrong name, type or value; the message names it and its source."""


@dataclass(frozen=True)
class BridgeSettings:
    model: str = "tiny-pano"
    preset: str | None = None
    #: cpu, cuda, cuda:N, mps, hpu or openvino:NAME (openvino:CPU, openvino:GPU, openvino:NPU; the
    #: [openvino] extra); for ``serve`` also a list, ``cuda:0,cuda:1``: one worker per device.
    #: With ``ray``, the device inside each actor: ``cuda`` (one GPU each, chosen by Ray) or ``cpu``.
    device: str = "cpu"
    dtype: str | None = None
    offline: bool = False
    cache_dir: str | None = None
    #: Where an OpenVINO device keeps its converted models; None: ~/.cache/ldm3d-bridge/openvino.
    ov_cache: str | None = None
    #: openvino:* only: ``model`` (the weights as loaded) or ``int8`` (the UNet's weights compressed by NNCF).
    ov_weights: str = "model"
    #: Run the image safety checker on every picture (the model's own, or safety_model's); False: nothing
    #: is checked (a warning at start-up).
    safety: bool = True
    #: A safety checker for a model without one: a folder or a hub id (CompVis/stable-diffusion-safety-checker).
    safety_model: str | None = None
    #: Serve the public visitor page at /visit (a prompt box and the visitor's own prompt's status).
    visitors: bool = False
    #: Visitors' prompts wait for the operator's approval (the operator page, /ldm3d/moderation/*).
    moderate: bool = False
    #: The longest prompt a visitor may send, in characters.
    visitor_max_chars: int = 200
    #: One prompt per this many seconds from each visitor's device (its network address).
    visitor_interval_s: float = 30.0
    #: Prompts waiting for moderation; past it the oldest is dropped (its visitor is told).
    moderation_max: int = 100
    #: The visitor page's address as visitors reach it (the QR code's); None: http://<the address the
    #: operator page was opened at>/visit.
    visitor_url: str | None = None
    #: A prompt rules file (words, phrases, regular expressions; .toml or plain lines), or ``default`` for the
    #: short list shipped with the bridge; None: no prompt is refused for its words.
    prompt_rules: str | None = None
    host: str = "0.0.0.0"
    port: int = 9000
    #: Serve OSCQuery (and the web page) over HTTP; on TCP ``http_port``, by default the OSC port's number.
    http: bool = True
    http_port: int | None = None
    #: HTTP connections held at once, in all and per client host (beyond them a connection is closed at
    #: once); one that receives nothing for http_idle_s while nothing waits to be sent to it is closed,
    #: and so is one whose request has not arrived whole (its headers) http_header_s after its first byte.
    http_max_connections: int = 512
    http_connections_per_host: int = 64
    http_idle_s: float = 60.0
    http_header_s: float = 20.0
    #: A WebSocket client (an operator page, an OSCQuery listener) is disconnected once more than this many
    #: bytes sent to it wait unread in the bridge's memory (a client that does not read).
    http_max_unsent_bytes: int = 4 * 1024 * 1024
    output: str = "ldm3d-out"
    #: The output folder as TouchDesigner's machine names it (``Z:/ldm3d-out``, ``//gpu-node/ldm3d-out``):
    #: it replaces the output root in every path the bridge announces. None: the paths as they are here.
    announce_root: str | None = None
    zeroconf: bool = True
    queue_size: int = 16
    queue_mode: str = "fifo"
    keep_jobs: int = 200
    #: The texture files: "tiff" (fastest to write and read), "png-fast" (the [fastpng] extra) or "png" (smallest).
    format: str = "tiff"
    jpeg: bool = False
    exr: bool = False
    heartbeat_s: float = 2.0
    progress_hz: float = 10.0
    #: A preview of the world as it forms after every this many steps of a live job (0: none). A job's
    #: ``preview_every`` option overrides it. Previews never come faster than ``progress_hz``.
    preview_every: int = 5
    warmup: bool = True
    warmup_steps: int = 2
    #: Size of the warm-up run and default size of /ldm3d/go; None: the model's native size.
    width: int | None = None
    height: int | None = None
    #: On SIGINT/SIGTERM: "cancel" the running job, or let it "finish" first.
    on_shutdown: str = "cancel"
    max_subscribers: int = 32
    #: Subscriptions per target host (a host cannot take every slot).
    subscribers_per_host: int = 4
    #: A subscription lapses this long after it was made or last renewed (subscribing again renews it).
    subscription_lease_s: float = 3600.0
    #: A subscription for another host waits this long for that host to confirm it.
    subscription_pending_s: float = 60.0
    #: A subscriber given by name must resolve within this many seconds (off the intake thread).
    resolve_timeout_s: float = 2.0
    #: Source networks allowed to send (CIDR); empty: everyone who can reach the port.
    allow: tuple[str, ...] = ()
    #: Names (``dome.lan``) or origins (``http://control.lan:8080``) the bridge may be reached by over HTTP
    #: besides its IP addresses, localhost and this machine's name; an origin listed may also open its
    #: WebSocket (a page served from elsewhere). Any other name is refused (DNS rebinding).
    allow_origin: tuple[str, ...] = ()
    #: Shared secret every message must end with ("token", secret). Never logged or advertised.
    token: str | None = None
    #: Job submissions per second per client host, and the burst allowed above it.
    client_jobs_per_s: float = 5.0
    client_jobs_burst: int = 20
    #: Messages per second to each destination host (flood and amplification guard).
    reply_per_s: float = 200.0
    reply_burst: int = 400
    #: A reply to an unconfirmed sender is at most this many times the size of its request.
    reply_factor: float = 8.0
    #: A job running longer is cancelled and reported as `timeout`.
    job_timeout_s: float = 600.0
    #: If the engine ignores the cancel this long after a timeout: a Ray actor is restarted; an engine in this
    #: process cannot be, so its worker is out (with none left, the bridge exits with status 1 for a restart).
    stuck_grace_s: float = 60.0
    #: With no worker alive (a Ray actor or a worker thread being brought back), queued jobs, and new ones,
    #: wait this long for one to come back before they end (and new ones are refused) with engine_failed.
    #: 0: at once.
    worker_grace_s: float = 60.0
    #: After an out-of-memory error, free the device cache and run the job once more.
    oom_retry: bool = True
    #: Default sampling of jobs that do not name one: "quality" or "live".
    sampling: str = "quality"
    #: torch.compile the UNet (paid for during warm-up).
    compile: bool = False
    #: "none", or "model": keep models on the CPU and move each to the GPU only while it runs (small GPUs).
    offload: str = "none"
    #: Decode with the VAE in tiles (2048-wide outputs on small GPUs).
    vae_tiling: bool = False
    #: The upscaler for /ldm3d/upscale (ldm3d-sr), loaded beside the main model on the same device.
    upscale_model: str | None = None
    #: A text → 3D object model for /ldm3d/object (ln3diff, tiny-ln3diff; docs/objects.md), loaded beside
    #: the main model on each worker's device. None: /ldm3d/object is off.
    object_model: str | None = None
    #: A depth estimator beside the model (dpt-large, dpt-hybrid, tiny-dpt or a folder): /ldm3d/depth, and
    #: img2img without a depth map. None: none for LDM3D models (an RGB-only model brings its preset's).
    depth_model: str | None = None
    #: Folders /ldm3d/img2img and /ldm3d/depth may read input images from; empty: both are refused.
    input_dirs: tuple[str, ...] = ()
    #: Run the workers as Ray actors: "local" (a Ray of the bridge's own), "auto" (the cluster this
    #: machine belongs to), "head:6379" (a cluster's head) or "ray://head:10001" (Ray Client).
    #: None: workers in this process.
    ray: str | None = None
    #: How many Ray actors (workers) to start.
    ray_workers: int = 1
    #: How long a worker may take to start and load its model (a Ray actor waits for a free GPU).
    worker_start_timeout_s: float = 900.0
    #: A show's cue that fails this many times in a row is skipped by GO and auto-follow until the show
    #: is loaded again (it can still be shown by its number).
    show_skip_after: int = 3
    #: A cue file to load once the model is ready (``serve --show``): the show starts with the bridge. After a
    #: restart the saved place (cue, running) wins, as for a show loaded over OSC.
    show: str | None = None

    @property
    def devices(self) -> tuple[str, ...]:
        """The devices of ``device``, one worker each (``cuda:0,cuda:1`` → two)."""
        return tuple(part.strip() for part in self.device.split(","))

    def check(self) -> BridgeSettings:
        def bad(name: str, why: str) -> SettingsError:
            return SettingsError(f"setting {name}={getattr(self, name)!r}: {why}")

        if not 0 <= self.port <= 65535:
            raise bad("port", "use 1..65535 (0 picks a free port)")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise bad("http_port", "use 1..65535 (0 picks a free port), or leave it out for the OSC port's number")
        if self.queue_mode not in QUEUE_MODES:
            raise bad("queue_mode", f"use {' or '.join(QUEUE_MODES)}")
        if self.format not in FORMAT_NAMES:
            raise bad("format", f"use {', '.join(FORMAT_NAMES)}")
        if self.queue_size < 1:
            raise bad("queue_size", "use at least 1")
        if self.keep_jobs < 1:
            raise bad("keep_jobs", "use at least 1")
        if self.heartbeat_s <= 0:
            raise bad("heartbeat_s", "use a positive number of seconds")
        if self.progress_hz <= 0:
            raise bad("progress_hz", "use a positive rate")
        if not 0 <= self.preview_every <= MAX_PREVIEW_EVERY:
            raise bad("preview_every", f"use 0 (no previews) .. {MAX_PREVIEW_EVERY} steps")
        if self.on_shutdown not in ("cancel", "finish"):
            raise bad("on_shutdown", "use cancel or finish")
        if not 1 <= self.warmup_steps <= 150:
            raise bad("warmup_steps", "use 1..150")
        for name in (
            "client_jobs_per_s",
            "reply_per_s",
            "job_timeout_s",
            "stuck_grace_s",
            "subscription_lease_s",
            "subscription_pending_s",
            "resolve_timeout_s",
        ):
            if getattr(self, name) <= 0:
                raise bad(name, "use a positive number")
        if self.reply_factor < 1:
            raise bad("reply_factor", "use at least 1 (a reply as large as its request)")
        for name in ("client_jobs_burst", "reply_burst", "max_subscribers", "subscribers_per_host", "show_skip_after"):
            if getattr(self, name) < 1:
                raise bad(name, "use at least 1")
        try:
            parse_networks(self.allow)
        except ValueError as exc:
            raise bad("allow", str(exc)) from None
        if self.sampling not in ("quality", "live"):
            raise bad("sampling", "use quality or live")
        if self.offload not in ("none", "model"):
            raise bad("offload", "use none or model")
        if self.ov_weights not in ("model", "int8"):
            raise bad("ov_weights", "use model or int8")
        if self.ov_weights != "model" and not all(device.startswith("openvino:") for device in self.devices):
            raise bad("ov_weights", "int8 compresses OpenVINO's UNet: it needs device openvino:NAME")
        if self.token is not None and not self.token:
            raise bad("token", "an empty token protects nothing; leave it out or set a secret")
        devices = self.devices
        if not all(devices) or len(set(devices)) != len(devices):
            raise bad("device", "list each device once, separated by commas: cuda:0,cuda:1")
        if self.ray is not None:
            host, _, port = self.ray.removeprefix("ray://").rpartition(":")
            if not (self.ray in ("local", "auto") or (host and port.isdigit())):
                raise bad(
                    "ray",
                    "use local, auto, <head>:<port> (the head's GCS, 6379 by default) or ray://<head>:<port> "
                    "(Ray Client, 10001 by default)",
                )
            if self.device not in ("cuda", "cpu"):
                raise bad("device", "with ray, use cuda (Ray gives each actor one GPU) or cpu")
        if not 1 <= self.ray_workers <= 1024:
            raise bad("ray_workers", "use 1..1024")
        if not 1 <= self.http_connections_per_host <= self.http_max_connections:
            raise bad("http_connections_per_host", "use 1..http_max_connections")
        if self.http_idle_s < 1:
            raise bad("http_idle_s", "use at least 1 second (the WebSockets' heartbeat answers within 30 s)")
        if not 1 <= self.http_header_s <= 600:
            raise bad("http_header_s", "use 1..600 seconds (a request's headers arrive in one packet or a few)")
        if self.http_max_unsent_bytes < 65536:
            raise bad("http_max_unsent_bytes", "use at least 65536 (a page's hello and a status take tens of kB)")
        if not 1 <= self.visitor_max_chars <= 2000:
            raise bad("visitor_max_chars", "use 1..2000 characters")
        if self.visitor_interval_s <= 0:
            raise bad("visitor_interval_s", "use a positive number of seconds")
        if not 1 <= self.moderation_max <= 10000:
            raise bad("moderation_max", "use 1..10000")
        if (self.visitors or self.moderate) and not self.http:
            raise bad("visitors", "the visitor page is served over HTTP: leave http on (no --no-http)")
        if self.moderate and not self.visitors:
            raise bad("moderate", "moderation is for the visitor page's prompts: turn visitors on too")
        if self.worker_start_timeout_s <= 0:
            raise bad("worker_start_timeout_s", "use a positive number of seconds")
        if not 0 <= self.worker_grace_s < math.inf:
            raise bad("worker_grace_s", "use 0 (no wait) or a finite number of seconds")
        return self


_FIELDS = {f.name: f for f in fields(BridgeSettings)}


def _kinds() -> dict[str, type]:
    """Each setting's value type, from the dataclass annotations (``int | None`` → int)."""
    kinds: dict[str, type] = {}
    for name, hint in typing.get_type_hints(BridgeSettings).items():
        if isinstance(hint, types.UnionType):  # X | None
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        kinds[name] = typing.get_origin(hint) or hint
    return kinds


_TYPES = _kinds()


def _coerce(name: str, value: Any, source: str) -> Any:
    if name not in _FIELDS:
        raise SettingsError(f"{source}: unknown setting {name!r}; known: {', '.join(_FIELDS)}")
    kind = _TYPES[name]
    if kind is tuple:  # a list of strings; from the environment or a flag: comma-separated
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise SettingsError(f"{source}: {name} must be a list of strings, got {value!r}")
        return tuple(i.strip() for i in items if i.strip())
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool:
                if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return text in ("1", "true", "yes", "on")
            return kind(text)
        except ValueError:
            raise SettingsError(f"{source}: {name}={value!r} is not a {kind.__name__}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SettingsError(f"{source}: {name}={value!r} is not a {kind.__name__}")
    return value


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    table = data.get("bridge", data)
    return {k: _coerce(k, v, f"config file {path}") for k, v in table.items()}


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            out[name] = _coerce(name, value, f"environment variable {key}")
    return out


def load_settings(
    flags: Mapping[str, Any], config: str | None = None, environ: Mapping[str, str] | None = None
) -> BridgeSettings:
    """Merge the sources; ``flags`` holds only the flags the user gave (None = not given)."""
    values: dict[str, Any] = {}
    if config:
        values.update(read_toml(Path(config)))
    values.update(read_env(os.environ if environ is None else environ))
    values.update({k: _coerce(k, v, f"--{k.replace('_', '-')}") for k, v in flags.items() if v is not None})
    return dataclasses.replace(BridgeSettings(), **values).check()
