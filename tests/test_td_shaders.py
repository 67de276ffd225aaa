"""TouchDesigner's GLSL MAT shaders compile and link with the reference compiler (glslangValidator,
Debian's glslang-tools, installed by ./dev) against a stub of TouchDesigner's documented built-ins
(tests/td/td_builtins_*.glsl). TouchDesigner itself never runs here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = Path(__file__).resolve().parent / "td"


def _validator() -> str:
    found = shutil.which("glslangValidator")
    if found is None:
        if sys.platform.startswith("linux"):
            pytest.fail("glslangValidator is missing: ./dev setup installs Debian's glslang-tools")
        pytest.skip("glslangValidator (glslang) is not installed on this machine")
    return found


def _sources(vertex_edit: tuple[str, str] = ("", ""), pixel_edit: tuple[str, str] = ("", "")) -> tuple[str, str]:
    """The two shaders as TouchDesigner compiles them: its built-ins first, the #include expanded."""
    include = (ROOT / "bridge/render/glsl/ldm3d_displace.glsl").read_text()
    vertex = (ROOT / "td_project/glsl/ldm3d_vertex.glsl").read_text().replace("#include <ldm3d_displace>", include)
    pixel = (ROOT / "td_project/glsl/ldm3d_pixel.glsl").read_text()
    vertex, pixel = vertex.replace(*vertex_edit), pixel.replace(*pixel_edit)
    return (
        (STUBS / "td_builtins_vertex.glsl").read_text() + vertex,
        (STUBS / "td_builtins_pixel.glsl").read_text() + pixel,
    )


def _link(tmp_path: Path, vertex: str, pixel: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "ldm3d.vert").write_text(vertex)
    (tmp_path / "ldm3d.frag").write_text(pixel)
    return subprocess.run(
        [_validator(), "-l", str(tmp_path / "ldm3d.vert"), str(tmp_path / "ldm3d.frag")],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_glsl_mat_shaders_compile_and_link(tmp_path: Path) -> None:
    result = _link(tmp_path, *_sources())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("vertex_edit", "pixel_edit", "complaint"),
    [
        # a uniform the shader never declared
        (("uStrength);", "uStrenght);"), ("", ""), "uStrenght"),
        # a sampler used as a number
        (("ldm3dDisplace(st, sDepth,", "ldm3dDisplace(st, uBaseRadius,"), ("", ""), "ldm3dDisplace"),
        # TouchDesigner's output swizzle takes a vec4
        (("", ""), ("TDOutputSwizzle(color)", "TDOutputSwizzle(color.rgb)"), "TDOutputSwizzle"),
        # the pixel shader reads a varying the vertex shader does not write
        (("", ""), ("vec2 texCoord;\n} iVert;", "vec2 texCoord;\n    float fade;\n} iVert;"), "Vertex"),
    ],
)
def test_broken_shaders_fail_the_same_check(
    tmp_path: Path, vertex_edit: tuple[str, str], pixel_edit: tuple[str, str], complaint: str
) -> None:
    """Negative controls: the check above can fail, and says where."""
    vertex, pixel = _sources(vertex_edit, pixel_edit)
    assert (vertex, pixel) != _sources(), "the edit did not apply"
    result = _link(tmp_path, vertex, pixel)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr
