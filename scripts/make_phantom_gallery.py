"""Render one axial slice per phantom preset into docs/phantoms/<preset>.png.

Usage::

    .venv/bin/python scripts/make_phantom_gallery.py [--out docs/phantoms] [--seed 1] [--width 256]
    .venv/bin/python scripts/make_phantom_gallery.py --realism   # docs/phantoms/realism_*.png

Each image is a soft-tissue window (level 40 HU, width 400 HU) of the axial slice that
holds the most finding voxels (for ``normal``: the slice through the portal bifurcation),
resampled to ``--width`` pixels wide, patient right on the image left, anterior at the top.
``--realism`` renders :data:`REALISM_CASES` with every realism option on (3 mm slices every
1.5 mm) into ``realism_<preset>_<phase>.png`` instead (``normal``: the slice where the bowel
lies against the liver).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

GRID = dict(shape_zyx=(110, 384, 384), spacing_zyx=(1.5, 0.9, 0.9))
LEVEL_HU, WIDTH_HU = 40.0, 400.0
#: (preset, phase) pairs of the realism gallery
REALISM_CASES = (("normal", "arterial"), ("calcified_metastases", "portal_venous"), ("duct_stones", "portal_venous"))


def render(preset: str, seed: int, width: int, *, phase: str | None = None, realism: bool = False) -> tuple[np.ndarray, int, str]:
    from skimage.transform import resize

    from calcscope.synth import Realism, generate_phantom

    real = Realism(slice_thickness_mm=3.0) if realism else None
    ph = generate_phantom(preset, seed=seed, phase=phase, realism=real, **GRID)
    if realism and not ph.truth.objects:
        # the slice where the bowel lies against the liver
        from calcscope.synth import ORGAN_LABELS

        from scipy import ndimage

        near = ndimage.binary_dilation(ph.organs == ORGAN_LABELS["liver"], iterations=3) & (ph.organs == ORGAN_LABELS["bowel"])
        z = int(np.argmax(near.sum(axis=(1, 2))))
    elif ph.truth.objects:
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
    ap.add_argument("--realism", action="store_true", help="render REALISM_CASES with calcscope.synth.Realism on")
    ap.add_argument("--presets", nargs="*", default=None, help="render only these presets (default: all)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cases = REALISM_CASES if args.realism else tuple((p, None) for p in PRESETS)
    if args.presets:
        cases = tuple(c for c in cases if c[0] in args.presets)
    for preset, want_phase in cases:
        img, z, phase = render(preset, args.seed, args.width, phase=want_phase, realism=args.realism)
        path = args.out / (f"realism_{preset}_{phase}.png" if args.realism else f"{preset}.png")
        Image.fromarray(img, mode="L").save(path, optimize=True)
        print(f"{path} (slice {z}, {phase}, {path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
