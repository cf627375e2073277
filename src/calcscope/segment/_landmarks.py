"""Anatomical landmarks on the canonical (S, P, L) grid: spine, aorta, IVC, gallbladder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["AortaFit", "IvcTrack", "IvcTrackParams", "find_aorta", "find_gallbladder", "find_ivc", "track_ivc"]


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
                lumen_max_radius_mm: float = 16.0, centre_score_fraction: float = 0.7,
                lumen_max_cv: float = 0.15, lumen_min_hu: float = 250.0) -> AortaFit | None:
    """Locate the aorta as the round lumen standing out most from its surroundings, in front of the spine.

    In each slice the spine is the bone (> 180 HU) near the midline in the posterior half of the
    body (its largest component, leaving out homogeneous ones whose HU varies by less than
    ``lumen_max_cv`` of a mean of at least ``lumen_min_hu``: a contrast-filled lumen, such as
    the aorta of a CT angiogram, is as dense as bone but has no cortex and marrow, while a
    thin piece of cortex of an osteopenic spine, homogeneous on a coarse grid, stays below
    that mean); the aorta is searched 20-80 mm anterior to the bone centroid and from 15 mm right to
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
        # the spine is the largest bony component (calcifications in the liver or vessels are
        # not); a contrast-filled lumen above the bone level (the aorta of a CT angiogram) is a
        # homogeneous component and is not bone: bone mixes cortex and marrow
        blab, nb = ndi.label(bone, structure=np.ones((3, 3), bool))
        index = np.arange(1, nb + 1)
        sizes = np.bincount(blab.ravel(), minlength=nb + 1)[1:].astype(float)
        mean = np.asarray(ndi.mean(img[z], blab, index))
        lumen = (sizes >= 4) & (mean >= lumen_min_hu) & (np.asarray(ndi.standard_deviation(img[z], blab, index)) < lumen_max_cv * mean)
        sizes[lumen] = 0.0
        if not sizes.any():
            continue  # only lumens: no spine in this slice
        bone = blab == int(np.argmax(sizes) + 1)
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


@dataclass(frozen=True)
class IvcTrackParams:
    """Parameters of :func:`track_ivc`; lengths in mm, intensities in HU.

    Attributes
    ----------
    below_liver_mm: how far below the liver's lowest slice seeds are looked for.
    seed_slab_above_mm: the aorta placing the seed window is found from ``below_liver_mm`` under
        to this far above the liver's lowest slice.
    seed_search_mm: radius of the seed search around the expected IVC centre (from the aorta).
    seed_probe_mm, seed_ring_mm: probe disc radius and the annulus (inner, outer) it is compared with.
    seed_min_contrast_hu: the seed disc must exceed the mean of its ring (fat, retroperitoneum) by this.
    seed_max_liver_fraction: a seed cross-section may lie in the liver mask by at most this share.
    area_mm2: plausible cross-section area of the IVC (seeds and tracked slices).
    max_area_ratio: an observed cross-section is accepted when its area is within this factor of the
        previous one's.
    max_shift_mm: ... and its centre within this distance of the predicted centre.
    search_margin_mm: the observation is looked for within this distance of the predicted cross-section.
    max_drift_mm_per_mm: bound on the extrapolated drift of the centre per mm of height.
    blood_tolerance_hu: an observed pixel lies within this of the IVC's own (seed-measured) HU.
    aorta_max_lateral_mm: the aorta found at the seed levels replaces the one found over the liver
        when it lies within this distance of it left-right.
    max_predict_mm: the carried prediction is used up to this height above the last slice where the
        vessel was seen; above it the track ends (a long extrapolation drifts off the vessel).
    open_mm: radius of the in-plane opening that separates the section from bridged neighbours.
    max_area_vs_seed: an observed section is at most this factor larger or smaller than the seed's
        (bounds a slow creep of accepted observations into a neighbour).
    min_section_hu: tracking stops where the predicted section's median falls below this (it has
        left the vessel into fat or lung).
    """

    below_liver_mm: float = 40.0
    seed_slab_above_mm: float = 20.0
    seed_search_mm: float = 16.0
    seed_probe_mm: float = 5.0
    seed_ring_mm: tuple[float, float] = (8.0, 14.0)
    seed_min_contrast_hu: float = 30.0
    seed_max_liver_fraction: float = 0.2
    area_mm2: tuple[float, float] = (80.0, 900.0)
    max_area_ratio: float = 1.5
    max_shift_mm: float = 5.0
    search_margin_mm: float = 5.0
    max_drift_mm_per_mm: float = 0.3
    blood_tolerance_hu: float = 25.0
    min_section_hu: float = -10.0
    open_mm: float = 3.0
    max_predict_mm: float = 15.0
    aorta_max_lateral_mm: float = 15.0
    max_area_vs_seed: float = 2.0


