"""The worker thread: the only thread that touches the engine (and so the GPU).

It loads the model (state ``loading``), runs one short warm-up generation
(``warming``) so the first prompt of a show is not the slow one, then runs
queued jobs (``idle`` / ``busy``). Every job ends in exactly one of
``/ldm3d/ready``, ``/ldm3d/cancelled`` or ``/ldm3d/error``:

=================  ===============================================
``bad_arguments``  the model refused the request (size, steps, …)
``out_of_memory``  the device ran out of memory (after one retry
                   with a freed cache, when ``oom_retry`` is on)
``timeout``        the job ran past ``job_timeout_s``
``engine_failed``  any other failure inside the engine
``write_failed``   the output folder is unwritable or full
``model_failed``   the model could not be loaded (the bridge stops)
=================  ===============================================

Finished jobs go to a writer thread, which writes their files and then sends
``/ldm3d/ready`` in job order, while the worker already denoises the next job.

A job past its timeout is cancelled and reported at once (by
:meth:`Worker.check_timeout`, called by the bridge's monitor thread). An engine
that does not stop within ``stuck_grace_s`` after that is stuck for good (a hung
driver call cannot be interrupted from Python): :attr:`Worker.failed` is set
and ``serve`` exits with status 1 so that its supervisor restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any

from bridge.contract.engine_api import EngineLike
from bridge.contract.requests import generate_then_upscale
from bridge.errors import BadArguments, WriteFailed
from bridge.osc.codec import Arg
from bridge.output.images import read_depth16, read_rgb
from bridge.output.writer import JobFiles, TextureWriter
from bridge.serve.jobs import Address, Job, JobQueue
from bridge.serve.limits import LogLimiter
from bridge.serve.notifier import Notifier
from bridge.settings import BridgeSettings
from ldm3d_engine.errors import Cancelled, EngineError, InvalidRequest, OutOfMemory
from ldm3d_engine.types import GenerateRequest, Img2ImgRequest, RGBDResult, UpscaleRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Finished:
    """A computed job waiting for the writer thread."""

    job: Job
    result: RGBDResult
    extra: dict[str, Any]
    notify: list[Address | None]


class Worker:
    def __init__(
        self,
        engine_factory: Callable[[], EngineLike],
        queue: JobQueue,
        writer: TextureWriter,
        notifier: Notifier,
        settings: BridgeSettings,
        on_idle: Callable[[], None] = lambda: None,
        upscaler_factory: Callable[[], EngineLike] | None = None,
        on_scene: Callable[[str, JobFiles], None] = lambda key, files: None,
    ) -> None:
        self._factory = engine_factory
        self._upscaler_factory = upscaler_factory
        self._queue = queue
        self._writer = writer
        self._notifier = notifier
        self._settings = settings
        self._on_idle = on_idle
        #: A scene's folder is complete: record it in the show's library.
        self._on_scene = on_scene
        self._stopping = threading.Event()
        self._cancel_running = True
        self.engine: EngineLike | None = None
        self.upscaler: EngineLike | None = None
        self.state = "loading"
        self.running: Job | None = None
        self._started = 0.0
        #: Why the bridge cannot go on (model not loadable, engine stuck), once it cannot.
        self.failed: str | None = None
        self.ready = threading.Event()
        #: Finished jobs for the writer thread; two at most, so a slow disk slows the worker down.
        self._writes: Queue[_Finished | None] = Queue(maxsize=2)
        self._writer_thread = threading.Thread(target=self._write_loop, name="ldm3d-writer", daemon=True)
        self._log = LogLimiter(logger)

    @property
    def threads(self) -> list[threading.Thread]:
        """The threads the worker starts besides its own (watched by the bridge's monitor)."""
        return [self._writer_thread] if self._writer_thread.ident is not None else []

    def state_args(self) -> tuple[str, int, str, str]:
        running = self.running
        return (self.state, len(self._queue), running.id if running else "", self._settings.model)

    def shutdown(self, cancel_running: bool) -> None:
        self._cancel_running = cancel_running
        self._stopping.set()
        for job in self._queue.drain():
            job.cancel.cancel()
            if not job.quiet:
                self._notifier.notify(job.sender, "/ldm3d/cancelled", job.id)
        running = self.running
        if cancel_running and running is not None:
            running.cancel.cancel()
        self._queue.close()

    # -- the thread --------------------------------------------------------

    def run(self) -> None:
        self._writer_thread.start()
        try:
            self._serve()
        finally:
            self._writes.put(None)  # finish every pending write before the worker ends
            self._writer_thread.join()

    def _serve(self) -> None:
        if not self._load():
            return
        self.state = "idle"
        self.ready.set()
        self._on_idle()
        while not self._stopping.is_set():
            job = self._queue.take(timeout=0.25, on_take=self._mark_running)
            if job is None:
                continue
            if job.cancel.cancelled:  # cancelled while it waited (its message, if any, went out then)
                self.running = None
                self.state = "idle"
                if job.claim_outcome():
                    job.finished("/ldm3d/cancelled")  # e.g. a pre-generation job a live job pushed aside
                continue
            self._notifier.broadcast("/ldm3d/busy", 1)  # a lamp: on for each job, off after it
            try:
                outcome = self._run_job(job)
            except Exception as exc:  # noqa: BLE001 - never let one job end the worker
                self._log.exception("worker", time.monotonic(), "the worker failed on job %s", job.id)
                outcome = (
                    [job.sender, *self._notifier.subscribers],
                    *self._error(job, "engine_failed", f"{type(exc).__name__}: {exc}"),
                )
            # Clear the state first: a client reacting to the outcome must see the job gone.
            self.running = None
            self.state = "idle"
            self._notifier.broadcast("/ldm3d/busy", 0)
            if isinstance(outcome, _Finished):
                self._writes.put(outcome)  # the writer thread writes it while the next job denoises
            elif job.claim_outcome():
                targets, address, args = outcome
                self._notifier.event(targets, address, *args)
                job.finished(address)

    def _write_loop(self) -> None:
        """Writes finished jobs in order, then sends /ldm3d/ready (or write_failed)."""
        while (item := self._writes.get()) is not None:
            job = item.job
            try:
                if job.scene_key is not None:
                    files = self._writer.write_scene(job.id, item.result, {**item.extra, "scene_key": job.scene_key})
                    self._on_scene(job.scene_key, files)
                else:
                    files = self._writer.write(job.id, item.result, item.extra, fmt=job.format)
            except WriteFailed as exc:
                address, args = self._error(job, exc.code, str(exc))
            except Exception as exc:  # noqa: BLE001 - the writer thread must go on
                self._log.exception("write", time.monotonic(), "writing job %s failed", job.id)
                address, args = self._error(job, "write_failed", f"{type(exc).__name__}: {exc}")
            else:
                t = item.result.timings
                logger.info(
                    "job %s ready in %.2f s (text %.2f, denoise %.2f, decode %.2f): %s",
                    job.id,
                    time.time() - job.created,
                    t.text_encoding_s,
                    t.denoising_s,
                    t.decoding_s,
                    files.folder,
                )
                address, args = "/ldm3d/ready", files.ready_args()
            if job.claim_outcome():
                self._notifier.event(item.notify, address, *args)
                job.finished(address)

    def _mark_running(self, job: Job) -> None:
        self.running = job
        self.state = "busy"
        self._started = time.monotonic()

    def check_timeout(self, now: float) -> None:
        """Time out the running job; declare the engine stuck if it ignores that."""
        job = self.running
        if job is None:
            return
        elapsed = now - self._started
        limit = self._settings.job_timeout_s
        if elapsed > limit and not job.timed_out:
            job.timed_out = True
            job.cancel.cancel()
            logger.warning("job %s ran past its %g s timeout; cancelling it", job.id, limit)
            if job.claim_outcome():
                message = f"the job ran longer than {limit:g} s (job_timeout_s) and was stopped"
                if not job.quiet:
                    self._notifier.notify(job.sender, "/ldm3d/error", job.id, "timeout", message)
                job.finished("/ldm3d/error")
        elif job.timed_out and elapsed > limit + self._settings.stuck_grace_s and self.failed is None:
            self.failed = f"the engine is stuck in job {job.id} and does not respond to cancel"
            logger.error("%s; exiting so that a supervisor can restart the bridge", self.failed)

    def _load(self) -> bool:
        t0 = time.perf_counter()
        try:
            engine = self._factory()
            logger.info("model %s loaded in %.1f s", engine.model_id, time.perf_counter() - t0)
            if self._upscaler_factory is not None:
                self.upscaler = self._upscaler_factory()
                logger.info("upscaler %s loaded", self.upscaler.model_id)
            if self._settings.warmup:
                self.state = "warming"
                t1 = time.perf_counter()
                # A compiled UNet is compiled per seamless setting: pay for both now, not mid-show.
                for seamless in (True, False) if self._settings.compile else (None,):
                    engine.generate(
                        GenerateRequest(
                            "warm-up",
                            sampling=self._settings.sampling,
                            seed=0,
                            steps=self._settings.warmup_steps,
                            width=self._settings.width,
                            height=self._settings.height,
                            seamless=seamless,
                        )
                    )
                logger.info("warm-up took %.1f s", time.perf_counter() - t1)
        except Exception as exc:  # noqa: BLE001 - any load failure must reach the clients, then stop the bridge
            self.failed = f"{type(exc).__name__}: {exc}" if not isinstance(exc, EngineError) else str(exc)
            logger.error("the model could not be loaded: %s", self.failed)
            self.state = "failed"
            for job in self._queue.drain():
                self._notifier.notify(job.sender, "/ldm3d/error", job.id, "model_failed", self.failed)
            self.ready.set()
            return False
        self.engine = engine
        return True

    def _run_job(self, job: Job) -> _Finished | tuple[list[Address | None], str, tuple[Arg, ...]]:
        """Run one job: its result to write, or the message (targets, address, arguments) that ends it."""
        assert self.engine is not None
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

        logger.info("job %s started", job.id)
        notify: list[Address | None] = [] if job.quiet else [job.sender, *n.subscribers]
        try:
            engine, run = self._runner(job, on_step)
            try:
                result = run()
            except OutOfMemory:
                if not self._settings.oom_retry:
                    raise
                logger.warning("job %s ran out of memory; retrying once with a freed cache", job.id)
                engine.free_memory()
                result = run()
            extra = {"source_job": job.inputs["source_job"]} if "source_job" in job.inputs else {}
            extra.update({f"input_{k}": v for k, v in job.inputs.items() if k in ("image", "depth_map")})
        except Cancelled:
            logger.info("job %s cancelled", job.id)
            return [*notify, job.cancel_requested_by], "/ldm3d/cancelled", (job.id,)
        except (InvalidRequest, BadArguments) as exc:
            return notify, *self._error(job, "bad_arguments", str(exc))
        except OutOfMemory as exc:
            return notify, *self._error(job, "out_of_memory", str(exc))
        except Exception as exc:  # noqa: BLE001 - any engine failure ends this job only
            self._log.exception("engine", time.monotonic(), "job %s failed", job.id)
            return notify, *self._error(job, "engine_failed", f"{type(exc).__name__}: {exc}")
        return _Finished(job, result, extra, notify)

    def _runner(self, job: Job, on_step: Callable[[int, int], None]) -> tuple[EngineLike, Callable[[], RGBDResult]]:
        """The engine a job runs on, and the call that runs it (done twice after out-of-memory)."""
        request = job.request
        if isinstance(request, UpscaleRequest):
            upscaler = self.upscaler
            assert upscaler is not None, "the intake refuses /ldm3d/upscale without an upscaler"
            rgb, depth = read_rgb(Path(job.inputs["rgb"])), read_depth16(Path(job.inputs["depth"]))
            return upscaler, lambda: upscaler.upscale(request, rgb, depth, on_step=on_step, cancel=job.cancel)
        engine = self.engine
        assert engine is not None
        if job.upscale_after:  # a cue with upscale = true: generate, then LDM3D-SR of that, as one job
            upscaler = self.upscaler
            if upscaler is None:
                raise BadArguments("this cue asks for upscale = true; start the bridge with --upscale-model ldm3d-sr")

            return upscaler, lambda: generate_then_upscale(engine, upscaler, request, on_step, job.cancel)
        if isinstance(request, Img2ImgRequest):
            image = read_rgb(Path(job.inputs["image"]))
            depth_map = read_depth16(Path(job.inputs["depth_map"])) if "depth_map" in job.inputs else None
            return engine, lambda: engine.img2img(request, image, depth_map, on_step=on_step, cancel=job.cancel)
        return engine, lambda: engine.generate(request, on_step=on_step, cancel=job.cancel)

    @staticmethod
    def _error(job: Job, code: str, message: str) -> tuple[str, tuple[Arg, ...]]:
        logger.warning("job %s: %s: %s", job.id, code, message)
        return "/ldm3d/error", (job.id, code, message)
