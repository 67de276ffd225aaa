"""The bridge: UDP intake → commands → job queue → worker → texture writer → notifications.

Threads, each with one job:

* **intake** reads datagrams itself (up to 65507 bytes; socketserver would cut
  them at 8192), checks, decodes and parses them one by one
  (:mod:`bridge.serve.intake`) and hands each command to :meth:`Bridge.handle`.
  Handling never blocks: it queues, cancels or answers. No thread per datagram.
* **workers**, one per engine slot (a device of this machine, or a Ray actor),
  each owning its engine: it loads the model, warms it up, then takes jobs from
  the one queue (:mod:`bridge.workers.pool`, :mod:`bridge.workers.worker`); one
  **writer** writes every finished job (:mod:`bridge.workers.writes`).
* **monitor** sends the ``/ldm3d/state`` heartbeat to subscribers, times
  out jobs that run too long, ends subscriber-name lookups past their deadline,
  lets subscription leases lapse, starts a new worker thread for one that died,
  and watches the other threads: one that dies makes the bridge ``failed`` so
  that ``serve`` exits 1 for its supervisor.
* **resolve** threads (short-lived, at most four) look up subscriber host names,
  so a resolver that does not answer never delays the threads above.

Subscriptions are carried out by :mod:`bridge.notify.subscribing`. Job
submissions are limited per client host, outgoing messages per destination
host (:mod:`bridge.notify.notifier`). Every drop is counted (``/ldm3d/stats``)
and each kind is logged at most once per 10 s.

Longer than our ~350-line rule on purpose: it is the bridge's life cycle, and ``start``, ``stop``
and the monitor's tick must each see every piece they start or stop, in order; what each command
does is :mod:`bridge.serve.commands`, the datagram path :mod:`bridge.serve.intake`.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bridge.contract import protocol
from bridge.contract.engine_api import EngineLike, EngineSlot, LocalSlot, ObjectSlot
from bridge.contract.ranges import ranges_for
from bridge.errors import BridgeError, LibraryBusy
from bridge.notify.addresses import AsyncResolver, Resolver, system_resolver
from bridge.notify.limits import Counters, LogLimiter, TokenBuckets
from bridge.notify.notifier import Notifier
from bridge.notify.subscribing import SubscriptionDesk
from bridge.notify.subscriptions import Subscriptions
from bridge.osc.codec import Arg
from bridge.output.subscribers import SubscriberFile
from bridge.output.writer import TextureWriter
from bridge.public.gate import PromptGate
from bridge.serve.commands import Commands
from bridge.serve.intake import Intake, JobBudget
from bridge.serve.pages import PageDesk
from bridge.serve.shows import ShowDesk
from bridge.serve.stage import Stage
from bridge.serve.visitors import VisitorDesk, VisitorPage
from bridge.settings import BridgeSettings
from bridge.show.library import SceneLibrary
from bridge.web.http import WebServer
from bridge.web.oscquery import namespace
from bridge.web.page import PageHub, StaticFiles, page_files
from bridge.workers.jobs import Address, JobQueue
from bridge.workers.pool import WorkerPool

logger = logging.getLogger(__name__)

#: The subscribers file is also rewritten this often (when it last heard of each), changed or not.
SAVE_EVERY_S = 600.0


class Bridge(Commands):
    def __init__(
        self,
        settings: BridgeSettings,
        engine_factory: Callable[[], EngineLike] | None = None,
        writer: TextureWriter | None = None,
        upscaler_factory: Callable[[], EngineLike] | None = None,
        resolver: Resolver = system_resolver,
        slots: Sequence[EngineSlot] | None = None,
        show_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """One worker on ``engine_factory``'s engine (and ``upscaler_factory``'s upscaler), or one
        per slot of ``slots`` (devices of this machine, Ray actors), whose upscalers are
        ``settings.upscale_model``. ``show_clock`` is what the show desk counts durations and
        pre-waits on (tests hand in one they move by hand)."""
        if slots is None:
            if engine_factory is None:
                raise ValueError("a bridge needs an engine_factory or slots")
            slots = [LocalSlot(engine_factory, upscaler_factory, where=settings.device)]
            self.upscale = upscaler_factory is not None
        else:
            self.upscale = settings.upscale_model is not None
        if settings.object_model is not None:  # else /ldm3d/object would be taken, then not_supported
            without = [slot.where for slot in slots if not (isinstance(slot, ObjectSlot) and slot.holds_objects)]
            if without:
                raise ValueError(
                    f"settings.object_model is {settings.object_model!r}, but these slots load no object model: "
                    f"{', '.join(without)} (give each one: LocalSlot(..., objects=...))"
                )
        self._slots = list(slots)
        self._show_clock = show_clock
        self.settings = settings
        self.writer = writer or TextureWriter(
            Path(settings.output),
            fmt=settings.format,
            jpeg=settings.jpeg,
            exr=settings.exr,
            keep=settings.keep_jobs,
            announce_root=settings.announce_root,
        )
        self.queue = JobQueue(settings.queue_size, settings.queue_mode)
        self.ranges = ranges_for(
            settings.model, settings.preset, width=settings.width, height=settings.height, sampling=settings.sampling
        )
        self.stage = Stage(self.ranges)
        #: How TouchDesigner shows the world (relayed, not used by the bridge itself).
        self.display: dict[str, float | int] = {"fade": 2.0, "hold": 0, "blackout": 0, "strength": 1.0}
        self.counters = Counters()
        self.gate = PromptGate(settings.prompt_rules)  # BadRules now: a mistake in the file stops the start
        #: One job-rate budget per client host, its OSC messages and its pages together.
        self._job_limit = JobBudget(settings.client_jobs_per_s, settings.client_jobs_burst)
        self._log = LogLimiter(logger)
        self._sock: socket.socket | None = None
        self._notifier: Notifier | None = None
        self._pool: WorkerPool | None = None
        self._desk: SubscriptionDesk | None = None
        self._intake: Intake | None = None
        self._web: WebServer | None = None
        self._resolver = AsyncResolver(resolver, settings.resolve_timeout_s)
        self._stop_intake = threading.Event()
        self._stop_monitor = threading.Event()
        self._stopped = threading.Event()
        self._thread_failed: str | None = None
        #: Changes at every start: a client that sees a new one knows the bridge restarted.
        self.boot_id = secrets.token_hex(4)
        self._subscriber_file = SubscriberFile(self.writer.root)
        self._saved_at = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._advertiser: Any = None
        self._shows: ShowDesk | None = None
        self.visitor_desk: VisitorDesk | None = None
        #: Commands come from the intake thread and from operator pages (the HTTP thread): one at a time.
        self._handle_lock = threading.Lock()

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
    def desk(self) -> SubscriptionDesk:
        assert self._desk is not None, "start() first"
        return self._desk

    @property
    def shows(self) -> ShowDesk:
        assert self._shows is not None, "start() first"
        return self._shows

    @property
    def pool(self) -> WorkerPool:
        assert self._pool is not None, "start() first"
        return self._pool

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def failed(self) -> str | None:
        """Why the bridge cannot go on (a model that cannot load, a stuck engine, a thread that died)."""
        if self._thread_failed is None and not self._stop_monitor.is_set():
            monitor = next((t for t in self._threads if t.name == "ldm3d-monitor"), None)
            if monitor is not None and monitor.ident is not None and not monitor.is_alive():
                self._thread_failed = "the bridge's ldm3d-monitor thread died"  # it watches the others
        return self._thread_failed or (self._pool.failed if self._pool is not None else None)

    def state_args(self) -> tuple[str, int, str, str, str, int, int]:
        """``/ldm3d/state``: state, queue length, running job (the earliest started), model, boot id
        (new at every start), workers alive, workers in all."""
        pool = self.pool
        running = pool.running
        state = "failed" if self.failed else pool.state
        return (
            state,
            len(self.queue),
            running[0].id if running else "",
            self.settings.model,
            self.boot_id,
            pool.alive,
            pool.total,
        )

    def start(self) -> None:
        """Bind, then load and warm the model in the worker while intake already answers."""
        self.writer.prepare()  # takes the output folder's lock: FolderInUse when another bridge has it
        try:
            self._bind()
        except BaseException:
            self.writer.close()
            raise
        sock = self._sock
        assert sock is not None
        s = self.settings
        subscriptions = Subscriptions(
            s.max_subscribers, s.subscribers_per_host, s.subscription_lease_s, s.subscription_pending_s
        )
        self._notifier = Notifier(
            sock, subscriptions, send_limit=TokenBuckets(s.reply_per_s, s.reply_burst), counters=self.counters
        )
        for entry in self._subscriber_file.load(time.time()):  # kept from before a restart
            self._notifier.restore((entry["host"], entry["port"]), entry["owner"], entry["heard"], entry["lease"])
        if subscriptions.active(time.monotonic()):
            logger.info("restored %d subscribers: %s", len(subscriptions), subscriptions.active(time.monotonic()))
        self._desk = SubscriptionDesk(
            self._notifier,
            self._resolver,
            self.counters,
            self.greeting,
            ipv4_only=sock.family == socket.AF_INET,
            pending_s=s.subscription_pending_s,
            listen_host=s.host,
        )
        library = SceneLibrary(self.writer.root)
        try:  # a damaged library is moved aside and rebuilt from the scene folders (one warning)
            dropped, adopted = library.check()
        except LibraryBusy:  # live prompts do not wait for it: the show desk answers library_busy meanwhile
            logger.warning("the scene library %s is locked by another process: not checked at this start (the next "
                           "start checks it)", library.path)  # fmt: skip
        else:
            if dropped or adopted:
                logger.info("scene library: %d scenes to render again, %d complete ones adopted", dropped, adopted)
        self._pool = WorkerPool(
            self._slots,
            self.queue,
            self.writer,
            self._notifier,
            self.settings,
            self.counters,
            on_first_ready=self._advertise,
            on_scene=self._scene_written,
        )
        pool = self._pool
        self._shows = ShowDesk(
            s,
            library,
            self.writer,
            self._notifier,
            self._enqueue,
            engine=lambda: pool.engine,
            idle=lambda: pool.idle_workers > 0 and len(self.queue) == 0,
            check_prompt=self.gate.check,
            display=self.display,
            clock=self._show_clock,
        )
        if s.visitors:
            desk = VisitorDesk(s, self.gate, self.queue, pool, self._notifier, self.counters, self.visitor_job)
            self._notifier.observers.append(desk.shown)
            self.visitor_desk = desk
        self._intake = Intake(sock, s, self._notifier, self._desk, self.counters, self._dispatch, self._stop_intake)
        if s.http:
            try:
                self._start_web()
            except BaseException:
                sock.close()
                self.writer.close()
                raise
        for name, target in (("intake", self._intake.run), ("monitor", self._monitor)):
            self._threads.append(threading.Thread(target=target, name=f"ldm3d-{name}", daemon=True))
        for thread in self._threads:
            thread.start()
        self._pool.start()
        logger.info("listening for OSC on udp://%s:%s", *self.address)

    def _start_web(self) -> None:
        host, port = self.address
        desk = PageDesk(
            self.settings,
            writer=self.writer,
            queue=self.queue,
            stage=self.stage,
            ranges=self.ranges,
            display=self.display,
            notifier=self.notifier,
            counters=self.counters,
            pool=self.pool,
            shows=self.shows,
            state_args=self.state_args,
            handle=self._page_command,
            boot_id=self.boot_id,
            upscale=self.upscale,
            visitors=self.visitor_desk,
        )
        hub = PageHub(desk, self.writer.root)
        visitors = self.visitor_desk
        visitor_page = VisitorPage(visitors, self._handle_lock, self.settings.visitor_url) if visitors else None
        web = WebServer(
            self.settings,
            namespace(self.ranges),
            self.current_values,
            osc_port=port,
            name=f"ldm3d-bridge :{port}",
            page=hub,
            static=StaticFiles(page_files()),
            visitors=visitor_page,
            loop_errors=self._http_loop_error,
        )
        web.start(self.settings.host, port if self.settings.http_port is None else self.settings.http_port)
        self.notifier.observers.append(web.publish)
        self.notifier.page_reply = hub.reply
        self.pool.previews.observers.append(hub.preview)  # the world as it forms, to the pages (no files)
        self._web = web
        logger.info("serving the operator page and OSCQuery on http://%s:%s/", host, web.port)
        if visitor_page is not None:
            logger.info(
                "serving the visitor page on http://%s:%s/visit%s",
                host,
                web.port,
                " (moderated)" if self.settings.moderate else "",
            )

    def _http_loop_error(self, loop: object, context: dict[str, Any]) -> None:
        """The HTTP loop's own errors (``socket.accept() out of system resource``…), through the
        bridge's log throttle: once per kind per 10 s, not thousands of times a second."""
        message = str(context.get("message", "an asyncio error"))
        error = context.get("exception")
        kind = f"http: {message[:60]} ({type(error).__name__})"
        self._log.warning(kind, time.monotonic(), "the HTTP side: %s (%s)", message, error)

    @property
    def http_port(self) -> int | None:
        """The TCP port of the HTTP side (OSCQuery), or None without one."""
        return self._web.port if self._web is not None else None

    def greeting(self) -> list[tuple[str, tuple[Arg, ...]]]:
        """What a new subscriber hears first: the state, and how the world is shown."""
        return [("/ldm3d/state", self.state_args()), *((f"/ldm3d/display/{k}", (v,)) for k, v in self.display.items())]

    def current_values(self) -> dict[str, tuple[Arg, ...]]:
        """The current value of every address that has one now: the stage, the state, the lamp, the display."""
        values = self.stage.snapshot()
        values.update({f"/ldm3d/display/{k}": (v,) for k, v in self.display.items()})
        values["/ldm3d/state"] = self.state_args()
        values["/ldm3d/busy"] = (int(self.pool.state == "busy"),)
        values["/ldm3d/show/state"] = self.shows.state_args()
        return values

    def _bind(self) -> None:
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

    def _advertise(self) -> None:
        if not self.settings.zeroconf or self._stop_intake.is_set():  # stopped while the model loaded
            return
        from bridge.notify.discovery import Advertiser

        try:
            self._advertiser = Advertiser(
                self.settings.host, self.address[1], self.settings.model, http_port=self.http_port
            )
            self._advertiser.register()
        except OSError as exc:  # no multicast route, for instance: the bridge still works
            logger.warning("zeroconf advertising failed: %s", exc)
            self._advertiser = None

    def stop(self, cancel_running: bool | None = None) -> bool:
        """Stop intake, cancel waiting jobs, cancel or finish the running one, close everything.

        Finishing waits as long as the running job may still take (its ``job_timeout_s``, which
        the monitor keeps enforcing meanwhile) plus ``stuck_grace_s``; every job gets its final
        message. Returns False when the worker did not end (an engine stuck in a driver call)."""
        if self._stopped.is_set():
            return True
        if cancel_running is None:
            cancel_running = self.settings.on_shutdown == "cancel"
        self._stop_intake.set()
        if self._advertiser is not None:
            self._advertiser.close()
        self._resolver.close()
        ended = True
        if self._pool is not None:
            self._pool.shutdown(cancel_running)
            s = self.settings
            deadline = time.monotonic() + s.stuck_grace_s + (0.0 if cancel_running else s.job_timeout_s)
            ended = self._pool.join(deadline, give_up=lambda: self.failed is not None)
            if not ended:
                logger.error("an engine did not stop; leaving it behind")
        self._stop_monitor.set()
        if self._web is not None:
            self._web.stop()
        for thread in self._threads:
            thread.join(5.0)
        if self._sock is not None:
            self._sock.close()
        if self._shows is not None and ended:
            self._shows.close()
            self._shows.library.close()
        self.writer.close()
        self._stopped.set()
        logger.info("stopped")
        return ended

    def handle_datagram(self, data: bytes, sender: Address) -> None:
        """One datagram, as the intake thread handles it (for callers that have their own socket)."""
        assert self._intake is not None, "start() first"
        self._intake.handle_datagram(data, sender)

    def _dispatch(self, command: protocol.Command, sender: Address, bound: int | None, trusted: bool) -> None:
        with self._handle_lock:
            self.handle(command, sender, bound=bound, trusted=trusted)

    def _page_command(self, command: protocol.Command, page: Address) -> None:
        """A command from an operator page (its connection carried the token, when one is set)."""
        with self._handle_lock:
            self.handle(command, page, trusted=self.settings.token is not None)

    # -- monitor -----------------------------------------------------------

    def _monitor(self) -> None:
        next_beat = time.monotonic() + self.settings.heartbeat_s
        while not self._stop_monitor.wait(0.1):
            try:
                next_beat = self._tick(time.monotonic(), next_beat)
            except Exception:  # noqa: BLE001 - the heartbeat and the timeouts must go on
                self.counters.add("internal_error")
                self._log.exception("monitor", time.monotonic(), "the monitor failed; it carries on")

    def _tick(self, now: float, next_beat: float) -> float:
        pool = self.pool
        pool.check(now)
        self.shows.tick(self._show_clock())
        self._resolver.poll(now)
        self.notifier.pace(now)  # the rest of long lists (/ldm3d/cue/list), within each host's budget
        for sub in self.notifier.expire():
            logger.info("subscription %s:%s lapsed (not renewed within its lease)", *sub.target)
        entries = self.notifier.to_save(force=now - self._saved_at > SAVE_EVERY_S)
        if entries is not None:
            self._saved_at = now
            try:
                self._subscriber_file.save(entries)
            except OSError as exc:
                self._log.warning("save_subscribers", now, "could not save the subscribers: %s", exc)
        if self._thread_failed is None and not self._stop_intake.is_set():
            dead = [t.name for t in [*self._threads, *pool.threads] if not t.is_alive()]
            if dead:
                self._thread_failed = f"the bridge's {', '.join(dead)} thread died"
                logger.error("%s; exiting so that a supervisor can restart the bridge", self._thread_failed)
        if now >= next_beat:  # the lamp is also sent at each change, by the worker
            next_beat = now + self.settings.heartbeat_s
            self.notifier.broadcast("/ldm3d/state", *self.state_args())
            self.notifier.broadcast("/ldm3d/busy", int(pool.state == "busy"))
        return next_beat
