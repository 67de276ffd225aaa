"""bench/reliability.py's scene-library faults (issue #30): a library another connection holds
locked while the show goes on, and a damaged library at start-up. A served bridge with a show
(bench/reliability_served.py); the lock is a second SQLite connection in this process, as a
``sqlite3`` shell or a backup would hold it. The damaged library: a bridge started in this process
on the same folder, its log records kept."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.reliability_served import Served, new_lines, percentiles
from bridge.osc.client import OscClient
from bridge.serve.server import Bridge
from bridge.settings import BridgeSettings

SHOW_FILE = "reliability.toml"
SHOW = """\
name = "Reliability"
fallback = "0"
"""
CUES = [("0", "a quiet harbour", 1), ("1", "a reef", 2), ("2", "a kelp forest", 3)]


def write_show(folder: Path) -> Path:
    """A show of three small cues (64×64, one step), each waiting for GO (no clock moves it on by itself)."""
    folder.mkdir(parents=True, exist_ok=True)
    cue = '\n[[cue]]\nnumber = "{}"\nprompt = "{}"\nseed = {}\nsteps = 1\nwidth = 64\nheight = 64\n'
    cues = "".join(cue.format(*c) for c in CUES)
    (folder / SHOW_FILE).write_text(SHOW + cues)
    return folder


def _cue(client: OscClient, number: str) -> tuple[str, bool, float, str]:
    """``/ldm3d/cue number``: "ready" or its error code, whether a job was queued, how long it took (ms),
    and the scene's id (its job's)."""
    started = time.monotonic()
    client.send("/ldm3d/cue", number)
    seen = client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 60)
    took = (time.monotonic() - started) * 1000
    outcome = "ready" if seen[-1].address == "/ldm3d/ready" else str(seen[-1].args[1])
    return outcome, any(m.address == "/ldm3d/accepted" for m in seen), took, str(seen[-1].args[0])


class Pinger:
    """Pings the bridge every 20 ms from another host (127.0.0.2) on its own thread; the round trips."""

    def __init__(self, port: int) -> None:
        self.client = OscClient("127.0.0.1", port, listen_host="127.0.0.2")
        self.sent, self._stop = 0, threading.Event()
        self.times: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.client.send("/ldm3d/ping")
            self.sent += 1
            try:
                self.client.wait_for(["/ldm3d/pong"], 5)
                self.times.append((time.monotonic() - started) * 1000)
            except TimeoutError:
                pass
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


def _row(db: Path, scene_id: str) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as reader:
        try:
            found = reader.execute("SELECT 1 FROM scenes WHERE scene_id = ?", (scene_id,)).fetchone() is not None
        except sqlite3.OperationalError:  # still busy
            found = False
    reader.close()
    return found


#: Show commands sent in a row during the lock.
BURST = 4


def _get_ms(port: int, path: str) -> float:
    """An HTTP GET answered 200: how long it took (ms); inf if it failed."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            ok = r.status == 200 and bool(r.read())
    except OSError:
        ok = False
    return (time.monotonic() - started) * 1000 if ok else float("inf")


def _burst(served: Served, client: OscClient, n: int) -> tuple[float, float, float]:
    """``n`` recalls of a rendered cue in a row, then at once a ping from another host, the show state over
    HTTP and, 30 ms later, an HTTP request that needs no show. Their times (ms)."""
    times: dict[str, float] = {}

    def ping() -> None:
        with OscClient("127.0.0.1", served.port, listen_host="127.0.0.3") as other:
            started = time.monotonic()
            other.send("/ldm3d/ping")
            other.wait_for(["/ldm3d/pong"], 30)
            times["ping"] = (time.monotonic() - started) * 1000

    for _ in range(n):
        client.send("/ldm3d/cue", "0")
    time.sleep(0.02)  # the first is being carried out
    threads = [
        threading.Thread(target=ping),
        threading.Thread(target=lambda: times.update(state=_get_ms(served.http_port, "/ldm3d/show/state"))),
        threading.Thread(target=lambda: times.update(other=_get_ms(served.http_port, "/?HOST_INFO"))),
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.03 if thread is threads[1] else 0.0)
    for thread in threads:
        thread.join(60)
    for _ in range(n):
        client.wait_for(["/ldm3d/ready"], 30)
    inf = float("inf")
    return times.get("ping", inf), times.get("state", inf), times.get("other", inf)


