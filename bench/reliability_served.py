"""A served bridge for bench/reliability.py's HTTP and library sections: ``serve --model tiny`` in a
subprocess whose log is kept in a file (the lines it writes are a figure), with its resident memory
and open descriptors read from /proc. Linux only.

tests/served.py starts the same process for the tests but drops its log once it listens; this one
keeps it, and can start it under an open-file limit that ``serve`` cannot raise (soft = hard)."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bridge.settings import ENV_PREFIX, BridgeSettings


class Served:
    """``serve --model tiny --host 127.0.0.1 --port 0`` writing to ``out``, started at once; :meth:`wait`
    until it listens and its model is loaded (the bench starts it while its other sections run).

    ``nofile``: its open-file limit, soft and hard (as a unit without ``LimitNOFILE`` may leave it);
    ``env``: more environment variables (``LDM3D_BRIDGE_HTTP_IDLE_S=…``: a setting)."""

    def __init__(
        self, out: Path, *extra: str, log: Path, nofile: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.log, self.env = log, env or {}
        environ = {**os.environ, "LDM3D_BRIDGE_WARMUP": "false", **self.env}
        command = [sys.executable, "-m", "bridge.cli", "serve", "--model", "tiny", "--host", "127.0.0.1"]
        command += ["--port", "0", "--no-zeroconf", "--output", str(out), *extra]
        with log.open("w") as sink:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env=environ,
                preexec_fn=_descriptor_limit(nofile) if nofile else None,
            )
        self.port = self.http_port = 0

    def wait(self, timeout: float = 180) -> Served:
        """Until it listens (its ports) and its worker has loaded the model."""
        deadline = time.monotonic() + timeout
        while not re.search(r"worker 0 .*: model \S+ loaded", text := self.log.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the bridge did not start (exit {self.proc.returncode}):\n{self.tail()}")
            time.sleep(0.05)
        osc = re.search(r"listening for OSC on udp://127\.0\.0\.1:(\d+)", text)
        http = re.search(r"OSCQuery on http://127\.0\.0\.1:(\d+)/", text)
        assert osc is not None
        self.port = int(osc.group(1))
        self.http_port = int(http.group(1)) if http else self.port
        return self

    def setting(self, name: str) -> float:
        """A numeric setting as this bridge has it: given in ``env``, else the default."""
        given = self.env.get(ENV_PREFIX + name.upper())
        return float(given) if given is not None else float(getattr(BridgeSettings(), name))

    def lines(self) -> list[str]:
        """Every line of its log so far."""
        return self.log.read_text(errors="replace").splitlines()

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines()[-n:])

    def rss_mb(self) -> float:
        """Its resident memory now (VmRSS), MB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(found.group(1)) / 1024 if found else 0.0

    def fds(self) -> int:
        """Descriptors it holds open now."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _descriptor_limit(n: int) -> Callable[[], None]:
    def limit() -> None:  # in the child, before exec
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return limit


def new_lines(served: Served, since: int) -> list[str]:
    """The log lines written after the first ``since``."""
    return served.lines()[since:]


def lines_with(lines: list[str], text: str) -> int:
    """How many of ``lines`` hold ``text``."""
    return sum(text in line for line in lines)


def percentiles(values: list[float]) -> str:
    """``p50 …, p99 …, max …`` of round trips in ms."""
    if not values:
        return "none"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms"
