"""Which object model a name or a folder loads (``load_object_engine``): LN3Diff or Shap-E, told by the
name of a built-in model or by what a folder's ``model_index.json`` says, never by a folder's name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ldm3d_engine import EngineSettings, UnknownModel, load_object_engine
from ldm3d_engine.object_types import ObjectRequest


def test_each_object_model_loads_by_its_name_and_makes_a_mesh(tmp_path: Path) -> None:
    settings = EngineSettings(tiny_dir=str(tmp_path))
    kinds = {}
    for name in ("tiny-ln3diff", "tiny-shap-e"):
        engine = load_object_engine(settings, name)
        mesh = engine.generate_object(ObjectRequest("a red lantern", seed=1))
        kinds[name] = (type(engine).__name__, mesh.vertices.shape[1], mesh.licence.split(" ")[0])
    assert kinds == {"tiny-ln3diff": ("LN3DiffEngine", 3, "Apache-2.0"), "tiny-shap-e": ("ShapEEngine", 3, "MIT")}


def test_a_folder_is_known_by_its_model_index_not_its_name(tmp_path: Path) -> None:
    from ldm3d_engine.offline.tiny_objects import ensure_tiny_shap_e

    built = ensure_tiny_shap_e(tmp_path / "tiny")
    renamed = tmp_path / "ln3diff-lookalike"  # a misleading folder name changes nothing
    shutil.copytree(built, renamed)
    engine = load_object_engine(EngineSettings(tiny_dir=str(tmp_path / "tiny")), str(renamed))
    assert type(engine).__name__ == "ShapEEngine"


def test_an_unknown_object_model_names_those_there_are(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel, match="not one of ln3diff, tiny-ln3diff, shap-e, tiny-shap-e"):
        load_object_engine(EngineSettings(tiny_dir=str(tmp_path)), "no-such-model")
