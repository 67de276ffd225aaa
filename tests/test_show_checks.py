"""Cue files: every mistake at once (each with its line), the timing keys (prewait, fade, goto), and
each cue checked against the model's limits without loading it (``show check --model``); ``pregen``
renders past the cues with a mistake."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from bridge.cli.main import main
from bridge.errors import BadShow
from bridge.settings import BridgeSettings
from bridge.show.checks import WRAP_MULTIPLES, CueLimits, check_cues, cue_limits, cue_mistakes
from bridge.show.cues import Cue, Show
from bridge.show.reading import parse_show, read_show
from ldm3d_engine.models.base import EngineBase

ROOT = Path(__file__).resolve().parent.parent

THREE = """\
name = "Three"

[[cue]]
number = "1"
prompt = "a reef"
seed = 1
steps = 0

[[cue]]
number = "2"
prompt = "a kelp forest"
seed = 2

[[cue]]
number = "3"
prompt = "a harbour"
seed = -3

[[cue]]
number = "4"
prompt = "a wreck"
seed = 4
duration = 0.1
"""


def _limits(model: str, upscale_model: str | None = None) -> CueLimits:
    return cue_limits(BridgeSettings(model=model, upscale_model=upscale_model))


# -- every mistake, one line each ------------------------------------------------------


def test_every_mistake_of_every_cue_is_reported_with_its_line() -> None:
    with pytest.raises(BadShow) as info:
        parse_show(THREE, "show.toml")
    assert info.value.mistakes == (
        "show.toml:7: steps 0 is out of range; allowed 1..150",
        "show.toml:17: seed -3 is out of range; use 0..2147483647",
        "show.toml:23: duration 0.1 is out of range; allowed 0.5..86400 seconds",
    )
    assert str(info.value) == "\n".join(info.value.mistakes)
    again = pickle.loads(pickle.dumps(info.value))  # e.g. from a worker process: its lines stay apart
    assert again.mistakes == info.value.mistakes and str(again) == str(info.value)


def test_one_cue_with_several_mistakes_and_the_shows_own_are_all_reported() -> None:
    text = (
        'name = "s"\nloop = 2\ncolour = "red"\nfallback = "9"\n\n'
        '[[cue]]\nnumber = "1"\nprompt = " "\nseed = "x"\nstpes = 3\ncontinue = "follow"\n'
        '\n[[cue]]\nnumber = "1"\nprompt = "p"\nseed = 1\n'
    )
    reading = read_show(text, "show.toml")
    assert reading.mistakes == (
        "show.toml:2: loop must be true or false, got 2",
        "show.toml:3: unknown show key 'colour'; a show has name, loop, fallback, fade, cue",
        "show.toml:4: fallback '9' is not a cue of this show; cues: 1",
        "show.toml:8: the prompt is empty; say what the world should show",
        "show.toml:9: seed must be an integer, got 'x'",
        "show.toml:10: unknown cue key 'stpes'; a cue has number, name, prompt, negative, seed, steps, guidance, "
        "width, height, sampling, scheduler, seamless, upscale, duration, continue, prewait, fade, goto, morph, "
        "morph_frames, object, object_seed, object_steps, object_resolution, object_yaw, object_pitch, "
        "object_distance, object_size, object_turn",
        'show.toml:11: continue = "follow" needs a duration (seconds before the next cue)',
        "show.toml:14: cue number '1' is used twice (cues 1 and 2)",
    )
    assert reading.show is None  # a mistake of the show's own: no show
    assert len(reading.show_mistakes) == 4 and len(reading.cue_mistakes["1"]) == 4


def test_a_toml_syntax_error_stays_one_mistake() -> None:
    with pytest.raises(BadShow) as info:
        parse_show(THREE.replace('name = "Three"', 'name = "Three'), "show.toml")
    (only,) = info.value.mistakes
    assert only.startswith("show.toml: not valid TOML: ")


def test_the_reading_keeps_each_cues_mistakes_by_number() -> None:
    reading = read_show(THREE, "show.toml")
    assert reading.show is not None and reading.show_mistakes == ()
    assert sorted(reading.cue_mistakes) == ["1", "3", "4"]
    assert [c.number for c in reading.valid_cues] == ["2"]
    with pytest.raises(BadShow, match="steps 0"):
        reading.checked()
    missing = read_show(THREE.replace('number = "3"\n', ""), "show.toml")  # no number: the show's own
    assert missing.show is None and "show.toml:14: cue 3 has no number" in missing.show_mistakes


# -- prewait, fade, goto -------------------------------------------------------------


def test_prewait_fade_and_goto_are_read_and_the_shows_fade_is_the_default() -> None:
    text = (
        'name = "s"\nfade = 4\n\n[[cue]]\nnumber = 1\nprompt = "p"\nseed = 1\nprewait = 2.5\nfade = 0\ngoto = 3\n'
        '\n[[cue]]\nnumber = "3"\nprompt = "p"\nseed = 1\n'
    )
    show = parse_show(text, "show.toml")
    first, third = show.cues
    assert (first.prewait, first.fade, first.goto) == (2.5, 0.0, "3")
    assert (third.prewait, third.fade, third.goto) == (0.0, 4.0, None) and show.fade == 4.0
    bare = parse_show(text.replace("fade = 4\n", "")).cues[1]
    assert bare.fade is None and bare.goto is None
    untimed = parse_show(text.replace("prewait = 2.5\nfade = 0\ngoto = 3\n", "")).cues[0]
    assert first.scene_key("m") == untimed.scene_key("m")  # timings are not the picture


@pytest.mark.parametrize(
    ("cue_lines", "show_lines", "message"),
    [
        ("prewait = -1", "", "show.toml:7: prewait -1 is out of range; allowed 0..3600 seconds"),
        ("prewait = 3601", "", "show.toml:7: prewait 3601 is out of range; allowed 0..3600 seconds"),
        ('prewait = "2"', "", "show.toml:7: prewait must be an integer or a number, got '2'"),
        ("fade = 60.5", "", "show.toml:7: fade 60.5 is out of range; allowed 0..60 seconds"),
        ("fade = true", "", "show.toml:7: fade must be an integer or a number, got True"),
        ("", "fade = -2", "show.toml:2: fade -2 is out of range; allowed 0..60 seconds"),
        ("", 'fade = "slow"', "show.toml:2: fade must be an integer or a number, got 'slow'"),
        ('goto = "9"', "", "show.toml:7: goto '9' is not a cue of this show; cues: 1"),
        ('goto = "a b"', "", "show.toml:7: goto 'a b' is not a cue number: use up to 64 letters"),
        ("goto = false", "", "show.toml:7: goto must be a string or an integer or a number, got False"),
    ],
)
def test_every_timing_rule_names_the_value_and_its_line(cue_lines: str, show_lines: str, message: str) -> None:
    """The show's keys on line 2 (after the name), the cue's from line 7 (after number, prompt, seed)."""
    text = f'name = "s"\n{show_lines}\n[[cue]]\nnumber = "1"\nprompt = "p"\nseed = 1\n{cue_lines}\n'
    with pytest.raises(BadShow) as info:
        parse_show(text, "show.toml")
    (only,) = info.value.mistakes
    assert only.startswith(message)


# -- against the model's limits --------------------------------------------------------

MODEL_CUES = """\
name = "Limits"

