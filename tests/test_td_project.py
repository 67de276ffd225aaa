"""The TouchDesigner build table is consistent and points at files that exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _table() -> object:
    spec = importlib.util.spec_from_file_location("build_network", ROOT / "td_project" / "build_network.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_wire_and_parameter_names_a_node_and_files_exist() -> None:
    t = _table()
    names = {name for name, *_ in t.NODES}  # type: ignore[attr-defined]
    assert len(names) == len(t.NODES)  # type: ignore[attr-defined]
    for target, _, source in t.WIRES:  # type: ignore[attr-defined]
        assert {target, source} <= names
    custom = {name for _, name, *_ in t.CUSTOM}  # type: ignore[attr-defined]
    for target, par, value in t.PARAMS:  # type: ignore[attr-defined]
        assert target in names, target
        if par in t.FILE_PARAMS:  # type: ignore[attr-defined]
            assert (ROOT / value).is_file(), value
        if isinstance(value, str) and value.startswith("="):
            assert set(re.findall(r"parent\(\)\.par\.(\w+)", value)) <= custom, value
            assert set(re.findall(r"op\('(\w+)'\)", value)) <= names, value  # a sibling the builder makes
        if par == "geometry":  # a Render TOP draws every Geometry COMP it lists
            assert value.split() and set(value.split()) <= names, (target, par, value)
        elif par in ("vdat", "pdat", "material", "camera", "op", "callbacks") or par.endswith("top"):
            assert value in names, (target, par, value)


def test_nodes_sit_in_components_made_before_them_and_outputs_are_known() -> None:
    t = _table()
    made: dict[str, str] = {}
    for name, op_type, _x, _y, inside, output in t.NODES:  # type: ignore[attr-defined]
        assert not inside or made.get(inside) == "geometryCOMP", (name, inside)
        assert not output or output in t.OUTPUTS, (name, output)  # type: ignore[attr-defined]
        made[name] = op_type
    for target, seq, blocks in t.SEQUENCES:  # type: ignore[attr-defined]
        used = {
            int(p[len(seq)]) for tgt, p, _ in t.PARAMS if tgt == target and p.startswith(seq) and p[len(seq)].isdigit()
        }  # type: ignore[attr-defined]
        assert used and max(used) < blocks, (target, seq)


def test_the_extension_and_callbacks_are_valid_python() -> None:
    for path in (ROOT / "td_project" / "python").glob("*.py"):
        compile(path.read_text(), str(path), "exec")
