"""Matching the findings of two studies after registration.

Current centroids are mapped into the prior frame; a finding can only be paired
with one of a compatible kind (calcification/duct stone, lesion/cyst, duct
dilatation) lying within a distance gate that scales with size:
``gate = max(min_gate_mm, size_factor * max(prior size, current size))``.
The pairs minimising the total distance are found with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`). Unpaired current findings are
*new*, unpaired prior findings *resolved*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..model import Finding

__all__ = ["KIND_GROUPS", "MatchPair", "MatchResult", "kind_group", "gate_mm", "match_findings"]

#: kinds that may be paired with each other
KIND_GROUPS: dict[str, str] = {
    "calcification": "calcific",
    "duct_stone": "calcific",
    "lesion": "mass",
    "cyst": "mass",
    "duct_dilatation": "duct",
}

_INFEASIBLE = 1e9


@dataclass(frozen=True)
class MatchPair:
    """One pairing: indices into the prior and current lists and the registered distance (mm)."""

    prior_index: int
    current_index: int
    distance_mm: float
    gate_mm: float


@dataclass
class MatchResult:
    """Pairs, plus indices of new (current only) and resolved (prior only) findings."""

    pairs: list[MatchPair] = field(default_factory=list)
    new: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    current_in_prior_mm: np.ndarray | None = None


def kind_group(kind: str) -> str:
    """The matching group of a finding kind (unknown kinds match only themselves)."""
    return KIND_GROUPS.get(kind, kind)


def _size(f: Finding) -> float:
    for v in (f.longest_diameter_mm, f.size_mm):
        if v is not None:
            return float(v)
    if f.volume_mm3:
        return float((6.0 * f.volume_mm3 / np.pi) ** (1.0 / 3.0))
    return 0.0


def gate_mm(prior: Finding, current: Finding, *, min_gate_mm: float = 10.0, size_factor: float = 0.5) -> float:
    """Largest registered distance (mm) at which the two findings may be paired."""
    return max(min_gate_mm, size_factor * max(_size(prior), _size(current)))


def match_findings(
    prior: Sequence[Finding],
    current: Sequence[Finding],
    *,
    current_to_prior: Callable[[np.ndarray], np.ndarray] | None = None,
    min_gate_mm: float = 10.0,
    size_factor: float = 0.5,
) -> MatchResult:
    """Pair prior and current findings on registered positions.

    Parameters
    ----------
    prior, current: sequence of Finding
        Findings with ``centroid_mm`` (LPS). Findings without a centroid are
        never paired (they end up new/resolved).
    current_to_prior: callable, optional
        Maps an (N, 3) array of current LPS points into the prior frame
        (:meth:`Registration.current_to_prior`); identity when None.
    min_gate_mm, size_factor: float
        Distance gate ``max(min_gate_mm, size_factor * larger longest diameter)``.

    Returns
    -------
    MatchResult
        ``pairs`` sorted by prior index; ``new`` and ``resolved`` sorted.
    """
    n_p, n_c = len(prior), len(current)
    cur_pts = np.full((n_c, 3), np.nan)
    for j, f in enumerate(current):
        if f.centroid_mm is not None:
            cur_pts[j] = f.centroid_mm
    ok = ~np.isnan(cur_pts).any(axis=1)
    if current_to_prior is not None and ok.any():
        cur_pts[ok] = np.asarray(current_to_prior(cur_pts[ok]), dtype=float).reshape(-1, 3)
    pri_pts = np.full((n_p, 3), np.nan)
    for i, f in enumerate(prior):
        if f.centroid_mm is not None:
            pri_pts[i] = f.centroid_mm
    result = MatchResult(current_in_prior_mm=cur_pts)
    if n_p == 0 or n_c == 0:
        result.new = list(range(n_c))
        result.resolved = list(range(n_p))
        return result
    dist = np.linalg.norm(pri_pts[:, None, :] - cur_pts[None, :, :], axis=2)
    gates = np.array(
        [[gate_mm(p, c, min_gate_mm=min_gate_mm, size_factor=size_factor) for c in current] for p in prior]
    )
    groups_p = np.array([kind_group(f.kind) for f in prior], dtype=object)
    groups_c = np.array([kind_group(f.kind) for f in current], dtype=object)
    feasible = (groups_p[:, None] == groups_c[None, :]) & np.isfinite(dist) & (dist <= gates)
    cost = np.where(feasible, np.nan_to_num(dist, nan=_INFEASIBLE), _INFEASIBLE)
    rows, cols = linear_sum_assignment(cost)
    paired_p: set[int] = set()
    paired_c: set[int] = set()
    for i, j in zip(rows.tolist(), cols.tolist()):
        if feasible[i, j]:
            result.pairs.append(MatchPair(i, j, float(dist[i, j]), float(gates[i, j])))
            paired_p.add(i)
            paired_c.add(j)
    result.pairs.sort(key=lambda p: p.prior_index)
    result.new = [j for j in range(n_c) if j not in paired_c]
    result.resolved = [i for i in range(n_p) if i not in paired_p]
    return result
