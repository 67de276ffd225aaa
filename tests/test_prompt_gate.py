"""Prompt rules in a served bridge: refused before the stage, the queue or a show, for every way a
prompt comes in; reloaded over OSC and on SIGHUP (the real ``serve`` process), the previous rules
kept when the file has a mistake."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.cli.main import main
from bridge.osc.client import OscClient
from bridge.output.job_ids import JOB_ID_RE
from bridge.serve.server import Bridge
from ldm3d_engine.models.ldm3d import Engine

from .served import POSIX, serve_tiny

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]


def _error(client: OscClient) -> tuple[object, ...]:
    return client.wait_for(["/ldm3d/error"], 10)[-1].args


def test_a_refused_prompt_never_reaches_the_stage_or_the_queue(
    start_bridge: Start, client_for: ClientFor, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text("# the museum's list\nnude\nblood bath\nre:gor+e\n")
    bridge = start_bridge(prompt_rules=str(rules))
    client = client_for(bridge)
    for prompt in ("a N.U.D.E statue", "ａ ｎｕｄｅ statue", "a nu\u200bde statue", "BLOOD-bath at dawn", "gorrre"):
        client.send("/ldm3d/generate", prompt, "steps", 1)
        _, code, message = _error(client)
        assert code == "refused_prompt" and "nude" not in str(message).lower() and "blood" not in str(message)
    client.send("/ldm3d/prompt", "a nude statue")  # the stage prompt every subscriber's panel would show
    assert _error(client)[1] == "refused_prompt"
    client.send("/ldm3d/prompt", "a denuded hillside")  # a word inside another word is not the word
    assert client.wait_for(["/ldm3d/stage"], 10)[-1].args == ("prompt", "a denuded hillside")
    assert bridge.stage.get()["prompt"] == "a denuded hillside"
    client.send("/ldm3d/go", 1)
    assert client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 60)[-1].address == "/ldm3d/ready"
    client.send("/ldm3d/stats")
    stats = client.wait_for(["/ldm3d/stats"], 10)[-1].args
    assert stats[stats.index("error_refused_prompt") + 1] == 6
    assert len([p for p in bridge.writer.root.iterdir() if JOB_ID_RE.match(p.name)]) == 1  # the one job


def test_rules_reload_over_osc_and_a_broken_file_keeps_the_previous_rules(
    start_bridge: Start, client_for: ClientFor, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('words = ["nude"]\n')
    client = client_for(start_bridge(prompt_rules=str(rules)))
    client.send("/ldm3d/generate", "a glacier", "steps", 1)
    assert client.wait_for(["/ldm3d/accepted", "/ldm3d/error"], 10)[-1].address == "/ldm3d/accepted"
    rules.write_text('words = ["nude", "glacier"]\nphrases = ["ice cave"]\n')
    client.send("/ldm3d/rules/reload", 0)  # a button's release does nothing
    client.send("/ldm3d/rules/reload", 1)
    assert client.wait_for(["/ldm3d/rules"], 10)[-1].args == (3,)
    client.send("/ldm3d/generate", "a Glacier", "steps", 1)
    assert _error(client)[1] == "refused_prompt"
    rules.write_text('words = ["nude"]\npatterns = ["("]\n')
    client.send("/ldm3d/rules/reload")
    _, code, message = _error(client)
    assert code == "bad_rules" and str(message).startswith("not reloaded, the previous 3 rules stay in force: ")
    assert "rules.toml:2" in str(message)
    client.send("/ldm3d/generate", "an ice  cave", "steps", 1)  # the previous rules are still in force
    assert _error(client)[1] == "refused_prompt"


def test_a_show_with_a_refused_cue_is_not_loaded(start_bridge: Start, client_for: ClientFor, tmp_path: Path) -> None:
    shows = tmp_path / "shows"
    shows.mkdir()
    cues = '[[cue]]\nnumber = 1\nprompt = "a reef"\nseed = 1\n\n[[cue]]\nnumber = 2\nprompt = "a nude reef"\nseed = 2\n'
    (shows / "museum.toml").write_text('name = "Museum"\n' + cues)
    (tmp_path / "rules.txt").write_text("nude\n")
    bridge = start_bridge(prompt_rules=str(tmp_path / "rules.txt"), input_dirs=(str(shows),))
    client = client_for(bridge)
    client.send("/ldm3d/show/load", "museum.toml")
    _, code, message = _error(client)
    assert code == "refused_prompt" and "cue 2" in str(message) and "nude" not in str(message)
    assert bridge.shows.show is None


def test_serve_refuses_to_start_with_an_unreadable_rules_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.txt").write_text("fine\nre:[unclosed\n")
    for path, says in ((tmp_path / "missing.txt", "cannot read prompt rules"), (tmp_path / "bad.txt", "bad.txt:2")):
        argv = ["-q", "serve", "--model", "tiny", "--port", "0", "--host", "127.0.0.1", "--no-zeroconf"]
        assert main([*argv, "--output", str(tmp_path / "out"), "--prompt-rules", str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("ldm3d-bridge: error:") and says in err


@pytest.mark.skipif(not POSIX, reason="SIGHUP is POSIX")
def test_sighup_rereads_the_rules_of_the_real_server(tmp_path: Path, load_tiny: Callable[[str], Engine]) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ldm3d-bridge").symlink_to(load_tiny("tiny").location.folder.parent, target_is_directory=True)
    rules = tmp_path / "rules.txt"
    rules.write_text("nude\n")
    proc, port = serve_tiny(tmp_path / "out", "--no-http", "--prompt-rules", str(rules), cache=cache)
    try:
        with OscClient("127.0.0.1", port) as client:
            client.send("/ldm3d/prompt", "a glacier")
            assert client.wait_for(["/ldm3d/stage", "/ldm3d/error"], 10)[-1].address == "/ldm3d/stage"
            rules.write_text("nude\nglacier\n")
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while True:  # the serve loop rereads the file within its next 0.2 s tick
                client.send("/ldm3d/prompt", "a glacier")
                last = client.wait_for(["/ldm3d/stage", "/ldm3d/error"], 10)[-1]
                if last.address == "/ldm3d/error" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert last.args[1] == "refused_prompt"
            assert proc.poll() is None  # SIGHUP does not end the server
    finally:
        proc.terminate()
        proc.wait(30)
