"""Render the README's "Live" pictures: three previews of one job and its world, three frames of a morph.

    .venv/bin/python bench/make_live_images.py            # writes docs/images/live-previews.png, live-morph.png

From the built-in tiny panorama model (random weights, built offline): **the pictures are noise**,
and a preview of random weights is saturated noise (its x₀ is about eight times a trained model's
range); what they show is the machinery: a preview every few steps at 1/8 of the world's size, the
world itself from the VAE, a morph whose first and last frames are the two worlds. There is no
synthetic stand-in for a diffusion model's forming world (the synthetic scene of
``make_doc_images.py`` has no latent), so none is drawn.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ldm3d_engine import EngineSettings, GenerateRequest, load_engine
from ldm3d_engine.types import Preview, Previews

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
SIZE = (256, 128)
CELL = (256, 128)


def _cell(rgb: np.ndarray, label: str) -> Image.Image:
    image = Image.fromarray(rgb).resize(CELL, Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 8 + 6 * len(label), 14), fill=(0, 0, 0))
    draw.text((4, 2), label, fill=(255, 255, 255))
    return image


def _depth_rgb(depth: np.ndarray) -> np.ndarray:
    grey = (depth.astype(np.float32) / 257).round().astype(np.uint8)
    return np.stack([grey] * 3, axis=-1)


def _sheet(columns: list[tuple[str, np.ndarray, np.ndarray]]) -> Image.Image:
    """Columns of (label, rgb, 16-bit depth): RGB above, depth below."""
    sheet = Image.new("RGB", (CELL[0] * len(columns) + 4 * (len(columns) - 1), CELL[1] * 2 + 4), (255, 255, 255))
    for i, (label, rgb, depth) in enumerate(columns):
        x = i * (CELL[0] + 4)
        sheet.paste(_cell(rgb, label), (x, 0))
        sheet.paste(_cell(_depth_rgb(depth), f"{label}: depth"), (x, CELL[1] + 4))
    return sheet


def main(out: Path = OUT, tiny_dir: str | None = None) -> None:
    engine = load_engine(EngineSettings(model="tiny-pano", tiny_dir=tiny_dir))
    width, height = SIZE
    request = GenerateRequest("a harbour at dusk", seed=7, steps=12, width=width, height=height)
    seen: list[Preview] = []
    world = engine.generate(request, previews=Previews(3, seen.append))
    columns = [(f"step {p.step}/{p.total} (preview)", p.rgb, p.depth) for p in seen]
    columns.append(("the world (VAE)", world.rgb, world.depth))
    out.mkdir(parents=True, exist_ok=True)
    _sheet(columns).save(out / "live-previews.png", optimize=True)

    second = GenerateRequest("a frozen lake", seed=8, steps=12, width=width, height=height)
    frames = [(t, engine.generate_between(request, second, t)) for t in (0.0, 0.5, 1.0)]
    labels = {0.0: "t = 0 (the first world)", 0.5: "t = 0.5", 1.0: "t = 1 (the second world)"}
    _sheet([(labels[t], r.rgb, r.depth) for t, r in frames]).save(out / "live-morph.png", optimize=True)
    print(f"wrote {out / 'live-previews.png'} ({len(seen)} previews and the world) and {out / 'live-morph.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the folder to write into (default docs/images)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ldm3d-live-images-") as tiny:
        main(args.out, tiny)