@dataclass
class IvcTrack:
    """IVC tracked slice by slice: the cross-sections (bool mask), its HU and what each slice came from.

    ``source[z]`` is 0 (not tracked), 1 (seed), 2 (observed: an edge was seen) or 3 (predicted:
    the shape carried up from the slices below).
    """

    mask: np.ndarray
    hu: float
    source: np.ndarray


def _seed_section(sl: np.ndarray, liver: np.ndarray, win: np.ndarray, fp: np.ndarray, fr: np.ndarray, px_mm2: float,
                  sp_yx: tuple[float, float], tp: IvcTrackParams, max_hu: float) -> tuple[np.ndarray, float] | None:
    """A distinct soft-tissue cross-section in ``win`` standing out from the ring around it, or None.

    The probe disc with the highest contrast against its ring (``seed_min_contrast_hu``) marks
    it; the section is then the pixels connected to it that are nearer the section's own median
    than the median of the band just outside it (fat, retroperitoneum), within
    ``blood_tolerance_hu`` of that median. Returns the section and its median HU.
    """
    mean = ndi.convolve(sl, fp, mode="nearest")
    sd = np.sqrt(np.maximum(ndi.convolve(sl * sl, fp, mode="nearest") - mean * mean, 0))
    ring = ndi.convolve(sl, fr, mode="nearest")
    ok = win & ~liver & (mean > -10.0) & (mean < max_hu) & (sd < np.maximum(25.0, 0.12 * np.abs(mean)))
    if not ok.any():
        return None
    score = np.where(ok, mean - ring, -np.inf)
    k = int(np.argmax(score))
    if score.flat[k] < tp.seed_min_contrast_hu:
        return None
    cy, cx = np.unravel_index(k, sl.shape)
    yy, xx = np.mgrid[0:sl.shape[0], 0:sl.shape[1]]
    rmax = np.sqrt(tp.area_mm2[1] / np.pi) + 2.0
    near = ((yy - cy) * sp_yx[0]) ** 2 + ((xx - cx) * sp_yx[1]) ** 2 <= rmax**2
    v, b = float(mean[cy, cx]), float(ring[cy, cx])
    opening = _disc((tp.open_mm / sp_yx[0], tp.open_mm / sp_yx[1]))
    sec = None
    for _ in range(2):
        # re-measure the section's own HU and that of the band around it, then split halfway
        cand = near & (np.abs(sl - v) < np.abs(sl - b)) & (np.abs(sl - v) < tp.blood_tolerance_hu)
        # an opening cuts the section off neighbours of equal density joined by a thin bridge (crus)
        cand = ndi.binary_opening(cand, structure=opening)
        lab, _n = ndi.label(cand)
        if not lab[cy, cx]:
            return None
        sec = lab == lab[cy, cx]
        band = ndi.binary_dilation(sec, iterations=2) & ~sec
        v, b = float(np.median(sl[sec])), float(np.median(sl[band]))
        if v - b < tp.seed_min_contrast_hu:
            return None
    area = sec.sum() * px_mm2
    if not (tp.area_mm2[0] <= area <= tp.area_mm2[1]) or (sec & liver).sum() > tp.seed_max_liver_fraction * sec.sum():
        return None
    return sec, v


