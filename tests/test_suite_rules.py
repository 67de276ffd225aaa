"""Rules of the suite itself: no test may hang."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_suite_has_a_per_test_timeout() -> None:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(options["timeout"]) <= 900  # a hang fails in minutes, not at CI's 90-minute limit


def test_a_hanging_test_fails_with_the_stack_of_every_thread(tmp_path: Path) -> None:
    (tmp_path / "test_hang.py").write_text(
        "import threading, time\n"
        "def test_hang():\n"
        "    threading.Thread(target=time.sleep, args=(60,), name='stuck-helper', daemon=True).start()\n"
        "    time.sleep(60)\n"
        "def test_after():\n"
        "    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=2", "test_hang.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "Timeout" in done.stdout and "stuck-helper" in done.stdout  # every thread's stack is shown
    assert "1 failed, 1 passed" in done.stdout  # and the run goes on
