"""A world as it forms, for the operator pages, without a bridge (issue 33: in the mutation selection).

The ``preview`` message built from the desk's PNGs, and :class:`bridge.web.forming.Newest`: what a page
that is behind is held, replaced, written when it catches up, and never after its job's end."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import cast

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from bridge.web.forming import ENDED_KEPT, Held, Newest, preview_message
from bridge.web.outbox import Outbox


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_a_preview_is_one_json_message_with_the_rgb_as_is_and_the_depth_exactly() -> None:
    rgb = _png(np.zeros((2, 3, 3), np.uint8))
    depth = np.array([[0, 1, 258], [65535, 4660, 22136]], np.uint16)
    message = json.loads(preview_message("J1", 3, 20, rgb, _png(depth)))
    assert message == {
        "type": "preview",
        "job": "J1",
        "step": 3,
        "total": 20,
        "width": 3,
        "height": 2,
        "rgb": "data:image/png;base64," + base64.b64encode(rgb).decode("ascii"),
        "depth": base64.b64encode(depth.astype("<u2").tobytes()).decode("ascii"),
    }


def test_a_preview_whose_depth_is_not_one_channel_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\Aa preview's depth is \(2, 3, 3\), not one channel\Z"):
        preview_message("J1", 1, 2, b"", _png(np.zeros((2, 3, 3), np.uint8)))


class _Transport(asyncio.Transport):
    def __init__(self, unsent: int = 0) -> None:
        super().__init__()
        self.unsent = unsent
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return False


class _Page:
    closed = False


def _pages(outbox: Outbox, *unsent: int) -> tuple[dict[int, web.WebSocketResponse], list[_Transport]]:
    pages: dict[int, web.WebSocketResponse] = {}
    transports: list[_Transport] = []
    for number, waiting in enumerate(unsent, start=1):
        ws, transport = cast(web.WebSocketResponse, _Page()), _Transport(waiting)
        outbox.add(ws, transport, f"page {number}")
        pages[number], transports = ws, [*transports, transport]
    return pages, transports


def test_a_page_is_written_only_the_newest_preview_once_it_caught_up() -> None:
    newest, outbox = Newest(), Outbox()
    pages, (slow, fast) = _pages(outbox, 10, 0)
    newest.hold(1, "J1", b"old")
    newest.hold(1, "J1", b"new")
    newest.hold(1, "J2", b"other job")
    newest.hold(2, "J1", b"for two")
    assert (newest.replaced, len(newest), [h.frame for h in newest.held(1)]) == (1, 3, [b"new", b"other job"])
    newest.release(pages, outbox)
    assert (slow.written, fast.written, len(newest)) == ([], [b"for two"], 2)  # page 1 is still behind
    slow.unsent = 0
    newest.release(pages, outbox)
    assert (slow.written, len(newest)) == ([b"new", b"other job"], 0)


def test_the_held_previews_of_a_page_that_left_are_forgotten() -> None:
    newest, outbox = Newest(), Outbox()
    pages, _ = _pages(outbox, 0)
    newest.hold(7, "J1", b"x")
    newest.release(pages, outbox)
    assert len(newest) == 0


def test_a_newer_preview_written_drops_the_held_one() -> None:
    newest = Newest()
    newest.hold(1, "J1", b"old")
    newest.sent(1, "J1")
    newest.sent(1, "J1")  # nothing held: nothing replaced
    newest.sent(2, "J2")
    assert (len(newest), newest.replaced) == (0, 1)


def test_no_preview_of_an_ended_job_is_held_or_kept() -> None:
    newest = Newest()
    newest.hold(1, "J1", b"a")
    newest.hold(2, "J1", b"b")
    newest.hold(1, "J2", b"c")
    newest.ended("J1")
    newest.hold(3, "J1", b"late")
    assert (newest.held(1), newest.held(2), newest.held(3)) == ([Held("J2", b"c")], [], [])
    assert newest.is_ended("J1") and not newest.is_ended("J2")


def test_the_newest_ended_jobs_are_remembered() -> None:
    newest = Newest()
    newest.ended("first")
    newest.ended("second")
    for n in range(ENDED_KEPT - 2):
        newest.ended(f"job {n}")
    newest.ended("first")  # ended again: remembered as the newest
    newest.ended("one more")
    assert (newest.is_ended("first"), newest.is_ended("second"), newest.is_ended("job 0")) == (True, False, True)


def test_held_lists_only_that_pages_previews() -> None:
    newest = Newest()
    newest.hold(1, "J1", b"a")
    newest.hold(2, "J2", b"b")
    assert [h.job for h in newest.held(2)] == ["J2"]


def test_every_preview_replaced_before_its_page_caught_up_is_counted() -> None:
    newest = Newest()
    for frame in (b"1", b"2", b"3"):
        newest.hold(1, "J1", frame)
    newest.sent(1, "J1")
    newest.hold(1, "J1", b"4")
    newest.sent(1, "J1")
    assert newest.replaced == 4


def test_a_page_with_one_byte_not_taken_is_still_behind() -> None:
    newest, outbox = Newest(), Outbox()
    pages, (page,) = _pages(outbox, 1)
    newest.hold(1, "J1", b"held")
    newest.release(pages, outbox)
    assert (page.written, len(newest)) == ([], 1)
