"""The bridge: UDP intake → commands → job queue → worker → texture writer → notifications.

Threads, each with one job:

* **intake** reads datagrams itself (up to 65507 bytes; socketserver would cut
  them at 8192), decodes and handles them one by one. Handling never blocks:
  it queues, cancels or answers. No thread per datagram.
* **worker** owns the engine and so the GPU: it loads the model, warms it up,
  then runs jobs one at a time (:mod:`bridge.serve.worker`).
* **monitor** sends the ``/ldm3d/state`` heartbeat to subscribers and times
  out jobs that run too long.

Before a datagram is decoded, its source must be in the ``allow`` networks
(else it is dropped silently and counted); with a ``token`` set, each message
must end with ``"token", <secret>``. Job submissions are limited per client
host, replies per sender address. Every drop is counted (``/ldm3d/stats``) and
each kind is logged at most once per 10 s.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge import __version__
from bridge.contract import protocol
from bridge.contract.engine_api import EngineLike
from bridge.contract.requests import img2img_request, text_request, upscale_request
from bridge.errors import BadArguments, BridgeError, NotSupported, RateLimited, Unauthorized, UnknownJob
from bridge.osc.codec import MAX_DATAGRAM, MalformedPacket, Message, decode_packet
from bridge.output.job_ids import new_job_id
from bridge.output.writer import TextureWriter
from bridge.serve.access import allowed, take_token
from bridge.serve.jobs import Address, Job, JobQueue
from bridge.serve.limits import Counters, LogLimiter, TokenBuckets
from bridge.serve.notifier import Notifier
from bridge.serve.worker import Worker
from bridge.settings import BridgeSettings, parse_networks
from ldm3d_engine.types import GenerateRequest, UpscaleRequest

logger = logging.getLogger(__name__)


@dataclass
class Stage:
    """Parameters set by /ldm3d/prompt, /ldm3d/seed… and used by /ldm3d/go."""

    values: dict[str, Any] = field(default_factory=lambda: {"prompt": "", "negative": "", "seed": -1})


class Bridge:
    def __init__(
        self,
        settings: BridgeSettings,
        engine_factory: Callable[[], EngineLike],
        writer: TextureWriter | None = None,
        upscaler_factory: Callable[[], EngineLike] | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer or TextureWriter(
            Path(settings.output), jpeg=settings.jpeg, exr=settings.exr, keep=settings.keep_jobs
        )
        self.queue = JobQueue(settings.queue_size, settings.queue_mode)
        self.stage = Stage()
        self.counters = Counters()
        self._networks = parse_networks(settings.allow)
        self._job_limit = TokenBuckets(settings.client_jobs_per_s, settings.client_jobs_burst)
        self._log = LogLimiter(logger)
        self._sock: socket.socket | None = None
        self._notifier: Notifier | None = None
        self._worker: Worker | None = None
        self._engine_factory = engine_factory
        self._upscaler_factory = upscaler_factory
        self._stop_intake = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._advertiser: Any = None

    # -- life cycle --------------------------------------------------------

    @property
    def address(self) -> Address:
        assert self._sock is not None, "start() first"
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def notifier(self) -> Notifier:
        assert self._notifier is not None, "start() first"
        return self._notifier

    @property
    def worker(self) -> Worker:
        assert self._worker is not None, "start() first"
        return self._worker

    def start(self) -> None:
        """Bind, then load and warm the model in the worker while intake already answers."""
        self.writer.prepare()
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.bind((self.settings.host, self.settings.port))
        except OSError as exc:
            sock.close()
            raise BridgeError(
                f"cannot listen on UDP {self.settings.host}:{self.settings.port}: {exc.strerror or exc} "
                "(is another bridge running? choose another --port)"
            ) from exc
        sock.settimeout(0.2)
        self._sock = sock
        self._notifier = Notifier(
            sock,
            self.settings.max_subscribers,
            reply_limit=TokenBuckets(self.settings.reply_per_s, self.settings.reply_burst),
            counters=self.counters,
        )
        self._worker = Worker(
            self._engine_factory,
            self.queue,
            self.writer,
            self._notifier,
            self.settings,
            on_idle=self._advertise,
            upscaler_factory=self._upscaler_factory,
        )
        for name, target in (("intake", self._intake), ("monitor", self._monitor)):
            self._threads.append(threading.Thread(target=target, name=f"ldm3d-{name}", daemon=True))
        self._threads.append(threading.Thread(target=self._worker.run, name="ldm3d-worker", daemon=True))
        for thread in self._threads:
            thread.start()
        logger.info("listening for OSC on udp://%s:%s", *self.address)

    def _advertise(self) -> None:
        if not self.settings.zeroconf or self._stop_intake.is_set():  # stopped while the model loaded
            return
        from bridge.serve.discovery import Advertiser

        try:
            self._advertiser = Advertiser(self.settings.host, self.address[1], self.settings.model)
            self._advertiser.register()
        except OSError as exc:  # no multicast route, for instance: the bridge still works
            logger.warning("zeroconf advertising failed: %s", exc)
            self._advertiser = None

    def stop(self, cancel_running: bool | None = None, timeout: float = 60.0) -> None:
        """Stop intake, cancel waiting jobs, cancel or finish the running one, close everything."""
        if self._stopped.is_set():
            return
        if cancel_running is None:
            cancel_running = self.settings.on_shutdown == "cancel"
        self._stop_intake.set()
        if self._advertiser is not None:
            self._advertiser.close()
        if self._worker is not None:
            self._worker.shutdown(cancel_running)
        for thread in self._threads:
            thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._stopped.set()
        logger.info("stopped")

    # -- intake ------------------------------------------------------------

    def _intake(self) -> None:
        assert self._sock is not None
        while not self._stop_intake.is_set():
            try:
                data, sender = self._sock.recvfrom(MAX_DATAGRAM + 1)
            except TimeoutError:
                continue
            except (ConnectionResetError, ConnectionRefusedError):
                continue  # Windows reports an earlier send to a closed port here
            except OSError as exc:
                if self._stop_intake.is_set():
                    return
                self.counters.add("receive_failed")  # e.g. ENOBUFS: keep listening
                self._log.warning("receive_failed", time.monotonic(), "receiving failed: %s", exc)
                time.sleep(0.01)
                continue
            self.handle_datagram(data, (sender[0], sender[1]))

    def handle_datagram(self, data: bytes, sender: Address) -> None:
        """Check, decode and handle one datagram. Never raises: the intake must go on."""
        self.counters.add("received")
        now = time.monotonic()
        if not allowed(sender[0], self._networks):
            self.counters.add("refused_network")
            self._log.warning(
                "refused_network", now, "refused a packet from %s: not in the allowed networks", sender[0]
            )
            return
        try:
            messages = decode_packet(data)
        except MalformedPacket as exc:
            self.counters.add(f"malformed_{exc.kind}")
            self._log.warning(f"malformed_{exc.kind}", now, "dropped a malformed packet from %s: %s", sender[0], exc)
            self.notifier.reply(sender, "/ldm3d/error", "", "malformed_packet", str(exc))
            return
        for message in messages:
            try:
                self.handle(protocol.parse(self._authorize(message)), sender)
            except BridgeError as exc:
                self.counters.add(f"error_{exc.code}")
                self.notifier.reply(sender, "/ldm3d/error", "", exc.code, str(exc))
            except Exception:
                self.counters.add("internal_error")
                logger.exception("internal error while handling %s from %s", message.address, sender[0])
                self.notifier.reply(
                    sender,
                    "/ldm3d/error",
                    "",
                    "internal_error",
                    "the bridge failed on this message; it is logged and the bridge carries on",
                )

    def _authorize(self, message: Message) -> Message:
        secret = self.settings.token
        if secret is None:
            return message
        ok, args = take_token(message.args, secret)
        if not ok:
            self.counters.add("refused_token")
            raise Unauthorized(
                'this bridge needs a token: end every message with the two arguments "token", "<secret>"'
            )
        return Message(message.address, args)

    def handle(self, command: protocol.Command, sender: Address) -> None:
        n = self.notifier
        match command:
            case protocol.Generate(prompt, options):
                self._submit(text_request(self.settings, prompt, options, self.worker.engine), sender=sender)
            case protocol.Img2Img(image, prompt, options):
                self._submit(*img2img_request(self.settings, image, prompt, options, self.worker.engine), sender=sender)
            case protocol.Upscale(job_id, options):
                if self._upscaler_factory is None:
                    raise NotSupported(
                        "/ldm3d/upscale is off: start the bridge with --upscale-model ldm3d-sr to load the upscaler"
                    )
                self._submit(*upscale_request(self.settings, self.writer, job_id, options), sender=sender)
            case protocol.Go():
                s = self.stage.values
                if not s["prompt"]:
                    raise BadArguments("/ldm3d/go: no prompt is set; send /ldm3d/prompt first")
                options = {k: s[k] for k in ("seed", "steps", "guidance", "width", "height", "negative") if k in s}
                self._submit(text_request(self.settings, s["prompt"], options, self.worker.engine), sender=sender)
            case protocol.Ignored():
                pass
            case protocol.SetStage(name, value):
                if name == "size":
                    self.stage.values["width"], self.stage.values["height"] = value
                    n.reply(sender, "/ldm3d/stage", "size", *value)
                else:
                    self.stage.values[name] = value
                    n.reply(sender, "/ldm3d/stage", name, value)
            case protocol.Cancel(job_id):
                self._cancel(job_id, sender)
            case protocol.Recall(job_id):
                files = self.writer.find(job_id)
                if files is None:
                    raise UnknownJob(f"no finished job {job_id} in {self.writer.root}")
                n.notify(sender, "/ldm3d/ready", *files.ready_args())
            case protocol.Subscribe(port, host):
                target = (host or sender[0], port)
                n.subscribe(target)
                n.reply(sender, "/ldm3d/subscribed", target[0], target[1])
                n.send_to([target], "/ldm3d/state", *self.worker.state_args())
            case protocol.Unsubscribe(port, host):
                target = (host or sender[0], port)
                n.unsubscribe(target)
                n.reply(sender, "/ldm3d/unsubscribed", target[0], target[1])
            case protocol.Status():
                n.reply(sender, "/ldm3d/state", *self.worker.state_args())
            case protocol.Ping():
                n.reply(sender, "/ldm3d/pong", __version__)
            case protocol.Stats():
                pairs = [item for kv in self.counters.snapshot().items() for item in kv]
                n.reply(sender, "/ldm3d/stats", *pairs, "queue", len(self.queue), "state", self.worker.state)

    def _submit(
        self, request: GenerateRequest | UpscaleRequest, inputs: dict[str, str] | None = None, *, sender: Address
    ) -> None:
        if not self._job_limit.allow(sender[0], time.monotonic()):
            raise RateLimited(
                f"{sender[0]} sends jobs faster than {self.settings.client_jobs_per_s:g} per second "
                f"(burst {self.settings.client_jobs_burst}); wait a moment"
            )
        job = Job(new_job_id(), request, sender, inputs=inputs or {})
        position, replaced = self.queue.put(job)
        for old in replaced:
            old.cancel.cancel()
            self.notifier.notify(old.sender, "/ldm3d/cancelled", old.id)
        self.notifier.reply(sender, "/ldm3d/accepted", job.id, position)
        logger.info("job %s queued at %d: %r", job.id, position, request.prompt[:80])

    def _cancel(self, job_id: str | None, sender: Address) -> None:
        running = self.worker.running
        if running is not None and running.timed_out:
            running = None
        if job_id is None:
            if running is None:
                raise UnknownJob("no job is running; /ldm3d/cancel <job id> cancels a queued one")
            job_id = running.id
        job = self.queue.remove(job_id)
        if job is not None:
            job.cancel.cancel()
            self.notifier.send_to([sender, job.sender, *self.notifier.subscribers], "/ldm3d/cancelled", job.id)
            return
        if running is not None and running.id == job_id:
            running.cancel_requested_by = sender
            running.cancel.cancel()  # the worker reports /ldm3d/cancelled within one step
            return
        raise UnknownJob(f"job {job_id} is neither queued nor running")

    # -- monitor -----------------------------------------------------------

    def _monitor(self) -> None:
        next_beat = time.monotonic() + self.settings.heartbeat_s
        while not self._stop_intake.wait(0.1):
            now = time.monotonic()
            if self._worker is not None:
                self._worker.check_timeout(now)
            if now >= next_beat and self._notifier is not None and self._worker is not None:
                next_beat = now + self.settings.heartbeat_s
                self._notifier.broadcast("/ldm3d/state", *self._worker.state_args())
