"""Liver-level pattern of calcification: count, sizes and distribution class.

The distribution classes follow the patterns the seeds describe
(``seeds/001_fc47ebb88f3c1e60.txt``): a single isolated focus; a few scattered foci;
many foci spread evenly through both lobes (healed tuberculosis: 8-12 mm foci
evenly in the right and left lobes); a capsular plus septal network ("map-like"
liver of schistosomiasis); and foci clustered within lesions (calcified metastases,
seeds/000_4bac6cbc2ba33c76.txt).

Foci are first grouped into calcification *sites* (:func:`units`: a grit cluster or
a rim broken into pieces is one site). Each class is decided by one small rule
function below; every threshold lives in :data:`PATTERN_RULES`. Rules are tried in
the order of :func:`classify_distribution`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..model import CalcificationPattern, Finding

__all__ = ["calcification_pattern", "classify_distribution", "units", "PATTERN_RULES", "clark_evans_ratio"]

#: thresholds of the distribution rules
PATTERN_RULES: dict[str, float] = {
    # foci whose surfaces come this close (mm) form one unit (grit particles, the pieces
    # of a broken rim); beaded stones always count one by one
    "unit_gap_mm": 2.0,
    # grit particles this close (mm) belong to the same cluster (as in describe.SHAPE_RULES)
    "grit_link_mm": 10.0,
    # clustered within lesions: share of units with a lesion parent
    "clustered_min_in_lesion_fraction": 0.5,
    # capsular + septal network
    "network_min_count": 5,
    "network_min_capsular": 3,
    "network_min_capsular_or_linear_fraction": 0.6,
    # diffuse and even in both lobes
    "diffuse_min_count": 8,
    "diffuse_min_minor_lobe_fraction": 0.15,
    "diffuse_min_clark_evans": 0.6,
    # a spatial cluster: every unit within this distance (mm) of the units' mean
    "spatial_cluster_radius_mm": 40.0,
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


def units(calcs: list[Finding]) -> list[list[Finding]]:
    """Group foci into calcification sites.

    Foci whose centroids are closer than half the sum of their sizes plus
    ``unit_gap_mm`` (surfaces about touching: the pieces of a rim broken by partial
    volume), and grit particles within ``grit_link_mm`` of each other, form one site;
    beaded foci (stones in a duct) each stay a site of their own.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(calcs)
    if n == 0:
        return []
    pts = np.array([f.centroid_mm if f.centroid_mm is not None else (np.nan,) * 3 for f in calcs], dtype=float)
    size = np.array([f.size_mm or 0.0 for f in calcs], dtype=float)
    beaded = np.array([f.shape == "beaded" for f in calcs])
    rows, cols = [], []
    for i in range(n):
        for j in range(i + 1, n):
            if beaded[i] or beaded[j] or not np.all(np.isfinite(pts[[i, j]])):
                continue
            dist = np.linalg.norm(pts[i] - pts[j])
            both_grit = calcs[i].shape == "grit" and calcs[j].shape == "grit"
            if dist <= 0.5 * (size[i] + size[j]) + PATTERN_RULES["unit_gap_mm"] or (
                both_grit and dist <= PATTERN_RULES["grit_link_mm"]
            ):
                rows.append(i)
                cols.append(j)
    g = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    return [[calcs[i] for i in np.flatnonzero(lab == c)] for c in np.unique(lab)]


def _unit_centre(u: list[Finding]) -> np.ndarray:
    pts = np.array([f.centroid_mm for f in u if f.centroid_mm is not None], dtype=float)
    return pts.mean(0) if len(pts) else np.full(3, np.nan)


def _unit_lobe(u: list[Finding]) -> str | None:
    lobes = [f.lobe for f in u if f.lobe]
    return max(set(lobes), key=lobes.count) if lobes else None


def _rule_single_lesion(calcs: list[Finding]) -> str | None:
    parents = {f.parent_id for f in calcs}
    if len(parents) == 1 and all(_in_lesion(f) for f in calcs):
        return f"all {len(calcs)} foci lie in one lesion ({parents.pop()})"
    return None


def _rule_clustered_in_lesions(sites: list[list[Finding]]) -> str | None:
    n_in = sum(any(_in_lesion(f) for f in u) for u in sites)
    parents = {f.parent_id for u in sites for f in u if _in_lesion(f)}
    if len(parents) >= 2 and n_in >= PATTERN_RULES["clustered_min_in_lesion_fraction"] * len(sites):
        return f"{n_in} of {len(sites)} calcification sites lie within {len(parents)} lesions"
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


def _rule_diffuse_even(sites: list[list[Finding]], liver_volume_ml: float | None) -> str | None:
    r = PATTERN_RULES
    n = len(sites)
    if n < r["diffuse_min_count"]:
        return None
    lobes = [_unit_lobe(u) for u in sites]
    right = lobes.count("right")
    left = lobes.count("left")
    if right + left == 0 or min(right, left) < r["diffuse_min_minor_lobe_fraction"] * (right + left):
        return None
    pts = np.array([_unit_centre(u) for u in sites])
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if liver_volume_ml and len(pts) >= 2:
        ce = clark_evans_ratio(pts, liver_volume_ml * 1000.0)
        if ce < r["diffuse_min_clark_evans"]:
            return None
        return f"{n} foci in both lobes (right {right}, left {left}), Clark-Evans spread index {ce:.2f}"
    return f"{n} foci in both lobes (right {right}, left {left})"


def _rule_spatial_cluster(sites: list[list[Finding]]) -> str | None:
    pts = np.array([_unit_centre(u) for u in sites])
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 2:
        return None
    radius = float(np.max(np.linalg.norm(pts - pts.mean(0), axis=1)))
    if radius <= PATTERN_RULES["spatial_cluster_radius_mm"]:
        return f"{len(pts)} calcification sites within {radius:.0f} mm of their centre"
    return None


def classify_distribution(
    calcs: list[Finding], *, liver_volume_ml: float | None = None
) -> tuple[str | None, str]:
    """Distribution class of a set of calcification findings and the reason.

    Foci are first grouped into sites (:func:`units`). Order of the rules: none ->
    single (one site, or every focus in the same lesion) -> clustered (sites within
    two or more lesions) -> capsular_septal_network -> diffuse_even -> clustered
    (every site within ``spatial_cluster_radius_mm`` of their centre) -> scattered.
    """
    if not calcs:
        return None, "no calcification"
    sites = units(calcs)
    if len(sites) == 1:
        return "single", "one calcification site" + (f" ({len(calcs)} foci)" if len(calcs) > 1 else "")
    why = _rule_single_lesion(calcs)
    if why:
        return "single", why
    why = _rule_clustered_in_lesions(sites)
    if why:
        return "clustered", why
    why = _rule_network(calcs)
    if why:
        return "capsular_septal_network", why
    why = _rule_diffuse_even(sites, liver_volume_ml)
    if why:
        return "diffuse_even", why
    why = _rule_spatial_cluster(sites)
    if why:
        return "clustered", why
    return "scattered", f"{len(sites)} calcification sites, neither grouped nor evenly spread"


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