[[cue]]
number = "wide"
prompt = "p"
seed = 1
width = 4096

[[cue]]
number = "seam"
prompt = "p"
seed = 1
seamless = true
width = 200
height = 128

[[cue]]
number = "sr"
prompt = "p"
seed = 1
width = 64
height = 64
upscale = true

[[cue]]
number = "fine"
prompt = "p"
seed = 1
width = 128
height = 128
scheduler = "model"
"""


def test_cues_are_checked_against_the_tiny_model_without_loading_it() -> None:
    assert parse_show(MODEL_CUES, "show.toml").cues[0].params["width"] == 4096  # the file alone allows it
    reading = read_show(MODEL_CUES, "show.toml", _limits("tiny"))
    assert reading.mistakes == (
        "show.toml:7: width 4096 is not allowed for tiny: use a multiple of 8 from 64 to 1024 (native 256×256)",
        "show.toml:14: width 200 cannot wrap seamlessly on tiny: a 360° panorama's width and height must be "
        "multiples of 16 for its left and right edges to meet exactly; nearest: 192 or 208",
        "show.toml:23: upscale = true needs an upscale model: give --upscale-model ldm3d-sr",
    )
    assert [c.number for c in reading.valid_cues] == ["fine"]  # the model's own scheduler is accepted
    with pytest.raises(BadShow) as info:
        parse_show(MODEL_CUES, "show.toml", _limits("tiny"))
    assert info.value.mistakes == reading.mistakes
    with_sr = read_show(MODEL_CUES, "show.toml", _limits("tiny", upscale_model="tiny-sr"))
    assert sorted(with_sr.cue_mistakes) == ["seam", "wide"]  # 64×64 ×4 is 256×256: tiny-sr takes it


def test_a_seamless_size_follows_the_models_wrap_multiple() -> None:
    pano = 'name = "s"\n[[cue]]\nnumber = "1"\nprompt = "p"\nseed = 1\nseamless = true\nwidth = 1000\nheight = 128\n'
    (tiny,) = read_show(pano, "p.toml", _limits("tiny-pano")).mistakes  # 1000 = 62.5 × 16
    assert "multiples of 16" in tiny and "nearest: 992 or 1008" in tiny
    (intel,) = read_show(pano.replace("height = 128", "height = 512"), "p.toml", _limits("ldm3d-pano")).mistakes
    assert (
        intel.startswith("p.toml:7: width 1000 cannot wrap seamlessly on ldm3d-pano")
        and "nearest: 960 or 1024" in intel
    )
    # the pano model's own 1024×512 wraps; made ×4 it is too large for the upscaler
    upscaled = 'name = "s"\n[[cue]]\nnumber = "1"\nprompt = "p"\nseed = 1\nupscale = true\n'
    (too_large,) = read_show(upscaled, "u.toml", _limits("tiny-pano", upscale_model="tiny-sr")).mistakes
    assert too_large == (
        "u.toml:6: upscale = true: the ×4 output of a 1024×512 source: width 4096 is not allowed for tiny-sr: "
        "use a multiple of 8 from 64 to 1024 (native 256×256)"
    )
    (not_sr,) = read_show(upscaled, "u.toml", _limits("tiny-pano", upscale_model="tiny")).mistakes
    assert "model 'tiny' does not upscale" in not_sr


def test_a_scheduler_the_engine_does_not_know_is_refused_once() -> None:
    text = MODEL_CUES.replace('scheduler = "model"', 'scheduler = "plms"')
    reading = read_show(text, "show.toml", _limits("tiny", upscale_model="tiny-sr"))
    assert reading.cue_mistakes["fine"] == ("show.toml:31: scheduler 'plms' is unknown; use " + ", ".join(
        ("model", "ddim", "pndm", "dpm", "unipc", "euler_a", "euler")
    ),)  # fmt: skip
    # a cue made in code, past the file's rules: the engine's own check refuses it just the same
    cue = Cue("x", "x", {"prompt": "p", "seed": 1, "scheduler": "plms", "steps": 500}, key_lines={"": 3, "steps": 5})
    found = cue_mistakes(Show("s", (cue,), source="c.toml"), _limits("tiny"))
    assert found == {
        "x": (
            "c.toml:5: steps 500 is out of range; allowed 1..150",
            "c.toml:3: unknown scheduler 'plms'; use one of model, ddim, pndm, dpm, unipc, euler_a, euler",
        )
    }


def test_a_mistake_points_at_the_key_that_causes_it() -> None:
    """The model's own size that does not wrap is the ``seamless`` line's mistake (the cue set no
    size); a size the cue set is that size's line; a picture refused is not checked for upscaling."""
    import dataclasses

    odd = CueLimits(dataclasses.replace(_limits("tiny").preset, wrap_multiple=48))  # 256 is not 48 × n
    seamless = Cue("s", "s", {"prompt": "p", "seed": 1, "seamless": True}, key_lines={"": 3, "seamless": 7})
    sized = Cue("w", "w", {"prompt": "p", "seed": 1, "seamless": True, "width": 200},
                key_lines={"": 10, "seamless": 14, "width": 15})  # fmt: skip
    found = cue_mistakes(Show("s", (seamless, sized), source="c.toml"), odd)
    assert [m.split(":")[1] for m in found["s"]] == ["7"] and "cannot wrap seamlessly" in found["s"][0]
    assert found["w"][0].startswith("c.toml:15: width 200 cannot wrap seamlessly")
    refused = Cue("u", "u", {"prompt": "p", "seed": 1, "width": 4096, "upscale": True},
                  key_lines={"": 3, "width": 6, "upscale": 7})  # fmt: skip
    # (the pano model's own 1024×512, ×4, is too large for tiny-sr: that is not this cue's mistake)
    (only,) = cue_mistakes(Show("s", (refused,), source="c.toml"), _limits("tiny-pano", "tiny-sr"))["u"]
    assert only.startswith("c.toml:6: width 4096 is not allowed")  # its ×4 is not looked at: unknown


