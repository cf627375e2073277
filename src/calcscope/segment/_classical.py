"""Classical liver segmentation (no learned weights), adapting to each scan's measured intensities.

Outline (all on a down-sampled grid of about ``work_spacing_mm``, canonical S/P/L axis order):

1. body mask (everything denser than air, holes filled slice by slice, largest component);
2. lungs (aerated, vessel-containing air regions) and, from them, the right hemidiaphragm level;
3. liver intensity mode and spread from a soft-tissue histogram of the right upper abdomen
   (inside the body, away from the body wall, anterior to the spine, below the right lung base);
4. soft-tissue candidate within the adaptive window, minus lungs and a thin body-wall rim;
5. separation from neighbours by an opening of a few mm, keeping the component that fills the
   right upper abdomen best, reconstructed back inside the candidate;
6. closing, 3-D and slice-wise hole filling (vessels, lesions, calcifications stay inside; a
   cavity the liver encloses except for narrow channels, such as a cyst on a vein, too),
   smoothing of the surface;
7. up-sampling to the CT grid by linear interpolation of the smoothed mask, the boundary band
   settled on the fine intensities;
8. where fat borders the liver, the partial-volume voxels above the liver/fat midpoint join it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..model import Volume
from ._landmarks import IvcTrackParams, find_aorta, find_ivc, track_ivc
from ._grid import (
    Canonical,
    _bbox,
    block_reduce_mean,
    close_mm,
    dilate_mm,
    distance_in_box,
    erode_mm,
    face_touching,
    fill_holes_2d,
    largest_components,
    to_canonical,
)

__all__ = ["ClassicalParams", "ClassicalResult", "segment_classical", "work_grid"]


@dataclass(frozen=True)
class ClassicalParams:
    """Parameters of the classical recipe; lengths in mm, intensities in HU."""

    work_spacing_mm: float = 2.5
    body_threshold_hu: float = -400.0
    air_threshold_hu: float = -500.0
    lung_min_volume_ml: float = 15.0
    lung_max_median_hu: float = -650.0
    lung_min_p10_hu: float = -955.0
    wall_distance_mm: float = 12.0
    fat_threshold_hu: float = -40.0
    muscle_wall_mm: float = 4.0
    grow_mm: float = 60.0
    local_mean_sigma_mm: float = 6.0
    neck_radius_mm: float = 9.0
    grow_smooth_mm: float = 3.0
    grow_tolerance_sigma: float = 2.0
    grow_tolerance_min_hu: float = 8.0
    grow_tolerance_max_hu: float = 30.0
    roi_wall_distance_mm: float = 25.0
    roi_below_lung_base_mm: float = 110.0
    window_sigma_low: float = 2.0
    window_sigma_high: float = 3.0
    grow_sigma_low: float = 5.0
    window_min_half_width_hu: float = 15.0
    window_max_half_width_hu: float = 60.0
    open_radius_mm: float = 8.0
    close_radius_mm: float = 8.0
    hole_max_area_mm2: float = 250.0
    smooth_sigma_mm: float = 2.0
    median: bool = True
    boundary_offset_mm: float = 1.0
    refine_drop_below_hu: float = 40.0
    refine_add_within_hu: float = 15.0
    refine_mode: str = "partial_volume"
    muscle_band_mm: tuple[float, float] = (3.0, 20.0)
    muscle_posterior_fraction: float = 0.25
    muscle_min_gap_hu: float = 6.0
    muscle_cut_fraction: float = 0.3
    muscle_max_sigma_ratio: float = 1.5
    bite_radius_mm: float = 15.0
    bite_min_above_fat_hu: float = 30.0
    bite_below_liver_sigma: float = 1.5
    ivc_min_gap_hu: float = 8.0
    reattach_min_hu: float = 4.0
    reattach_sigma: float = 0.5
    reattach_min_contact: float = 2.0
    ivc_edge_mm: float = 3.0
    fat_interface_ring: bool = True
    fat_reference_hu: tuple[float, float] = (-200.0, -40.0)
    fat_reference_min_voxels: int = 50
    ivc_track: IvcTrackParams | None = field(default_factory=IvcTrackParams)
    mass_radius_mm: float = 10.0
    mass_below_liver_sigma: float = 1.5
    #: the mass and bite windows' sigma from the bright half of the liver peak when narrower
    dark_spread_bright_side: bool = True
    mass_min_hu: float = 20.0
    mass_min_liver_share: float = 0.15
    fluid_min_hu: float = -10.0
    wall_calcium_hu: float = 200.0
    min_wall_share: float = 0.3
    mass_reattach_sigma: float = 1.5
    fluid_enclosed_share: float = 0.6
    fluid_enclosed_ring_mm: float = 6.0
    fluid_deepest_part: bool = True
    #: the fluid window reads an image smoothed without calcium (a calcified wall's blur lifts the fluid)
    fluid_smooth_without_calcium: bool = True
    cavity_radius_mm: float = 7.5
    cavity_min_liver_share: float = 0.8


@dataclass
class ClassicalResult:
    """Output of :func:`segment_classical` (native grid) with the figures it measured."""

    mask: np.ndarray
    liver_mode_hu: float
    liver_sigma_hu: float
    window_hu: tuple[float, float]
    lungs_found: bool
    notes: list[str] = field(default_factory=list)
    debug: dict[str, Any] = field(default_factory=dict)


def work_grid(spacing_zyx: tuple[float, float, float], shape: tuple[int, int, int], target_mm: float) -> tuple[int, int, int]:
    """Integer block factors giving about ``target_mm`` spacing (z kept when few slices)."""
    f = [max(1, int(round(target_mm / s))) for s in spacing_zyx]
    if shape[0] // f[0] < 8:
        f[0] = 1
    return tuple(f)  # type: ignore[return-value]


_COARSE_CACHE: dict[tuple, tuple] = {}


def coarse_image(volume: Volume, work_spacing_mm: float) -> tuple[Canonical, np.ndarray, tuple[float, float, float], tuple[int, int, int]]:
    """Canonical view and block-averaged HU image (~``work_spacing_mm``) of a volume.

    The last result is kept (keyed on the array's identity, address, shape and geometry), so that
    segmentation, lobe split and phase estimate of one volume share the down-sampling.
    """
    arr = volume.array
    key = (id(arr), arr.__array_interface__["data"][0], arr.shape, volume.spacing_zyx, volume.direction, float(work_spacing_mm))
    hit = _COARSE_CACHE.get(key)
    if hit is not None:
        return hit
    can = to_canonical(volume)
    factors = work_grid(can.spacing_zyx, can.array.shape, work_spacing_mm)
    src = can.array
    img = block_reduce_mean(np.maximum(src, -1024) if src.min() < -1024 else src, factors)
    sp = tuple(s * f for s, f in zip(can.spacing_zyx, factors))
    _COARSE_CACHE.clear()
    _COARSE_CACHE[key] = (can, img, sp, factors)
    return can, img, sp, factors  # type: ignore[return-value]


_BODY_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _body_mask(img: np.ndarray, thr: float) -> np.ndarray:
    """Body (largest dense component, holes filled slice by slice); the last result is kept.

    The cache is keyed on the image's identity, so the segmentation, the lobe split and the phase
    estimate of one volume (which share the coarse image) compute it once. Callers must not
    modify the returned array.
    """
    key = (id(img), img.shape, float(thr))
    hit = _BODY_CACHE.get(key)
    if hit is not None and hit[0] is img:  # the entry holds the image, so its id cannot be reused
        return hit[1]
    body = _body_mask_uncached(img, thr)
    _BODY_CACHE.clear()
    _BODY_CACHE[key] = (img, body)
    return body


def _body_mask_uncached(img: np.ndarray, thr: float) -> np.ndarray:
    dense = img > thr
    dense = ndi.binary_opening(dense, structure=np.ones((1, 3, 3), bool))
    lab, counts = largest_components(dense, connectivity=6)
    if counts.size <= 1:
        return dense
    counts[0] = 0
    body = lab == int(np.argmax(counts))
    return fill_holes_2d(body)


def _lungs(img: np.ndarray, body: np.ndarray, sp: tuple[float, float, float], p: ClassicalParams) -> np.ndarray:
    air = body & (img < p.air_threshold_hu)
    lab, counts = largest_components(air, connectivity=6)
    if counts.size <= 1:
        return np.zeros_like(air)
    voxel_ml = float(np.prod(sp)) / 1000.0
    keep = np.zeros(counts.size, dtype=bool)
    big = [i for i in range(1, counts.size) if counts[i] * voxel_ml >= p.lung_min_volume_ml]
    if not big:
        return np.zeros_like(air)
    objs = ndi.find_objects(lab)
    for i in big:
        v = img[objs[i - 1]][lab[objs[i - 1]] == i]
        med, p10 = np.percentile(v, [50, 10])
        # aerated lung holds vessels and septa (no pure-air floor); bowel gas does
        if med <= p.lung_max_median_hu and p10 >= p.lung_min_p10_hu:
            keep[i] = True
    lungs = keep[lab]
    return lungs


def _histogram_mode(values: np.ndarray, lo: float = -60.0, hi: float = 260.0) -> tuple[float, float]:
    """Mode and Gaussian-equivalent sigma (from the half-maximum width) of a histogram peak."""
    mode, sigma, _ = _histogram_peak(values, lo, hi)
    return mode, sigma


def _histogram_peak(values: np.ndarray, lo: float = -60.0, hi: float = 260.0) -> tuple[float, float, float]:
    """Mode, Gaussian-equivalent sigma from the half-maximum width, and the same sigma from the
    bright side's half width alone (a large darker mass in the sample widens only the dark side)."""
    bins = np.arange(lo, hi + 2.0, 2.0)
    h, edges = np.histogram(values, bins=bins)
    hs = ndi.gaussian_filter1d(h.astype(float), 2.0)
    k = int(np.argmax(hs))
    centres = 0.5 * (edges[:-1] + edges[1:])
    half = hs[k] / 2.0
    left = k
    while left > 0 and hs[left] > half:
        left -= 1
    right = k
    while right < hs.size - 1 and hs[right] > half:
        right += 1
    fwhm = max(centres[right] - centres[left], 4.0)
    hwhm_bright = max(centres[right] - centres[k], 2.0)
    return float(centres[k]), float(fwhm / 2.355), float(hwhm_bright / 1.1775)


def segment_classical(volume: Volume, params: ClassicalParams | None = None, *, debug: bool = False) -> ClassicalResult:
    """Segment the liver of a CT volume without learned weights.

    Parameters
    ----------
    volume: Volume
        CT in HU.
    params: ClassicalParams, optional
        Recipe parameters (mm/HU); defaults suit non-contrast and contrast CT alike.
    debug: bool
        Keep the intermediate low-resolution arrays in ``result.debug``.

    Returns
    -------
    ClassicalResult
        ``mask`` on the volume's grid (bool, (z, y, x)) and the intensities it measured.
    """
    p = params or ClassicalParams()
    notes: list[str] = []
    can, img, sp, factors = coarse_image(volume, p.work_spacing_mm)
    src = can.array
    # calcium on the working grid before the median (which erases a thin calcified wall)
    calcium = img > p.wall_calcium_hu
    if p.median:
        img = ndi.median_filter(img, size=(1, 3, 3))
    nz, ny, nx = img.shape

    body = _body_mask(img, p.body_threshold_hu)
    if body.sum() == 0:
        return ClassicalResult(np.zeros(volume.shape, bool), float("nan"), float("nan"), (0.0, 0.0), False, ["no body found"])
    lungs = _lungs(img, body, sp, p)
    # body interior distance (in-plane, mm) from the body surface
    wall_dist = np.empty(img.shape, np.float32)
    for z in range(nz):
        wall_dist[z] = ndi.distance_transform_edt(body[z], sampling=sp[1:])

    # distance from the outside world or the subcutaneous fat connected to it, in-plane:
    # the body-wall muscles lie within a few mm of it, the liver beneath them
    fat_or_out = (~body) | (img < p.fat_threshold_hu)
    muscle_dist = np.empty(img.shape, np.float32)
    for z in range(nz):
        lab_fo, _ = ndi.label(fat_or_out[z])
        border = np.unique(np.r_[lab_fo[0], lab_fo[-1], lab_fo[:, 0], lab_fo[:, -1]])
        outer = np.isin(lab_fo, border[border > 0])
        muscle_dist[z] = ndi.distance_transform_edt(~outer, sampling=sp[1:])

    zz, yy, xx = np.nonzero(body)
    body_xc = float(np.median(xx))
    # per-slice body centre and AP extent for the "right upper abdomen"
    right = np.zeros(img.shape, bool)
    anterior = np.zeros(img.shape, bool)
    xs = np.arange(nx)[None, :]
    ys = np.arange(ny)[:, None]
    for z in range(nz):
        if not body[z].any():
            continue
        yb, xb = np.nonzero(body[z])
        xc = 0.5 * (xb.min() + xb.max())
        right[z] = xs < xc
        y0, y1 = yb.min(), yb.max()
        anterior[z] = ys < y0 + 0.72 * (y1 - y0)

    # right lung base: the lowest slice where the right lung is present
    right_lung = lungs & right
    zmask = np.ones(nz, bool)
    lungs_found = bool(right_lung.sum() * np.prod(sp) / 1000.0 >= p.lung_min_volume_ml)
    below_lung = np.ones(img.shape, bool)
    if lungs_found:
        area = right_lung.sum(axis=(1, 2))
        present = np.nonzero(area > 0.1 * area.max())[0]
        z_base = int(present.min())
        z_lo = max(0, int(z_base - p.roi_below_lung_base_mm / sp[0]))
        zmask[:] = False
        zmask[z_lo:] = True
        # the liver lies below the lung in each (y, x) column: cut above the lowest lung voxel
        has = lungs.any(axis=0)
        lowest = np.where(has, np.argmax(lungs, axis=0), nz)
        below_lung = np.arange(nz)[:, None, None] < lowest[None, :, :]
        notes.append(f"right lung base found at slice {z_base} of the work grid")
    else:
        notes.append("no lung base in the field of view; liver region estimated without it")

    roi = body & right & anterior & (wall_dist > p.roi_wall_distance_mm) & ~lungs & zmask[:, None, None] & below_lung
    vals = img[roi]
    vals = vals[(vals > -60) & (vals < 260)]
    if vals.size < 50:
        roi = body & right & ~lungs
        vals = img[roi]
        vals = vals[(vals > -60) & (vals < 260)]
    mode, sigma, sigma_bright = _histogram_peak(vals)
    # darker tissue is looked for against the spread on the bright side: a large hypodense mass
    # in the sample widens the peak on its own side and would hide itself (47 HU liver, 28 HU
    # mass: 10 -> 16 HU)
    sigma_dark = min(sigma, sigma_bright) if p.dark_spread_bright_side else sigma
    def _half(k: float) -> float:
        return float(np.clip(k * sigma, p.window_min_half_width_hu, p.window_max_half_width_hu))

    lo, hi = mode - _half(p.window_sigma_low), mode + _half(p.window_sigma_high)
    grow_lo = mode - _half(p.grow_sigma_low)

    allowed = body & (img >= grow_lo) & (img <= hi) & ~lungs & below_lung & (muscle_dist > p.muscle_wall_mm)
    gimg = ndi.gaussian_filter(img, [p.grow_smooth_mm / s for s in sp]) if p.grow_smooth_mm > 0 else img
    muscle_hu, muscle_sigma = _muscle_mode(img, body, muscle_dist, p)
    muscle_cut = None
    if muscle_hu is not None and mode - muscle_hu >= p.muscle_min_gap_hu and muscle_sigma <= p.muscle_max_sigma_ratio * sigma:
        # skeletal muscle measurably darker than this scan's liver: keep growth above the cut
        muscle_cut = muscle_hu + p.muscle_cut_fraction * (mode - muscle_hu)
        # mean of the soft tissue only (fat and air ignored), so the liver's fatty edges stay
        soft = (img > p.fat_threshold_hu).astype(np.float32)
        g = [p.grow_smooth_mm / s for s in sp]
        soft_mean = ndi.gaussian_filter(img * soft, g) / np.maximum(ndi.gaussian_filter(soft, g), 1e-3)
        allowed &= soft_mean > muscle_cut
        notes.append(f"muscle mode {muscle_hu:.0f} HU: growth kept above {muscle_cut:.0f} HU")
    cand = allowed & (img >= lo) & (wall_dist > p.wall_distance_mm)
    core = erode_mm(cand, p.open_radius_mm, sp)
    lab, counts = largest_components(core, connectivity=6)
    if counts.size <= 1:
        # nothing survives the opening: fall back to the candidate itself
        core = cand
        lab, counts = largest_components(core, connectivity=6)
    score = np.bincount(lab[roi], minlength=counts.size).astype(float)
    score[0] = 0
    best = int(np.argmax(score)) if score.max() > 0 else int(np.argmax(np.r_[0, counts[1:]]))
    seed = lab == best
    liver = dilate_mm(seed, p.open_radius_mm, sp) & cand
    lab2, _ = largest_components(liver, connectivity=6)
    ids = np.unique(lab2[seed & liver])
    liver = np.isin(lab2, ids[ids > 0])
    resid = gimg[seed] - ndi.gaussian_filter(img, [p.local_mean_sigma_mm / s for s in sp])[seed]
    noise = float(np.std(resid)) if resid.size > 10 else sigma
    tol = float(np.clip(p.grow_tolerance_sigma * noise, p.grow_tolerance_min_hu, p.grow_tolerance_max_hu))
    liver = _adaptive_grow(gimg, liver, allowed, sp, tol_hu=tol, sigma_mm=p.local_mean_sigma_mm, max_mm=p.grow_mm)
    notes.append(f"adaptive growth tolerance {tol:.1f} HU (noise {noise:.1f} HU)")
    grown = liver
    if p.neck_radius_mm > 0:
        # cut what the growth reached only through narrow necks (IVC, bowel, stomach contacts)
        opened = erode_mm(liver, p.neck_radius_mm, sp)
        lab3, _ = largest_components(opened, connectivity=6)
        ids3 = np.unique(lab3[seed & opened])
        if ids3[ids3 > 0].size:
            body_part = np.isin(lab3, ids3[ids3 > 0])
            kept = (dilate_mm(body_part, p.neck_radius_mm + 0.5 * min(sp), sp) & liver) | (seed & liver)
            liver = kept | _reattach(img, liver & ~kept, kept, mode=mode, max_diff_hu=max(p.reattach_min_hu, p.reattach_sigma * sigma),
                                     min_contact=p.reattach_min_contact)
    neck_dropped = grown & ~liver

    liver = close_mm(liver, p.close_radius_mm, sp) & body & ~lungs
    if p.bite_radius_mm > p.close_radius_mm:
        # larger surface bites (hypodense lesions flush with the capsule) closed only over tissue
        # darker than liver (by bite_below_liver_sigma) but not fat, and away from the body wall
        bite = close_mm(liver, p.bite_radius_mm, sp) & ~liver & body & ~lungs
        bite &= (gimg > p.fat_threshold_hu + p.bite_min_above_fat_hu) & (gimg < mode - p.bite_below_liver_sigma * sigma_dark)
        bite &= muscle_dist > p.muscle_wall_mm
        liver |= bite
    if p.mass_radius_mm > 0:
        # masses against the liver, darker than it, that the growth stopped at (a large
        # metastasis at the surface): solid ones taken in when they border the liver over a fair
        # share; fluid ones (the gallbladder is one) only inside a calcified wall (a hydatid cyst)
        allowed_mass = body & ~lungs & below_lung & (muscle_dist > p.muscle_wall_mm)
        max_hu = mode - p.mass_below_liver_sigma * sigma_dark
        add, masses = _attached_masses(
            img, gimg, liver, allowed_mass, sp, max_hu=max_hu, min_hu=p.mass_min_hu,
            radius_mm=p.mass_radius_mm, min_liver_share=p.mass_min_liver_share,
        )
        fluid_img = gimg
        if p.fluid_smooth_without_calcium and liver.any():
            # the fluid search's own box (_attached_masses) and the smoothing's reach beyond it
            fbox = _mass_search_box(liver, p.mass_radius_mm, sp, extra_mm=4 * p.grow_smooth_mm)
            fluid_img = _smooth_without(img, gimg, calcium, p.grow_smooth_mm, sp, box=fbox)
        add_w, walled = _attached_masses(
            img, fluid_img, liver, allowed_mass, sp, max_hu=min(max_hu, p.mass_min_hu), min_hu=p.fluid_min_hu,
            radius_mm=p.mass_radius_mm, min_liver_share=p.mass_min_liver_share,
            wall=calcium, min_wall_share=p.min_wall_share,
            enclosed_share=p.fluid_enclosed_share, ring_mm=p.fluid_enclosed_ring_mm,
            deepest_part=p.fluid_deepest_part,
        )
        liver |= add | add_w
        taken = add | add_w
        if taken.any() and neck_dropped.any():
            # liver cut off at a neck that a mass made (a thin rim over a large cyst) joins again
            # now that the mass is liver: only within 10 mm of a mass and touching it, with the neck step's
            # contact test and its HU test on the median, wider (the rim carries the mass's
            # partial-volume band)
            near_mass = dilate_mm(taken, p.mass_radius_mm, sp)  # the rim, not what the growth ran into beyond it
            lab_d, _ = largest_components(neck_dropped & ~liver & near_mass, connectivity=6)
            ids_d = np.unique(lab_d[ndi.binary_dilation(taken) & (lab_d > 0)])
            liver |= _reattach(img, np.isin(lab_d, ids_d), liver, mode=mode,
                               max_diff_hu=max(p.reattach_min_hu, p.mass_reattach_sigma * sigma),
                               min_contact=p.reattach_min_contact, median=True)
        for m in masses:
            if m["accepted"]:
                notes.append(f"a {m['volume_ml']:.0f} mL mass of {m['mean_hu']:.0f} HU against the liver "
                             f"({100 * m['liver_share']:.0f} % of its surface) taken into the mask")
        for m in walled:
            if m["accepted"] and m["taken_for"] == "wall":
                notes.append(f"a {m['volume_ml']:.0f} mL fluid mass of {m['mean_hu']:.0f} HU against the liver "
                             f"({100 * m['liver_share']:.0f} % of its surface), {100 * m['wall_share']:.0f} % of the fluid "
                             "walled by calcium, taken into the mask")
            elif m["accepted"]:
                notes.append(f"a {m['volume_ml']:.0f} mL fluid mass of {m['mean_hu']:.0f} HU surrounded by the liver "
                             f"({100 * m['ring_share']:.0f} % of its surface within {p.fluid_enclosed_ring_mm:g} mm of it) "
                             "taken into the mask")
    liver = ndi.binary_fill_holes(liver)
    if p.cavity_radius_mm > 0:
        # a cyst inside the liver that touches a vein is no hole: the vein tree leads out of the
        # liver (to the IVC) and it is wider than the slice-wise filling takes
        add_c, cavities = _enclosed_cavities(img, liver, sp, radius_mm=p.cavity_radius_mm, min_hu=p.fluid_min_hu,
                                             min_liver_share=p.cavity_min_liver_share)
        liver |= add_c
        for m in cavities:
            if m["accepted"]:
                notes.append(f"a {m['volume_ml']:.0f} mL cavity of {m['median_hu']:.0f} HU enclosed by the liver "
                             f"({100 * m['liver_share']:.0f} % of its surface) filled")
    liver = fill_holes_2d(liver, max_area_mm2=p.hole_max_area_mm2, spacing_yx=sp[1:])
    ivc = None
    if p.ivc_min_gap_hu > 0 and liver.any():
        liver, ivc = _remove_ivc(img, gimg, liver, body, sp, liver_hu=mode, min_gap_hu=max(p.ivc_min_gap_hu, sigma),
                                 edge_mm=p.ivc_edge_mm, track=p.ivc_track, notes=notes)
    # smoothed mask and local means, needed only around the liver: computed in its box
    # grown by four of the widest Gaussian's sigmas (values there match a whole-grid filter)
    soft = np.zeros(img.shape, np.float32)
    local_mean = np.full(img.shape, mode, np.float32)
    out_mean = np.full(img.shape, -1000.0, np.float32)
    if liver.any():
        bx = _grown_box(liver, [int(np.ceil(4 * 2 * p.local_mean_sigma_mm / s)) + 3 for s in sp])
        lv, im, ot = liver[bx], img[bx], body[bx] & ~liver[bx]
        soft[bx] = ndi.gaussian_filter(lv.astype(np.float32), sigma=[p.smooth_sigma_mm / s for s in sp], mode="nearest")
        sg2 = [p.local_mean_sigma_mm * 2 / s for s in sp]
        w = ndi.gaussian_filter(lv.astype(np.float32), sg2, mode="nearest")
        lm = ndi.gaussian_filter(np.where(lv, im, 0).astype(np.float32), sg2, mode="nearest")
        local_mean[bx] = np.where(w > 1e-3, lm / np.maximum(w, 1e-3), mode)
        sg1 = [p.local_mean_sigma_mm / s for s in sp]
        wo = ndi.gaussian_filter(ot.astype(np.float32), sg1, mode="nearest")
        om = ndi.gaussian_filter(np.where(ot, im, 0).astype(np.float32), sg1, mode="nearest")
        out_mean[bx] = np.where(wo > 1e-3, om / np.maximum(wo, 1e-3), -1000.0)
    src_f = src
    mask = np.zeros(volume.shape, bool)
    mask_can = can.from_native(mask)  # a view: the canonical result is written straight into the native array
    _upsample_refine(
        soft, local_mean, out_mean, src_f, factors, can.spacing_zyx,
        drop_below_hu=p.refine_drop_below_hu, add_within_hu=p.refine_add_within_hu,
        level=_offset_level(p.boundary_offset_mm, p.smooth_sigma_mm), mode=p.refine_mode, out=mask_can,
    )
    if ivc is not None:
        up = _upsample_nearest(ivc, factors, mask_can.shape)
        if up is not None:
            mask_can[up[0]] &= ~up[1]
    if p.fat_interface_ring and mask_can.any():
        _add_fat_interface_ring(
            mask_can, src, liver_hu=mode, upper_hu=hi, fat_threshold_hu=p.fat_threshold_hu,
            fat_window_hu=p.fat_reference_hu, min_fat_voxels=p.fat_reference_min_voxels, notes=notes,
        )
    dbg: dict[str, Any] = {}
    if debug:
        dbg = dict(img=img, body=body, lungs=lungs, roi=roi, cand=cand, seed=seed, grown=grown, liver=liver, spacing=sp, can=can)
    return ClassicalResult(mask, mode, sigma, (lo, hi), lungs_found, notes, dbg)


def _attached_masses(
    img: np.ndarray,
    gimg: np.ndarray,
    liver: np.ndarray,
    allowed: np.ndarray,
    sp: tuple[float, float, float],
    *,
    max_hu: float,
    min_hu: float,
    radius_mm: float,
    min_liver_share: float,
    wall: np.ndarray | None = None,
    min_wall_share: float = 0.0,
    enclosed_share: float | None = None,
    ring_mm: float = 0.0,
    deepest_part: bool = False,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Masses darker than the liver that the growth left out, where they lie against it.

    Parameters
    ----------
    img, gimg: np.ndarray
        Working-grid image and its lightly smoothed copy (HU).
    liver: np.ndarray
        The liver grown so far (bool).
    allowed: np.ndarray
        Where liver may lie at all (body, below the lungs, away from the body wall).
    sp: tuple of float
        Working-grid spacing (mm).
    max_hu, min_hu: float
        Smoothed-HU window of the masses: below the liver by a margin, above fluid.
    radius_mm: float
        A mass holds a ball of this radius (the opening that separates it from tubes and sheets:
        bowel walls, diaphragm, body-wall muscle).
    min_liver_share: float
        Least share of the mass's surface (voxel faces) that must border the liver.
    wall: np.ndarray, optional
        Voxels of a wall the mass must have (bool, e.g. calcium): when given, a mass is taken
        only when at least ``min_wall_share`` of its surface borders it (within one voxel); the
        wall is then part of the mass, also for its liver share.
    min_wall_share: float
        See ``wall``.
    enclosed_share: float, optional
        A mass is also taken, wall or not, when at least this share of its surface lies within
        ``ring_mm`` of the liver: a cyst inside the liver, apart from it by the ring of partial
        volume and smoothing that the growth does not take (and by a thin rim of liver where it
        nears the surface). The gallbladder, bowel and ascites border the liver over far less.
    ring_mm: float
        See ``enclosed_share``; the cores searched for lie this much farther from the liver.
    deepest_part: bool
        A fluid mass that fails every test is tested for ``enclosed_share`` once more by its
        ball-shaped part around the deepest point (:func:`_deepest_part`, rows with ``part``).

    Returns
    -------
    add: np.ndarray
        Voxels to add to the liver (bool, working grid).
    found: list of dict
        Per accepted or rejected mass: volume (mL), liver share, mean HU, accepted, and what it
        was taken for (``taken_for``: "liver share", "wall" or "enclosed"; empty when rejected).
    """
    add = np.zeros(liver.shape, bool)
    found: list[dict[str, Any]] = []
    if not liver.any():
        return add, found
    bx = _mass_search_box(liver, radius_mm, sp)
    lv = liver[bx]
    cand = allowed[bx] & ~lv & (gimg[bx] > min_hu) & (gimg[bx] < max_hu)
    core = erode_mm(cand, radius_mm, sp)
    if not core.any():
        return add, found
    lab, counts = largest_components(core, connectivity=6)
    # only cores whose ball reaches the liver: a ball centre within radius + one voxel of it
    reach = radius_mm + ring_mm + 1.5 * max(sp)
    lv_ring: np.ndarray | None = None
    if enclosed_share is None:
        near = dilate_mm(lv, reach, sp)
    else:
        # one distance map for both reaches (the liver's box grown by them, a costly transform)
        near, lv_ring = np.zeros(lv.shape, bool), np.zeros(lv.shape, bool)
        got = distance_in_box(lv, reach, sp)
        if got is not None:
            near[got[0]], lv_ring[got[0]] = got[1] <= reach, got[1] <= ring_mm
    walled = None if wall is None else ndi.binary_dilation(wall[bx])
    lv_touch = lv if wall is None else ndi.binary_dilation(lv)
    voxel_ml = float(np.prod(sp)) / 1000.0
    img_b, gimg_b, allowed_b, add_b = img[bx], gimg[bx], allowed[bx], add[bx]
    # each mass is worked on in its own box: wide enough for its ball, its wall and its band
    objs = ndi.find_objects(lab)
    pad = [int(np.ceil((radius_mm + ring_mm + 2.0 * max(sp)) / s)) + 3 for s in sp]
    for k in np.unique(lab[near & core]):
        if k == 0:
            continue
        ls = tuple(slice(max(0, o.start - q), min(n, o.stop + q)) for o, q, n in zip(objs[k - 1], pad, lab.shape))
        body = dilate_mm(lab[ls] == k, radius_mm + 0.5 * min(sp), sp) & cand[ls]
        wall_share = None
        if walled is not None:
            # the share of the fluid's surface that borders the wall; the wall then counts as the
            # mass's own (it lies between the fluid and the liver)
            wall_share = _border_share(body, walled[ls])
            body = body | (walled[ls] & ndi.binary_dilation(body))
        # share of the mass's surface that borders the liver (for a walled mass within one voxel:
        # the partial-volume layer between a calcified wall and the liver is neither)
        share = _border_share(body, lv_touch[ls])
        ok = share >= min_liver_share
        info = dict(volume_ml=round(float(body.sum()) * voxel_ml, 1), liver_share=round(share, 2),
                    mean_hu=round(float(img_b[ls][body].mean()), 1))
        if wall_share is not None:
            info["wall_share"] = round(wall_share, 2)
            ok = ok and wall_share >= min_wall_share
        info["taken_for"] = ("wall" if wall_share is not None else "liver share") if ok else ""
        pieces = [(body, info)]
        if lv_ring is not None and not ok:
            # a cyst the liver surrounds except where it touches another fluid-dense organ (the
            # kidney without contrast) forms one body with it: its ball-shaped parts are tested too
            cores = _deepest_part(lab[ls] == k, sp) if deepest_part else []
            pieces += [(dilate_mm(c, radius_mm + 0.5 * min(sp), sp) & cand[ls], {**info, "part": True}) for c in cores]
        at = tuple(slice(b.start + c.start, b.start + c.stop) for b, c in zip(bx, ls))
        for piece, pinfo in pieces:
            pok = ok
            if lv_ring is not None:
                ring_share = _border_share(piece, lv_ring[ls])
                pinfo["ring_share"] = round(ring_share, 2)
                if pinfo.get("part"):
                    pinfo["volume_ml"] = round(float(piece.sum()) * voxel_ml, 1)
                    pinfo["mean_hu"] = round(float(img_b[ls][piece].mean()), 1)
                # a mass cut by the scan's edge cannot be shown to be enclosed (the top of a
                # gallbladder on a scan that ends at the fossa borders the liver all round)
                if not pok and ring_share >= enclosed_share and not _touches_scan_edge(piece, at, liver.shape):
                    pok = True
                    pinfo["taken_for"] = "enclosed"
                    # the ring between the mass and the liver (not fat) comes with it, or the mass
                    # would be an island the main-component step drops
                    piece = piece | (dilate_mm(piece, ring_mm, sp) & lv_ring[ls] & ~lv[ls] & allowed_b[ls] & (gimg_b[ls] > min_hu))
            found.append({**pinfo, "accepted": bool(pok)})
            if pok:
                add_b[ls] |= piece
    return add, found


def _mass_search_box(
    liver: np.ndarray, radius_mm: float, sp: tuple[float, float, float], *, extra_mm: float = 0.0
) -> tuple[slice, ...]:
    """The box :func:`_attached_masses` searches: the liver's grown by eight ball radii (a bowel
    loop cut short by the box edge would look like a ball against the liver), plus ``extra_mm``."""
    return _grown_box(liver, [int(np.ceil((8 * radius_mm + extra_mm) / s)) + 2 for s in sp])


def _smooth_without(
    img: np.ndarray, plain: np.ndarray, leave_out: np.ndarray, sigma_mm: float, sp: tuple[float, float, float],
    box: tuple[slice, ...] | None = None,
) -> np.ndarray:
    """``img`` Gaussian-smoothed by ``sigma_mm`` over the voxels outside ``leave_out`` and its face
    neighbours (a normalised convolution), within ``box``; elsewhere, and where there is next to
    no such support, ``plain`` (the ordinary smoothing). A 2 mm 450 HU wall around a 10 HU cyst
    lifted the ordinary 3 mm smoothing of the fluid to a median of 19 HU, half of it out of the
    fluid window."""
    box = box if box is not None else tuple(slice(0, n) for n in img.shape)
    if sigma_mm <= 0 or not leave_out[box].any():
        return plain
    g = [sigma_mm / s for s in sp]
    keep = ~ndi.binary_dilation(leave_out[box])
    w = ndi.gaussian_filter(keep.astype(np.float32), g)
    num = ndi.gaussian_filter(np.where(keep, img[box], 0.0).astype(np.float32), g)
    out = plain.copy()
    out[box] = np.where(w > 0.05, num / np.maximum(w, 1e-3), plain[box])
    return out


def _deepest_part(core: np.ndarray, sp: tuple[float, float, float]) -> list[np.ndarray]:
    """The ball-shaped part of ``core`` around its deepest point, without what is joined to it
    only through parts less than half as deep (``[]`` when that removes nothing)."""
    d = ndi.distance_transform_edt(np.pad(core, 1), sampling=sp)[1:-1, 1:-1, 1:-1]
    radius = 0.5 * float(d.max())
    if radius < max(sp):
        return []
    lab, _ = ndi.label(d > radius)
    centres = lab == lab[np.unravel_index(int(np.argmax(d)), d.shape)]
    part = (ndi.distance_transform_edt(~centres, sampling=sp) <= radius + 0.5 * max(sp)) & core
    return [] if part.sum() == core.sum() else [part]


def _touches_scan_edge(body: np.ndarray, box: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    """True when ``body`` (cut out at ``box``) reaches a face of the whole array."""
    for ax, sl in enumerate(box):
        if sl.start == 0 and body.take(0, axis=ax).any():
            return True
        if sl.stop == shape[ax] and body.take(-1, axis=ax).any():
            return True
    return False


def _enclosed_cavities(
    img: np.ndarray,
    liver: np.ndarray,
    sp: tuple[float, float, float],
    *,
    radius_mm: float,
    min_hu: float,
    min_liver_share: float,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Regions the liver encloses except for channels narrower than a ball (a cyst on a vein).

    The outside of the liver is opened by a ball of ``radius_mm``: a cavity that holds the ball
    and reaches the rest of the outside only through narrower channels (vessels, ducts) becomes
    a component of its own. It is taken when its median HU is not below ``min_hu`` (fat in a
    fissure and gas stay out) and at least ``min_liver_share`` of its surface borders the liver.

    Parameters
    ----------
    img: np.ndarray
        Working-grid image (HU).
    liver: np.ndarray
        The liver so far, its enclosed holes already filled (bool).
    sp: tuple of float
        Working-grid spacing (mm).
    radius_mm, min_hu, min_liver_share: float
        See above.

    Returns
    -------
    add: np.ndarray
        Voxels to add to the liver (bool, working grid).
    found: list of dict
        Per cavity: volume (mL), liver share, median HU, accepted.
    """
    add = np.zeros(liver.shape, bool)
    found: list[dict[str, float]] = []
    if not liver.any():
        return add, found
    bx = _grown_box(liver, [int(np.ceil(radius_mm / s)) + 2 for s in sp])
    lv = liver[bx]
    out = ~lv
    # the box faces are replicated, not eroded: the outside goes on beyond them
    core = erode_mm(out, radius_mm, sp, edge_axes=(0, 1, 2))
    lab, counts = largest_components(core, connectivity=6)
    faces = np.unique(np.concatenate([np.unique(np.take(lab, [0, -1], axis=ax)) for ax in range(3)]))
    voxel_ml = float(np.prod(sp)) / 1000.0
    for k in range(1, counts.size):
        if k in faces:
            continue
        cav = dilate_mm(lab == k, radius_mm + 0.5 * min(sp), sp) & out
        share = _border_share(cav, lv)
        median = float(np.median(img[bx][cav]))
        ok = share >= min_liver_share and median >= min_hu
        found.append(dict(volume_ml=round(float(cav.sum()) * voxel_ml, 1), liver_share=round(share, 2),
                          median_hu=round(median, 1), accepted=bool(ok)))
        if ok:
            add[bx] |= cav
    return add, found


def _border_share(body: np.ndarray, target: np.ndarray) -> float:
    """Share of the voxel faces of ``body``'s surface whose outer neighbour lies in ``target``."""
    faces = hits = 0
    for ax in range(body.ndim):
        for step in (1, -1):
            outside = np.roll(body, step, axis=ax) & ~body
            faces += int(outside.sum())
            hits += int((outside & target).sum())
    return hits / max(faces, 1)


def _reattach(img: np.ndarray, dropped: np.ndarray, kept: np.ndarray, *, mode: float, max_diff_hu: float, min_contact: float,
              median: bool = False) -> np.ndarray:
    """Parts cut off at a neck that are liver after all: same attenuation and a broad interface.

    A component of ``dropped`` is given back when its mean (its median with ``median``: a rim
    over a cyst carries the cyst's dark partial-volume band) lies within ``max_diff_hu`` of the
    liver mode and the number of its voxels face-adjacent to ``kept`` is at least ``min_contact``
    times its volume in voxels to the power 2/3 (a lobe tip joined along its width, not an organ
    touching at a point). Neighbouring organs of equal attenuation would pass the first test but
    join through small contacts.
    """
    out = np.zeros(dropped.shape, bool)
    if not dropped.any():
        return out
    lab, n = ndi.label(dropped)
    idx = np.arange(1, n + 1)
    size = ndi.sum_labels(np.ones_like(img, dtype=np.float32), lab, idx)
    mean = np.asarray(ndi.median(img, lab, idx) if median else ndi.mean(img, lab, idx), dtype=float)
    touch = ndi.binary_dilation(kept) & dropped
    contact = ndi.sum_labels(touch, lab, idx)
    ok = (np.abs(mean - mode) <= max_diff_hu) & (contact >= min_contact * np.power(size, 2.0 / 3.0))
    keep = np.zeros(n + 1, bool)
    keep[1:] = ok
    return keep[lab]


def _remove_ivc(
    img: np.ndarray,
    gimg: np.ndarray,
    liver: np.ndarray,
    body: np.ndarray,
    sp: tuple[float, float, float],
    *,
    liver_hu: float,
    min_gap_hu: float,
    edge_mm: float,
    track: IvcTrackParams | None,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Subtract the IVC and keep the main component.

    The aorta is found on the (median-filtered) coarse image ``img``: on the 3 mm-smoothed
    ``gimg`` the vertebral cortex of an osteopenic spine falls below the bone threshold and the
    finder can settle on the vertebral body. The IVC is then tracked upwards from below the liver
    (:func:`track_ivc`, when ``track`` is given and a seed is found); on the slices the track does
    not reach it is located by its attenuation (:func:`find_ivc`). The IVC is widened in-plane by
    ``edge_mm`` (its partial-volume rim) and returned, so that the full-resolution boundary step
    cannot put it back.
    """
    zs = np.nonzero(liver.any(axis=(1, 2)))[0]
    keep = np.zeros(liver.shape[0], bool)
    keep[zs[0]:zs[-1] + 1] = True
    aorta = find_aorta(img, body & keep[:, None, None], sp)
    if aorta is None:
        notes.append("aorta not found: the IVC was not located")
        return liver, None
    ivc = find_ivc(gimg, (int(zs[0]), int(zs[-1])), aorta, sp, liver_hu=liver_hu, min_gap_hu=min_gap_hu)
    tracked = track_ivc(img, liver, body, aorta, sp, liver_hu=liver_hu, min_gap_hu=min_gap_hu, params=track) if track is not None else None
    if tracked is not None:
        # where the track reaches, it replaces the attenuation search (which looks for a disc only)
        on = tracked.source > 0
        ivc[on] = tracked.mask[on]
        n_obs, n_pred = int((tracked.source[zs[0]:zs[-1] + 1] == 2).sum()), int((tracked.source[zs[0]:zs[-1] + 1] == 3).sum())
        if n_obs + n_pred:
            notes.append(f"IVC tracked up from below the liver ({tracked.hu:.0f} HU): seen on {n_obs}, predicted on {n_pred} liver slices")
    if not (ivc & liver).any():
        notes.append("IVC not distinguishable from liver by attenuation; not subtracted")
        return liver, None
    if edge_mm > 0:
        ivc = dilate_mm(ivc, edge_mm, (1e6, sp[1], sp[2]))
    cut = ivc & liver
    out = liver & ~ivc
    lab, counts = largest_components(out, connectivity=6)
    counts[0] = 0
    out = lab == int(np.argmax(counts))
    notes.append(f"IVC located right of the aorta and subtracted ({cut.sum() * float(np.prod(sp)) / 1000.0:.1f} mL)")
    return out, ivc


def _upsample_nearest(coarse: np.ndarray, factors: tuple[int, int, int], shape: tuple[int, int, int]) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Nearest-neighbour (block) up-sampling of a coarse bool mask inside its bounding box."""
    idx = [np.nonzero(coarse.any(axis=tuple(j for j in range(3) if j != a)))[0] for a in range(3)]
    if any(i.size == 0 for i in idx):
        return None
    lo = [int(i[0]) for i in idx]
    hi = [int(i[-1]) + 1 for i in idx]
    sub = coarse[tuple(slice(a, b) for a, b in zip(lo, hi))]
    for ax, f in enumerate(factors):
        sub = np.repeat(sub, f, axis=ax)
    box = tuple(slice(a * f, min(n, b * f)) for a, b, f, n in zip(lo, hi, factors, shape))
    return box, sub[tuple(slice(0, b.stop - b.start) for b in box)]


def _muscle_mode(img: np.ndarray, body: np.ndarray, muscle_dist: np.ndarray, p: ClassicalParams) -> tuple[float | None, float]:
    """Mode (HU) of the posterior body-wall and paraspinal muscle of this scan, or None.

    Sampled in the posterior ``muscle_posterior_fraction`` of each slice's body, between
    ``muscle_band_mm`` from the subcutaneous fat, soft-tissue values only (-30 to 150 HU).
    """
    post = np.zeros(img.shape, bool)
    for z in range(img.shape[0]):
        rows = np.nonzero(body[z].any(axis=1))[0]
        if rows.size == 0:
            continue
        y0, y1 = int(rows[0]), int(rows[-1])
        post[z, int(y1 - p.muscle_posterior_fraction * (y1 - y0)):] = True
    sel = body & post & (muscle_dist > p.muscle_band_mm[0]) & (muscle_dist < p.muscle_band_mm[1]) & (img > -30) & (img < 150)
    if sel.sum() < 200:
        return None, float("inf")
    return _histogram_mode(img[sel])


def _adaptive_grow(
    img: np.ndarray,
    region: np.ndarray,
    allowed: np.ndarray,
    sp: tuple[float, float, float],
    *,
    tol_hu: float,
    sigma_mm: float,
    max_mm: float,
) -> np.ndarray:
    """Region growing whose acceptance follows the local mean of the region already grown.

    A neighbour voxel joins when it lies within ``tol_hu`` of the Gaussian-weighted mean
    (``sigma_mm``) of the region near it, so slow intensity drifts (beam hardening, perfusion
    gradients) are followed while steps to neighbouring organs are not crossed.
    """
    out = region.copy()
    idx = np.nonzero(region.any(axis=(1, 2)))[0]
    if idx.size == 0:
        return out
    sig = [sigma_mm / s for s in sp]
    # growth cannot leave the region's bounding box grown by max_mm: work in that box only
    pad = [int(np.ceil(max_mm / s)) + int(3 * g) + 3 for s, g in zip(sp, sig)]
    box = []
    for a in range(3):
        occ = np.nonzero(region.any(axis=tuple(j for j in range(3) if j != a)))[0]
        box.append(slice(max(0, int(occ[0]) - pad[a]), min(region.shape[a], int(occ[-1]) + pad[a] + 1)))
    box = tuple(box)
    reg = region[box].copy()
    alw = allowed[box]
    im = img[box]
    struct = ndi.generate_binary_structure(3, 1)
    im = im.astype(np.float32, copy=False)
    n_iter = int(np.ceil(max_mm / min(sp)))
    refresh = 3  # the local mean drifts slowly: it is refreshed every third step only
    for start in range(0, n_iter, refresh):
        steps = min(refresh, n_iter - start)
        # the local mean is needed only where the next steps can reach: the region's box + steps
        sub = _grown_box(reg, [steps + int(4 * g) + 1 for g in sig])
        r = reg[sub].astype(np.float32)
        w = ndi.gaussian_filter(r, sig, mode="nearest")
        m = ndi.gaussian_filter(im[sub] * r, sig, mode="nearest") / np.maximum(w, 1e-3)
        cond = alw[sub] & (w > 0.02) & (np.abs(im[sub] - m) <= tol_hu)
        # up to ``steps`` one-voxel steps (6-connected) through voxels that pass the test
        grown = ndi.binary_dilation(reg[sub], structure=struct, iterations=steps, mask=cond | reg[sub])
        if not (grown & ~reg[sub]).any():
            break
        reg[sub] = grown
    out[box] = reg
    return out


def _grown_box(mask: np.ndarray, pad: list[int]) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``pad`` voxels per axis (clipped to the array)."""
    box = []
    for a in range(3):
        occ = np.nonzero(mask.any(axis=tuple(j for j in range(3) if j != a)))[0]
        box.append(slice(max(0, int(occ[0]) - pad[a]), min(mask.shape[a], int(occ[-1]) + pad[a] + 1)))
    return tuple(box)


def _upsample_refine(
    soft: np.ndarray,
    local_mean: np.ndarray,
    outside_mean: np.ndarray,
    fine: np.ndarray,
    factors: tuple[int, int, int],
    fine_spacing: tuple[float, float, float],
    *,
    drop_below_hu: float,
    add_within_hu: float,
    band: tuple[float, float] = (0.03, 0.97),
    level: float = 0.5,
    mode: str = "partial_volume",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Up-sample a [0, 1] map to the fine grid and settle the boundary band on fine intensities.

    Inside the band around the coarse boundary, with ``mode="partial_volume"`` (default) a fine
    voxel is liver when its lightly smoothed (in-plane) value is nearer the local liver mean than
    the local mean of the surroundings. With any other mode it is kept when the coarse map says
    liver and its value is not below ``local_mean - drop_below_hu``, and added when the coarse map
    says outside but its value lies within ``add_within_hu`` of the local liver mean. Only the
    bounding box of the object is processed, one fine slice at a time; the result is written
    into ``out`` (a new array when None) and returned.
    """
    shape = fine.shape
    if out is None:
        out = np.zeros(shape, bool)
    nz_idx = np.nonzero(soft > 0.02)
    if nz_idx[0].size == 0:
        return out
    lo = [max(0, int(a.min()) - 1) for a in nz_idx]
    hi = [min(n, int(a.max()) + 2) for a, n in zip(nz_idx, soft.shape)]
    f_lo = [l * f for l, f in zip(lo, factors)]
    f_hi = [min(s, h * f) for h, f, s in zip(hi, factors, shape)]
    coords = [
        (np.arange(a, b, dtype=np.float32) + 0.5) / f - 0.5 - l
        for a, b, f, l in zip(f_lo, f_hi, factors, lo)
    ]
    (zi0, zi1, za), (yi0, yi1, ya), (xi0, xi1, xa) = (_linear_index(c, h - l) for c, h, l in zip(coords, hi, lo))
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    coarse = [np.ascontiguousarray(arr[crop], dtype=np.float32) for arr in (soft, local_mean, outside_mean)]
    refine = factors[1] > 1 or factors[2] > 1
    sig = (1.0 / fine_spacing[1], 1.0 / fine_spacing[2])
    box = tuple(slice(a, b) for a, b in zip(f_lo, f_hi))
    inside = np.zeros(tuple(b - a for a, b in zip(f_lo, f_hi)), bool)

    def plane(k: int, which: int) -> np.ndarray:
        # linear interpolation along z (two coarse slices), then along y and x (gathers)
        c = coarse[which]
        c = c[zi0[k]] * (1 - za[k]) + c[zi1[k]] * za[k]
        c = c[yi0] * (1 - ya)[:, None] + c[yi1] * ya[:, None]
        return c[:, xi0] * (1 - xa) + c[:, xi1] * xa

    # one fine slice at a time: small temporaries, and the in-plane smoothing of the fine image
    # is exact slice by slice (no smoothing across slices)
    for k in range(inside.shape[0]):
        t = plane(k, 0)
        ins = t > level
        bandm = (t > band[0]) & (t < band[1])
        if refine and bandm.any():
            f = ndi.gaussian_filter(fine[f_lo[0] + k, box[1], box[2]].astype(np.float32), sig, mode="nearest")
            m = plane(k, 1)
            o = plane(k, 2)
            if mode == "partial_volume":
                # nearer the local liver mean than the local surroundings' mean: the 50 % partial-volume
                # point, whatever the neighbour is (fat, lung, stomach, kidney)
                ins = np.where(bandm, np.abs(f - m) <= np.abs(f - o), ins)
            else:
                keep = ins & ~(bandm & (f < m - drop_below_hu))
                add = ~ins & bandm & (np.abs(f - m) <= add_within_hu)
                ins = keep | add
        inside[k] = ins
    out[box] = inside
    return out


def _add_fat_interface_ring(
    mask: np.ndarray,
    image: np.ndarray,
    *,
    liver_hu: float,
    upper_hu: float,
    fat_threshold_hu: float,
    fat_window_hu: tuple[float, float],
    min_fat_voxels: int,
    notes: list[str] | None = None,
) -> int:
    """Add the partial-volume voxels of a liver-fat interface that are mostly liver (in place).

    A voxel that straddles the liver surface and the fat around it has the value
    ``f * liver + (1 - f) * fat``; it is more than half liver when it lies above the midpoint
    of the two. The refinement of :func:`_upsample_refine` compares a voxel with the local
    mean of *all* tissue outside the liver, which next to fat also holds muscle, bowel or
    kidney; its midpoint is therefore too high there and the surface sits about half a voxel
    inside the liver wherever fat borders it. Here, only voxels face-adjacent both to the
    mask and to a fat (or air) voxel outside it are considered, and the fat HU is measured
    around this liver (median of the outside voxels within ``fat_window_hu`` in the mask's
    bounding box), so the midpoint holds for each scan. Voxels above ``upper_hu`` (vessels,
    bone, calcium) and their face neighbours (bright from that partial volume) are not added.
    Nothing is done when fewer than ``min_fat_voxels`` fat voxels are found. Returns the
    number of voxels added.
    """
    box = _bbox(mask, [2, 2, 2])
    if box is None:
        return 0
    m = np.asarray(mask[box])
    img = np.asarray(image[box])
    outside = ~m
    ring = face_touching(m)
    ring &= outside
    # the fat around this liver: outside voxels of the box in the fat window (every second
    # voxel per axis is plenty; partial-volume voxels at the surface are a small share of it)
    grid = (slice(None, None, 2),) * 3
    sample = img[grid]
    fat_vals = sample[outside[grid] & (sample > fat_window_hu[0]) & (sample < fat_window_hu[1])]
    if fat_vals.size < min_fat_voxels:
        return 0
    fat_hu = float(np.median(fat_vals))
    mid = 0.5 * (liver_hu + fat_hu)
    bright = img > upper_hu
    # a voxel next to calcium or contrast is bright from that, not from liver: a capsular
    # calcification must stay on the surface, not be wrapped into the liver
    ring &= (img >= mid) & ~bright & ~face_touching(bright)
    add = ring & face_touching(outside & (img < fat_threshold_hu))
    n = int(add.sum())
    if n:
        mask[box] = m | add
        if notes is not None:
            notes.append(
                f"liver surface at fat: {n} partial-volume voxels above the liver/fat midpoint "
                f"{mid:.0f} HU (fat {fat_hu:.0f} HU) added"
            )
    return n


def _offset_level(offset_mm: float, sigma_mm: float) -> float:
    """Level of a Gaussian-smoothed step (sigma ``sigma_mm``) lying ``offset_mm`` outside the edge."""
    from math import erfc, sqrt

    return 0.5 * erfc(offset_mm / (sigma_mm * sqrt(2.0)))


def _linear_index(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower/upper neighbour indices and weight of the upper one for linear interpolation at ``x`` (edges clamped)."""
    xc = np.clip(x, 0, n - 1)
    i0 = np.floor(xc).astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, (xc - i0).astype(np.float32)
