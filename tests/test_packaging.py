"""What a user installs: every file the bridge serves or reads at run time is in the wheel (a
`pip install ldm3d-bridge` that lacked the visitor page's files once went unnoticed: the tests run
from the checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Folders whose every file is read at run time (pages, shaders, the default prompt rules).
DATA = ("bridge/web/static", "bridge/render/glsl", "bridge/public")


def test_the_wheel_carries_every_file_the_bridge_reads(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a clean copy: setuptools' build/ folder in the checkout may hold stale files
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("bridge", "ldm3d_engine"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    built = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("ldm3d_bridge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        path.relative_to(ROOT).as_posix()
        for folder in DATA
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert wanted and not wanted - names, sorted(wanted - names)