def locked_library(served: Served, out: Path, hold_s: float) -> None:
    """Section 10: the show goes on while another connection holds ``out``'s library for ``hold_s`` s."""
    print(f"\n10. A locked scene library: another connection holds a write lock on scenes.sqlite for {hold_s:g} s")
    with OscClient("127.0.0.1", served.port) as client:
        client.subscribe_self()
        client.send("/ldm3d/show/load", SHOW_FILE)  # its first cue, the fallback, rendered and shown
        client.wait_for(["/ldm3d/ready"], 60)
        time.sleep(0.3)
        since = len(served.lines())
        db = out / "scenes.sqlite"
        holder = sqlite3.connect(db, isolation_level=None, timeout=0, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        pinger = Pinger(served.port)
        try:  # (the pinger is stopped on the way out of the client's block, if not before)
            new, queued, _, scene = _cue(client, "1")  # rendered now: its row must wait for the lock
            recall, recall_queued, recall_ms, _ = _cue(client, "0")  # from the library, read while it is locked
            http_ms = _get_ms(served.http_port, "/ldm3d/show/state")
            time.sleep(max(0.0, hold_s - (time.monotonic() - locked_at)))
            pinger.stop()
            burst = _burst(served, client, BURST)  # (the lock held on for it)
            pending = not _row(db, scene)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
            released = time.monotonic()
        deadline = released + 30
        while not (written := _row(db, scene)) and time.monotonic() < deadline:
            time.sleep(0.05)
        written_s = time.monotonic() - released
        time.sleep(0.3)
    lines = new_lines(served, since)
    print(
        f"   pings every 20 ms during the lock: {len(pinger.times)} of {pinger.sent} answered, "
        f"{percentiles(pinger.times)}"
        f"\n   a new cue rendered meanwhile: {new} ({'a job' if queued else 'NO job'}); its library row "
        f"{'pending while locked' if pending else 'written while locked'}, "
        + (f"written {written_s:.2f} s after the lock was released" if written else "NOT written")
        + f"\n   a rendered cue recalled meanwhile: {recall} in {recall_ms:.0f} ms "
        f"({'a job' if recall_queued else 'no job'})"
        f"; the page's show state over HTTP: {http_ms:.0f} ms"
        f"\n   {BURST} show commands in a row meanwhile (each must save the show's place): a ping behind them "
        f"answered in {burst[0]:.0f} ms; over HTTP, the show state in {burst[1]:.0f} ms and a request that needs "
        f"no show (HOST_INFO), sent 30 ms after it, in {burst[2]:.0f} ms"
        f"\n   log lines {len(lines)} ({sum('locked' in line for line in lines)} about the lock, "
        f"{sum('Traceback' in line for line in lines)} tracebacks)"
    )


@contextmanager
def kept_logs() -> Iterator[list[logging.LogRecord]]:
    """The log records (WARNING and above) of what runs inside, kept instead of printed."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root, keep = logging.getLogger(), Keep(logging.WARNING)
    level, quiet = root.level, [(h, h.level) for h in root.handlers]
    for handler, _ in quiet:
        handler.setLevel(logging.CRITICAL)
    root.addHandler(keep)
    root.setLevel(logging.WARNING)
    try:
        yield records
    finally:
        root.removeHandler(keep)
        root.setLevel(level)
        for handler, was in quiet:
            handler.setLevel(was)


def damaged_library(engine: Any, out: Path, show_dir: Path) -> None:
    """A bridge (in this process, on the engine already loaded) started on ``out`` and its scene folders."""
    print("\n11. A damaged scene library at start-up: scenes.sqlite overwritten with garbage")
    db = out / "scenes.sqlite"
    db.write_bytes(b"these are not the bytes of a database\n" * 200)
    values: dict[str, Any] = {"model": "tiny", "host": "127.0.0.1", "port": 0, "output": str(out), "http": False}
    settings = BridgeSettings(**values, zeroconf=False, warmup=False, input_dirs=(str(show_dir),))
    with kept_logs() as records:
        started = time.monotonic()
        bridge, error = Bridge(settings, lambda: engine), ""
        try:
            bridge.start()
        except Exception as exc:  # noqa: BLE001 - the figure is whether it starts
            error = f"{type(exc).__name__}: {exc}"
        start_s = time.monotonic() - started
        recalled = []
        try:
            if not error:
                bridge.pool.ready.wait(60)
                with OscClient(*bridge.address) as client:
                    client.subscribe_self()
                    client.send("/ldm3d/show/load", SHOW_FILE)  # fires its first cue: from the adopted folder
                    seen = client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 60)
                    recalled.append(
                        seen[-1].address == "/ldm3d/ready" and not any(m.address == "/ldm3d/accepted" for m in seen)
                    )
                    outcome, queued, _, _ = _cue(client, "1")
                    recalled.append(outcome == "ready" and not queued)
        finally:
            bridge.stop()
    aside = sorted(p.name for p in out.glob("scenes.sqlite.corrupt-*"))
    print(
        f"   the bridge {'started' if not error else 'did NOT start (' + error + ')'} in {start_s * 1000:.0f} ms; "
        f"moved aside: {', '.join(aside) or 'nothing'}; warnings {len(records)} "
        f"({sum('moved aside' in r.getMessage() for r in records)} 'moved aside'), "
        f"{sum(r.exc_info is not None for r in records)} tracebacks"
        f"\n   cues recalled from the scene folders without a job: {sum(recalled)} of {len(recalled)}"
    )
