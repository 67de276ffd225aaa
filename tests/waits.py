"""Waits that follow a job instead of a fixed number of seconds: a loaded machine is slower, not red."""

from __future__ import annotations

import time

from bridge.osc.client import FINAL, OscClient
from bridge.osc.codec import Message


def until_final(client: OscClient, job_id: str, stalled_s: float = 30.0) -> Message:
    """The message that ends ``job_id`` (``/ldm3d/ready``, ``/ldm3d/error``, ``/ldm3d/cancelled``),
    however long the job takes while it moves: TimeoutError only when nothing of it (a progress
    step, its end) arrives for ``stalled_s``."""
    deadline = time.monotonic() + stalled_s
    while True:
        message = client.receive(max(0.0, deadline - time.monotonic()))
        if message is None:
            raise TimeoutError(f"job {job_id}: no progress and no end for {stalled_s:g} s")
        if not message.args or message.args[0] != job_id:
            continue
        if message.address in FINAL:
            return message
        if message.address == "/ldm3d/progress":
            deadline = time.monotonic() + stalled_s
