"""Render the preview images in docs/ from a synthetic RGBD scene (readable, unlike the tiny model's noise).

    .venv/bin/python bench/make_doc_images.py

Writes docs/images/: scene-rgb.png and scene-depth.png (the equirectangular input),
preview-centre.png (seen from the centre: a plain panorama view), preview-parallax.png
(a stereo pair: near pillars shift between the eyes, the far walls barely), preview-dome.png
(a 180° dome master: zenith at the centre, the panorama's middle at the bottom), and scene.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.render.dome import render_fisheye
from bridge.render.preview import Camera, SphereRenderer, render_stereo
from bridge.render.sphere import sphere_grid

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
H, W = 512, 1024


def scene() -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    lon = (u + 0.5) / W * 360 - 180
    lat = 90 - (v + 0.5) / H * 180
    sky = np.stack([0.35 + 0.3 * lat / 90, 0.55 + 0.3 * lat / 90, np.full_like(lat, 0.95)], -1)
    ground = ((np.floor(lon / 15) + np.floor(lat / 8)) % 2)[..., None] * np.array([0.25, 0.2, 0.1]) + [0.45, 0.4, 0.3]
    rgb = np.where((lat > 0)[..., None], sky, ground)
    depth = np.where(lat > 0, 0.15, 0.5 + 0.4 * np.clip(-lat / 90, 0, 1))  # far sky, ground nearing underfoot
    for centre, colour in (
        (-60, (0.9, 0.2, 0.2)),
        (0, (0.95, 0.8, 0.1)),
        (60, (0.2, 0.7, 0.3)),
        (150, (0.6, 0.3, 0.9)),
    ):
        pillar = (np.abs(lon - centre) < 6) & (lat < 25)
        rgb[pillar] = np.array(colour) * (0.75 + 0.25 * np.cos(np.radians(lon[pillar] - centre) * 15))[..., None]
        depth[pillar] = 0.9
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8), (depth * 65535).astype(np.uint16)


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rgb, depth = scene()
    Image.fromarray(rgb).resize((512, 256)).save(out / "scene-rgb.png")
    Image.fromarray((depth >> 8).astype(np.uint8)).resize((512, 256)).save(out / "scene-depth.png")
    renderer = SphereRenderer(rgb, depth, strength=1.0, grid=sphere_grid(512, 256))
    try:
        Image.fromarray(renderer.render(Camera(yaw=0, pitch=-5, fov=100), (640, 400))).save(out / "preview-centre.png")
        pair = render_stereo(renderer, Camera(yaw=0, pitch=-5, fov=90), (400, 300), eye_separation=0.3)
        Image.fromarray(pair).save(out / "preview-parallax.png")
        dome = render_fisheye(renderer, Camera(pitch=90.0), (400, 400), 180.0)
        Image.fromarray(dome).save(out / "preview-dome.png")
    finally:
        renderer.release()
    (out / "scene.json").write_text(json.dumps({"made_by": "bench/make_doc_images.py", "size": [W, H]}) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
