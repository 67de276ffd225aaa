"""Jobs and the bounded job queue (FIFO, or latest-wins for live use)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.contract.morphs import MorphRequest
from bridge.errors import QueueFull
from bridge.placement import Placement
from bridge.settings import QUEUE_MODES
from ldm3d_engine.object_types import MeshResult, ObjectRequest
from ldm3d_engine.types import CancelToken, DepthRequest, GenerateRequest, RGBDResult, UpscaleRequest

Address = tuple[str, int]


@dataclass(frozen=True)
class WorldAndObject:
    """A cue's scene with an object: the world, then the object made after it in the same job."""

    world: RGBDResult
    mesh: MeshResult


@dataclass
class Job:
    id: str
    #: GenerateRequest (text), Img2ImgRequest, DepthRequest, UpscaleRequest, MorphRequest or ObjectRequest.
    request: GenerateRequest | UpscaleRequest | DepthRequest | MorphRequest | ObjectRequest
    #: Who sent it: job notifications go there as well as to subscribers.
    sender: Address | None
    #: Files the job reads: img2img "image" and "depth_map"; depth "image"; upscale "rgb", "depth" and
    #: "source_job" (an id).
    inputs: dict[str, str] = field(default_factory=dict)
    #: The texture format of its files (None: the bridge's ``format`` setting).
    format: str | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    #: Who asked to cancel it while it ran: told /ldm3d/cancelled as well.
    cancel_requested_by: Address | None = None
    timed_out: bool = False
    #: A show's scene: written into the scene library (``scenes/``) under this key, not as a job.
    scene_key: str | None = None
    #: Rendered in idle time (pre-generation): no progress and no final message to anyone.
    quiet: bool = False
    #: Then upscaled with the bridge's upscaler (a cue's ``upscale = true``).
    upscale_after: bool = False
    #: Told the job's final address (``/ldm3d/ready``, ``/ldm3d/error``, ``/ldm3d/cancelled``).
    on_done: Callable[[str], None] | None = None
    #: Put back once already: its worker was lost before the job began (a second loss fails it).
    retried: bool = False
    #: Steps between previews (None: the bridge's ``preview_every``; 0: none).
    preview_every: int | None = None
    #: An object job's place in the world (None: the defaults), recorded in its meta.json and announced.
    placement: Placement | None = None
    #: Then this object with the bridge's object model, written into the scene (a cue's ``object``).
    object_after: ObjectRequest | None = None
    _outcome_sent: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def claim_outcome(self) -> bool:
        """True exactly once: whoever gets it sends the job's one final message."""
        with self._lock:
            if self._outcome_sent:
                return False
            self._outcome_sent = True
            return True

    @property
    def size(self) -> int:
        """How many things the job makes (a morph's frames; a cue's world and its object): its timeout is
        ``job_timeout_s`` × this."""
        worlds = self.request.frames if isinstance(self.request, MorphRequest) else 1
        return worlds + (1 if self.object_after is not None else 0)

    @property
    def ended(self) -> bool:
        """Its final message went out (or is going out)."""
        return self._outcome_sent

    def unless_ended(self, send: Callable[[], None]) -> bool:
        """Run ``send`` (a message about the running job) unless the job has ended; the final message
        cannot be claimed meanwhile, so nothing sent here can follow it."""
        with self._lock:
            if self._outcome_sent:
                return False
            send()
            return True

    def finished(self, address: str) -> None:
        """The final message went out: tell ``on_done`` (a show waiting for its scene)."""
        if self.on_done is not None:
            self.on_done(address)

    created: float = field(default_factory=time.time)


class JobQueue:
    """Bounded queue of jobs waiting for a worker (every worker of the pool takes from it). Thread-safe."""

    def __init__(self, capacity: int = 16, mode: str = "fifo") -> None:
        if mode not in QUEUE_MODES:
            raise ValueError(f"unknown queue mode {mode!r}; use {' or '.join(QUEUE_MODES)}")
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.mode = mode
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, job: Job, on_queued: Callable[[int, list[Job]], None] | None = None) -> tuple[int, list[Job]]:
        """Queue ``job``; return its position (1 = next) and the jobs it replaced (latest-wins).
        ``on_queued(position, replaced)`` runs under the queue's lock, before any worker can take the
        job (so its ``/ldm3d/accepted`` goes out before anything a worker says of it)."""
        with self._cond:
            replaced: list[Job] = []
            if self.mode == "latest-wins":
                replaced = list(self._jobs)
                self._jobs.clear()
            elif len(self._jobs) >= self.capacity:
                raise QueueFull(
                    f"the queue is full ({self.capacity} jobs waiting); wait for /ldm3d/ready, cancel a job, "
                    "or run the bridge with a larger queue or --queue-mode latest-wins"
                )
            self._jobs.append(job)
            if on_queued is not None:
                on_queued(len(self._jobs), replaced)
            self._cond.notify()
            return len(self._jobs), replaced

    def put_back(self, job: Job) -> bool:
        """Queue ``job`` again, first (its worker was lost before it began). False when a newer job
        arrived meanwhile in latest-wins mode: the job is outdated, and stays out."""
        with self._cond:
            if self._closed or (self.mode == "latest-wins" and self._jobs):
                return False
            self._jobs.appendleft(job)
            self._cond.notify()
            return True

    def take(self, timeout: float | None = None, on_take: Callable[[Job], None] | None = None) -> Job | None:
        """The next job, or None after ``timeout`` seconds or once closed and empty.

        ``on_take`` runs under the queue's lock, so no one can see the job neither
        queued nor marked as running."""
        with self._cond:
            if not self._jobs and not self._closed:
                self._cond.wait(timeout)
            if not self._jobs:
                return None
            job = self._jobs.popleft()
            if on_take is not None:
                on_take(job)
            return job

    def remove(self, job_id: str) -> Job | None:
        with self._cond:
            for job in self._jobs:
                if job.id == job_id:
                    self._jobs.remove(job)
                    return job
            return None

    def snapshot(self) -> list[Job]:
        """The waiting jobs, next first (a copy)."""
        with self._cond:
            return list(self._jobs)

    def drain(self) -> list[Job]:
        with self._cond:
            jobs = list(self._jobs)
            self._jobs.clear()
            return jobs

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)
