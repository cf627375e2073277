"""Render one axial slice per phantom preset into docs/phantoms/<preset>.png.

Usage::

    .venv/bin/python scripts/make_phantom_gallery.py [--out docs/phantoms] [--seed 1] [--width 256]

Each image is a soft-tissue window (level 40 HU, width 400 HU) of the axial slice that
holds the most finding voxels (for ``normal``: the slice through the portal bifurcation),
resampled to ``--width`` pixels wide, patient right on the image left, anterior at the top.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

GRID = dict(shape_zyx=(110, 384, 384), spacing_zyx=(1.5, 0.9, 0.9))
LEVEL_HU, WIDTH_HU = 40.0, 400.0


def render(preset: str, seed: int, width: int) -> tuple[np.ndarray, int, str]:
    from skimage.transform import resize

    from calcscope.synth import generate_phantom

    ph = generate_phantom(preset, seed=seed, phase=None, **GRID)
    if ph.truth.objects:
        counts = (ph.objects > 0).sum(axis=(1, 2))
        z = int(np.argmax(counts))
    else:
        z = int(round(ph.truth.landmarks["portal_bifurcation"].voxel[0]))
    sl = ph.volume.array[z].astype(np.float32)
    lo = LEVEL_HU - WIDTH_HU / 2
    img = np.clip((sl - lo) / WIDTH_HU, 0.0, 1.0)
    ny, nx = img.shape
    sy, sx = ph.volume.spacing_zyx[1:]
    height = int(round(width * (ny * sy) / (nx * sx)))
    img = resize(img, (height, width), anti_aliasing=True, order=1)
    return (img * 255.0 + 0.5).astype(np.uint8), z, ph.truth.phase


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from calcscope.synth import PRESETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/phantoms"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--width", type=int, default=256)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for preset in PRESETS:
        img, z, phase = render(preset, args.seed, args.width)
        path = args.out / f"{preset}.png"
        Image.fromarray(img, mode="L").save(path, optimize=True)
        print(f"{path} (slice {z}, {phase}, {path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
