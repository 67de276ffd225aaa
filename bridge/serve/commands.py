"""Carrying out commands: what :meth:`Bridge.handle` does with each one the intake parsed.

A mixin of :class:`~bridge.serve.server.Bridge` (which owns the parts named below): jobs are
checked and queued, cancels reach the queue or the running job, stage and display changes are
echoed, shows go to the show desk, and questions are answered. Handling never blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bridge import __version__
from bridge.contract import protocol
from bridge.contract.morphs import MorphRequest, morph_request
from bridge.contract.ranges import Ranges
from bridge.contract.requests import depth_request, img2img_request, object_request, text_request, upscale_request
from bridge.errors import BadArguments, NotSupported, RateLimited, UnknownJob
from bridge.notify.limits import Counters, TokenBuckets
from bridge.notify.notifier import Notifier
from bridge.notify.subscribing import SubscriptionDesk
from bridge.osc.codec import Arg
from bridge.output.formats import check_format
from bridge.output.job_ids import new_job_id
from bridge.output.writer import JobFiles, TextureWriter
from bridge.placement import Placement
from bridge.public.gate import PromptGate
from bridge.serve.shows import ShowDesk
from bridge.serve.stage import Stage
from bridge.serve.visitors import VisitorDesk
from bridge.settings import MAX_PREVIEW_EVERY, BridgeSettings
from bridge.workers.jobs import Address, Job, JobQueue
from bridge.workers.pool import WorkerPool
from ldm3d_engine.object_types import ObjectRequest
from ldm3d_engine.types import DepthRequest, GenerateRequest, UpscaleRequest

logger = logging.getLogger("bridge.serve.server")


class Commands:
    """What the bridge owns that commands use (set by :class:`Bridge`)."""

    settings: BridgeSettings
    writer: TextureWriter
    queue: JobQueue
    stage: Stage
    ranges: Ranges
    display: dict[str, float | int]
    counters: Counters
    #: The prompt rules every prompt passes before the stage or the queue.
    gate: PromptGate
    #: Visitors' prompts and their moderation (None: no visitor page).
    visitor_desk: VisitorDesk | None
    _job_limit: TokenBuckets
    #: An upscaler is loaded beside the model (/ldm3d/upscale works).
    upscale: bool

    @property
    def notifier(self) -> Notifier:
        raise NotImplementedError

    @property
    def desk(self) -> SubscriptionDesk:
        raise NotImplementedError

    @property
    def shows(self) -> ShowDesk:
        raise NotImplementedError

    @property
    def pool(self) -> WorkerPool:
        raise NotImplementedError

    def state_args(self) -> tuple[str, int, str, str, str, int, int]:
        raise NotImplementedError

    def handle(
        self, command: protocol.Command, sender: Address, *, bound: int | None = None, trusted: bool = False
    ) -> None:
        """Carry out one command. ``bound``: the most bytes the sender's own reply may take (None:
        unbounded; see :class:`Notifier`); ``trusted``: the message carried the bridge's token."""
        n = self.notifier
        submit = partial(self._submit, sender=sender, bound=bound)
        jobs = protocol.Generate | protocol.Img2Img | protocol.Depth | protocol.Upscale | protocol.Morph
        if isinstance(command, jobs) and "format" in command.options:
            submit = partial(submit, fmt=_job_format(command.options["format"]))
        if isinstance(command, jobs) and "preview_every" in command.options:
            submit = partial(submit, preview_every=_preview_every(command.options["preview_every"]))
        match command:
            case protocol.Generate(prompt, options):
                submit(text_request(self.settings, prompt, options, self.pool.engine))
            case protocol.Img2Img(image, prompt, options):
                if "strength" in (stage := self.stage.get()) and "strength" not in options:
                    options = {**options, "strength": stage["strength"]}  # the stage's, unless the job says
                submit(*img2img_request(self.settings, image, prompt, options, self.pool.engine))
            case protocol.Depth(image, options):
                submit(*depth_request(self.settings, image, options, self.pool.engine))
            case protocol.Upscale(job_id, options):
                if not self.upscale:
                    raise NotSupported(
                        "/ldm3d/upscale is off: start the bridge with --upscale-model ldm3d-sr to load the upscaler"
                    )
                submit(*upscale_request(self.settings, self.writer, job_id, options, self.pool.upscaler))
            case protocol.Object(prompt, options):
                wanted, placement = object_request(self.settings, prompt, options, self.pool.objects)
                submit(wanted, placement=placement)
            case protocol.Morph(from_job, to, options):
                request = morph_request(self.writer, from_job, to, options, self.pool.engine)
                if request.to_job is None:
                    self.gate.check(to)  # a prompt is checked as any prompt is
                submit(request)
            case protocol.Go():
                prompt = self.stage.get()["prompt"]
                if not prompt:
                    raise BadArguments("/ldm3d/go: no prompt is set; send /ldm3d/prompt first")
                submit(text_request(self.settings, prompt, self.stage.go_options(), self.pool.engine))
            case protocol.Ignored():
                pass
            case protocol.SetStage(name, value):
                if name == "prompt":  # refused before any client's screen shows it
                    self.gate.check(value)
                self._staged(name, value, self.stage.set(name, value), sender, bound)
            case protocol.SetStageNorm(name, fraction):
                self._staged(name, *self.stage.set_norm(name, fraction), sender, bound)
            case protocol.Display(name, value):
                address = f"/ldm3d/display/{name}"
                if self.display.get(name) != value:  # a change: every subscriber's TouchDesigner applies it
                    self.display[name] = value
                    n.notify(sender, address, value, bound=bound)
                else:
                    n.reply(sender, address, value, bound=bound)
            case protocol.Cancel(job_id):
                self._cancel(job_id, sender)
            case protocol.Recall(job_id):
                files = self.writer.find(job_id)
                if files is None:
                    why = self.writer.unreadable(job_id)  # a folder copied in by hand, a damaged disk
                    if why is not None:
                        raise UnknownJob(f"job {job_id} cannot be recalled: its meta.json cannot be read: {why}")
                    raise UnknownJob(f"no finished job {job_id} in {self.writer.root}")
                n.notify(sender, "/ldm3d/ready", *files.ready_args(), bound=bound)
            case protocol.Subscribe(port, host, lease):
                self.desk.handle(True, port, host, sender, bound, trusted, lease)
            case protocol.Unsubscribe(port, host):
                self.desk.handle(False, port, host, sender, bound, trusted)
            case protocol.Status():
                n.reply(sender, "/ldm3d/state", *self.state_args(), bound=bound)
            case protocol.Workers():
                for args in self.pool.worker_args():
                    n.reply(sender, "/ldm3d/worker", *args, bound=bound)
            case protocol.Ping():
                n.reply(sender, "/ldm3d/pong", __version__, bound=bound)
            case protocol.ShowLoad(path, fire):
                self.shows.load(path, sender, fire)
            case protocol.CueShow(number):
                self.shows.cue(number, sender)
            case protocol.CueStandby(number):
                self.shows.set_standby(number, sender)
            case protocol.ShowControl(action):
                self._show_control(action, sender, bound)
            case protocol.RulesReload():
                n.reply(sender, "/ldm3d/rules", self.gate.reload(), bound=bound)
            case protocol.Moderate(action, ticket):
                desk = self.visitor_desk
                if desk is None or not self.settings.moderate:
                    raise NotSupported(f"{action}: no moderation here: start the bridge with --visitors --moderate")
                if action == "list":
                    desk.listing(sender, bound)
                else:
                    desk.decide(action, ticket)
            case protocol.Stats():
                pairs = [item for kv in self.counters.snapshot().items() for item in kv]
                n.reply(sender, "/ldm3d/stats", *pairs, "queue", len(self.queue), "state", self.pool.state, bound=bound)

    def visitor_job(self, prompt: str, on_done: Callable[[str], None]) -> str:
        """Queue the job of a visitor's prompt, made from the stage's settings as ``/ldm3d/go`` (its
        notifications go to the subscribers only); its id."""
        request = text_request(self.settings, prompt, self.stage.go_options(), self.pool.engine)
        job = Job(new_job_id(), request, None, on_done=on_done)
        self._queue_live(job)
        return job.id

    def _scene_written(self, key: str, files: JobFiles) -> None:
        """On the writer thread, once the scene's folder is complete: its row in the library. A locked
        library keeps the row pending (the show desk's clock writes it when it is free; a restart
        adopts the folder): the scene is known at once and its job ends ``/ldm3d/ready`` as any."""
        if not self.shows.library.add(key, files.job_id, ""):
            logger.warning("scene %s is complete but the scene library is locked by another process: it is "
                           "recorded as soon as the library is free", files.job_id)  # fmt: skip
        self.shows.scene_added(key)

    def _show_control(self, action: str, sender: Address, bound: int | None) -> None:
        shows = self.shows
        if action in ("go", "back"):
            shows.go(sender, 1 if action == "go" else -1)
        elif action == "list":
            shows.listing(sender, bound)
        elif action == "state":
            self.notifier.reply(sender, "/ldm3d/show/state", *shows.state_args(), bound=bound)
        elif action in ("stop", "pause"):
            shows.set_running(False, sender)
        elif action in ("start", "resume"):
            shows.set_running(True, sender, restart=action == "start")
        else:
            shows.pregen(sender)

    def _staged(
        self, name: str, value: Any, echoes: list[tuple[str, tuple[Arg, ...]]], sender: Address, bound: int | None
    ) -> None:
        """Answer a stage change: ``/ldm3d/stage`` to the sender (and its host's subscribers), and
        each echo of a change on its own address to the sender and every subscriber."""
        values = value if name == "size" else (value,)
        self.notifier.reply(sender, "/ldm3d/stage", name, *values, bound=bound)
        for address, args in echoes:
            self.notifier.notify(sender, address, *args, bound=bound)

    def _submit(
        self,
        request: GenerateRequest | UpscaleRequest | DepthRequest | MorphRequest | ObjectRequest,
        inputs: dict[str, str] | None = None,
        *,
        sender: Address,
        bound: int | None = None,
        fmt: str | None = None,
        preview_every: int | None = None,
        placement: Placement | None = None,
    ) -> None:
        if not self._job_limit.allow(sender[0], time.monotonic()):
            raise RateLimited(
                f"{sender[0]} sends jobs faster than {self.settings.client_jobs_per_s:g} per second "
                f"(burst {self.settings.client_jobs_burst}); wait a moment"
            )
        self.gate.check(getattr(request, "prompt", ""))  # the negative prompt is what the world avoids: not checked
        job = Job(new_job_id(), request, sender, inputs=inputs or {}, format=fmt, preview_every=preview_every)
        job.placement = placement
        self._queue_live(job, bound)

    def _queue_live(self, job: Job, bound: int | None = None) -> None:
        """Queue a live job (not pre-generation), ahead of pre-generation, which steps aside. With no
        worker alive it is queued within ``worker_grace_s`` (it runs when one is back) and refused
        after it (rather than a job nobody runs): :meth:`WorkerPool.refuse_if_down`."""
        self.pool.refuse_if_down()
        if self.pool.idle_workers == 0:
            self.shows.yield_to_live()
        self._enqueue(job, bound)

    def _enqueue(self, job: Job, bound: int | None = None) -> None:
        """Queue ``job`` (QueueFull when full); ``/ldm3d/accepted`` to its sender unless it is quiet."""

        def told(position: int, replaced: list[Job]) -> None:  # before a worker can take the job
            for old in replaced:
                if not old.quiet:
                    self.notifier.notify(old.sender, "/ldm3d/cancelled", old.id)
            if not job.quiet:
                self.notifier.reply(job.sender, "/ldm3d/accepted", job.id, position, bound=bound)

        position, replaced = self.queue.put(job, told)
        for old in replaced:
            old.cancel.cancel()
            old.finished("/ldm3d/cancelled")
        request = job.request
        if isinstance(request, MorphRequest):
            what = f"{request.first.prompt} → {request.second.prompt}"
        else:
            what = str(getattr(request, "prompt", "(a depth job)"))
        logger.info("job %s queued at %d: %r", job.id, position, what[:80])

    def _cancel(self, job_id: str | None, sender: Address) -> None:
        jobs = self.pool.running
        if job_id is None:
            job_id = jobs[-1].id if jobs else self._newest_waiting(sender)  # the latest started (several workers)
        job = self.queue.remove(job_id)
        if job is not None:
            job.cancel.cancel()
            self.notifier.event([sender, job.sender, *self.notifier.subscribers], "/ldm3d/cancelled", job.id)
            job.finished("/ldm3d/cancelled")
            return
        running = next((job for job in jobs if job.id == job_id), None)
        if running is not None:
            running.cancel_requested_by = sender
            running.cancel.cancel()  # the worker reports /ldm3d/cancelled within one step
            return
        raise UnknownJob(f"job {job_id} is neither queued nor running")

    def _newest_waiting(self, sender: Address) -> str:
        """STOP with nothing running (the model still loading, say) means "stop what I just started":
        the newest waiting job of the sender's host, else the newest of anyone (never pre-generation)."""
        waiting = [job for job in self.queue.snapshot() if not job.quiet]
        mine = [job for job in waiting if job.sender is not None and job.sender[0] == sender[0]]
        if not (mine or waiting):
            raise UnknownJob("nothing is running or waiting; /ldm3d/cancel <job id> names a job")
        return (mine or waiting)[-1].id


def _job_format(name: str) -> str:
    """A job's ``format`` option, checked now (BadArguments names the formats, or the extra one needs)."""
    try:
        check_format(name)
    except ValueError as exc:
        raise BadArguments(f"option 'format': {exc}") from None
    return name


def _preview_every(steps: int) -> int:
    """A job's ``preview_every`` option, checked now."""
    if not 0 <= steps <= MAX_PREVIEW_EVERY:
        raise BadArguments(
            f"option 'preview_every' {steps} is out of range; allowed 0 (no previews) .. {MAX_PREVIEW_EVERY} steps"
        )
    return steps
