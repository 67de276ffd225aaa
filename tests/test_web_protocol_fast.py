"""The HTTP side's protocol without a bridge (issue 33): the OSCQuery namespace and its queries
(:mod:`bridge.web.oscquery`, pure), and the HTTP server (:mod:`bridge.web.http`): request parsing, the
names and origins it answers to, the token, status codes and the LISTEN stream. The server is a real
:class:`WebServer` on loopback with a small namespace and values handed in (no bridge, no model); each
test takes well under a second (they are in mutmut's selection).

The whole OSCQuery tree a client reads is an approval file, tests/data/oscquery_golden.json, read and
checked by a person when it changes:

    LDM3D_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_web_protocol_fast.py -k golden   # review the diff
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web as aiohttp_web
from aiohttp.test_utils import make_mocked_request

from bridge.contract.ranges import Ranges
from bridge.errors import BridgeError
from bridge.osc.codec import Arg, encode_message
from bridge.settings import BridgeSettings
from bridge.web.http import SERVER, KnownNames, WebServer, _entry_name, _host_name, _wants_html
from bridge.web.oscquery import EXTENSIONS, READ_WRITE, WRITE, Node, host_info, namespace, node_json, query
from bridge.web.page import StaticFiles
from tests.raw_websocket import never_reads

GOLDEN = Path(__file__).resolve().parent / "data" / "oscquery_golden.json"

# -- the OSCQuery namespace (pure) -------------------------------------------------------------------


def test_golden_the_whole_oscquery_tree_is_the_approved_one() -> None:
    """Every node's path, description, type, access, default value, range, clip mode and unit, as a
    client reads them from ``GET /`` of a bridge with the default ranges, and HOST_INFO."""
    tree = {
        "tree": node_json("/", namespace(Ranges()), {}),
        "host_info": host_info("ldm3d-bridge on stage", "10.0.0.5", 9000, "10.0.0.6", 9001),
    }
    text = json.dumps(tree, indent=1, ensure_ascii=False) + "\n"  # as text: a float's 0.0 is not an int's 0
    if os.environ.get("LDM3D_REGEN_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_the_tree_follows_the_models_ranges() -> None:
    ranges = Ranges(steps=(2, 30), guidance=(1.0, 9.0), width=(32, 256), height=(48, 128), schedulers=("ddim",))
    ranges = Ranges(**{**ranges.__dict__, "defaults": (("steps", 10), *Ranges().defaults[1:])})
    nodes = namespace(ranges)
    steps, size = node_json("/ldm3d/steps", nodes, {}), node_json("/ldm3d/size", nodes, {})
    assert (steps["RANGE"], steps["VALUE"], steps["CONTENTS"]["norm"]["VALUE"]) == (
        [{"MIN": 2, "MAX": 30}],
        [10],
        [ranges.to_norm("steps", 10.0)],
    )
    assert size["RANGE"] == [{"MIN": 32, "MAX": 256}, {"MIN": 48, "MAX": 128}]
    assert node_json("/ldm3d/scheduler", nodes, {})["RANGE"] == [{"VALS": ["ddim"]}]


SMALL = {
    "/": Node("/", "root"),
    "/a": Node("/a", "a container"),
    "/a/b": Node("/a/b", "a method that is a container too", "sif", READ_WRITE, [{"MIN": 0, "MAX": 9}], ["both"]),
    "/a/b/c": Node("/a/b/c", "a button"),
    "/a/bc": Node("/a/bc", "a sibling whose name starts like b", "s", WRITE, unit=["pixels"]),
    "/ab": Node("/ab", "not a child of /a"),
}


def test_a_typed_node_without_a_default_reports_empty_strings_and_zeros() -> None:
    """Of its type: a client reads 0.0 for a float (``f``), 0 for an int."""
    status, body = query("/a/b", "VALUE", SMALL, {})
    assert (status, json.dumps(body)) == (200, '{"VALUE": ["", 0, 0.0]}')


def test_a_node_has_its_children_only_each_under_its_last_name() -> None:
    status, body = query("/", None, SMALL, {"/a/b": (3, 2, 1.5)})
    assert status == 200 and body == {
        "FULL_PATH": "/",
        "DESCRIPTION": "root",
        "ACCESS": 0,
        "CONTENTS": {
            "a": {
                "FULL_PATH": "/a",
                "DESCRIPTION": "a container",
                "ACCESS": 0,
                "CONTENTS": {
                    "b": {
                        "FULL_PATH": "/a/b",
                        "DESCRIPTION": "a method that is a container too",
                        "ACCESS": 3,
                        "TYPE": "sif",
                        "VALUE": [3, 2, 1.5],
                        "RANGE": [{"MIN": 0, "MAX": 9}],
                        "CLIPMODE": ["both"],
                        "CONTENTS": {"c": {"FULL_PATH": "/a/b/c", "DESCRIPTION": "a button", "ACCESS": 0}},
                    },
                    "bc": {
                        "FULL_PATH": "/a/bc",
                        "DESCRIPTION": "a sibling whose name starts like b",
                        "ACCESS": 2,
                        "TYPE": "s",
                        "VALUE": [""],
                        "UNIT": ["pixels"],
                    },
                },
            },
            "ab": {"FULL_PATH": "/ab", "DESCRIPTION": "not a child of /a", "ACCESS": 0},
        },
    }


@pytest.mark.parametrize(
    ("path", "attribute", "answer"),
    [
        ("/a/bc", "UNIT", (200, {"UNIT": ["pixels"]})),
        ("/a/bc/", "ACCESS", (200, {"ACCESS": 2})),  # a trailing slash names the same node
        ("/a/bc//", "TYPE", (200, {"TYPE": "s"})),
        ("", "FULL_PATH", (200, {"FULL_PATH": "/"})),  # the root, however it is written
        ("//", "DESCRIPTION", (200, {"DESCRIPTION": "root"})),
        ("/a/b/c", "VALUE", (204, None)),  # a known attribute this node has no value for
        ("/a/b/c", "TAGS", (204, None)),  # one the proposal defines and this server does not have
        ("/a/b/c", "HTML", (204, None)),
        ("/a/b/c", "value", (400, None)),  # no such attribute (names are upper case)
        ("/a/b/c", "", (400, None)),
        ("/a/x", "VALUE", (404, None)),
        ("/a/bcX", None, (404, None)),  # only slashes are taken off the end
        ("/a/x", None, (404, None)),
        ("/A", None, (404, None)),
    ],
)
def test_queries_answer_with_the_status_codes_of_the_proposal(
    path: str, attribute: str | None, answer: tuple[int, Any]
) -> None:
    assert query(path, attribute, SMALL, {}) == answer


def test_host_info_says_what_is_implemented() -> None:
    info = host_info("dome", "10.0.0.5", 9000, "10.0.0.6", 9001)
    assert info == {
        "NAME": "dome",
        "EXTENSIONS": EXTENSIONS,
        "OSC_IP": "10.0.0.5",
        "OSC_PORT": 9000,
        "OSC_TRANSPORT": "UDP",
        "WS_IP": "10.0.0.6",
        "WS_PORT": 9001,
    }
    assert [k for k, v in EXTENSIONS.items() if v] == [
        "ACCESS",
        "VALUE",
        "RANGE",
        "DESCRIPTION",
        "CLIPMODE",
        "UNIT",
        "LISTEN",
    ]


# -- names, origins and Accept (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("10.0.0.5:9000", "10.0.0.5"),
        ("10.0.0.5", "10.0.0.5"),
        (" Dome.Local.:9000 ", "dome.local"),
        ("dome.local.", "dome.local"),
        ("[::1]:9000", "::1"),
        ("[FE80::1]", "fe80::1"),
        ("[::1", ""),
        ("fe80::1", "fe80::1"),  # an IPv6 address without brackets: no port to take off
        ("", ""),
    ],
)
def test_a_host_header_names_the_host_without_its_port(host: str, name: str) -> None:
    assert _host_name(host) == name


@pytest.mark.parametrize(
    ("entry", "name"),
    [
        ("http://Dome.lan:9000", "dome.lan"),
        ("https://dome.lan/", "dome.lan"),
        ("Dome.lan:9000", "dome.lan"),
        ("http://", ""),
    ],
)
def test_an_allow_origin_entry_names_its_host(entry: str, name: str) -> None:
    assert _entry_name(entry) == name


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "Stage-PC.example.org.")


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("", False),
        ("10.0.0.5", True),
        ("::1", True),
        ("localhost", True),
        ("stage-pc.example.org", True),  # the machine's name, lower-case, without its final dot
        ("stage-pc.local", True),  # and its zeroconf name
        ("stage-pc.example.org.local", False),
        ("dome.lan", True),  # an origin in allow_origin
        ("wall", True),  # a bare name in allow_origin
        ("visit.example", True),  # visitor_url's host
        ("evil.example", False),
        ("localhost.evil.example", False),
    ],
)
def test_the_bridge_answers_to_addresses_its_own_names_and_those_listed(machine: None, name: str, known: bool) -> None:
    names = KnownNames(("http://dome.lan:9000", "Wall:80"), "https://visit.example/v")
    assert names.known(name) is known


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:9000", "127.0.0.1:9000", True),  # the page's own origin
        ("HTTP://LOCALHOST:9000", "localhost:9000", True),
        ("http://127.0.0.1:9001", "127.0.0.1:9000", False),  # another port is another origin
        ("http://127.0.0.1:9000.evil.example", "127.0.0.1:9000", False),  # exact, not a prefix
        ("http://evil.example/127.0.0.1:9000", "127.0.0.1:9000", False),
        ("http://dome.lan:9000", "10.0.0.5:9000", True),  # listed
        ("http://Dome.lan:9000/", "10.0.0.5:9000", True),
        ("http://dome.lan:9000.evil.example", "10.0.0.5:9000", False),
        ("http://dome.lan:900", "10.0.0.5:9000", False),
        ("http://dome.lan", "10.0.0.5:9000", False),
        ("null", "10.0.0.5:9000", False),
    ],
)
def test_a_websocket_origin_must_be_the_pages_own_or_one_listed_exactly(
    machine: None, origin: str, host: str, allowed: bool
) -> None:
    names = KnownNames(("http://dome.lan:9000/", "wall"))
    assert names.origin_allowed(origin, host) is allowed


@pytest.mark.parametrize(
    ("accept", "html"), [("text/html,application/xhtml+xml", True), ("application/json", False), (None, False)]
)
def test_a_browser_is_one_that_accepts_html(accept: str | None, html: bool) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    assert _wants_html(make_mocked_request("GET", "/", headers=headers)) is html


# -- the server on loopback --------------------------------------------------------------------------

NODES = {
    "/": Node("/", "root"),
    "/ldm3d": Node("/ldm3d", "every address"),
    "/ldm3d/steps": Node("/ldm3d/steps", "steps", "i", READ_WRITE, [{"MIN": 1, "MAX": 50}], default=(20,)),
    "/ldm3d/seed": Node("/ldm3d/seed", "seed", "i", READ_WRITE, default=(-1,)),
    "/ldm3d/go": Node("/ldm3d/go", "a button"),
}

Serve = Callable[..., WebServer]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """``serve(token=…, static=True, values={…})``: a WebServer on 127.0.0.1 (free port), stopped at teardown."""
    servers: list[WebServer] = []

    def start(
        *,
        static: bool = False,
        values: Mapping[str, tuple[Arg, ...]] | None = None,
        visitors: Any = None,
        loop_errors: Any = None,
        page: Any = None,
        bind: str = "127.0.0.1",
        **overrides: Any,
    ) -> WebServer:
        settings = BridgeSettings(**{"host": "10.9.8.7", **overrides})
        files = None
        if static:
            (tmp_path / "index.html").write_text("<html>the page</html>")
            (tmp_path / "app.js").write_text("let page = 1;")
            (tmp_path / "visit.html").write_text("<html>the visitor page</html>")
            files = StaticFiles(
                {
                    "index.html": tmp_path / "index.html",
                    "app.js": tmp_path / "app.js",
                    "visit/index.html": tmp_path / "visit.html",
                }
            )
        server = WebServer(
            settings,
            NODES,
            lambda: dict(values or {}),
            osc_port=9000,
            name="test bridge",
            page=page,
            static=files,
            visitors=visitors,
            loop_errors=loop_errors,
        )
        server.start(bind, 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def ask(
    port: int, target: str, headers: Mapping[str, str] | None = None, host: str | None = ""
) -> tuple[int, dict[str, str], bytes]:
    """One request on a raw loopback socket: (status, headers, body). ``host`` "" is 127.0.0.1:port,
    None sends no Host header (HTTP/1.0)."""
    lines = [f"GET {target} HTTP/{'1.0' if host is None else '1.1'}"]
    if host is not None:
        lines.append(f"Host: {host or f'127.0.0.1:{port}'}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()] + ["Connection: close", "", ""]
    return exchange(port, "\r\n".join(lines).encode())


def exchange(port: int, request: bytes, address: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection((address, port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            if data.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in data:
                break  # upgraded: a WebSocket stays open
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def answer(port: int, target: str, **kwargs: Any) -> tuple[int, Any]:
    status, _, body = ask(port, target, **kwargs)
    return status, json.loads(body) if body else None


def test_oscquery_over_http_answers_each_path_and_attribute(serve: Serve) -> None:
    server = serve(values={"/ldm3d/seed": (5,)})
    server.publish("/ldm3d/steps", (30,))
    server.publish("/ldm3d/seed", (7,))  # the values handed in are newer than what was published
    port = server.port
    got = [
        answer(port, "/ldm3d/steps?VALUE"),
        answer(port, "/ldm3d/st%65ps/?RANGE"),
        answer(port, "/ldm3d/seed?token=x&VALUE&TYPE"),  # the first attribute; key=value pairs are not one
        answer(port, "/ldm3d/seed?%56ALUE"),
        answer(port, "/ldm3d/go?VALUE"),
        answer(port, "/ldm3d/go?BOGUS"),
        answer(port, "/ldm3d/nope"),
        answer(port, "/ldm3d/go?a=1"),
    ]
    assert got == [
        (200, {"VALUE": [30]}),
        (200, {"RANGE": [{"MIN": 1, "MAX": 50}]}),
        (200, {"VALUE": [5]}),
        (200, {"VALUE": [5]}),
        (204, None),
        (400, None),
        (404, None),
        (200, {"FULL_PATH": "/ldm3d/go", "DESCRIPTION": "a button", "ACCESS": 0}),
    ]


def test_host_info_names_the_osc_address_and_the_one_asked(serve: Serve) -> None:
    """OSC's address as the bridge was told it, or the one asked when it listens on every address."""
    answers, expected = [], []
    here = "127.0.0.2"  # (a loopback address that is not the one assumed when the socket's is unknown)
    for osc_host, osc_ip in (("10.9.8.7", "10.9.8.7"), ("0.0.0.0", here), ("::", here), ("", here)):
        server = serve(host=osc_host, bind=here)
        request = f"GET /?HOST_INFO HTTP/1.1\r\nHost: {here}\r\nConnection: close\r\n\r\n".encode()
        status, _, body = exchange(server.port, request, here)
        answers.append((status, json.loads(body)))
        expected.append((200, host_info("test bridge", osc_ip, 9000, here, server.port)))
    assert answers == expected


