"""Client-sent paths must resolve inside the configured input folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.contract.paths import resolve_input_path
from bridge.errors import BadArguments


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"png")
    (folder / "sub" / "b.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("no")
    return folder


def test_paths_inside_are_resolved(inputs: Path) -> None:
    assert resolve_input_path("a.png", [inputs]) == inputs / "a.png"
    assert resolve_input_path("sub/b.png", [inputs]) == inputs / "sub" / "b.png"
    assert resolve_input_path(str(inputs / "a.png"), [inputs]) == inputs / "a.png"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("../secret.txt", "'..' is not allowed"),
        ("sub/../../secret.txt", "'..' is not allowed"),
        ("sub\\..\\..\\secret.txt", "'..' is not allowed"),
        ("/etc/passwd", "outside the input folders"),
        ("a.png\x00.jpg", "NUL byte"),
        ("", "empty"),
        ("C:\\Windows\\win.ini", "drive letters"),
        ("c:secret.txt", "drive letters"),
        ("\\\\server\\share\\a.png", "UNC"),
        ("//server/share/a.png", "UNC"),
        ("missing.png", "not a file"),
        ("sub", "not a file"),
    ],
)
def test_escapes_and_odd_forms_are_refused(inputs: Path, raw: str, message: str) -> None:
    with pytest.raises(BadArguments, match=message):
        resolve_input_path(raw, [inputs])


def test_symlinks_that_escape_are_refused(inputs: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", inputs / "link.png")
    with pytest.raises(BadArguments, match="outside the input folders"):
        resolve_input_path("link.png", [inputs])
    os.symlink(inputs / "a.png", inputs / "inner.png")
    assert resolve_input_path("inner.png", [inputs]) == inputs / "a.png"


def test_no_input_folder_means_no_input_files(inputs: Path) -> None:
    with pytest.raises(BadArguments, match="no input folder"):
        resolve_input_path("a.png", [])


def test_a_sibling_folder_whose_name_starts_with_the_roots_is_outside(tmp_path: Path) -> None:
    """Pins the bug "containment by string prefix": ``…/inputs-private/key.png`` starts with ``…/inputs``
    as text but is not inside it."""
    inputs, private = tmp_path / "inputs", tmp_path / "inputs-private"
    inputs.mkdir()
    private.mkdir()
    (private / "key.png").write_bytes(b"secret")
    (inputs / "ok.png").write_bytes(b"fine")
    assert resolve_input_path(str(inputs / "ok.png"), [inputs]) == (inputs / "ok.png").resolve()
    with pytest.raises(BadArguments, match="outside the input folders"):
        resolve_input_path(str(private / "key.png"), [inputs])


def test_refusals_say_exactly_what_is_wrong(inputs: Path, tmp_path: Path) -> None:
    """Errors that teach: each refusal names the value and the rule (the client sees this text)."""
    other = tmp_path / "other"
    other.mkdir()

    def refusal(raw: str, folders: list[Path]) -> str:
        with pytest.raises(BadArguments) as caught:
            resolve_input_path(raw, folders)
        return str(caught.value)

    assert refusal("a.png", []) == "no input folder is configured on the bridge; the bridge accepts no input files"
    assert refusal("", [inputs]) == "the path is empty or contains a NUL byte"
    assert refusal("/etc/passwd", [inputs, other]) == (
        f"'/etc/passwd' is outside the input folders ({inputs.resolve()}, {other.resolve()})"
    )
    assert refusal("missing.png", [inputs]) == f"'missing.png' is not a file in {inputs.resolve()}"
    long_name = "n" * 300
    assert refusal(long_name, [inputs]) == (
        f"{long_name[:60]!r}…: too long (paths up to 1024 characters, names up to 255); use a shorter name"
    )


def test_length_limits_are_inclusive(inputs: Path) -> None:
    """A name of 255 characters and a path of 1024 pass the length check (then the file must exist)."""
    with pytest.raises(BadArguments, match="is not a file"):
        resolve_input_path("n" * 255, [inputs])
    with pytest.raises(BadArguments, match="too long"):
        resolve_input_path("n" * 256, [inputs])
    deep = "/".join(["d" * 200] * 6)[:1024]  # 1024 characters, every part short
    assert len(deep) == 1024
    with pytest.raises(BadArguments, match=r"is not a file|File name too long"):
        resolve_input_path(deep, [inputs])
    with pytest.raises(BadArguments, match="too long"):
        resolve_input_path(deep + "d", [inputs])


def test_a_symlink_loop_is_refused_not_crashed(inputs: Path) -> None:
    """Path.resolve raises RuntimeError for a loop before Python 3.13: it must not escape as an internal error."""
    name = "loop-" + "x" * 70  # the message quotes the first 60 characters
    os.symlink(inputs / "loop2", inputs / name)
    os.symlink(inputs / name, inputs / "loop2")
    with pytest.raises(BadArguments) as caught:
        resolve_input_path(name, [inputs])
    text = str(caught.value)
    assert text.startswith(f"{name[:60]!r}: ") and text.endswith("; send the path of a file inside an input folder")
    assert "Symlink loop" in text or "Too many levels of symbolic links" in text  # the reason, by Python version
