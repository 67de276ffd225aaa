"""The public visitor page's routes, without a bridge (issue 33: in the mutation selection).

A small :class:`~bridge.web.visit.VisitorBackend` handed in, the routes served by aiohttp's test server on
the loopback: each refusal's status, code and sentence, the ticket's status, the QR code's address."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from bridge.errors import BridgeError, QueueFull, RateLimited, RefusedPrompt, UnknownAddress
from bridge.web import visit
from bridge.web.page import StaticFiles


class _Backend:
    def __init__(self, refusal: BridgeError | None = None) -> None:
        self.refusal = refusal
        self.submitted: list[tuple[str, str]] = []
        self.asked: list[str] = []

    def submit(self, prompt: str, device: str) -> str:
        if self.refusal is not None:
            raise self.refusal
        self.submitted.append((prompt, device))
        return "T-1"

    def status(self, ticket: str) -> dict[str, object]:
        self.asked.append(ticket)
        return {"state": "waiting", "text": f"ticket {ticket}"}

    def visitor_url(self, host: str) -> str:
        return f"http://{host}/visit"

    def config(self) -> dict[str, object]:
        return {"max_chars": 200, "interval_s": 30.0}


Answer = tuple[int, Any, Any]


def _serve(backend: _Backend, tmp_path: Path, *requests: tuple[str, str, Any]) -> list[Answer]:
    """Each ``(method, path, body)`` against a fresh app (the body is sent as it is, bytes or text)."""
    page = tmp_path / "index.html"
    page.write_text("<p>visit</p>")
    app = web.Application()
    visit.attach(app, backend, StaticFiles({"visit/index.html": page}))

    async def run() -> list[Answer]:
        answers: list[Answer] = []
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for method, path, body in requests:
                response = await client.request(method, path, data=body)
                raw = await response.read()
                kind = response.headers.get("Content-Type", "")
                answers.append((response.status, json.loads(raw) if "json" in kind else raw.decode(), response.headers))
        return answers

    return asyncio.run(run())


def _prompt(backend: _Backend, tmp_path: Path, body: Any) -> Answer:
    return _serve(backend, tmp_path, ("POST", "/visit/prompt", body))[0]


def test_a_prompt_is_submitted_from_the_visitors_address_and_gets_its_ticket(tmp_path: Path) -> None:
    backend = _Backend()
    status, answer, _ = _prompt(backend, tmp_path, json.dumps({"prompt": "a quiet lake"}))
    assert (status, answer, backend.submitted) == (200, {"ok": True, "ticket": "T-1"}, [("a quiet lake", "127.0.0.1")])


@pytest.mark.parametrize(
    ("refusal", "status", "message"),
    [
        (UnknownAddress("too long"), 503, visit.PLAIN),
        (RefusedPrompt("not here"), 422, "not here"),
        (RateLimited("wait 30 s"), 429, "wait 30 s"),
        (QueueFull("the queue is full (8 jobs)"), 503, visit.PLAIN),
    ],
)
def test_each_refusal_has_its_status_and_a_sentence_a_visitor_may_read(
    tmp_path: Path, refusal: BridgeError, status: int, message: str
) -> None:
    answer = _prompt(_Backend(refusal), tmp_path, json.dumps({"prompt": "x"}))
    assert answer[:2] == (status, {"ok": False, "code": refusal.code, "message": message})


def test_a_bad_prompt_is_400_with_its_own_message(tmp_path: Path) -> None:
    from bridge.errors import BadArguments

    answer = _prompt(_Backend(BadArguments("the prompt is empty")), tmp_path, json.dumps({"prompt": ""}))
    assert answer[:2] == (400, {"ok": False, "code": "bad_arguments", "message": "the prompt is empty"})


@pytest.mark.parametrize(
    "body", ["{broken", "[]", '{"other": 1}', '{"prompt": 7}', '{"prompt": "\\ud800"}', "[" * 100_000]
)
def test_a_body_that_is_not_a_prompt_is_400_saying_what_to_send(tmp_path: Path, body: str) -> None:
    backend = _Backend()
    if len(body) > visit.MAX_BODY:
        body = body[: visit.MAX_BODY]
    answer = _prompt(backend, tmp_path, body)
    expected = {"ok": False, "code": "bad_arguments", "message": 'Send {"prompt": "what you would like to see"}.'}
    assert (answer[:2], backend.submitted) == ((400, expected), [])


def test_a_body_over_4_kib_is_413_whether_its_length_is_announced_or_not(tmp_path: Path) -> None:
    backend = _Backend()
    exact = json.dumps({"prompt": "x" * (visit.MAX_BODY - 14)})
    assert len(exact) == visit.MAX_BODY
    over = exact + " "

    async def chunks() -> Any:  # no Content-Length: sent chunked
        yield over.encode()

    answers = _serve(backend, tmp_path, ("POST", "/visit/prompt", exact), ("POST", "/visit/prompt", over))
    answers += _serve(backend, tmp_path, ("POST", "/visit/prompt", chunks()))
    too_long = {"ok": False, "code": "bad_arguments", "message": "That is too long to send."}
    assert [a[:2] for a in answers] == [(200, {"ok": True, "ticket": "T-1"}), (413, too_long), (413, too_long)]


def test_the_config_the_ticket_status_and_the_page(tmp_path: Path) -> None:
    backend = _Backend()
    config, status, page, slash = _serve(
        backend,
        tmp_path,
        ("GET", "/visit/config", None),
        ("GET", "/visit/status/" + "t" * 70, None),
        ("GET", "/visit", None),
        ("GET", "/visit/", None),
    )
    assert config[:2] == (200, {"max_chars": 200, "interval_s": 30.0})
    assert (status[:2], status[2]["Cache-Control"], backend.asked) == (
        (200, {"state": "waiting", "text": "ticket " + "t" * 64}),
        "no-store",
        ["t" * 64],
    )
    assert page[:2] == slash[:2] == (200, "<p>visit</p>")


def test_the_qr_code_and_the_address_are_the_visitor_pages(tmp_path: Path) -> None:
    svg, text = _serve(_Backend(), tmp_path, ("GET", "/qr/visit.svg", None), ("GET", "/qr/visit.txt", None))
    host = text[1].removeprefix("http://").removesuffix("/visit\n")
    assert host.startswith("127.0.0.1:")
    assert (svg[0], svg[2]["Content-Type"], svg[2]["Cache-Control"]) == (200, "image/svg+xml", "no-store")
    assert f"<title>http://{host}/visit</title>" in svg[1] and 'width="' in svg[1]
    import segno

    expected = segno.make(f"http://{host}/visit", error="m")
    assert svg[1].count('d="') == 1 and f'width="{(expected.symbol_size(scale=6, border=2)[0])}"' in svg[1]


class _Transport:
    def __init__(self, sockname: tuple[str, int] | None) -> None:
        self.sockname = sockname

    def get_extra_info(self, name: str) -> Any:
        return self.sockname if name == "sockname" else None


def test_without_a_host_header_the_address_is_the_one_the_request_came_to() -> None:
    with_host = make_mocked_request("GET", "/qr/visit.txt", headers={"Host": "dome.lan:8080"})
    bare = make_mocked_request("GET", "/qr/visit.txt", headers={}, transport=_Transport(("10.0.0.5", 9000)))
    unknown = make_mocked_request("GET", "/qr/visit.txt", headers={}, transport=_Transport(None))
    gone = make_mocked_request("GET", "/qr/visit.txt", headers={})
    gone.protocol.transport = None  # the connection closed meanwhile
    assert [visit._host(with_host), visit._host(bare), visit._host(unknown), visit._host(gone)] == [
        "dome.lan:8080",
        "10.0.0.5:9000",
        "127.0.0.1",
        "127.0.0.1",
    ]


def test_only_the_visitor_routes_are_open_to_the_public() -> None:
    open_ = ["/visit", "/visit/", "/visit/prompt", "/visit/config", "/visit/status/T-1"]
    closed = ["/qr/visit.svg", "/qr/visit.txt", "/ws", "/visit/other", "/visits", "/", "/ui/"]
    assert [visit.is_visitor_path(p) for p in open_ + closed] == [True] * len(open_) + [False] * len(closed)
