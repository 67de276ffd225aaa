"""Subscribers kept across restarts: ``<output>/.ldm3d-subscribers.json``, written atomically.

So TouchDesigner hears ``/ldm3d/ready`` again after the bridge restarts, without
subscribing again. Each entry: address, port, owner, when the bridge last heard
from it (wall clock), and ``lease`` when it asked for its own (0: none); one not heard
from for ``max_age_s`` (a day) is not restored.
A missing or unreadable file is an empty list (logged), never a failed start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bridge.output.writer import write_json_atomic

logger = logging.getLogger(__name__)

FILE_NAME = ".ldm3d-subscribers.json"
MAX_AGE_S = 86400.0


class SubscriberFile:
    def __init__(self, root: Path) -> None:
        self.path = root / FILE_NAME

    def load(self, now: float, max_age_s: float = MAX_AGE_S) -> list[dict[str, Any]]:
        """The entries heard from within ``max_age_s`` of ``now`` (wall clock)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries: list[dict[str, Any]] = [
                {"host": str(e["host"]), "port": int(e["port"]), "owner": str(e["owner"]), "heard": float(e["heard"]),
                 "lease": None if e.get("lease") is None else float(e["lease"])}
                for e in data["subscribers"]
            ]  # fmt: skip
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring %s (%s): no subscribers restored", self.path, exc)
            return []
        return [e for e in entries if now - e["heard"] <= max_age_s and 1 <= e["port"] <= 65535]

    def save(self, entries: list[dict[str, Any]]) -> None:
        write_json_atomic(self.path, {"version": 1, "subscribers": entries})
