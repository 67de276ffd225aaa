"""The worker pool: one worker per engine slot, all taking jobs from the bridge's one queue.

The bridge keeps what it owns with one worker or many: the queue and its modes, access,
replies, notifications and the writer (:mod:`bridge.workers.writes`, one thread for all
workers). A free worker takes the next job. Every worker runs the bridge's one model today;
when workers may hold different models, the choice of a worker that has the job's model warm
belongs in :meth:`~bridge.workers.jobs.JobQueue.take` (a job may then be passed over by a worker
that lacks its model), and nowhere else.

The pool's state, as ``/ldm3d/state`` reports it:

==============  ==========================================================
``loading``     no worker is ready yet (``warming``: one is warming up)
``idle``        a worker is alive and none runs a job
``busy``        a worker runs a job
``restarting``  every worker was ready once and none is alive now (a Ray
                actor, or a worker thread, being brought back): jobs wait
                for one, see below
``failed``      no worker can come back (its model cannot load, its engine
                is stuck, its thread died three times in a row)
==============  ==========================================================

**No worker alive.** The job a worker was running when it was lost ends in ``engine_failed``
(the worker's doing). The queue is kept: waiting jobs, and new ones (accepted and queued), wait
up to ``worker_grace_s`` (counted by the monitor's clock from when the pool is first seen
``restarting``) for a worker to come back, and run when one does. Past that, every waiting job
ends in ``engine_failed``, and new jobs are refused with ``engine_failed``, until a worker is
back (which starts a new grace the next time none is alive). ``worker_grace_s = 0``: no grace,
both at once. A pool that ``failed`` (no worker can come back) ends its waiting jobs at once,
whatever the grace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from bridge.contract.engine_api import EngineLike, EngineSlot
from bridge.errors import EngineDown
from bridge.notify.limits import Counters
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Arg
from bridge.output.writer import JobFiles, TextureWriter
from bridge.settings import BridgeSettings
from bridge.workers.jobs import Job, JobQueue
from bridge.workers.previews import PreviewDesk
from bridge.workers.worker import Worker
from bridge.workers.writes import Writes
from ldm3d_engine.object_types import ObjectEngineLike

logger = logging.getLogger(__name__)

#: A worker whose thread dies this many times without finishing a job in between is given up.
MAX_DEATHS = 3


class WorkerPool:
    def __init__(
        self,
        slots: Sequence[EngineSlot],
        queue: JobQueue,
        writer: TextureWriter,
        notifier: Notifier,
        settings: BridgeSettings,
        counters: Counters,
        on_first_ready: Callable[[], None] = lambda: None,
        on_scene: Callable[[str, JobFiles], None] = lambda key, files: None,
    ) -> None:
        if not slots:
            raise ValueError("a worker pool needs at least one engine slot")
        self._queue = queue
        self._notifier = notifier
        self._on_first_ready = on_first_ready
        self.writes = Writes(writer, notifier, on_scene)
        #: The previews of the running jobs, from every worker.
        self.previews = PreviewDesk(writer, notifier, settings.preview_every, settings.progress_hz)
        self.workers = [
            Worker(
                i,
                slot,
                queue,
                self.writes,
                notifier,
                settings,
                counters,
                self.previews,
                on_ready=self._worker_ready,
                on_job_end=self._job_ended,
            )
            for i, slot in enumerate(slots)
        ]
        self._lock = threading.Lock()
        self._ever_ready = False
        #: Set when a worker is ready for the first time, or when every worker failed.
        self.ready = threading.Event()
        #: How long waiting jobs wait for a worker to come back while none is alive (0: not at all).
        self._grace_s = settings.worker_grace_s
        #: The monitor's clock when it first saw no worker alive (None while one is, or can't come back).
        self._down_since: float | None = None
        #: No worker came back within the grace: waiting jobs end, new ones are refused.
        self._grace_over = False

    # -- what the bridge reads -------------------------------------------------

    @property
    def total(self) -> int:
        return len(self.workers)

    @property
    def alive(self) -> int:
        return sum(w.alive for w in self.workers)

    @property
    def failed(self) -> str | None:
        """Why the bridge cannot go on: no worker can come back (None while one can)."""
        reasons = [w.failed for w in self.workers]
        if any(r is None for r in reasons):
            return None
        if len(reasons) == 1:
            return reasons[0]
        return "; ".join(f"{w.name}: {w.failed}" for w in self.workers)

    @property
    def down(self) -> bool:
        """Every worker was ready once and none is alive now (they are being restarted)."""
        return self._ever_ready and self.alive == 0 and self.failed is None

    @property
    def state(self) -> str:
        if self.failed is not None:
            return "failed"
        states = {w.state for w in self.workers}
        for state in ("busy", "idle"):
            if state in states:
                return state
        if not self._ever_ready:
            return "warming" if "warming" in states else "loading"
        return "restarting"

    @property
    def running(self) -> list[Job]:
        """The jobs running now (not those past their timeout), the earliest started first."""
        running: list[tuple[float, Job]] = []
        for worker in self.workers:
            job = worker.running  # read once: the worker's thread changes it
            if job is not None and not job.timed_out:
                running.append((worker.started_at, job))
        return [job for _, job in sorted(running, key=lambda pair: pair[0])]

    @property
    def idle_workers(self) -> int:
        return sum(w.state == "idle" for w in self.workers)

    @property
    def engine(self) -> EngineLike | None:
        """An alive worker's engine (every worker runs the same model): None while none is."""
        return next((w.engine for w in self.workers if w.engine is not None), None)

    @property
    def upscaler(self) -> EngineLike | None:
        return next((w.upscaler for w in self.workers if w.upscaler is not None), None)

    @property
    def objects(self) -> ObjectEngineLike | None:
        """An alive worker's object model (/ldm3d/object), or None."""
        return next((w.objects for w in self.workers if w.objects is not None), None)

    @property
    def threads(self) -> list[threading.Thread]:
        """The pool's threads besides its workers' (watched by the bridge's monitor): the writer and the previews'."""
        return [t for t in (self.writes.thread, self.previews.thread) if t.ident is not None]

    def worker_args(self) -> list[tuple[int, str, str, str]]:
        """``/ldm3d/worker`` for each worker: index, where it runs, its state, its job (or "")."""
        args = []
        for worker in self.workers:
            job = worker.running
            args.append((worker.index, worker.slot.where, worker.state, job.id if job is not None else ""))
        return args

    def refuse_if_down(self) -> None:
        """Raise :class:`EngineDown` when no worker is alive and none came back within the grace
        (rather than queue jobs nobody runs). Within it a job is queued: it runs when one is back."""
        if self.down and (self._grace_s <= 0 or self._grace_over):
            raise EngineDown(
                f"no worker is alive ({self.total} restarting: {', '.join(w.name for w in self.workers)})"
                f"{self._grace_note()}; try again when /ldm3d/state says idle"
            )

    def _grace_note(self) -> str:
        return f" and none came back within {self._grace_s:g} s (worker_grace_s)" if self._grace_s > 0 else ""

    # -- life cycle ----------------------------------------------------------

    def start(self) -> None:
        self.writes.thread.start()
        self.previews.start()
        for worker in self.workers:
            worker.start()

    def check(self, now: float) -> None:
        """Called by the bridge's monitor: timeouts, new threads for dead ones, jobs nobody can run."""
        for worker in self.workers:
            worker.check_timeout(now)
            if worker.died is not None and not worker.thread.is_alive():
                if worker.deaths >= MAX_DEATHS:
                    worker.failed = f"its thread died {worker.deaths} times in a row (last: {worker.died})"
                    worker.state = "failed"
                    worker.died = None
                    logger.error("%s is given up: %s", worker.name, worker.failed)
                else:
                    logger.warning("%s: starting a new thread", worker.name)
                    worker.restart()
        if self.failed is not None:  # nobody will come back: no grace
            self._fail_waiting_jobs()
            self.ready.set()
        elif self.down:
            if self._grace_ran_out(now):
                self._fail_waiting_jobs()
        else:
            self._back()

    def _grace_ran_out(self, now: float) -> bool:
        """No worker is alive: whether the waiting jobs' grace ran out (it starts now, the first time)."""
        with self._lock:
            if self._down_since is None:
                self._down_since = now
                if self._grace_s > 0:
                    logger.warning(
                        "no worker is alive; queued jobs wait up to %g s for one to come back", self._grace_s
                    )
            if self._grace_over or now - self._down_since < self._grace_s:
                return self._grace_over
            self._grace_over = True
        if self._grace_s > 0:
            logger.error(
                "no worker came back within %g s (worker_grace_s); queued jobs end with engine_failed, "
                "and jobs are refused until one is back",
                self._grace_s,
            )
        else:
            logger.error("no worker is alive; jobs are refused until one is back")
        return True

    def _back(self) -> None:
        """A worker is alive (or ready) again: the next time none is, a new grace starts."""
        with self._lock:
            self._down_since = None
            self._grace_over = False

    def _fail_waiting_jobs(self) -> None:
        """No worker can run jobs now: the waiting ones end in an error rather than wait forever."""
        code = "model_failed" if not self._ever_ready else "engine_failed"
        reason = self.failed or f"no worker is alive ({self.total} restarting){self._grace_note()}"
        self._end_waiting("/ldm3d/error", code, reason)

    def _end_waiting(self, address: str, *args: Arg) -> None:
        """End every waiting job with ``address`` (its id, then ``args``), told to its sender."""
        for job in self._queue.drain():
            job.cancel.cancel()
            if job.claim_outcome():
                if not job.quiet:
                    self._notifier.notify(job.sender, address, job.id, *args)
                job.finished(address)

    def _worker_ready(self, worker: Worker) -> None:
        """A worker is ready (or failed for good at its first load)."""
        if worker.failed is not None:
            if self.failed is not None:  # the last one: nobody will run the waiting jobs
                self._fail_waiting_jobs()
                self.ready.set()
            return
        with self._lock:
            first = not self._ever_ready
            self._ever_ready = True
        self._back()
        if first and worker.objects is not None:  # said once, however many workers load it
            logger.info("object model %s loaded; its licence: %s", worker.objects.model_id, worker.objects.licence)
        self.ready.set()
        if first:
            self._on_first_ready()

    def _job_ended(self) -> None:
        self._notifier.broadcast("/ldm3d/busy", int(any(w.state == "busy" for w in self.workers)))

    def shutdown(self, cancel_running: bool) -> None:
        """Cancel the waiting jobs and tell every worker to stop (cancelling what runs, if asked)."""
        self._end_waiting("/ldm3d/cancelled")
        for worker in self.workers:
            worker.shutdown(cancel_running)
            if worker.state in ("loading", "warming", "restarting"):
                worker.slot.close()  # a worker waiting for its engine (an actor not placed yet) stops waiting
        self._queue.close()

    def join(self, deadline: float, give_up: Callable[[], bool]) -> bool:
        """Wait for the workers (until ``deadline`` or ``give_up()``), then for the writer. False
        when a worker did not end (an engine stuck in a driver call): it is left behind."""
        for worker in self.workers:
            while worker.thread.is_alive() and time.monotonic() < deadline and not give_up():
                worker.thread.join(0.1)
        stuck = [w for w in self.workers if w.thread.is_alive()]
        self.previews.close()
        self.writes.close()  # every finished job is written and announced
        for worker in self.workers:
            if worker not in stuck:
                worker.slot.close()
        return not stuck