def test_a_show_with_a_mistake_of_its_own_still_has_its_cues_checked_against_the_model() -> None:
    text = MODEL_CUES.replace('name = "Limits"\n', 'name = "Limits"\nfallback = "nowhere"\n')
    reading = read_show(text, "show.toml", _limits("tiny"))
    assert reading.show is None and reading.source == "show.toml"
    assert reading.show_mistakes[0].startswith("show.toml:2: fallback 'nowhere' is not a cue of this show")
    assert reading.cue_mistakes["wide"] == ("show.toml:8: width 4096 is not allowed for tiny: use a multiple of 8 "
                                            "from 64 to 1024 (native 256×256)",)  # fmt: skip
    checked = read_show(MODEL_CUES, "show.toml", _limits("tiny"))
    assert checked.show is not None and checked.source == "show.toml" and checked.show.name == "Limits"


def test_every_mistake_of_a_cue_is_found_and_the_upscale_is_still_checked() -> None:
    """Six settings wrong at once: six mistakes (each round leaves one out and looks again), and a
    mistake that cannot be left out (a size that cannot wrap) does not hide the upscale's."""
    wrong = {"width": 4096, "height": 4100, "steps": 0, "guidance": 31.0, "scheduler": "plms", "sampling": "fast"}
    lines = {"": 1, **{key: n for n, key in enumerate(wrong, 2)}}
    cue = Cue("x", "x", {"prompt": "p", "seed": 1, **wrong}, key_lines=lines)
    found = cue_mistakes(Show("s", (cue,), source="c.toml"), _limits("tiny"))["x"]
    assert sorted(int(m.split(":")[1]) for m in found) == [2, 3, 4, 5, 6, 7], found
    seam = Cue("y", "y", {"prompt": "p", "seed": 1, "seamless": True, "width": 200, "upscale": True},
               key_lines={"": 1, "seamless": 2, "width": 3, "upscale": 4})  # fmt: skip
    found = cue_mistakes(Show("s", (seam,), source="c.toml"), _limits("tiny"))["y"]
    assert [m.split(":")[1] for m in found] == ["3", "4"] and "needs an upscale model" in found[1]
    nowhere = Cue("z", "z", {"prompt": "p", "seed": 1, "width": 4096})  # made in code: no line known
    (only,) = cue_mistakes(Show("s", (nowhere,), source="c.toml"), _limits("tiny"))["z"]
    assert only.startswith("c.toml: width 4096")


