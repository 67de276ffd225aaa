"""Job folders whose meta.json cannot be used (issue 30, point 9): each reader skips them and logs each once.

One folder with a bad ``meta.json`` (``[]``, bytes that are not UTF-8, a key missing) among the newest
closed every page's connection at once (the page's history read it at every hello) and made
``/ldm3d/recall`` of it answer ``internal_error``. Now :meth:`TextureWriter.find`, ``latest`` and the
page's history skip it (one warning per folder), and a recall of it answers ``unknown_job`` saying why.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.output.job_ids import new_job_id
from bridge.output.writer import TextureWriter
from bridge.serve.server import Bridge
from tests.test_writer import fake_result

Start = Callable[..., Bridge]

#: What each bad folder's meta.json holds, and a word its reason must contain.
BAD: dict[str, tuple[bytes, str]] = {
    "a list": (b"[]", "a list, not an object"),
    "not UTF-8": (b'{"prompt": "caf\xe9", "width": 32, "height": 16, "seed": 3}', "not UTF-8"),
    "a key missing": (b'{"prompt": "x", "width": 32, "height": 16}', "'seed'"),
    "a wrong type": (b'{"width": "32", "height": 16, "seed": 3}', "not a whole number"),
    "not JSON": (b"{", "not JSON"),
}


def _jobs(writer: TextureWriter) -> tuple[list[str], dict[str, str]]:
    """Two good jobs, the bad ones between and after them (newest last): (the good ids, bad id → kind)."""
    good = [writer.write(new_job_id(), fake_result(seed=1)).job_id]
    bad = {}
    for kind, (content, _) in BAD.items():
        files = writer.write(new_job_id(), fake_result(seed=2))
        files.meta.write_bytes(content)
        bad[files.job_id] = kind
    good.append(writer.write(new_job_id(), fake_result(seed=3)).job_id)
    last = writer.write(new_job_id(), fake_result(seed=4))
    last.meta.write_bytes(b"[]")  # the newest, which latest.json names, is bad too
    bad[last.job_id] = "a list"
    return good, bad


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bridge.output.writer"]


def test_the_writer_skips_a_bad_folder_says_why_and_logs_it_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = TextureWriter(tmp_path)
    writer.prepare()
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.output.writer"):
            good, bad = _jobs(writer)
            assert writer.job_ids() == sorted([*good, *bad])  # listed: whether one reads is find's business
            for _ in range(3):  # as three pages' hellos would
                assert [job_id for job_id in writer.job_ids() if writer.find(job_id)] == good
            for job_id, kind in bad.items():
                why = writer.unreadable(job_id)
                assert why is not None and BAD[kind][1] in why, (kind, why)
                assert writer.find_with_meta(job_id) is None
            assert writer.unreadable(good[0]) is None and writer.unreadable(new_job_id()) is None
            found = writer.find_with_meta(good[0])
            assert found is not None and found[1]["seed"] == 1
            logged = _warnings(caplog)
            assert len(logged) == len(bad)  # once per folder, however often it is read
            assert all(any(job_id in line for line in logged) for job_id in bad)
            for content in (b"[]", b"\xff\xfe", b"{"):  # latest.json, damaged each way: none, logged once
                (tmp_path / "latest.json").write_bytes(content)
                assert writer.latest() is None and writer.latest() is None
            assert len(_warnings(caplog)) == len(bad) + 1
    finally:
        writer.close()


def test_pages_keep_connecting_and_a_recall_of_a_bad_folder_says_why(
    start_bridge: Start, client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = start_bridge(http=True)
    good, bad = _jobs(bridge.writer)
    osc = client_for(bridge)

    async def pages() -> list[dict[str, Any]]:
        out = []
        async with aiohttp.ClientSession() as session:
            for _ in range(2):  # every page connects, again and again (each hello reads the history)
                async with session.ws_connect(f"http://127.0.0.1:{bridge.http_port}/ws") as ws:
                    hello = json.loads((await ws.receive(timeout=30)).data)
                    assert hello["type"] == "hello"
                    replies = []
                    for n, job_id in enumerate([*bad, good[0]], 1):
                        await ws.send_str(json.dumps({"id": n, "address": "/ldm3d/recall", "args": [job_id]}))
                        while True:  # an error is this page's reply; a world recalled, an event for every page
                            m = json.loads((await ws.receive(timeout=10)).data)
                            if m.get("re") == n or (m.get("address") == "/ldm3d/ready" and m["args"][0] == job_id):
                                replies.append(m)
                                break
                    out.append({"hello": hello, "replies": replies})
        return out

    with caplog.at_level(logging.WARNING, logger="bridge.output.writer"):
        seen = asyncio.run(pages())
        for job_id in bad:  # over OSC too
            osc.send("/ldm3d/recall", job_id)
            reply = osc.receive(10)
            assert reply is not None and reply.address == "/ldm3d/error", reply
            assert reply.args[1] == "unknown_job" and "meta.json cannot be read" in str(reply.args[2])
    first, again = (page["hello"]["world"] for page in seen)
    assert first is None  # latest.json names a bad folder: nothing on screen, and no crash
    assert again is not None and again["job_id"] == good[0]  # recalled by the first page: on screen now
    for page in seen:
        hello = page["hello"]
        assert [w["job_id"] for w in hello["history"]] == good[::-1]  # newest first, the bad ones left out
        *refused, recalled = page["replies"]
        for reply, (job_id, kind) in zip(refused, bad.items(), strict=True):
            code, message = reply["args"][1:]
            assert reply["address"] == "/ldm3d/error" and code == "unknown_job", (kind, reply)
            assert f"job {job_id}" in message and "meta.json cannot be read" in message and BAD[kind][1] in message
        assert recalled["address"] == "/ldm3d/ready" and recalled["args"][0] == good[0], recalled
    assert "internal_error" not in bridge.counters.snapshot()
    assert bridge._web is not None and bridge._web._page is not None
    history = bridge._web._page._backend.history  # the newest that read, however many bad ones are newer
    assert history(1) == good[-1:] and history(2) == good[::-1] and history(24) == good[::-1]
    assert len(_warnings(caplog)) == len(bad)  # each bad folder logged once, over 2 hellos and 3 recalls each
