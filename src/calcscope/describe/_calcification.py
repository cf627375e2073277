"""Description of calcified foci: size, density, shape class and location.

Each focus of the label map from :func:`calcscope.detect.find_calcifications`
becomes one :class:`calcscope.model.Finding` (kind ``"calcification"``, id
``calc-%03d``, label ``1000 + n``) with its measurements in physical units.

Shape classes (vocabulary ``model.Shape``; rules in :func:`classify_shape` and
:func:`group_shapes`, thresholds in :data:`SHAPE_RULES`):

* ``ring``: a hollow shell or rim, i.e. the centroid lies in a gap of the focus
  (distance from the centroid to the nearest focus voxel >= ``ring_gap_fraction`` of
  the diameter) and the focus is not a line. Calcified hydatid and abscess walls
  look like this (``seeds/001_fc47ebb88f3c1e60.txt``).
* ``linear``: elongated (longest / second principal extent >= ``linear_elongation``,
  at least ``linear_min_mm`` long),
  or a thin plate (second / third extent >= ``sheet_flatness``, thickness <=
  ``sheet_max_thickness_mm``): capsular plaques and septa read as lines on slices.
* ``stellate``: radiating from a filled centre: low solidity (focus volume / convex
  hull volume) with the centre inside the focus (fibrolamellar carcinoma scar).
* ``punctate``: compact and small (equivalent-sphere diameter of the partial-volume
  volume at most ``punctate_max_equivalent_mm``: on thick slices the longest diameter
  of a dot is dominated by the voxel size); ``coarse`` (plaque): compact and larger.
* ``grit`` (group property): at least ``grit_min_count`` tiny foci (each at most
  ``grit_max_mm``) whose centroids chain together at <= ``grit_link_mm``; every member
  is labelled grit (grit-like calcification of metastases, seed 001).
* ``beaded``: a compact focus (<= ``beaded_max_mm``) sitting in a tubular
  fluid-density structure (a stone in a dilated duct: :func:`_duct_like`), or a
  member of a chain of at least ``beaded_min_count`` compact foci linked at <=
  ``beaded_link_mm`` whose centroids lie along a line (second principal SD <=
  ``beaded_max_lateral_fraction`` of the first). Stones run along the ducts in a
  beaded way (seed 001).

Volume: the thresholded mask underestimates or overestimates partial-volume foci
depending on the threshold, so the reported ``volume_mm3`` is a partial-volume
estimate: the HU excess over the local background summed over the focus and a one
voxel rim, divided by the focus's own calcium level (mean of its brightest voxels
minus background). Both volumes are kept in ``measurements``, with the calcium content
``calcium_content_hu_ml`` (the summed excess itself, HU·mL, and its noise SD
``calcium_content_sd_hu_ml``): where a focus thinner than about two voxels lies on the
grid moves its volume by tens of percent but its content by a few (docs/performance.md),
so follow-up confirms a calcification's growth on its content.

Volume noise: ``measurements["volume_sd_mm3"]`` (the key lesions use) is the noise SD
of that estimate, the voxel noise propagated to first order through its four inputs
(the summed voxels, the background median, the clipping correction and the calcium
level, with the covariance of the level's voxels with the sum), using the noise SD
and the neighbour correlation measured in the plain liver around the focus
(:func:`local_noise`, :func:`pv_volume_sd_mm3`). It is absent when it cannot be
estimated (no plain liver around, a noise-free image, or no calcium level above the
background). It is a noise floor, not a bound on bias: a focus smaller than a voxel
reads as (summed excess) / (its partial-volume peak), larger than it is, and the
three brightest voxels of a large focus sit above its true level by the noise maximum
(docs/performance.md, follow-up section, gives figures).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, QhullError, cKDTree

from ..model import CALC_LABEL_BASE, Finding, Volume
from ._geometry import (
    LOBE_NAMES,
    LiverSurface,
    convex_hull_volume_mm3,
    equivalent_diameter_mm,
    lobe_of,
    longest_diameter_mm,
    PrincipalAxes,
    principal_axes,
)
from ._lesion import axis_correlations, correlation_factor

__all__ = [
    "describe_calcifications",
    "classify_shape",
    "group_shapes",
    "agatston_weight",
    "depth_class",
    "SHAPE_RULES",
    "DEPTH_RULES",
    "FocusShape",
    "FocusVolume",
    "LocalNoise",
    "local_noise",
    "pv_volume_sd_mm3",
    "pv_content_hu_ml",
    "pv_content_sd_hu_ml",
    "region_sum_factor",
]

#: thresholds of the shape rules (mm, ratios, counts)
SHAPE_RULES: dict[str, float] = {
    "punctate_max_mm": 4.5,
    "punctate_max_equivalent_mm": 4.6,
    "linear_elongation": 2.0,
    "linear_min_mm": 5.0,
    "sheet_flatness": 2.2,
    "sheet_max_thickness_mm": 7.0,
    "capsular_plaque_min_mm": 8.0,
    "capsular_plaque_flatness": 1.8,
    "ring_min_mm": 6.0,
    "ring_gap_fraction": 0.2,
    "ring_max_elongation": 2.5,
    "stellate_min_mm": 6.0,
    "stellate_max_solidity": 0.45,
    "grit_max_mm": 5.0,
    "grit_min_count": 3,
    "grit_link_mm": 10.0,
    "beaded_min_count": 3,
    "beaded_link_mm": 15.0,
    "beaded_max_mm": 10.0,
    "beaded_max_lateral_fraction": 0.2,
    # duct test: fluid-density structure around the focus, searched this far (mm)...
    "duct_search_mm": 12.0,
    # ...at least this large (mm^3) and this elongated (longest / thinnest extent)
    "duct_min_volume_mm3": 40.0,
    "duct_min_elongation": 2.5,
}

#: depth classes (mm below the liver surface)
DEPTH_RULES: dict[str, float] = {
    "capsular_max_mm": 2.0,
    "subcapsular_max_mm": 10.0,
    # share of a focus's voxels on the capsule that makes the focus capsular
    "capsular_contact_fraction": 0.3,
}

#: Agatston density weight by peak HU: (lower bound, weight), highest first
_AGATSTON = ((400.0, 4), (300.0, 3), (200.0, 2), (130.0, 1))


def agatston_weight(hu_max: float) -> int:
    """Agatston density weight of a focus from its peak HU.

    1 for 130-199 HU, 2 for 200-299, 3 for 300-399, 4 for 400 and above, 0 below 130.
    """
    for lo, w in _AGATSTON:
        if hu_max >= lo:
            return w
    return 0


def depth_class(depth_mm: float, *, in_margin: bool) -> str:
    """``capsular`` (on the capsule: ``in_margin``, or the centroid within 2 mm of the
    surface), ``subcapsular`` (< 10 mm) or ``deep``."""
    if in_margin or depth_mm <= DEPTH_RULES["capsular_max_mm"]:
        return "capsular"
    if depth_mm < DEPTH_RULES["subcapsular_max_mm"]:
        return "subcapsular"
    return "deep"


@dataclass(frozen=True)
class FocusShape:
    """Shape descriptors of one focus (mm, ratios)."""

    longest_mm: float
    elongation: float
    flatness: float
    thickness_mm: float
    solidity: float
    gap_mm: float
    centre_filled: bool
    capsular: bool = False
    duct_like: bool = False
    equivalent_diameter_mm: float | None = None

    @property
    def gap_fraction(self) -> float:
        return self.gap_mm / max(self.longest_mm, 1e-6)


def classify_shape(s: FocusShape) -> str:
    """Shape word of a single focus (group words are added by :func:`group_shapes`).

    Tried in order: ring, linear (line, sheet, or flat capsular plaque), beaded (a
    compact focus inside a tubular fluid-density structure, i.e. a stone in a duct),
    stellate, punctate, coarse.
    """
    r = SHAPE_RULES
    if (
        s.longest_mm >= r["ring_min_mm"]
        and s.gap_fraction >= r["ring_gap_fraction"]
        and s.elongation < r["ring_max_elongation"]
    ):
        return "ring"
    if s.elongation >= r["linear_elongation"] and s.longest_mm >= r["linear_min_mm"]:
        return "linear"
    if (
        s.longest_mm > r["punctate_max_mm"]
        and s.flatness >= r["sheet_flatness"]
        and s.thickness_mm <= r["sheet_max_thickness_mm"]
    ):
        return "linear"  # a thin plate or sheet (septum) reads as a line on slices
    if s.capsular and s.longest_mm >= r["capsular_plaque_min_mm"] and s.flatness >= r["capsular_plaque_flatness"]:
        return "linear"  # a plaque along the capsule
    if s.duct_like and s.longest_mm <= r["beaded_max_mm"]:
        return "beaded"
    if s.longest_mm >= r["stellate_min_mm"] and s.solidity <= r["stellate_max_solidity"] and s.centre_filled:
        return "stellate"
    small = (
        s.equivalent_diameter_mm <= r["punctate_max_equivalent_mm"]
        if s.equivalent_diameter_mm is not None
        else s.longest_mm <= r["punctate_max_mm"]
    )
    return "punctate" if small else "coarse"


def _clusters(points_mm: np.ndarray, link_mm: float) -> np.ndarray:
    """Single-linkage cluster id of each point (points closer than ``link_mm`` join)."""
    n = len(points_mm)
    if n == 0:
        return np.zeros(0, dtype=int)
    tree = cKDTree(points_mm)
    pairs = tree.query_pairs(link_mm, output_type="ndarray")
    from scipy.sparse import coo_matrix

    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else coo_matrix((n, n))
    _, lab = connected_components(g, directed=False)
    return lab


def group_shapes(
    shapes: list[str], sizes_mm: list[float], centroids_mm: np.ndarray
) -> list[str]:
    """Apply the group shape words (beaded chains, grit clusters) to single-focus shapes.

    Parameters
    ----------
    shapes: single-focus shape words (from :func:`classify_shape`).
    sizes_mm: longest diameter of each focus.
    centroids_mm: (N, 3) centroids in mm (any Cartesian frame).
    """
    r = SHAPE_RULES
    out = list(shapes)
    n = len(shapes)
    if n < min(r["beaded_min_count"], r["grit_min_count"]):
        return out
    pts = np.asarray(centroids_mm, dtype=float)
    sizes = np.asarray(sizes_mm, dtype=float)
    # beaded: compact foci chained along a line
    bead_ok = np.array([s in ("punctate", "coarse") for s in shapes]) & (sizes <= r["beaded_max_mm"])
    idx = np.flatnonzero(bead_ok)
    if len(idx) >= r["beaded_min_count"]:
        lab = _clusters(pts[idx], r["beaded_link_mm"])
        for c in np.unique(lab):
            members = idx[lab == c]
            if len(members) < r["beaded_min_count"]:
                continue
            p = pts[members] - pts[members].mean(0)
            sd = np.sqrt(np.clip(np.linalg.eigvalsh(p.T @ p / len(p))[::-1], 0, None))
            if sd[0] > 0 and sd[1] <= r["beaded_max_lateral_fraction"] * sd[0]:
                for m in members:
                    out[m] = "beaded"
    # grit: several tiny foci close together (not already a chain); merged particles
    # may read as a short line
    tiny = np.array([o in ("punctate", "coarse", "linear") for o in out]) & (sizes <= r["grit_max_mm"])
    idx = np.flatnonzero(tiny)
    if len(idx) >= r["grit_min_count"]:
        lab = _clusters(pts[idx], r["grit_link_mm"])
        for c in np.unique(lab):
            members = idx[lab == c]
            if len(members) >= r["grit_min_count"]:
                for m in members:
                    out[m] = "grit"
    return out


# --------------------------------------------------------------------------------------
# per-focus measurement
# --------------------------------------------------------------------------------------

_CUBE = np.ones((3, 3, 3), dtype=bool)
#: geometry is measured on voxels at least this fraction of the way from the local
#: background to the focus's calcium level (half covered by calcium)
HALF_MAX_FRACTION = 0.5
#: smoothed HU above which a dark voxel may be fluid (below: fat or gas)
FLUID_MIN_HU = -30.0
#: below this many core voxels the shape is read from the whole focus
MIN_CORE_VOXELS_FOR_SHAPE = 10


def _crop(sl: tuple[slice, ...], pad: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(sl, shape))


@dataclass(frozen=True, eq=False)
class FocusVolume:
    """Partial-volume volume of one focus and what it was computed from (:func:`_pv_volume`).

    Attributes
    ----------
    volume_mm3: float
        The partial-volume estimate (the voxel count where no calcium level stands out).
    background_hu, level_hu: float
        Local background (median of the shell two to three voxels out) and the focus's own
        calcium level (mean of its three brightest voxels).
    weighed: bool
        False when the voxel count was returned (no contrast to weigh against).
    summed: bool ndarray or None
        Voxels (in the focus's box) whose HU enters the sum unclipped: the focus and the
        rim voxels above the background.
    rim_voxels, background_voxels: int
        Voxels of the one-voxel rim and of the background shell.
    top_index: (3, 3) int ndarray or None
        Box indices of the (up to) three brightest voxels, which make the calcium level.
    focus_hu: ndarray or None
        HU of the focus's voxels, brightest first (how many compete for the level).
    """

    volume_mm3: float
    background_hu: float
    level_hu: float
    weighed: bool = False
    summed: np.ndarray | None = None
    rim_voxels: int = 0
    background_voxels: int = 0
    top_index: np.ndarray | None = None
    focus_hu: np.ndarray | None = None


def _pv_volume(
    arr: np.ndarray, labels: np.ndarray, k: int, sl: tuple[slice, ...], voxel_mm3: float
) -> FocusVolume:
    """Partial-volume corrected volume of focus ``k``.

    ``sum(HU - background) / (calcium level - background) x voxel volume`` over the
    focus and a one-voxel rim (26-neighbourhood), where the background is the median
    HU of a shell two to three voxels out (other foci excluded) and the calcium level
    is the mean of the focus's three brightest voxels. Rim voxels darker than the
    background (fluid around a stone) count as zero, and the mean positive noise
    this clipping adds (noise SD / sqrt(2 pi) per rim voxel) is taken off again.
    """
    box = _crop(sl, 4, labels.shape)
    lab = labels[box]
    a = arr[box].astype(np.float32)
    comp = lab == k
    others = (lab > 0) & ~comp
    near = ndi.binary_dilation(comp, structure=_CUBE)
    rim = near & ~comp & ~others
    far = (
        ndi.binary_dilation(comp, structure=_CUBE, iterations=3)
        & ~ndi.binary_dilation(comp, structure=_CUBE, iterations=2)
        & ~others
    )
    bg_vals = a[far] if far.any() else a[~comp]
    bg = float(np.median(bg_vals))
    sd = min(1.4826 * float(np.median(np.abs(bg_vals - bg))), 30.0)
    focus_idx = np.argwhere(comp)
    focus_hu = a[comp]
    order = np.argsort(focus_hu)[::-1]
    top = order[: min(3, len(order))]
    level = float(focus_hu[top].mean())
    contrast = level - bg
    if contrast <= 1.0:
        return FocusVolume(float(np.count_nonzero(comp) * voxel_mm3), bg, level)
    excess = float(np.sum(focus_hu - bg)) + float(np.sum(np.clip(a[rim] - bg, 0.0, None)))
    excess -= float(np.count_nonzero(rim)) * sd / np.sqrt(2.0 * np.pi)
    vol = max(excess / contrast, 0.0) * voxel_mm3
    return FocusVolume(
        vol, bg, level,
        weighed=True,
        summed=comp | (rim & (a > bg)),
        rim_voxels=int(np.count_nonzero(rim)),
        background_voxels=int(bg_vals.size),
        top_index=focus_idx[top],
        focus_hu=focus_hu[order],
    )


#: plain liver searched around a focus for the local noise and its correlation, mm
NOISE_BAND_MM = 8.0
#: fewest plain-liver voxels from which the local noise is measured (else no volume SD)
MIN_NOISE_VOXELS = 100
#: focus voxels this many noise SDs below the calcium level still compete for it
LEVEL_COMPETITION_SD = 3.0
#: variance of the normalised MAD as an estimate of a Gaussian SD, in units of SD² / n
_MAD_SD_VARIANCE = 1.36
#: 3 x variance of the mean of the 3 largest of m independent standard normals (Monte
#: Carlo, 4000 draws each): the calcium level moves less when many voxels compete for it
_TOP3_M = (3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100, 200, 400, 1000)
_TOP3_G = (1.0, 0.814, 0.747, 0.663, 0.59, 0.517, 0.444, 0.408, 0.355, 0.315, 0.255, 0.213, 0.185, 0.157)


@dataclass(frozen=True, eq=False)
class LocalNoise:
    """Noise of the plain liver around a focus.

    Attributes
    ----------
    sd_hu: float
        Voxel noise SD, HU.
    rho: (3, 2) ndarray
        Correlation of voxels 1 and 2 apart along z, y and x
        (:func:`calcscope.describe._lesion.axis_correlations`).
    factor: float
        ``Var(sum of n neighbouring voxels) / (n sd²)`` of a large compact region
        (:func:`calcscope.describe._lesion.noise_correlation_factor`; 1 for white noise).
    voxels: int
        Plain-liver voxels it was measured on.
    """

    sd_hu: float
    rho: np.ndarray
    factor: float
    voxels: int


def local_noise(
    arr: np.ndarray,
    labels: np.ndarray,
    liver: np.ndarray,
    sl: tuple[slice, ...],
    spacing: np.ndarray,
    background_hu: float,
    *,
    band_mm: float = NOISE_BAND_MM,
) -> LocalNoise | None:
    """Voxel noise and neighbour correlation of the liver within ``band_mm`` of a focus's box.

    Foci and two voxels around them are left out, and so are voxels more than 3.5
    robust SDs from ``background_hu`` (vessels, fat, fluid): they are structure, and
    structure next to structure reads as correlated noise.

    Returns
    -------
    LocalNoise or None
        None when fewer than :data:`MIN_NOISE_VOXELS` plain voxels remain or the image
        shows no noise (a noise-free image gives no noise model, not a zero SD).
    """
    pads = np.ceil(band_mm / np.asarray(spacing, dtype=float)).astype(int)
    box = tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(sl, pads, labels.shape))
    a = arr[box].astype(np.float32)
    plain = liver[box] & ~ndi.binary_dilation(labels[box] > 0, structure=_CUBE, iterations=2)
    if np.count_nonzero(plain) < MIN_NOISE_VOXELS:
        return None
    robust = 1.4826 * float(np.median(np.abs(a[plain] - background_hu)))
    if not np.isfinite(robust) or robust <= 0.0:
        return None
    plain &= np.abs(a - background_hu) <= 3.5 * robust
    n = int(np.count_nonzero(plain))
    sd = float(a[plain].std()) if n else 0.0
    if n < MIN_NOISE_VOXELS or sd <= 0.0:
        return None
    rho = axis_correlations(a, plain)  # measured once: the pair terms and the whole-region factor
    return LocalNoise(sd, rho, correlation_factor(rho), n)


def _lag_weight(rho: np.ndarray, offset: np.ndarray) -> float:
    """Correlation of two voxels ``offset`` apart (separable: product over the axes; 0 beyond the measured lags)."""
    w = 1.0
    for axis, d in enumerate(np.abs(np.asarray(offset, dtype=int))):
        if d == 0:
            continue
        if d > rho.shape[1]:
            return 0.0
        w *= float(rho[axis, d - 1])
    return w


def region_sum_factor(region: np.ndarray, rho: np.ndarray) -> float:
    """``Var(noise summed over region) / (n sd²)`` for noise with axis correlations ``rho``.

    Sums the correlation of every pair of the region's voxels within the measured lags
    (``rho[axis, lag - 1]``, separable). Unlike the factor of a large compact region it
    follows the region's own shape: a thin rim or a two-voxel focus holds few of the
    pairs that make a smoothing kernel's noise add up. At least 1 (negative correlations,
    which would lower it, are not trusted).
    """
    n = int(np.count_nonzero(region))
    if n == 0:
        return 1.0
    lags = rho.shape[1]
    padded = np.pad(region, lags)
    total = 0.0
    rng = range(-lags, lags + 1)
    for dz in rng:
        for dy in rng:
            for dx in rng:
                w = _lag_weight(rho, np.array([dz, dy, dx]))
                if w == 0.0:
                    continue
                shifted = np.roll(padded, (dz, dy, dx), axis=(0, 1, 2))
                total += w * float(np.count_nonzero(padded & shifted))
    return max(total / n, 1.0)


def _level_variance_factor(fv: FocusVolume, noise: LocalNoise) -> float:
    """``Var(calcium level) / sd²``: the mean of the three brightest voxels.

    Their own correlation (by their offsets) gives the variance of a mean of three fixed
    voxels; when more voxels compete for the top three (focus voxels within
    :data:`LEVEL_COMPETITION_SD` noise SDs of the level, counted in independent groups of
    the correlation factor's size), the top three are the luckiest of many and move less
    (:data:`_TOP3_G`).
    """
    idx = np.asarray(fv.top_index)
    k = len(idx)
    pair_sum = sum(_lag_weight(noise.rho, idx[i] - idx[j]) for i in range(k) for j in range(k))
    competitors = int(np.count_nonzero(np.asarray(fv.focus_hu) >= fv.level_hu - LEVEL_COMPETITION_SD * noise.sd_hu))
    m = max(competitors / max(noise.factor, 1.0), 3.0)
    g = float(np.interp(np.log(m), np.log(_TOP3_M), _TOP3_G))
    return pair_sum / k**2 * g


def _level_sum_covariance_factor(fv: FocusVolume, rho: np.ndarray) -> float:
    """``Cov(summed noise, calcium level) / sd²``: each of the three brightest voxels'
    correlation with the summed voxels, averaged. For white noise it is 1 whichever voxels
    win the top three (the level shifts with the mean of the voxels it is chosen from)."""
    summed = np.asarray(fv.summed)
    lags = rho.shape[1]
    total = 0.0
    idx = np.asarray(fv.top_index)
    for j in idx:
        lo = np.maximum(j - lags, 0)
        hi = np.minimum(j + lags + 1, summed.shape)
        for i in np.argwhere(summed[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]) + lo:
            total += _lag_weight(rho, i - j)
    return total / max(len(idx), 1)


def pv_volume_sd_mm3(fv: FocusVolume, noise: LocalNoise | None, voxel_mm3: float) -> float | None:
    """Noise SD (mm³) of the partial-volume volume of :func:`_pv_volume`.

    With ``V = E / C`` (``E``: HU excess over the background summed over the focus and
    its clipped rim, minus the clipping correction; ``C``: calcium level minus
    background; voxel units) the voxel noise ``s`` enters, to first order, through

    * the summed voxels (the focus and the rim voxels above the background; clipped
      ones do not move the sum): ``s² n_sum q / C²``, ``q`` from :func:`region_sum_factor`;
    * the background, a median of ``n_bg`` voxels (variance ``pi/2 f s² / n_bg``, ``f``
      the large-region correlation factor), with ``dV/dbg = (V - n_sum) / C``;
    * the clipping correction, ``n_rim / sqrt(2 pi)`` times the shell's robust SD
      (variance about ``1.36 f s² / n_bg``), divided by ``C``;
    * the calcium level (variance from :func:`_level_variance_factor`), with
      ``dV/dlevel = -V / C``; its voxels are among the summed ones, so it covaries
      with ``E`` (:func:`_level_sum_covariance_factor`), which takes
      ``2 V Cov(E, level) / C²`` off.

    Returns None when no noise model applies (no local noise, the voxel count was
    returned, or the terms do not add up to a positive variance); never a false 0.
    """
    if noise is None or not fv.weighed or fv.summed is None or fv.top_index is None or fv.focus_hu is None:
        return None
    if fv.background_voxels <= 0:
        return None
    c = fv.level_hu - fv.background_hu
    if c <= 0.0:
        return None
    s2 = noise.sd_hu**2
    f = noise.factor
    v = fv.volume_mm3 / voxel_mm3
    n_sum = int(np.count_nonzero(fv.summed))
    var = s2 * n_sum * region_sum_factor(fv.summed, noise.rho) / c**2
    var += ((v - n_sum) / c) ** 2 * (np.pi / 2.0) * f * s2 / fv.background_voxels
    var += (fv.rim_voxels / np.sqrt(2.0 * np.pi) / c) ** 2 * _MAD_SD_VARIANCE * f * s2 / fv.background_voxels
    var += (v / c) ** 2 * s2 * _level_variance_factor(fv, noise)
    # the level's voxels are summed too: a bright draw raises E and C together
    var -= 2.0 * v * s2 * _level_sum_covariance_factor(fv, noise.rho) / c**2
    if not np.isfinite(var) or var <= 0.0:
        return None  # the first-order model broke down: no SD rather than a false 0
    return float(np.sqrt(var) * voxel_mm3)


def pv_content_hu_ml(fv: FocusVolume, voxel_mm3: float) -> float | None:
    """Calcium content of a focus: its HU excess over the local background, summed, in HU·mL.

    ``E x voxel volume`` of :func:`_pv_volume` (the partial-volume volume times the
    focus's contrast). Blurring and sampling move HU between voxels but keep their sum,
    so where a small focus lies on the grid changes its calcium level, and hence its
    volume ``E / C``, but hardly its content: it is the quantity to follow a focus of a
    few voxels by (calcium mass = content x the scanner's mg-per-HU·mL calibration,
    which needs a calibration phantom and is not applied). None when the focus was not
    weighed (no contrast to the background).
    """
    if not fv.weighed:
        return None
    return fv.volume_mm3 * (fv.level_hu - fv.background_hu) / 1000.0


def pv_content_sd_hu_ml(fv: FocusVolume, noise: LocalNoise | None, voxel_mm3: float) -> float | None:
    """Noise SD (HU·mL) of :func:`pv_content_hu_ml`.

    The summed voxels (``s² n_sum q``), the background median (``dE/dbg = -n_sum``) and
    the clipping correction enter as in :func:`pv_volume_sd_mm3`; the calcium level does
    not (the content does not divide by it). None when no noise model applies.
    """
    if noise is None or not fv.weighed or fv.summed is None or fv.background_voxels <= 0:
        return None
    s2 = noise.sd_hu**2
    f = noise.factor
    n_sum = int(np.count_nonzero(fv.summed))
    var = s2 * n_sum * region_sum_factor(fv.summed, noise.rho)
    var += n_sum**2 * (np.pi / 2.0) * f * s2 / fv.background_voxels
    var += (fv.rim_voxels / np.sqrt(2.0 * np.pi)) ** 2 * _MAD_SD_VARIANCE * f * s2 / fv.background_voxels
    if not np.isfinite(var) or var <= 0.0:
        return None
    return float(np.sqrt(var) * voxel_mm3 / 1000.0)


def _fluid_level_hu(parenchyma_hu: float) -> float:
    """Smoothed HU below which a voxel counts as fluid (bile) rather than liver:
    at least 30 HU and half-way from the parenchyma down to water (10 HU)."""
    return parenchyma_hu - max(30.0, 0.5 * (parenchyma_hu - 10.0))


def _duct_like(
    arr: np.ndarray, liver: np.ndarray, coords: np.ndarray, spacing: np.ndarray, parenchyma_hu: float
) -> bool:
    """Whether a focus sits in a tubular fluid-density structure (a dilated duct).

    Fluid voxels (smoothed HU below :func:`_fluid_level_hu`) within
    ``duct_search_mm`` that touch the focus (within two voxels) are gathered; the
    structure is duct-like when it is large enough and elongated, which tells a
    stone in a duct from a focus in a round cyst or necrotic lesion.
    """
    r = SHAPE_RULES
    centre = coords.mean(0)
    half = np.ceil(r["duct_search_mm"] / spacing).astype(int)
    lo = np.maximum(np.floor(centre).astype(int) - half, 0)
    hi = np.minimum(np.ceil(centre).astype(int) + half + 1, np.asarray(arr.shape))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    sub = ndi.gaussian_filter(arr[box].astype(np.float32), sigma=0.7 / spacing, mode="nearest")
    # fluid inside the liver only (fat and gas outside the capsule are darker still)
    fluid = (sub < _fluid_level_hu(parenchyma_hu)) & (sub > FLUID_MIN_HU) & liver[box]
    if not fluid.any():
        return False
    focus = np.zeros(fluid.shape, dtype=bool)
    local = coords - lo
    ok = np.all((local >= 0) & (local < np.asarray(fluid.shape)), axis=1)
    focus[tuple(local[ok].T)] = True
    near = ndi.binary_dilation(focus, structure=_CUBE, iterations=2)
    lab, n = ndi.label(fluid, structure=_CUBE)
    ids = np.unique(lab[near & fluid])
    ids = ids[ids > 0]
    if len(ids) == 0:
        return False
    region = np.isin(lab, ids)
    vox_mm3 = float(np.prod(spacing))
    if region.sum() * vox_mm3 < r["duct_min_volume_mm3"]:
        return False
    pts = np.argwhere(region)
    ext = principal_axes(pts, tuple(spacing)).extents_mm
    # longest over thinnest extent: high for a tube or a branching tube, about 1 for a
    # round cyst or lesion
    return float(ext[0] / max(ext[2], 1e-6)) >= r["duct_min_elongation"]


def _shape_descriptors(
    coords: np.ndarray,
    spacing: np.ndarray,
    longest_mm: float,
    axes: PrincipalAxes,
    *,
    capsular: bool = False,
    duct_like: bool = False,
    equivalent_diameter_mm: float | None = None,
) -> FocusShape:
    voxel_mm3 = float(np.prod(spacing))
    hull = convex_hull_volume_mm3(coords, tuple(spacing))
    solidity = float(min(len(coords) * voxel_mm3 / hull, 1.0)) if hull > 0 else 1.0
    # gap: distance (mm) from the centroid to the nearest voxel of the focus
    d = np.sqrt((((coords - coords.mean(0)) * spacing) ** 2).sum(1))
    gap = float(max(d.min() - 0.5 * float(spacing.min()), 0.0))
    centre_filled = gap <= float(spacing.max())
    return FocusShape(
        longest_mm=longest_mm,
        elongation=axes.elongation,
        flatness=axes.flatness,
        thickness_mm=float(axes.extents_mm[2]),
        solidity=solidity,
        gap_mm=gap,
        centre_filled=centre_filled,
        capsular=capsular,
        duct_like=duct_like,
        equivalent_diameter_mm=equivalent_diameter_mm,
    )


def describe_calcifications(
    volume: Volume,
    labels: np.ndarray,
    *,
    liver: np.ndarray,
    lobes: np.ndarray | None,
    margin: np.ndarray | None = None,
) -> list[Finding]:
    """Measure and describe every calcified focus of ``labels``.

    Parameters
    ----------
    volume: Volume
        CT in HU.
    labels: (Z, Y, X) int ndarray
        0 background, n = 1..N the n-th focus (from ``find_calcifications``).
    liver: (Z, Y, X) bool ndarray
        Liver mask (for depth below the capsule).
    lobes: (Z, Y, X) uint8 ndarray or None
        0 outside, 1 right, 2 left, 3 caudate.
    margin: (Z, Y, X) bool ndarray, optional
        Capsular margin; a focus mostly inside it is ``capsular``.

    Returns
    -------
    list of Finding
        One finding per label, in label order (``calc-001`` is label 1).
    """
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return []
    arr = volume.array
    spacing = np.asarray(volume.spacing_zyx, dtype=float)
    voxel_mm3 = float(np.prod(spacing))
    liver = np.asarray(getattr(liver, "mask", liver), dtype=bool)
    surface = LiverSurface(liver, volume.spacing_zyx)
    liver_vals = arr[liver]
    step = max(1, liver_vals.size // 1_000_000)
    parenchyma_hu = float(np.median(liver_vals[::step])) if liver_vals.size else 0.0
    del liver_vals
    objs = ndi.find_objects(labels.astype(np.int32, copy=False), max_label=n)

    rows: list[dict] = []
    for k in range(1, n + 1):
        sl = objs[k - 1]
        if sl is None:
            continue
        comp = labels[sl] == k
        off = np.array([s.start for s in sl])
        all_coords = np.argwhere(comp) + off
        hu_all = arr[tuple(all_coords.T)].astype(float)
        vol_thr = len(all_coords) * voxel_mm3
        fv = _pv_volume(arr, labels, k, sl, voxel_mm3)
        vol_pv, bg, level = fv.volume_mm3, fv.background_hu, fv.level_hu
        noise = local_noise(arr, labels, liver, sl, spacing, bg)
        vol_sd = pv_volume_sd_mm3(fv, noise, voxel_mm3)
        content, content_sd = pv_content_hu_ml(fv, voxel_mm3), pv_content_sd_hu_ml(fv, noise, voxel_mm3)
        # geometry on the half-maximum core: voxels at least half-way from the local
        # background to the focus's calcium level (about half covered by calcium)
        core = hu_all >= bg + HALF_MAX_FRACTION * (level - bg)
        if not core.any():
            core = hu_all >= hu_all.max()
        coords = all_coords[core]
        hu = hu_all[core]
        longest = longest_diameter_mm(coords, volume.spacing_zyx)
        # shape from the core when it has enough voxels to have a shape; thin foci on
        # thick slices (arms of a star) may keep only a few core voxels
        shape_coords = coords if len(coords) >= MIN_CORE_VOXELS_FOR_SHAPE else all_coords
        axes = principal_axes(shape_coords, volume.spacing_zyx)
        w = np.clip(hu_all - bg, 0, None)
        centroid_vox = (all_coords * w[:, None]).sum(0) / w.sum() if w.sum() > 0 else all_coords.mean(0)
        inside = bool(np.mean(liver[tuple(all_coords.T)]) >= 0.5)
        depth_mm = float(surface.depth_mm(centroid_vox)[0]) if inside else 0.0
        # a focus touching the capsule (a fair share of its voxels in the margin, outside
        # the liver or within capsular_max_mm of the surface) is capsular even when
        # its centroid lies deeper (a plaque curving with the surface)
        vox_depth = surface.depth_mm(all_coords.astype(float), max_mm=DEPTH_RULES["capsular_max_mm"] + float(spacing.max()))
        touching = vox_depth <= DEPTH_RULES["capsular_max_mm"]
        if margin is not None:
            touching |= margin[tuple(all_coords.T)]
        in_margin = bool(np.mean(touching) >= DEPTH_RULES["capsular_contact_fraction"])
        lobe_id = lobe_of(lobes, all_coords, volume.spacing_zyx)
        capsular = depth_class(depth_mm, in_margin=in_margin or not inside) == "capsular"
        duct_like = longest <= SHAPE_RULES["beaded_max_mm"] and _duct_like(
            arr, liver, all_coords, spacing, parenchyma_hu
        )
        shape_desc = _shape_descriptors(
            shape_coords,
            spacing,
            longest,
            axes,
            capsular=capsular,
            duct_like=duct_like,
            equivalent_diameter_mm=equivalent_diameter_mm(vol_pv),
        )
        rows.append(
            dict(
                k=k,
                coords=coords,
                hu=hu,
                hu_all=hu_all,
                longest=longest,
                axes=axes,
                shape_desc=shape_desc,
                vol_thr=vol_thr,
                vol_pv=vol_pv,
                vol_sd=vol_sd,
                content=content,
                content_sd=content_sd,
                bg=bg,
                level=level,
                centroid_vox=centroid_vox,
                in_margin=in_margin or not inside,
                depth_mm=depth_mm,
                lobe=LOBE_NAMES.get(lobe_id),
            )
        )

    singles = [classify_shape(r["shape_desc"]) for r in rows]
    cents_mm = np.array([r["centroid_vox"] * spacing for r in rows])
    shapes = group_shapes(singles, [r["longest"] for r in rows], cents_mm)

    findings: list[Finding] = []
    for r, shape in zip(rows, shapes):
        k = r["k"]
        hu = r["hu"]
        location: list[str] = []
        if r["lobe"] == "right":
            location.append("right_lobe")
        elif r["lobe"] == "left":
            location.append("left_lobe")
        depth = depth_class(r["depth_mm"], in_margin=r["in_margin"])
        location.append(depth)
        short_axis = _axial_short_axis_mm(r["coords"], spacing)
        sd = r["shape_desc"]
        findings.append(
            Finding(
                id=f"calc-{k:03d}",
                kind="calcification",
                label=CALC_LABEL_BASE + k,
                size_mm=round(max(r["longest"], 1e-3), 2),
                longest_diameter_mm=round(r["longest"], 2),
                short_axis_mm=round(short_axis, 2),
                volume_mm3=round(r["vol_pv"], 2),
                hu=float(np.clip(round(float(hu.mean()), 1), -1100, 4000)),
                hu_mean=round(float(hu.mean()), 1),
                hu_max=round(float(r["hu_all"].max()), 1),
                hu_sd=round(float(hu.std()), 1),
                agatston_weight=agatston_weight(float(r["hu_all"].max())),
                shape=shape,  # type: ignore[arg-type]
                location=location,  # type: ignore[arg-type]
                lobe=r["lobe"],
                depth=depth,  # type: ignore[arg-type]
                depth_mm=round(r["depth_mm"], 2),
                centroid_voxel=tuple(round(float(c), 3) for c in r["centroid_vox"]),  # type: ignore[arg-type]
                centroid_mm=tuple(round(float(c), 3) for c in volume.voxel_to_mm(r["centroid_vox"])),  # type: ignore[arg-type]
                measurements={
                    "volume_threshold_mm3": round(r["vol_thr"], 2),
                    "volume_partial_volume_mm3": round(r["vol_pv"], 2),
                    # never a false 0: an SD below the rounding step is written as the step
                    **({} if r["vol_sd"] is None else {"volume_sd_mm3": max(round(r["vol_sd"], 2), 0.01)}),
                    **({} if r["content"] is None else {"calcium_content_hu_ml": round(r["content"], 4)}),
                    **({} if r["content"] is None or r["content_sd"] is None
                       else {"calcium_content_sd_hu_ml": max(round(r["content_sd"], 4), 0.0001)}),
                    "equivalent_diameter_mm": round(equivalent_diameter_mm(r["vol_pv"]), 2),
                    "background_hu": round(r["bg"], 1),
                    "calcium_level_hu": round(r["level"], 1),
                    "voxel_count": float(len(r["hu_all"])),
                    "core_voxel_count": float(len(r["coords"])),
                    "elongation_ratio": round(sd.elongation, 3),
                    "flatness_ratio": round(sd.flatness, 3),
                    "solidity_ratio": round(sd.solidity, 3),
                    "centre_gap_mm": round(sd.gap_mm, 2),
                    "in_fluid_tube": float(sd.duct_like),
                    "extent_2_mm": round(float(r["axes"].extents_mm[1]), 2),
                    "extent_3_mm": round(float(r["axes"].extents_mm[2]), 2),
                },
            )
        )
    return findings


def _axial_short_axis_mm(coords: np.ndarray, spacing: np.ndarray) -> float:
    """Longest extent perpendicular to the longest in-plane diameter, on the axial slice
    where the focus is largest (mm)."""
    zs, counts = np.unique(coords[:, 0], return_counts=True)
    z = zs[int(np.argmax(counts))]
    pts = coords[coords[:, 0] == z][:, 1:].astype(float) * spacing[1:]
    if len(pts) > 8:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except (QhullError, ValueError):
            pass
    if len(pts) == 1:
        return float(spacing[1:].min())
    diff = pts[:, None, :] - pts[None, :, :]
    d2 = (diff**2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    if d2[i, j] == 0:
        return float(spacing[1:].min())
    u = diff[i, j] / np.sqrt(d2[i, j])
    perp = np.array([-u[1], u[0]])
    proj = pts @ perp
    return float(proj.max() - proj.min() + np.sqrt(((perp * spacing[1:]) ** 2).sum()))
