"""``tools/mutation_report.py``: each figure of a row under its own column's header (docs/testing.md's
tables are copied from it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_report", ROOT / "tools" / "mutation_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_each_figure_stands_under_its_header() -> None:
    report = _report()
    lines = [
        "bridge.osc.codec.x_decode__mutmut_1: killed",
        "bridge.osc.codec.x_decode__mutmut_2: timeout",
        "bridge.osc.codec.xǁReaderǁread__mutmut_3: survived",
        "bridge.osc.codec.x_decode__mutmut_4: no tests",
        "bridge.osc.codec.x_decode__mutmut_5: not checked",
    ]
    counts = report.scores(lines)["bridge.osc.codec"]
    header = report.HEADER
    row = report._row("bridge.osc.codec", counts)
    assert len(row) == len(header)
    ends = {
        name: header.index(name) + len(name)
        for name in ("mutants", "killed", "survived", "no tests", "pending", "score")
    }
    figures = {"mutants": "5", "killed": "2", "survived": "1", "no tests": "1", "pending": "1", "score": "40.0%"}
    for name, figure in figures.items():
        assert row[ends[name] - len(figure) : ends[name]] == figure, (name, row)
