"""Detection and 3-D segmentation of focal hypodense liver lesions.

The detector adapts to the scan: it measures the parenchymal attenuation (the mode of
the smoothed HU inside the liver) and the image noise (a robust SD of a high-pass
residual), looks for regions darker than the parenchyma by several noise units, and then
refines every candidate on the full-resolution grid with its own threshold half-way
between the parenchyma and the lesion core (the iso-contour a reader would trace).

Steps
-----
1. Crop to the liver bounding box and block-average to a detection grid of about
   ``detection_spacing_mm`` (so a 512x512x300 scan costs about the same as a small one).
2. Normalised (mask-weighted) Gaussian smoothing inside the liver, with calcifications,
   enhanced vessels and very bright voxels left out, so that fat outside the capsule and
   calcium inside a lesion do not bias the lesion's HU.
3. Parenchymal HU = mode of the smoothed HU in the liver eroded by ``rim_mm``; noise of the
   smoothed image = 1.4826 x MAD around it.
4. Hysteresis: seeds darker than ``parenchyma - max(k_seed * noise, min_contrast_hu)`` in the
   eroded liver grow into voxels darker than ``parenchyma - max(k_grow * noise, ...)``; the
   partial-volume rim under the capsule is only admitted next to a seed.
5. Components below ``min_diameter_mm`` (equivalent-sphere diameter), with too little
   contrast, or elongated and tubular (ducts, unenhanced vessels) are rejected; touching
   lesions are split by a watershed on the distance map, and each part needs a seed of
   its own.
6. Each lesion is re-segmented at full resolution at the half-contrast iso-level and its
   holes (calcifications, bright centres of target lesions) are filled. A mass of the
   broad-scale search is then opened with a ball a few mm wide (:func:`mass_bodies`):
   the enhanced vessels it touches pass the same level, but they are tubes, and the
   opening cuts them off at the neck.
7. A darker region found inside a mass of the broad-scale search (the non-enhancing
   centre of an enhancing mass) joins that mass and is kept in ``inner`` instead of
   being reported as a lesion of its own.
8. A hypodense lesion's seed must lie deeper than the partial-volume rim from fat or air
   inside the mask too, and pass the seed test against the liver around it rather than
   the whole liver's mode (:func:`_robustness_rejection`).
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field, replace
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage as ndi

from ..model import Phase, Volume
from ..segment._grid import face_touching

__all__ = ["LesionDetection", "find_lesions", "drop_lesions"]

#: voxels brighter than this are treated as calcium/contrast and left out of the smoothing
_BRIGHT_HU = 250.0


@dataclass(eq=False)
class LesionDetection:
    """Result of :func:`find_lesions`.

    Attributes
    ----------
    labels: (Z, Y, X) ndarray of int32
        0 background, 1..n the lesions, numbered by centroid (z, y, x).
    parenchyma_hu: float
        Parenchymal attenuation of this scan (mode of the smoothed HU in the liver).
    noise_hu: float
        Robust SD of the voxel noise at full resolution, HU.
    seed_threshold_hu, grow_threshold_hu: float
        Hysteresis thresholds applied to the smoothed detection image, HU.
    smoothed_noise_hu: float
        Spread (robust SD) of the smoothed parenchyma on the detection grid, HU.
    tubular: (Z, Y, X) ndarray of bool or None
        Elongated hypodense structures rejected as lesions (duct or unenhanced vessel
        candidates).
    grid: LiverGrid or None
        The smoothed detection grid and scan statistics; :func:`calcscope.detect.find_ducts`
        reuses it when given the whole detection as ``lesions`` (saves a second pass).
    rejected: dict
        Reason -> number of candidate components rejected.
    inner: (Z, Y, X) ndarray of bool or None
        Darker regions that the hypodense search found inside a mass found by the
        broad-scale search (a non-enhancing necrotic or fibrous centre of an enhancing
        mass). They are part of that mass's label, not lesions of their own; the describer
        reads them as the mass's central low attenuation. None when there are none.
    """

    labels: np.ndarray
    parenchyma_hu: float
    noise_hu: float
    seed_threshold_hu: float = float("nan")
    grow_threshold_hu: float = float("nan")
    smoothed_noise_hu: float = float("nan")
    tubular: np.ndarray | None = None
    rejected: dict[str, int] = field(default_factory=dict)
    grid: "LiverGrid | None" = field(default=None, repr=False)
    inner: np.ndarray | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return int(self.labels.max()) if self.labels.size else 0


def drop_lesions(detection: LesionDetection, drop: list[int]) -> LesionDetection:
    """A copy of ``detection`` without the lesions ``drop``, the rest renumbered 1..m.

    The survivors keep their order (by centroid), so numbering stays as
    :func:`find_lesions` defines it.
    """
    if not drop:
        return detection
    n = detection.count
    keep = [k for k in range(1, n + 1) if k not in set(drop)]
    remap = np.zeros(n + 1, np.int32)
    for new, old in enumerate(keep, start=1):
        remap[old] = new
    labels = remap[detection.labels]
    inner = detection.inner
    if inner is not None:
        inner = inner & (labels > 0)
        inner = inner if inner.any() else None
    return replace(detection, labels=labels, inner=inner)


# --------------------------------------------------------------------------------------
# shared helpers (also used by the duct detector)
# --------------------------------------------------------------------------------------


def liver_mask_of(liver: Any) -> np.ndarray:
    """The boolean liver mask from an array or from an object with a ``mask`` attribute."""
    mask = getattr(liver, "mask", liver)
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"liver mask must be 3-D (z, y, x); got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def label_array_of(obj: Any) -> np.ndarray | None:
    """An integer label array from an array, a detection result (``labels``/``mask``) or None."""
    if obj is None:
        return None
    for attr in ("labels", "mask"):
        if hasattr(obj, attr):
            obj = getattr(obj, attr)
            break
    return None if obj is None else np.asarray(obj)


def phase_of(phase: Any) -> Phase:
    """Normalise a phase given as :class:`Phase`, its string value, a PhaseEstimate or None."""
    if phase is None:
        return Phase.UNKNOWN
    phase = getattr(phase, "phase", phase)
    try:
        return Phase(phase)
    except ValueError:
        return Phase.UNKNOWN


def bbox_slices(mask: np.ndarray, *, pad: int = 0) -> tuple[slice, ...] | None:
    """Bounding-box slices of the True voxels of ``mask`` enlarged by ``pad`` voxels."""
    if not mask.any():
        return None
    out = []
    for ax in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(idx[0]) - pad, 0), min(int(idx[-1]) + pad + 1, mask.shape[ax])))
    return tuple(out)


def label_centroids(labels: np.ndarray, n: int) -> list[tuple[float, float, float]]:
    """Centroid (z, y, x) of labels 1..n, computed inside each label's bounding box."""
    out: list[tuple[float, float, float]] = []
    boxes = ndi.find_objects(labels, max_label=n)
    for k, box in enumerate(boxes, start=1):
        if box is None:
            out.append((np.inf, np.inf, np.inf))
            continue
        idx = np.argwhere(labels[box] == k)
        out.append(tuple(float(v) for v in idx.mean(axis=0) + np.array([b.start for b in box])))
    out += [(np.inf, np.inf, np.inf)] * (n - len(out))
    return out


