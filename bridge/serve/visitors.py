"""The visitor desk: prompts from the public visitor page (``serve --visitors``), their moderation
(``--moderate``), and what each visitor's page may know of its own prompt.

A visitor's prompt passes, in order: its length (``visitor_max_chars``), the prompt rules, the
visitor's rate limit (one prompt per ``visitor_interval_s`` per device: its network address),
then waits in the moderation list, or goes straight to the queue as a job made from the stage's
settings (as ``/ldm3d/go`` would, with the visitor's prompt). The operator approves or rejects
from the operator page, TouchOSC or TouchDesigner (``/ldm3d/moderation/*``); every change of the
list is announced as ``/ldm3d/moderation/waiting <count>``. Jobs made from visitors' prompts tell
no one but the subscribers (TouchDesigner shows them as any other world).

Called from the intake thread (OSC) and the HTTP thread (the pages) under the bridge's handling
lock, and from the workers (a job ended); the book has its own lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bridge.errors import BadArguments, RateLimited, UnknownJob
from bridge.notify.limits import Counters, TokenBuckets
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Arg
from bridge.public.gate import PromptGate
from bridge.public.visitors import Ticket, VisitorBook, describe
from bridge.settings import BridgeSettings
from bridge.workers.jobs import Address, JobQueue
from bridge.workers.pool import WorkerPool

logger = logging.getLogger(__name__)

#: Makes and queues the job of a visitor's prompt (told its final address); returns the job id.
Enqueue = Callable[[str, Callable[[str], None]], str]


class VisitorDesk:
    def __init__(
        self,
        settings: BridgeSettings,
        gate: PromptGate,
        queue: JobQueue,
        pool: WorkerPool,
        notifier: Notifier,
        counters: Counters,
        enqueue: Enqueue,
    ) -> None:
        self._settings = settings
        self._gate = gate
        self._queue = queue
        self._pool = pool
        self._notifier = notifier
        self._counters = counters
        self._enqueue = enqueue
        self._book = VisitorBook(max_waiting=settings.moderation_max)
        self._lock = threading.Lock()
        self._limit = TokenBuckets(1.0 / settings.visitor_interval_s, 1)
        self._shown: str | None = None

    # -- the visitor page -----------------------------------------------------

    def submit(self, prompt: str, device: str) -> str:
        """A visitor's prompt: its ticket. Raises BadArguments, RefusedPrompt, RateLimited or QueueFull
        with a message a visitor may read."""
        prompt = " ".join(prompt.split())
        limit = self._settings.visitor_max_chars
        if not prompt:
            raise BadArguments("Please type what you would like to see.")
        if len(prompt) > limit:
            raise BadArguments(f"Please keep your prompt under {limit} characters (it has {len(prompt)}).")
        self._gate.check(prompt)
        now = time.monotonic()
        with self._lock:
            allowed = self._limit.allow(device, now)
        if not allowed:
            wait = self._settings.visitor_interval_s
            raise RateLimited(f"One prompt every {wait:g} seconds, please: try again in a moment.")
        self._counters.add("visitor_prompts")
        moderated = self._settings.moderate
        with self._lock:
            ticket, dropped = self._book.new(device, prompt, now, moderated)
        if dropped is not None:
            self._counters.add("moderation_dropped")
            logger.warning("the moderation list is full (%d): its oldest prompt was dropped", self._book.max_waiting)
            self._notifier.broadcast("/ldm3d/moderation/dropped", dropped.ticket)
        if moderated:
            self._announce()
        else:
            self._queue_ticket(ticket, approved=False)
        return ticket.ticket

    def status(self, ticket_id: str) -> dict[str, object]:
        """What the visitor's page shows for ``ticket_id`` (nothing of anyone else's)."""
        with self._lock:
            ticket = self._book.get(ticket_id)
            job_id = ticket.job_id if ticket is not None else None
            shown = self._shown
        ahead, running = None, False
        if job_id is not None:
            running = any(job.id == job_id for job in self._pool.running)
            waiting = [job.id for job in self._queue.snapshot()]
            ahead = waiting.index(job_id) if job_id in waiting else None
        return describe(ticket, ahead, running, job_id is not None and job_id == shown)

    def config(self) -> dict[str, object]:
        return {"max_chars": self._settings.visitor_max_chars, "interval_s": self._settings.visitor_interval_s}

    # -- the operator ------------------------------------------------------------

    def waiting(self) -> list[tuple[str, str, str, float]]:
        """The moderation list, oldest first: ticket, prompt, device, seconds waited."""
        now = time.monotonic()
        with self._lock:
            return [(t.ticket, t.prompt, t.device, round(now - t.since, 1)) for t in self._book.waiting()]

    def listing(self, sender: Address, bound: int | None) -> None:
        """``/ldm3d/moderation/list``: one ``/ldm3d/moderation/item`` per waiting prompt, then the count."""
        items = [("/ldm3d/moderation/item", item) for item in self.waiting()]
        end = ("/ldm3d/moderation/waiting", (len(items),))
        self._notifier.reply_list(sender, items, end, bound, "waiting prompts")

    def decide(self, action: str, ticket_id: str) -> None:
        """``approve``, ``reject`` or ``approve_device`` (every waiting prompt of that ticket's device)."""
        with self._lock:
            if action == "approve_device":
                first = next((t for t in self._book.waiting() if t.ticket == ticket_id), None)
                tickets = self._book.from_device(first.device) if first is not None else []
            else:
                taken = self._book.take(ticket_id)
                tickets = [taken] if taken is not None else []
            if not tickets:
                raise UnknownJob(f"no prompt {ticket_id!r} waits for moderation (approved, rejected or dropped)")
            if action == "reject":
                for t in tickets:
                    t.state = "refused"
        for t in tickets:
            logger.info("moderation: %s prompt %s", "rejected" if action == "reject" else "approved", t.ticket)
            if action != "reject":
                self._queue_ticket(t, approved=True)
        self._announce()

    # -- the bridge -------------------------------------------------------------------

    def shown(self, address: str, args: tuple[Arg, ...]) -> None:
        """An event observer: the newest world announced (a visitor's is then "on the dome")."""
        if address == "/ldm3d/ready" and args:
            with self._lock:
                self._shown = str(args[0])

    def _queue_ticket(self, ticket: Ticket, approved: bool) -> None:
        """Make ``ticket``'s job. Not ``approved`` (no moderation): a failure forgets the ticket and
        the visitor's page hears the error; an approved one that cannot be queued (the queue is
        full) is ``failed`` for its page, and the operator hears the error."""

        def ended(address: str) -> None:
            with self._lock:
                ticket.state = "done" if address == "/ldm3d/ready" else "failed"
                ticket.reason = address.rsplit("/", 1)[-1]

        try:
            job_id = self._enqueue(ticket.prompt, ended)
        except Exception as exc:
            with self._lock:
                if approved:
                    ticket.state, ticket.reason = "failed", getattr(exc, "code", type(exc).__name__)
                else:
                    self._book.forget(ticket.ticket)
            raise
        with self._lock:
            ticket.state, ticket.job_id = "queued", job_id

    def _announce(self) -> None:
        with self._lock:
            count = len(self._book.waiting())
        self._notifier.broadcast("/ldm3d/moderation/waiting", count)


class VisitorPage:
    """The desk as the HTTP side's :class:`bridge.web.visit.VisitorBackend` sees it: a visitor's
    prompt is handled under the bridge's handling lock, as any command."""

    def __init__(self, desk: VisitorDesk, handling: threading.Lock, visitor_url: str | None) -> None:
        self._desk = desk
        self._handling = handling
        self._url = visitor_url

    def submit(self, prompt: str, device: str) -> str:
        with self._handling:
            return self._desk.submit(prompt, device)

    def status(self, ticket: str) -> dict[str, object]:
        return self._desk.status(ticket)

    def visitor_url(self, host: str) -> str:
        return self._url or f"http://{host}/visit"

    def config(self) -> dict[str, object]:
        return self._desk.config()
