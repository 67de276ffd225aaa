"""Export a job's world as a textured mesh for Blender, Unity, Unreal and WebXR viewers.

Vertex positions come from the reference renderer's shader (transform feedback),
so the mesh is exactly the sphere TouchDesigner displaces. Formats:

* ``.glb``: binary glTF with the RGB image embedded as the base colour texture;
* ``.obj``: OBJ + MTL + the texture PNG beside it;
* ``.ply``: binary PLY with per-vertex colours sampled from the RGB image.

With objects (``--object``, :mod:`bridge.render.objects`), only ``.glb``: a scene of the world's
node and one node per object, each holding the object's own mesh (vertex colours) under its
placement's matrix, scaled by the same base radius as the exported sphere (:data:`WORLD_RADIUS`).

trimesh writes the files; it is the ``[mesh]`` extra, imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bridge.render.objects import WorldObject
from bridge.render.preview import PreviewError, SphereRenderer, load_job_textures
from bridge.render.sphere import sphere_grid

FORMATS = (".glb", ".obj", ".ply")
#: The exported sphere's base radius; objects' placements are scaled by the same.
WORLD_RADIUS = 1.0


def export_mesh(
    job_dir: Path,
    out: Path,
    *,
    columns: int = 512,
    rows: int = 256,
    strength: float = 1.0,
    objects: Sequence[WorldObject] = (),
) -> tuple[int, int]:
    """Write the displaced sphere of ``job_dir`` (and ``objects``, .glb only) to ``out``; return
    (vertices, triangles) of the whole file."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise PreviewError(f"{out.name}: unknown mesh format; use one of {', '.join(FORMATS)}")
    if objects and suffix != ".glb":
        raise PreviewError(f"{out.name}: objects need .glb (one file with a node per object); use --out FILE.glb")
    try:
        import trimesh
    except ImportError:
        raise PreviewError("mesh export needs trimesh: pip install 'ldm3d-bridge[mesh]'") from None
    rgb, depth = load_job_textures(job_dir)
    grid = sphere_grid(columns, rows)
    renderer = SphereRenderer(rgb, depth, strength=strength, base_radius=WORLD_RADIUS, grid=grid)
    try:
        vertices = renderer.positions()
    finally:
        renderer.release()
    # The sphere is seen from inside; flip the winding so normals face the viewer at the centre.
    faces = grid.triangles[:, ::-1].astype(np.int64)
    image = Image.fromarray(rgb, "RGB")
    if suffix == ".ply":
        px = np.clip((grid.uv[:, 0] * (rgb.shape[1] - 1)).round().astype(int), 0, rgb.shape[1] - 1)
        py = np.clip(((1.0 - grid.uv[:, 1]) * (rgb.shape[0] - 1)).round().astype(int), 0, rgb.shape[0] - 1)
        colors = np.concatenate([rgb[py, px], np.full((len(px), 1), 255, np.uint8)], axis=1)
        mesh = trimesh.Trimesh(vertices, faces, vertex_colors=colors, process=False)
    else:
        material = trimesh.visual.material.SimpleMaterial(image=image)
        visual = trimesh.visual.TextureVisuals(uv=grid.uv, image=image, material=material)
        mesh = trimesh.Trimesh(vertices, faces, visual=visual, process=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".obj":
        text, files = trimesh.exchange.obj.export_obj(
            mesh, include_texture=True, return_texture=True, mtl_name=f"{out.stem}.mtl"
        )
        out.write_text(text, encoding="utf-8")
        for name, data in files.items():
            (out.parent / name).write_bytes(data)
    elif objects:
        _scene(trimesh, mesh, objects, renderer.base_radius).export(out)
        return len(vertices) + sum(len(o.vertices) for o in objects), len(faces) + sum(len(o.faces) for o in objects)
    else:
        mesh.export(out)
    return len(vertices), len(faces)


def _scene(trimesh: Any, world: Any, objects: Sequence[WorldObject], base_radius: float) -> Any:
    """A trimesh Scene: the node ``world-sphere``, then a node ``object-<id>`` per object with its matrix."""
    scene = trimesh.Scene()
    scene.add_geometry(world, geom_name="world-sphere", node_name="world-sphere")
    for obj in objects:
        rgba = np.concatenate([obj.colors, np.full((len(obj.colors), 1), 255, np.uint8)], axis=1)
        mesh = trimesh.Trimesh(obj.vertices, obj.faces.astype(np.int64), vertex_colors=rgba, process=False)
        name = f"object-{obj.name}"
        scene.add_geometry(mesh, geom_name=name, node_name=name, transform=obj.placement.matrix(base_radius))
    return scene