def nonzero_crop(mask: np.ndarray, *, pad: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of the non-zero voxels (cheap: projections, no labelling)."""
    return bbox_slices(np.asarray(mask) != 0, pad=pad) if mask.size else None


def _block_sum(a: np.ndarray, f: tuple[int, int, int]) -> np.ndarray:
    """Sum over non-overlapping blocks of ``f`` voxels (edges zero-padded)."""
    if f == (1, 1, 1):
        return a.astype(np.float32, copy=False)
    pads = [(0, (-s) % k) for s, k in zip(a.shape, f)]
    a = np.pad(a.astype(np.float32, copy=False), pads)
    z, y, x = a.shape
    return a.reshape(z // f[0], f[0], y // f[1], f[1], x // f[2], f[2]).sum(axis=(1, 3, 5))


def block_factors(spacing_zyx: tuple[float, float, float], target_mm: float) -> tuple[int, int, int]:
    """Integer down-sampling factors bringing each spacing close to (not above) ``target_mm``."""
    return tuple(max(1, int(np.floor(target_mm / s + 0.25))) for s in spacing_zyx)  # type: ignore[return-value]


def normalized_smooth(
    image: np.ndarray, weight: np.ndarray, spacing_zyx: tuple[float, ...], sigma_mm: float
) -> np.ndarray:
    """Gaussian smoothing of ``image`` using only voxels where ``weight`` > 0.

    Normalised convolution: ``G(image * weight) / G(weight)``; voxels with no support keep
    their own value.
    """
    sig = [sigma_mm / s for s in spacing_zyx]
    w = weight.astype(np.float32)
    num = ndi.gaussian_filter(image.astype(np.float32) * w, sig, mode="nearest", truncate=3.0)
    den = ndi.gaussian_filter(w, sig, mode="nearest", truncate=3.0)
    out = image.astype(np.float32).copy()
    ok = den > 1e-3
    out[ok] = num[ok] / den[ok]
    return out


def robust_noise_hu(image: np.ndarray, mask: np.ndarray, *, max_samples: int = 2_000_000) -> float:
    """Robust SD of the voxel noise: MAD of in-plane neighbour differences / sqrt(2).

    Only pairs of voxels that both lie in ``mask`` count. Differences of neighbours
    cancel the smooth anatomy, so this measures the high-frequency noise.
    """
    a = image.astype(np.float32, copy=False)
    vals = []
    for ax in (1, 2):
        sl0 = [slice(None)] * 3
        sl1 = [slice(None)] * 3
        sl0[ax] = slice(0, -1)
        sl1[ax] = slice(1, None)
        ok = mask[tuple(sl0)] & mask[tuple(sl1)]
        d = (a[tuple(sl1)] - a[tuple(sl0)])[ok]
        vals.append(d)
    d = np.concatenate(vals) if vals else np.zeros(0, np.float32)
    if d.size < 10:
        return float("nan")
    if d.size > max_samples:
        d = d[:: d.size // max_samples + 1]
    mad = np.median(np.abs(d - np.median(d)))
    return float(1.4826 * mad / np.sqrt(2.0))


def histogram_mode(values: np.ndarray, *, lo: float = -200.0, hi: float = 400.0, smooth_hu: float = 2.0) -> float:
    """Mode of ``values`` from a 1-HU histogram smoothed by ``smooth_hu``."""
    v = values[(values > lo) & (values < hi)]
    if v.size == 0:
        return float(np.median(values)) if values.size else float("nan")
    hist, edges = np.histogram(v, bins=int(hi - lo), range=(lo, hi))
    hist = ndi.gaussian_filter1d(hist.astype(float), smooth_hu)
    i = int(np.argmax(hist))
    return float(0.5 * (edges[i] + edges[i + 1]))


def edt_mm(mask: np.ndarray, spacing_zyx: tuple[float, ...]) -> np.ndarray:
    """Euclidean distance (mm) of every True voxel to the nearest False voxel."""
    return ndi.distance_transform_edt(mask, sampling=spacing_zyx).astype(np.float32)


@dataclass(eq=False)
class LiverGrid:
    """The liver crop on the (possibly coarser) detection grid, with scan statistics."""

    crop: tuple[slice, ...]  # crop of the full volume (full-resolution indices)
    factors: tuple[int, int, int]  # block factors full -> detection grid
    spacing_zyx: tuple[float, float, float]  # detection-grid spacing
    liver: np.ndarray  # bool, detection grid
    deep: np.ndarray  # bool, liver eroded by rim_mm
    smoothed: np.ndarray  # float32 smoothed HU (detection grid)
    coarse: np.ndarray  # float32 HU smoothed at the coarse scale (detection grid)
    depth_mm: np.ndarray  # float32 distance to the liver surface (detection grid)
    parenchyma_hu: float
    noise_hu: float  # full-resolution voxel noise
    smoothed_noise_hu: float  # spread of the smoothed parenchyma
    coarse_noise_hu: float  # spread of the coarse-scale parenchyma
    excluded_full: np.ndarray  # bool, full-res crop: voxels left out (calcium, vessels, bright)
    mean_hu: np.ndarray  # float32 block-mean HU of the usable voxels (detection grid)
    weight: np.ndarray  # float32 usable fraction of each block (detection grid)

    def to_full(self, small: np.ndarray, full_shape: tuple[int, ...]) -> np.ndarray:
        """Nearest-neighbour upsampling of a detection-grid array onto the full-res crop."""
        a = small
        for ax, f in enumerate(self.factors):
            if f > 1:
                a = np.repeat(a, f, axis=ax)
        return a[: full_shape[0], : full_shape[1], : full_shape[2]]


def prepare_liver_grid(
    volume: Volume,
    liver_mask: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    detection_spacing_mm: float = 1.5,
    smoothing_mm: float = 1.2,
    coarse_smoothing_mm: float = 2.5,
    rim_mm: float = 3.0,
) -> LiverGrid | None:
    """Crop, block-average and smooth the liver; measure parenchymal HU and noise.

    Returns None when the liver mask is empty.
    """
    crop = bbox_slices(liver_mask, pad=1)
    if crop is None:
        return None
    img = volume.array[crop].astype(np.float32)
    liv = liver_mask[crop]
    excl = img > _BRIGHT_HU
    if exclude is not None:
        excl |= exclude[crop]
    valid = liv & ~excl

    noise = robust_noise_hu(img, valid)

    f = block_factors(volume.spacing_zyx, detection_spacing_mm)
    sp = tuple(s * k for s, k in zip(volume.spacing_zyx, f))
    nvox = float(np.prod(f))
    w_sum = _block_sum(valid, f)
    i_sum = _block_sum(np.where(valid, img, 0.0), f)
    l_frac = _block_sum(liv, f) / nvox
    small_liver = l_frac >= 0.5
    mean_small = np.where(w_sum > 0, i_sum / np.maximum(w_sum, 1e-6), 0.0).astype(np.float32)
    weight_small = (w_sum / nvox) * small_liver

    smoothed = normalized_smooth(mean_small, weight_small, sp, smoothing_mm)
    coarse = normalized_smooth(mean_small, weight_small, sp, coarse_smoothing_mm)
    depth = edt_mm(small_liver, sp)
    deep = depth > rim_mm
    if deep.sum() < 50:  # tiny liver: use what there is
        deep = small_liver
    vals = smoothed[deep & (weight_small > 0.5)]
    if vals.size == 0:
        vals = smoothed[small_liver]
    par = histogram_mode(vals)
    snoise = float(1.4826 * np.median(np.abs(vals - par))) if vals.size else float("nan")
    cvals = coarse[deep & (weight_small > 0.5)]
    cnoise = float(1.4826 * np.median(np.abs(cvals - np.median(cvals)))) if cvals.size else snoise
    if not np.isfinite(noise):
        noise = snoise
    return LiverGrid(
        crop=crop,
        factors=f,
        spacing_zyx=sp,  # type: ignore[arg-type]
        liver=small_liver,
        deep=deep,
        smoothed=smoothed,
        coarse=coarse,
        depth_mm=depth,
        parenchyma_hu=par,
        noise_hu=float(noise),
        smoothed_noise_hu=max(snoise, 0.5),
        coarse_noise_hu=max(cnoise, 0.5),
        excluded_full=excl,
        mean_hu=mean_small,
        weight=weight_small.astype(np.float32),
    )


def component_shape(mask: np.ndarray, spacing_zyx: tuple[float, ...]) -> dict[str, float]:
    """Shape descriptors of one binary component (cropped to its box) in mm.

    ``r_max_mm`` is the largest inscribed radius (distance map maximum less half a voxel),
    ``sphere_ratio`` the volume over that of the inscribed sphere (1 for a ball, large for
    a tube), ``extent_mm`` the length along the principal axis. Holes (noise) are filled
    first.
    """
    vox = float(np.prod(spacing_zyx))
    mask = ndi.binary_fill_holes(mask)
    n = int(mask.sum())
    vol = n * vox
    d = edt_mm(np.pad(mask, 1), spacing_zyx)
    # the distance map reaches the first voxel centre outside, half a voxel past the edge
    r_max = max(float(d.max()) - 0.5 * float(min(spacing_zyx)), 0.5 * float(min(spacing_zyx))) if n else 0.0
    ratio = vol / (4.0 / 3.0 * np.pi * r_max**3) if r_max > 0 else 0.0
    pts = np.argwhere(mask) * np.asarray(spacing_zyx)
    if n >= 3:
        c = pts - pts.mean(axis=0)
        _, s, vt = np.linalg.svd(c, full_matrices=False)
        proj = c @ vt[0]
        extent = float(proj.max() - proj.min()) + float(min(spacing_zyx))
    else:
        extent = float(max(spacing_zyx))
    return {"volume_mm3": vol, "r_max_mm": r_max, "sphere_ratio": float(ratio), "extent_mm": extent}


def is_tubular(shape: dict[str, float], *, min_ratio: float = 4.0, min_elongation: float = 3.5) -> bool:
    """True for elongated tube-like components (length several times the calibre)."""
    diam = 2.0 * shape["r_max_mm"]
    return shape["sphere_ratio"] >= min_ratio and shape["extent_mm"] >= min_elongation * diam


def fat_fraction(values: np.ndarray, *, noise_hu: float, fat_hu: float = -40.0) -> float:
    """Fraction of ``values`` (HU) at fat density.

    A voxel counts as fat when it is below ``fat_hu`` and more than three noise SDs below
    water (``min(fat_hu, -3 * noise_hu)``), so that the noise of water-density content
    (a cyst, bile: about 0-30 HU) almost never reaches the line (< 0.2 % of its voxels).
    Hypodense lesions and dilated ducts hold fluid or soft tissue; partial volume with the
    surrounding liver only raises their HU. A region with many fat-density voxels is fat
    the liver mask took in (the fissures of the ligamentum teres and venosum, hilar fat,
    fat between the liver and the diaphragm) or its partial-volume edge.
    """
    v = np.asarray(values, np.float32).ravel()
    if v.size == 0:
        return 0.0
    line = min(fat_hu, -3.0 * float(noise_hu)) if np.isfinite(noise_hu) else fat_hu
    return float((v < line).mean())


# --------------------------------------------------------------------------------------
# lesion detection
# --------------------------------------------------------------------------------------


def calcified_cavities(
    image: np.ndarray,
    calcium: np.ndarray,
    liver: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    *,
    min_extent_mm: float = 15.0,
    min_hull_ratio: float = 2.5,
    min_contrast_hu: float = 10.0,
    fat_hu: float = -30.0,
) -> np.ndarray:
    """Interiors of calcified shells (rim-calcified cysts) that touch the liver.

    A liver segmentation often stops at a calcified wall and leaves a rim-calcified cyst
    (hydatid cyst, old haematoma or abscess) outside the mask. A calcification component
    whose convex hull is at least ``min_hull_ratio`` times its own volume and
    ``min_extent_mm`` across encloses space; that space is returned (added to the lesion
    search domain) when its median HU is soft tissue or fluid (above ``fat_hu``) and at
    least ``min_contrast_hu`` below the liver's median, i.e. a hypodense cavity rather
    than liver parenchyma or fat.

    Returns a bool array on the grid of ``image``.
    """
    from skimage.morphology import convex_hull_image

    out = np.zeros(calcium.shape, bool)
    if not calcium.any() or not liver.any():
        return out
    liver_hu = float(np.median(image[liver]))
    lab = cc3d.connected_components(calcium, connectivity=26)
    vox = float(np.prod(spacing_zyx))
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        comp = lab[box] == i
        ext = max((b.stop - b.start) * s for b, s in zip(box, spacing_zyx))
        if ext < min_extent_mm or comp.sum() < 10 or min(b.stop - b.start for b in box) < 3:
            continue  # small, or flat (a plate encloses nothing; qhull needs 3-D input)
        with warnings.catch_warnings():
            # points of a thin, oblique plate are coplanar: qhull warns and an empty hull
            # comes back, which the ratio test below rejects (a plate encloses nothing)
            warnings.simplefilter("ignore", UserWarning)
            hull = convex_hull_image(comp)
        if hull.sum() < min_hull_ratio * comp.sum():
            continue
        inner = hull & ~ndi.binary_dilation(comp, iterations=1)
        if inner.sum() * vox < np.pi / 6.0 * (0.5 * min_extent_mm) ** 3:
            continue
        med = float(np.median(image[box][inner]))
        if not (fat_hu < med < liver_hu - min_contrast_hu):
            continue
        out[box] |= hull
    return out


def _split_touching(comp: np.ndarray, spacing_zyx: tuple[float, ...], *, h_mm: float) -> np.ndarray:
    """Split a binary component at narrow necks: watershed of the distance map.

    Returns an int32 label image of the same shape (1..k); a single label when no neck
    deeper than ``h_mm`` exists.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    d = edt_mm(comp, spacing_zyx)
    peaks = h_maxima(d, h_mm)
    markers, k = ndi.label(peaks & comp, structure=np.ones((3, 3, 3)))
    if k <= 1:
        return comp.astype(np.int32)
    return watershed(-d, markers, mask=comp).astype(np.int32)


def _candidates(
    grid: LiverGrid,
    *,
    k_seed: float,
    k_grow: float,
    min_contrast_hu: float,
    rim_mm: float,
    k_seed_coarse: float = 5.0,
) -> tuple[np.ndarray, float, float]:
    """Hysteresis mask of hypodense voxels on the detection grid."""
    p, sn = grid.parenchyma_hu, grid.smoothed_noise_hu
    t_seed = p - max(k_seed * sn, min_contrast_hu)
    t_grow = p - max(k_grow * sn, 0.5 * min_contrast_hu)
    s = grid.smoothed
    grow = (s < t_grow) & grid.liver
    t_coarse = p - max(k_seed_coarse * grid.coarse_noise_hu, min_contrast_hu)
    seeds = ((s < t_seed) | (grid.coarse < t_coarse)) & grid.deep & grow
    # subcapsular rim: admitted only within rim_mm (+1 voxel) of the deep part of a candidate
    deep_part = grow & grid.deep
    near = ndi.distance_transform_edt(~deep_part, sampling=grid.spacing_zyx) <= rim_mm + max(grid.spacing_zyx)
    grow &= grid.deep | near
    lab = cc3d.connected_components(grow, connectivity=6)
    keep = np.unique(lab[seeds])
    keep = keep[keep > 0]
    return np.isin(lab, keep), seeds, t_seed, t_grow


def _mass_candidates(
    grid: LiverGrid,
    hypodense: np.ndarray,
    *,
    sigma_mm: float,
    k_sd: float,
    min_contrast_hu: float,
    min_diameter_mm: float,
    split_bodies: bool = False,
) -> list[tuple[tuple[slice, ...], np.ndarray, int]]:
    """Large compact regions whose broad-scale mean HU differs from the parenchyma.

    The usable block means (calcium, enhanced vessels and very bright voxels left out) are
    smoothed at ``sigma_mm``; voxels of the deep liver differing from the parenchyma by
    ``max(k_sd * SD, min_contrast_hu)`` on either side form candidates (the sign of the
    median difference says darker (-1) or brighter (+1)). The threshold's SD is measured on
    the side of the parenchyma away from the sign sought (:func:`_half_spread`). With
    ``split_bodies`` a tube-like component is opened (:func:`mass_bodies`, a ball of a quarter
    of ``min_diameter_mm``) and its compact bodies are the candidates.
    """
    big = normalized_smooth(grid.mean_hu, grid.weight, grid.spacing_zyx, sigma_mm)
    ok = grid.deep & (grid.weight > 0.5)
    vals = big[ok]
    if vals.size < 50:
        return []
    par = grid.parenchyma_hu
    # spread of the parenchyma on the side away from the mass sought: a large mass is a large
    # share of the liver and widens the spread on its own side (a 60-80 mm hypodense mass took
    # the two-sided SD from 6 to 9-11 HU and hid itself behind a threshold of 46-57 HU)
    sds = {s: _half_spread(vals, par, side=-s) for s in (+1, -1)}
    diff = big - par
    out: list[tuple[tuple[slice, ...], np.ndarray, int]] = []
    min_vol = np.pi / 6.0 * min_diameter_mm**3
    for sign in (+1, -1):
        thr = max(k_sd * sds[sign], min_contrast_hu)
        m = (sign * diff > thr) & grid.liver
        seed = m & grid.deep
        lab = cc3d.connected_components(m, connectivity=6)
        for i, box in enumerate(ndi.find_objects(lab), start=1):
            if box is None:
                continue
            comp = lab[box] == i
            if not (comp & seed[box]).any():
                continue
            if ndi.binary_fill_holes(comp).sum() * float(np.prod(grid.spacing_zyx)) < min_vol:
                continue  # too small, whatever its shape
            shape = component_shape(comp, grid.spacing_zyx)
            if shape["volume_mm3"] < min_vol:
                continue
            if is_tubular(shape, min_ratio=3.0, min_elongation=2.5):
                if not split_bodies:
                    continue
                # at a broad scale a mass merges with the darker (brighter) tubes and hilum
                # next to it: its compact bodies are the candidates
                r_body = 0.25 * min_diameter_mm
                for body in mass_bodies(comp, grid.spacing_zyx, neck_mm=r_body, min_body_mm=r_body):
                    bshape = component_shape(body, grid.spacing_zyx)
                    if (bshape["volume_mm3"] >= min_vol and (body & seed[box]).any()
                            and not is_tubular(bshape, min_ratio=3.0, min_elongation=2.5)):
                        out.append((box, body, sign))
                continue
            out.append((box, comp, sign))
    return out


def _half_spread(vals: np.ndarray, centre: float, *, side: int) -> float:
    """Robust SD from the deviations on one side of ``centre`` (+1 above, -1 below).

    For noise symmetric about the centre the median one-sided deviation is 0.674 SD, as for the
    two-sided MAD; values on the other side (a large lesion) do not widen it.
    """
    d = side * (vals - centre)
    d = d[d > 0]
    if d.size < 25:
        return float(1.4826 * np.median(np.abs(vals - centre)))
    return float(1.4826 * np.median(d))


def _shared_voxels(a: np.ndarray, box_a: tuple[slice, ...], b: np.ndarray, box_b: tuple[slice, ...]) -> int:
    """Number of voxels two boxed masks (boxes in the same frame) share."""
    inter = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(box_a, box_b))
    if any(sl.stop <= sl.start for sl in inter):
        return 0
    sa = tuple(slice(i.start - x.start, i.stop - x.start) for i, x in zip(inter, box_a))
    sb = tuple(slice(i.start - y.start, i.stop - y.start) for i, y in zip(inter, box_b))
    return int(np.count_nonzero(a[sa] & b[sb]))


