"""One worker of the pool: a thread that opens its engine slot and runs jobs from the shared queue.

A worker's engine lives in its :class:`~bridge.contract.engine_api.EngineSlot`: on one device
of this process, or in a Ray actor on any node. The worker loads it (state ``loading``), runs
one short warm-up generation (``warming``) so the first prompt of a show is not the slow one,
then takes jobs (``idle`` / ``busy``). Every job ends in exactly one of ``/ldm3d/ready``,
``/ldm3d/cancelled`` or ``/ldm3d/error``:

=================  ===============================================
``bad_arguments``  the model refused the request (size, steps, …)
``out_of_memory``  the device ran out of memory (after one retry
                   with a freed cache, when ``oom_retry`` is on)
``timeout``        the job ran past ``job_timeout_s``
``engine_failed``  any other failure inside the engine, or the
                   worker's engine was lost during the job
``write_failed``   the output folder is unwritable or full
``model_failed``   the model could not be loaded
``unsafe_content`` the image safety checker flagged the picture:
                   it was dropped (nothing written; counted as
                   ``unsafe_content`` in ``/ldm3d/stats``)
=================  ===============================================

Finished jobs go to the writer thread (:mod:`bridge.workers.writes`), which writes their files
and sends ``/ldm3d/ready`` while the worker already denoises the next job.

**Lost engines.** When the engine goes away (an actor that died: :class:`EngineLost`) the
worker is ``restarting`` until its slot brings it back (Ray restarts the actor, or a new one
is made), trying again with a growing pause. A job it had begun ends in ``engine_failed``; a
job it had not begun is put back first in the queue, once, for the next free worker. While
idle, the worker checks its engine every ``heartbeat_s``.

A job past its timeout is cancelled and reported at once (:meth:`Worker.check_timeout`, called
by the bridge's monitor thread). An engine that does not stop within ``stuck_grace_s`` after
that is stuck: a Ray actor is killed and restarted; an engine in this process cannot be
interrupted from Python (a hung driver call), so the worker is out for good (:attr:`failed`).

Longer than our ~350-line rule on purpose: it is one thread's state machine (load, warm up,
take, run, retry, lost engine, end every job once), which reads best in one place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bridge.contract.engine_api import EngineFailure, EngineLike, EngineLost, EngineSlot, ObjectSlot
from bridge.contract.morphs import MorphRequest
from bridge.contract.requests import generate_then_upscale
from bridge.errors import BadArguments, BridgeError, NotSupported
from bridge.notify.limits import Counters, LogLimiter
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Arg
from bridge.output.images import read_depth16, read_rgb
from bridge.settings import BridgeSettings
from bridge.workers.jobs import Address, Job, JobQueue, WorldAndObject
from bridge.workers.morphing import morph_frames
from bridge.workers.previews import PreviewDesk
from bridge.workers.writes import Discard, Finished, Frame, Writes, failed
from ldm3d_engine.errors import Cancelled, EngineError, InvalidRequest, OutOfMemory, UnsafeContent
from ldm3d_engine.object_types import MeshResult, ObjectEngineLike, ObjectRequest
from ldm3d_engine.types import DepthRequest, GenerateRequest, Img2ImgRequest, Previews, RGBDResult, UpscaleRequest

logger = logging.getLogger(__name__)

#: What ends a job without a result: who is told, the address, its arguments.
Outcome = tuple[list[Address | None], str, tuple[Arg, ...]]
#: Pause before bringing a lost engine back again: doubled at each failure, up to this.
MAX_PAUSE_S = 30.0


def truncation_note(result: RGBDResult) -> str:
    """What a sender is told when the model saw only the beginning of its prompt."""
    return (
        f"the prompt is longer than the model's 77 tokens and was cut; the model saw: {result.prompt_used!r} "
        "(meta.json: prompt_used)"
    )


class Worker:
    def __init__(
        self,
        index: int,
        slot: EngineSlot,
        queue: JobQueue,
        writes: Writes,
        notifier: Notifier,
        settings: BridgeSettings,
        counters: Counters,
        previews: PreviewDesk,
        on_ready: Callable[[Worker], None] = lambda worker: None,
        on_job_end: Callable[[], None] = lambda: None,
    ) -> None:
        self.index = index
        self.slot = slot
        self._queue = queue
        self._writes = writes
        self._notifier = notifier
        self._settings = settings
        self._counters = counters
        self._previews = previews
        self._on_ready = on_ready
        #: A job ended on this worker: the pool sends the busy lamp.
        self._on_job_end = on_job_end
        self._stopping = threading.Event()
        self.engine: EngineLike | None = None
        self.upscaler: EngineLike | None = None
        #: The text → 3D object model beside the engine (/ldm3d/object), or None.
        self.objects: ObjectEngineLike | None = None
        #: loading, warming, idle, busy, restarting or failed.
        self.state = "loading"
        self.running: Job | None = None
        self.started_at = 0.0
        self._killed = False
        #: Why this worker is out for good (its model cannot load, its engine is stuck, its thread keeps dying).
        self.failed: str | None = None
        #: Why its thread ended unexpectedly (the pool starts a new one).
        self.died: str | None = None
        #: Thread deaths since its last finished job.
        self.deaths = 0
        #: Set once it was ready, or failed, for the first time (``on_ready`` is told either way).
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, name=self._thread_name(), daemon=True)
        self._log = LogLimiter(logger)

    def _thread_name(self) -> str:
        return f"ldm3d-worker-{self.index}"

    @property
    def name(self) -> str:
        return f"worker {self.index} ({self.slot.where})"

    @property
    def alive(self) -> bool:
        return self.state in ("idle", "busy")

    def start(self) -> None:
        self.thread.start()

    def restart(self) -> None:
        """A new thread after this one died: the engine is loaded again."""
        self.died = None
        self.engine = self.upscaler = self.objects = None
        self.state = "restarting"
        self.thread = threading.Thread(target=self.run, name=self._thread_name(), daemon=True)
        self.thread.start()

    def shutdown(self, cancel_running: bool) -> None:
        self._stopping.set()
        running = self.running
        if cancel_running and running is not None:
            running.cancel.cancel()

    # -- the thread --------------------------------------------------------

    def run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 - the thread ends; the pool starts a new one
            self.died = f"{type(exc).__name__}: {exc}"
            self.deaths += 1
            job, self.running = self.running, None
            self.state = "restarting"
            logger.error("%s: its thread died (%s)", self.name, self.died)
            if job is not None and job.claim_outcome():
                address, args = failed(job, "engine_failed", f"{self.name} died: {self.died}")
                self._notifier.event([] if job.quiet else [job.sender, *self._notifier.subscribers], address, *args)
                job.finished(address)
            self._on_job_end()

    def _serve(self) -> None:
        pause = 1.0
        while not self._stopping.is_set():
            if self.engine is None:
                if not self._open():
                    if self.failed is not None:
                        return
                    self._stopping.wait(pause)
                    pause = min(MAX_PAUSE_S, pause * 2)
                    continue
                pause = 1.0
            self._take_jobs()  # until stopping, or until the engine is lost

    def _open(self) -> bool:
        first = not self.ready.is_set()
        self.state = "loading" if first else "restarting"
        t0 = time.perf_counter()
        try:
            engine, upscaler = self.slot.open()
            logger.info("%s: model %s loaded in %.1f s", self.name, engine.model_id, time.perf_counter() - t0)
            objects = self.slot.open_objects() if isinstance(self.slot, ObjectSlot) else None
            if self._settings.warmup:
                self.state = "warming" if first else "restarting"
                self._warm_up(engine)
                if objects is not None:
                    self._warm_up_objects(objects)
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, never raised
            reason = str(exc) if isinstance(exc, EngineError | EngineFailure) else f"{type(exc).__name__}: {exc}"
            if first and not isinstance(exc, EngineLost):
                self.failed = reason
                self.state = "failed"
                logger.error("%s: the model could not be loaded: %s", self.name, reason)
                self.ready.set()
                self._on_ready(self)
                return False
            self._log.warning("reopen", time.monotonic(), "%s could not be brought back yet: %s", self.name, reason)
            return False
        self.engine, self.upscaler, self.objects = engine, upscaler, objects
        self.state = "idle"
        if not first:
            logger.info("%s is back", self.name)
        self.ready.set()
        self._on_ready(self)
        return True

    def _warm_up(self, engine: EngineLike) -> None:
        t1 = time.perf_counter()
        s = self._settings
        # A compiled UNet (torch.compile, or OpenVINO's conversion) is made per seamless setting: pay
        # for both now, not mid-show.
        compiled = s.compile or any(device.startswith("openvino:") for device in s.devices)
        for seamless in (True, False) if compiled else (None,):
            request = GenerateRequest(
                "warm-up", sampling=s.sampling, seed=0, steps=s.warmup_steps, seamless=seamless, width=s.width,
                height=s.height,
            )  # fmt: skip
            # With previews on, the warm-up asks for one: the engine fits its preview map now, not in a show.
            previews = Previews(1, lambda preview: None) if s.preview_every > 0 else None
            try:
                engine.generate(request, previews=previews)
            except UnsafeContent:  # the picture is thrown away anyway; the checker has run once
                logger.info("%s: the safety checker flagged the warm-up picture (thrown away)", self.name)
        logger.info("%s: warm-up took %.1f s", self.name, time.perf_counter() - t1)

    def _warm_up_objects(self, objects: ObjectEngineLike) -> None:
        """One small object (``warmup_steps``, the smallest marching-cubes grid): the first object of a
        show does not pay for the first call's set-up."""
        t1 = time.perf_counter()
        objects.generate_object(ObjectRequest("warm-up", seed=0, steps=self._settings.warmup_steps, resolution=16))
        logger.info("%s: object warm-up took %.1f s", self.name, time.perf_counter() - t1)

    def _take_jobs(self) -> None:
        check_at = time.monotonic() + self._settings.heartbeat_s
        while not self._stopping.is_set():
            job = self._queue.take(timeout=0.25, on_take=self._mark_running)
            if job is None:
                if time.monotonic() >= check_at:
                    check_at = time.monotonic() + self._settings.heartbeat_s
                    if not self._engine_answers():
                        self._lose("its engine stopped answering")
                        return
                continue
            if job.cancel.cancelled:  # cancelled while it waited (its message, if any, went out then)
                self.running = None
                self.state = "idle"
                if job.claim_outcome():
                    job.finished("/ldm3d/cancelled")  # e.g. a pre-generation job a live job pushed aside
                continue
            self._notifier.broadcast("/ldm3d/busy", 1)  # a lamp: on for each job, off when none runs
            lost: EngineLost | None = None
            outcome: Finished | Outcome | None
            try:
                outcome = self._run_job(job)
            except EngineLost as exc:
                lost = exc
                outcome = self._job_after_loss(job, exc)
            except Exception as exc:  # noqa: BLE001 - never let one job end the worker
                self._log.exception("worker", time.monotonic(), "the worker failed on job %s", job.id)
                outcome = (
                    [job.sender, *self._notifier.subscribers],
                    *failed(job, "engine_failed", f"{type(exc).__name__}: {exc}"),
                )
            # Clear the state first: a client reacting to the outcome must see the job gone.
            self.running = None
            self.state = "idle" if lost is None else "restarting"
            self._on_job_end()
            if isinstance(outcome, Finished):
                self.deaths = 0
                self._writes.put(outcome)  # the writer thread writes it while the next job denoises
            else:
                if isinstance(job.request, MorphRequest):  # cancelled, failed, timed out, put back
                    self._writes.put(Discard(job))  # its frames so far, after any still being written
                if outcome is not None and job.claim_outcome():
                    targets, address, args = outcome
                    self._notifier.event(targets, address, *args)
                    job.finished(address)
            if lost is not None:
                self._lose(str(lost))
                return

    def _engine_answers(self) -> bool:
        try:
            return self.slot.alive()
        except Exception:  # noqa: BLE001 - any failure to answer means the engine is gone
            return False

    def _lose(self, why: str) -> None:
        self._counters.add("workers_lost")
        logger.error("%s was lost (%s); bringing it back", self.name, why)
        self.engine = self.upscaler = self.objects = None
        self.state = "restarting"

    def _job_after_loss(self, job: Job, lost: EngineLost) -> Outcome | None:
        """A job whose engine was lost: put back once if it had not begun (None), else its outcome."""
        notify: list[Address | None] = [] if job.quiet else [job.sender, *self._notifier.subscribers]
        if not lost.started and not job.retried and not job.cancel.cancelled:
            job.retried = True
            if self._queue.put_back(job):
                self._counters.add("jobs_retried")
                logger.warning("job %s had not begun on %s; it goes to the next free worker", job.id, self.name)
                return None
            return [*notify, job.cancel_requested_by], "/ldm3d/cancelled", (job.id,)  # latest-wins: outdated
        return notify, *failed(job, "engine_failed", f"{self.name} was lost during the job: {lost}")

    def _mark_running(self, job: Job) -> None:
        self.running = job
        self.state = "busy"
        self.started_at = time.monotonic()
        self._killed = False

    def check_timeout(self, now: float) -> None:
        """Time out the running job; stop an engine that ignores that (or give up on it)."""
        job = self.running
        if job is None:
            return
        elapsed = now - self.started_at
        limit = self._settings.job_timeout_s * job.size  # a morph: each of its frames
        if elapsed > limit and not job.timed_out:
            job.timed_out = True
            claimed = job.claim_outcome()  # before the cancel: the engine stopping at once must not end it first
            job.cancel.cancel()
            logger.warning("job %s ran past its %g s timeout; cancelling it", job.id, limit)
            if claimed:
                message = f"the job ran longer than {limit:g} s (job_timeout_s) and was stopped"
                if not job.quiet:
                    self._notifier.notify(job.sender, "/ldm3d/error", job.id, "timeout", message)
                job.finished("/ldm3d/error")
        elif job.timed_out and elapsed > limit + self._settings.stuck_grace_s and not self._killed:
            self._killed = True
            if self.slot.kill():
                logger.error("%s is stuck in job %s; it was stopped and is being restarted", self.name, job.id)
            elif self.failed is None:
                self.failed = f"the engine of {self.name} is stuck in job {job.id} and does not respond to cancel"
                logger.error("%s", self.failed)

    def _run_job(self, job: Job) -> Finished | Outcome:
        """Run one job: its result to write, or the message (targets, address, arguments) that ends it."""
        n = self._notifier
        interval = 1.0 / self._settings.progress_hz
        last = 0.0

        def on_step(step: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if not job.quiet and (step == total or now - last >= interval):
                last = now
                n.notify(job.sender, "/ldm3d/progress", job.id, step, total)
                n.notify(job.sender, "/ldm3d/progress/fraction", round(step / total, 4))

        logger.info("job %s started on %s", job.id, self.name)
        notify: list[Address | None] = [] if job.quiet else [job.sender, *n.subscribers]
        try:
            engine, made = self._runner(job, on_step)
            run: Callable[[], RGBDResult | MeshResult | WorldAndObject] = made
            if job.object_after is not None:
                run = self._then_object(job, made, on_step)
            try:
                result = run()
            except OutOfMemory:
                if not self._settings.oom_retry:
                    raise
                logger.warning("job %s ran out of memory; retrying once with a freed cache", job.id)
                engine.free_memory()
                result = run()
            if isinstance(result, RGBDResult) and result.prompt_truncated and not job.quiet:
                n.notify(job.sender, "/ldm3d/warning", job.id, "prompt_truncated", truncation_note(result))
            extra: dict[str, str] = {"worker": self.slot.where}
            if "source_job" in job.inputs:
                extra["source_job"] = job.inputs["source_job"]
            extra.update({f"input_{k}": v for k, v in job.inputs.items() if k in ("image", "depth_map")})
        except Cancelled:
            logger.info("job %s cancelled", job.id)
            return [*notify, job.cancel_requested_by], "/ldm3d/cancelled", (job.id,)
        except (InvalidRequest, BadArguments) as exc:
            return notify, *failed(job, "bad_arguments", str(exc))
        except BridgeError as exc:  # a morph between worlds of another model (wrong_model)
            return notify, *failed(job, exc.code, str(exc))
        except OutOfMemory as exc:
            return notify, *failed(job, "out_of_memory", str(exc))
        except UnsafeContent as exc:  # logged by its message only: the picture is gone
            self._counters.add("unsafe_content")
            return notify, *failed(job, "unsafe_content", str(exc))
        except EngineLost:
            raise
        except EngineFailure as exc:
            return notify, *failed(job, "engine_failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - any engine failure ends this job only
            self._log.exception("engine", time.monotonic(), "job %s failed", job.id)
            return notify, *failed(job, "engine_failed", f"{type(exc).__name__}: {exc}")
        return Finished(job, result, extra, notify)

    def _then_object(
        self, job: Job, run: Callable[[], RGBDResult | MeshResult], on_step: Callable[[int, int], None]
    ) -> Callable[[], WorldAndObject]:
        """A cue with an object: its world, then the object (progress of each in turn)."""
        objects, wanted = self.objects, job.object_after
        if objects is None:
            raise NotSupported("this cue places an object; start the bridge with --object-model (tiny-shap-e offline)")
        assert wanted is not None

        def both() -> WorldAndObject:
            world = run()
            assert isinstance(world, RGBDResult), "only a cue's world is followed by an object"
            return WorldAndObject(world, objects.generate_object(wanted, on_step=on_step, cancel=job.cancel))

        return both

    def _runner(
        self, job: Job, on_step: Callable[[int, int], None]
    ) -> tuple[EngineLike, Callable[[], RGBDResult | MeshResult]]:
        """The engine a job runs on (its ``free_memory`` after out-of-memory), and the call that runs it
        (done twice after out-of-memory)."""
        request = job.request
        if isinstance(request, ObjectRequest):
            objects, engine = self.objects, self.engine
            # The intake refuses /ldm3d/object without an object model, and the bridge slots that hold none;
            # left: a slot whose object model did not come (an actor that reported none).
            if objects is None:
                raise NotSupported(f"{self.name} has no object model (its slot loads none)")
            assert engine is not None
            return engine, lambda: objects.generate_object(request, on_step=on_step, cancel=job.cancel)
        previews = self._previews.previews_for(job, self.index)
        if isinstance(request, MorphRequest):
            engine = self.engine
            assert engine is not None

            def hand(index: int, result: RGBDResult) -> None:
                self._writes.put(
                    Frame(job, index, result, [] if job.quiet else [job.sender, *self._notifier.subscribers])
                )

            return engine, morph_frames(engine, request, on_step, job.cancel, previews, hand)
        if isinstance(request, UpscaleRequest):
            upscaler = self.upscaler
            assert upscaler is not None, "the intake refuses /ldm3d/upscale without an upscaler"
            rgb, depth = read_rgb(Path(job.inputs["rgb"])), read_depth16(Path(job.inputs["depth"]))
            return upscaler, lambda: upscaler.upscale(
                request, rgb, depth, on_step=on_step, cancel=job.cancel, previews=previews
            )
        engine = self.engine
        assert engine is not None
        if job.upscale_after:  # a cue with upscale = true: generate, then LDM3D-SR of that, as one job
            upscaler = self.upscaler
            if upscaler is None:
                raise BadArguments("this cue asks for upscale = true; start the bridge with --upscale-model ldm3d-sr")

            assert isinstance(request, GenerateRequest), "only a show's cues upscale after"
            return upscaler, lambda: generate_then_upscale(engine, upscaler, request, on_step, job.cancel, previews)
        if isinstance(request, DepthRequest):
            picture = read_rgb(Path(job.inputs["image"]))
            return engine, lambda: engine.estimate_depth(request, picture, on_step=on_step, cancel=job.cancel)
        if isinstance(request, Img2ImgRequest):
            image = read_rgb(Path(job.inputs["image"]))
            depth_map = read_depth16(Path(job.inputs["depth_map"])) if "depth_map" in job.inputs else None
            return engine, lambda: engine.img2img(
                request, image, depth_map, on_step=on_step, cancel=job.cancel, previews=previews
            )
        return engine, lambda: engine.generate(request, on_step=on_step, cancel=job.cancel, previews=previews)
