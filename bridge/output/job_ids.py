"""Job ids: the names of job folders in the output root, so they belong to the folder contract.

``YYYYMMDD-HHMMSS-mmm-NNNN`` in UTC (milliseconds, then a per-process counter): they sort by
time, are unique within a run, and are safe folder names on every OS.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from datetime import UTC, datetime

JOB_ID_PATTERN = r"[0-9]{8}-[0-9]{6}-[0-9]{3}-[0-9a-z]{4}"
#: A whole job id and nothing else (``\Z``: not even a trailing newline, which ``$`` would let through).
JOB_ID_RE = re.compile(rf"\A{JOB_ID_PATTERN}\Z")

_counter = itertools.count()
_counter_lock = threading.Lock()


def new_job_id(now: float | None = None) -> str:
    """Time-sortable and unique in this process: ``YYYYMMDD-HHMMSS-mmm-NNNN`` (UTC)."""
    t = time.time() if now is None else now
    stamp = datetime.fromtimestamp(t, UTC)
    with _counter_lock:
        n = next(_counter) % 10000
    return f"{stamp:%Y%m%d-%H%M%S}-{stamp.microsecond // 1000:03d}-{n:04d}"