def test_limits_of_loaded_engines_and_of_presets_the_checks_know_no_wrap_for() -> None:
    from types import SimpleNamespace

    from ldm3d_engine.presets import PRESETS

    engine, sr = SimpleNamespace(preset=PRESETS["tiny-pano"]), SimpleNamespace(preset=PRESETS["tiny-sr"])
    assert CueLimits.of_engines(engine) == CueLimits(PRESETS["tiny-pano"], None, loaded=True)  # type: ignore[arg-type]
    assert CueLimits.of_engines(engine, sr) == CueLimits(PRESETS["tiny-pano"], PRESETS["tiny-sr"], loaded=True)  # type: ignore[arg-type]
    sr_limits = _limits("ldm3d-sr")
    assert sr_limits.preset.wrap_multiple == PRESETS["ldm3d-sr"].wrap_multiple  # not in WRAP_MULTIPLES: its own
    pano_folder = cue_limits(
        SimpleNamespace(model="/models/mine", preset="ldm3d-pano", upscale_model="/models/sr", object_model=None)
    )
    assert pano_folder.preset.name == "ldm3d-pano" and pano_folder.upscaler is not None
    assert pano_folder.upscaler.name == "ldm3d-pano"  # the upscaler folder is loaded with the same preset


def test_an_upscaler_as_the_model_refuses_every_cue_at_its_header() -> None:
    reading = read_show(MODEL_CUES, "show.toml", _limits("tiny-sr"))
    assert len(reading.cue_mistakes) == 4
    assert reading.cue_mistakes["fine"] == (
        "show.toml:25: model 'tiny-sr' is an upscaler, not a text→RGBD model; use ldm3d, ldm3d-4c or ldm3d-pano",
    )


