"""Liver-level pattern of calcification: count, sizes and distribution class.

The distribution classes follow the patterns the seeds describe
(``seeds/001_fc47ebb88f3c1e60.txt``): a single isolated focus; a few scattered foci;
many foci spread evenly through both lobes (healed tuberculosis: 8-12 mm foci
evenly in the right and left lobes); a capsular plus septal network ("map-like"
liver of schistosomiasis); and foci clustered within lesions (calcified metastases,
seeds/000_4bac6cbc2ba33c76.txt).

Each class is decided by one small rule function below; every threshold lives in
:data:`PATTERN_RULES`. Rules are tried in the order of :func:`classify_distribution`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..model import CalcificationPattern, Finding

__all__ = ["calcification_pattern", "classify_distribution", "PATTERN_RULES", "clark_evans_ratio"]

#: thresholds of the distribution rules
PATTERN_RULES: dict[str, float] = {
    # clustered within lesions: share of foci with a lesion parent
    "clustered_min_in_lesion_fraction": 0.5,
    # capsular + septal network
    "network_min_count": 5,
    "network_min_capsular": 3,
    "network_min_capsular_or_linear_fraction": 0.6,
    # diffuse and even in both lobes
    "diffuse_min_count": 6,
    "diffuse_min_minor_lobe_fraction": 0.15,
    "diffuse_min_clark_evans": 0.6,
    # spatial clustering without lesion information
    "spatial_cluster_link_mm": 25.0,
    "spatial_cluster_min_fraction": 0.8,
    "spatial_cluster_min_count": 4,
}

#: relations that put a focus "inside a lesion" (set by describe.associate)
_LESION_RELATIONS = ("centre", "periphery", "wall", "whole")


def clark_evans_ratio(points_mm: np.ndarray, region_volume_mm3: float) -> float:
    """Clark-Evans aggregation index of points in a 3-D region.

    Observed mean nearest-neighbour distance divided by its expectation for the same
    number of points spread at random (Poisson) in ``region_volume_mm3``:
    ``0.554 * (V / n) ** (1/3)``. About 1 for random spread, above 1 for even
    (regular) spread, well below 1 for clustering.
    """
    pts = np.asarray(points_mm, dtype=float)
    n = len(pts)
    if n < 2 or region_volume_mm3 <= 0:
        return float("nan")
    d, _ = cKDTree(pts).query(pts, k=2)
    observed = float(d[:, 1].mean())
    expected = 0.554 * (region_volume_mm3 / n) ** (1.0 / 3.0)
    return observed / expected


def _in_lesion(f: Finding) -> bool:
    return f.parent_id is not None and f.relation in _LESION_RELATIONS


def _is_capsular(f: Finding) -> bool:
    return f.depth == "capsular" or "capsular" in f.location


def _rule_clustered_in_lesions(calcs: list[Finding]) -> str | None:
    n_in = sum(_in_lesion(f) for f in calcs)
    if n_in and n_in >= PATTERN_RULES["clustered_min_in_lesion_fraction"] * len(calcs):
        return f"{n_in} of {len(calcs)} foci lie within lesions"
    return None


def _rule_network(calcs: list[Finding]) -> str | None:
    r = PATTERN_RULES
    n = len(calcs)
    n_caps = sum(_is_capsular(f) for f in calcs)
    n_caps_or_lin = sum(_is_capsular(f) or f.shape == "linear" or "septal" in f.location for f in calcs)
    if (
        n >= r["network_min_count"]
        and n_caps >= r["network_min_capsular"]
        and n_caps_or_lin >= r["network_min_capsular_or_linear_fraction"] * n
    ):
        return f"{n_caps} capsular and {n_caps_or_lin - n_caps} linear/septal of {n} foci"
    return None


def _rule_diffuse_even(calcs: list[Finding], liver_volume_ml: float | None) -> str | None:
    r = PATTERN_RULES
    n = len(calcs)
    if n < r["diffuse_min_count"]:
        return None
    right = sum(f.lobe == "right" for f in calcs)
    left = sum(f.lobe == "left" for f in calcs)
    if right + left == 0 or min(right, left) < r["diffuse_min_minor_lobe_fraction"] * (right + left):
        return None
    pts = np.array([f.centroid_mm for f in calcs if f.centroid_mm is not None], dtype=float)
    if liver_volume_ml and len(pts) >= 2:
        ce = clark_evans_ratio(pts, liver_volume_ml * 1000.0)
        if ce < r["diffuse_min_clark_evans"]:
            return None
        return f"{n} foci in both lobes (right {right}, left {left}), Clark-Evans spread index {ce:.2f}"
    return f"{n} foci in both lobes (right {right}, left {left})"


def _rule_spatial_cluster(calcs: list[Finding]) -> str | None:
    r = PATTERN_RULES
    pts = np.array([f.centroid_mm for f in calcs if f.centroid_mm is not None], dtype=float)
    if len(pts) < r["spatial_cluster_min_count"]:
        return None
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = cKDTree(pts).query_pairs(r["spatial_cluster_link_mm"], output_type="ndarray")
    n = len(pts)
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else coo_matrix((n, n))
    _, lab = connected_components(g, directed=False)
    sizes = np.bincount(lab)
    big = sizes[sizes >= 2].sum()
    if len(sizes[sizes >= 2]) <= 2 and big >= r["spatial_cluster_min_fraction"] * n:
        return f"{int(big)} of {n} foci gather in {len(sizes[sizes >= 2])} cluster(s)"
    return None


def classify_distribution(
    calcs: list[Finding], *, liver_volume_ml: float | None = None
) -> tuple[str | None, str]:
    """Distribution class of a set of calcification findings and the reason.

    Order: none -> single -> clustered (in lesions) -> capsular_septal_network ->
    diffuse_even -> clustered (spatially, when no lesion information) -> scattered.
    """
    n = len(calcs)
    if n == 0:
        return None, "no calcification"
    if n == 1:
        return "single", "one focus"
    why = _rule_clustered_in_lesions(calcs)
    if why:
        return "clustered", why
    why = _rule_network(calcs)
    if why:
        return "capsular_septal_network", why
    why = _rule_diffuse_even(calcs, liver_volume_ml)
    if why:
        return "diffuse_even", why
    if not any(f.parent_id for f in calcs):
        why = _rule_spatial_cluster(calcs)
        if why:
            return "clustered", why
    return "scattered", f"{n} foci, not evenly spread through both lobes"


def calcification_pattern(
    calcs: list[Finding], *, liver_volume_ml: float | None = None
) -> CalcificationPattern:
    """Summarise the calcifications of one liver.

    Parameters
    ----------
    calcs: list of Finding
        Calcification findings (other kinds are ignored), ideally after
        ``describe.associate`` has set ``parent_id``/``relation``.
    liver_volume_ml: float, optional
        Liver volume; enables the spatial evenness test of ``diffuse_even``.
    """
    calcs = [f for f in calcs if f.kind == "calcification"]
    dist, why = classify_distribution(calcs, liver_volume_ml=liver_volume_ml)
    sizes = np.array([f.size_mm for f in calcs if f.size_mm is not None], dtype=float)
    return CalcificationPattern(
        count=sum(f.count for f in calcs),
        distribution=dist,  # type: ignore[arg-type]
        size_mm_min=round(float(sizes.min()), 2) if sizes.size else None,
        size_mm_median=round(float(np.median(sizes)), 2) if sizes.size else None,
        size_mm_max=round(float(sizes.max()), 2) if sizes.size else None,
        right_lobe_count=sum(f.lobe == "right" for f in calcs),
        left_lobe_count=sum(f.lobe == "left" for f in calcs),
        in_lesion_count=sum(_in_lesion(f) for f in calcs),
        in_duct_count=sum(f.relation == "in_duct" or "along_duct" in f.location for f in calcs),
        capsular_count=sum(_is_capsular(f) for f in calcs),
        reason=why,
    )
