"""Measurements and descriptive vocabulary of segmented hypodense liver lesions.

Per lesion (label n of the lesion label map) :func:`describe_lesions` measures

* RECIST-style size: the longest diameter in the axial slice where it is largest
  (``longest_diameter_mm`` = ``size_mm``) and the lesion's extent perpendicular to it in
  that slice (``short_axis_mm``); volume in mm³;
* attenuation: mean / SD / max HU of the non-calcified voxels and the contrast to the
  parenchyma (``measurements["contrast_hu"]`` = lesion mean minus parenchyma, negative for
  a hypodense lesion);
* margin: how much of the lesion-to-parenchyma contrast is crossed within about 2 mm of
  the boundary (``measurements["edge_sharpness"]``, 1 = a step edge); well- or ill-defined;
* homogeneity: SD in excess of the image noise (``measurements["texture_sd_hu"]``);
* radial pattern: the HU of an inner ring against the core and of a thin band just
  outside the lesion against the parenchyma further out; a ring of different density
  around a core reads as a target / bull's-eye appearance, a core darker than its ring
  as central low density (necrosis), a ring brighter than the parenchyma in a contrast
  phase as rim enhancement (cf. ``seeds/004_bed3c69a800ae988.txt``: the "bull's eye"
  sign of liver metastases, abscesses as non-enhancing low-density spaces;
  ``seeds/001_fc47ebb88f3c1e60.txt``: metastases with central or peripheral calcification,
  healed abscesses with a calcified wall);
* inner low attenuation: a darker region that the detector found inside an enhancing
  mass and joined to it (``LesionDetection.inner``: a non-enhancing necrotic or fibrous
  centre, e.g. the central scar of a fibrolamellar carcinoma) gives the sign
  ``central_necrosis`` when it is darker than the rest of the lesion by the ring
  threshold, whatever share of the core it fills;
* cyst-like: water attenuation (about 0-20 HU), homogeneous and sharply marginated ->
  kind ``"cyst"`` with density ``"cystic"``; otherwise kind ``"lesion"``, density
  ``"hypodense"`` or ``"mixed"``;
* daughter cysts: in a fluid-like lesion (mean under ``locule_max_mean_hu``), round
  pockets darker than its matrix (two or more) with a sharp margin and no enhancing rim or
  nodules make a complex cyst: kind ``"cyst"``, density ``"mixed"``, sign
  ``daughter_cysts`` (and ``septa`` where thin brighter sheets are found), the hallmark
  of a hydatid cyst (``seeds/001_fc47ebb88f3c1e60.txt``: low-density cystic areas of
  varying size inside a hydatid focus are its characteristic CT sign);
* location: lobe, depth below the capsule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..detect._lesion import bbox_slices, fibonacci_directions, phase_of
from ..model import LESION_LABEL_BASE, Finding, Phase, Volume
from ._geometry import LOBE_NAMES, LiverSurface, lobe_of

__all__ = ["describe_lesions", "axial_diameters_mm", "LesionThresholds"]


class LesionThresholds:
    """Decision thresholds of the lesion describer (HU, mm, ratios); documented defaults."""

    #: water-attenuation window of a cyst-like lesion, HU (mean of the non-calcified voxels)
    cyst_hu_range: tuple[float, float] = (-15.0, 22.0)
    #: edge sharpness at or above which a margin is well defined
    well_defined_sharpness: float = 0.75
    #: texture SD (excess over noise) at or below which a lesion is homogeneous, HU
    homogeneous_texture_hu: float = 10.0
    #: smallest ring-core difference read as a ring pattern, HU (and >= 20 % of the contrast)
    ring_min_hu: float = 12.0
    #: a dark lesion's boundary layer at least this much brighter than the liver (and four
    #: standard errors) is an enhancing wall the segmentation was taken out to
    wall_min_excess_hu: float = 3.0
    #: smallest lesion (largest inscribed radius) in which a ring pattern is looked for, mm
    ring_min_radius_mm: float = 3.5
    #: depth below the capsule under which a lesion is subcapsular, mm
    subcapsular_mm: float = 10.0
    #: HU above which a voxel inside a lesion counts as calcium (and at least parenchyma + this)
    calcium_hu: float = 200.0
    calcium_above_parenchyma_hu: float = 100.0
    #: outer part of the lesion (fraction of its equivalent-sphere radius) searched for nodules
    nodule_rim_fraction: float = 0.3
    #: band outside the segmented boundary also searched, mm: the hypodense segmentation
    #: leaves out the enhancing nodules and stops short of them by up to a few mm
    nodule_search_outside_mm: float = 5.0
    #: a nodule's mean HU must lie within this fraction of the blood-pool HU
    nodule_blood_pool_tolerance: float = 0.2
    #: and exceed the parenchyma by at least this, HU
    nodule_above_parenchyma_hu: float = 25.0
    #: smallest nodule, mm³
    nodule_min_volume_mm3: float = 8.0
    #: share of a bright component that must lie in the searched rim (vessels passing by do not)
    nodule_inside_fraction: float = 0.6
    #: share of the lesion's directions covered by bright rim at and above which the
    #: enhancement is a continuous ring rather than discrete nodules
    ring_coverage: float = 0.7
    #: Gaussian smoothing before the nodule / locule search, mm
    smoothing_mm: float = 1.0
    #: a locule (fluid pocket) is darker than the cyst's other content by at least this, HU
    locule_contrast_hu: float = 8.0
    #: smallest locule (daughter cyst), mm³
    locule_min_volume_mm3: float = 30.0
    #: smallest sphericity (volume / volume of the sphere of the locule's longest extent) of a
    #: round daughter cyst
    locule_min_roundness: float = 0.3
    #: mean HU (non-calcified voxels) below which a lesion is fluid-like enough to be searched
    #: for locules (daughter cysts) and septa
    locule_max_mean_hu: float = 30.0
    #: Gaussian smoothing of the locule / septum search, mm
    locule_smoothing_mm: float = 1.5
    #: a locule is also darker than the matrix by at least this many smoothed-noise SDs
    locule_noise_sds: float = 2.5
    #: smallest locule, equivalent-sphere diameter, mm
    locule_min_diameter_mm: float = 5.0
    #: fewest locules that make daughter cysts
    locule_min_count: int = 2
    #: a septum is a thin internal sheet brighter than the matrix by the locule contrast;
    #: its largest half-thickness (after smoothing), mm, and smallest extent, mm
    septum_max_half_thickness_mm: float = 2.0
    septum_min_extent_mm: float = 10.0


def _slice_contour_mm(mask2d: np.ndarray, spacing_yx: np.ndarray) -> np.ndarray:
    """Sub-pixel outline (mm) of a 2-D mask: the 0.5 iso-line of the lightly smoothed mask."""
    from skimage.measure import find_contours

    m = np.pad(mask2d.astype(np.float32), 2)
    m = ndi.gaussian_filter(m, 0.5)
    cs = find_contours(m, 0.5)
    if not cs:
        return np.argwhere(mask2d) * spacing_yx
    return (np.concatenate(cs) - 2.0) * spacing_yx


def axial_diameters_mm(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> tuple[float, float, int]:
    """RECIST-style axial diameters of one object.

    Parameters
    ----------
    mask: (Z, Y, X) bool ndarray
        The object (usually cropped to its box).
    spacing_zyx: tuple of 3 float
        Voxel spacing in mm.

    Returns
    -------
    (long_mm, short_mm, z)
        Longest in-plane diameter over all slices, the object's width perpendicular to
        it in the same slice, and that slice's index in ``mask``. Both are measured on
        the sub-pixel outline of the slice (the 0.5 iso-line of the mask after a
        half-pixel Gaussian), so a digitised disc of diameter *D* measures close to *D*.
    """
    from scipy.spatial import ConvexHull, QhullError

    sp2 = np.asarray(spacing_zyx[1:], dtype=float)
    best = (0.0, 0.0, 0)
    best_pts = None
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        m2 = mask[z]
        if m2.sum() == 1:
            d, pts = float(sp2.max()), None
        else:
            pts = _slice_contour_mm(m2, sp2)
            try:
                hp = pts[ConvexHull(pts).vertices] if len(pts) > 3 else pts
            except (QhullError, ValueError):
                hp = pts
            diff = hp[:, None, :] - hp[None, :, :]
            d2 = (diff**2).sum(-1)
            i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
            d = float(np.sqrt(d2[i, j]))
            pts = (pts, diff[i, j] / max(d, 1e-9))
        if d > best[0]:
            best = (d, 0.0, int(z))
            best_pts = pts
    if best[0] == 0.0:
        return best
    if best_pts is None:
        return (best[0], best[0], best[2])
    pts, u = best_pts
    v = np.array([-u[1], u[0]])
    proj = pts @ v
    short = float(proj.max() - proj.min())
    return (best[0], min(short, best[0]), best[2])


def _band_mean(img: np.ndarray, sel: np.ndarray) -> tuple[float, int]:
    n = int(sel.sum())
    return (float(img[sel].mean()) if n else float("nan"), n)


#: lesion voxels deeper than this many (largest) voxel spacings inside the segmented
#: boundary count as whole in the partial-volume volume: partial volume reaches at most
#: about one voxel into the segmentation
PV_INTERIOR_DEPTH_VOXELS = 1.0

#: directions used to measure how much of a lesion's circumference is enhancing
_DIRECTIONS = fibonacci_directions(64)


def _direction_bins(coords_mm: np.ndarray, centre_mm: np.ndarray) -> np.ndarray:
    v = coords_mm - centre_mm
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)
    return np.argmax(v @ _DIRECTIONS.T, axis=1)


def _smoothing_noise_factor(sigma_vox: np.ndarray) -> float:
    """Factor by which a Gaussian of ``sigma_vox`` (per axis, voxels) lowers white noise SD."""
    s = np.maximum(np.asarray(sigma_vox, dtype=float), 0.3)
    return float(1.0 / np.sqrt(np.prod(2.0 * np.sqrt(np.pi) * s)))


def _peripheral_enhancement(
    img: np.ndarray,
    smooth: np.ndarray,
    lesion: np.ndarray,
    calcium: np.ndarray,
    liver: np.ndarray,
    d_in: np.ndarray,
    d_out: np.ndarray,
    sp: tuple[float, float, float],
    *,
    parenchyma_hu: float,
    smooth_noise_hu: float,
    blood_pool_hu: float | None,
    th: type[LesionThresholds],
) -> dict[str, Any]:
    """Enhancing nodules or a ring in the outer part of a lesion, in one contrast phase.

    Bright components (smoothed HU) are searched in the outer ``nodule_rim_fraction`` of
    the lesion's equivalent-sphere radius and in a thin band just outside the segmented
    boundary (enhancing tissue is brighter than the liver, so the hypodense segmentation
    often cuts it off). A component counts when it is at least ``nodule_min_volume_mm3``,
    lies mostly in that rim (a vessel passing by continues outwards and does not), and its
    peak (smoothed) HU is within ``nodule_blood_pool_tolerance`` of the blood pool and clearly
    above the parenchyma; components are outlined half-way between the parenchyma and the
    lowest accepted nodule HU. Without a blood-pool HU the brightest such component is the reference
    and must itself be at least twice ``nodule_above_parenchyma_hu`` above the parenchyma.
    Coverage is the share of the lesion's directions (64 spread over the sphere, seen from
    its centroid) in which the rim holds enhancing tissue.

    Returns
    -------
    dict
        ``pattern`` ("nodular", "ring" or None), ``nodules`` (count), ``nodule_hu`` (median peak),
        ``coverage``, ``reference_hu`` and ``reference`` ("blood_pool" / "brightest_nodule").
    """
    vox = float(np.prod(sp))
    out: dict[str, Any] = {"pattern": None, "nodules": 0}
    r_eq = float((3.0 * lesion.sum() * vox / (4.0 * np.pi)) ** (1.0 / 3.0))
    rim = ((lesion & (d_in <= th.nodule_rim_fraction * r_eq)) | (~lesion & liver & (d_out <= th.nodule_search_outside_mm))) & ~calcium
    area = (lesion | (liver & (d_out <= 3.0 * th.nodule_search_outside_mm))) & ~calcium
    floor = parenchyma_hu + max(th.nodule_above_parenchyma_hu, 3.0 * smooth_noise_hu)
    use_pool = blood_pool_hu is not None and np.isfinite(blood_pool_hu)
    if use_pool and blood_pool_hu * (1.0 + th.nodule_blood_pool_tolerance) <= floor:  # type: ignore[operator]
        return out  # the blood pool is not clearly brighter than the liver (no contrast)
    # components are outlined half-way between the parenchyma and the lowest accepted
    # nodule HU (smoothing lowers the edges of small nodules) and judged by their peak
    thr = max(floor, 0.5 * (parenchyma_hu + blood_pool_hu * (1.0 - th.nodule_blood_pool_tolerance))) if use_pool else floor  # type: ignore[operator]
    bright = area & (smooth >= thr)
    if not bright.any():
        return out
    lab, n = ndi.label(bright, structure=np.ones((3, 3, 3), bool))
    idx = np.arange(1, n + 1)
    size = np.asarray(ndi.sum(np.ones_like(lab), lab, idx))
    in_rim = np.asarray(ndi.sum(rim, lab, idx))
    peak_hu = np.asarray(ndi.maximum(smooth, lab, idx))
    keep = (size * vox >= th.nodule_min_volume_mm3) & (in_rim >= th.nodule_inside_fraction * size)
    if not keep.any():
        return out
    if use_pool:
        ref, how = float(blood_pool_hu), "blood_pool"  # type: ignore[arg-type]
    else:
        ref, how = float(peak_hu[keep].max()), "brightest_nodule"
        if ref < parenchyma_hu + 2.0 * th.nodule_above_parenchyma_hu:
            return out
    keep &= np.abs(peak_hu - ref) <= th.nodule_blood_pool_tolerance * abs(ref)
    if not keep.any():
        return out
    nod = np.isin(lab, idx[keep])
    spv = np.asarray(sp, dtype=float)
    centre = np.argwhere(lesion).mean(axis=0) * spv
    band = lesion & (d_in <= th.nodule_rim_fraction * r_eq)
    all_bins = set(np.unique(_direction_bins(np.argwhere(band) * spv, centre)).tolist())
    hit_bins = set(np.unique(_direction_bins(np.argwhere(nod) * spv, centre)).tolist())
    coverage = len(hit_bins & all_bins) / max(len(all_bins), 1)
    k = int(keep.sum())
    out.update(
        nodules=k,
        nodule_hu=float(np.median(peak_hu[keep])),
        coverage=float(coverage),
        reference_hu=ref,
        reference=how,
    )
    if coverage >= th.ring_coverage:
        out["pattern"] = "ring"
    elif k >= 2:
        out["pattern"] = "nodular"
    return out


def _locules_and_septa(
    img: np.ndarray,
    soft: np.ndarray,
    d_in: np.ndarray,
    sp: tuple[float, float, float],
    *,
    noise_hu: float,
    th: type[LesionThresholds],
) -> dict[str, Any]:
    """Daughter cysts (round darker pockets) and septa (thin brighter sheets) in a fluid lesion.

    Everything outside the lesion's non-calcified voxels is set to the matrix HU (the median
    of those voxels) before a Gaussian of ``locule_smoothing_mm``, so neither the parenchyma
    nor a calcified wall bleeds into the search. A locule is a component of the interior
    (more than one smoothing width from the boundary) darker than the matrix by
    ``max(locule_contrast_hu, k`` smoothed-noise SD), ``k`` being ``locule_noise_sds`` or, when
    larger, the expected extreme ``sqrt(2 ln n)`` of the ``n`` independent smoothed values of the
    interior (so that a large lesion's noise does not make locules), with an equivalent
    diameter of at least ``locule_min_diameter_mm``, a volume of at least
    ``locule_min_volume_mm3`` and roundness (volume over the sphere of its longest extent)
    of at least ``locule_min_roundness``. A septum is a component brighter than the matrix by
    the same margin, at most ``septum_max_half_thickness_mm`` thick (half-thickness: its
    largest inner distance) and at least ``septum_min_extent_mm`` long.

    Returns
    -------
    dict
        ``locules`` (count), ``locule_contrast_hu`` (median depth below the matrix, smoothed),
        ``septa`` (count), ``matrix_hu``.
    """
    spv = np.asarray(sp, dtype=float)
    vox = float(np.prod(spv))
    matrix = float(np.median(img[soft]))
    filled = np.where(soft, img, matrix).astype(np.float32)
    sigma_vox = th.locule_smoothing_mm / spv
    smooth = ndi.gaussian_filter(filled, sigma_vox)
    s_noise = noise_hu * _smoothing_noise_factor(sigma_vox)
    interior = soft & (d_in > th.locule_smoothing_mm)
    out: dict[str, Any] = {"locules": 0, "septa": 0, "matrix_hu": matrix}
    if interior.sum() < 10:
        return out
    # the darkest (brightest) pocket of pure noise deepens with the number of independent
    # smoothed values searched: in a 100 mL lesion on 3 mm voxels at 12 HU noise, pockets of
    # 2.5 SD were read as daughter cysts; the margin is at least their expected extreme
    cell_vox = float(np.prod(np.maximum(2.0 * np.sqrt(np.pi) * np.asarray(sigma_vox, dtype=float), 1.0)))
    n_indep = max(float(interior.sum()) / cell_vox, 2.0)
    k_sd = max(th.locule_noise_sds, float(np.sqrt(2.0 * np.log(n_indep))))
    margin_hu = max(th.locule_contrast_hu, k_sd * s_noise)
    full = np.ones((3, 3, 3), bool)
    lab, n = ndi.label(interior & (smooth <= matrix - margin_hu), structure=full)
    depths = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        comp = lab[sl] == i
        v = float(comp.sum()) * vox
        d_eq = (6.0 * v / np.pi) ** (1.0 / 3.0)
        if v < th.locule_min_volume_mm3 or d_eq < th.locule_min_diameter_mm:
            continue
        pts = np.argwhere(comp) * spv
        ext = float(np.sqrt(((pts.max(0) - pts.min(0) + spv) ** 2).max()))
        if v / (np.pi / 6.0 * ext**3) < th.locule_min_roundness:
            continue
        depths.append(matrix - float(smooth[sl][comp].min()))
    out["locules"] = len(depths)
    if depths:
        out["locule_contrast_hu"] = float(np.median(depths))
    lab, n = ndi.label(interior & (smooth >= matrix + margin_hu), structure=full)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        comp = np.pad(lab[sl] == i, 1)
        half = float(ndi.distance_transform_edt(comp, sampling=spv).max())
        pts = np.argwhere(comp) * spv
        ext = float(np.linalg.norm(pts.max(0) - pts.min(0)))
        if half <= th.septum_max_half_thickness_mm and ext >= th.septum_min_extent_mm:
            out["septa"] += 1
    return out


def axis_correlations(img: np.ndarray, sel: np.ndarray, *, max_lag: int = 2, min_pairs: int = 50) -> np.ndarray:
    """Noise correlation of voxel pairs ``1..max_lag`` voxels apart along each axis, both in ``sel``.

    Returns
    -------
    (ndim, max_lag) ndarray
        ``rho[axis, lag - 1]``; 0 from the first lag of an axis with fewer than
        ``min_pairs`` pairs (or no spread) onwards.
    """
    rho = np.zeros((img.ndim, max_lag))
    for axis in range(img.ndim):
        for lag in range(1, max_lag + 1):
            if img.shape[axis] <= lag:
                break
            a = [slice(None)] * img.ndim
            b = [slice(None)] * img.ndim
            a[axis], b[axis] = slice(None, -lag), slice(lag, None)
            both = sel[tuple(a)] & sel[tuple(b)]
            if np.count_nonzero(both) < min_pairs:
                break
            x = img[tuple(a)][both].astype(np.float64)
            y = img[tuple(b)][both].astype(np.float64)
            sx, sy = x.std(), y.std()
            if sx <= 0 or sy <= 0:
                break
            rho[axis, lag - 1] = float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))
    return rho


def noise_correlation_factor(img: np.ndarray, sel: np.ndarray, *, max_lag: int = 2, min_pairs: int = 50) -> float:
    """How much more a sum over neighbouring voxels varies than white noise of the same SD would.

    The correlation of the HU of voxel pairs 1 and 2 voxels apart along each axis, both in
    ``sel`` (e.g. a band of plain parenchyma; :func:`axis_correlations`), gives per axis
    ``1 + 2 (rho_1 + rho_2)``; their product approximates ``Var(sum of n voxels) / (n SD²)``
    for a compact region. White noise gives about 1; reconstruction kernels that smooth
    in-plane give more.

    Returns
    -------
    float
        The factor, clipped to [1, 10]; 1 when there are too few pairs to measure it.
    """
    return correlation_factor(axis_correlations(img, sel, max_lag=max_lag, min_pairs=min_pairs))


def correlation_factor(rho: np.ndarray) -> float:
    """The factor of :func:`noise_correlation_factor` from correlations already measured (:func:`axis_correlations`)."""
    factor = float(np.prod([max(1.0 + 2.0 * float(r.sum()), 1.0) for r in rho]))
    return float(np.clip(factor, 1.0, 10.0))


@dataclass(frozen=True)
class PartialVolume:
    """A partial-volume corrected volume and its noise SD (both mm³; SD None where no noise model applies)."""

    volume_mm3: float
    sd_mm3: float | None


def partial_volume(
    img: np.ndarray,
    lesion: np.ndarray,
    usable: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    *,
    parenchyma_hu: float,
    lesion_hu: float,
    noise_hu: float,
    parenchyma_n: int | None = None,
    lesion_n: int | None = None,
    noise_factor: float = 1.0,
    dense: np.ndarray | None = None,
    interior: np.ndarray | None = None,
    capsule: np.ndarray | None = None,
    shell_mm: float = 2.0,
    min_contrast_hu: float = 5.0,
) -> PartialVolume:
    """Partial-volume corrected lesion volume (the integral of the fractional occupancy) and its SD.

    Each voxel of the lesion and of a shell of ``shell_mm`` around it (at least one voxel
    per axis) contributes its occupancy ``(parenchyma_hu - HU) / (parenchyma_hu - lesion_hu)``,
    except ``interior`` and ``dense`` voxels, which count as whole.
    The occupancy is not clipped at 0 and 1 (that would turn noise into a bias of about
    0.4 noise / contrast per voxel); it is clipped to [-1, 2] against outliers, and shell
    voxels clearly brighter than the parenchyma (vessels, calcium; more than 3 noise SD
    above it) or outside ``usable`` are left out. ``dense`` voxels (calcium) inside the
    lesion count as fully occupied. Unbiased for any lesion size and grid when the two
    reference HU are right, where the thresholded voxel count loses about half of the
    boundary voxels' volume on coarse grids.

    The SD propagates the voxel noise through the estimate: the ``n`` weighed voxels add
    ``n (noise / contrast)²`` voxels², and the two reference HU, means of ``parenchyma_n``
    and ``lesion_n`` voxels, scale the weighed sum (``S``) by their own noise:
    ``dV/dL = S / contrast`` and ``dV/dP = (n - S) / contrast`` voxels per HU. This is the
    floor any follow-up comparison of the volume sits on (it is not a bound on bias, e.g.
    from a segmentation that leaves part of the lesion out).

    Parameters
    ----------
    img: ndarray
        HU in the lesion's box.
    lesion: bool ndarray
        The segmented lesion in that box.
    usable: bool ndarray
        Voxels that may be counted in the shell (liver, not another lesion).
    spacing_zyx: tuple of float
        Voxel spacing, mm.
    parenchyma_hu, lesion_hu: float
        HU of the surrounding liver and of the lesion's own tissue.
    noise_hu: float
        Voxel noise SD, HU.
    parenchyma_n, lesion_n: int, optional
        Number of voxels each reference HU was averaged over (None: taken as exact).
    noise_factor: float
        Variance of a sum of ``n`` neighbouring voxels' noise divided by ``n noise²``
        (1 for white noise; more where the reconstruction correlates neighbours).
    dense: bool ndarray, optional
        Calcium (counted as lesion inside it, left out of the shell).
    interior: bool ndarray, optional
        Lesion voxels deep enough that partial volume cannot reach them; they count as
        fully occupied, so only the boundary layers depend on the two reference HU (their
        noise and the lesion's own inner structure, e.g. a necrotic centre, no longer
        scale the whole volume). ``lesion_hu`` should then be the HU just inside the
        boundary.
    capsule: bool ndarray, optional
        The liver's own outermost voxel layer. Its voxels hold fat as well, which is darker
        than any lesion, so their occupancy is clipped to [0, 1] (a subcapsular lesion's
        edge would otherwise count up to twice).
    shell_mm: float
        Thickness of the shell searched outside the segmented boundary, mm.
    min_contrast_hu: float
        Below this lesion-to-parenchyma contrast the occupancy is not defined; the voxel
        count is returned (SD None: no noise model applies).

    Returns
    -------
    PartialVolume
    """
    vox = float(np.prod(spacing_zyx))
    contrast = float(parenchyma_hu) - float(lesion_hu)
    if not np.isfinite(contrast) or abs(contrast) < min_contrast_hu:
        return PartialVolume(float(lesion.sum()) * vox, None)
    d_out = ndi.distance_transform_edt(~lesion, sampling=spacing_zyx)
    reach = max(float(shell_mm), float(max(spacing_zyx)) + 1e-3)
    shell = (d_out > 0) & (d_out <= reach) & usable
    noise = noise_hu if np.isfinite(noise_hu) and noise_hu > 0 else 0.0
    if contrast > 0:
        shell &= img <= parenchyma_hu + 3.0 * noise
    else:
        shell &= img >= parenchyma_hu - 3.0 * noise
    if dense is not None:
        shell &= ~dense
    occ = np.clip((parenchyma_hu - img) / contrast, -1.0, 2.0)
    if capsule is not None:
        occ = np.where(capsule, np.clip(occ, 0.0, 1.0), occ)
    full = np.zeros_like(lesion) if dense is None else dense & lesion
    if interior is not None:
        full = full | (interior & lesion)
    edge = lesion & ~full
    weighed = float(occ[edge].sum() + occ[shell].sum())
    n_w = int(np.count_nonzero(edge) + np.count_nonzero(shell))
    rel = noise * np.sqrt(max(float(noise_factor), 0.0)) / abs(contrast)  # occupancy noise per voxel
    var = n_w * rel**2
    if lesion_n:
        var += (weighed * rel) ** 2 / lesion_n
    if parenchyma_n:
        var += ((n_w - weighed) * rel) ** 2 / parenchyma_n
    volume_mm3 = float((np.count_nonzero(full) + weighed) * vox)
    if volume_mm3 <= 0.0:
        # the boundary does not follow the two-tissue model (e.g. a wall brighter than
        # the liver around a dark centre): the voxel count is all that can be said
        return PartialVolume(float(lesion.sum()) * vox, None)
    return PartialVolume(volume_mm3, float(np.sqrt(var) * vox))


def _describe_one(
    n: int,
    volume: Volume,
    lesion: np.ndarray,
    box: tuple[slice, ...],
    *,
    liver: np.ndarray,
    lobes: np.ndarray | None,
    surface: LiverSurface,
    parenchyma_hu: float,
    noise_hu: float,
    phase: Phase,
    th: type[LesionThresholds],
    blood_pool_hu: float | None = None,
    others: np.ndarray | None = None,
    inner: np.ndarray | None = None,
) -> Finding:
    sp = volume.spacing_zyx
    img = volume.array[box].astype(np.float32)
    liv = liver[box]
    calcium = img > max(th.calcium_hu, parenchyma_hu + th.calcium_above_parenchyma_hu)
    calcium_n = calcium.copy()
    calcium = ndi.binary_dilation(calcium, ndi.generate_binary_structure(3, 3)) if calcium.any() else calcium
    # soft tissue: calcium and its partial-volume neighbours left out
    soft = lesion & ~calcium
    if not soft.any():
        soft = lesion
    vals = img[soft]
    n_vox = int(lesion.sum())
    vol_mm3 = n_vox * volume.voxel_volume_mm3
    hu_mean = float(vals.mean())
    hu_sd = float(vals.std())
    contrast = hu_mean - parenchyma_hu
    noise = noise_hu if np.isfinite(noise_hu) and noise_hu > 0 else 1.0

    long_mm, short_mm, _ = axial_diameters_mm(lesion, sp)

    # signed distance to the boundary (mm): negative inside
    d_in = ndi.distance_transform_edt(np.pad(lesion, 1), sampling=sp)[1:-1, 1:-1, 1:-1]
    d_out = ndi.distance_transform_edt(~lesion, sampling=sp)
    r_max = float(d_in.max())
    usable = liv & ~calcium

    # margin: contrast crossed between the 2nd-3rd voxel layers inside and outside the
    # boundary (the first layers are skipped: their HU is biased by where the boundary was
    # drawn through the noise)
    cross = ndi.generate_binary_structure(3, 1)
    out1 = ndi.binary_dilation(lesion, cross, iterations=1)
    out3 = ndi.binary_dilation(out1, cross, iterations=2)
    in1 = ndi.binary_erosion(lesion, cross, iterations=1)
    in3 = ndi.binary_erosion(in1, cross, iterations=2)
    out_band, _ = _band_mean(img, usable & out3 & ~out1)
    # the same voxels the partial-volume shell may count: enhanced vessels (more than 3
    # noise SD above the parenchyma) are left out of both, else they lift the reference
    # and every parenchymal shell voxel reads as partly lesion
    band_ok = usable & ~lesion & (img <= parenchyma_hu + 3.0 * noise)
    ref_band = band_ok & (d_out > 5.0) & (d_out <= 10.0)
    out_ref, n_ref = _band_mean(img, ref_band)
    if n_ref < 10:
        out_ref = parenchyma_hu
    in_sel = soft & in1 & ~in3
    if in_sel.sum() < 5:
        in_sel = soft
    in_band, _ = _band_mean(img, in_sel)
    deep = soft & (d_in > max(min(4.0, 0.6 * r_max), 0.5 * r_max))
    core_ref, n_core = _band_mean(img, deep)
    if n_core < 5:
        core_ref, n_core = hu_mean, int(vals.size)
    total = out_ref - core_ref
    # partial-volume corrected volume against the local parenchyma and the lesion's own core
    shell_ok = liv & ~lesion if others is None else liv & ~lesion & ~others
    # voxels more than one (largest) voxel spacing inside the boundary are whole; the
    # boundary layers are weighed against the HU of the layer just inside them
    depth = float(max(sp)) * PV_INTERIOR_DEPTH_VOXELS
    pv_interior = soft & (d_in > depth)
    edge_ref, n_edge = _band_mean(img, soft & (d_in > depth) & (d_in <= depth + float(max(sp))))
    if n_edge < 10:
        pv_interior, edge_ref = None, core_ref
    # a dark lesion bounded by an enhancing wall (the detector took it out to the wall's
    # half-maximum): its boundary layer is brighter than the liver while the tissue inside
    # is darker, so no single lesion HU describes the boundary and the occupancy model
    # does not apply; the segmented voxels are its volume (no noise SD)
    walled = False
    if (edge_ref if pv_interior is not None else core_ref) < out_ref:
        wall_sel = soft & (d_in <= depth)
        if wall_sel.sum() >= 10:
            wall_med = float(np.median(img[wall_sel]))
            # the boundary layer holds the wall's outer partial-volume fringe too, so its
            # median sits well below the wall's own excess: significance is what counts
            walled = wall_med - out_ref >= max(th.wall_min_excess_hu, 4.0 * 1.25 * noise / np.sqrt(wall_sel.sum()))
    if walled:
        pv = PartialVolume(vol_mm3, None)
    else:
        pv = partial_volume(
            img, lesion, shell_ok, sp, parenchyma_hu=float(out_ref), lesion_hu=float(edge_ref),
            noise_hu=noise, parenchyma_n=n_ref if n_ref >= 10 else None,
            lesion_n=n_edge if pv_interior is not None else n_core,
            noise_factor=noise_correlation_factor(img, ref_band),
            dense=calcium_n, interior=pv_interior,
            capsule=liv & ~ndi.binary_erosion(liv, border_value=1),
        )
    vol_pv_mm3 = pv.volume_mm3
    sharp = (out_band - in_band) / total if abs(total) > 1e-3 and np.isfinite(out_band + in_band) else 0.0
    margin = "well_defined" if sharp >= th.well_defined_sharpness else "ill_defined"

    # homogeneity of the interior (boundary voxels excluded: partial volume)
    interior = soft & (d_in > min(1.5, 0.5 * r_max))
    if interior.sum() < 5:
        interior = soft
    isd = float(img[interior].std())
    texture = float(np.sqrt(max(isd**2 - noise**2, 0.0)))
    homogeneous = texture <= max(th.homogeneous_texture_hu, 0.15 * abs(contrast))

    signs: list[str] = []
    enhancement = None
    ring_hu = core_hu = float("nan")
    if r_max >= th.ring_min_radius_mm:
        ring_w = max(2.0, 0.3 * r_max)
        ring_sel = soft & (d_in > 1.0) & (d_in <= 1.0 + ring_w)
        core_sel = soft & (d_in >= max(0.55 * r_max, 1.0 + ring_w))
        ring_hu, n_r = _band_mean(img, ring_sel)
        core_hu, n_c = _band_mean(img, core_sel)
        if n_r >= 5 and n_c >= 5:
            diff = ring_hu - core_hu
            need = max(th.ring_min_hu, 0.2 * abs(contrast), 4.0 * noise * np.sqrt(1.0 / n_r + 1.0 / n_c))
            if abs(diff) >= need:
                signs.append("target")
                if diff < 0:
                    signs.append("bulls_eye")
                else:
                    signs.append("central_necrosis")
                    if phase in (Phase.ARTERIAL, Phase.PORTAL_VENOUS, Phase.DELAYED):
                        enhancement = "rim"
    # a darker region the detector found inside this lesion and joined to it (the
    # non-enhancing necrotic or fibrous centre of an enhancing mass,
    # LesionDetection.inner) is its central low attenuation when it stands out of the rest
    inner_hu = float("nan")
    if inner is not None:
        inn = inner & soft
        rest = soft & ~inner
        inner_hu, n_i = _band_mean(img, inn)
        rest_hu, n_o = _band_mean(img, rest)
        if n_i >= 5 and n_o >= 5:
            need = max(th.ring_min_hu, 4.0 * noise * np.sqrt(1.0 / n_i + 1.0 / n_o))
            if rest_hu - inner_hu >= need and "central_necrosis" not in signs:
                signs.append("central_necrosis")
    # an enhancing wall just outside the segmented (hypodense) part
    rim_out, n_ro = _band_mean(img, usable & ~lesion & (d_out > 0.3) & (d_out <= 2.5))
    if n_ro >= 10 and np.isfinite(out_ref):
        excess = rim_out - out_ref
        if excess >= max(th.ring_min_hu, 4.0 * noise / np.sqrt(n_ro)) and phase in (
            Phase.ARTERIAL, Phase.PORTAL_VENOUS, Phase.DELAYED
        ):
            enhancement = "rim"

    contrast_phase = phase in (Phase.ARTERIAL, Phase.PORTAL_VENOUS, Phase.DELAYED)
    sigma_vox = th.smoothing_mm / np.asarray(sp, dtype=float)
    smooth = ndi.gaussian_filter(img, sigma_vox)
    smooth_noise = noise * _smoothing_noise_factor(sigma_vox)
    periph: dict[str, Any] = {"pattern": None}
    if contrast_phase and r_max >= th.ring_min_radius_mm:
        # arterial-phase nodules can exceed the calcium threshold: with a known blood pool,
        # only voxels clearly brighter than the blood pool count as calcium here
        not_nodule = calcium
        if blood_pool_hu is not None and np.isfinite(blood_pool_hu):
            dense = img > max(th.calcium_hu, blood_pool_hu * (1.0 + th.nodule_blood_pool_tolerance) + 3.0 * noise)
            not_nodule = ndi.binary_dilation(dense, ndi.generate_binary_structure(3, 1)) if dense.any() else dense
        periph = _peripheral_enhancement(
            img, smooth, lesion, not_nodule, liv, d_in, d_out, sp,
            parenchyma_hu=parenchyma_hu, smooth_noise_hu=smooth_noise, blood_pool_hu=blood_pool_hu, th=th,
        )
        if periph["pattern"] == "nodular":
            # the vocabulary's name for the pattern; one phase shows the nodules, not the fill-in
            enhancement = "peripheral_nodular_centripetal"
        elif periph["pattern"] == "ring":
            enhancement = "rim"

    loc: dict[str, Any] = {"locules": 0, "septa": 0}
    if hu_mean < th.locule_max_mean_hu and r_max >= 2.0 * th.locule_min_diameter_mm / 2.0 + th.locule_smoothing_mm:
        loc = _locules_and_septa(img, soft, d_in, sp, noise_hu=noise, th=th)
    # a sharply marginated fluid lesion with daughter cysts and no enhancing rim or nodules
    # is a complex cyst (hydatid), not a necrotic tumour or an abscess; septa alone are
    # too weak a sign to change the kind (a calcified ring's halo reads as one)
    complex_cyst = (
        loc["locules"] >= th.locule_min_count
        and margin == "well_defined"
        and enhancement not in ("rim", "peripheral_nodular_centripetal")
    )
    if complex_cyst:
        # the ring / target reading of such a lesion is its peripheral locules, not a rim
        signs = [s_ for s_ in signs if s_ not in ("target", "bulls_eye", "central_necrosis")]
        if loc["locules"] >= th.locule_min_count:
            signs.append("daughter_cysts")
        if loc["septa"] > 0:
            signs.append("septa")

    lo, hi = th.cyst_hu_range
    cyst = lo <= hu_mean <= hi and homogeneous and margin == "well_defined" and not signs
    if complex_cyst:
        kind, density = "cyst", "mixed"
    elif cyst:
        kind, density = "cyst", "cystic"
    else:
        kind = "lesion"
        density = "hypodense" if (homogeneous and not signs) else "mixed"
        if contrast > -abs(th.ring_min_hu) and not signs:
            # not clearly darker: brighter than the liver, or iso with (without) texture
            if contrast >= abs(th.ring_min_hu):
                density = "hyperdense" if homogeneous else "mixed"
            else:
                density = "isodense" if homogeneous else "mixed"
    if cyst and enhancement is None and contrast_phase:
        enhancement = "none"
    if enhancement is None and phase in (Phase.ARTERIAL, Phase.PORTAL_VENOUS) and density == "hyperdense":
        # homogeneous and brighter than the enhanced liver in the arterial / portal phase; not
        # claimed on delayed images, where a filled-in lesion (e.g. a hemangioma after its
        # centripetal fill) is homogeneous whatever its earlier pattern was
        enhancement = "homogeneous"

    # location
    offset = tuple(b.start for b in box)
    coords = np.argwhere(lesion) + np.asarray(offset)
    lobe_val = lobe_of(lobes, coords, sp)
    lobe = LOBE_NAMES.get(lobe_val)
    centroid = coords.mean(axis=0)
    surf_pts = np.argwhere(lesion & ~ndi.binary_erosion(lesion)) + np.asarray(offset)
    depth_mm = float(surface.depth_mm(surf_pts).min()) if len(surf_pts) else float("nan")
    depth = "subcapsular" if depth_mm <= th.subcapsular_mm else "deep"
    location = []
    if lobe in ("right", "left"):
        location.append(f"{lobe}_lobe")
    location.append(depth)

    meas = {
        "contrast_hu": round(contrast, 1),
        "edge_sharpness": round(float(sharp), 3),
        "edge_inner_hu": round(float(in_band), 1),
        "edge_outer_hu": round(float(out_band), 1),
        "edge_reference_hu": round(float(out_ref), 1),
        "core_reference_hu": round(float(core_ref), 1),
        "texture_sd_hu": round(texture, 1),
        "inscribed_radius_mm": round(r_max, 2),
        "parenchyma_hu": round(float(parenchyma_hu), 1),
        "calcified_fraction": round(float((lesion & calcium_n).sum()) / max(n_vox, 1), 4),
        "volume_thresholded_mm3": round(vol_mm3, 2),
        "volume_partial_volume_mm3": round(vol_pv_mm3, 2),
    }
    if pv.sd_mm3 is not None:
        meas["volume_sd_mm3"] = round(pv.sd_mm3, 2)
    if np.isfinite(ring_hu) and np.isfinite(core_hu):
        meas["ring_hu"] = round(ring_hu, 1)
        meas["core_hu"] = round(core_hu, 1)
    if np.isfinite(rim_out):
        meas["outer_band_hu"] = round(rim_out, 1)
    if np.isfinite(inner_hu):
        meas["inner_low_attenuation_hu"] = round(inner_hu, 1)
    if loc["locules"] or loc["septa"]:
        meas["locules"] = int(loc["locules"])
        meas["septa"] = int(loc["septa"])
        meas["locule_matrix_hu"] = round(float(loc["matrix_hu"]), 1)
        if "locule_contrast_hu" in loc:
            meas["locule_contrast_hu"] = round(float(loc["locule_contrast_hu"]), 1)
    if periph.get("nodules"):
        meas["peripheral_nodules"] = int(periph["nodules"])
        meas["peripheral_nodule_peak_hu"] = round(float(periph["nodule_hu"]), 1)
        meas["peripheral_coverage"] = round(float(periph["coverage"]), 3)
        meas["enhancement_reference_hu"] = round(float(periph["reference_hu"]), 1)
        meas["enhancement_reference_is_blood_pool"] = 1.0 if periph["reference"] == "blood_pool" else 0.0
    return Finding(
        id=f"lesion-{n:03d}",
        kind=kind,
        count=1,
        size_mm=round(long_mm, 2) if long_mm > 0 else None,
        hu=round(float(np.clip(hu_mean, -1100, 4000)), 1),
        location=location,
        density=density,
        margin=margin,
        enhancement=enhancement,
        signs=signs,
        label=LESION_LABEL_BASE + n,
        centroid_mm=tuple(round(float(c), 3) for c in volume.voxel_to_mm(centroid)),
        centroid_voxel=tuple(round(float(c), 3) for c in centroid),
        volume_mm3=round(vol_pv_mm3, 2),
        longest_diameter_mm=round(long_mm, 2),
        short_axis_mm=round(short_mm, 2),
        hu_mean=round(hu_mean, 1),
        hu_max=round(float(img[lesion].max()), 1),
        hu_sd=round(hu_sd, 1),
        lobe=lobe,
        depth=depth,
        depth_mm=round(depth_mm, 2) if np.isfinite(depth_mm) else None,
        measurements=meas,
    )


def describe_lesions(
    volume: Volume,
    labels: np.ndarray,
    *,
    liver: Any,
    lobes: np.ndarray | None,
    parenchyma_hu: float,
    noise_hu: float,
    phase: Any = None,
    pad_mm: float = 10.0,
    blood_pool_hu: float | None = None,
    inner: np.ndarray | None = None,
) -> list[Finding]:
    """Describe every lesion of a lesion label map.

    Parameters
    ----------
    volume: Volume
        CT in HU.
    labels: (Z, Y, X) int ndarray
        0 background, n >= 1 lesion n (from :func:`calcscope.detect.find_lesions`).
    liver: bool ndarray or object with ``mask``
        Liver mask.
    lobes: uint8 ndarray or None
        Lobe map (1 right, 2 left, 3 caudate).
    parenchyma_hu, noise_hu: float
        Parenchymal HU and voxel noise of this scan (from the detector).
    phase: Phase or str, optional
        Contrast phase; rim enhancement is only reported in contrast phases.
    pad_mm: float
        Margin around each lesion searched for the parenchymal reference band, mm.
    blood_pool_hu: float, optional
        HU of the blood pool in this scan (the aorta, ``PhaseEstimate.aorta_hu``). Enhancing
        peripheral nodules are recognised by following it (within
        ``LesionThresholds.nodule_blood_pool_tolerance``); without it the brightest
        peripheral component of each lesion is the reference.
    inner: (Z, Y, X) bool ndarray, optional
        Darker regions the detector joined to the mass around them
        (:attr:`calcscope.detect.LesionDetection.inner`); one that is darker than the rest
        of its lesion by ``LesionThresholds.ring_min_hu`` (and four standard errors) gives
        that lesion the sign ``central_necrosis`` (central necrosis or scar).

    Returns
    -------
    list of Finding
        One per lesion, ``id`` "lesion-%03d", ``label`` 100 + n, in label order.
    """
    liv = np.asarray(getattr(liver, "mask", liver), dtype=bool)
    labels = np.asarray(labels)
    ph = phase_of(phase)
    if not labels.any():
        return []
    surface = LiverSurface(liv, volume.spacing_zyx)
    pads = [int(np.ceil(pad_mm / s)) for s in volume.spacing_zyx]
    crop = bbox_slices(labels > 0)
    off = [c.start for c in crop]
    out = []
    for n, box in enumerate(ndi.find_objects(np.asarray(labels[crop], dtype=np.int32)), start=1):
        if box is None:
            continue
        box = tuple(slice(b.start + o, b.stop + o) for b, o in zip(box, off))
        big = tuple(slice(max(b.start - p, 0), min(b.stop + p, s)) for b, p, s in zip(box, pads, labels.shape))
        sub = labels[big]
        lesion = sub == n
        out.append(
            _describe_one(
                n, volume, lesion, big, liver=liv, lobes=lobes, surface=surface,
                parenchyma_hu=float(parenchyma_hu), noise_hu=float(noise_hu), phase=ph, th=LesionThresholds,
                blood_pool_hu=None if blood_pool_hu is None else float(blood_pool_hu),
                others=(sub > 0) & ~lesion,
                inner=None if inner is None else (inner[big] & lesion),
            )
        )
    return out