def test_the_limits_come_from_the_settings_as_the_engine_would_load_them(tmp_path: Path) -> None:
    limits = cue_limits(BridgeSettings(model="ldm3d-pano", upscale_model="ldm3d-sr"))
    assert (limits.preset.name, limits.preset.wrap_multiple, limits.loaded) == ("ldm3d-pano", 64, False)
    assert limits.upscaler is not None and limits.upscaler.task == "upscale"
    folder = cue_limits(
        SimpleNamespace(model=str(tmp_path), preset="ldm3d-pano", upscale_model=None, object_model=None)
    )
    assert folder.preset.max_width == 2048 and folder.upscaler is None  # a folder run with the pano's conventions
    plain = cue_limits(SimpleNamespace(model=str(tmp_path), preset=None, upscale_model=None, object_model=None))
    assert (plain.preset.name, plain.preset.wrap_multiple) == ("folder", 8)  # its UNet decides: only ×8 known


@pytest.mark.bridge  # loads three tiny models: not in the mutation runs
def test_the_tiny_models_limits_are_those_of_the_loaded_engines(load_tiny: Callable[[str], EngineBase]) -> None:
    """The wrap multiples written down are the ones the engines read from their UNets, and a show is
    refused the same with the presets' limits as with the loaded engines'."""
    for name in ("tiny", "tiny-pano", "tiny-sr"):
        assert load_tiny(name).preset.wrap_multiple == WRAP_MULTIPLES[name], name
    show = read_show(MODEL_CUES, "show.toml").show
    assert show is not None
    for model, upscaler in (("tiny", "tiny-sr"), ("tiny-pano", "tiny-sr"), ("tiny", None)):
        loaded = CueLimits.of_engines(load_tiny(model), None if upscaler is None else load_tiny(upscaler))
        assert check_cues(show, loaded) == check_cues(show, _limits(model, upscaler)), model


# -- show check -------------------------------------------------------------------------


