"""The command line: one job, the OSC client, settings, and one-line errors."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.cli import main as cli_main
from bridge.cli.main import main
from bridge.osc.codec import decode_packet, encode_message
from bridge.output.lock import LOCK_NAME
from bridge.serve.server import Bridge
from bridge.settings import BridgeSettings, SettingsError, load_settings

Start = Callable[..., Bridge]


@pytest.fixture(autouse=True)
def _tiny_cache(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_generate_writes_a_job_folder_and_prints_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    status = main(
        [
            "-q",
            "generate",
            "a reef",
            "--model",
            "tiny",
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "3",
            "--seed",
            "4",
            "--output",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert status == 0
    folder = Path(captured.out.strip())
    assert folder.parent == out.resolve() and (folder / "depth.tif").is_file()  # the default format
    assert json.loads((folder / "meta.json").read_text())["seed"] == 4
    assert "3/3" in captured.err  # the progress bar


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["generate", "x", "--model", "tiny", "--width", "100"], 1, "width 100 is not allowed"),
        (["generate", "x", "--model", "nope"], 1, "unknown model 'nope'"),
        (["generate", "x", "--model", "tiny", "--device", "cuda"], 1, "available: cpu"),
        (["generate", "x", "--model", "ldm3d-4c", "--offline"], 1, "hf download Intel/ldm3d-4c"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str
) -> None:
    assert main(["-q", *argv, "--output", str(tmp_path / "out")]) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith("ldm3d-bridge: error: ") and message in err and "\n" not in err
    out = tmp_path / "out"
    assert not out.exists() or [p.name for p in out.iterdir()] == [LOCK_NAME]  # no job, nothing partial


def test_bad_settings_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LDM3D_BRIDGE_QUEUE_SIZE", "lots")
    assert main(["-q", "serve"]) == 2
    assert "LDM3D_BRIDGE_QUEUE_SIZE" in capsys.readouterr().err


def test_send_prints_the_answer(start_bridge: Start, capsys: pytest.CaptureFixture[str]) -> None:
    bridge = start_bridge()
    port = str(bridge.address[1])
    assert main(["-q", "send", "/ldm3d/ping", "--port", port]) == 0
    assert capsys.readouterr().out.strip() == "/ldm3d/pong 0.1.0"
    assert main(["-q", "send", "/ldm3d/generate", "a reef", "steps", "2", "--port", port, "--wait"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("/ldm3d/accepted ") and lines[-1].startswith("/ldm3d/ready ")
    assert main(["-q", "send", "/ldm3d/generate", "a reef", "width", "100", "--port", port, "--wait"]) == 1
    assert capsys.readouterr().out.startswith("/ldm3d/error  bad_arguments ")


def test_send_with_no_bridge_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "send", "/ldm3d/ping", "--port", "9", "--timeout", "0.3"]) == 1
    assert "is the bridge running?" in capsys.readouterr().err


def test_send_wait_with_no_bridge_fails_within_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    """It used to wait 10 minutes in silence: no answer within seconds is an error, --wait or not."""
    t0 = time.monotonic()
    assert main(["-q", "send", "/ldm3d/generate", "a reef", "--port", "9", "--wait"]) == 1
    assert time.monotonic() - t0 < 10
    assert capsys.readouterr().err.strip() == (
        "ldm3d-bridge: error: no answer from 127.0.0.1:9 within 3 s (is the bridge running?)"
    )


def test_send_wait_ends_when_the_bridge_goes_silent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bridge that accepted the job and then vanished (no heartbeat, no news) ends the wait."""
    monkeypatch.setattr(cli_main, "SILENCE_S", 1.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:  # answers once, then says nothing
        fake.bind(("127.0.0.1", 0))
        fake.settimeout(10)

        def answer_once() -> None:
            data, sender = fake.recvfrom(65536)
            port = next(m.args[0] for m in decode_packet(data) if m.address == "/ldm3d/subscribe")
            fake.sendto(encode_message("/ldm3d/accepted", "20261202-100000-000-0001", 1), (sender[0], int(port)))

        thread = threading.Thread(target=answer_once)
        thread.start()
        status = main(["-q", "send", "/ldm3d/generate", "x", "--port", str(fake.getsockname()[1]), "--wait"])
        thread.join(10)
    assert status == 1
    out, err = capsys.readouterr()
    assert out.startswith("/ldm3d/accepted 20261202-100000-000-0001 1")
    assert "went silent for 1 s before the job ended" in err


def test_send_says_so_when_the_bridge_is_there_but_does_not_answer(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:  # confirms the subscription, nothing else
        fake.bind(("127.0.0.1", 0))
        fake.settimeout(10)

        def subscribed_only() -> None:
            data, sender = fake.recvfrom(65536)
            port = next(m.args[0] for m in decode_packet(data) if m.address == "/ldm3d/subscribe")
            fake.sendto(encode_message("/ldm3d/subscribed", "127.0.0.1", int(port), 3600), (sender[0], int(port)))

        thread = threading.Thread(target=subscribed_only)
        thread.start()
        status = main(["-q", "send", "/ldm3d/ping", "--port", str(fake.getsockname()[1]), "--timeout", "0.5"])
        thread.join(10)
    assert status == 1 and capsys.readouterr().err.strip().endswith("did not answer /ldm3d/ping within 0.5 s")


def test_send_prints_every_answer_of_a_list(
    start_bridge: Start, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shows = tmp_path / "shows"
    shows.mkdir()
    cues = "".join(f'[[cue]]\nnumber = "{n}"\nprompt = "world {n}"\nseed = {n}\n' for n in range(1, 6))
    (shows / "five.toml").write_text(f'name = "Five"\n{cues}')
    bridge = start_bridge(input_dirs=(str(shows),))
    port = str(bridge.address[1])
    assert main(["-q", "send", "/ldm3d/show/load", "five.toml", "--port", port]) == 0
    capsys.readouterr()
    assert main(["-q", "send", "/ldm3d/cue/list", "--port", port]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["/ldm3d/cue/info", str(n)] for n in range(1, 6)]


def test_send_types_say_what_an_argument_is(start_bridge: Start, capsys: pytest.CaptureFixture[str]) -> None:
    bridge = start_bridge()
    port = str(bridge.address[1])
    typed = ["/ldm3d/generate", "1984", "steps", "2", "--types", "ssi"]
    assert main(["-q", "send", *typed, "--port", port, "--wait"]) == 0
    ready = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert json.loads(Path(ready[4]).read_text())["prompt"] == "1984"  # the meta.json
    assert main(["-q", "send", "/ldm3d/generate", "1984", "--types", "sx", "--port", port]) == 1
    assert capsys.readouterr().err.strip() == (
        "ldm3d-bridge: error: --types 'sx' must give one of i, f, s for each of the 1 arguments (e.g. --types s)"
    )


def test_the_light_commands_never_import_torch(tmp_path: Path) -> None:
    """send, show check and env answer at once: no torch, diffusers or transformers in the process."""
    code = (
        "import sys\n"
        "from bridge.cli.main import main\n"
        "main(['-q', 'show', 'check', 'examples/museum-loop.toml'])\n"
        "main(['-q', 'env'])\n"
        "main(['-q', 'send', '/ldm3d/ping', '--port', '9', '--timeout', '0.2'])\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'accelerate') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    assert "tiny models" in done.stdout and "env --devices" in done.stdout
    assert re.search(r"open files +\d+ \(hard limit (\d+|unlimited)\); serve raises it to \d+", done.stdout)


def test_settings_precedence_file_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('[bridge]\nport = 9100\nmodel = "ldm3d-pano"\nqueue_mode = "latest-wins"\njpeg = true\n')
    env = {"LDM3D_BRIDGE_PORT": "9200", "LDM3D_BRIDGE_DEVICE": "cuda", "OTHER": "x"}
    s = load_settings({"port": 9300, "model": None}, config=str(config), environ=env)
    assert (s.port, s.model, s.queue_mode, s.jpeg, s.device) == (9300, "ldm3d-pano", "latest-wins", True, "cuda")
    assert load_settings({}, environ={}) == BridgeSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [("colour = 3", "unknown setting 'colour'"), ("port = 'x'", "is not a int"), ("queue_mode = 'lifo'", "fifo")],
)
def test_bad_config_files_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings({}, config=str(config), environ={})


def test_serve_reads_allow_and_token_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "serve", "--token-file", str(tmp_path / "missing")]) == 2
    assert "--token-file" in capsys.readouterr().err
    assert main(["-q", "serve", "--allow", "not-a-network"]) == 2
    assert "not a network" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    assert main(["-q", "serve", "--token-file", str(tmp_path / "empty")]) == 2
    assert "empty token" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "cpu,cpu"], "list each device once"),
        (["--ray", "nowhere"], "use local, auto, <head>:<port>"),
        (["--ray", "local", "--device", "cuda:1"], "with ray, use cuda (Ray gives each actor one GPU) or cpu"),
        (["--ray-workers", "0", "--ray", "local"], "ray_workers=0"),
    ],
)
def test_serve_refuses_wrong_worker_settings_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["-q", "serve", *argv, "--port", "0", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ldm3d-bridge: error: ") and message in err and "\n" not in err


def test_a_device_list_is_for_serve_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "generate", "x", "--model", "tiny", "--device", "cpu,mps", "--output", str(tmp_path)]) == 1
    assert "a list of devices is for serve" in capsys.readouterr().err


