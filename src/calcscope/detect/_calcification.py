"""Detection of calcified (hyperdense) foci in the liver and its capsular margin.

How a focus is found
--------------------
1. **Search region** = liver mask OR capsular margin (a thin shell outside the liver
   where capsular calcification lies). All work happens in the region's bounding box,
   padded by :data:`BOX_PAD_MM` so that structures leaving the liver can be seen.
2. **Reference levels** measured in the scan itself (inside the liver):
   parenchyma HU = median, noise HU = 1.4826 x median absolute deviation (robust SD).
   On contrast phases the **vessel pool HU** is the lumen level of the enhanced
   vessel tree: the liver is smoothed (Gaussian, :data:`VESSEL_SMOOTH_MM`), voxels
   brighter than parenchyma + :data:`VESSEL_DELTA_HU` form bright components, the
   large elongated ones with a blood-like median HU are taken as the vessel tree
   (:func:`_vessel_tree`), and the :data:`VESSEL_POOL_PERCENTILE`-th percentile of
   their smoothed HU, leaving out the neighbourhood of anything clearly brighter than
   blood (calcium touching a vessel), is the pool, never above
   :data:`VESSEL_POOL_MAX_HU`.
3. **Threshold** (see :func:`threshold_rule`)::

       threshold = max(phase floor,
                       parenchyma + K_PARENCHYMA x noise,
                       vessel pool + K_VESSEL x noise)        # contrast phases only

   The phase floor is 130 HU on non-contrast CT, the Agatston calcium threshold;
   published work on contrast-enhanced CT needs far higher fixed thresholds (around
   300 HU in the portal venous phase) because enhanced vessels reach 150-250 HU. A
   fixed 300 HU loses small partial-volume foci, so calcscope uses a lower floor and
   lets the measured vessel pool raise the threshold as far as the scan needs: no
   voxel of a vessel whose lumen is at the pool level exceeds pool + 5 noise SD by
   chance (probability < 3e-7 per voxel). The arterial-phase floor is 320 HU:
   arterial blood (aorta about 250-350 HU) and what follows it, such as the
   peripheral nodular enhancement of a haemangioma (about 260 HU), is brighter than
   the portal tree that dominates the measured pool, and hepatic arteries are too
   thin to be measured inside the liver; 320 HU is 260 HU plus 5 noise SD at 12 HU.
   An unknown phase is treated like the arterial one (the safe side).
4. **Components**: 26-connected (``cc3d``) components of the voxels above a lower
   hysteresis level (:func:`low_level_rule`, 3.5 noise SD above parenchyma and vessel
   pool) that contain at least one voxel above the threshold, so thin partial-volume
   foci stay whole; then rejection of what is not calcification:

   * ``extrahepatic``: more than :data:`MAX_OUTSIDE_FRACTION` of the component, or more
     than :data:`MAX_OUTSIDE_MM3` of it (unless it is an eggshell around a cavity), lies outside the search region (rib, spine,
     aorta, kidney or bowel contrast touching the margin);
   * ``vessel``: on contrast phases, a tubular component (elongation >=
     :data:`VESSEL_MIN_ELONGATION`, thickness <= :data:`VESSEL_MAX_THICKNESS_MM`)
     that is part of a larger vessel-tree component and whose peak stays within
     what enhanced blood reaches in that phase (:data:`VESSEL_MAX_HU`), e.g. a bright
     artery running beside a portal branch;
   * ``noise_on_vessel``: on contrast phases, a focus lying on a larger enhanced structure
     (smoothed HU > parenchyma + :data:`VESSEL_DELTA_HU`, at least
     :data:`ON_VESSEL_MIN_MM3` beyond :data:`ON_VESSEL_NEAR_MM` of the focus) that stays below
     the threshold (at most :data:`ON_VESSEL_MAX_EXCEED` of its voxels above it, the noise tail)
     and that its peak does not stand out from: peak - the structure's 95th percentile below
     ``sqrt(2 ln N) + 1`` noise SD, the expected extreme of N noise samples. In a noisy scan the
     noise peaks of arteries brighter than the measured (venous) pool cross the threshold by a
     voxel or a few (a thoracic CT angiogram, noise 34 HU: 1-8 voxels 354-393 HU on hilar
     arteries); a calcified septal network is not sub-threshold (5-13 % of it above), and a
     calcification in parenchyma has no such structure around it (:func:`_noise_on_vessel`);
   * ``streak``: a component confined to one slice, elongated in plane and flanked
     by dark voxels (the bright/dark banding of a beam-hardening or metal streak);
   * ``small``: thresholded volume below ``min_volume_mm3``.

5. **Compact foci** (arterial, portal venous and delayed phases, :func:`_compact_foci`):
   partial volume brings a 2-4 mm calcification on 3 mm slices down to the level of enhanced
   blood, below the threshold. A component of voxels above parenchyma + 3.5 noise SD whose
   peak exceeds :func:`focus_seed_rule` (6 noise SD above parenchyma, 9 in the arterial
   phase, and 1.75 above the vessel pool) is kept when it is small (<= :data:`FOCUS_MAX_MM3`,
   <= :data:`FOCUS_MAX_EXTENT_MM`) and isolated: no vessel-tree voxel and at most :data:`FOCUS_MAX_NEIGHBOURS` other bright
   voxels within :data:`FOCUS_CLEAR_MM` (vessels are continuous, a calcification is not).
   In the arterial phase its surround must also be parenchyma, not a hypodense mass
   (:func:`_dark_surround_share`): the enhancing nodules of a haemangioma are as small.
   Not used on an unknown phase.

6. The kept components are numbered 1..n in order of centroid (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage as ndi

from ..describe._geometry import surface_voxels
from ..model import Phase, PhaseEstimate, Volume

__all__ = [
    "CalcificationDetection",
    "find_calcifications",
    "threshold_rule",
    "low_level_rule",
    "PHASE_FLOOR_HU",
    "focus_seed_rule",
]

#: Lowest threshold per phase (HU). 130 HU is Agatston's calcium threshold on
#: non-contrast CT; on contrast phases the vessel-pool term usually governs.
PHASE_FLOOR_HU: dict[str, float] = {
    "non_contrast": 130.0,
    "arterial": 320.0,
    "portal_venous": 200.0,
    "delayed": 180.0,
    "unknown": 320.0,
}
#: threshold above parenchyma, in noise SDs
K_PARENCHYMA = 5.0
#: threshold above the vessel pool, in noise SDs (contrast phases)
K_VESSEL = 5.0
#: hysteresis low level above parenchyma / vessel pool, in noise SDs
K_LOW = 3.5
#: bounds of the robust noise estimate (HU)
NOISE_BOUNDS_HU = (4.0, 60.0)
#: padding of the working box around the search region (mm); wide enough that a rib or
#: vertebra touching the margin shows how far it continues outside
BOX_PAD_MM = 25.0
#: Gaussian sigma used to find the vessel tree (mm)
VESSEL_SMOOTH_MM = 1.0
#: a smoothed voxel brighter than parenchyma by this much (HU) may be vessel
VESSEL_DELTA_HU = 30.0
#: a bright component is part of the vessel tree when it is at least this long (mm)...
VESSEL_TREE_MIN_EXTENT_MM = 15.0
#: ...and at least this elongated (longest extent / equivalent diameter)...
VESSEL_TREE_MIN_RATIO = 2.0
#: ...and at least this large (mm³) and this share of the largest elongated component
VESSEL_TREE_MIN_VOLUME_MM3 = 100.0
VESSEL_TREE_MIN_SHARE = 0.1
#: percentile of smoothed vessel-tree HU taken as the vessel pool
VESSEL_POOL_PERCENTILE = 95.0
#: the vessel pool never counts above this (HU): portal/hepatic venous blood seldom
#: exceeds it, and a calcified septum or rim touching the tree must not raise the
#: threshold over itself
VESSEL_POOL_MAX_HU: dict[str, float] = {
    "non_contrast": 100.0,
    "arterial": 220.0,
    "portal_venous": 300.0,
    "delayed": 220.0,
    "unknown": 300.0,
}
#: candidate components with this elongation and thickness may be vessels...
VESSEL_MIN_ELONGATION = 2.5
VESSEL_MAX_THICKNESS_MM = 8.0
#: ...and a round cross-section (second / third extent at most this)...
VESSEL_MAX_FLATNESS = 2.0
#: ...when they are part of a vessel-tree component at least this many times larger...
VESSEL_MIN_TREE_RATIO = 2.0
#: ...and their peak stays below what enhanced blood reaches in the phase (HU)
VESSEL_MAX_HU: dict[str, float] = {
    "non_contrast": 0.0,
    "arterial": 450.0,
    "portal_venous": 320.0,
    "delayed": 260.0,
    "unknown": 450.0,
}
#: a component with more than this fraction of voxels outside the search region is rejected
MAX_OUTSIDE_FRACTION = 0.5
#: ...or with more than this volume (mm³) outside it: a rib or costal cartilage caught by the
#: liver mask continues into about 1 mL of dense tissue beyond the capsular margin (contrast CT
#: of the shared example), a capsular plaque at most a few tenths (0.3-0.37 mL on phantoms).
#: Exception: a calcified shell around a hypodense cavity (the eggshell wall of a hydatid
#: cyst or healed abscess) whose cyst the liver mask left out (:func:`_encloses_cavity`)
MAX_OUTSIDE_MM3 = 500.0
#: A focus in the capsular margin that is a piece of a rib: on a coarse grid the rib's cortex
#: breaks, at the hysteresis level, into pieces, and one lying mostly in the margin passes the
#: two tests above. Grown outside the liver through voxels above the parenchyma by
#: :data:`K_LOW` noise SD within this distance (mm), a rib brings more voxels above the threshold
#: beyond the search region than the piece holds inside it; a capsular calcification has fat,
#: muscle or diaphragm beyond it.
BONE_CONTINUATION_MM = 10.0
#: Compact-focus rule (portal venous and delayed phases): a small focus whose peak lies
#: below the vessel-pool threshold but above the pool by :data:`K_FOCUS_POOL` noise SD and
#: above the parenchyma by :data:`K_FOCUS_PARENCHYMA`, is kept when it is isolated: no
#: vessel-tree voxel and at most :data:`FOCUS_MAX_NEIGHBOURS` other bright voxels within
#: :data:`FOCUS_CLEAR_MM`, at most :data:`FOCUS_MAX_MM3` and :data:`FOCUS_MAX_EXTENT_MM`.
#: Partial volume brings a 2-4 mm calcification on 3 mm slices to 190-300 HU, the level of
#: enhanced blood; what still tells it from a vessel is that vessels are continuous
#: (bright neighbours) and a calcification is not. In the arterial phase the peripheral
#: nodular enhancement of a haemangioma (blood-pool level, above the measured portal pool)
#: is as small and isolated as a partial-volume calcification; what tells them apart is the
#: surround: the nodule lies on the edge of a hypodense mass, a calcification in
#: parenchyma (:func:`_dark_surround_share`, phases :data:`FOCUS_SURROUND_PHASES`).
FOCUS_PHASES = ("portal_venous", "delayed", "arterial")
K_FOCUS_PARENCHYMA = 6.0
K_FOCUS_POOL = 1.75
FOCUS_MAX_MM3 = 30.0
FOCUS_MAX_EXTENT_MM = 10.0
FOCUS_CLEAR_MM = 3.0
FOCUS_MAX_NEIGHBOURS = 2
#: Surround test of the compact-focus rule (arterial phase): the liver voxels between
#: :data:`FOCUS_SHELL_MM` from the focus; at most :data:`FOCUS_MAX_DARK_SHARE` of them may be
#: darker than parenchyma - :data:`K_FOCUS_DARK` noise SD (pure noise: 0.067). Candidate
#: study (eval phantoms + realism): isolated calcifications 0.0, haemangioma nodules 0.27-0.29.
FOCUS_SURROUND_PHASES = ("arterial",)
FOCUS_SHELL_MM = (3.0, 6.0)
K_FOCUS_DARK = 1.5
FOCUS_MAX_DARK_SHARE = 0.15
#: In the arterial phase the focus's peak must also lie this many noise SD above the
#: parenchyma: arterial blood is far brighter than the portal pool, and in a noisy scan a
#: small artery cut across (its continuation lost in the noise) leaves an isolated focus of
#: 1-2 voxels 6-7 noise SD above the parenchyma (shared thoracic CTA: 6.0-6.5 SD); the
#: partial-volume calcifications of the phantoms lie 12-14 SD above it.
K_FOCUS_PARENCHYMA_ARTERIAL = 9.0
#: Noise-on-vessel test (contrast phases, :func:`_noise_on_vessel`): the enhanced structure is
#: searched within :data:`ON_VESSEL_BOX_MM` of the focus, leaving out what lies within
#: :data:`ON_VESSEL_NEAR_MM` of it (the focus's own smoothed halo); it counts when at least
#: :data:`ON_VESSEL_MIN_MM3` and when at most :data:`ON_VESSEL_MAX_EXCEED` of its voxels exceed
#: the threshold. Candidate study (phantoms seed 0, 11 presets, 3 contrast phases, 1 and 3 mm
#: slices; the shared CT angiogram): artery noise peaks 0.1-1.8 % above the threshold and 3.6-4.1
#: SD over the structure's 95th percentile (limit 4.5-4.8); the capsular-septal network's pieces
#: on 3 mm slices 4.6-12.9 %; every other true calcification has no such structure or stands out.
ON_VESSEL_BOX_MM = 10.0
ON_VESSEL_NEAR_MM = 1.6
ON_VESSEL_MIN_MM3 = 200.0
ON_VESSEL_MAX_EXCEED = 0.03
#: streak: in-plane length (mm) and fraction of dark ring voxels
STREAK_MIN_LENGTH_MM = 8.0
STREAK_MIN_DARK_FRACTION = 0.15
STREAK_DARK_K = 3.0


@dataclass
class CalcificationDetection:
    """Result of :func:`find_calcifications`.

    Attributes
    ----------
    labels: (Z, Y, X) int32 ndarray
        0 background, 1..n calcified foci ordered by centroid (z, y, x).
    threshold_hu: float
        HU threshold used.
    vessels: (Z, Y, X) bool ndarray or None
        Enhanced vessel tree recognised inside the liver (contrast phases), else None.
    rejected: dict of str -> int
        Number of candidate components rejected per reason
        (``extrahepatic``, ``vessel``, ``streak``, ``small``; on arterial, portal venous and
        delayed scans ``focus_context``: compact-focus candidates that touch the vessel tree
        or other bright voxels, or are too large for a partial-volume focus; on arterial
        scans ``focus_surround``: compact-focus candidates on the edge of a hypodense region).
    parenchyma_hu, noise_hu: float
        Median liver HU and robust noise SD measured in the scan.
    vessel_hu: float or None
        Vessel pool HU (contrast phases).
    phase: str
        Phase the threshold was chosen for.
    rule: str
        Which term of the threshold rule governed ("phase floor", "parenchyma", "vessel pool").
    """

    labels: np.ndarray
    threshold_hu: float
    vessels: np.ndarray | None
    rejected: dict[str, int] = field(default_factory=dict)
    parenchyma_hu: float = float("nan")
    noise_hu: float = float("nan")
    vessel_hu: float | None = None
    phase: str = "unknown"
    rule: str = ""

    @property
    def count(self) -> int:
        """Number of foci found."""
        return int(self.labels.max()) if self.labels.size else 0


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def _phase_name(phase: Any) -> str:
    if isinstance(phase, PhaseEstimate):
        phase = phase.phase
    if isinstance(phase, Phase):
        return phase.value
    if phase is None:
        return "unknown"
    name = str(phase).lower()
    return name if name in PHASE_FLOOR_HU else "unknown"


def _as_mask(obj: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = getattr(obj, "mask", obj)
    arr = np.asarray(arr)
    if arr.shape != tuple(shape):
        raise ValueError(f"{what} has shape {arr.shape}, the volume {tuple(shape)}")
    return arr.astype(bool, copy=False)


def _bbox(mask: np.ndarray, pad_vox: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding box of ``mask`` padded by ``pad_vox`` voxels (from axis projections)."""
    out = []
    for ax in range(3):
        other = tuple(i for i in range(3) if i != ax)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        out.append(slice(max(int(hit[0]) - int(pad_vox[ax]), 0), min(int(hit[-1]) + 1 + int(pad_vox[ax]), mask.shape[ax])))
    return tuple(out)  # type: ignore[return-value]