def test_show_check_prints_every_mistake_and_checks_against_a_model_without_torch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MODEL_CUES.replace("seed = 1\nseamless", "seed = -1\nseamless"))
    command = [sys.executable, "-m", "bridge.cli", "-q", "show", "check", str(bad)]
    alone = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert alone.returncode == 1 and alone.stdout == ""
    assert alone.stderr == f"{bad}:12: seed -1 is out of range; use 0..2147483647\n"
    checked = subprocess.run([*command, "--model", "tiny"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 1
    assert [line.split(": ")[0] for line in checked.stderr.splitlines()] == [f"{bad}:{n}" for n in (7, 12, 23)]
    code = (
        "import sys\nfrom bridge.cli.main import main\n"
        "status = main(['-q', 'show', 'check', 'examples/museum-loop.toml', '--model', 'ldm3d-pano',"
        " '--upscale-model', 'ldm3d-sr'])\n"
        "print(status, sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))\n"
    )
    light = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert light.stdout.splitlines() == [
        "examples/museum-loop.toml: show 'Six Seas', 6 cues (6 auto-follow), loop on, fallback harbour, "
        "every cue fits ldm3d-pano: ok",
        "0 []",
    ], light.stderr


def test_show_check_flags_need_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = str(ROOT / "examples" / "museum-loop.toml")
    assert main(["-q", "show", "check", example, "--upscale-model", "tiny-sr"]) == 2
    assert "give --model too" in capsys.readouterr().err
    assert main(["-q", "show", "check", example, "--model", str(tmp_path / "nowhere")]) == 2
    assert "not a preset" in capsys.readouterr().err
    config = tmp_path / "bridge.toml"  # the serving bridge's settings name the model
    config.write_text('[bridge]\nmodel = "tiny"\n')
    wide = tmp_path / "wide.toml"
    wide.write_text(MODEL_CUES.split('\n\n[[cue]]\nnumber = "seam"')[0] + "\n")
    assert main(["-q", "show", "check", str(wide), "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith(f"{wide}:7: width 4096 is not allowed for tiny")


# -- pregen past the cues with a mistake --------------------------------------------------


def test_pregen_stops_at_a_mistake_of_the_show_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    show = tmp_path / "show.toml"
    show.write_text(THREE.replace('number = "3"', 'number = "2"'))
    out = tmp_path / "out"
    assert main(["-q", "pregen", str(show), "--model", "tiny", "--output", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"{show}:15: cue number '2' is used twice (cues 2 and 3)" in err and f"{show}:7: steps 0" in err[0]
    assert err[-1] == "ldm3d-bridge: error: the cue file has mistakes of the show's own (above): nothing was rendered"
    assert not out.exists()


@pytest.mark.bridge  # loads the tiny model: not in the mutation runs
def test_pregen_renders_every_valid_cue_and_lists_the_others_at_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cues = "".join(
        f'\n[[cue]]\nnumber = "{n}"\nprompt = "world {n}"\nseed = {n}\nsteps = 1\nwidth = {w}\nheight = 64\n'
        for n, w in ((1, 64), (2, 4096), (3, 64), (4, 64))
    )
    show = tmp_path / "show.toml"
    show.write_text(f'name = "Night"\n{cues}'.replace("seed = 3\n", "seed = 3\nduration = 0.1\n"))
    out = tmp_path / "out"
    assert main(["-q", "pregen", str(show), "--model", "tiny", "--output", str(out)]) == 1
    captured = capsys.readouterr()
    assert "Night: 2 scenes in the library (2 rendered now)" in captured.out
    err = captured.err.strip().splitlines()
    assert err[0] == "cue 2, 3: a mistake each (listed at the end); skipped"
    assert err[-3:] == [
        f"{show}:16: width 4096 is not allowed for tiny: use a multiple of 8 from 64 to 1024 (native 256×256)",
        f"{show}:23: duration 0.1 is out of range; allowed 0.5..86400 seconds",
        "ldm3d-bridge: error: cue 2, 3 not rendered: a mistake each (above; fix them and run pregen again)",
    ]
    rendered = [json.loads(meta.read_text())["cue"] for meta in (out / "scenes").glob("*/meta.json")]
    assert sorted(rendered) == ["1", "4"]