def test_ray_missing_is_named_with_the_extra_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where the extra is not installed
    assert main(["-q", "serve", "--ray", "local", "--port", "0", "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert "--ray needs Ray: pip install 'ldm3d-bridge[ray]'" in err and "\n" not in err


def test_dev_run_passes_a_command_to_the_installed_bridge() -> None:
    """`./dev run …` is how the README's ldm3d-bridge commands work without activating the venv."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["bash", str(root / "dev"), "run", "send", "/ldm3d/ping", "--port", "9", "--timeout", "0.2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ldm3d-bridge: error: no answer from 127.0.0.1:9 within 0.2 s (is the bridge running?)"
    )


def test_a_busy_http_port_is_one_line_and_nothing_else(tmp_path: Path) -> None:
    """Another program on the TCP port: the error names it, and no asyncio noise follows it."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "bridge.cli", "-q", "serve", "--model", "tiny", "--host", "127.0.0.1",
             "--port", str(port), "--no-zeroconf", "--output", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=120, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"ldm3d-bridge: error: cannot serve HTTP on 127.0.0.1:{port}")
    assert "--http-port" in lines[0]


def test_an_output_folder_under_a_missing_folder_is_a_typo_not_a_new_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    typo = tmp_path / "shwo" / "ldm3d-out"
    assert main(["-q", "generate", "x", "--model", "tiny", "--steps", "1", "--output", str(typo)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ldm3d-bridge: error: output folder {typo}: {typo.parent} does not exist (a typo?); "
        "create it first or choose another --output"
    )
    assert not typo.parent.exists()  # nothing created
    fresh = tmp_path / "ldm3d-out"  # only the folder itself missing: made, and said
    caplog.set_level(logging.INFO, logger="bridge.output.writer")
    assert main(["generate", "x", "--model", "tiny", "--steps", "1", "--width", "64", "--height", "64",
                 "--output", str(fresh)]) == 0  # fmt: skip
    assert fresh.is_dir() and f"created the output folder {fresh}" in caplog.text
