"""bench/reliability.py's idle-connection flood (issue #30, point 1), against a served bridge
(bench/reliability_served.py): many TCP connections that send nothing or half a request line, from one
host and from many, under a low open-file limit; a probe, jobs, descriptors and the log meanwhile; and
connections that trickle their header.

Every connection is to 127.0.0.1; other hosts are other loopback addresses (127.0.0.2, 127.0.0.10…)
as source."""

from __future__ import annotations

import select
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bench.reliability_served import Served, lines_with, new_lines
from bridge.osc.client import OscClient

READY_OR_ERROR = ["/ldm3d/ready", "/ldm3d/error"]
HALF_A_REQUEST_LINE = b"GET /ldm3d HTT"


@dataclass
class Watched:
    sock: socket.socket
    opened: float
    last_sent: float
    closed: float | None = None


@dataclass
class CloseWatch:
    """Notes when the bridge closes each of many sockets that wait for it (poll, on its own thread):
    none of them is ever answered, so anything to read on one is its end."""

    watched: list[Watched] = field(default_factory=list)
    _new: list[Watched] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def add(self, sock: socket.socket) -> Watched:
        now = time.monotonic()
        item = Watched(sock, now, now)
        with self._lock:
            self._new.append(item)
            self.watched.append(item)
        return item

    @contextmanager
    def running(self) -> Iterator[CloseWatch]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(5)
            for item in self.watched:
                item.sock.close()

    def open(self, items: list[Watched]) -> list[Watched]:
        return [w for w in items if w.closed is None]

    def _run(self) -> None:
        poller, by_fd = select.poll(), {}
        while not self._stop.is_set():
            with self._lock:
                new, self._new = self._new, []
            for item in new:
                by_fd[item.sock.fileno()] = item
                poller.register(item.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
            for fd, _ in poller.poll(20):
                by_fd.pop(fd).closed = time.monotonic()
                poller.unregister(fd)


def _connect(port: int, source: str, first: bytes = b"") -> socket.socket | None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        if first:
            s.sendall(first)
        return s
    except OSError:
        return None


def _probe(port: int, timeout: float = 5.0) -> tuple[bool, float]:
    """A legitimate request (OSCQuery's namespace, from 127.0.0.1): answered 200?, and in how many ms."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ldm3d", timeout=timeout) as r:
            ok = r.status == 200 and bool(r.read())
    except OSError:
        ok = False
    return ok, (time.monotonic() - started) * 1000


def _job(client: OscClient, prompt: str) -> str:
    """A job from the OSC side: "ready", or its error code (write_failed…)."""
    client.send("/ldm3d/generate", prompt, "steps", 1, "width", 64, "height", 64)
    last = client.wait_for(READY_OR_ERROR, 60)[-1]
    return "ready" if last.address == "/ldm3d/ready" else str(last.args[1])


class FdPeak:
    """The most descriptors the bridge held, sampled every 20 ms while running."""

    def __init__(self, served: Served) -> None:
        self.served, self.peak, self._stop = served, served.fds(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.served.fds())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


class Trickle:
    """Sends one more byte of a header line on each of ``items`` every ``every`` seconds (its own thread)."""

    def __init__(self, items: list[Watched], every: float) -> None:
        self.items, self.every, self._stop = items, every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for item in self.items:
                if item.closed is None and time.monotonic() - item.last_sent >= self.every:
                    try:
                        item.sock.send(b"X")
                    except OSError:
                        continue
                    item.last_sent = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def idle_flood(served: Served, n: int, idle_s: float, trickle: int, *, nofile: int, header_s: float) -> None:
    """Section 6: ``n`` idle connections, half from one host and half from many; ``trickle`` more that
    send their header a byte at a time. ``idle_s``, ``header_s`` and ``nofile``: the bridge's, as it
    was started."""
    total, per_host = int(served.setting("http_max_connections")), int(served.setting("http_connections_per_host"))
    print(
        f"\n6. Idle connections: {n} that send nothing or half a request line (descriptor limit {nofile}, "
        f"http_max_connections {total}, per host {per_host}, http_idle_s {idle_s:g})"
    )
    port, since, fds_before = served.http_port, len(served.lines()), served.fds()
    at_once = min(0.5, idle_s / 2)  # closed sooner than this after it opened: refused, not timed out
    half = n // 2
    hosts = -(-(n - half) // max(1, per_host * 85 // 100))  # each under the per-host bound: the total decides
    rows, jobs = [], []
    peak = FdPeak(served)
    with CloseWatch().running() as watch, OscClient("127.0.0.1", served.port) as client:
        client.subscribe_self()  # the subscribers are saved too (they failed to be, in the issue)

        def flood(sources: list[str], count: int) -> tuple[list[Watched], int]:
            items, failed = [], 0
            for i in range(count):
                s = _connect(port, sources[i % len(sources)], HALF_A_REQUEST_LINE if i % 2 else b"")
                if s is None:
                    failed += 1
                else:
                    items.append(watch.add(s))
            return items, failed

        def held(items: list[Watched]) -> int:
            return sum(1 for w in items if w.closed is None or w.closed - w.opened >= at_once)

        one, failed = flood(["127.0.0.2"], half)
        time.sleep(at_once)
        ok, probe_ms = _probe(port)
        jobs.append(_job(client, "during an idle flood from one host"))
        rows.append(
            f"one host, {half} connections (half silent, half {HALF_A_REQUEST_LINE.decode()!r}): {held(one)} held, "
            f"{half - failed - held(one)} closed at once, {failed} not connected; a request from another host "
            f"answered {'200' if ok else 'NOT'} in {probe_ms:.1f} ms; a job meanwhile: {jobs[-1]}"
        )
        slow = [watch.add(s) for _ in range(trickle) if (s := _connect(port, "127.0.0.3", b"GET /ldm3d HTTP/1.1\r\n"))]
        trickler = Trickle(slow, idle_s / 2)  # one byte of a header line every http_idle_s / 2
        many, failed = flood([f"127.0.0.{10 + i}" for i in range(hosts)], n - half)
        full_at = time.monotonic()
        answered, refused_ms = _probe(port)  # at once: the total is full
        jobs.append(_job(client, "during an idle flood from many hosts"))
        answered_after, deadline = None, time.monotonic() + 2 * idle_s + 10
        while not answered and answered_after is None and time.monotonic() < deadline:
            if _probe(port)[0]:
                answered_after = time.monotonic() - full_at
            else:
                time.sleep(0.1)
        time.sleep(max(0.0, at_once - (time.monotonic() - full_at)))
        rows.append(
            f"{hosts} hosts, {n - half} connections: {held(many)} held, {n - half - failed - held(many)} closed at "
            f"once, {failed} not connected; a request from another host "
            + (f"answered at once ({refused_ms:.1f} ms)" if answered else f"refused at once ({refused_ms:.1f} ms)")
            + (f", answered {answered_after:.1f} s later" if answered_after else "" if answered else ", NOT answered")
            + f"; a job meanwhile: {jobs[-1]}"
        )
        deadline = time.monotonic() + 2 * idle_s + 10
        while watch.open(one + many) and time.monotonic() < deadline:
            time.sleep(0.05)
        timed_out = [w.closed - w.last_sent for w in one + many if w.closed and w.closed - w.opened >= at_once]
        deadline = (slow[0].opened if slow else 0.0) + header_s + idle_s + 5  # the trickle goes on past idle_s
        while watch.open(slow) and time.monotonic() < deadline:
            time.sleep(0.05)
        trickler.stop()
        trickled = [w.closed - w.opened for w in slow if w.closed is not None]
        jobs.append(_job(client, "after an idle flood"))
    fds_peak = peak.stop()
    time.sleep(0.3)
    lines = new_lines(served, since)
    if timed_out:
        rows.append(
            f"held at once at most {_most_at_once(one + many + slow, at_once)} (these and the trickling ones below); "
            f"held ones closed after {min(timed_out):.1f} to {max(timed_out):.1f} s of silence; still open "
            f"{len(watch.open(one + many))}"
        )
    rows.append(
        f"descriptors: {fds_before} before, {fds_peak} at the peak (limit {nofile}), {served.fds()} after; "
        f"jobs {len(jobs)}, write failures {sum(j == 'write_failed' for j in jobs)}, other errors "
        f"{sum(j not in ('ready', 'write_failed') for j in jobs)}"
    )
    rows.append(
        f"log lines during the flood: {len(lines)} ({lines_with(lines, 'out of system resource')} 'out of system "
        f"resource', {lines_with(lines, 'Traceback')} tracebacks)"
    )
    rows.append(
        f"{len(slow)} connections that send one byte of a header line every {idle_s / 2:g} s (http_header_s "
        f"{header_s:g}): {len(trickled)} of {len(slow)} closed"
        + (f", {min(trickled):.1f} to {max(trickled):.1f} s after they opened" if trickled else "")
    )
    for row in rows:
        print(f"   {row}")


def _most_at_once(items: list[Watched], at_once: float) -> int:
    """The most of ``items`` the bridge held open at one time (refused ones, closed at once, left out)."""
    events = sorted(
        (t, step)
        for w in items
        if w.closed is None or w.closed - w.opened >= at_once
        for t, step in ((w.opened, 1), (w.closed if w.closed is not None else float("inf"), -1))
    )
    most = held = 0
    for _, step in events:
        held += step
        most = max(most, held)
    return most
