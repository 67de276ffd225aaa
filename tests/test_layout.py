"""The bridge's rooms and their layering, read from the source with ``ast`` (nothing is imported).

Imports go only down: cli → serve → web / show → contract → output / render → osc → errors / settings.
A room may import its own modules; output and render stand side by side and do not import
each other. The bridge never imports torch or the model libraries, and at module level it
imports only those engine modules that are torch-free themselves (types, errors, validation,
presets), so ``import bridge.…`` stays light and the engine is handed in (docs/architecture.md).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Higher imports lower; equal ranks in different rooms do not import each other.
RANKS = {"cli": 6, "serve": 5, "web": 4, "show": 4, "contract": 3, "output": 2, "render": 2, "osc": 1, "base": 0}
#: torch-land: never imported by the bridge, not even inside a function.
MODEL_LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "habana_frameworks", "optimum")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted and absolute
    line: int
    top_level: bool  # False inside a function (a lazy import)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> list[Import]:
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = top_level and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend(Import(name, alias.name, child.lineno, top_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                found.append(Import(name, target, child.lineno, top_level))
                # `from bridge.contract import protocol` imports the module bridge.contract.protocol
                found.extend(
                    Import(name, f"{target}.{alias.name}", child.lineno, top_level)
                    for alias in child.names
                    if (root / Path(*f"{target}.{alias.name}".split("."))).with_suffix(".py").exists()
                )
            visit(child, inside)

    visit(tree, True)
    return found


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS) else "base"


def heavy_engine_modules(root: Path, package: str = "ldm3d_engine") -> set[str]:
    """Engine modules that import a model library at module level, directly or through each other."""
    modules = {module_name(root, p): p for p in (root / package).rglob("*.py")}
    edges = {m: [i for i in imports_of(root, p) if i.top_level] for m, p in modules.items()}
    heavy = {m for m, imps in edges.items() if any(i.target.split(".")[0] in MODEL_LIBRARIES for i in imps)}
    changed = True
    while changed:
        changed = False
        for m, imps in edges.items():
            if m not in heavy and any(i.target in heavy for i in imps):
                heavy.add(m)
                changed = True
    return heavy


def violations(root: Path, package: str = "bridge", engine: str = "ldm3d_engine") -> list[str]:
    heavy = heavy_engine_modules(root, engine)
    problems = []
    for path in sorted((root / package).rglob("*.py")):
        for imp in imports_of(root, path):
            where = f"{path.relative_to(root)}:{imp.line}"
            top = imp.target.split(".")[0]
            if top in MODEL_LIBRARIES:
                problems.append(f"{where} imports {imp.target}: the bridge never imports torch or the model libraries")
            elif top == engine and imp.top_level and imp.target in heavy:
                problems.append(
                    f"{where} imports {imp.target} at module level, which imports torch: import it inside the "
                    "function that needs it (only the CLI builds engines)"
                )
            elif top == package and imp.target != package:
                own, other = room(imp.module), room(imp.target)
                wrong = f"{where}: {own} must not import {other}"
                if own != other and RANKS[other] >= RANKS[own] and not any(p.startswith(wrong) for p in problems):
                    problems.append(f"{wrong} ({imp.target}); imports go down the layers")
    return problems


def test_the_bridge_imports_only_down_its_layers_and_never_torch() -> None:
    assert violations(ROOT) == []


def test_every_module_lives_in_a_room_with_a_docstring() -> None:
    """A newcomer sees from the tree which files are the wire, the server, the output."""
    loose = sorted(p.name for p in (ROOT / "bridge").glob("*.py"))
    assert loose == ["__init__.py", "errors.py", "settings.py"]
    for name in RANKS:
        if name == "base":
            continue
        init = ROOT / "bridge" / name / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"{init} must say what lives there and what it may import"


def test_the_checker_finds_each_kind_of_wrong_import(tmp_path: Path) -> None:
    """The rules above can fail: a small tree with one import of each forbidden kind."""
    files = {
        "ldm3d_engine/__init__.py": "",
        "ldm3d_engine/types.py": "import numpy\n",
        "ldm3d_engine/devices.py": "import torch\n",
        "ldm3d_engine/build.py": "from .devices import DTYPES\n",
        "bridge/__init__.py": "",
        "bridge/settings.py": "from bridge.serve.jobs import QUEUE_MODES\n",
        "bridge/osc/__init__.py": "",
        "bridge/osc/codec.py": "from ..contract import protocol\n",
        "bridge/contract/__init__.py": "",
        "bridge/contract/protocol.py": "from bridge.osc.codec import Message\nfrom ldm3d_engine.types import X\n",
        "bridge/output/__init__.py": "",
        "bridge/output/writer.py": "from bridge.render.preview import render\nfrom ldm3d_engine.build import load\n",
        "bridge/render/__init__.py": "",
        "bridge/render/preview.py": "def render():\n    import torch\n",
        "bridge/serve/__init__.py": "",
        "bridge/serve/jobs.py": "from bridge.cli.main import main\nfrom . import limits\n",
        "bridge/serve/limits.py": "",
        "bridge/cli/__init__.py": "",
        "bridge/cli/main.py": "from bridge.serve import jobs\n\ndef serve():\n    from ldm3d_engine.build import x\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = "\n".join(violations(tmp_path))
    assert "bridge/settings.py:1: base must not import serve" in found
    assert "bridge/osc/codec.py:1: osc must not import contract" in found
    assert "bridge/output/writer.py:1: output must not import render" in found
    assert "bridge/output/writer.py:2 imports ldm3d_engine.build at module level" in found  # torch, two hops away
    assert "bridge/render/preview.py:2 imports torch" in found  # even inside a function
    assert "bridge/serve/jobs.py:1: serve must not import cli" in found
    assert len(found.splitlines()) == 6, found  # and nothing allowed is reported