def test_the_whole_tree_and_the_server_header(serve: Serve) -> None:
    server = serve()
    status, headers, body = ask(server.port, "/", {"Accept": "application/json"})
    assert (status, headers["server"], headers["content-type"]) == (200, SERVER, "application/json; charset=utf-8")
    assert json.loads(body) == node_json("/", NODES, {})
    bad = exchange(server.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n")
    assert (bad[0], bad[1]["server"]) == (400, SERVER)  # aiohttp's own answer names the bridge only


NAMES = (
    ("localhost:1234", 200),
    ("127.0.0.1", 200),
    ("[::1]:80", 200),
    ("dome.lan", 200),
    (None, 200),  # HTTP/1.0 without Host: nothing to rebind
    ("evil.example", 403),
    ("dome.lan.evil.example:80", 403),
    ("", 403),  # an empty Host
    ("[", 403),
)


def test_a_request_by_a_name_that_is_not_the_bridges_is_refused(serve: Serve) -> None:
    server = serve(allow_origin=("http://dome.lan:9000",))
    statuses = [ask(server.port, "/ldm3d/go?ACCESS", host=host if host != "" else " ")[0] for host, _ in NAMES]
    assert statuses == [status for _, status in NAMES]


def test_a_refused_name_is_told_how_to_allow_it(serve: Serve) -> None:
    server = serve()
    status, _, body = ask(server.port, "/", host="Evil.Example:80")
    assert (status, body.decode()) == (
        403,
        "this bridge is not 'evil.example' (DNS rebinding?); to reach it by that name, start it with "
        "--allow-origin evil.example\n",
    )


def upgrade(
    origin: str | None, key: str = "dGhlIHNhbXBsZSBub25jZQ==", upgrade_word: str = "websocket"
) -> dict[str, str]:
    headers = {
        "Upgrade": upgrade_word,
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    return {**headers, **({"Origin": origin} if origin is not None else {})}


def test_a_websocket_from_another_sites_page_is_refused(serve: Serve) -> None:
    server = serve(allow_origin=("http://dome.lan:9000",))
    port = server.port
    own = f"http://127.0.0.1:{port}"
    statuses = [
        ask(port, "/", upgrade(own))[0],
        ask(port, "/", upgrade(None))[0],  # not a browser: no Origin
        ask(port, "/", upgrade("http://dome.lan:9000"))[0],
        ask(port, "/", upgrade(f"{own}.evil.example"))[0],
        ask(port, "/", upgrade("http://evil.example", upgrade_word="WebSocket"))[0],
        ask(port, "/ldm3d/go?ACCESS", {"Origin": "http://evil.example"})[0],  # no upgrade: a plain GET
    ]
    assert statuses == [101, 101, 101, 403, 403, 200]
    body = ask(port, "/", upgrade("http://evil.example"))[2]
    assert body == b"WebSocket from http://evil.example refused: not this bridge's page\n"


TOKEN_CASES: tuple[tuple[str, dict[str, str], int], ...] = (
    ("/ldm3d/go?ACCESS", {}, 401),
    ("/ldm3d/go?token=s3cret&ACCESS", {}, 200),
    ("/ldm3d/go?token=s3cre&ACCESS", {}, 401),
    ("/ldm3d/go?ACCESS", {"X-Ldm3d-Token": "s3cret"}, 200),
    ("/ldm3d/go?ACCESS", {"Authorization": "Bearer s3cret"}, 200),
    ("/ldm3d/go?ACCESS", {"Authorization": "Bearer  s3cret"}, 401),
    ("/ldm3d/go?ACCESS", {"Authorization": "bearer s3cret"}, 401),
    ("/ldm3d/go?ACCESS", {"Authorization": "Basic s3cret"}, 401),
    ("/ldm3d/go?ACCESS", {"Authorization": "Bearer s3cret2"}, 401),
    ("/ldm3d/go?ACCESS", {"Authorization": "Bearer s3cretX"[:12]}, 401),
    ("/", {"Accept": "text/html"}, 200),  # the page itself: no secret in it, and it must load to ask
    ("/ui/app.js", {}, 200),
    ("/ui/nope.js", {}, 404),
    ("/", {"Accept": "application/json"}, 401),  # the tree is not the page
    ("/ui", {}, 401),
    ("/", {"Accept": "text/html", **upgrade(None)}, 401),  # an upgrade at / is the event stream
)


def test_with_a_token_every_request_carries_it_but_the_pages_own_files(serve: Serve) -> None:
    server = serve(token="s3cret", static=True)
    statuses = [ask(server.port, target, headers)[0] for target, headers, _ in TOKEN_CASES]
    assert statuses == [status for _, _, status in TOKEN_CASES]


def test_without_the_token_the_answer_says_how_to_give_it(serve: Serve) -> None:
    server = serve(token="s3cret", static=True)
    _, _, body = ask(server.port, "/ldm3d/go")
    assert body == "this bridge needs its token: ?token=… or X-Ldm3d-Token\n".encode()


def test_the_page_is_served_to_a_browser_and_the_tree_to_oscquery_clients(serve: Serve) -> None:
    server = serve(static=True)
    page = ask(server.port, "/", {"Accept": "text/html"})
    tree = answer(server.port, "/", headers={"Accept": "*/*"})
    assert (page[0], page[2], tree) == (200, b"<html>the page</html>", (200, node_json("/", NODES, {})))
    assert ask(server.port, "/ui/app.js")[2] == b"let page = 1;"


class Visitors:
    def status(self, ticket: str) -> dict[str, object]:
        return {"ticket": ticket, "state": "waiting"}


def test_the_visitor_routes_need_no_token(serve: Serve) -> None:
    server = serve(token="s3cret", static=True, visitors=Visitors())
    statuses = [ask(server.port, target)[0] for target in ("/visit/status/abc", "/visit/statusx", "/visitx")]
    assert statuses == [200, 401, 401]


def test_the_visitor_page_comes_from_the_pages_files(serve: Serve) -> None:
    server = serve(token="s3cret", static=True, visitors=Visitors())
    assert ask(server.port, "/visit")[::2] == (200, b"<html>the visitor page</html>")


def test_without_visitors_their_paths_are_not_the_publics(serve: Serve) -> None:
    server = serve(token="s3cret", static=True)
    assert ask(server.port, "/visit/status/abc")[0] == 401


async def _listen(port: int, script: Callable[[aiohttp.ClientWebSocketResponse], Any]) -> Any:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/") as ws:
        return await script(ws)


async def _reply(ws: aiohttp.ClientWebSocketResponse) -> Any:
    message = await ws.receive(timeout=5)
    return json.loads(message.data) if message.type == aiohttp.WSMsgType.TEXT else message.data


def test_listen_streams_each_listened_address_as_binary_osc_and_ignore_stops_it(serve: Serve) -> None:
    server = serve()

    async def script(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
        heard = []
        await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/ldm3d/steps"}))
        await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/ldm3d/seed"}))
        await ws.send_str("not json")  # answered in order: the LISTENs before it are in place
        heard.append(await _reply(ws))
        assert server.gate._busy.total() == 1  # the open WebSocket is a request being handled
        server.publish("/ldm3d/go", ())
        server.publish("/ldm3d/steps", (30,))
        server.publish("/ldm3d/seed", (4,))
        heard += [await _reply(ws), await _reply(ws)]
        await ws.send_str(json.dumps({"COMMAND": "IGNORE", "DATA": "/ldm3d/steps"}))
        await ws.send_str(json.dumps({"COMMAND": "IGNORE", "DATA": "/ldm3d/never"}))  # ignored already
        await ws.send_str(json.dumps({"COMMAND": "LISTEN"}))
        heard.append(await _reply(ws))
        server.publish("/ldm3d/steps", (31,))
        server.publish("/ldm3d/seed", (5,))
        heard.append(await _reply(ws))
        return heard

    error = {"ERROR": 'send {"COMMAND": "LISTEN" or "IGNORE", "DATA": "/ldm3d/…"}'}
    assert asyncio.run(_listen(server.port, script)) == [
        error,
        encode_message("/ldm3d/steps", 30),
        encode_message("/ldm3d/seed", 4),
        error,
        encode_message("/ldm3d/seed", 5),
    ]


def test_a_command_that_cannot_be_done_is_answered_with_why(serve: Serve) -> None:
    server = serve()
    commands = [
        {"COMMAND": "LISTEN", "DATA": "/ldm3d/nope"},
        {"COMMAND": "LISTEN", "DATA": ["/ldm3d/steps"]},
        {"COMMAND": "IGNORE", "DATA": 3},
        {"COMMAND": "SUBSCRIBE", "DATA": "/ldm3d/steps"},
    ]

    async def script(ws: aiohttp.ClientWebSocketResponse) -> Any:
        replies = []
        for command in commands:
            await ws.send_str(json.dumps(command))
            replies.append(await _reply(ws))
        return replies

    assert asyncio.run(_listen(server.port, script)) == [
        {"ERROR": "cannot LISTEN '/ldm3d/nope'"},
        {"ERROR": "cannot LISTEN ['/ldm3d/steps']"},
        {"ERROR": "cannot IGNORE 3"},
        {"ERROR": "cannot SUBSCRIBE '/ldm3d/steps'"},
    ]


def test_a_command_that_is_not_one_is_answered_with_the_form(serve: Serve) -> None:
    server = serve()
    texts = ["[1, 2]", '{"COMMAND": "LISTEN"}', "[" * 100_000, '"LISTEN"']

    async def script(ws: aiohttp.ClientWebSocketResponse) -> Any:
        replies = []
        for text in texts:
            await ws.send_str(text)
            replies.append(await _reply(ws))
        return replies

    form = {"ERROR": 'send {"COMMAND": "LISTEN" or "IGNORE", "DATA": "/ldm3d/…"}'}
    assert asyncio.run(_listen(server.port, script)) == [form] * len(texts)


def test_listeners_are_closed_and_forgotten_when_the_server_stops(serve: Serve) -> None:
    server = serve()

    async def script(ws: aiohttp.ClientWebSocketResponse) -> tuple[Any, bool]:
        await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/ldm3d/steps"}))
        await ws.send_str("x")
        await _reply(ws)
        await asyncio.get_running_loop().run_in_executor(None, server.stop)
        message = await ws.receive(timeout=5)
        return message.type, server._thread is not None and server._thread.is_alive()

    assert asyncio.run(_listen(server.port, script)) == (aiohttp.WSMsgType.CLOSE, False)
    server.publish("/ldm3d/steps", (3,))  # after the loop closed: nobody listens, nothing raised


def test_a_port_that_is_taken_is_named_with_what_to_do(serve: Serve) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = WebServer(BridgeSettings(), NODES, dict, osc_port=9000, name="x")
        started = time.monotonic()
        with pytest.raises(BridgeError) as caught:
            server.start("127.0.0.1", port)
    assert time.monotonic() - started < 5  # told at once, not when start gives up waiting (10 s)
    assert str(caught.value).startswith(f"cannot serve HTTP on 127.0.0.1:{port}: ")
    assert str(caught.value).endswith(" (another program on that TCP port? choose one with --http-port, or --no-http)")


def test_the_event_loops_errors_go_to_the_handler_handed_in(serve: Serve) -> None:
    seen: list[str] = []
    server = serve(loop_errors=lambda loop, context: seen.append(context["message"]))
    assert server._loop is not None
    server._loop.call_soon_threadsafe(server._loop.call_exception_handler, {"message": "accept failed"})
    ask(server.port, "/ldm3d/go?ACCESS")  # a request after it: the loop ran the call
    assert seen == ["accept failed"]


def test_the_gate_counts_the_servers_connections_and_bounds_them(serve: Serve) -> None:
    server = serve(http_max_connections=2, http_connections_per_host=1)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as refused,
    ):
        try:
            got = refused.recv(10)
        except ConnectionResetError:  # aborted at once: nothing read, nothing answered
            got = b""
        assert got == b""
    assert (server.gate.total, server.gate.per_host) == (2, 1)


def test_without_the_pages_files_nothing_is_let_through_without_the_token(serve: Serve) -> None:
    server = serve(token="s3cret")
    assert [ask(server.port, "/", {"Accept": "text/html"})[0], ask(server.port, "/ui/app.js")[0]] == [401, 401]


def test_without_the_pages_files_a_browser_gets_the_tree(serve: Serve) -> None:
    server = serve()
    assert answer(server.port, "/", headers={"Accept": "text/html"}) == (200, node_json("/", NODES, {}))


def test_events_are_sent_uncompressed_whatever_the_client_offers(serve: Serve) -> None:
    """Events are framed once for every listener: no listener may have them compressed its own way."""
    server = serve()
    status, headers, _ = ask(server.port, "/", {**upgrade(None), "Sec-WebSocket-Extensions": "permessage-deflate"})
    assert (status, "sec-websocket-extensions" in headers) == (101, False)


class FakePage:
    """The operator page as the server drives it: attached with the bound, given each event, closed."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def attach(self, app: Any, max_unsent: int) -> None:
        assert isinstance(app, aiohttp_web.Application)  # its routes go on the server's own application
        self.calls.append(("attach", max_unsent))

    def event(self, address: str, args: tuple[Arg, ...], sent_at: float) -> None:
        self.calls.append(("event", address, args, sent_at))

    async def close_pages(self) -> None:
        self.calls.append(("close_pages",))

    def close(self) -> None:
        self.calls.append(("close",))


def test_the_page_is_attached_with_the_bound_given_each_event_with_its_time_and_closed_last(serve: Serve) -> None:
    page = FakePage()
    server = serve(page=page, http_max_unsent_bytes=100_000)
    before = time.time()
    server.publish("/ldm3d/steps", (3,))
    deadline = time.monotonic() + 5
    while len(page.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.stop()
    assert page.calls[0] == ("attach", 100_000) and page.calls[2:] == [("close_pages",), ("close",)]
    name, address, args, sent_at = page.calls[1]
    assert (name, address, args) == ("event", "/ldm3d/steps", (3,)) and before <= sent_at <= time.time()


def test_a_server_that_cannot_start_closes_its_page_and_nothing_else() -> None:
    page = FakePage()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = WebServer(BridgeSettings(), NODES, dict, osc_port=9000, name="x", page=cast(Any, page))
        with pytest.raises(BridgeError):
            server.start("127.0.0.1", taken.getsockname()[1])
    assert page.calls == [("attach", 4 << 20), ("close_pages",)]


def test_a_listener_that_does_not_read_is_dropped_past_the_bound(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(http_max_unsent_bytes=65536)
    stalled = never_reads(server.port, "/")
    try:
        text = json.dumps({"COMMAND": "LISTEN", "DATA": "/ldm3d/steps"}).encode()
        stalled.sendall(bytes((0x81, 0x80 | len(text))) + b"\0\0\0\0" + text)  # masked with zeros
        with caplog.at_level(logging.WARNING, logger="bridge.web.outbox"):
            deadline = time.monotonic() + 5
            while not caplog.messages and time.monotonic() < deadline:
                server.publish("/ldm3d/steps", ("x" * 32000,))
                time.sleep(0.002)
        assert caplog.messages[0].startswith("disconnected an OSCQuery listener at 127.0.0.1: it does not read")
    finally:
        stalled.close()


def test_the_visitor_urls_host_is_one_of_the_bridges_names(serve: Serve) -> None:
    """Phones open the QR code's address: its host is a name the bridge answers to, as an allowed origin."""
    server = serve(visitor_url="http://dome.example:8080/visit")
    assert ask(server.port, "/", host="dome.example:8080")[0] == 200
    assert ask(server.port, "/", host="other.example:8080")[0] == 403


def _closed(s: socket.socket) -> bool:
    """The server ended the connection without an answer (a close, or an abort's reset)."""
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True


def test_a_host_outside_the_allowlist_is_closed_before_its_request_is_read(serve: Serve) -> None:
    server = serve(allow=("10.0.0.0/8",))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode())
        assert _closed(s)
    assert ask(serve().port, "/")[0] == 200  # the same request from an allowed host


def test_a_request_whose_headers_come_later_than_http_header_s_is_closed(serve: Serve) -> None:
    server = serve(http_header_s=1.0)
    rest = f"Host: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode()
    for late, answered in ((0.2, True), (1.4, False)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=4) as s:
            s.sendall(b"GET / HTTP/1.1\r\n")
            time.sleep(late)
            s.sendall(rest)
            assert (not _closed(s)) is answered, late


def test_an_event_published_before_the_server_starts_or_after_it_stopped_is_kept_quietly() -> None:
    """The bridge publishes from its workers whatever the server's state: before ``start`` and after
    ``stop`` an event is only kept as its address's value."""
    server = WebServer(BridgeSettings(), NODES, dict, osc_port=9000, name="x")
    server.publish("/ldm3d/steps", (3,))
    server.start("127.0.0.1", 0)
    server.stop()
    server.publish("/ldm3d/steps", (4,))
    assert server._latest["/ldm3d/steps"] == (4,)


def test_the_server_runs_on_one_daemon_thread_named_ldm3d_http_until_stopped(serve: Serve) -> None:
    """Its name is what a stack dump (pytest-timeout's, py-spy's) shows; a daemon thread never keeps a
    bridge's process alive after the bridge's own threads have ended."""
    server = serve()
    named = [t for t in threading.enumerate() if t.name == "ldm3d-http"]
    assert [(t is server._thread, t.daemon) for t in named] == [(True, True)]
    server.stop()
    assert [t for t in threading.enumerate() if t.name == "ldm3d-http"] == []


def test_requests_write_no_access_log(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp's access log would write a line per texture and per query (a page loads dozens a second)."""
    server = serve()
    with caplog.at_level(logging.DEBUG):
        assert ask(server.port, "/ldm3d/steps?VALUE")[0] == 200
        assert ask(server.port, "/nowhere")[0] == 404
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aiohttp")] == []


def test_a_listener_that_disconnects_is_forgotten(serve: Serve) -> None:
    """Hundreds of tablets come and go over an evening: each closed stream is let go, not kept and sent to."""
    server = serve()

    async def script(ws: aiohttp.ClientWebSocketResponse) -> int:
        await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/ldm3d/steps"}))
        await ws.send_str("x")
        await _reply(ws)
        return len(server._listeners) + len(server._outbox._clients)

    assert [asyncio.run(_listen(server.port, script)) for _ in range(3)] == [2, 2, 2]
    deadline = time.monotonic() + 5
    while (server._listeners or server._outbox._clients) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (len(server._listeners), len(server._outbox._clients)) == (0, 0)


def test_the_server_listens_only_on_the_address_it_was_given(serve: Serve) -> None:
    """``--http-host 127.0.0.2`` (or a stage network's address) is the only way in: the port is not open on
    the machine's other addresses."""
    server = serve(bind="127.0.0.2")
    assert exchange(server.port, b"GET /ldm3d/go HTTP/1.0\r\n\r\n", "127.0.0.2")[0] == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


class _ClosingLoop:
    """A loop that closes between ``publish``'s check and its call (another thread stopped the server)."""

    def is_closed(self) -> bool:
        return False

    def call_soon_threadsafe(self, *args: object) -> None:
        raise RuntimeError("Event loop is closed")


def test_an_event_published_as_the_server_stops_is_kept_quietly() -> None:
    server = WebServer(BridgeSettings(), NODES, dict, osc_port=9000, name="x")
    server._loop = cast(asyncio.AbstractEventLoop, _ClosingLoop())
    server.publish("/ldm3d/steps", (5,))
    assert server._latest["/ldm3d/steps"] == (5,)