def _union(parts: list[tuple[np.ndarray, tuple[slice, ...]]]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Union of boxed masks (boxes in the same frame), in the box that holds them all."""
    ub = tuple(slice(min(b[a].start for _, b in parts), max(b[a].stop for _, b in parts)) for a in range(3))
    union = np.zeros(tuple(b.stop - b.start for b in ub), bool)
    for r2, b2 in parts:
        union[tuple(slice(b.start - u.start, b.stop - u.start) for b, u in zip(b2, ub))] |= r2
    return union, ub


def _overlap(a: np.ndarray, box_a: tuple[slice, ...], b: np.ndarray, box_b: tuple[slice, ...]) -> bool:
    """True when two boxed masks (boxes in the same frame) share a voxel."""
    return _shared_voxels(a, box_a, b, box_b) > 0


def _inside_fraction(a: np.ndarray, box_a: tuple[slice, ...], b: np.ndarray, box_b: tuple[slice, ...]) -> float:
    """Share of the voxels of boxed mask ``a`` that lie in boxed mask ``b`` (same frame)."""
    n = int(a.sum())
    return _shared_voxels(a, box_a, b, box_b) / n if n else 0.0


#: refinement of a mass found only at the broadest scale: margin around the candidate, mm, and
#: smoothing, mm (see the refinement in :func:`find_lesions`)
LARGE_MASS_MARGIN_MM = 6.0
LARGE_MASS_REFINE_SIGMA_MM = 2.0

#: a hypodense region with at least this share of its voxels inside a mass is part of it
ENCLOSED_FRACTION = 0.9

#: a hypodense region sharing at least this share of its voxels with regions already accepted is
#: the same lesion found again (split parts or seed cores of one component regrow over each
#: other in the refinement): it is merged with them, not painted as a fragment of its own
DUPLICATE_FRACTION = 0.25


# --------------------------------------------------------------------------------------
# robustness gates: partial volume at fat / air the mask took in, focality
# --------------------------------------------------------------------------------------


def fat_or_air(image: np.ndarray, *, noise_hu: float, fat_hu: float = -40.0) -> np.ndarray:
    """Voxels at fat or air density (the line of :func:`fat_fraction`) with such a face neighbour.

    Requiring a neighbour leaves out the lone voxels that the noise of water-density content
    (a cyst) pushes below the line; a one-voxel-thick layer of fat still counts.
    """
    line = min(fat_hu, -3.0 * float(noise_hu)) if np.isfinite(noise_hu) else fat_hu
    f = np.asarray(image) < line
    return f & face_touching(f)


def seed_tissue_depth_mm(
    image: np.ndarray, liver: np.ndarray, seed: np.ndarray, spacing_zyx: tuple[float, ...], *, noise_hu: float
) -> float:
    """Largest distance (mm) from a voxel of ``seed`` to the liver's edge or to fat / air inside the mask.

    The edge is the outside of ``liver`` and every :func:`fat_or_air` voxel inside it: a mask
    that takes in the fat of a fissure, the diaphragm's fat or the lung base at the dome puts
    an interface inside itself, and partial volume darkens the voxels next to it exactly as
    it does under the capsule. ``inf`` when the box holds no interface; 0 for an empty seed.
    """
    if not seed.any():
        return 0.0
    interface = ~liver | fat_or_air(image, noise_hu=noise_hu)
    if not interface.any():
        return float("inf")
    return float(ndi.distance_transform_edt(~interface, sampling=spacing_zyx)[seed].max())


@dataclass(frozen=True)
class LocalBackground:
    """The parenchyma around one candidate on the detection grid (see :func:`local_background`)."""

    fine_hu: float  # median of the smoothed detection image in the shell
    fine_sd: float  # its robust SD
    coarse_hu: float
    coarse_sd: float
    fine_min: float  # darkest smoothed value of the candidate's deep part
    coarse_min: float
    voxels: int  # shell size (detection grid)


def local_background(
    grid: LiverGrid,
    region: np.ndarray,
    box: tuple[slice, ...],
    others: np.ndarray,
    *,
    inner_mm: float = 3.0,
    outer_mm: float = 10.0,
    min_voxels: int = 20,
) -> LocalBackground | None:
    """HU and spread of the liver in a shell ``inner_mm``-``outer_mm`` around a candidate.

    ``region`` is the candidate at full resolution inside ``box`` (indices of the liver
    crop ``grid.crop``); ``others`` (detection grid) are voxels that are not background:
    the other candidates (neighbouring lesions). The darker fringe of a candidate that did
    not make its segmentation stays in the shell: a region no darker than its surroundings
    is what the test is for. The shell keeps the deep, usable liver only. None when fewer
    than ``min_voxels`` shell voxels remain.
    """
    idx = np.argwhere(region)
    if idx.size == 0:
        return None
    gi = (idx + np.array([s.start for s in box])) // np.array(grid.factors)
    pad = [int(np.ceil(outer_mm / s)) + 1 for s in grid.spacing_zyx]
    gb = tuple(
        slice(max(int(lo) - p, 0), min(int(hi) + 1 + p, n))
        for lo, hi, p, n in zip(gi.min(axis=0), gi.max(axis=0), pad, grid.liver.shape)
    )
    small = np.zeros(tuple(b.stop - b.start for b in gb), bool)
    small[tuple((gi - np.array([b.start for b in gb])).T)] = True
    d = ndi.distance_transform_edt(~small, sampling=grid.spacing_zyx)
    shell = (d > inner_mm) & (d <= outer_mm) & grid.deep[gb] & (grid.weight[gb] > 0.5) & ~others[gb]
    n = int(shell.sum())
    if n < min_voxels:
        return None
    inside = small & grid.deep[gb]
    if not inside.any():
        inside = small

    def spread(v: np.ndarray) -> tuple[float, float]:
        m = float(np.median(v))
        return m, float(1.4826 * np.median(np.abs(v - m)))

    f_hu, f_sd = spread(grid.smoothed[gb][shell])
    c_hu, c_sd = spread(grid.coarse[gb][shell])
    return LocalBackground(
        fine_hu=f_hu, fine_sd=f_sd, coarse_hu=c_hu, coarse_sd=c_sd,
        fine_min=float(grid.smoothed[gb][inside].min()), coarse_min=float(grid.coarse[gb][inside].min()), voxels=n,
    )


def focal_seed_ratio(
    bg: LocalBackground, grid: LiverGrid, *, k_seed: float, k_seed_coarse: float, min_contrast_hu: float
) -> float:
    """The seed test of a hypodense candidate repeated against its own surroundings.

    The candidate's darkest smoothed value below the local background ``bg``, over the seed
    threshold ``max(k SD, min_contrast_hu)``, at the fine or the coarse detection scale
    (whichever is larger, as the seeds are found). SD is the larger of the scan's spread and
    the shell's. 1 at the gate, above 1 on the passing side.
    """
    fine = (bg.fine_hu - bg.fine_min) / max(k_seed * max(grid.smoothed_noise_hu, bg.fine_sd), min_contrast_hu)
    coarse = (bg.coarse_hu - bg.coarse_min) / max(k_seed_coarse * max(grid.coarse_noise_hu, bg.coarse_sd), min_contrast_hu)
    return float(max(fine, coarse))


def _on_grid(grid: LiverGrid, regions: list[np.ndarray], boxes: list[tuple[slice, ...]]) -> np.ndarray:
    """Detection-grid mask of full-resolution regions given in boxes of the liver crop."""
    out = np.zeros(grid.liver.shape, bool)
    f = np.array(grid.factors)
    for reg, fb in zip(regions, boxes):
        idx = np.argwhere(reg)
        if idx.size:
            out[tuple(((idx + np.array([s.start for s in fb])) // f).T)] = True
    return out


def _robustness_rejection(
    grid: LiverGrid,
    others: np.ndarray,
    img: np.ndarray,
    liver: np.ndarray,
    region: np.ndarray,
    seed: np.ndarray,
    box: tuple[slice, ...],
    spacing_zyx: tuple[float, float, float],
    *,
    rim_mm: float,
    k_seed: float,
    k_seed_coarse: float,
    min_contrast_hu: float,
    shell_mm: tuple[float, float],
) -> str | None:
    """Why a refined hypodense candidate is not a lesion, or None when it passes both gates.

    The scan-wide gates measure a candidate against the parenchymal *mode* of the whole
    liver and against the liver mask's edge. On real scans both references move: the
    liver's attenuation varies by region (photon-starvation streaks between the spine and
    the ribs, partial volume at the dome), and a mask a millimetre or a voxel wider takes in
    fat or lung. On the two real lesion-free scans such candidates passed the scan-wide
    gates by 16 % (seed) or sat 2 % under the fat-fraction limit (docs/performance.md,
    ``bench/lesion_margins.py``). Two gates, with parameters in mm and noise SD that are the
    same for every scan, measure against references that do not move that way:

    ``partial_volume``
        The candidate's seed (its darkest part; the whole region where calcium or vessels
        cover the seed) must reach deeper than ``rim_mm`` from the liver's edge, where the edge includes
        fat or air *inside* the mask (:func:`seed_tissue_depth_mm`). This is the detection
        pass's subcapsular-rim rule applied to every fat/air interface, whether or not the
        mask took it in: partial volume darkens the voxels next to it either way.
    ``not_focal``
        A focal lesion is darker than the liver *around it*; a reader measures its contrast
        with an ROI in the adjacent parenchyma. The seed test (``k_seed`` SDs and at least
        ``min_contrast_hu`` below the parenchyma) is repeated with the parenchyma taken
        from a shell ``shell_mm`` around the candidate (:func:`local_background`,
        :func:`focal_seed_ratio`), and the SD the larger of the scan's and the shell's. A
        spot in a darker band of the liver that is not dark enough for its own
        surroundings fails. When the shell is too small to measure (a candidate filling
        its part of the liver) the scan-wide test stands.
    """
    if seed.any() and seed_tissue_depth_mm(img, liver, seed, spacing_zyx, noise_hu=grid.noise_hu) <= rim_mm:
        return "partial_volume"
    bg = local_background(grid, region, box, others, inner_mm=shell_mm[0], outer_mm=shell_mm[1])
    if bg is None:
        return None
    ratio = focal_seed_ratio(bg, grid, k_seed=k_seed, k_seed_coarse=k_seed_coarse, min_contrast_hu=min_contrast_hu)
    return "not_focal" if ratio < 1.0 else None


def _refine(
    full_img: np.ndarray,
    full_liver: np.ndarray,
    full_excluded: np.ndarray,
    calc: np.ndarray | None,
    core: np.ndarray,
    seed: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    *,
    parenchyma_hu: float,
    sigma_mm: float,
    margin_mm: float,
    rim_mm: float,
    sign: int = -1,
    noise_hu: float | None = None,
) -> np.ndarray:
    """Full-resolution segmentation of one lesion in its box at the half-contrast level.

    ``sign`` is -1 for a lesion darker than the parenchyma, +1 for a brighter one.

    ``core`` is the detection component (it bounds the search zone), ``seed`` its darkest
    part, whose raw median HU is the lesion's attenuation.
    """
    valid = full_liver & ~full_excluded
    sm = normalized_smooth(full_img, valid, spacing_zyx, sigma_mm)
    inner = seed & valid
    if not inner.any():
        inner = core & valid
    if inner.sum() >= 125:
        er = ndi.binary_erosion(inner)
        if er.sum() >= 27:
            inner = er
    core_hu = float(np.median(full_img[inner])) if inner.any() else float(np.median(sm[core]))
    thr = 0.5 * (parenchyma_hu + core_hu)
    # low contrast: smooth more, until the smoothed noise is a third of the half-contrast
    if noise_hu is not None and np.isfinite(noise_hu):
        half = 0.5 * abs(core_hu - parenchyma_hu)
        for sig in (1.2 * sigma_mm, 2.0 * sigma_mm, 3.0 * sigma_mm):
            # white noise after a 3-D Gaussian: SD / sqrt((2 sqrt(pi))^3 prod(sigma_vox))
            cur = sigma_mm
            nvox = (2.0 * np.sqrt(np.pi)) ** 3 * float(np.prod([max(cur / s, 0.5) for s in spacing_zyx]))
            if noise_hu / np.sqrt(nvox) <= half / 3.0:
                break
            sigma_mm = sig
            sm = normalized_smooth(full_img, valid, spacing_zyx, sigma_mm)
    dist_out = ndi.distance_transform_edt(~core, sampling=spacing_zyx)
    zone = (dist_out <= margin_mm) & full_liver
    reg = (sign * (sm - thr) > 0) & zone & ~full_excluded
    # the partial-volume rim of the liver surface only next to the lesion's deep part
    depth = edt_mm(full_liver, spacing_zyx)
    deep_reg = reg & (depth > rim_mm)
    if deep_reg.any():
        near = ndi.distance_transform_edt(~deep_reg, sampling=spacing_zyx) <= rim_mm + max(spacing_zyx)
        reg &= (depth > rim_mm) | near
    # in-plane majority vote: drops single noisy voxels and one-voxel spurs
    votes = ndi.uniform_filter(reg.astype(np.float32), size=(1, 3, 3), mode="constant") * 9.0
    reg &= votes >= 4.5
    lab = cc3d.connected_components(reg, connectivity=6)
    hit = np.unique(lab[core & reg])
    hit = hit[hit > 0]
    if hit.size == 0:
        reg = core.copy()
    else:
        reg = np.isin(lab, hit)
    # calcifications touching the lesion, and holes (bright centres), belong to it
    if calc is not None:
        touch = calc & ndi.binary_dilation(reg, iterations=1)
        if touch.any():
            clab = cc3d.connected_components(calc, connectivity=26)
            ids = np.unique(clab[touch])
            reg |= np.isin(clab, ids[ids > 0]) & ndi.binary_dilation(reg, iterations=2)
    reg = ndi.binary_fill_holes(reg)
    for z in range(reg.shape[0]):
        if reg[z].any():
            reg[z] = ndi.binary_fill_holes(reg[z])
    return reg & full_liver


def mass_bodies(
    reg: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    *,
    neck_mm: float,
    min_body_mm: float,
) -> list[np.ndarray]:
    """The compact bodies of a mass segmentation, without the tubes and thin necks on it.

    A mass of the broad-scale search is refined at the half-contrast level, and whatever
    touches it on the same side of that level joins it. For a mass brighter than the
    parenchyma these are the enhanced vessels (portal and hepatic-vein branches, hepatic
    arteries, often brighter than the mass itself), and the segmentation follows them for
    centimetres; for a darker one, a neighbouring lesion or a duct. A vessel is a tube and
    the mass is compact, so they differ in thickness, not in HU. A morphological
    opening with a ball of radius ``neck_mm`` (at most half the region's own inscribed
    radius, so that a flat mass keeps a body) removes every part no such ball fits in:
    tubes narrower than ``2 * neck_mm`` and the necks joining them to the mass. Of the
    pieces the ball's centres form, the deepest is the mass; another piece is a body of
    its own when it holds a ball ``min_body_mm`` in radius (a mass of the smallest size
    the search reports); the rest (a thicker vessel segment cut off at a neck, bright
    parenchyma between vessels) is dropped.

    Parameters
    ----------
    reg: ndarray of bool
        The refined mass (holes filled).
    spacing_zyx: tuple of float
        Voxel spacing, mm.
    neck_mm: float
        Radius of the opening ball, mm.
    min_body_mm: float
        Inscribed radius, mm, from which a piece other than the deepest is kept.

    Returns
    -------
    list of ndarray of bool
        One mask per body (same shape as ``reg``), the deepest first; ``[reg]`` when the
        region is empty or too thin to open.
    """
    pad = int(np.ceil(neck_mm / min(spacing_zyx))) + 2
    box = bbox_slices(reg, pad=pad)
    if box is None:
        return [reg]
    sub = reg[box]
    # depth inside the region; the box edge counts as outside
    depth = edt_mm(np.pad(sub, 1), spacing_zyx)[1:-1, 1:-1, 1:-1]
    r_max = float(depth.max()) - 0.5 * float(min(spacing_zyx))
    radius = min(neck_mm, 0.5 * r_max)
    if radius < max(spacing_zyx):
        return [reg]  # too thin for an opening the grid can resolve
    centres = depth > radius
    lab = cc3d.connected_components(centres, connectivity=26)
    n = int(lab.max())
    if n == 0:
        return [reg]
    deepest = ndi.maximum(depth, lab, index=np.arange(1, n + 1))
    order = np.argsort(deepest)[::-1]
    # the distance map reaches the first voxel centre outside, half a voxel past the edge
    inscribed = deepest - 0.5 * float(min(spacing_zyx))
    keep = [int(order[0]) + 1] + [int(i) + 1 for i in order[1:] if inscribed[i] >= min_body_mm]
    # the balls' centres lie on voxel centres and their depth is measured to the nearest
    # voxel centre outside, so they sit up to half a voxel deeper than the surface needs:
    # half a voxel more on the way back keeps a ball-shaped mass whole
    reach = radius + 0.5 * float(max(spacing_zyx))
    out = []
    for k in keep:
        body = (ndi.distance_transform_edt(lab != k, sampling=spacing_zyx) <= reach) & sub
        full = np.zeros_like(reg)
        full[box] = body
        out.append(full)
    return out


def _within_reach(
    reg: np.ndarray, body: np.ndarray, spacing_zyx: tuple[float, ...], reach_mm: float, *, keep: np.ndarray | None
) -> np.ndarray:
    """The part of ``reg`` within ``reach_mm`` of ``body``, plus its voxels in ``keep``."""
    near = ndi.distance_transform_edt(~body, sampling=spacing_zyx) <= reach_mm
    if keep is not None:
        near |= keep
    return reg & near


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (golden-angle spiral), (n, 3) z, y, x."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    r = np.sqrt(1.0 - z**2)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    return np.stack([z, r * np.sin(phi), r * np.cos(phi)], axis=1)


#: directions over which an enclosing ring must be bright (see :func:`_extend_to_enclosing_ring`)
_RING_DIRECTIONS = fibonacci_directions(26)


@dataclass(frozen=True)
class RingRule:
    """How far outside a hypodense segmentation an enclosing bright ring is looked for.

    A target metastasis or an abscess is a dark centre inside an enhancing wall; the wall
    belongs to the lesion (its size is measured across it), and between the dark centre's
    half-contrast edge and the wall there may be viable tissue of intermediate HU.
    """

    #: width of the distance bins of the radial profile, mm
    bin_mm: float = 1.0
    #: the ring must start within this distance of the segmented edge (mm, and a share of
    #: the dark part's equivalent radius, whichever is larger)
    start_mm: float = 3.0
    start_share: float = 0.35
    #: how far out the profile is followed, mm
    reach_mm: float = 8.0
    #: the ring's median excess over the parenchyma: at least this many HU and this many
    #: standard errors of the bin median
    min_excess_hu: float = 6.0
    k_se: float = 4.0
    #: share of the directions (26 around the lesion) in which the ring is brighter than
    #: the parenchyma by a third of its peak excess; a few enhancing nodules or a vessel
    #: passing by cover far less
    min_coverage: float = 0.6


RING_RULE = RingRule()


def _extend_to_enclosing_ring(
    img: np.ndarray,
    reg: np.ndarray,
    usable: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    *,
    parenchyma_hu: float,
    noise_hu: float | None = None,
    rule: RingRule = RING_RULE,
) -> np.ndarray:
    """Extend a hypodense segmentation out to the outer edge of an enhancing ring around it.

    The median HU of the liver outside the segmentation is profiled in ``bin_mm`` shells
    of distance from its edge. When a run of shells brighter than the parenchyma (by
    ``min_excess_hu`` and ``k_se`` standard errors) starts within ``start_mm`` of the edge,
    follows only darker or iso-attenuating shells (viable tissue of the lesion, or the
    partial-volume edge), and is bright in most directions around the lesion, the lesion
    is taken out to where the profile falls back to half the ring's peak excess.
    Otherwise the segmentation is returned unchanged. Medians keep a vessel touching one
    side from making a ring.
    """
    if reg.sum() < 8:
        return reg
    d_out = ndi.distance_transform_edt(~reg, sampling=spacing_zyx)
    far = usable & (d_out > rule.reach_mm)
    if noise_hu is None or not np.isfinite(noise_hu):
        noise_hu = float(np.std(img[far])) if far.sum() > 30 else 15.0
    r_eq = (3.0 * reg.sum() * float(np.prod(spacing_zyx)) / (4.0 * np.pi)) ** (1.0 / 3.0)
    start = max(rule.start_mm, rule.start_share * r_eq)
    edges = np.arange(0.0, rule.reach_mm + 1e-6, rule.bin_mm)
    med = np.full(edges.size - 1, np.nan)
    need = np.full(edges.size - 1, np.inf)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        band = usable & (d_out > lo) & (d_out <= hi)
        n = int(band.sum())
        if n >= 10:
            med[i] = float(np.median(img[band])) - parenchyma_hu
            # 1.25: efficiency of the median against the mean
            need[i] = max(rule.min_excess_hu, rule.k_se * 1.25 * noise_hu / np.sqrt(n))
    bright = med >= need
    if not bright.any():
        return reg
    first = int(np.argmax(bright))
    if edges[first] > start:
        return reg
    last = first
    while last + 1 < bright.size and bright[last + 1]:
        last += 1
    peak_i = first + int(np.nanargmax(med[first:last + 1]))
    peak = float(med[peak_i])
    centres = 0.5 * (edges[:-1] + edges[1:])
    # outer half-maximum, linear between bin centres
    edge_mm = float(centres[last])
    for j in range(peak_i, med.size - 1):
        if np.isnan(med[j + 1]):
            break
        if med[j + 1] < 0.5 * peak:
            f = (med[j] - 0.5 * peak) / max(med[j] - med[j + 1], 1e-6)
            edge_mm = float(centres[j] + f * (centres[j + 1] - centres[j]))
            break
    # the ring must close around the lesion
    ring = usable & (d_out > edges[first]) & (d_out <= edges[last + 1])
    zz, yy, xx = np.nonzero(ring)
    if zz.size < 26:
        return reg
    pts = np.stack([zz, yy, xx], axis=1) * np.asarray(spacing_zyx)
    centre = np.argwhere(reg).mean(axis=0) * np.asarray(spacing_zyx)
    v = pts - centre
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)
    direction = np.argmax(v @ _RING_DIRECTIONS.T, axis=1)
    vals = img[ring] - parenchyma_hu
    sums = np.bincount(direction, weights=vals, minlength=_RING_DIRECTIONS.shape[0])
    counts = np.bincount(direction, minlength=_RING_DIRECTIONS.shape[0])
    seen = counts >= 3
    if seen.sum() < 8:
        return reg
    coverage = float(np.mean(sums[seen] / counts[seen] >= peak / 3.0))
    if coverage < rule.min_coverage:
        return reg
    return reg | (usable & (d_out <= edge_mm))


def find_lesions(
    volume: Volume,
    liver: Any,
    *,
    phase: Any = None,
    calcifications: Any = None,
    vessels: Any = None,
    min_diameter_mm: float = 5.0,
    min_contrast_hu: float = 10.0,
    k_seed: float = 5.0,
    k_seed_coarse: float = 5.0,
    k_grow: float = 2.0,
    detection_spacing_mm: float = 1.5,
    smoothing_mm: float = 1.2,
    refine_sigma_mm: float = 0.8,
    rim_mm: float = 3.0,
    split_neck_mm: float = 2.0,
    min_lesion_hu: float = -30.0,
    max_fat_fraction: float = 0.1,
    min_voxels: int = 4,
    include_calcified_cavities: bool = True,
    detect_masses: bool = True,
    mass_smoothing_mm: float = 4.0,
    k_mass: float = 5.0,
    mass_min_contrast_hu: float = 8.0,
    mass_min_diameter_mm: float = 20.0,
    large_mass_smoothing_mm: float = 8.0,
    large_mass_min_diameter_mm: float = 30.0,
    k_large_mass: float = 4.0,
    mass_neck_mm: float = 5.0,
    lesion_neck_mm: float = 5.0,
    focal_shell_mm: tuple[float, float] = (3.0, 10.0),
    robustness_gates: bool = True,
) -> LesionDetection:
    """Find and segment focal hypodense lesions inside the liver.

    Parameters
    ----------
    volume: Volume
        CT in HU.
    liver: ndarray of bool or object with ``mask``
        Liver mask on the grid of ``volume`` (a LiverSegmentation is accepted).
    phase: Phase, str or PhaseEstimate, optional
        Contrast phase. The thresholds are relative to this scan's parenchyma in every
        phase; in the arterial, portal-venous and delayed phases a hypodense lesion is
        also taken out to the edge of an enhancing wall around it
        (:func:`_extend_to_enclosing_ring`); without contrast, or with the phase
        unknown, a bright ring is calcification or a vessel and is left out.
    calcifications: int/bool label array or CalcificationDetection, optional
        Calcifications; they are left out of the HU statistics and filled into the
        lesion that contains them.
    vessels: bool array, optional
        Enhanced vessels recognised inside the liver; left out of the statistics.
    min_diameter_mm: float
        Smallest lesion kept (equivalent-sphere diameter of the final segmentation,
        with a 10 % allowance for partial volume).
    min_contrast_hu: float
        Smallest parenchyma-minus-lesion difference ever accepted as a seed, HU.
    k_seed, k_grow: float
        Hysteresis thresholds in units of the smoothed parenchyma's robust SD.
    k_seed_coarse: float
        Seed threshold at the coarse smoothing scale, in that scale's own SD units
        (4 found more inserted low-contrast lesions in the real CT but also 2.3 false
        positives per scan there).
    detection_spacing_mm, smoothing_mm: float
        Grid spacing of the detection pass and its Gaussian smoothing (mm).
    refine_sigma_mm: float
        Gaussian smoothing of the full-resolution refinement (mm).
    rim_mm: float
        Depth of the subcapsular zone where partial volume with fat darkens the liver
        (at least 1.5 in-plane voxels and 2 slice spacings).
    split_neck_mm: float
        Touching lesions are split when each is at least this much (mm of radius)
        thicker than the neck between them.
    min_lesion_hu: float
        Regions whose median HU is lower are fat (fissures, ligaments) or gas and are
        not reported as lesions.
    max_fat_fraction: float
        Hypodense regions with more than this fraction of fat-density voxels (see
        :func:`fat_fraction`) are fat taken in by the liver mask (fissures, hilar or
        subphrenic fat) or its partial-volume edge, not lesions. (Fat-containing
        tumours, e.g. angiomyolipoma, are outside this detector's scope.)
    min_voxels: int
        Fewest voxels of a lesion (guards the size limit on coarse grids).
    include_calcified_cavities: bool
        Add the interiors of calcified shells touching the liver to the search domain
        (see :func:`calcified_cavities`): a rim-calcified cyst that the liver
        segmentation excluded is still found.
    detect_masses: bool
        Also look for large masses that differ from the parenchyma in either direction
        (hyperdense, or heterogeneous and barely hypodense) at the broad scale
        ``mass_smoothing_mm``: a candidate's mean must differ from the parenchyma by
        ``k_mass`` SDs of that scale and ``mass_min_contrast_hu``, be at least
        ``mass_min_diameter_mm`` across (equivalent sphere), compact (not tubular) and
        not mostly enhanced vessel.
    large_mass_smoothing_mm, large_mass_min_diameter_mm, k_large_mass: float
        A second, broader scale of the same search for the largest masses (8 mm, 30 mm, 4 SD):
        a 60-80 mm mass 19 HU darker than the liver on 3 mm non-contrast CT stays inside the
        parenchyma's spread at 4 mm. Tube-like components at this scale (the mass merged with
        the hilum's vessels) give their compact bodies (:func:`mass_bodies`); masses only this
        scale finds are refined with ``LARGE_MASS_REFINE_SIGMA_MM`` smoothing within
        ``LARGE_MASS_MARGIN_MM``. ``large_mass_smoothing_mm`` at or below
        ``mass_smoothing_mm`` turns it off.
    mass_neck_mm: float
        Radius (mm) of the ball that opens a refined mass (:func:`mass_bodies`): the
        enhanced vessels a hyperdense mass touches pass its half-contrast level, and tubes
        and necks narrower than twice this are cut off. 5 mm cuts the segmental and
        sectoral portal and hepatic-vein branches and the hepatic arteries (up to 10 mm
        across) while a mass of ``mass_min_diameter_mm`` (20 mm) keeps a body of half its
        radius. 0 turns the opening off.
    lesion_neck_mm: float
        The same opening for a hypodense lesion: on 3 mm CT without contrast a fissure (fat
        partial volume) or an unenhanced vein runs at about half a cyst's contrast, and the
        half-contrast level follows it out of the lesion (a 50 mm cyst in the real abdomen was
        measured at 76 mm). Of what the opening removes, whatever lies within this distance
        (mm) of the lesion's body, and the calcium joined to it, is kept (lobules, an eggshell
        wall); a sheet or tube running further is cut there. A region that opens into two
        bodies of mass size is split, as a mass is. 0 turns it off.
    focal_shell_mm: (float, float)
        Inner and outer distance (mm) of the shell of liver around a hypodense candidate
        that stands for "the adjacent parenchyma" in the focality test (see
        :func:`_robustness_rejection`).
    robustness_gates: bool
        Apply the own-seed rule for split parts and the partial-volume and focality gates
        of :func:`_robustness_rejection`; False gives the detector without them (for
        measuring their effect, ``bench/lesion_margins.py``).

    Returns
    -------
    LesionDetection
    """
    # thresholds adapt to the scan itself; the phase only says whether a wall can enhance
    walls_enhance = phase_of(phase) in (Phase.ARTERIAL, Phase.PORTAL_VENOUS, Phase.DELAYED)
    # on coarse grids the partial-volume rim is at least one and a half in-plane voxels deep,
    # and two slices deep through-plane: where the dome or the inferior tip runs almost
    # parallel to the slices, a whole slice shares its voxels with lung or fat above/below
    rim_mm = max(rim_mm, 1.5 * max(volume.spacing_zyx[1:]), 2.0 * volume.spacing_zyx[0])
    liv = liver_mask_of(liver)
    if liv.shape != volume.shape:
        raise ValueError(f"liver mask shape {liv.shape} differs from the volume {volume.shape}")
    calc_full = label_array_of(calcifications)
    calc_full = None if calc_full is None else calc_full > 0
    ves_full = label_array_of(vessels)
    ves_full = None if ves_full is None else ves_full > 0
    if calc_full is not None and include_calcified_cavities:
        # rim-calcified cysts the liver segmentation left outside its mask
        liv = liv | calcified_cavities(volume.array, calc_full, liv, volume.spacing_zyx)
    exclude = None
    for m in (calc_full, ves_full):
        if m is not None:
            exclude = m if exclude is None else (exclude | m)

    empty = np.zeros(volume.shape, np.int32)
    grid = prepare_liver_grid(
        volume, liv, exclude=exclude, detection_spacing_mm=detection_spacing_mm,
        smoothing_mm=smoothing_mm, rim_mm=rim_mm,
    )
    if grid is None:
        return LesionDetection(labels=empty, parenchyma_hu=float("nan"), noise_hu=float("nan"))

    cand, seeds, t_seed, t_grow = _candidates(
        grid, k_seed=k_seed, k_grow=k_grow, min_contrast_hu=min_contrast_hu, rim_mm=rim_mm,
        k_seed_coarse=k_seed_coarse,
    )
    rejected: dict[str, int] = {"small": 0, "tubular": 0, "low_contrast": 0}
    sp = grid.spacing_zyx
    lab = cc3d.connected_components(cand, connectivity=6)
    tubular_small = np.zeros_like(cand)
    min_vol_mm3 = np.pi / 6.0 * (0.9 * min_diameter_mm) ** 3
    # (detection-grid box, component, seed part, sign: -1 darker / +1 brighter than liver)
    pieces: list[tuple[tuple[slice, ...], np.ndarray, np.ndarray, int, bool]] = []
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        comp = lab[box] == i
        # the volume test needs no distance map: most components are noise specks
        if ndi.binary_fill_holes(comp).sum() * float(np.prod(sp)) < 0.5 * min_vol_mm3:
            rejected["small"] += 1
            continue
        shape = component_shape(comp, sp)
        if is_tubular(shape):
            # a lesion may be joined to a hypodense tube through faint voxels: keep the
            # compact seed cores of the component, hand the rest to the duct detector
            sub = cc3d.connected_components(comp & seeds[box], connectivity=6)
            kept_any = False
            for j, sb in enumerate(ndi.find_objects(sub), start=1):
                if sb is None:
                    continue
                core = np.zeros_like(comp)
                core[sb] = sub[sb] == j
                cshape = component_shape(core[sb], sp)
                if cshape["volume_mm3"] >= 0.5 * min_vol_mm3 and not is_tubular(cshape):
                    pieces.append((box, core, core & seeds[box], -1, False))
                    kept_any = True
            rejected["tubular"] += 1
            if not kept_any:
                tubular_small[box] |= comp
            continue
        parts = comp.astype(np.int32)
        if shape["sphere_ratio"] > 1.6:
            parts = _split_touching(comp, sp, h_mm=split_neck_mm)
        for j in range(1, int(parts.max()) + 1):
            part_seed = (parts == j) & seeds[box]
            if robustness_gates and not part_seed.any():
                # hysteresis holds per lesion: a part split off at a neck without a seed of its
                # own is the faint fringe of its neighbour (or of a darker band), not a lesion
                rejected["no_seed"] = rejected.get("no_seed", 0) + 1
                continue
            pieces.append((box, parts == j, part_seed, -1, False))
    if detect_masses:
        # large masses that are not (or not clearly) hypodense: two-sided test at a broad scale,
        # and at a broader one for the largest (a 60-80 mm mass 19 HU darker than the liver
        # on 3 mm CT without contrast stays inside the parenchyma's 4 mm-scale spread)
        found: list[tuple[tuple[slice, ...], np.ndarray]] = []
        scales = [(mass_smoothing_mm, mass_min_diameter_mm, k_mass, False)]
        if large_mass_smoothing_mm > mass_smoothing_mm:
            scales.append((large_mass_smoothing_mm, large_mass_min_diameter_mm, k_large_mass, True))
        for sigma, min_d, k, split in scales:
            for box, comp, sign in _mass_candidates(
                grid, cand, sigma_mm=sigma, k_sd=k, min_contrast_hu=mass_min_contrast_hu, min_diameter_mm=min_d,
                split_bodies=split,
            ):
                if any(_overlap(comp, box, c, b) for b, c in found):
                    continue  # already a candidate at the finer scale
                found.append((box, comp))
                # 2 marks the broad-scale search: low contrast, refined more smoothly and closer in
                pieces.append((box, comp, comp, sign, 2 if split else 1))

    # full-resolution refinement
    full_img = volume.array[grid.crop].astype(np.float32)
    full_liv = liv[grid.crop]
    full_calc = None if calc_full is None else calc_full[grid.crop]
    fsp = volume.spacing_zyx
    out = np.zeros(full_liv.shape, np.int32)
    regions: list[np.ndarray] = []
    boxes: list[tuple[slice, ...]] = []
    signs_acc: list[int] = []
    mass_flags: list[int] = []  # 0 hypodense path, 1 mass search, 2 its broadest scale
    seeds_acc: list[np.ndarray] = []
    for box, comp, seed_small, sign, is_mass in pieces:
        fbox_lo = [b.start * f for b, f in zip(box, grid.factors)]
        fbox_hi = [min(b.stop * f, n) for b, f, n in zip(box, grid.factors, full_liv.shape)]
        size_mm = max((hi - lo) * s for lo, hi, s in zip(fbox_lo, fbox_hi, fsp))
        margin_mm = max(3.0, 0.25 * size_mm)
        sigma_mm = refine_sigma_mm
        if is_mass == 2:
            # a mass only the broadest scale found has a contrast of one or two voxel-noise SDs:
            # at the usual smoothing its half-contrast level runs out into parenchyma noise
            # (a 60 mm mass of -19 HU at 12 HU noise was read at 187 mL for 113)
            margin_mm = min(margin_mm, LARGE_MASS_MARGIN_MM)
            sigma_mm = max(sigma_mm, LARGE_MASS_REFINE_SIGMA_MM)
        # room for the refinement's margin, its smoothing and an enhancing wall outside it
        pad = [int(np.ceil((margin_mm + 3 * refine_sigma_mm + RING_RULE.reach_mm) / s)) + 1 for s in fsp]
        fb = tuple(
            slice(max(lo - p, 0), min(hi + p, n)) for lo, hi, p, n in zip(fbox_lo, fbox_hi, pad, full_liv.shape)
        )
        # detection component on the full grid, inside fb
        core_full = np.zeros(tuple(b.stop - b.start for b in fb), bool)
        up = comp
        for ax, f in enumerate(grid.factors):
            if f > 1:
                up = np.repeat(up, f, axis=ax)
        off = [lo - b.start for lo, b in zip(fbox_lo, fb)]
        sl = tuple(slice(o, min(o + u, c)) for o, u, c in zip(off, up.shape, core_full.shape))
        core_full[sl] = up[tuple(slice(0, s.stop - s.start) for s in sl)]
        core_full &= full_liv[fb]
        seed_full = np.zeros_like(core_full)
        up = seed_small
        for ax, f in enumerate(grid.factors):
            if f > 1:
                up = np.repeat(up, f, axis=ax)
        seed_full[sl] = up[tuple(slice(0, s.stop - s.start) for s in sl)]
        seed_full &= core_full
        if not core_full.any():
            continue
        reg = _refine(
            full_img[fb], full_liv[fb], grid.excluded_full[fb],
            None if full_calc is None else full_calc[fb], core_full, seed_full, fsp,
            parenchyma_hu=grid.parenchyma_hu, sigma_mm=sigma_mm, margin_mm=margin_mm, rim_mm=rim_mm,
            sign=sign, noise_hu=grid.noise_hu,
        )
        # a mass is compact: vessels and necks it leaked along at the half-contrast level go;
        # a hypodense lesion likewise sheds the darker vein or fissure it touches
        neck = mass_neck_mm if is_mass else lesion_neck_mm
        bodies = (
            mass_bodies(reg, fsp, neck_mm=neck, min_body_mm=0.5 * mass_min_diameter_mm)
            if neck > 0 else [reg]
        )
        if not is_mass and bodies[0] is not reg:
            # a hypodense lesion's own lobules and the calcium joined to it stay: only what
            # runs on for more than one ball radius beyond its body goes
            calc_fb = None if full_calc is None else full_calc[fb]
            bodies = [_within_reach(reg, b, fsp, lesion_neck_mm, keep=calc_fb) for b in bodies]
        for body in bodies:
            signs_acc.append(sign)
            mass_flags.append(is_mass)
            seeds_acc.append(seed_full & body if len(bodies) > 1 else seed_full)
            regions.append(body)
            boxes.append(fb)

    # acceptance on the refined masks, then paint without overlap
    vox = volume.voxel_volume_mm3
    refined = _on_grid(grid, regions, boxes)  # every refined candidate: not background
    accepted = []
    accepted_mass: list[int] = []  # whether (1, 2) each accepted region came from the mass search
    accepted_dark: list[tuple[np.ndarray, tuple[slice, ...]]] = []  # ... and its part before any wall
    inner_parts: list[tuple[np.ndarray, tuple[slice, ...]]] = []
    taken = np.zeros(full_liv.shape, bool)
    for reg, fb, sign, is_mass, seed_full in zip(regions, boxes, signs_acc, mass_flags, seeds_acc):
        n = int(reg.sum())
        merge_idx: list[int] = []
        if is_mass and (taken[fb] & reg).sum() > 0.2 * max(n, 1):
            # found (perhaps in pieces) by the hypodense path: the mass replaces its pieces
            # when it joins several of them or is much larger than they are
            merge_idx = [j for j, (r2, b2) in enumerate(accepted) if _overlap(reg, fb, r2, b2)]
            covered = sum(int(accepted[j][0].sum()) for j in merge_idx)
            if len(merge_idx) < 2 and n < 1.5 * covered:
                continue
        if n * vox < min_vol_mm3:
            rejected["small"] += 1
            continue
        vals = full_img[fb][reg & ~grid.excluded_full[fb]]
        if vals.size == 0:
            rejected["low_contrast"] += 1
            continue
        if sign < 0 and (
            float(np.median(vals)) < min_lesion_hu
            or fat_fraction(vals, noise_hu=grid.noise_hu) > max_fat_fraction
        ):
            rejected["fat"] = rejected.get("fat", 0) + 1  # fissure fat / gas, not a hypodense lesion
            continue
        if n < min_voxels:
            rejected["small"] += 1
            continue
        contrast = sign * (float(np.median(vals)) - grid.parenchyma_hu)
        if is_mass:
            # a mass: its mean (incl. mixed interior) must differ, and it must not be a vessel
            contrast = abs(float(np.mean(vals)) - grid.parenchyma_hu)
            if ves_full is not None and (ves_full[grid.crop][fb] & ndi.binary_dilation(reg, iterations=1)).sum() > 0.2 * n:
                rejected["vessel"] = rejected.get("vessel", 0) + 1
                continue
        # contrast must stand out of the noise of the lesion's own mean
        if contrast < max(0.5 * min_contrast_hu, 4.0 * grid.noise_hu / np.sqrt(vals.size)):
            rejected["low_contrast"] += 1
            continue
        shape = component_shape(reg, fsp)
        if is_tubular(shape):
            rejected["tubular"] += 1
            continue
        if robustness_gates and sign < 0 and not is_mass:
            seed = seed_full & ~grid.excluded_full[fb]
            if not seed.any():  # a seed hidden under calcium or vessels: the region stands for it
                seed = reg & ~grid.excluded_full[fb]
            why = _robustness_rejection(
                grid, refined, full_img[fb], full_liv[fb], reg, seed, fb, fsp, rim_mm=rim_mm, k_seed=k_seed,
                k_seed_coarse=k_seed_coarse, min_contrast_hu=min_contrast_hu, shell_mm=focal_shell_mm,
            )
            if why:
                rejected[why] = rejected.get(why, 0) + 1
                continue
        dark_reg = reg
        if sign < 0 and not is_mass and walls_enhance:
            # tested on its hypodense part; measured across its enhancing wall, if it has one
            usable = full_liv[fb] & ~grid.excluded_full[fb]
            ringed = _extend_to_enclosing_ring(
                full_img[fb], reg, usable, fsp, parenchyma_hu=grid.parenchyma_hu, noise_hu=grid.noise_hu,
            )
            reg = ndi.binary_fill_holes(ringed) & full_liv[fb] if ringed is not reg else reg
        dark = (dark_reg, fb)
        if not is_mass and taken[fb].any():
            # painted without overlap, a region found again would leave its rim as a second,
            # fragmentary lesion (a surface metastasis read as 14.6 and 12.8 mm pieces)
            shared = [(j, _shared_voxels(reg, fb, r2, b2)) for j, (r2, b2) in enumerate(accepted)]
            shared = [(j, k) for j, k in shared if k > 0]
            if sum(k for _, k in shared) >= DUPLICATE_FRACTION * n:
                merge_idx = [j for j, _ in shared]
                dark = _union([dark] + [accepted_dark[j] for j in merge_idx])
        if is_mass and not merge_idx:
            # darker regions the hypodense path found inside this mass (a non-enhancing
            # necrotic or fibrous centre of an enhancing mass, whose holes the refinement
            # fills) are part of it, not lesions of their own; they are kept as its inner
            # low-attenuation regions
            enclosed = [
                j for j, (r2, b2) in enumerate(accepted)
                if not accepted_mass[j] and _inside_fraction(r2, b2, reg, fb) >= ENCLOSED_FRACTION
            ]
            if enclosed:
                merge_idx = enclosed
                # their hypodense part, without an enhancing wall they were taken out to
                inner_parts.extend(accepted_dark[j] for j in enclosed)
        if merge_idx:
            union, ub = _union([(reg, fb)] + [accepted[j] for j in merge_idx])
            accepted = [a for j, a in enumerate(accepted) if j not in merge_idx]
            accepted_mass = [m for j, m in enumerate(accepted_mass) if j not in merge_idx]
            accepted_dark = [d for j, d in enumerate(accepted_dark) if j not in merge_idx]
            reg, fb = union, ub
        accepted.append((reg, fb))
        accepted_mass.append(is_mass)
        accepted_dark.append(dark)
        taken[fb] |= reg
    # paint in acceptance order without overlap, then number by centroid (z, y, x)
    for k, (reg, fb) in enumerate(accepted, start=1):
        view = out[fb]
        view[reg & (view == 0)] = k
    cents = label_centroids(out, len(accepted))
    order = sorted(range(len(accepted)), key=lambda i: cents[i])
    remap = np.zeros(len(accepted) + 1, np.int32)
    for new, old in enumerate(order, start=1):
        remap[old + 1] = new
    out = remap[out]
    labels = empty
    labels[grid.crop] = out
    inner = None
    if inner_parts:
        inner_crop = np.zeros(full_liv.shape, bool)
        for reg, fb in inner_parts:
            inner_crop[fb] |= reg
        inner = np.zeros(volume.shape, bool)
        inner[grid.crop] = inner_crop & (out > 0)
        inner = inner if inner.any() else None

    tubular = None
    if tubular_small.any():
        tubular = np.zeros(volume.shape, bool)
        tubular[grid.crop] = grid.to_full(tubular_small, full_liv.shape) & full_liv
    return LesionDetection(
        labels=labels,
        parenchyma_hu=grid.parenchyma_hu,
        noise_hu=grid.noise_hu,
        seed_threshold_hu=t_seed,
        grow_threshold_hu=t_grow,
        smoothed_noise_hu=grid.smoothed_noise_hu,
        tubular=tubular,
        rejected=rejected,
        grid=grid,
        inner=inner,
    )