def _shift(mask: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``mask`` moved by a whole number of pixels (rounded)."""
    iy, ix = int(round(dy)), int(round(dx))
    out = np.zeros_like(mask)
    ny, nx = mask.shape
    out[max(0, iy):ny + min(0, iy), max(0, ix):nx + min(0, ix)] = mask[max(0, -iy):ny - max(0, iy), max(0, -ix):nx - max(0, ix)]
    return out


def track_ivc(
    img: np.ndarray,
    liver: np.ndarray,
    body: np.ndarray,
    aorta: AortaFit,
    sp: tuple[float, float, float],
    *,
    liver_hu: float,
    min_gap_hu: float = 8.0,
    params: IvcTrackParams | None = None,
) -> IvcTrack | None:
    """Follow the IVC upwards from below the liver, where it is a distinct tube, through the liver.

    Below the liver (up to ``below_liver_mm`` under its lowest slice) the IVC is a round soft-tissue
    cross-section near the expected position right of the aorta (``IVC_FROM_AORTA_MM``), standing
    out from the fat and retroperitoneum around it (the probe disc exceeds its ring by
    ``seed_min_contrast_hu``) and lying outside the liver mask. From the first such seed the
    tracker climbs slice by slice (canonical axis 0 points superior): the previous cross-section,
    moved by the centre's recent drift, is the prediction; the observation is the connected set of
    pixels near the prediction that are blood-like (within ``blood_tolerance_hu`` of the IVC's
    seed HU) and not liver (outside the liver mask, or nearer the IVC's HU than the liver's when
    the two differ by ``min_gap_hu``). The observation is accepted when its area and centre agree
    with the prediction (``max_area_ratio``, ``max_shift_mm``); otherwise, where the IVC enters
    the liver and has no edge against it, the prediction itself is taken. Tracking ends at the
    liver's top slice.

    Returns None when no seed is found (e.g. the scan starts inside the liver).
    """
    tp = params or IvcTrackParams()
    zs = np.nonzero(liver.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return None
    nz, ny, nx = img.shape
    syy, sxx = sp[1], sp[2]
    px = syy * sxx
    fp = _disc((tp.seed_probe_mm / syy, tp.seed_probe_mm / sxx)).astype(np.float32)
    fp /= fp.sum()
    fr = _ring(tp.seed_ring_mm, (syy, sxx))
    fr /= fr.sum()
    z_lo = max(0, int(zs[0] - np.floor(tp.below_liver_mm / sp[0])))
    z_top = int(zs[-1])
    # the aorta moves (posteriorly as it climbs to the hiatus): the seed window is placed from the
    # aorta at the seed levels, not from its median over the liver
    slab = np.zeros(nz, bool)
    slab[z_lo:min(z_top, int(zs[0] + np.ceil(tp.seed_slab_above_mm / sp[0]))) + 1] = True
    local = find_aorta(img, body & slab[:, None, None], sp)
    # ... when it is the same vessel: the aorta climbs almost vertically, moving front-to-back but
    # hardly sideways (an equally enhanced IVC 35 mm to the right is not taken for it)
    if local is not None and abs(local.hu - aorta.hu) <= tp.blood_tolerance_hu \
            and abs(local.centre_yx[1] - aorta.centre_yx[1]) * sxx <= tp.aorta_max_lateral_mm:
        aorta = local
    ey = aorta.centre_yx[0] + IVC_FROM_AORTA_MM[0] / syy
    ex = aorta.centre_yx[1] + IVC_FROM_AORTA_MM[1] / sxx
    # work in a box around the expected position (seed window, the largest IVC, the ring, the drift)
    pad = int(np.ceil((tp.seed_search_mm + 2 * np.sqrt(tp.area_mm2[1] / np.pi) + tp.seed_ring_mm[1] + 20.0) / min(syy, sxx)))
    y0, y1 = max(0, int(ey) - pad), min(ny, int(ey) + pad + 1)
    x0, x1 = max(0, int(ex) - pad), min(nx, int(ex) + pad + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    win = ((yy - ey) * syy) ** 2 + ((xx - ex) * sxx) ** 2 <= tp.seed_search_mm**2
    out = np.zeros(img.shape, bool)
    source = np.zeros(nz, np.uint8)
    # blood is never denser than the aorta's lumen (+ noise): bone and calcium are not seeds
    max_hu = aorta.hu + tp.blood_tolerance_hu
    prev, hu, z = None, None, z_lo
    for z in range(z_lo, z_top + 1):
        got = _seed_section(img[z, y0:y1, x0:x1].astype(np.float32), liver[z, y0:y1, x0:x1], win, fp, fr, px, (syy, sxx), tp, max_hu)
        if got is None:
            continue
        # a seed counts when the slice above shows the same section (a tube, not a blob)
        nxt = _seed_section(img[z + 1, y0:y1, x0:x1].astype(np.float32), liver[z + 1, y0:y1, x0:x1], win, fp, fr, px, (syy, sxx), tp,
                            max_hu) if z + 1 < nz else None
        if nxt is not None and (got[0] & nxt[0]).sum() >= 0.5 * min(got[0].sum(), nxt[0].sum()):
            prev, hu = got
            out[z, y0:y1, x0:x1] = prev
            source[z] = 1
            break
    if prev is None:
        return None
    hus = [hu]
    last_seen = z
    seed_area = float(prev.sum())
    opening = _disc((tp.open_mm / syy, tp.open_mm / sxx))
    centres = [(z, *np.argwhere(prev).mean(axis=0))]
    sep = abs(hu - liver_hu) >= min_gap_hu
    margin = [tp.search_margin_mm / s for s in (syy, sxx)]
    for z in range(z + 1, z_top + 1):
        sl = img[z, y0:y1, x0:x1].astype(np.float32)
        lv = liver[z, y0:y1, x0:x1]
        # drift of the centre over the last few accepted slices, bounded per mm of height
        dy = dx = 0.0
        if len(centres) >= 2:
            (za, ya, xa), (zb, yb, xb) = centres[max(0, len(centres) - 4)], centres[-1]
            if zb > za:
                lim = tp.max_drift_mm_per_mm * sp[0]
                dy = float(np.clip((yb - ya) / (zb - za) * syy, -lim, lim)) / syy
                dx = float(np.clip((xb - xa) / (zb - za) * sxx, -lim, lim)) / sxx
        pred = _shift(prev, dy, dx)
        if not pred.any():
            break
        pc = np.argwhere(pred).mean(axis=0)
        region = ndi.distance_transform_edt(~pred, sampling=(syy, sxx)) <= tp.search_margin_mm
        blood = np.abs(sl - hu) < tp.blood_tolerance_hu
        notliver = (np.abs(sl - hu) < np.abs(sl - liver_hu)) if sep else ~lv
        cand = ndi.binary_opening(region & blood & notliver, structure=opening)
        lab, n = ndi.label(cand)
        obs = None
        if n:
            ov = np.bincount(lab[pred], minlength=n + 1)
            ov[0] = 0
            best = int(np.argmax(ov))
            if ov[best] > 0:
                o = lab == best
                ratio = o.sum() / max(1, prev.sum())
                oc = np.argwhere(o).mean(axis=0)
                shift = np.hypot((oc[0] - pc[0]) * syy, (oc[1] - pc[1]) * sxx)
                vs_seed = o.sum() / seed_area
                if 1.0 / tp.max_area_ratio <= ratio <= tp.max_area_ratio and shift <= tp.max_shift_mm \
                        and 1.0 / tp.max_area_vs_seed <= vs_seed <= tp.max_area_vs_seed \
                        and tp.area_mm2[0] <= o.sum() * px <= tp.area_mm2[1]:
                    obs = o
        if obs is None and np.median(sl[pred]) < tp.min_section_hu:
            break  # the carried section has left the vessel (fat, lung): nothing left to follow
        if obs is None and (z - last_seen) * sp[0] > tp.max_predict_mm:
            break  # carried too far without seeing the vessel: the prediction is no longer trusted
        if obs is not None:
            last_seen = z
            prev = obs
            source[z] = 2
            hus.append(float(np.median(sl[obs])))
            hu = float(np.median(hus[-5:]))
            centres.append((z, *np.argwhere(obs).mean(axis=0)))
        else:
            prev = pred
            source[z] = 3
        out[z, y0:y1, x0:x1] = prev
    return IvcTrack(mask=out, hu=float(np.median(hus)), source=source)
