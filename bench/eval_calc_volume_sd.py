"""Calibration of the calcification volume noise SD, and the volume's bias.

Usage::

    .venv/bin/python bench/eval_calc_volume_sd.py [--draws 30] [--calcium-hu 500] [--noise-hu 16]
                                                  [--noise white smooth phantom] [--positions 30]

Scenes: a block of liver (58 HU) holding one calcium object painted with exact partial
volume (supersampled occupancy): balls of 2, 4 and 8 mm and an 8 x 8 x 2 mm tilted
plaque, on 1 mm isotropic voxels and on 2.5 x 1.5 x 1.5 mm voxels. Each object is
found by :func:`calcscope.detect.find_calcifications` (non-contrast) and described by
:func:`calcscope.describe.describe_calcifications`.

* **noise draws** (``--draws``): the same object under fresh noise (white, in-plane
  smoothed with a 0.8 voxel Gaussian, or the phantom's band-pass CT noise): the SD of
  the volume over the draws against the mean ``measurements["volume_sd_mm3"]`` the
  findings report (the ratio should be about 1), and the mean volume against the truth;
* **positions** (``--positions``): balls of 2-8 mm and phantom-like flattened "coarse"
  foci (radii r, 0.75 r, 0.6 r) at random sub-voxel positions and orientations, 12 HU
  noise: the volume's spread over positions and noise against the reported noise SD.
  Where the spread exceeds the noise SD, the volume depends on where the focus lies on
  the grid (a focus thinner than about two slices fills no voxel, so its calcium level
  is a partial-volume peak), which the noise SD does not cover.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy import ndimage as ndi

LIVER_HU = 58.0
SPACINGS = ((1.0, 1.0, 1.0), (2.5, 1.5, 1.5))


def _paint(arr: np.ndarray, spacing: np.ndarray, inside, lo_mm, hi_mm, hu: float, sub: int = 5) -> None:
    """Blend ``hu`` into ``arr`` with the occupancy of ``inside(z, y, x)`` (``sub``³ samples per voxel)."""
    lo = np.maximum(np.floor(np.asarray(lo_mm) / spacing).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(np.asarray(hi_mm) / spacing).astype(int) + 2, arr.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    axes = [((np.arange(s.start, s.stop)[:, None] + offs[None, :]) * spacing[a]).ravel() for a, s in enumerate(sl)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    n = [s.stop - s.start for s in sl]
    occ = inside(z, y, x).astype(np.float32).reshape(n[0], sub, n[1], sub, n[2], sub).mean(axis=(1, 3, 5))
    arr[sl] = arr[sl] * (1 - occ) + hu * occ


def scene(spacing, kind: str, size_mm: float, hu: float, offset=(0.37, 0.21, -0.13), angles=(0.5, 0.0, 0.0)):
    """(clean image, liver mask, centre mm, true volume mm³) of one calcium object."""
    from scipy.spatial.transform import Rotation

    sp = np.asarray(spacing, float)
    shape = tuple(int(np.ceil(44.0 / s)) for s in sp)
    arr = np.full(shape, LIVER_HU, np.float32)
    liver = np.zeros(shape, bool)
    liver[1:-1, 1:-1, 1:-1] = True
    c = (np.asarray(shape) - 1) / 2.0 * sp + np.asarray(offset) * sp
    r = size_mm / 2.0
    if kind == "ball":
        radii = np.array([r, r, r])
    elif kind == "plaque":
        radii = np.array([r / 4.0, r, r])
    else:  # "coarse": flattened like the phantom's coarse calcification
        radii = np.array([r, 0.75 * r, 0.6 * r])
    rot = Rotation.from_euler("zyx", angles).as_matrix()

    def inside(z, y, x):
        p = np.stack([z - c[0], y - c[1], x - c[2]], -1) @ rot
        return ((p / radii) ** 2).sum(-1) <= 1.0

    _paint(arr, sp, inside, c - r, c + r, hu)
    return arr, liver, c, float(4.0 / 3.0 * np.pi * np.prod(radii))


def _noise(shape, spacing, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "phantom":
        from calcscope.synth._noise import correlated_noise

        return correlated_noise(shape, spacing, sd_hu=1.0, rng=rng)
    n = rng.normal(0.0, 1.0, shape)
    if kind == "smooth":
        n = ndi.gaussian_filter(n, [0.0, 0.8, 0.8])
        n /= n.std()
    return n


def measure(img: np.ndarray, liver: np.ndarray, spacing, centre_mm) -> tuple[float, float | None] | None:
    """(volume mm³, reported SD mm³) of the detected focus nearest ``centre_mm``; None if none found."""
    from calcscope.describe import describe_calcifications
    from calcscope.detect import find_calcifications
    from calcscope.model import Volume

    vol = Volume(np.round(img).astype(np.int16), spacing_zyx=tuple(spacing))
    lab = find_calcifications(vol, liver, phase="non_contrast").labels
    if not lab.any():
        return None
    ids = np.unique(lab[lab > 0])
    cents = np.asarray(ndi.center_of_mass(lab > 0, lab, ids)) * np.asarray(spacing)
    k = ids[int(np.argmin(np.linalg.norm(cents - np.asarray(centre_mm), axis=1)))]
    (f,) = describe_calcifications(vol, (lab == k).astype(np.int32), liver=liver, lobes=None)
    return f.volume_mm3, f.measurements.get("volume_sd_mm3")


def noise_draws(args) -> None:
    print(f"noise draws: {args.draws} per scene, calcium {args.calcium_hu:g} HU, noise {args.noise_hu:g} HU")
    print("voxels     object      noise    truth mm3  mean mm3  bias %  emp SD  rep SD  emp/rep  missed")
    for sp in SPACINGS:
        for kind, size in (("ball", 2.0), ("ball", 4.0), ("ball", 8.0), ("plaque", 8.0)):
            arr, liver, c, truth = scene(sp, kind, size, args.calcium_hu)
            for nk in args.noise:
                got = [measure(arr + args.noise_hu * _noise(arr.shape, sp, nk, np.random.default_rng(d)), liver, sp, c)
                       for d in range(args.draws)]
                ok = [g for g in got if g is not None]
                if len(ok) < 2:
                    print(f"{sp[0]:g}x{sp[1]:g}x{sp[2]:g}  {kind:6s} {size:3.0f}  {nk:8s} {truth:8.1f}  "
                          f"found in {len(ok)} of {len(got)} draws", flush=True)
                    continue
                v = np.array([g[0] for g in ok])
                s = np.array([np.nan if g[1] is None else g[1] for g in ok])
                print(f"{sp[0]:g}x{sp[1]:g}x{sp[2]:g}  {kind:6s} {size:3.0f}  {nk:8s} {truth:8.1f}  {v.mean():8.2f}  "
                      f"{100 * (v.mean() / truth - 1):+6.1f}  {v.std(ddof=1):6.3f}  {np.nanmean(s):6.3f}  "
                      f"{v.std(ddof=1) / np.nanmean(s):6.2f}  {len(got) - len(ok)}", flush=True)


def positions(args) -> None:
    print(f"\nsub-voxel positions: {args.positions} random positions and orientations, 12 HU white noise")
    print("voxels     object      volume/truth mean (range)   spread % of truth  noise SD %  spread/SD")
    for sp in SPACINGS:
        for kind, size in (("ball", 2.0), ("ball", 3.0), ("ball", 4.0), ("ball", 6.0), ("ball", 8.0),
                           ("coarse", 4.5), ("coarse", 6.0), ("coarse", 8.0)):
            rng = np.random.default_rng(7)
            rel, sds = [], []
            for _ in range(args.positions):
                off, ang = rng.uniform(-0.5, 0.5, 3), rng.uniform(-np.pi, np.pi, 3)
                arr, liver, c, truth = scene(sp, kind, size, args.calcium_hu, offset=off, angles=ang)
                got = measure(arr + 12.0 * rng.normal(0.0, 1.0, arr.shape), liver, sp, c)
                if got is not None:
                    rel.append(got[0] / truth)
                    sds.append(np.nan if got[1] is None else got[1] / truth)
            r, s = np.array(rel), np.array(sds)
            print(f"{sp[0]:g}x{sp[1]:g}x{sp[2]:g}  {kind:6s} {size:3.1f}  {r.mean():5.2f} ({r.min():.2f}-{r.max():.2f})"
                  f"              {100 * r.std(ddof=1):6.1f}         {100 * np.nanmean(s):6.1f}      "
                  f"{r.std(ddof=1) / np.nanmean(s):5.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--calcium-hu", type=float, default=500.0)
    ap.add_argument("--noise-hu", type=float, default=16.0)
    ap.add_argument("--noise", nargs="+", choices=("white", "smooth", "phantom"), default=["white", "smooth", "phantom"])
    ap.add_argument("--positions", type=int, default=30, help="random positions per object (0: skip)")
    args = ap.parse_args(argv)
    noise_draws(args)
    if args.positions:
        positions(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
