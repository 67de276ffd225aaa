"""Text → 3D object jobs end to end with tiny-ln3diff: ``ldm3d-bridge object`` (and, over OSC,
``/ldm3d/object``); the files read back by trimesh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trimesh

from bridge.cli.main import main

pytestmark = pytest.mark.timeout(120)

#: Small enough that a job takes well under a second on the CPU.
FAST = ["--steps", "2", "--resolution", "16"]


@pytest.fixture(autouse=True)
def _tiny_cache(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds tiny-ln3diff under $XDG_CACHE_HOME: once per run, in the session's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny_dir / "xdg"))


def test_object_writes_an_object_folder_prints_it_and_says_the_licence_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["-q", "object", "a red lantern", "--object-model", "tiny-ln3diff", "--seed", "3", *FAST]
    assert main([*argv, "--output", str(out)]) == 0
    captured = capsys.readouterr()
    folder = Path(captured.out.strip())
    assert folder.parent == (out / "objects").resolve()
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["kind"], meta["prompt"], meta["seed"], meta["steps"], meta["resolution"]) == (
        "object",
        "a red lantern",
        3,
        2,
        16,
    )
    assert meta["model"] == "builtin:tiny-ln3diff" and meta["vertices"] > 0 and meta["faces"] > 0
    assert captured.err.count("licence: ") == 1 and meta["licence"] in captured.err
    assert "2/2" in captured.err  # the progress bar
    mesh = trimesh.load(folder / "mesh.glb", process=False, force="mesh")
    assert (len(mesh.vertices), len(mesh.faces)) == (meta["vertices"], meta["faces"])
    assert not (out / "latest.json").exists()  # an object is no world


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--object-model", "tiny-ln3diff", "--steps", "0"], "ldm3d-bridge: error: steps 0 is out of range"),
        (["--object-model", "tiny-ln3diff", "--resolution", "100000"], "ldm3d-bridge: error: resolution 100000"),
        (["--object-model", "ln3diff", "--offline"], "`hf download yslan/LN3Diff "),
        (["--object-model", "shap-e-xl"], "ldm3d-bridge: error: unknown object model 'shap-e-xl'"),
        (["--object-model", "tiny-ln3diff", "--device", "cuda:0,cuda:1"], "a list of devices is for serve"),
    ],
)
def test_a_bad_object_request_or_a_missing_model_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert main(["-q", "object", "a cup", *argv, "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert says in last and last.startswith("ldm3d-bridge: error: ")
    assert not (tmp_path / "out" / "objects").exists()
