"""The image safety checker: the tiny models' own checker (diffusers' StableDiffusionSafetyChecker at
a tiny size, random weights) made to flag a known picture through its own concepts and thresholds,
in the engine, on the command line and in a served bridge."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.cli.main import main
from bridge.osc.client import OscClient
from bridge.serve.server import Bridge
from ldm3d_engine import EngineSettings, GenerateRequest, ModelNotAvailable, UnknownModel, UnsafeContent, load_engine
from ldm3d_engine.models.base import EngineBase
from ldm3d_engine.models.loading import ModelLocation, locate_safety_checker
from ldm3d_engine.presets import get_preset
from ldm3d_engine.safety.checker import views

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
#: Above every other tiny picture's similarity to the flagged one (they reach ~0.98), below its own (1.0).
THRESHOLD = 0.995


def flagging_checker(engine: EngineBase, picture: np.ndarray, folder: Path, view: int, wrap: bool) -> Path:
    """A copy of ``engine``'s checker, saved on its own in ``folder``, whose first concept is the
    embedding of view ``view`` of ``picture`` with threshold :data:`THRESHOLD`."""
    checker = engine.safety
    assert checker is not None
    target = checker.embed([views(picture, wrap)[view]])[0]
    model = copy.deepcopy(checker.model)
    with torch.no_grad():
        model.concept_embeds[0] = target.to(model.concept_embeds.dtype)
        model.concept_embeds_weights[0] = THRESHOLD
    model.save_pretrained(folder)
    checker.processor.save_pretrained(folder)
    return folder


def flagging_tiny_reef(engine: EngineBase, seed: int, folder: Path) -> Path:
    """:func:`flagging_checker` for the tiny model's 64×64, 2-step "a reef" of ``seed`` (the picture
    the tests then ask for, by OSC, the command line or a cue)."""
    request = GenerateRequest("a reef", seed=seed, steps=2, width=64, height=64)
    picture = engine.generate(request).rgb  # type: ignore[attr-defined]
    return flagging_checker(engine, picture, folder, view=0, wrap=False)


def test_views_cover_a_panorama_and_its_seam() -> None:
    columns = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (128, 1, 3))  # each column its own value
    wrapped = views(columns, wrap=True)
    assert len(wrapped) == 4 and all(v.shape == (128, 128, 3) for v in wrapped)
    seam = wrapped[3][0, :, 0]
    assert seam[0] == 192 and seam[63] == 255 and seam[64] == 0 and seam[127] == 63  # across the seam
    flat = views(columns, wrap=False)
    assert len(flat) == 3 and [int(v[0, 0, 0]) for v in flat] == [0, 64, 128]
    assert set(np.concatenate([v[0, :, 0] for v in flat]).tolist()) == set(range(256))  # every column seen
    tall = views(np.zeros((300, 100, 3), np.uint8), wrap=True)  # wrap is horizontal: a tall picture is cut
    assert len(tall) == 5 and all(v.shape == (100, 100, 3) for v in tall)
    assert len(views(np.zeros((64, 64, 3), np.uint8), wrap=True)) == 1


def test_every_picture_is_checked_and_says_so(load_tiny: Callable[[str], EngineBase]) -> None:
    engine = load_tiny("tiny-pano")
    result = engine.generate(GenerateRequest("a reef", seed=3, steps=2, width=128, height=64))  # type: ignore[attr-defined]
    assert result.safety == "passed" and result.timings.safety_s > 0


def test_a_flagged_seam_is_dropped_and_other_pictures_pass(
    load_tiny: Callable[[str], EngineBase], tiny_dir: Path, tmp_path: Path
) -> None:
    request = GenerateRequest("a reef", seed=7, steps=2, width=128, height=64)  # seamless: the pano default
    picture = load_tiny("tiny-pano").generate(request).rgb  # type: ignore[attr-defined]
    # Only the view across the left/right seam carries the flagged content (the pipelines' one
    # centre crop would never see it).
    folder = flagging_checker(load_tiny("tiny-pano"), picture, tmp_path / "checker", view=3, wrap=True)
    engine = load_engine(EngineSettings(model="tiny-pano", tiny_dir=str(tiny_dir), safety_model=str(folder)))
    with pytest.raises(UnsafeContent, match=r"flagged the picture \(1 of 4 views\)"):
        engine.generate(request)
    other = engine.generate(GenerateRequest("a reef", seed=8, steps=2, width=128, height=64))
    assert other.safety == "passed"


def test_off_and_models_without_a_checker(load_tiny: Callable[[str], EngineBase], tiny_dir: Path) -> None:
    off = load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir), safety=False))
    assert off.safety is None and off.generate(GenerateRequest("a", steps=1, width=64, height=64)).safety == "off"
    compvis = load_engine(EngineSettings(model="tiny-ldm-text", tiny_dir=str(tiny_dir)))  # no checker in the folder
    assert compvis.safety is None
    assert compvis.generate(GenerateRequest("a", steps=1, width=64, height=64)).safety == "no checker"
    tiny_folder = Path(str(load_tiny("tiny").location.folder))
    given = load_engine(EngineSettings(model="tiny-ldm-text", tiny_dir=str(tiny_dir), safety_model=str(tiny_folder)))
    assert given.generate(GenerateRequest("a", steps=1, width=64, height=64)).safety == "passed"


def test_a_folder_that_names_a_checker_it_lacks_is_refused(
    load_tiny: Callable[[str], EngineBase], tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(Path(str(load_tiny("tiny").location.folder)), folder)
    shutil.rmtree(folder / "safety_checker")
    with pytest.raises(UnknownModel, match=r"lacks safety_checker/ or feature_extractor/.*--safety off"):
        load_engine(EngineSettings(model=str(folder), preset="tiny"))
    assert load_engine(EngineSettings(model=str(folder), preset="tiny", safety=False)).safety is None


def test_an_offline_hub_snapshot_without_its_checker_says_how_to_fetch_it(tmp_path: Path) -> None:
    # A Hugging Face cache holding Intel/ldm3d-pano as fetched before the checker was fetched too.
    repo = tmp_path / "hub" / "models--Intel--ldm3d-pano"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    index = {"_class_name": "StableDiffusionLDM3DPipeline", "safety_checker": ["stable_diffusion", "X"]}
    (snapshot / "model_index.json").write_text(json.dumps(index))
    location = ModelLocation(snapshot, "Intel/ldm3d-pano", get_preset("ldm3d-pano"))
    settings = EngineSettings(model="ldm3d-pano", offline=True, cache_dir=str(tmp_path / "hub"))
    with pytest.raises(ModelNotAvailable, match=r'hf download Intel/ldm3d-pano --include "safety_checker/\*"'):
        locate_safety_checker(location, settings)


def test_the_command_line_writes_nothing_for_a_flagged_picture(
    load_tiny: Callable[[str], EngineBase], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = flagging_tiny_reef(load_tiny("tiny"), 4, tmp_path / "checker")
    out = tmp_path / "out"
    argv = ["-q", "generate", "a reef", "--model", "tiny", "--width", "64", "--height", "64", "--steps", "2"]
    env_dir = ["--output", str(out), "--safety-model", str(folder)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the tiny model built there
        capsys.readouterr()
        assert main([*argv, "--seed", "4", *env_dir]) == 1
        last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar: one line
        assert last.startswith("ldm3d-bridge: error: the safety checker") and "flagged the picture" in last
        assert not out.exists() or not [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
        assert main([*argv, "--seed", "5", *env_dir]) == 0
    written = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(written) == 1 and json.loads((written[0] / "meta.json").read_text())["safety_check"] == "passed"


def test_a_flagged_job_ends_in_unsafe_content_and_the_screen_keeps_its_world(
    start_bridge: Start, client_for: ClientFor, load_tiny: Callable[[str], EngineBase], tiny_dir: Path, tmp_path: Path
) -> None:
    folder = flagging_tiny_reef(load_tiny("tiny"), 7, tmp_path / "checker")
    settings = EngineSettings(model="tiny", tiny_dir=str(tiny_dir), safety_model=str(folder))
    bridge = start_bridge(engine_factory=lambda: load_engine(settings))
    client = client_for(bridge)
    client.send("/ldm3d/generate", "a reef", "seed", 8, "steps", 2)
    shown = client.wait_for(("/ldm3d/ready", "/ldm3d/error"), timeout=60)[-1]
    assert shown.address == "/ldm3d/ready"
    meta = json.loads(Path(str(shown.args[3])).read_text())
    assert meta["safety_check"] == "passed" and meta["timings"]["safety_s"] > 0
    client.send("/ldm3d/generate", "a reef", "seed", 7, "steps", 2)
    accepted, *_, ended = client.wait_for(("/ldm3d/ready", "/ldm3d/error"), timeout=60)
    assert ended.address == "/ldm3d/error" and ended.args[:2] == (accepted.args[0], "unsafe_content")
    assert "flagged" in str(ended.args[2])
    jobs = [p.name for p in bridge.writer.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert jobs == [shown.args[0]]  # nothing of the flagged job was written
    latest = json.loads((bridge.writer.root / "latest.json").read_text())
    assert latest["job_id"] == shown.args[0]  # what the screen shows stays
    client.send("/ldm3d/stats")
    stats = client.wait_for(("/ldm3d/stats",), timeout=10)[-1].args
    assert stats[stats.index("unsafe_content") + 1] == 1


def test_pregen_skips_a_flagged_cue_renders_the_others_and_says_which(
    load_tiny: Callable[[str], EngineBase], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = flagging_tiny_reef(load_tiny("tiny"), 4, tmp_path / "checker")
    cue = 'number = {n}\nprompt = "a reef"\nseed = {seed}\nsteps = 2\nwidth = 64\nheight = 64\n'
    show = tmp_path / "show.toml"
    show.write_text('name = "Night"\n' + "".join("[[cue]]\n" + cue.format(n=n, seed=s) for n, s in ((1, 4), (2, 5))))
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        capsys.readouterr()
        argv = ["-q", "pregen", str(show), "--model", "tiny", "--output", str(out), "--safety-model", str(folder)]
        assert main(argv) == 1
    captured = capsys.readouterr()
    assert "Night: 1 scenes in the library (1 rendered now)" in captured.out
    assert "cue 1: the safety checker flagged its picture; skipped" in captured.err
    assert (
        captured.err.strip()
        .splitlines()[-1]
        .startswith("ldm3d-bridge: error: the safety checker flagged the pictures of cue 1")
    )
    scenes = [p for p in (out / "scenes").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(scenes) == 1 and json.loads((scenes[0] / "meta.json").read_text())["cue"] == "2"


def test_a_flagged_cue_shows_the_fallback_and_never_enters_the_scene_library(
    start_bridge: Start, client_for: ClientFor, load_tiny: Callable[[str], EngineBase], tiny_dir: Path, tmp_path: Path
) -> None:
    folder = flagging_tiny_reef(load_tiny("tiny"), 7, tmp_path / "checker")
    shows = tmp_path / "shows"
    shows.mkdir()
    cue = '[[cue]]\nnumber = {n}\nprompt = "a reef"\nseed = {seed}\nsteps = 2\nwidth = 64\nheight = 64\n'
    text = 'name = "Reef"\nfallback = "0"\n' + cue.format(n=0, seed=8) + cue.format(n=1, seed=7)
    (shows / "reef.toml").write_text(text)
    settings = EngineSettings(model="tiny", tiny_dir=str(tiny_dir), safety_model=str(folder))
    bridge = start_bridge(engine_factory=lambda: load_engine(settings), input_dirs=(str(shows),))
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "reef.toml")
    fallback = client.wait_for(["/ldm3d/ready"], 60)[-1].args[0]  # cue 0, rendered into the library
    client.send("/ldm3d/cue", "1")
    seen = client.wait_for(["/ldm3d/ready"], 60)  # the flagged cue fails; the fallback is shown again
    assert [m.args[1] for m in seen if m.address == "/ldm3d/error"] == ["unsafe_content"]
    assert seen[-1].args[0] == fallback
    state = client.wait_for(["/ldm3d/show/state"], 10)[-1].args
    assert state[1:3] == ("1", "failed")
    scenes = [p for p in (bridge.writer.root / "scenes").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert [p.name for p in scenes] == [fallback]  # only the fallback's scene was stored


def test_an_engine_in_an_actor_reports_a_flagged_picture_as_its_own_event() -> None:
    """The body of a Ray actor (ldm3d_engine/host.py): a flagged picture travels back as
    ("unsafe", message), which the bridge's RayEngine raises as UnsafeContent again."""
    from ldm3d_engine.host import EngineHost

    class Flags:  # a stand-in engine whose checker flags every picture
        def generate(
            self, request: GenerateRequest, on_step: object = None, cancel: object = None, previews: object = None
        ) -> None:
            raise UnsafeContent("the safety checker flagged the picture")

    events = list(EngineHost(Flags).run("k", "engine", "generate", GenerateRequest("a reef")))
    assert events == [("started",), ("unsafe", "the safety checker flagged the picture")]
