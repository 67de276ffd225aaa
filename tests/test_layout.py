"""The rooms of both packages and their layering, read from the source with ``ast`` (nothing is imported).

The bridge: cli → serve → workers → notify / web / show → contract → output / render → osc →
errors / settings. The engine: its entry points (the package's ``load_engine``, ``environment``)
→ models / objects → sampling / depth → backends → offline → the public face (types, errors,
presets, validation, version, host), and offline only inside a function. A room may import its own
modules; rooms of one rank stand side by side and do not import each other. The bridge never
imports torch or the model libraries, and at module level it imports only those engine modules
that are torch-free themselves (the public face), so ``import bridge.…`` stays light and the
engine is handed in. No module imports itself back through others, anywhere in the repository
(docs/architecture.md).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Higher imports lower; equal ranks in different rooms do not import each other.
RANKS = {
    "cli": 7, "serve": 6, "workers": 5, "notify": 4, "web": 4, "show": 4,
    "contract": 3, "public": 3, "output": 2, "render": 2, "osc": 1, "base": 0,
}  # fmt: skip
#: The engine's rooms. "entry" is the package itself and ``environment``; "face" every other
#: top-level module: what the bridge may import, below every room so that all may use it.
ENGINE_RANKS = {
    "entry": 6, "models": 5, "objects": 5, "sampling": 4, "depth": 4, "safety": 4, "backends": 3, "offline": 2,
    "face": 0,
}  # fmt: skip
ENGINE_ENTRY = ("ldm3d_engine", "ldm3d_engine.environment")
#: Imported only inside a function, whoever imports them.
LAZY_ONLY = ("offline",)
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


def engine_room(module: str) -> str:
    parts = module.split(".")
    if module in ENGINE_ENTRY:
        return "entry"
    return parts[1] if len(parts) > 2 else "face"


def engine_violations(root: Path, engine: str = "ldm3d_engine") -> list[str]:
    """Imports inside the engine that go up or sideways, the offline builders imported at module
    level, and a public-face module that imports torch (the bridge imports the face)."""
    heavy = heavy_engine_modules(root, engine)
    problems = []
    for path in sorted((root / engine).rglob("*.py")):
        name = module_name(root, path)
        own = engine_room(name)
        if own not in ENGINE_RANKS:
            problems.append(
                f"{path.relative_to(root)}: {own!r} is not one of the engine's rooms {sorted(ENGINE_RANKS)}"
            )
            continue
        if own == "face" and name in heavy:
            problems.append(f"{path.relative_to(root)} is the public face but imports torch (the bridge imports it)")
        for imp in imports_of(root, path):
            if imp.target.split(".")[0] != engine or (imp.target == engine and own == "entry"):
                continue
            where = f"{path.relative_to(root)}:{imp.line}"
            other = engine_room(imp.target)
            if other in LAZY_ONLY and own != other and imp.top_level:
                problems.append(f"{where}: {own} imports {imp.target} at module level; import it inside the function")
            elif own != other and ENGINE_RANKS.get(other, 0) >= ENGINE_RANKS[own]:
                problems.append(f"{where}: {own} must not import {other} ({imp.target}); imports go down the layers")
    return problems


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module → the modules of ``packages`` it imports (at module level or inside a function)."""
    modules = {module_name(root, p): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imp in imports_of(root, path):
            target = imp.target
            while target and target not in modules:  # `from pkg.mod import Name` imports pkg.mod
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def circles(root: Path, packages: tuple[str, ...]) -> list[list[str]]:
    """Each import circle once (Tarjan's strongly connected components of more than one module)."""
    graph = import_graph(root, packages)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


#: Every Python package of the repository.
PACKAGES = ("bridge", "ldm3d_engine", "tests", "bench", "tools")


def test_the_bridge_imports_only_down_its_layers_and_never_torch() -> None:
    assert violations(ROOT) == []


def test_the_engine_imports_only_down_its_rooms() -> None:
    assert engine_violations(ROOT) == []


def test_no_module_imports_itself_back_anywhere() -> None:
    assert circles(ROOT, PACKAGES) == []


def test_every_module_lives_in_a_room_with_a_docstring() -> None:
    """A newcomer sees from the tree which files are the wire, the server, the output."""
    loose = sorted(p.name for p in (ROOT / "bridge").glob("*.py"))
    assert loose == ["__init__.py", "errors.py", "placement.py", "settings.py"]
    for name in RANKS:
        if name == "base":
            continue
        init = ROOT / "bridge" / name / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"{init} must say what lives there and what it may import"
    face = sorted(p.name for p in (ROOT / "ldm3d_engine").glob("*.py"))
    assert face == [
        "__init__.py", "environment.py", "errors.py", "host.py", "object_types.py", "presets.py", "types.py",
        "validation.py", "version.py",
    ]  # fmt: skip
    rooms = sorted(p.name for p in (ROOT / "ldm3d_engine").iterdir() if (p / "__init__.py").exists())
    assert rooms == sorted(set(ENGINE_RANKS) - {"entry", "face"})
    for name in rooms:
        init = ROOT / "ldm3d_engine" / name / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"{init} must say what lives there and what it may import"


def test_the_checker_finds_each_kind_of_wrong_import(tmp_path: Path) -> None:
    """The rules above can fail: a small tree with one import of each forbidden kind."""
    files = {
        "ldm3d_engine/__init__.py": "def load():\n    from .models.build import load\n",
        "ldm3d_engine/types.py": "import numpy\n",
        "ldm3d_engine/errors.py": "from .backends.devices import DTYPES\n",
        "ldm3d_engine/backends/__init__.py": "",
        "ldm3d_engine/backends/devices.py": "import torch\nfrom ..sampling.denoise import loop\n",
        "ldm3d_engine/sampling/__init__.py": "",
        "ldm3d_engine/sampling/denoise.py": "from ..depth.packing import x\nfrom ..types import OnStep\n",
        "ldm3d_engine/depth/__init__.py": "",
        "ldm3d_engine/depth/packing.py": "",
        "ldm3d_engine/models/__init__.py": "",
        "ldm3d_engine/models/build.py": (
            "from ..backends.devices import DTYPES\nfrom ..offline.tiny import ensure\n\n"
            "def built():\n    from ..offline.tiny import ensure\n"
        ),
        "ldm3d_engine/offline/__init__.py": "",
        "ldm3d_engine/offline/tiny.py": "from ..models import build\n",
        "ldm3d_engine/stray/thing.py": "",
        "bridge/__init__.py": "",
        "bridge/settings.py": "from bridge.workers.jobs import QUEUE_MODES\n",
        "bridge/osc/__init__.py": "",
        "bridge/osc/codec.py": "from ..contract import protocol\n",
        "bridge/contract/__init__.py": "",
        "bridge/contract/protocol.py": "from bridge.osc.codec import Message\nfrom ldm3d_engine.types import X\n",
        "bridge/output/__init__.py": "",
        "bridge/output/writer.py": (
            "from bridge.render.preview import render\nfrom ldm3d_engine.models.build import load\n"
        ),
        "bridge/render/__init__.py": "",
        "bridge/render/preview.py": "def render():\n    import torch\n",
        "bridge/workers/__init__.py": "",
        "bridge/workers/jobs.py": "from bridge.cli.main import main\nfrom . import limits\n",
        "bridge/workers/limits.py": "",
        "bridge/cli/__init__.py": "",
        "bridge/cli/main.py": (
            "from bridge.workers import jobs\n\ndef serve():\n    from ldm3d_engine.models.build import x\n"
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = "\n".join(violations(tmp_path))
    assert "bridge/settings.py:1: base must not import workers" in found
    assert "bridge/osc/codec.py:1: osc must not import contract" in found
    assert "bridge/output/writer.py:1: output must not import render" in found
    torch_two_hops_away = "bridge/output/writer.py:2 imports ldm3d_engine.models.build at module level"
    assert torch_two_hops_away in found
    assert "bridge/render/preview.py:2 imports torch" in found  # even inside a function
    assert "bridge/workers/jobs.py:1: workers must not import cli" in found
    assert len(found.splitlines()) == 6, found  # and nothing allowed is reported
    engine = "\n".join(engine_violations(tmp_path))
    assert "ldm3d_engine/errors.py is the public face but imports torch" in engine
    assert "ldm3d_engine/errors.py:1: face must not import backends" in engine
    assert "ldm3d_engine/backends/devices.py:2: backends must not import sampling" in engine
    assert "ldm3d_engine/sampling/denoise.py:1: sampling must not import depth" in engine  # sideways
    assert "ldm3d_engine/models/build.py:2: models imports ldm3d_engine.offline.tiny at module level" in engine
    assert "ldm3d_engine/offline/tiny.py:1: offline must not import models" in engine
    assert "ldm3d_engine/stray/thing.py: 'stray' is not one of the engine's rooms" in engine
    assert len(engine.splitlines()) == 7, engine  # the entry's lazy import, a lazy offline import: allowed
    assert sorted(circles(tmp_path, ("bridge", "ldm3d_engine"))) == [
        ["bridge.cli.main", "bridge.workers.jobs"],
        ["bridge.contract.protocol", "bridge.osc.codec"],
        ["ldm3d_engine.models.build", "ldm3d_engine.offline.tiny"],  # one way inside a function counts too
    ]