def _sample(values: np.ndarray, max_n: int = 2_000_000) -> np.ndarray:
    """Deterministic stride subsample (statistics of very large livers stay cheap)."""
    if values.size <= max_n:
        return values
    step = int(np.ceil(values.size / max_n))
    return values[::step]


def _robust_level(values: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 x MAD of ``values`` (noise clipped to :data:`NOISE_BOUNDS_HU`)."""
    v = _sample(values).astype(np.float32)
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    return med, float(np.clip(mad, *NOISE_BOUNDS_HU))


def threshold_rule(
    phase: str, parenchyma_hu: float, noise_hu: float, vessel_hu: float | None
) -> tuple[float, str]:
    """The detection threshold (HU) and the name of the term that set it.

    ``max(PHASE_FLOOR_HU[phase], parenchyma + K_PARENCHYMA*noise,
    vessel_pool + K_VESSEL*noise)``; the vessel term only when ``vessel_hu`` is given.
    """
    terms = {
        "phase floor": PHASE_FLOOR_HU.get(phase, PHASE_FLOOR_HU["unknown"]),
        "parenchyma": parenchyma_hu + K_PARENCHYMA * noise_hu,
    }
    if vessel_hu is not None:
        terms["vessel pool"] = vessel_hu + K_VESSEL * noise_hu
    name = max(terms, key=lambda k: terms[k])
    return float(terms[name]), name


def low_level_rule(
    threshold_hu: float, parenchyma_hu: float, noise_hu: float, vessel_hu: float | None
) -> float:
    """Lower hysteresis level (HU) to which a focus grows from its voxels above threshold.

    ``max(parenchyma + K_LOW*noise, vessel_pool + K_LOW*noise)``, never above the
    threshold: far enough above the parenchyma and the vessel lumen that a focus does
    not leak into them, low enough to keep the partial-volume rim of thin foci.
    """
    level = parenchyma_hu + K_LOW * noise_hu
    if vessel_hu is not None:
        level = max(level, vessel_hu + K_LOW * noise_hu)
    return float(min(level, threshold_hu))


def _extent_stats(coords: np.ndarray, spacing: np.ndarray) -> tuple[float, float, float, float]:
    """(longest extent, second extent, elongation, flatness) of voxel centres via PCA, mm."""
    pts = coords.astype(float) * spacing
    if len(pts) < 2:
        return float(spacing.max()), float(spacing.min()), 1.0, 1.0
    c = pts - pts.mean(0)
    evals, evecs = np.linalg.eigh(c.T @ c / len(c))
    axes = evecs[:, ::-1].T
    proj = c @ axes.T
    vox = np.sqrt(((axes * spacing) ** 2).sum(1))
    ext = proj.max(0) - proj.min(0) + vox
    return float(ext[0]), float(ext[1]), float(ext[0] / max(ext[1], 1e-6)), float(ext[1] / max(ext[2], 1e-6))


# --------------------------------------------------------------------------------------
# vessel tree
# --------------------------------------------------------------------------------------


@dataclass
class _VesselTree:
    labels: np.ndarray  # int32 bright components in the box (0 = none)
    is_tree: np.ndarray  # bool per component label (index 0 unused)
    sizes: np.ndarray  # voxel count per component label
    pool_hu: float | None
    smooth: np.ndarray  # the working box smoothed by VESSEL_SMOOTH_MM (float32)


def _vessel_tree(
    box_arr: np.ndarray,
    liver_box: np.ndarray,
    spacing: np.ndarray,
    parenchyma_hu: float,
    noise_hu: float,
    phase: str,
) -> _VesselTree:
    """Bright elongated components of the smoothed liver that make up the vessel tree.

    A bright component belongs to the tree when it is long and thin
    (:data:`VESSEL_TREE_MIN_EXTENT_MM`, :data:`VESSEL_TREE_MIN_RATIO`), large (at least
    :data:`VESSEL_TREE_MIN_VOLUME_MM3` and :data:`VESSEL_TREE_MIN_SHARE` of the largest
    such component, so a calcified septum or rim is not mistaken for a vessel) and its
    median HU is within what enhanced blood reaches (:data:`VESSEL_MAX_HU`).
    """
    ceiling = VESSEL_MAX_HU.get(phase, VESSEL_MAX_HU["unknown"])
    sigma = VESSEL_SMOOTH_MM / spacing
    smooth = ndi.gaussian_filter(box_arr.astype(np.float32), sigma=sigma, mode="nearest")
    # the liver's outermost voxel layer is left out: there the smoothing (and partial
    # volume) mixes in ribs, kidney or bowel contrast next to the liver
    interior = liver_box & ~surface_voxels(liver_box)
    bright = interior & (smooth > parenchyma_hu + VESSEL_DELTA_HU)
    lab = cc3d.connected_components(bright, connectivity=26).astype(np.int32, copy=False)
    n = int(lab.max())
    is_tree = np.zeros(n + 1, dtype=bool)
    if n == 0:
        return _VesselTree(lab, is_tree, np.zeros(1, dtype=np.int64), None, smooth)
    stats = cc3d.statistics(lab)
    counts = np.asarray(stats["voxel_counts"])
    boxes = stats["bounding_boxes"]
    vox_mm3 = float(np.prod(spacing))
    elongated = []
    for k in range(1, n + 1):
        if counts[k] * vox_mm3 < VESSEL_TREE_MIN_VOLUME_MM3:
            continue
        bb = boxes[k]
        ext = np.array([(s.stop - s.start) for s in bb]) * spacing
        longest = float(np.sqrt((ext**2).sum()))
        d_eq = (6.0 * counts[k] * vox_mm3 / np.pi) ** (1 / 3)
        if longest >= VESSEL_TREE_MIN_EXTENT_MM and longest / d_eq >= VESSEL_TREE_MIN_RATIO:
            elongated.append(k)
    if elongated:
        largest = max(counts[k] for k in elongated)
        big = [k for k in elongated if counts[k] >= VESSEL_TREE_MIN_SHARE * largest]
        for k in big:
            bb = boxes[k]
            med = float(np.median(box_arr[bb][lab[bb] == k]))
            if med <= ceiling:
                is_tree[k] = True
    if not is_tree.any():
        return _VesselTree(lab, is_tree, counts, None, smooth)
    in_tree = is_tree[lab]
    # Voxels next to anything clearly brighter than blood (calcium touching a vessel)
    # do not speak for the vessel lumen. Two passes: first exclude what is above the
    # phase's blood ceiling, then what is above the pool so measured.
    cube = np.ones((3, 3, 3), bool)
    pool: float | None = None
    for level in (ceiling + K_VESSEL * noise_hu, None):
        if level is None:
            if pool is None:
                break
            level = pool + (K_VESSEL + 1.0) * noise_hu
        keep = in_tree
        too_bright = in_tree & (box_arr > level)
        crop = _bbox(too_bright, np.full(3, 2))
        if crop is not None:
            keep = in_tree.copy()
            keep[crop] &= ~ndi.binary_dilation(too_bright[crop], structure=cube, iterations=2)
        vals = smooth[keep]
        vals = vals[vals <= ceiling]
        if vals.size == 0:
            break
        pool = float(np.percentile(_sample(vals), VESSEL_POOL_PERCENTILE))
    if pool is None:
        return _VesselTree(lab, is_tree, counts, None, smooth)
    pool = min(pool, VESSEL_POOL_MAX_HU.get(phase, VESSEL_POOL_MAX_HU["unknown"]))
    return _VesselTree(lab, is_tree, counts, pool, smooth)


# --------------------------------------------------------------------------------------
# main entry point
# --------------------------------------------------------------------------------------


def _continues_into_bone(
    a: np.ndarray,
    comp: np.ndarray,
    sl: tuple[slice, ...],
    liver: np.ndarray,
    region: np.ndarray,
    spacing: np.ndarray,
    level_hu: float,
    threshold_hu: float,
) -> bool:
    """True when a candidate reaching out of the liver is a piece of a bright structure beyond it.

    The candidate ``comp`` (at ``sl`` of the box arrays) is grown, outside the liver only, through
    voxels above ``level_hu`` within :data:`BONE_CONTINUATION_MM`; it is such a piece when the
    grown structure holds more voxels above ``threshold_hu`` outside the search ``region`` than
    the candidate holds inside it.
    """
    pad = np.ceil(BONE_CONTINUATION_MM / spacing).astype(int)
    win = tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(sl, pad, a.shape))
    inner = tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(sl, win))
    seed = np.zeros(a[win].shape, bool)
    seed[inner] = comp
    grow = ((a[win] > level_hu) & ~liver[win]) | seed
    lab = cc3d.connected_components(grow, connectivity=26)
    ids = np.unique(lab[seed])
    struct = np.isin(lab, ids[ids > 0])
    bright = a[win] > threshold_hu
    beyond = int(np.count_nonzero(struct & bright & ~region[win]))
    within = int(np.count_nonzero(seed & bright & region[win]))
    return beyond > within


def _encloses_cavity(image: np.ndarray, comp: np.ndarray, liver: np.ndarray, spacing: np.ndarray) -> bool:
    """True when ``comp`` is a calcified shell around a cavity darker than the liver.

    A rib or costal cartilage bends around the liver, so its convex hull holds liver or
    muscle; an eggshell calcification holds cyst fluid or debris (see
    :func:`calcscope.detect._lesion.calcified_cavities`).
    """
    from ._lesion import calcified_cavities

    return bool(calcified_cavities(image, comp, liver, tuple(float(x) for x in spacing)).any())


def find_calcifications(
    volume: Volume,
    liver: Any,
    *,
    phase: Phase | PhaseEstimate | str | None,
    margin: np.ndarray | None = None,
    min_volume_mm3: float = 1.0,
    threshold_hu: float | None = None,
) -> CalcificationDetection:
    """Find calcified foci in the liver and its capsular margin.

    Parameters
    ----------
    volume: Volume
        CT in HU.
    liver: (Z, Y, X) bool ndarray, or an object with a ``mask`` attribute
        Liver mask on the volume's grid.
    phase: Phase, PhaseEstimate or str
        Contrast phase; chooses the threshold floor and whether the vessel pool is
        measured (every phase except ``non_contrast``).
    margin: (Z, Y, X) bool ndarray, optional
        Capsular margin (shell outside the liver) also searched.
    min_volume_mm3: float
        Smallest thresholded focus volume kept (mm³).
    threshold_hu: float, optional
        Use this threshold instead of the rule (the vessel tree is still measured and
        the rejections still apply).

    Returns
    -------
    CalcificationDetection
    """
    arr = volume.array
    shape = arr.shape
    liver_m = _as_mask(liver, shape, "liver mask")
    region = liver_m if margin is None else (liver_m | _as_mask(margin, shape, "capsular margin"))
    phase_name = _phase_name(phase)
    spacing = np.asarray(volume.spacing_zyx, dtype=float)
    empty = np.zeros(shape, dtype=np.int32)
    if not liver_m.any():
        thr = float(threshold_hu) if threshold_hu is not None else PHASE_FLOOR_HU[phase_name]
        return CalcificationDetection(empty, thr, None, {}, phase=phase_name, rule="empty liver")

    pad = np.ceil(BOX_PAD_MM / spacing).astype(int)
    box = _bbox(region, pad)
    assert box is not None
    a = arr[box]
    liv = liver_m[box]
    reg = region[box]

    parenchyma_hu, noise_hu = _robust_level(a[liv])
    tree: _VesselTree | None = None
    if phase_name != "non_contrast":
        tree = _vessel_tree(a, liv, spacing, parenchyma_hu, noise_hu, phase_name)
    vessel_hu = None if tree is None else tree.pool_hu
    thr, rule = threshold_rule(phase_name, parenchyma_hu, noise_hu, vessel_hu)
    if threshold_hu is not None:
        thr, rule = float(threshold_hu), "given"

    # hysteresis: a focus is a 26-connected component of voxels above the low level
    # that holds at least one voxel above the threshold, so thin or partial-volume
    # foci are not broken into pieces by the threshold
    low = low_level_rule(thr, parenchyma_hu, noise_hu, vessel_hu)
    lab = cc3d.connected_components(a > low, connectivity=26).astype(np.int32, copy=False)
    n = int(lab.max())
    if n:
        seeded = np.zeros(n + 1, dtype=bool)
        seeded[np.unique(lab[a > thr])] = True
        seeded[0] = False
        lab = np.where(seeded[lab], lab, 0).astype(np.int32, copy=False)
    rejected = {"extrahepatic": 0, "vessel": 0, "streak": 0, "small": 0}
    if tree is not None:
        rejected["noise_on_vessel"] = 0
    keep: list[tuple[tuple[float, float, float], int]] = []
    if n:
        objs = ndi.find_objects(lab, max_label=n)
        vox_mm3 = float(np.prod(spacing))
        dark_level = parenchyma_hu - STREAK_DARK_K * noise_hu
        for k in range(1, n + 1):
            sl = objs[k - 1]
            if sl is None:
                continue
            comp = lab[sl] == k
            in_region = int(np.count_nonzero(comp & reg[sl]))
            if in_region == 0:
                continue  # entirely outside: not ours, not counted
            total = int(np.count_nonzero(comp))
            outside = total - in_region
            if outside > MAX_OUTSIDE_FRACTION * total or (
                outside * vox_mm3 > MAX_OUTSIDE_MM3 and not _encloses_cavity(a[sl], comp, liv[sl], spacing)
            ):
                rejected["extrahepatic"] += 1
                continue
            if (comp & ~liv[sl]).any() and _continues_into_bone(a, comp, sl, liv, reg, spacing, parenchyma_hu + K_LOW * noise_hu, thr) and not (
                _encloses_cavity(a[sl], comp, liv[sl], spacing)
            ):
                rejected["extrahepatic"] += 1
                continue
            off = np.array([s.start for s in sl])
            coords = np.argwhere(comp) + off
            if total * vox_mm3 < min_volume_mm3:
                rejected["small"] += 1
                continue
            longest, second, elong, flat = _extent_stats(coords, spacing)
            if _is_streak(a, coords, sl, comp, spacing, longest, elong, dark_level):
                rejected["streak"] += 1
                continue
            if tree is not None and _is_vessel(a, tree, coords, second, elong, flat, phase_name):
                rejected["vessel"] += 1
                continue
            if tree is not None and _noise_on_vessel(a, tree.smooth, coords, spacing, parenchyma_hu, noise_hu, thr):
                rejected["noise_on_vessel"] += 1
                continue
            cen = tuple(float(c) for c in coords.mean(0))
            keep.append((cen, k))  # type: ignore[arg-type]

    # second tier: isolated compact foci between the vessel pool and the threshold
    if tree is not None and vessel_hu is not None and phase_name in FOCUS_PHASES and threshold_hu is None:
        foci, n_ctx, n_dark = _compact_foci(
            a, lab, reg, tree, spacing, parenchyma_hu, noise_hu, vessel_hu, thr,
            liver=liv if phase_name in FOCUS_SURROUND_PHASES else None, phase=phase_name,
        )
        rejected["focus_context"] = n_ctx
        if phase_name in FOCUS_SURROUND_PHASES:
            rejected["focus_surround"] = n_dark
        for j, (sl, comp) in enumerate(foci, start=n + 1):
            lab[sl][comp] = j
            off = np.array([s.start for s in sl])
            keep.append((tuple(float(c) for c in (np.argwhere(comp) + off).mean(0)), j))  # type: ignore[arg-type]
        n += len(foci)

    keep.sort(key=lambda t: t[0])
    remap = np.zeros(n + 1, dtype=np.int32)
    for new, (_, k) in enumerate(keep, start=1):
        remap[k] = new
    labels = np.zeros(shape, dtype=np.int32)
    labels[box] = remap[lab]

    vessels = None
    if tree is not None:
        vessels = np.zeros(shape, dtype=bool)
        vessels[box] = tree.is_tree[tree.labels] & (labels[box] == 0)
    return CalcificationDetection(
        labels=labels,
        threshold_hu=float(thr),
        vessels=vessels,
        rejected=rejected,
        parenchyma_hu=parenchyma_hu,
        noise_hu=noise_hu,
        vessel_hu=vessel_hu,
        phase=phase_name,
        rule=rule,
    )


def focus_seed_rule(
    parenchyma_hu: float, noise_hu: float, vessel_hu: float, phase: str = "portal_venous"
) -> float:
    """Seed level (HU) of the compact-focus rule.

    ``max(parenchyma + k*noise, vessel_pool + K_FOCUS_POOL*noise)`` with ``k`` =
    :data:`K_FOCUS_PARENCHYMA_ARTERIAL` in the arterial phase, else :data:`K_FOCUS_PARENCHYMA`.
    """
    k = K_FOCUS_PARENCHYMA_ARTERIAL if phase == "arterial" else K_FOCUS_PARENCHYMA
    return float(max(parenchyma_hu + k * noise_hu, vessel_hu + K_FOCUS_POOL * noise_hu))


def _compact_foci(
    a: np.ndarray,
    lab: np.ndarray,
    reg: np.ndarray,
    tree: _VesselTree,
    spacing: np.ndarray,
    parenchyma_hu: float,
    noise_hu: float,
    vessel_hu: float,
    threshold_hu: float,
    *,
    liver: np.ndarray | None = None,
    phase: str = "portal_venous",
) -> tuple[list[tuple[tuple[slice, ...], np.ndarray]], int, int]:
    """Isolated compact foci whose peak lies between :func:`focus_seed_rule` and the threshold.

    Parameters
    ----------
    a: ndarray
        HU in the working box.
    lab: int32 ndarray
        Components of the main pass (kept or rejected); a focus may not touch them.
    reg: bool ndarray
        Search region (liver and capsular margin) in the box.
    tree: _VesselTree
        Vessel tree of the box.
    spacing: ndarray
        Voxel spacing (z, y, x), mm.
    parenchyma_hu, noise_hu, vessel_hu, threshold_hu: float
        Reference levels and the main threshold (HU).
    liver: bool ndarray, optional
        Liver mask in the box; when given, a focus whose surround is hypodense
        (:func:`_dark_surround_share` above :data:`FOCUS_MAX_DARK_SHARE`) is left out.
    phase: str
        Phase name (chooses the seed, :func:`focus_seed_rule`).

    Returns
    -------
    foci: list of (slices, bool ndarray)
        Each accepted focus as its bounding box in ``a`` and its mask there.
    n_context: int
        Candidates rejected because they touch the vessel tree or other bright voxels,
        or are too large or too long to be a partial-volume focus.
    n_surround: int
        Candidates rejected because they lie on the edge of a hypodense region.
    """
    seed = focus_seed_rule(parenchyma_hu, noise_hu, vessel_hu, phase)
    if seed >= threshold_hu:
        return [], 0, 0
    low = parenchyma_hu + K_LOW * noise_hu
    bright = a > low
    seeds = (a > seed) & reg & (lab == 0)
    if not seeds.any():
        return [], 0, 0
    lab2 = cc3d.connected_components(bright, connectivity=26).astype(np.int32, copy=False)
    ids = np.unique(lab2[seeds])
    ids = ids[ids > 0]
    vox_mm3 = float(np.prod(spacing))
    reach = FOCUS_CLEAR_MM if liver is None else max(FOCUS_CLEAR_MM, FOCUS_SHELL_MM[1])
    pad = np.ceil(reach / spacing).astype(int) + 1
    objs = ndi.find_objects(lab2)
    out: list[tuple[tuple[slice, ...], np.ndarray]] = []
    n_ctx = n_dark = 0
    for k in ids:
        sl = objs[int(k) - 1]
        comp = lab2[sl] == k
        if (lab[sl][comp] > 0).any():
            continue  # holds a main-pass component: decided there
        total = int(np.count_nonzero(comp))
        ext = np.array([s.stop - s.start for s in sl]) * spacing
        if total * vox_mm3 > FOCUS_MAX_MM3 or ext.max() > FOCUS_MAX_EXTENT_MM:
            n_ctx += 1
            continue
        if np.count_nonzero(comp & reg[sl]) <= MAX_OUTSIDE_FRACTION * total:
            continue  # mostly outside the liver: not ours
        big = tuple(slice(max(s.start - int(p), 0), min(s.stop + int(p), dim)) for s, p, dim in zip(sl, pad, a.shape))
        c_big = lab2[big] == k
        dist = ndi.distance_transform_edt(~c_big, sampling=spacing)
        zone = (dist <= FOCUS_CLEAR_MM) & ~c_big
        # the tree is looked up in the focus's small neighbourhood only, not over the box
        if (tree.is_tree[tree.labels[big]] & zone).any() or int(np.count_nonzero(bright[big] & zone)) > FOCUS_MAX_NEIGHBOURS:
            n_ctx += 1
            continue
        if liver is not None and _dark_surround_share(a[big], liver[big], dist, parenchyma_hu, noise_hu) > FOCUS_MAX_DARK_SHARE:
            n_dark += 1
            continue
        out.append((sl, comp))
    return out, n_ctx, n_dark


def _dark_surround_share(
    a: np.ndarray, liver: np.ndarray, dist_mm: np.ndarray, parenchyma_hu: float, noise_hu: float
) -> float:
    """Share of the liver voxels around a focus that are darker than the parenchyma.

    Parameters
    ----------
    a: ndarray
        HU around the focus.
    liver: bool ndarray
        Liver mask on the same crop.
    dist_mm: float ndarray
        Distance (mm) of each voxel from the focus.
    parenchyma_hu, noise_hu: float
        Parenchyma level and noise SD (HU).

    Returns
    -------
    float
        Share of the liver voxels between :data:`FOCUS_SHELL_MM` from the focus below
        ``parenchyma - K_FOCUS_DARK * noise`` (0 when the shell holds no liver voxel). A
        haemangioma's enhancing nodule lies on the edge of the hypodense mass, so part of
        its shell is mass; a calcification in parenchyma sees only noise (about 0.07).
    """
    shell = (dist_mm > FOCUS_SHELL_MM[0]) & (dist_mm <= FOCUS_SHELL_MM[1]) & liver
    n = int(np.count_nonzero(shell))
    if n == 0:
        return 0.0
    return float(np.count_nonzero(a[shell] < parenchyma_hu - K_FOCUS_DARK * noise_hu)) / n


def _is_vessel(
    a: np.ndarray,
    tree: _VesselTree,
    coords: np.ndarray,
    thickness_mm: float,
    elongation: float,
    flatness: float,
    phase: str,
) -> bool:
    """A tubular candidate that is part of a larger vessel-tree segment and whose peak
    stays within what enhanced blood reaches in this phase (:data:`VESSEL_MAX_HU`)."""
    if elongation < VESSEL_MIN_ELONGATION or thickness_mm > VESSEL_MAX_THICKNESS_MM:
        return False
    if flatness > VESSEL_MAX_FLATNESS:
        return False  # a strip of a sheet (septum), not a round tube
    ids = tree.labels[tuple(coords.T)]
    ids = ids[ids > 0]
    if len(ids) == 0:
        return False
    k = int(np.bincount(ids).argmax())
    if not tree.is_tree[k] or tree.sizes[k] < VESSEL_MIN_TREE_RATIO * len(coords):
        return False
    peak = float(a[tuple(coords.T)].max())
    return peak <= VESSEL_MAX_HU.get(phase, VESSEL_MAX_HU["unknown"])


def _noise_on_vessel(
    a: np.ndarray,
    smooth: np.ndarray,
    coords: np.ndarray,
    spacing: np.ndarray,
    parenchyma_hu: float,
    noise_hu: float,
    threshold_hu: float,
) -> bool:
    """Whether a focus is a noise peak of a sub-threshold enhanced structure it lies on.

    The structure is the 26-connected region of the smoothed image (``smooth``: the working
    box smoothed by :data:`VESSEL_SMOOTH_MM`, as the vessel tree reads it) above parenchyma + :data:`VESSEL_DELTA_HU` that holds the focus,
    within :data:`ON_VESSEL_BOX_MM` of it, minus the voxels within :data:`ON_VESSEL_NEAR_MM` of
    the focus. It explains the focus when it is large (:data:`ON_VESSEL_MIN_MM3`), stays below
    the threshold (at most :data:`ON_VESSEL_MAX_EXCEED` of its voxels above it) and the focus's
    peak exceeds the structure's 95th percentile by less than the expected maximum of its N
    voxels' noise (``sqrt(2 ln N)`` SD) plus one SD.
    """
    pad = np.ceil(ON_VESSEL_BOX_MM / spacing).astype(int)
    lo = np.maximum(coords.min(0) - pad, 0)
    hi = np.minimum(coords.max(0) + pad + 1, a.shape)
    sl = tuple(slice(int(p), int(q)) for p, q in zip(lo, hi))
    box = a[sl].astype(np.float32)
    focus = np.zeros(box.shape, dtype=bool)
    focus[tuple((coords - lo).T)] = True
    lab = cc3d.connected_components((smooth[sl] > parenchyma_hu + VESSEL_DELTA_HU) | focus, connectivity=26)
    ids = np.unique(lab[focus])
    near = ndi.distance_transform_edt(~focus, sampling=spacing) <= ON_VESSEL_NEAR_MM
    structure = np.isin(lab, ids[ids > 0]) & ~near
    n = int(np.count_nonzero(structure))
    if n * float(np.prod(spacing)) < ON_VESSEL_MIN_MM3:
        return False
    vals = box[structure]
    if np.count_nonzero(vals > threshold_hu) > ON_VESSEL_MAX_EXCEED * n:
        return False  # itself above the threshold in places: calcified, not blood
    excess = (float(box[focus].max()) - float(np.percentile(vals, 95.0))) / noise_hu
    return excess < np.sqrt(2.0 * np.log(n)) + 1.0


def _is_streak(
    a: np.ndarray,
    coords: np.ndarray,
    sl: tuple[slice, ...],
    comp: np.ndarray,
    spacing: np.ndarray,
    longest_mm: float,
    elongation: float,
    dark_level_hu: float,
) -> bool:
    """One-slice, in-plane elongated component flanked by dark banding."""
    if comp.shape[0] != 1 or longest_mm < STREAK_MIN_LENGTH_MM or elongation < 3.0:
        return False
    z = int(coords[0, 0])
    plane = np.pad(comp[0], 2)
    ring = ndi.binary_dilation(plane, iterations=2) & ~plane
    # the padded ring runs past the crop: read it from the full slice
    y0, x0 = sl[1].start, sl[2].start
    ys, xs = np.nonzero(ring)
    ys = ys + y0 - 2
    xs = xs + x0 - 2
    ok = (ys >= 0) & (ys < a.shape[1]) & (xs >= 0) & (xs < a.shape[2])
    vals = a[z, ys[ok], xs[ok]]
    if vals.size == 0:
        return False
    return float(np.mean(vals < dark_level_hu)) >= STREAK_MIN_DARK_FRACTION
