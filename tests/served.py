"""`ldm3d-bridge serve --model tiny` in a subprocess on a free loopback port: for tests of the
real process (signals, resource limits, floods) and for bench/reliability.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path


def serve_tiny(
    out: Path,
    *extra: str,
    cache: Path | None = None,
    limit_file_size: int | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], int]:
    """Start the bridge writing to ``out``; return the process and its port once it listens.

    ``cache``: an XDG cache folder holding ``ldm3d-bridge/`` (the built tiny models), so the process
    does not build them again. ``limit_file_size``: a disk that is full beyond this many bytes per file.
    ``env``: more environment variables."""
    env = {**os.environ, "LDM3D_BRIDGE_WARMUP": "false", **(env or {})}
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)

    def limits() -> None:  # POSIX only: runs in the child before exec
        import resource

        assert limit_file_size is not None
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    command = [
        sys.executable,
        "-m",
        "bridge.cli",
        "serve",
        "--model",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-zeroconf",
        "--output",
        str(out),
        *extra,
    ]
    preexec = limits if limit_file_size is not None else None
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=preexec)
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"listening for OSC on udp://127\.0\.0\.1:(\d+)", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, int(found.group(1))
    raise AssertionError(f"the bridge did not start (exit {proc.wait()})")


#: Signals, resource limits and /proc: what the POSIX-only tests need.
POSIX = sys.platform != "win32"
