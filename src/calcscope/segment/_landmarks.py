"""Anatomical landmarks on the canonical (S, P, L) grid: spine, aorta, IVC, gallbladder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["AortaFit", "find_aorta", "find_gallbladder", "find_ivc"]


@dataclass
class AortaFit:
    """Aorta found slice by slice: median HU, centre (y, x) on the canonical grid, radius mm."""

    hu: float
    centre_yx: tuple[float, float]
    radius_mm: float
    slices: int


def _disc(radius_vox: tuple[float, float]) -> np.ndarray:
    ry, rx = (max(1, int(np.ceil(r))) for r in radius_vox)
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    return (yy / radius_vox[0]) ** 2 + (xx / radius_vox[1]) ** 2 <= 1.0


def _ring(radii_mm: tuple[float, float], spacing_yx: tuple[float, float]) -> np.ndarray:
    """Float footprint of the annulus between two radii (mm) on a grid of ``spacing_yx``."""
    r_in, r_out = radii_mm
    ry, rx = (max(1, int(np.ceil(r_out / s))) for s in spacing_yx)
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    d = np.hypot(yy * spacing_yx[0], xx * spacing_yx[1])
    return ((d > r_in) & (d <= r_out)).astype(np.float32)


def find_aorta(img: np.ndarray, body: np.ndarray, sp: tuple[float, float, float], *, disc_radius_mm: float = 6.0, wide_radius_mm: float = 14.0,
                lumen_max_radius_mm: float = 16.0, centre_score_fraction: float = 0.7) -> AortaFit | None:
    """Locate the aorta as the round lumen standing out most from its surroundings, in front of the spine.

    In each slice the spine is the bone (> 180 HU) near the midline in the posterior half of the
    body; the aorta is searched 20-80 mm anterior to the bone centroid and from 15 mm right to
    45 mm left of it, among homogeneous discs (radius ``disc_radius_mm``, SD < 25 HU or 12 %), as
    the one whose mean exceeds the mean of the ring around it (from 3 mm beyond the disc out to
    ``wide_radius_mm``) the most. Scoring by contrast with the ring, not by brightness, finds the
    unenhanced aorta in its fat on non-contrast CT and skips the inside of larger structures (the
    cancellous bone of an osteopenic vertebral body, liver, IVC). The HU reported is the median
    disc mean over slices; the centre is the median over slices of the centroid of the probe
    positions scoring at least ``centre_score_fraction`` of the best, joined to it. Returns None when no slice qualifies (e.g. no spine in the field of view).
    """
    nz, ny, nx = img.shape
    syy, sxx = sp[1], sp[2]
    fp = _disc((disc_radius_mm / syy, disc_radius_mm / sxx)).astype(np.float32)
    fp /= fp.sum()
    fw = _ring((disc_radius_mm + 3.0, wide_radius_mm), (syy, sxx))
    fw /= fw.sum()
    yy, xx = np.mgrid[0:ny, 0:nx]
    vals, centres = [], []
    for z in range(nz):
        if not body[z].any():
            continue
        yb, xb = np.nonzero(body[z])
        xc = 0.5 * (xb.min() + xb.max())
        y0, y1 = yb.min(), yb.max()
        sel = np.zeros((ny, nx), bool)
        x_lo = int(max(0, xc - 30.0 / sxx))
        x_hi = int(min(nx, xc + 30.0 / sxx))
        sel[int(y0 + 0.45 * (y1 - y0)):int(y1), x_lo:x_hi] = True
        bone = (img[z] > 180) & sel
        if bone.sum() * syy * sxx < 300.0:
            continue
        # the spine is the largest bony component (calcifications in the liver or vessels are not)
        blab, nb = ndi.label(bone, structure=np.ones((3, 3), bool))
        if nb > 1:
            bone = blab == int(np.argmax(np.bincount(blab.ravel())[1:]) + 1)
        by, bx = np.nonzero(bone)
        cy, cx = by.mean(), bx.mean()
        ya, yb_ = int(max(0, cy - 80.0 / syy)), int(max(0, cy - 20.0 / syy))
        xa, xb_ = int(max(0, cx - 15.0 / sxx)), int(min(nx, cx + 45.0 / sxx))
        if yb_ - ya < 3 or xb_ - xa < 3:
            continue
        sl = img[z].astype(np.float32)
        mean = ndi.convolve(sl, fp, mode="nearest")
        sq = ndi.convolve(sl * sl, fp, mode="nearest")
        sd = np.sqrt(np.maximum(sq - mean * mean, 0))
        win = np.zeros((ny, nx), bool)
        win[ya:yb_, xa:xb_] = True
        # the lumen stands out from the ring around it (periaortic fat, crus, vertebral cortex);
        # the inside of a larger organ does not (the cancellous bone of an osteopenic vertebral
        # body, whose cortex may not reach 180 HU, liver, IVC): score = disc mean - ring mean
        ring_mean = ndi.convolve(sl, fw, mode="nearest")
        ok = win & body[z] & (mean > -20) & (mean < 600) & (sd < np.maximum(25.0, 0.12 * mean))
        if not ok.any():
            continue
        score = np.where(ok, mean - ring_mean, -np.inf)
        k = int(np.argmax(score))
        v = float(mean.flat[k])
        cy0, cx0 = np.unravel_index(k, (ny, nx))
        vals.append(v)
        # centre of the lumen: in a lumen wider than the probe the best-scoring positions form a
        # crescent around the centre; their centroid (positions scoring >= ``centre_score_fraction``
        # of the best, joined to it, within ``lumen_max_radius_mm``) is taken
        near = ((yy - cy0) * syy) ** 2 + ((xx - cx0) * sxx) ** 2 <= lumen_max_radius_mm**2
        best = score[cy0, cx0]
        lumen, _ = ndi.label(near & ok & (score >= centre_score_fraction * best))
        ly, lx = np.nonzero(lumen == lumen[cy0, cx0])
        centres.append((float(ly.mean()), float(lx.mean())))
    if not vals:
        return None
    c = np.median(np.asarray(centres, float), axis=0)
    return AortaFit(hu=float(np.median(vals)), centre_yx=(float(c[0]), float(c[1])), radius_mm=disc_radius_mm, slices=len(vals))


#: IVC centre relative to the aorta centre found by :func:`find_aorta` (mm; canonical y = posterior,
#: x = patient left): right of it and level with it. Measured on the real example CTs and the phantoms:
#: dx -27 to -38 mm, dy -11 to +4 mm, diameter 15-26 mm.
IVC_FROM_AORTA_MM = (-4.0, -34.0)


def find_ivc(
    img: np.ndarray,
    zrange: tuple[int, int],
    aorta: AortaFit,
    sp: tuple[float, float, float],
    *,
    liver_hu: float,
    min_gap_hu: float = 8.0,
    search_mm: float = 14.0,
    probe_radius_mm: float = 6.0,
    max_radius_mm: float = 15.0,
) -> np.ndarray:
    """Inferior vena cava as a column of per-slice discs right of the aorta, where it differs from liver.

    In each slice of ``zrange`` a homogeneous probe disc (``probe_radius_mm``) is searched within
    ``search_mm`` of the expected IVC centre (``IVC_FROM_AORTA_MM`` from the aorta) for the mean
    furthest from ``liver_hu`` (blood 20 HU up to the aorta's attenuation); the slice's IVC is then the
    pixels within ``max_radius_mm`` of it whose value is nearer that mean than the liver's. Slices where
    the IVC differs from liver by less than ``min_gap_hu`` (equal enhancement) yield nothing: there the
    IVC cannot be told from liver by attenuation. ``img`` should be lightly smoothed.
    Returns a bool mask on ``img``'s grid.
    """
    out = np.zeros(img.shape, bool)
    ny, nx = img.shape[1:]
    syy, sxx = sp[1], sp[2]
    fp = _disc((probe_radius_mm / syy, probe_radius_mm / sxx)).astype(np.float32)
    fp /= fp.sum()
    ey = aorta.centre_yx[0] + IVC_FROM_AORTA_MM[0] / syy
    ex = aorta.centre_yx[1] + IVC_FROM_AORTA_MM[1] / sxx
    yy, xx = np.mgrid[0:ny, 0:nx]
    win = ((yy - ey) * syy) ** 2 + ((xx - ex) * sxx) ** 2 <= search_mm**2
    if not win.any():
        return out
    pad = int(np.ceil((search_mm + max_radius_mm) / min(syy, sxx))) + 1
    y0, y1 = max(0, int(ey) - pad), min(ny, int(ey) + pad + 1)
    x0, x1 = max(0, int(ex) - pad), min(nx, int(ex) + pad + 1)
    hi_hu = max(aorta.hu + 30.0, liver_hu + 30.0)
    for z in range(max(0, zrange[0]), min(img.shape[0], zrange[1] + 1)):
        sl = img[z, y0:y1, x0:x1].astype(np.float32)
        mean = ndi.convolve(sl, fp, mode="nearest")
        sd = np.sqrt(np.maximum(ndi.convolve(sl * sl, fp, mode="nearest") - mean * mean, 0))
        gap = np.abs(mean - liver_hu)
        ok = win[y0:y1, x0:x1] & (mean > 20.0) & (mean < hi_hu) & (sd < max(12.0, 0.5 * min_gap_hu + 6.0)) & (gap >= min_gap_hu)
        if not ok.any():
            continue
        k = int(np.argmax(np.where(ok, gap, -np.inf)))
        cy, cx = np.unravel_index(k, sl.shape)
        v = float(mean[cy, cx])
        near = ((yy[y0:y1, x0:x1] - (y0 + cy)) * syy) ** 2 + ((xx[y0:y1, x0:x1] - (x0 + cx)) * sxx) ** 2 <= max_radius_mm**2
        ivc = near & (np.abs(sl - v) < np.abs(sl - liver_hu))
        lab, n = ndi.label(ivc)
        if n:
            out[z, y0:y1, x0:x1] = lab == lab[cy, cx] if lab[cy, cx] else False
    return out


def find_gallbladder(img: np.ndarray, liver: np.ndarray, sp: tuple[float, float, float], *, liver_hu: float) -> np.ndarray | None:
    """Fluid-density blob (-20 HU to ``liver_hu`` - 25 HU) against the liver's under-surface.

    Returns the centroid (z, y, x) on the canonical grid, or None when no plausible
    gallbladder (5-200 mL, touching the liver on its right half) is seen.
    """
    if not liver.any():
        return None
    near = ndi.binary_dilation(liver, iterations=max(1, int(round(6.0 / min(sp[1:])))))
    fluid = (img > -20) & (img < liver_hu - 25.0) & ~liver
    fluid = ndi.binary_opening(fluid, structure=np.ones((1, 3, 3), bool))
    lab, n = ndi.label(fluid)
    if n == 0:
        return None
    voxel_ml = float(np.prod(sp)) / 1000.0
    counts = np.bincount(lab.ravel())
    touch = np.bincount(lab[near & fluid], minlength=n + 1)
    xs = np.nonzero(liver)[2]
    x_mid = 0.5 * (xs.min() + xs.max())
    best, best_score = None, 0.0
    for i in range(1, n + 1):
        ml = counts[i] * voxel_ml
        if not (5.0 <= ml <= 200.0) or touch[i] < 0.2 * counts[i]:
            continue
        cz, cy, cx = ndi.center_of_mass(lab == i)
        if cx > x_mid:
            continue
        score = touch[i] / counts[i]
        if score > best_score:
            best, best_score = np.array([cz, cy, cx]), score
    return best
