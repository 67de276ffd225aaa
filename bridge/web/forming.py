"""A world as it forms, for the operator pages: the ``preview`` message and a behind page's newest one.

The bridge's preview desk (:mod:`bridge.workers.previews`) hands every preview it sends to its
observers as PNGs; the page hub turns each into one JSON message for every page (no files):

``{"type": "preview", "job", "step", "total", "width", "height", "rgb", "depth"}``

``rgb`` is the 8-bit RGB as a ``data:image/png;base64,…`` URL (a browser decodes it as it is);
``depth`` is the 16-bit depth as base64 of raw little-endian uint16, rows top to bottom, ``width ×
height × 2`` bytes: the layout of a finished world's depth texture (:mod:`bridge.web.textures`),
because a browser reduces a 16-bit PNG to 8 bits.

Previews are coalesced twice. While they wait to go out (at most the hub's ``COALESCE_S``), only
the newest of each job waits, as for progress. And a page that is behind (its connection still
holds bytes it has not taken) is written no preview: :class:`Newest` keeps the newest one for it,
replacing any older, and writes it once the page has caught up, so a slow page gets the newest
picture late, never a queue of old ones. A preview never reaches a page after its job's end (the
hub calls :meth:`Newest.ended` when the job's final message passes, before it is written).
"""

from __future__ import annotations

import base64
import io
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from aiohttp import web
from PIL import Image

from bridge.web.outbox import Outbox

#: How many ended jobs are remembered (a preview of a job older than these cannot still be on its way).
ENDED_KEPT = 1024


def preview_message(job_id: str, step: int, total: int, rgb_png: bytes, depth_png: bytes) -> str:
    """The page's ``preview`` message (JSON) from the desk's PNGs (ValueError/OSError if they do not read)."""
    with Image.open(io.BytesIO(depth_png)) as image:
        depth = np.asarray(image)
    if depth.ndim != 2:
        raise ValueError(f"a preview's depth is {depth.shape}, not one channel")
    raw = depth.astype("<u2", copy=False).tobytes()
    height, width = depth.shape
    return json.dumps(
        {
            "type": "preview",
            "job": job_id,
            "step": step,
            "total": total,
            "width": int(width),
            "height": int(height),
            "rgb": "data:image/png;base64," + base64.b64encode(rgb_png).decode("ascii"),
            "depth": base64.b64encode(raw).decode("ascii"),
        }
    )


@dataclass
class Held:
    """A preview a page was not written because it was behind."""

    job: str
    frame: bytes


class Newest:
    """Per page, the newest preview of each job it was not written; and the jobs that have ended.
    On the event loop's thread only."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, str], Held] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        #: Previews replaced by a newer one before their page caught up (for the curious and the tests).
        self.replaced = 0

    def __len__(self) -> int:
        return len(self._held)

    def held(self, page: int) -> list[Held]:
        return [item for (number, _), item in self._held.items() if number == page]

    def ended(self, job_id: str) -> None:
        """``job_id`` has ended: none of its previews goes out any more."""
        self._ended[job_id] = None
        self._ended.move_to_end(job_id)
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)
        for key in [k for k, item in self._held.items() if item.job == job_id]:
            del self._held[key]

    def is_ended(self, job_id: str) -> bool:
        return job_id in self._ended

    def hold(self, page: int, job: str, frame: bytes) -> None:
        """Keep ``frame`` (a preview of ``job``) for ``page`` until it catches up, replacing an older one."""
        if job in self._ended:
            return
        if (page, job) in self._held:
            self.replaced += 1
        self._held[(page, job)] = Held(job, frame)

    def sent(self, page: int, job: str) -> None:
        """A newer preview of ``job`` was written to ``page``: the one it held is older, dropped."""
        if self._held.pop((page, job), None) is not None:
            self.replaced += 1

    def release(self, pages: Mapping[int, web.WebSocketResponse], outbox: Outbox) -> None:
        """Write each held preview to its page (one of ``pages``) once the page has taken what it was
        written before; forget those of pages that are gone."""
        for key, item in list(self._held.items()):
            ws = pages.get(key[0])
            if ws is not None:
                if outbox.unsent(ws) > 0:
                    continue  # still behind
                outbox.write(ws, item.frame)
            del self._held[key]
