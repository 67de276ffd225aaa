"""The benchmark harnesses run and print their figures (their numbers are not asserted: they are
measurements, recorded in the docs, not targets for a timed test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_engine_speed_harness_runs_all_variants_on_a_small_architecture() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "engine_speed.py"),
            "--arch",
            "small",
            "--device",
            "cpu",
            "--size",
            "128x64",
            "--quality-steps",
            "2",
            "--live-steps",
            "2",
            "--repeats",
            "1",
            "--profile",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    assert "(a) diffusers LDM3D pipeline, fp32" in out
    assert "(c) ours, quality (float32)" in out and "(d) ours, live (float32)" in out
    assert "(e) ours, live, VAE tiling (flat)" in out
    assert "one live job at 128×64, where the time goes" in out and "denoising" in out
    assert "aten::" in out  # the profiler's operator table
    assert "× vs (a)" in out and "ms/step" in out


def test_bridge_latency_harness_prints_its_three_figures() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bridge_latency.py"), "--rounds", "20", "--jobs", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    assert "/ldm3d/generate → accepted" in out and "Last rename → /ldm3d/ready" in out
    assert "1024×512" in out and "faster" in out
