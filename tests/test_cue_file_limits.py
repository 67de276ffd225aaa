"""Cue files are bounded: their size (1 MB, from the file's size before it is read, the text's before it
is parsed), their cue count and how deep their arrays nest (both before parsing), the length of names
and prompts. Each limit is one ``file:line`` mistake, quickly, never an ``internal_error``; ``show check``
says it in one line; a bridge refuses such a file without holding up its intake."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.cli.main import main
from bridge.errors import BadShow
from bridge.osc.client import OscClient
from bridge.serve.server import Bridge
from bridge.show import reading
from bridge.show.cues import MAX_SHOW_BYTES
from bridge.show.reading import load_show, parse_show, read_show, read_show_file

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]

CUE = '[[cue]]\nnumber = "1"\nprompt = "a reef"\nseed = 1\n'
SHOW = f'name = "Limits"\n{CUE}'


def _padded(size: int) -> str:
    """A valid show of exactly ``size`` bytes (a comment fills it up)."""
    return SHOW + "#" + "x" * (size - len(SHOW) - 2) + "\n"


def _one(text: str) -> str:
    """The one mistake of ``text``."""
    mistakes = read_show(text, "show.toml").mistakes
    assert len(mistakes) == 1, mistakes
    return mistakes[0]


def _no_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(text: str) -> object:
        raise AssertionError("the file was parsed")

    monkeypatch.setattr(reading.tomllib, "loads", parse)


# -- size ----------------------------------------------------------------------


def test_a_file_over_1_mb_is_refused_from_its_size_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.toml"
    big.write_text(_padded(2_000_000))
    opened: list[Path] = []
    real_open = Path.open

    def spy(self: Path, *args: object, **kwargs: object) -> object:
        opened.append(self)
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", spy)
    with pytest.raises(BadShow) as info:
        load_show(big)
    assert info.value.mistakes == (
        f"{big}: the cue file is 2,000,000 bytes; a cue file has at most 1,000,000 (split the show)",
    )
    assert big not in opened  # refused from its size alone
    assert _one(_padded(2_000_000)).startswith("show.toml: the cue file is 2,000,000 bytes")  # the text's


def test_the_size_limit_is_in_bytes_and_the_limit_itself_is_allowed(tmp_path: Path) -> None:
    assert MAX_SHOW_BYTES == 1_000_000
    assert parse_show(_padded(MAX_SHOW_BYTES)).name == "Limits"
    (tmp_path / "edge.toml").write_text(_padded(MAX_SHOW_BYTES))
    assert load_show(tmp_path / "edge.toml").name == "Limits"
    assert "1,000,001 bytes" in _one(_padded(MAX_SHOW_BYTES + 1))
    wide = SHOW + "# " + "é" * 600_000 + "\n"  # 600,000 characters, 1.2 MB
    assert "1,200,0" in _one(wide)


def test_a_file_that_grows_past_the_limit_is_never_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grown = tmp_path / "grown.toml"
    grown.write_text(_padded(3_000_000))
    real_stat = Path.stat
    monkeypatch.setattr(Path, "stat", lambda self, **kw: real_stat(tmp_path / "none.toml" if self == grown else self))
    (tmp_path / "none.toml").write_text("")  # its size says 0 (a file still being written, a device)
    mistakes = read_show_file(grown).mistakes
    assert mistakes == (f"{grown}: the cue file is more than 1,000,000 bytes; a cue file has at most 1,000,000 "
                        "(split the show)",)  # fmt: skip


# -- cues ------------------------------------------------------------------------


def test_100k_cue_tables_are_refused_before_parsing_at_the_first_one_too_many(monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'name = "Many"\n' + "[[cue]]\n" * 100_000  # 800 kB: within the size limit
    _no_parse(monkeypatch)
    started = time.perf_counter()
    mistake = _one(text)
    took = time.perf_counter() - started
    assert mistake == "show.toml:1002: 100000 cues; a show has at most 1000"
    assert took < 0.2, took


def test_a_thousand_cues_are_allowed() -> None:
    cues = "".join(f'[[cue]]\nnumber = "{n}"\nprompt = "p"\nseed = 1\n' for n in range(1000))
    assert len(parse_show(f'name = "s"\n{cues}').cues) == 1000


# -- nesting ---------------------------------------------------------------------


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ("{a = ", "}")])
def test_100k_nested_arrays_or_tables_are_one_mistake_at_their_line(
    opening: str, closing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = f'name = "Deep"\n{CUE}deep = {opening * 100_000}1{closing * 100_000}\n'
    _no_parse(monkeypatch)
    assert _one(text) == "show.toml:6: arrays or inline tables nested more than 4 deep; a cue file needs 2"


def test_nesting_counts_brackets_only_outside_strings_and_comments() -> None:
    text = (
        'name = "[[[[[[ { { {"  # [[[[[[[[\n'
        "[[cue]]\n"
        "number = '[[[[[['\n"
        'prompt = """a [[[[[[ reef\n ]]] \\""" [[[[[["""\n'
        "negative = '''{{{{{{'''\n"
        "seed = 1\n"
        'cue = "not the cue array"\n'
    )
    assert "nested" not in " ".join(read_show(text, "show.toml").mistakes)
    four = _one(f'name = "s"\nx = [[[[1]]]]\n{CUE}')
    assert "unknown show key 'x'" in four  # 4 deep: allowed (a mistake of its own)
    assert "nested more than 4 deep" in _one(f'name = "s"\nx = [[[[[1]]]]]\n{CUE}')
    assert parse_show('name = "s"\ncue = [{number = "1", prompt = "p", seed = 1}]').cues[0].number == "1"


def test_nesting_too_deep_for_the_toml_reader_is_a_mistake_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reading, "MAX_NESTING", 10**9)  # past the scan: tomllib itself gives up
    text = f'name = "Deep"\n{CUE}deep = {"[" * 100_000}{"]" * 100_000}\n'
    assert _one(text) == "show.toml: arrays or inline tables nested too deep to read; a cue file needs 2 levels"


def test_show_check_on_100k_nested_arrays_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text(f'name = "Deep"\n{CUE}deep = {"[" * 100_000}{"]" * 100_000}\n')
    assert main(["show", "check", str(deep)]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.splitlines() == [
        f"{deep}:6: arrays or inline tables nested more than 4 deep; a cue file needs 2"
    ]


# -- strings ---------------------------------------------------------------------


def test_names_and_prompts_have_a_longest_length_each_at_its_line() -> None:
    ok = f'name = "{"s" * 200}"\n[[cue]]\nnumber = "1"\nname = "{"c" * 200}"\nprompt = "{"p" * 2000}"\n'
    assert parse_show(f'{ok}negative = "{"n" * 2000}"\nseed = 1\n').cues[0].name == "c" * 200
    long = f'name = "{"s" * 201}"\n[[cue]]\nnumber = "1"\nname = "{"c" * 201}"\nprompt = "{"p" * 2001}"\n'
    mistakes = read_show(f'{long}negative = "{"n" * 2001}"\nseed = 1\n', "show.toml").mistakes
    assert mistakes == (
        "show.toml:1: the show's name is 201 characters long; at most 200",
        "show.toml:4: name is 201 characters long; at most 200",
        "show.toml:5: prompt is 2,001 characters long; at most 2,000",
        "show.toml:6: negative is 2,001 characters long; at most 2,000",
    )


def test_a_long_show_name_is_refused_by_its_length_or_the_files_size() -> None:
    long = _one(f'name = "{"n" * 100_000}"\n{CUE}')
    assert long == "show.toml:1: the show's name is 100,000 characters long; at most 200"
    assert "the cue file is 1,000,0" in _one(f'name = "{"n" * 1_000_000}"\n{CUE}')


def test_a_long_value_is_quoted_short_in_its_mistake() -> None:
    huge = "v" * 100_000
    cues = "".join(f'[[cue]]\nnumber = "{n}"\nprompt = "p"\nseed = 1\n' for n in range(1, 100))
    for text, start in [
        (f'name = "s"\n{huge} = 1\n{CUE}', "show.toml:2: unknown show key 'vvv"),
        (f'name = "s"\n[[cue]]\nnumber = "1"\nprompt = "p"\nseed = "{huge}"\n', "show.toml:5: seed must be an integer"),
        (f'name = "s"\n[[cue]]\nnumber = "{huge}"\nprompt = "p"\nseed = 1\n', "show.toml:3: cue number 'vvv"),
        (f'name = "s"\nfallback = "{huge}"\n{cues}', "show.toml:2: fallback 'vvv"),
        (f'name = "s"\nfallback = "x"\n{cues}', "show.toml:2: fallback 'x' is not a cue of this show; cues: 1, 2,"),
        (f'name = "s"\nloop = [[["{huge}"]]]\n{CUE}', "show.toml:2: loop must be true or false, got [[["),
    ]:
        mistakes = read_show(text, "show.toml").mistakes
        assert len(mistakes) == 1 and mistakes[0].startswith(start), mistakes[0][:200]
        assert len(mistakes[0]) < 250, mistakes[0][:300]


# -- a real bridge -----------------------------------------------------------------


def test_a_bridge_refuses_a_100k_cue_file_without_holding_up_its_intake(
    start_bridge: Start, client_for: ClientFor, tmp_path: Path
) -> None:
    cues = "".join(f'[[cue]]\nnumber = "{n}"\nprompt = "world {n}"\nseed = {n}\nsteps = 1\n' for n in range(100_000))
    (tmp_path / "big.toml").write_text(f'name = "Big"\n{cues}')  # 6 MB
    (tmp_path / "many.toml").write_text('name = "Many"\n' + "[[cue]]\n" * 100_000)  # 800 kB
    bridge = start_bridge(input_dirs=(str(tmp_path),))
    client = client_for(bridge)
    client.subscribe_self()  # full error messages
    for name, message in [("big.toml", "bytes; a cue file has at most 1,000,000"), ("many.toml", ":1002: 100000 cues")]:
        started = time.monotonic()
        client.send("/ldm3d/show/load", name)
        client.send("/ldm3d/ping")
        seen = client.wait_for(["/ldm3d/pong"], 10)
        answered = time.monotonic() - started
        assert answered < 0.2, f"{name}: the intake answered a ping after {answered:.3f} s"
        errors = [m.args for m in seen if m.address == "/ldm3d/error"]
        assert errors and errors[0][1] == "bad_show" and message in str(errors[0][2]), seen
        print(f"{name}: refused, and a ping answered, {answered * 1000:.0f} ms after the load was sent")
    client.send("/ldm3d/show/state")
    assert client.wait_for(["/ldm3d/show/state"], 5)[-1].args[:2] == ("", "")  # nothing was loaded
